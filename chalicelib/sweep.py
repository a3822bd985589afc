"""The scheduled expiry: end access whose access_until has passed.

The work queue is the sparse `due-index`: an entitlement is in it only while
it grants access, so a run reads what is due, not what is stored, and a run
that stops midway loses nothing: what it did left the index, the rest is
still there for the next run.

Entitlements are taken WRITE_BATCH at a time: their sites' connections in one
read, Stripe asked for each, and what Stripe said written together (the
writer's transactions, each view on the condition that its entitlement is
still as the index showed it)."""
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, Dict, List, Optional, Tuple, Union

from chalicelib import observability
from chalicelib.access import PAST_DUE, PERIOD_ENDED, SUBSCRIPTION_PAST_DUE, access_of
from chalicelib.clock import Clock, utc_now
from chalicelib.connections import CONNECTED, ConnectionStore, grace_of
from chalicelib.entitlements import DUE_SHARDS, microseconds
from chalicelib.errors import AccountNotConnected, RateLimited, StripeFailure
from chalicelib.history import SWEEP, Cause
from chalicelib.limits import NoLimits, RateLimits
from chalicelib.models import ConnectionModel, EntitlementModel
from chalicelib.observability import Metrics
from chalicelib.queues import QueueFailure, WorkQueue
from chalicelib.stripe_gateway import HTTP_TIMEOUT_SECONDS, StripeGateway, longest_call_seconds
from chalicelib.writer import Reading, ViewWriter, WriteResult, end_as_stored, with_reason

logger = logging.getLogger(__name__)

PAGE_SIZE = 100
# A bound per run keeps one run inside the function's timeout; what is left
# stays due and the next run takes it.
MAX_PER_RUN = 1000
# Beside the Stripe read, what one entitlement may take: the connection read
# and the conditional write, each with DynamoDB's retries.
WRITE_SECONDS = 5

# Entitlements read from Stripe before what was read is written, together.
WRITE_BATCH = 25
# What one message of the fanned-out sweep takes of its shard before it
# queues the rest: a few minutes of Stripe reads within the ceiling.
SHARD_BATCH = 200
SWEEP_MESSAGE = "sweep"
# A shard put on the work queue is held this long, and held again each time
# its message queues the rest: a scheduled run meanwhile does not put it on
# again (its messages would read the same entitlements twice). A shard whose
# message was lost is put on again by the first run after this.
SHARD_HELD = timedelta(minutes=15)

REVOKED = "revoked"
KEPT = "kept"
LEFT = "left"
CHANGED_MEANWHILE = "changed_meanwhile"


def shard_key(shard: int) -> str:
    """The rate limits table's item that holds a shard while it is swept from the queue."""
    return "sweep-shard#%d" % shard


def sweep_message(shard: int, due_before: int) -> Dict[str, object]:
    return {"kind": SWEEP_MESSAGE, "shard": shard, "due_before": due_before}


@dataclass
class SweepReport:
    due: int = 0
    revoked: int = 0
    kept: int = 0
    left: int = 0
    changed_meanwhile: int = 0
    complete: bool = True
    # Shard messages put on the work queue for what this run did not take.
    fanned_out: int = 0
    failures: List[str] = field(default_factory=list)

    def as_dict(self) -> Dict[str, object]:
        return {"due": self.due, "revoked": self.revoked, "kept": self.kept, "left": self.left,
                "changed_meanwhile": self.changed_meanwhile, "complete": self.complete,
                "fanned_out": self.fanned_out}


class Sweep:
    def __init__(self, connections: ConnectionStore, stripe: StripeGateway, clock: Clock = utc_now,
                 max_per_run: int = MAX_PER_RUN, page_size: int = PAGE_SIZE,
                 longest_stripe_call: float = longest_call_seconds(HTTP_TIMEOUT_SECONDS),
                 writer: Optional[ViewWriter] = None, metrics: Optional[Metrics] = None,
                 write_batch: int = WRITE_BATCH, limits: Optional[RateLimits] = None):
        self._metrics = metrics or Metrics()
        self._connections = connections
        self._writer = writer or ViewWriter()
        # No new entitlement is taken with less time left than one may need
        # when Stripe hangs: the function would be stopped in the middle.
        self._stop_with_seconds_left = longest_stripe_call + WRITE_SECONDS
        self._stripe = stripe
        self._clock = clock
        self._max_per_run = max_per_run
        self._page_size = page_size
        self._write_batch = write_batch
        self._limits = limits or NoLimits()

    def run(self, time_left: Optional[Callable[[], float]] = None,
            queue: Optional[WorkQueue] = None) -> SweepReport:
        """One run: at most max_per_run entitlements, shared fairly among the
        shards (so what keeps failing in one cannot starve the others), and
        stopping early when `time_left` (seconds) runs low. When more is due
        than one run takes (a month start) and a work queue is given, every
        shard goes on it as a message at once, and the run ends nothing
        itself: all that is due drains in parallel (sync_worker, `run_shard`)
        from the start rather than a run every 15 minutes. A run that stops
        for time fans out the same way."""
        report = SweepReport()
        cause = run_cause()
        started = self._clock()
        due_before = int(started.timestamp())
        per_shard = -(-self._max_per_run // DUE_SHARDS)
        taken: List[EntitlementModel] = []
        failure: Optional[Exception] = None
        for shard in range(DUE_SHARDS):
            try:
                self._due(shard, due_before, min(per_shard, self._max_per_run - len(taken)), report, taken)
            except Exception as exc:
                # The other shards' due entitlements still end; the run fails after them.
                logger.warning("Sweep could not read shard %d: %s", shard, exc)
                report.complete = False
                failure = failure or exc
        if failure is None and not report.complete and queue is not None:
            try:
                report.fanned_out = self._fan_out(queue, due_before)
            except QueueFailure:
                logger.warning("Sweep could not fan out %d shards; this run ends what it took", DUE_SHARDS)
            else:
                return self._reported(report)
            queue = None
        self._expire_taken(taken, report, time_left, cause)
        if failure is not None:
            raise failure
        if not report.complete and queue is not None:
            report.fanned_out = self._fan_out(queue, due_before)
        return self._reported(report)

    def _fan_out(self, queue: WorkQueue, due_before: int) -> int:
        """Every shard not already on the queue goes on it; how many went."""
        free = []
        for shard in range(DUE_SHARDS):
            try:
                self._limits.once_per(shard_key(shard), SHARD_HELD, "The shard is being swept")
            except RateLimited:
                continue
            free.append(shard)
        queue.send_all([sweep_message(shard, due_before) for shard in free])
        if len(free) < DUE_SHARDS:
            logger.info("Sweep left %d shards to the messages already sweeping them", DUE_SHARDS - len(free))
        return len(free)

    def run_shard(self, shard: int, due_before: int, time_left: Optional[Callable[[], float]] = None,
                  queue: Optional[WorkQueue] = None) -> SweepReport:
        """One shard's due entitlements, up to SHARD_BATCH of them (a work
        queue message of the fanned-out sweep); what is left goes on the
        queue again as the same message."""
        report = SweepReport()
        taken: List[EntitlementModel] = []
        self._due(shard, due_before, min(SHARD_BATCH, self._max_per_run), report, taken)
        self._expire_taken(taken, report, time_left, run_cause())
        if not report.complete and queue is not None:
            self._limits.hold(shard_key(shard), SHARD_HELD)
            queue.send(sweep_message(shard, due_before))
            report.fanned_out = 1
        return self._reported(report)

    def _due(self, shard: int, due_before: int, limit: int, report: SweepReport,
             taken: List[EntitlementModel]) -> None:
        """Up to `limit` of the shard's due entitlements, added to `taken` as
        they are read; the report is incomplete when the shard holds more."""
        added = 0
        for item in EntitlementModel.due_index.query(shard, EntitlementModel.due_at <= due_before,
                                                     page_size=max(1, min(self._page_size, limit + 1))):
            if added >= limit:
                report.complete = False
                break
            taken.append(item)
            added += 1

    def _expire_taken(self, taken: List[EntitlementModel], report: SweepReport,
                      time_left: Optional[Callable[[], float]], cause: Cause) -> None:
        sites: Dict[str, Optional[ConnectionModel]] = {}
        for start in range(0, len(taken), self._write_batch):
            if not self._expire_all(taken[start:start + self._write_batch], report, sites, time_left, cause):
                report.complete = False
                break

    def _reported(self, report: SweepReport) -> SweepReport:
        observability.unbind("site_id", "stripe_account", "subscription_id")
        if not report.complete:
            logger.info("Sweep stopped after %d entitlements; %s", report.due,
                        "the queue continues" if report.fanned_out else "the next run continues")
        logger.info("Sweep done: %s", report.as_dict())
        # Every run writes all four, zeros included: the alarm on SweepLeft
        # sees a run that left nothing, not a gap.
        for name, value in ((observability.SWEEP_DUE, report.due), (observability.SWEEP_REVOKED, report.revoked),
                            (observability.SWEEP_KEPT, report.kept), (observability.SWEEP_LEFT, report.left)):
            self._metrics.count(name, value)
        return report

    def _expire_all(self, items: List[EntitlementModel], report: SweepReport,
                    sites: Dict[str, Optional[ConnectionModel]],
                    time_left: Optional[Callable[[], float]], cause: Cause) -> bool:
        """Ask Stripe about each item, then write what it said together.
        False when time ran low before every item was asked (the rest stay due)."""
        sites.update(self._connections.get_many(site for site in {i.site_id for i in items} if site not in sites))
        readings: List[Tuple[EntitlementModel, Reading]] = []
        finished = True
        for item in items:
            if time_left is not None and time_left() < self._stop_with_seconds_left:
                finished = False
                break
            report.due += 1
            observability.bind(site_id=item.site_id, stripe_account=item.account_id,
                               subscription_id=item.subscription_id)
            read = self._read(item, sites.get(item.site_id), cause)
            if isinstance(read, Reading):
                readings.append((item, read))
            else:
                self._count(report, item, read)
        # One view of a subscription per write: another entitlement of the
        # same subscription (a member it passed from) waits for the next.
        while readings:
            once: Dict[Tuple[str, str], Tuple[EntitlementModel, Reading]] = {}
            later = []
            for item, reading in readings:
                key = (reading.site_id, reading.subscription_id)
                if key in once:
                    later.append((item, reading))
                else:
                    once[key] = (item, reading)
            written = self._writer.write([reading for _, reading in once.values()], self._clock())
            for key, outcome in _outcomes(once, written).items():
                self._count(report, once[key][0], outcome)
            readings = later
        return finished

    @staticmethod
    def _count(report: SweepReport, item: EntitlementModel, outcome: str) -> None:
        setattr(report, outcome, getattr(report, outcome) + 1)
        if outcome == LEFT:
            report.failures.append("%s/%s" % (item.site_id, item.subscription_id))

    def _read(self, item: EntitlementModel, connection: Optional[ConnectionModel],
              cause: Cause) -> Union[Reading, str]:
        """What to write for the item (a Reading), or the outcome when it is
        settled here: left for the next run, or ended on the stored date."""
        still_connected = (connection is not None and connection.status == CONNECTED
                           and connection.account_id == item.account_id)
        # Timed before Stripe is asked, as a webhook's view is: a delivery that
        # asked after this read must pass what this run writes.
        now = self._clock()
        subscription = None
        behind_since = None
        if still_connected:
            try:
                subscription = self._stripe.subscription(item.account_id, item.subscription_id)
                if subscription is not None:
                    behind_since = self._stripe.behind_since(item.account_id, subscription)
            except AccountNotConnected:
                # Revoked at Stripe before we heard of it: the stored date stands.
                subscription = None
            except StripeFailure as exc:
                # Never revoke on a guess: the entitlement stays due for the next run.
                logger.warning("Sweep left %s of %s for the next run: %s",
                               item.subscription_id, item.site_id, exc)
                return LEFT
        if subscription is None:
            reason = SUBSCRIPTION_PAST_DUE if item.state == PAST_DUE else PERIOD_ENDED
            # Only if nothing was written since the index showed it: a webhook
            # that arrived meanwhile wins, and of two sweeps at once one writes.
            if not end_as_stored(self._writer.connection, item, now, reason, cause):
                return CHANGED_MEANWHILE
            return REVOKED
        access = access_of(subscription, now, grace_of(connection), behind_since)
        if not access.grants and access.reason != SUBSCRIPTION_PAST_DUE:
            # Whatever Stripe's status now, this access ended with its period.
            access = with_reason(access, PERIOD_ENDED)
        # Whose it is now decides, as for a webhook: when it is another
        # member's (or nobody's), this one's access ends in the same write.
        # Only if nothing was written since the index showed it.
        return Reading(item.site_id, item.account_id, subscription, access,
                       max(microseconds(now), item.view_time + 1), None, expected=(item.member_key, item.view_time),
                       cause=cause)


def run_cause() -> Cause:
    """The access history's cause for what one run (or one shard's message) ends."""
    return Cause(SWEEP, "sweep_" + uuid.uuid4().hex[:16])


def _outcomes(once: Dict[Tuple[str, str], Tuple[EntitlementModel, Reading]],
              written: WriteResult) -> Dict[Tuple[str, str], str]:
    outcomes = {(view.site_id, view.subscription_id): CHANGED_MEANWHILE for view in written.stale}
    for view in written.written:
        item, reading = once[(view.site_id, view.subscription_id)]
        outcomes[(view.site_id, view.subscription_id)] = (
            REVOKED if view.user_id != item.user_id or not reading.access.grants else KEPT)
    return outcomes
