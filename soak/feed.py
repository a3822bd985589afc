"""From Stripe's steps to deliveries: apply a window of steps at the sandbox,
take the events they recorded, add duplicates, shuffle, hand them to the
senders, and apply the next window while those are being delivered.

Stripe delivers out of order, more than once, and sometimes days late; the
windows give all three: events shuffled within a window (and deliveries of
neighbouring windows overlapping), about one in five deliveries a duplicate,
some phase 1 events held back and first delivered in phase 2, and some phase
1 events delivered again, stale, among phase 2's.

And Stripe's answers travel too: for a few subscriptions the answer to a
read is held while Stripe changes the subscription again and that change's
event is delivered and handled (from the events queue, by another of the
stack's concurrent handlers); then the older answer arrives."""
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from local.stripe_sandbox import StripeSandbox
from soak.senders import DUPLICATE, FIRST, LATE, STALE, Delivery, Senders
from soak.stripe_life import StripeLife, Step

# Duplicates per first delivery: a fifth of all deliveries.
DUPLICATE_SHARE = 0.27
# Of phase 1's duplicates, those sent again late, among phase 2's deliveries.
STALE_SHARE = 0.35
# Phase 1 events whose first delivery waits for phase 2.
LATE_SHARE = 0.05
STEPS_PER_WINDOW = 40
# Steps wait while this many deliveries are still to be sent or handled, so
# that Stripe changes while the connector reads it, but not far ahead.
MAX_BACKLOG = 40
# How long a held answer waits for the later change's event to be handled.
HANDLED_WITHIN = 10.0


@dataclass
class PhaseReport:
    applied: int = 0
    events: List[Dict[str, Any]] = field(default_factory=list)


class Feed:
    """`unhandled`: how many acknowledged events wait to be handled;
    `handled(event_id)`: whether that event's handling is done."""

    def __init__(self, sandbox: StripeSandbox, account_id: str, senders: Senders, rng: random.Random,
                 unhandled: Callable[[], int] = lambda: 0,
                 handled: Optional[Callable[[str], bool]] = None):
        self._sandbox = sandbox
        self._account_id = account_id
        self._senders = senders
        self._rng = rng
        self._unhandled = unhandled
        self._handled = handled
        # Only what happens from now on is delivered (not the connection's
        # own account.application.authorized).
        self._mark = len(sandbox.events_after(0))
        self.held_back: List[Dict[str, Any]] = []
        self.stale: List[Dict[str, Any]] = []
        self.late_answers = 0
        self._lock = threading.Lock()
        self._taken: set = set()

    def run(self, life: StripeLife, steps: List[Step], phase: int) -> PhaseReport:
        report = PhaseReport()
        windows = [steps[i:i + STEPS_PER_WINDOW] for i in range(0, len(steps), STEPS_PER_WINDOW)] or [[]]
        extras: List[List[Delivery]] = [[] for _ in windows]
        if phase == 2:
            # Phase 1's leftovers, spread over phase 2.
            for event in self.held_back:
                extras[self._rng.randrange(len(windows))].append(Delivery(event, LATE))
            for event in self.stale:
                extras[self._rng.randrange(len(windows))].append(Delivery(event, STALE))
            self.held_back, self.stale = [], []
        carried: List[Delivery] = []
        for index, window in enumerate(windows):
            while self._senders.backlog() > MAX_BACKLOG:
                time.sleep(0.01)
            # The webhook answers before it handles: the events queue is the
            # rest of the backlog.
            while self._senders.backlog() + self._unhandled() > MAX_BACKLOG:
                time.sleep(0.05)
            for step in window:
                if life.apply(step):
                    with self._lock:
                        report.applied += 1
                    if step.meanwhile is not None:
                        self._hold_next_answer(life, step, report)
            events = self._new_events()
            report.events.extend(events)
            batch, carried = carried + extras[index], []
            for event in events:
                if phase == 1 and self._rng.random() < LATE_SHARE:
                    self.held_back.append(event)
                    continue
                batch.append(Delivery(event, FIRST))
                if self._rng.random() < DUPLICATE_SHARE:
                    where = self._rng.random()
                    if phase == 1 and where < STALE_SHARE:
                        self.stale.append(event)
                    elif where < 0.7:
                        batch.append(Delivery(event, DUPLICATE))
                    else:
                        carried.append(Delivery(event, DUPLICATE))
            self._rng.shuffle(batch)
            self._senders.submit(batch)
        self._senders.submit(carried)
        return report

    def _hold_next_answer(self, life: StripeLife, step: Step, report: PhaseReport) -> None:
        subscription_id = step.subscription_id

        def meanwhile() -> None:
            # Stripe has answered the read; before the answer arrives, the
            # subscription changes again and that event is delivered.
            with self._lock:
                if not life.apply(step.meanwhile):
                    return
                report.applied += 1
                mine = [e for e in self._sandbox.events_after(self._mark)
                        if e["data"]["object"].get("id") == subscription_id and e["id"] not in self._taken]
                if not mine:
                    return
                event = mine[-1]
                self._taken.add(event["id"])
                report.events.append(event)
            self.late_answers += 1
            self._senders.deliver_now(event, FIRST)
            if self._handled is not None:
                deadline = time.monotonic() + HANDLED_WITHIN
                while not self._handled(event["id"]) and time.monotonic() < deadline:
                    time.sleep(0.05)

        self._sandbox.before_answering_next("GET", "/v1/subscriptions/" + subscription_id, meanwhile)

    def _new_events(self) -> List[Dict[str, Any]]:
        with self._lock:
            events = self._sandbox.events_after(self._mark)
            self._mark += len(events)
            return [e for e in events if e["account"] == self._account_id and e["id"] not in self._taken
                    and e["type"].startswith("customer.subscription.")]
