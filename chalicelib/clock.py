"""Time, passed in: services take a clock so tests and rules choose the moment.

What a clock defaults to is the process's time source: the machine's clock
in a deployed function. A whole process may run on another one (`use`): the
local stack's clock, which can be moved ahead, or the month-start benchmark's
simulated clock, which also decides how long a `sleep` takes. Nothing else
reads the machine's clock for the connector's own decisions."""
import time
from datetime import datetime, timezone
from typing import Callable, Optional

Clock = Callable[[], datetime]


class SystemTime:
    """The machine's clock."""

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


_source = SystemTime()


def use(source) -> object:
    """Run this process on `source` (anything with `time()` and `sleep(s)`);
    returns the one it replaces, to put back."""
    global _source
    previous, _source = _source, source
    return previous


def now_seconds() -> float:
    """Seconds since the epoch, by the process's time source."""
    return _source.time()


def sleep(seconds: float) -> None:
    _source.sleep(seconds)


def utc_now() -> datetime:
    return datetime.fromtimestamp(_source.time(), timezone.utc)


def iso(moment: Optional[datetime]) -> Optional[str]:
    """The contract's timestamps: UTC, whole seconds, `Z`."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
