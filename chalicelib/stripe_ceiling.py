"""One ceiling on the connector's requests to Stripe, and what a 429 costs.

Every function that talks to Stripe (the API and its webhook, the sweep, the
import and the catch-up, each as many Lambda instances as are running)
together stays under STRIPE_REQUESTS_PER_SECOND: no one-second window holds
more requests than that. Stripe allows about 100 a second in live mode, 25
in test mode and 25 per endpoint, and does not say whether requests made
with Stripe-Account count against the platform's budget or the account's:
the connector plans as if they all share one.

Slots, not tokens
    Instances share no memory, so the budget lives in DynamoDB; a write per
    Stripe request would add a DynamoDB request to every Stripe one, so an
    instance leases several requests with one conditional write. What it
    leases are *slots*: moments at which a request may be sent, each
    usable from its moment until LATE_SECONDS after it, then dropped. That
    is what bounds every window: the requests sent within any second come
    from slots within it or up to LATE_SECONDS (plus SKEW_SECONDS of clock
    skew either way) before it, so if no span of 1 + LATE + 2 SKEW seconds
    holds more than n = floor(STRIPE_REQUESTS_PER_SECOND) slots, no second
    holds more than n requests. Tokens good for a while would let one
    instance spend a whole lease at the end of a second and the next lessee
    its own at the start of the next: twice the rate in between. The price
    of the margin is the sustained rate, about n / 1.35 (15 a second at 20).

Lanes
    The n slots of a window are cut into lanes of a few each, so that a
    lane's slots are about LANE_SPACING_SECONDS apart: about one Stripe
    round trip. An instance that sends one request after another (an event
    at a time, an entitlement at a time) then finds the slots of a lane due
    about when it is ready for them and uses all it leased; with the slots
    of a single bucket a few tens of milliseconds apart it would be late for
    most of a lease after its first answer. A lease is spread over as many
    lanes as the instance's own pace (its time from one request to the
    next, waits aside) can use: one for an instance waiting on Stripe, all
    of them for one that is quick and alone.

    Each lane is a token bucket kept as the time its next free slot is due
    (the generic cell rate algorithm's theoretical arrival time, in
    milliseconds), an attribute `lane_<n>` of one item, `stripe-ceiling`,
    in the rate limits table. A lease is one UpdateItem: for a lane booked
    ahead, `ADD lane_n k*spacing` if it is booked past now (no read, and
    concurrent lessees do not refuse each other: each gets the k slots
    before the value it added to); for a lane whose next slot is past,
    `SET lane_n = now + k*spacing` if it still is. The answer, ALL_NEW or on
    a refusal ALL_OLD, is the whole item: every write tells the instance
    where every lane stands, and it chooses the next lease's lanes (the
    soonest due) knowing it. A choice made from what was seen a lease ago
    takes a lane only if it is booked little further than then
    (STALE_TOLERANCE_SLOTS); a refusal costs a write and brings it up to
    date. Leases start at FIRST_LEASE slots, double up to MOST_PER_LEASE
    while every slot is used, and shrink to what was used when some were
    dropped: a lone event pays one write, a burst one write per several
    requests (tests/api/test_stripe_ceiling.py measures it).

Waiting, and when DynamoDB cannot be written
    A request sleeps until its slot. No lease books a lane further ahead
    than LONGEST_WAIT_SECONDS: when every lane is, the request fails as
    StripeFailure (CeilingFull), which every caller already treats as
    "later": the sweep leaves the entitlement, a queue message comes again,
    an admin's route answers 502. That wait counts in the longest a Stripe
    call may take (stripe_gateway.longest_call_seconds), by which the sweep
    stops in time. So does asking for more than the ceiling: about
    LONGEST_WAIT_SECONDS * 15 / MOST_PER_LEASE instances (a dozen or so)
    waiting at once on Stripe are what the lanes hold before CeilingFull.

    The ceiling never fails a handler for DynamoDB's sake: when a lease
    write fails for any reason other than its condition (throttled, timed
    out, refused), the instance paces itself alone at 1/FALLBACK_SHARE of
    the budget (one request a second at 20/s) for BUCKET_RETRY_SECONDS,
    logs it and counts StripeCeilingUnavailable. Twenty instances pacing
    themselves so at once stay within the ceiling; past that, Stripe's 429s
    are retried as below. The lease's DynamoDB client (services.py) waits
    a second for an answer, twice, before it gives up.

Clock skew
    Slots are wall-clock moments compared across instances. Lambda's clock
    follows the Amazon Time Sync Service (well under a millisecond off);
    SKEW_SECONDS of skew, or of jitter on the way to Stripe, is inside the
    margin. More skew lets a second hold more, about n * skew more, not
    unboundedly; and a lane booked further ahead than any honest clock
    could have put it is taken back.

A 429 from Stripe
    Retried where every request goes through (StripeTraffic.send, inside the
    HTTP client of the gateway's StripeClient, so stripe-python's own
    retries of connection errors, 409 and 5xx take slots too), after a
    full-jitter exponential back-off: a random wait in [0, min(
    BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**(try-1))). A 429 with
    Stripe-Rate-Limited-Reason is Stripe's rate limiter: RATE_LIMITED_TRIES
    tries, counted as StripeRateLimited and StripeRateLimited<Reason>. One
    without it is something else, such as a lock timeout on the object:
    OTHER_429_TRIES tries, counted as StripeOther429. After the last try the
    429 goes back to stripe-python marked not to be retried, and becomes the
    StripeFailure it always was. The back-off adds at most
    LONGEST_BACKOFF_SECONDS to a call.
"""
import heapq
import logging
import math
import random
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from chalicelib import clock as time_source
from chalicelib import observability
from chalicelib.errors import StripeFailure
from chalicelib.observability import Metrics

logger = logging.getLogger(__name__)

DEFAULT_REQUESTS_PER_SECOND = 20
# How late after its moment a slot may still be used.
LATE_SECONDS = 0.25
# Clock skew between instances, and jitter on the way to Stripe, that the
# schedule absorbs (both ways).
SKEW_SECONDS = 0.05
# About one Stripe round trip: how far apart a lane's slots are meant to be.
LANE_SPACING_SECONDS = 0.35
# The lanes are attributes of one item, read back whole with every write:
# past this many, a lane's slots come closer together instead.
MOST_LANES = 50
FIRST_LEASE = 2
MOST_PER_LEASE = 12
# How far ahead a lease may book, so how long a request may wait for its slot.
LONGEST_WAIT_SECONDS = 10.0
# Lease writes one request may make. A refused write tells every lane's
# state, so the next one is refused only when another instance started the
# same idle lane in between.
LEASE_WRITES = 4
# A lease chosen from what was seen at the last write takes a lane booked at
# most this many slots further than then (two full leases of others); past
# that, the refusal says where every lane stands now.
STALE_TOLERANCE_SLOTS = 2 * MOST_PER_LEASE
# How much the latest gap between two requests weighs in an instance's pace.
PACE_WEIGHT = 0.3
# When the bucket cannot be written: each instance's share of the budget
# meanwhile, and when it tries the bucket again.
FALLBACK_SHARE = 20
BUCKET_RETRY_SECONDS = 10.0
# A lane's next slot can be this far past the longest wait only when a clock
# that wrote it was off: it is taken back.
IMPLAUSIBLE_AHEAD_SECONDS = 60.0

BUCKET_KEY = "stripe-ceiling"
LANE_ATTRIBUTE = "lane_%d"
CONDITION_FAILED = "ConditionalCheckFailedException"

# A 429.
RATE_LIMITED_REASON_HEADER = "Stripe-Rate-Limited-Reason"
RATE_LIMITED_TRIES = 4
OTHER_429_TRIES = 3
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 4.0
# The longest a request's 429s may hold it in back-off: each wait is below
# its cap, and there are RATE_LIMITED_TRIES - 1 of them.
LONGEST_BACKOFF_SECONDS = sum(min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** n)
                              for n in range(RATE_LIMITED_TRIES - 1))

Response = Tuple[Any, int, Mapping[str, str]]


class CeilingFull(StripeFailure):
    """No slot to be had: every lane is booked further ahead than a request
    may wait (the connector is asking Stripe for more than its ceiling
    allows), or other instances wrote in between every lease write."""


class LanesTaken(Exception):
    """A lease write's condition did not hold; `lanes` is every lane's next
    slot as DynamoDB has them (a lane never booked is missing)."""

    def __init__(self, lanes: Dict[int, int]):
        super().__init__(lanes)
        self.lanes = lanes


@dataclass(frozen=True)
class Schedule:
    """How the budget is cut into lanes of slots (times in milliseconds)."""
    per_second: float
    lanes: int
    per_lane: int          # slots a lane may hold in one window
    spacing_ms: int        # between a lane's slots
    late_ms: int

    @classmethod
    def for_rate(cls, per_second: float, late: float = LATE_SECONDS, skew: float = SKEW_SECONDS,
                 lane_spacing: float = LANE_SPACING_SECONDS) -> "Schedule":
        if not (math.isfinite(per_second) and per_second > 0):
            raise ValueError("A ceiling is a positive number of requests a second")
        window = 1 + late + 2 * skew
        whole = math.floor(per_second)
        if whole < 1:
            # Less than one a second: a single lane, slots a window apart at least.
            return cls(per_second, 1, 1, math.ceil(max(window, 1 / per_second) * 1000), round(late * 1000))
        lanes = min(MOST_LANES, max(1, whole // max(1, round(window / lane_spacing))))
        per_lane = whole // lanes
        return cls(per_second, lanes, per_lane, math.ceil(window / per_lane * 1000), round(late * 1000))

    @property
    def sustained_per_second(self) -> float:
        return self.lanes * 1000 / self.spacing_ms

    @property
    def fallback_spacing_ms(self) -> int:
        return math.ceil(FALLBACK_SHARE * 1000 / max(1.0, math.floor(self.per_second)))


class DynamoLanes:
    """The lanes: one item of the rate limits table, a `lane_<n>` attribute
    each, written through a DynamoDB client (PynamoDB 6.1 passes no
    ReturnValuesOnConditionCheckFailure, as limits.DynamoRateLimits says).
    One item, so that every answer, a refusal included, tells the state of
    every lane; a write's condition names its own lanes only, so writes for
    other lanes, or ADDs to the same one, do not refuse each other. A
    failed condition is LanesTaken; anything else is raised unchanged."""

    def __init__(self, connect: Callable[[], Any], table_name: str):
        self._connect = connect
        self._client: Any = None
        self._table_name = table_name

    def book(self, now: int, starts: Mapping[int, int], extends: Mapping[int, Tuple[int, int]],
             takes_back: Mapping[int, Tuple[int, int]]) -> Dict[int, int]:
        """One write; every lane's next slot after it.
        - starts: lane → end, for a lane whose next slot is past (or that
          has none): its next slot becomes `end`;
        - extends: lane → (length, latest), for a lane booked until some
          moment after now and no later than `latest`: `length` more;
        - takes_back: lane → (seen, end), for a lane whose next slot is
          `seen`, further ahead than an honest clock could have put it."""
        names: Dict[str, str] = {}
        values: Dict[str, int] = {}
        sets: List[str] = []
        adds: List[str] = []
        conditions: List[str] = []
        for lane, end in starts.items():
            name = "#l%d" % lane
            names[name], values[":e%d" % lane], values[":now"] = LANE_ATTRIBUTE % lane, end, now
            sets.append("%s = :e%d" % (name, lane))
            conditions.append("(attribute_not_exists(%s) OR %s <= :now)" % (name, name))
        for lane, (length, latest) in extends.items():
            name = "#l%d" % lane
            names[name], values[":n%d" % lane], values[":b%d" % lane] = LANE_ATTRIBUTE % lane, length, latest
            values[":now"] = now
            adds.append("%s :n%d" % (name, lane))
            conditions.append("(%s > :now AND %s <= :b%d)" % (name, name, lane))
        for lane, (seen, end) in takes_back.items():
            name = "#l%d" % lane
            names[name], values[":s%d" % lane], values[":e%d" % lane] = LANE_ATTRIBUTE % lane, seen, end
            sets.append("%s = :e%d" % (name, lane))
            conditions.append("%s = :s%d" % (name, lane))
        update = " ".join(part for part in ("SET " + ", ".join(sets) if sets else "",
                                            "ADD " + ", ".join(adds) if adds else "") if part)
        try:
            answer = self._dynamodb().update_item(
                TableName=self._table_name, Key={"limit_key": {"S": BUCKET_KEY}},
                UpdateExpression=update, ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={name: {"N": str(value)} for name, value in values.items()},
                ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != CONDITION_FAILED:
                raise
            raise LanesTaken(_lanes_of(exc.response.get("Item") or {})) from exc
        return _lanes_of(answer.get("Attributes") or {})

    def _dynamodb(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client


def _lanes_of(item: Dict[str, Any]) -> Dict[int, int]:
    prefix = LANE_ATTRIBUTE.replace("%d", "")
    return {int(name[len(prefix):]): int(value["N"]) for name, value in item.items()
            if name.startswith(prefix) and name[len(prefix):].isdigit() and "N" in value}


class NoCeiling:
    """Requests go when they are made (tools, and tests of other things)."""

    def acquire(self) -> None:
        return None


class StripeCeiling:
    """This instance's side of the shared schedule: its leased slots, what
    it last learned of each lane, its own pace, and the waiting. Safe to
    share between threads (the local server's)."""

    def __init__(self, lanes: DynamoLanes, per_second: float = DEFAULT_REQUESTS_PER_SECOND,
                 clock: Callable[[], float] = time_source.now_seconds,
                 sleep: Callable[[float], None] = time_source.sleep,
                 metrics: Optional[Metrics] = None, longest_wait: float = LONGEST_WAIT_SECONDS,
                 rng: Optional[random.Random] = None):
        self.schedule = Schedule.for_rate(per_second)
        self._lanes = lanes
        self._clock = clock
        self._sleep = sleep
        self._metrics = metrics or Metrics()
        self._longest_wait_ms = round(longest_wait * 1000)
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._slots: List[int] = []                 # a heap of moments, in ms
        self._known: Dict[int, Optional[int]] = {}  # lane → its next slot, as last seen
        self._lease_size: Optional[int] = None
        self._used = 0
        self._dropped = 0
        # How long this instance takes from one request to its next (its
        # own work and Stripe's answer, not the waits for slots), in ms.
        self._pace: Optional[float] = None
        self._sent_at: Optional[int] = None
        # The last lease began a spacing or more after it was made: lessees
        # are queueing, and a lane seen idle has most likely been booked since.
        self._queued = False
        self._alone_until = 0
        self._last_alone: Optional[int] = None

    def acquire(self) -> None:
        """Return when one request may be sent: at once, or after sleeping
        until this instance's next slot. CeilingFull when no slot is to be
        had within the longest wait."""
        with self._lock:
            now = self._now()
            if self._sent_at is not None:
                gap = max(1, now - self._sent_at)
                self._pace = gap if self._pace is None else PACE_WEIGHT * gap + (1 - PACE_WEIGHT) * self._pace
            slot = self._earliest(now)
            if slot is None:
                self._lease(now)
                slot = self._earliest(now)
            heapq.heappop(self._slots)
            self._used += 1
            self._sent_at = max(now, slot)
        if slot > now:
            self._metrics.count(observability.STRIPE_CEILING_WAITED)
            self._sleep((slot - now) / 1000)

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _earliest(self, now: int) -> Optional[int]:
        while self._slots and self._slots[0] + self.schedule.late_ms < now:
            heapq.heappop(self._slots)
            self._dropped += 1
        return self._slots[0] if self._slots else None

    def _next_size(self) -> int:
        """Double while nothing leased went unused; else what was used."""
        if self._lease_size is None:
            self._lease_size = FIRST_LEASE
        elif self._dropped:
            self._lease_size = max(1, min(self._lease_size, self._used))
        else:
            self._lease_size = min(MOST_PER_LEASE, self._lease_size * 2)
        self._used = self._dropped = 0
        return self._lease_size

    def _width(self, size: int) -> int:
        """Over how many lanes a lease is spread: as many as this instance's
        pace can use, a lane's slots being a spacing apart."""
        if self._pace is None:
            return 1
        return max(1, min(size, self.schedule.lanes, round(self.schedule.spacing_ms / self._pace)))

    def _lease(self, now: int) -> None:
        """At least one slot more, or CeilingFull."""
        if now < self._alone_until:
            self._pace_alone(now)
            return
        size = self._next_size()
        width = self._width(size)
        fresh = False
        for attempt in range(LEASE_WRITES):
            last = attempt == LEASE_WRITES - 1
            # The last write is for one lane that is booked ahead: adding to
            # it is refused only if it is booked beyond the longest wait.
            lanes = self._emptiest(now, 1 if last else width, booked_only=last)
            if not lanes:
                self._metrics.count(observability.STRIPE_CEILING_FULL)
                raise CeilingFull("Stripe's request budget is booked more than %d s ahead"
                                  % (self._longest_wait_ms // 1000))
            try:
                self._book(lanes, now, -(-size // len(lanes)), fresh)
                return
            except LanesTaken as taken:
                # Every lane's state now: the next write is chosen knowing it.
                self._learn(taken.lanes)
                fresh = True
            except Exception:
                self._unavailable(now)
                return
        # Refused every time by instances writing in between: the request
        # is not sent beside the schedule, it fails as any Stripe failure.
        self._metrics.count(observability.STRIPE_CEILING_FULL)
        raise CeilingFull("Stripe's request budget changed under every lease write (%d)" % LEASE_WRITES)

    def _learn(self, lanes: Mapping[int, int]) -> None:
        for lane in range(self.schedule.lanes):
            self._known[lane] = lanes.get(lane)

    def _emptiest(self, now: int, width: int, booked_only: bool = False) -> List[int]:
        """The `width` lanes whose next slots were, when last seen, the
        soonest, none booked beyond the longest wait (`booked_only`: only
        lanes booked past now, if there are any). Among equals at random,
        so that instances that saw the same do not all choose the same."""
        def due(lane: int) -> int:
            known = self._known.get(lane)
            return now if known is None or known <= now else known

        open_lanes = [lane for lane in range(self.schedule.lanes) if not self._beyond_wait(lane, now)]
        booked = [lane for lane in open_lanes if due(lane) > now]
        if booked_only and booked:
            open_lanes = booked
        self._rng.shuffle(open_lanes)
        return sorted(open_lanes, key=due)[:width]

    def _beyond_wait(self, lane: int, now: int) -> bool:
        """Booked, as last seen, beyond the longest wait (what was seen is
        never more than the lane holds: a lane's next slot only grows)."""
        known = self._known.get(lane)
        return (known is not None and now + self._longest_wait_ms < known
                <= now + self._longest_wait_ms + IMPLAUSIBLE_AHEAD_SECONDS * 1000)

    def _book(self, lanes: List[int], now: int, depth: int, fresh: bool) -> None:
        """One write for `depth` slots on each lane, in the form what was
        last seen of it calls for (`fresh`: seen by the write just refused).
        LanesTaken when that was out of date."""
        spacing = self.schedule.spacing_ms
        length = depth * spacing
        latest = now + self._longest_wait_ms
        starts: Dict[int, int] = {}
        extends: Dict[int, Tuple[int, int]] = {}
        takes_back: Dict[int, Tuple[int, int]] = {}
        for lane in lanes:
            known = self._known.get(lane)
            if (known is None or known <= now) and (fresh or not self._queued):
                starts[lane] = now + length
            elif known is not None and known > latest:
                logger.warning("Lane %d of the Stripe ceiling was booked %d s ahead: taken back", lane,
                               (known - now) // 1000)
                takes_back[lane] = (known, now + length)
            else:
                # A guess from what was seen a while ago takes the lane only
                # if it is booked little further than it was then: a refusal
                # tells where every lane stands, and the next write chooses
                # knowing it.
                extends[lane] = (length, latest if fresh else
                                 min(latest, max(now, known or now) + STALE_TOLERANCE_SLOTS * spacing))
        self._metrics.count(observability.STRIPE_CEILING_LEASES)
        after = self._lanes.book(now, starts, extends, takes_back)
        self._learn(after)
        firsts = [now] * (len(starts) + len(takes_back)) + [after[lane] - length for lane in extends]
        self._queued = min(firsts) > now + spacing
        for first in firsts:
            for n in range(depth):
                heapq.heappush(self._slots, first + n * spacing)

    def _unavailable(self, now: int) -> None:
        logger.warning("The Stripe ceiling's bucket could not be written; pacing this instance alone "
                       "for %d s", BUCKET_RETRY_SECONDS, exc_info=True)
        self._metrics.count(observability.STRIPE_CEILING_UNAVAILABLE)
        self._alone_until = now + round(BUCKET_RETRY_SECONDS * 1000)
        if not self._slots:
            self._pace_alone(now)

    def _pace_alone(self, now: int) -> None:
        slot = now if self._last_alone is None else max(now, self._last_alone + self.schedule.fallback_spacing_ms)
        self._last_alone = slot
        heapq.heappush(self._slots, slot)


class StripeTraffic:
    """How every request to Stripe goes: after the ceiling lets it, and
    again after a 429 (see the module's docstring)."""

    def __init__(self, ceiling: Any = None, metrics: Optional[Metrics] = None,
                 sleep: Callable[[float], None] = time_source.sleep, random_fraction: Callable[[], float] = random.random):
        self._ceiling = ceiling or NoCeiling()
        self._metrics = metrics or Metrics()
        self._sleep = sleep
        self._random = random_fraction

    def backoff(self, tried: int) -> float:
        """The wait after the `tried`-th 429 of a request: full jitter."""
        return self._random() * min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (tried - 1))

    def send(self, method: str, url: str, attempt: Callable[[], Response]) -> Response:
        """`attempt` makes one request and returns (body, status, headers);
        the answer returned is the first that is not a 429, or the last 429."""
        tried = 0
        while True:
            self._ceiling.acquire()
            self._metrics.count(observability.STRIPE_REQUESTS)
            response = attempt()
            if response[1] != 429:
                return response
            tried += 1
            reason = (response[2] or {}).get(RATE_LIMITED_REASON_HEADER)
            if reason:
                self._metrics.count(observability.STRIPE_RATE_LIMITED)
                self._metrics.count(observability.rate_limited_by(reason))
                tries = RATE_LIMITED_TRIES
            else:
                self._metrics.count(observability.STRIPE_OTHER_429)
                tries = OTHER_429_TRIES
            # The path names objects, never a secret; the query may hold an
            # email and the body a code, so neither is logged.
            what = "%s %s" % (method.upper(), urlsplit(url).path)
            kind = "rate limited (%s)" % reason if reason else "answered 429 without a rate limit"
            if tried >= tries:
                logger.warning("Stripe %s %s, try %d of %d: giving up", kind, what, tried, tries)
                return response
            wait = self.backoff(tried)
            logger.info("Stripe %s %s, try %d of %d: trying again in %.2f s", kind, what, tried, tries, wait)
            self._sleep(wait)
