"""The sandbox's clock, which moves forward as Stripe's test clocks do.

The sandbox's time is `clock` (the machine's, unless a test holds it still)
plus an offset that only grows. Moving it ahead makes what falls due in
between happen in order, each at its own moment and with its events, by the
same transitions the dashboard's buttons make: a period's end renews the
subscription (a trial's end is its first renewal), or ends it when it was
set to cancel then (`cancel_at_period_end`, or a `cancel_at` not after it);
a `cancel_at` within the period ends it at that moment; and a renewal whose
charge fails (the customer's card is one that declines when charged, test
card 4000 0000 0000 0341) leaves the subscription past_due owing an open
invoice, with `invoice.payment_failed`. Subscriptions that Stripe would not
charge (unpaid, paused, incomplete) wait.

In the local stack the API, its queue consumers and the scheduled functions
read this clock too (local/clock.py), so the webhooks' timestamps, the API's
300-second tolerance and its access decisions agree."""
import copy
import heapq
import time
from typing import Any, Dict, List, Optional, Tuple

from local.stripe_sandbox.events import WEBHOOK_TIMEOUT_SECONDS
from local.stripe_sandbox.payment_methods import declines_when_charged
from local.stripe_sandbox.subscriptions import _period_end

DAY = 24 * 3600
# As far as one move may go: a year, and a day for a leap year.
MAX_ADVANCE_SECONDS = 366 * DAY
# A subscription renewed more often than this in one move (a period of
# seconds moved by days) is refused: move less at a time.
MAX_RENEWALS = 100
# And so is a move that would make more happen than this in all.
MAX_FALLING_DUE = 50_000
# The statuses Stripe charges at a period's end.
RENEWS = ("active", "trialing", "past_due")

# What falling due did to a subscription, as the answer and the dashboard name it.
RENEWED = "renewed"
RENEWAL_FAILED = "renewal_failed"
TRIAL_ENDED = "trial_ended"
TRIAL_ENDED_PAYMENT_FAILED = "trial_ended_payment_failed"
CANCELED = "canceled"


class ClockRefused(ValueError):
    """A move of the clock the sandbox does not make, and why."""


class SandboxClock:
    """The sandbox's time and moving it ahead."""

    def now(self) -> float:
        """The sandbox's time: every `created`, period and signature reads it."""
        held = self._held_at
        if held is not None:
            return held
        return self.clock() + self._clock_offset

    @property
    def clock_offset(self) -> int:
        """How many seconds the sandbox's time is ahead of `clock`."""
        return self._clock_offset

    def clock_view(self) -> Dict[str, Any]:
        with self._lock:
            return _view(self.now(), self._clock_offset)

    @property
    def last_advance(self) -> Optional[Dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._last_advance)

    def advance_clock(self, seconds: int) -> Dict[str, Any]:
        """Moves the sandbox's time `seconds` ahead; what falls due in
        between happens in order, each at its moment (what was already due
        before the move, at its start). Returns the new time and what
        happened; raises ClockRefused, having changed nothing, for a move
        backwards, of nothing, too far, or that would make too much happen."""
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
            raise ClockRefused("The clock moves forward only: give a whole number of seconds over 0.")
        if seconds > MAX_ADVANCE_SECONDS:
            raise ClockRefused("The clock moves at most %d days at a time." % (MAX_ADVANCE_SECONDS // DAY))
        # A delivery signed before the move must reach its endpoint before
        # the endpoint's clock moves on, or its timestamp is days old there.
        # (Waiting releases the lock: the deliveries take it.)
        self.wait_for_webhooks(timeout=2 * WEBHOOK_TIMEOUT_SECONDS)
        with self._lock:
            start = self.now()
            end = start + seconds
            due = self._falling_due(end)
            happened: List[Dict[str, Any]] = []
            try:
                # Ties at one moment keep the order things were queued in.
                order = len(due)
                while due:
                    moment, _, scope, subscription_id = heapq.heappop(due)
                    # Deliveries wait for the lock, and so are signed once
                    # the move is over, at the time the endpoint then has.
                    self._held_at = max(moment, start)
                    what = self._fall_due(scope, subscription_id)
                    happened.append({"at": int(self._held_at), "account": scope,
                                     "subscription": subscription_id, "what": what})
                    following = _next_due(self._subscriptions[scope][subscription_id])
                    # A period of no length would fall due again and again.
                    if following is not None and moment < following <= end:
                        order += 1
                        heapq.heappush(due, (following, order, scope, subscription_id))
            finally:
                self._held_at = None
                self._clock_offset += seconds
            record = dict(_view(self.now(), self._clock_offset), advanced_seconds=seconds, happened=happened)
            self._last_advance = record
            return copy.deepcopy(record)

    def _falling_due(self, end: float) -> List[Tuple[float, int, Optional[str], str]]:
        """A heap of (moment, order, scope, subscription id) of each
        subscription with something due by `end`, refused when the move
        would make too much happen."""
        due: List[Tuple[float, int, Optional[str], str]] = []
        count = 0
        for scope, subscriptions in self._subscriptions.items():
            for subscription in subscriptions.values():
                moment = _next_due(subscription)
                if moment is None or moment > end:
                    continue
                times = _times_due(subscription, moment, end)
                if times > MAX_RENEWALS:
                    raise ClockRefused(
                        "Subscription %s would renew %d times in that move (its period is %d seconds): move the "
                        "clock less at a time, or end the subscription first." % (
                            subscription["id"], times, _period_length(subscription)))
                count += times
                due.append((moment, len(due), scope, subscription["id"]))
        if count > MAX_FALLING_DUE:
            raise ClockRefused("That move would make %d renewals and cancellations happen, over the %d the sandbox "
                               "makes at once: move the clock less at a time." % (count, MAX_FALLING_DUE))
        heapq.heapify(due)
        return due

    def _fall_due(self, scope: Optional[str], subscription_id: str) -> str:
        """What is due on the subscription now, by the dashboard's own transitions."""
        subscription = self._subscriptions[scope][subscription_id]
        ends_at = _period_end(subscription)
        cancel_at = subscription["cancel_at"]
        if cancel_at is not None and cancel_at < ends_at:
            self._cancel_subscription(scope, subscription_id)
            return CANCELED
        was = subscription["status"]
        declines = declines_when_charged(self._default_payment_method(scope, subscription["customer"]))
        # renew_subscription ends instead one set to cancel at this period's end.
        renewed = self.renew_subscription(scope, subscription_id, paid=not declines)
        if renewed["status"] == "canceled":
            return CANCELED
        if was == "trialing":
            return TRIAL_ENDED_PAYMENT_FAILED if declines else TRIAL_ENDED
        return RENEWAL_FAILED if declines else RENEWED


def _next_due(subscription: Dict[str, Any]) -> Optional[int]:
    """When something next falls due on the subscription: its period's end,
    or a cancellation within the period; None when nothing will."""
    if subscription["status"] not in RENEWS or not subscription["items"]["data"]:
        return None
    ends_at = _period_end(subscription)
    cancel_at = subscription["cancel_at"]
    return min(ends_at, cancel_at) if cancel_at is not None else ends_at


def _period_length(subscription: Dict[str, Any]) -> int:
    return max(item["current_period_end"] - item["current_period_start"] for item in subscription["items"]["data"])


def _times_due(subscription: Dict[str, Any], first: int, end: float) -> int:
    """How many times the subscription falls due from `first` to `end` (at
    most: a later cancel_at stops it sooner)."""
    cancel_at = subscription["cancel_at"]
    if subscription["cancel_at_period_end"] or (cancel_at is not None and cancel_at <= _period_end(subscription)):
        return 1
    length = _period_length(subscription)
    if length <= 0:
        return 1
    return 1 + int((end - first) // length)


def _view(now: float, offset: int) -> Dict[str, Any]:
    return {"object": "sandbox_clock", "now": int(now),
            "now_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "offset_seconds": offset}
