"""The local stack's one clock, which can be moved forward.

The Stripe sandbox owns it: its time is the machine's plus an offset, and
moving it makes what falls due in between happen with its events
(local/stripe_sandbox/clock.py). The API, its queue consumers and the
scheduled functions run on the same time through `chalicelib.clock.use`:
in `make run`'s process they read the sandbox's offset at each use; a
command run beside it (`make sweep`, `make catch-up`, `make replay`)
reads it once from the sandbox's `GET /dashboard/clock` as it starts.
Without the sandbox (Stripe's own keys) there is nothing to move: the
machine's clock stays.

Standard library only, like the sandbox."""
import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict
from urllib.parse import urlencode

CLOCK_PATH = "/dashboard/clock"
ADVANCE_PATH = "/dashboard/clock/advance"
TIMEOUT_SECONDS = 10
# A move waits for what falls due to happen: thousands of renewals take a while.
ADVANCE_TIMEOUT_SECONDS = 600


class SharedTime:
    """A time source for `chalicelib.clock.use`: the machine's time plus the
    offset `offset()` gives; it sleeps as long as the machine does."""

    def __init__(self, offset: Callable[[], float]):
        self._offset = offset

    def time(self) -> float:
        return time.time() + self._offset()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def following(sandbox: Any) -> SharedTime:
    """The sandbox's time for code in its own process, its offset read at each use."""
    return SharedTime(lambda: sandbox.clock_offset)


def sent_times_on_the_clock(handler: Callable[[Dict[str, Any], Any], Any],
                            offset: Callable[[], float]) -> Callable[[Dict[str, Any], Any], Any]:
    """The events queue's function with each message's SentTimestamp moved
    onto the stack's clock. The embedded AWS stamps messages with the
    machine's time, which the stack runs ahead of; the function compares
    when an event reached the connector with its own reads of Stripe (a read
    since covers the event), so a stamp days behind would pass for a read
    made before the event and leave the event unread. Moved by the offset
    as it is when handed over (it only grows): never earlier than the truth,
    and the function bounds it by the event's `created` as well."""
    def handle(event: Dict[str, Any], context: Any) -> Any:
        for record in event.get("Records") or []:
            attributes = record.get("attributes") or {}
            if "SentTimestamp" in attributes:
                attributes["SentTimestamp"] = str(int(attributes["SentTimestamp"]) + int(offset() * 1000))
        return handler(event, context)
    return handle


def read(sandbox_url: str) -> Dict[str, Any]:
    """The running sandbox's clock: `now`, `now_iso` and `offset_seconds`."""
    with urllib.request.urlopen(sandbox_url.rstrip("/") + CLOCK_PATH, timeout=TIMEOUT_SECONDS) as answer:
        return json.loads(answer.read())


def of_running_sandbox(sandbox_url: str) -> SharedTime:
    """The running sandbox's time for a command that runs for moments: the
    offset is read once, now (URLError when nothing answers)."""
    offset = float(read(sandbox_url)["offset_seconds"])
    return SharedTime(lambda: offset)


def advance(sandbox_url: str, days: float = 0, hours: float = 0, seconds: float = 0) -> Dict[str, Any]:
    """Moves the running sandbox's clock ahead; its answer: the new time and
    what fell due. A refusal raises urllib's HTTPError, whose body is
    Stripe's error shape."""
    form = {name: repr(value) for name, value in (("days", days), ("hours", hours), ("seconds", seconds)) if value}
    request = urllib.request.Request(sandbox_url.rstrip("/") + ADVANCE_PATH, data=urlencode(form).encode(),
                                     method="POST", headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=ADVANCE_TIMEOUT_SECONDS) as answer:
        return json.loads(answer.read())


def refusal(error: urllib.error.HTTPError) -> str:
    """What the sandbox said when it refused a move."""
    try:
        return json.loads(error.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return "the sandbox answered %d" % error.code
