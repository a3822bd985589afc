"""The scheduled functions as `make run` runs them: `watch_webhook_endpoint`,
`expire_access` and `catch_up` on app.py's rates, as EventBridge runs them
deployed, on the stack's clock. When the clock moves ahead (the sandbox's
Clock, `make advance`), what fell due runs a few seconds later, once: one run
covers every slot it missed. `LOCAL_SCHEDULES=off` leaves them to
`make sweep` and `make catch-up` (the tests' stacks, which decide when each
runs)."""
import json
import logging
import threading
import time
import uuid
from typing import Any, Callable, Dict, List

from chalice.app import Rate, ScheduledEventConfig

from chalicelib import clock

logger = logging.getLogger("local.schedules")

UNIT_SECONDS = {Rate.MINUTES: 60, Rate.HOURS: 3600, Rate.DAYS: 86400}
# What fell due together runs in this order: the endpoint's state first;
# then the sweep, which asks Stripe before it ends anything; then the
# catch-up, whose copies of events the sweep already followed change nothing.
ORDER = ("watch_webhook_endpoint", "expire_access", "catch_up")
# How long (on the machine's clock) a run waits once it fell due. Deployed, a
# schedule comes minutes after the moment it is about, and Stripe's webhooks
# seconds after: when the clock jumps, the events the jump sent are handled
# first, as they would be.
SETTLE_SECONDS = 3.0
TICK_SECONDS = 0.5
SETTINGS = ("on", "off")


def scheduled_event(region: str) -> dict:
    """What EventBridge's schedule hands the function, at the stack's time."""
    now = clock.iso(clock.utc_now())
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "000000000000", "time": now, "region": region,
            "resources": [], "detail": {}}


def periods_of(app: Any) -> Dict[str, float]:
    """Each scheduled function's rate, in seconds, as app.py's Chalice app
    declares it."""
    return {source.name: source.schedule_expression.value * UNIT_SECONDS[source.schedule_expression.unit]
            for source in app.event_sources
            if isinstance(source, ScheduledEventConfig) and isinstance(source.schedule_expression, Rate)}


def wanted(setting: str) -> bool:
    """LOCAL_SCHEDULES: `on` (or unset) or `off`; anything else is a mistake."""
    setting = (setting or "on").strip().lower()
    if setting not in SETTINGS:
        raise ValueError("LOCAL_SCHEDULES must be on or off, not %r" % setting)
    return setting == "on"


class LocalSchedules:
    """`functions`: app.py (the module: its Chalice `app` declares the rates,
    and each scheduled function is a name of it, as Lambda's handler);
    `now`: the stack's clock; `waited`: the machine's (monotonic), which the
    settling is measured on."""

    def __init__(self, functions: Any, region: str, now: Callable[[], float] = clock.now_seconds,
                 waited: Callable[[], float] = time.monotonic):
        periods = periods_of(functions.app)
        missing = sorted(set(ORDER) - set(periods))
        if missing:
            raise ValueError("app.py schedules no %s" % ", ".join(missing))
        self._periods = {name: periods[name] for name in ORDER}
        self._functions = functions
        self._region = region
        self._now = now
        self._waited = waited
        start = now()
        # The endpoint is read at once, so that the cards know its state from
        # the start; the others first run a period after the start, as a new
        # rate's first invocation comes.
        self._due = {name: start if name == "watch_webhook_endpoint" else start + period
                     for name, period in self._periods.items()}
        self._fell_due: Dict[str, float] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="local-schedules", daemon=True)

    def describe(self) -> str:
        return ", ".join("%s every %s" % (name, _duration(self._periods[name])) for name in ORDER)

    def start(self) -> "LocalSchedules":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def run_due(self) -> List[str]:
        """Run, in ORDER, what is due and has settled; the names run."""
        ran = []
        for name in ORDER:
            if self._now() < self._due[name]:
                continue
            noticed = self._fell_due.setdefault(name, self._waited())
            if self._waited() - noticed < SETTLE_SECONDS:
                continue
            self._run(name)
            del self._fell_due[name]
            self._due[name] = self._now() + self._periods[name]
            ran.append(name)
        return ran

    def _run(self, name: str) -> None:
        try:
            report = getattr(self._functions, name)(scheduled_event(self._region), None)
        except Exception:
            # As EventBridge would: the next run comes at its time.
            logger.exception("%s failed on its schedule; it runs again in %s", name,
                             _duration(self._periods[name]))
            return
        logger.info("%s ran on its schedule: %s", name, json.dumps(report, default=str) if report else "done")

    def _loop(self) -> None:
        while not self._stopped.wait(TICK_SECONDS):
            self.run_due()


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return "%d hour%s" % (seconds // 3600, "" if seconds == 3600 else "s")
    return "%d minutes" % (seconds // 60)
