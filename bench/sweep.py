"""The scheduled sweep (`expire_access`: services.get_sweep().run()) with the
same 100 due entitlements among 1,000 and among 100,000 stored.

Seeded straight into DynamoDB (entitlement_item + batch_write):
- not due: 90% granting until 1 to 60 days ahead (in the due-index, not
  due yet), 10% ended already (out of the index);
- due: granting, access_until 1 to 24 hours ago. Half are on connected
  sites and their subscriptions are canceled at the Stripe stand-in (the
  sweep reads Stripe and revokes); half are on disconnected sites (the
  stored date is trusted, Stripe is not asked).
The counts should not depend on how much is stored; the time in-process
does, because moto answers a query on an index by scanning the table."""
import gc
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import List, Tuple

from tests.helpers import AWS_CALLS, AccessEventsInbox

from local import moto_transactions

# The Stripe ceiling's lanes (chalicelib/stripe_ceiling.py) are one item of this table.
CEILING_TABLE = "stripe-connector-rate-limits"
from bench.report import Targets, number, seconds, table
from bench.world import AWS_TIME, BenchError, aws, stripe_requests

SIZES = (1_000, 100_000)
DUE = 100
ACCOUNT = "acct_bench_gym"
PRODUCT = "prod_bench_gym"
CONNECTED_SITES = 20
DUE_CONNECTED_SITES = 5
DISCONNECTED_SITES = 5
# The announcements of the sweep's revocations are measured when the stream
# holding the seeded items can be skipped in reasonable time: moto reads
# stream records at about 2 ms each.
ANNOUNCE_UP_TO = 10_000
STREAM_READING = {("dynamodb", "DescribeTable")}


@dataclass
class Run:
    stored: int
    due_seeded: int
    seed_seconds: float = 0.0
    seed_requests: int = 0
    sweep_seconds: float = 0.0
    sweep_in_aws: float = 0.0
    dynamodb: Counter = field(default_factory=Counter)
    leases: int = 0
    items_read: int = 0
    stripe: int = 0
    report: dict = field(default_factory=dict)
    announced: bool = False
    stream_records: int = 0
    puts: int = 0
    announce_dynamodb: Counter = field(default_factory=Counter)
    heard: Counter = field(default_factory=Counter)

    @property
    def counts(self) -> Tuple[int, int, int, int]:
        return (sum(self.dynamodb.values()), self.items_read, self.stripe, self.report.get("revoked", -1))


def live_site(index: int) -> str:
    return "site_live_%02d" % index


def gone_site(index: int) -> str:
    return "site_gone_%02d" % index


def seed_connections(now: datetime) -> None:
    from chalicelib.connections import BY_ADMIN, CONNECTED, DISCONNECTED
    from chalicelib.models import ConnectionModel

    for index in range(CONNECTED_SITES):
        ConnectionModel(live_site(index), status=CONNECTED, account_id=ACCOUNT, last_account_id=ACCOUNT,
                        display_name="Bench Gym", livemode=False, connected_at=now,
                        connected_by="admin_bench").save()
    for index in range(DISCONNECTED_SITES):
        ConnectionModel(gone_site(index), status=DISCONNECTED, account_id=None, last_account_id=ACCOUNT,
                        display_name="Bench Gym", livemode=False, disconnected_at=now,
                        disconnected_reason=BY_ADMIN).save()


def seed_stripe(sandbox, due_connected: List[Tuple[str, int]], now: datetime) -> None:
    """The platform connected to the account, and the due subscriptions of
    connected sites, canceled."""
    from chalicelib import services

    sandbox.create_account(id=ACCOUNT, display_name="Bench Gym")
    services.get_stripe_gateway().exchange_code(sandbox.issue_code(ACCOUNT))
    sandbox.create_product(ACCOUNT, name="Gym", id=PRODUCT)
    for subscription_id, ended in due_connected:
        customer_id = "cus" + subscription_id[3:]
        sandbox.create_customer(ACCOUNT, id=customer_id, metadata={"customerhub_user_id": "user" + subscription_id[3:]})
        sandbox.create_subscription(ACCOUNT, customer_id, [PRODUCT], status="canceled",
                                    period_start=ended - 30 * 24 * 3600, period_end=ended, id=subscription_id)


def entitlements(stored: int, due: int, now: datetime):
    """The items to store, and the (subscription, period end) of the due ones
    on connected sites."""
    from chalicelib.access import Access, Product
    from chalicelib.entitlements import View, entitlement_item, microseconds

    products = (Product("gym", PRODUCT),)
    view_time = microseconds(now - timedelta(days=1))
    items, due_connected = [], []

    def item(site_id, user_id, subscription_id, status, access):
        return entitlement_item(View(
            site_id=site_id, user_id=user_id, account_id=ACCOUNT, customer_id="cus" + subscription_id[3:],
            subscription_id=subscription_id, stripe_status=status, access=access, view_time=view_time,
            stripe_event_id="evt_seed" + subscription_id[3:]), now)

    for index in range(due):
        until = (now - timedelta(hours=1 + index % 24)).replace(microsecond=0)
        access = Access("active", True, until, "subscription_active", products)
        if index % 2 == 0:
            subscription_id = "sub_due_%03d" % index
            site_id = live_site(index // 2 % DUE_CONNECTED_SITES)
            due_connected.append((subscription_id, int(until.timestamp())))
        else:
            subscription_id = "sub_gone_%03d" % index
            site_id = gone_site(index // 2 % DISCONNECTED_SITES)
        items.append(item(site_id, "user" + subscription_id[3:], subscription_id, "active", access))
    for index in range(stored - due):
        subscription_id = "sub_m_%06d" % index
        days = timedelta(days=1 + index % 60)
        if index % 10 == 9:
            access = Access("expired", False, now - days, "subscription_canceled", products)
            status = "canceled"
        else:
            access = Access("active", True, now + days, "subscription_active", products)
            status = "active"
        items.append(item(live_site(index % CONNECTED_SITES), "user" + subscription_id[3:], subscription_id,
                          status, access))
    return items, due_connected


def measure(sandbox, stored: int, due: int = DUE) -> Run:
    from chalicelib import services
    from chalicelib.models import EntitlementModel

    run = Run(stored, due)
    sandbox.reset()
    # The sweep writes a due entitlement in a transaction (with whose the
    # subscription is); moto copies whole tables on each one unless mended,
    # as the local stack does.
    with moto_transactions.installed(), aws():
        now = datetime.now(timezone.utc)
        items, due_connected = entitlements(stored, due, now)
        seed_connections(now)
        seed_stripe(sandbox, due_connected, now)
        print("  seeding %s entitlements into moto ..." % number(stored), file=sys.stderr, flush=True)
        # moto keeps the table in this process: the collector would walk
        # every stored item again and again. Paused while seeding, and the
        # seeded objects set aside from later collections.
        gc.collect()
        gc.disable()
        try:
            with AWS_CALLS.counting() as calls:
                started = time.perf_counter()
                with EntitlementModel.batch_write() as batch:
                    for entitlement in items:
                        batch.save(entitlement)
                run.seed_seconds = time.perf_counter() - started
        finally:
            del items
            gc.enable()
            gc.freeze()
        run.seed_requests = calls.of("dynamodb")
        inbox = None
        if stored <= ANNOUNCE_UP_TO:
            from chalicelib.settings import get_settings
            inbox = AccessEventsInbox(get_settings())
            inbox.pump.skip_to_end()
        print("  seeded in %s; sweeping ..." % seconds(run.seed_seconds), file=sys.stderr, flush=True)
        sweep = services.get_sweep()
        stripe_before = stripe_requests(sandbox)
        with AWS_CALLS.counting() as calls:
            aws_before = AWS_TIME.total
            started = time.perf_counter()
            report = sweep.run()
            run.sweep_seconds = time.perf_counter() - started
            run.sweep_in_aws = AWS_TIME.total - aws_before
        run.stripe = stripe_requests(sandbox) - stripe_before
        run.dynamodb = Counter({op: n for (service, op), n in calls.calls.items() if service == "dynamodb"})
        # The ceiling's lease writes follow how long the run takes (moto's
        # index scans grow with what is stored), not what it reads or ends:
        # counted apart.
        run.leases = calls.on(CEILING_TABLE)
        run.dynamodb["UpdateItem"] -= run.leases
        run.dynamodb = +run.dynamodb
        run.items_read = calls.items_read
        run.report = report.as_dict()
        if report.failures:
            raise BenchError("The sweep left %d entitlements: %s" % (len(report.failures), report.failures[:5]))
        if inbox is not None:
            with AWS_CALLS.counting() as calls:
                run.stream_records = inbox.pump.drain()
                run.heard = Counter(event["type"] for event in inbox.drain())
            run.announced = True
            run.puts = calls.calls[("eventbridge", "PutEvents")]
            run.announce_dynamodb = Counter({op: n for (service, op), n in calls.calls.items()
                                             if service == "dynamodb" and (service, op) not in STREAM_READING})
    gc.unfreeze()
    return run


def run(sandbox, targets: Targets, sizes=SIZES) -> str:
    from chalicelib.entitlements import DUE_SHARDS
    from chalicelib.sweep import MAX_PER_RUN, PAGE_SIZE

    runs = []
    for stored in sizes:
        print("sweep among %s stored:" % number(stored), file=sys.stderr, flush=True)
        runs.append(measure(sandbox, stored))
    # The page the sweep asks for: its page size, or its share of a run per
    # shard when that is smaller.
    page = min(PAGE_SIZE, -(-MAX_PER_RUN // DUE_SHARDS))
    return render(runs, targets, DUE_SHARDS, page)


def render(runs: List[Run], targets: Targets, shards: int, page_size: int) -> str:
    seed_rows, sweep_rows, announce_rows = [], [], []
    for r in runs:
        if r.announced:
            announce_rows.append((
                number(r.stored), number(r.report.get("revoked", 0)), number(r.stream_records), number(r.puts),
                number(sum(r.announce_dynamodb.values())),
                ", ".join("%s %s" % (op, number(n)) for op, n in sorted(r.announce_dynamodb.items())) or "-",
                ", ".join("%s %s" % (kind, number(n)) for kind, n in sorted(r.heard.items())) or "-",
            ))
        seed_rows.append((number(r.stored), number(r.due_seeded), number(r.seed_requests), seconds(r.seed_seconds),
                          number(r.stored / r.seed_seconds if r.seed_seconds else 0)))
        bound = r.due_seeded + shards * page_size
        read_target = targets.at_most("sweep among %s: DynamoDB items read (due + %d shards x %d)"
                                      % (number(r.stored), shards, page_size), r.items_read, bound)
        targets.equal("sweep among %s: revoked" % number(r.stored), number(r.report.get("revoked", 0)),
                      number(r.due_seeded), r.report.get("revoked") == r.due_seeded)
        sweep_rows.append((
            number(r.stored), number(r.report.get("due", 0)), number(r.report.get("revoked", 0)),
            number(r.report.get("kept", 0)), number(r.report.get("left", 0)),
            number(sum(r.dynamodb.values())),
            ", ".join("%s %s" % (op, number(n)) for op, n in sorted(r.dynamodb.items())),
            number(r.items_read), "<= " + number(bound), read_target.verdict,
            number(r.stripe), seconds(r.sweep_seconds), seconds(r.sweep_in_aws),
        ))
    if len(runs) > 1:
        first = runs[0]
        for r in runs[1:]:
            targets.equal("sweep: same counts among %s and %s stored" % (number(first.stored), number(r.stored)),
                          " / ".join(number(n) for n in r.counts),
                          " / ".join(number(n) for n in first.counts), r.counts == first.counts)
    same = "; ".join("%s: %s" % (number(r.stored), " / ".join(number(n) for n in r.counts)) for r in runs)
    return "\n".join([
        table("Sweep: seeding the entitlements table (EntitlementModel.batch_write into moto, collector paused)",
              ("stored", "due", "BatchWriteItem", "time", "items/s"), seed_rows),
        table("Sweep: one run of expire_access (services.get_sweep().run())",
              ("stored", "due", "revoked", "kept", "left", "DynamoDB", "DynamoDB by operation",
               "items read", "target", "", "Stripe", "wall time", "in AWS calls"),
              sweep_rows, align="rrrrrrlrllrrr",
              notes=("items read: Items/Item in DynamoDB answers (index pages and site reads).",
                     "Counts (DynamoDB requests / items read / Stripe calls / revoked) should not depend on "
                     "what is stored: " + same + ".",
                     "Wall time grows with what is stored because moto evaluates an index query by scanning "
                     "every item of the table; DynamoDB reads only the matching index range.")),
        table("Sweep: announcing its revocations (announce_access on the entitlements stream, after the run)",
              ("stored", "revoked", "stream records", "PutEvents", "DynamoDB", "DynamoDB by operation",
               "announcements"),
              announce_rows, align="rrrrrll",
              notes=("Measured up to %s stored: the stream is first read past the seeded items, which moto does "
                     "at about 2 ms a record." % number(ANNOUNCE_UP_TO),)),
    ])
