"""Time, passed in: services take a clock so tests and rules choose the moment."""
from datetime import datetime, timezone
from typing import Callable, Optional

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: Optional[datetime]) -> Optional[str]:
    """The contract's timestamps: UTC, whole seconds, `Z`."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
