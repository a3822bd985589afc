"""The import of a connected account's subscriptions, and the hourly
catch-up with nothing missed.

Import: an account at the Stripe stand-in with SUBSCRIPTIONS subscriptions,
one customer each (85% active, 10% trialing, 5% past_due; one customer in
200 names no member; one subscription in 10 holds two of the PRODUCTS), and
REREADS entitlements stored before the import that the listing will not show:
granting, on subscriptions that ended while nobody listened (half canceled at
Stripe, half gone from it). The site connects as an admin does, which starts
the import; the work queue is then drained into `sync_worker` while Stripe's
and AWS's requests are counted, per message.

Catch-up: ACCOUNTS sites, each connected to an account of its own whose
member subscribed an hour before the connection, so that every event Stripe
holds for it is older than the connection (the stand-in counts an event it
never delivered as pending, and has no way to mark one delivered). Then
`catch_up` fans out and the queue is drained."""
import math
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Dict, List, Optional

from tests.helpers import AWS_CALLS, AccessEventsInbox

from chalice.test import Client
from moto.core.model_instances import reset_model_data

from local import moto_transactions

from bench.report import Targets, number, seconds, table
from bench.world import AWS_TIME, BenchError, aws, connect_site

# The requests per page, which the targets hold, do not depend on the size;
# the month start's import (bench/month_start.py) measures 10,000 and more on
# a simulated clock.
SUBSCRIPTIONS = 2_500
SIZE_NOTE = ("Measured with %s subscriptions: the requests per page do not depend on the size (the month start's "
             "import measures 10,000 and more).")
PRODUCTS = 5
# Products 0..NAMED_PRODUCTS-1 carry CustomerHub's id in their metadata.
NAMED_PRODUCTS = 3
REREADS = 50
UNMATCHED_EVERY = 200
TWO_PRODUCTS_EVERY = 10
ACCOUNTS = 100
PAGE = 100
DYNAMODB_PER_SUBSCRIPTION = 1.1
SITE = "site_bench_import"
ACCOUNT = "acct_bench_import"
# The announcements are read back up to this size: moto spends tens of
# milliseconds on each stream record (the stream, EventBridge's rule, the
# queue read back), twice as long as the import itself.
ANNOUNCE_UP_TO = 2_500
STREAM_READING = {("dynamodb", "DescribeTable")}
# The ceiling's lanes: one item of the rate limits table, which the import
# and the catch-up write nothing else to.
CEILING_TABLE = "stripe-connector-rate-limits"
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
# What the queue's consumer (Lambda's event source mapping) asks of SQS, not the connector.
CONSUMING = ("ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility")
LIST_PAGE, PRODUCT_READ, REREAD, OPEN_INVOICES, OTHER = (
    "list pages", "product reads", "re-reads", "open invoices", "other")


def status_of(index: int) -> str:
    rest = index % 20
    if rest in (1, 2):
        return "trialing"
    if rest == 3:
        return "past_due"
    return "active"


def product_id(index: int) -> str:
    return "prod_bench_%d" % index


def products_of(index: int) -> List[str]:
    first = index % PRODUCTS
    if index % TWO_PRODUCTS_EVERY == 0:
        return [product_id(first), product_id((first + 1) % PRODUCTS)]
    return [product_id(first)]


def is_matched(index: int) -> bool:
    return index % UNMATCHED_EVERY != UNMATCHED_EVERY - 1


def kind_of(request: dict) -> str:
    method, path = request["method"], request["path"]
    if method == "GET" and path == "/v1/subscriptions":
        return LIST_PAGE
    if method == "GET" and path.startswith("/v1/products/"):
        return PRODUCT_READ
    if method == "GET" and path.startswith("/v1/subscriptions/"):
        return REREAD
    if method == "GET" and path == "/v1/invoices":
        return OPEN_INVOICES
    return OTHER


def dynamodb_of(calls: Counter) -> Counter:
    return Counter({op: n for (service, op), n in calls.items() if service == "dynamodb" and n})


def by_operation(counts: Counter) -> str:
    return ", ".join("%s %s" % (op, number(n)) for op, n in sorted(counts.items()) if n) or "-"


@dataclass
class Phase:
    """The messages of one kind of page: listing, or re-reading."""
    messages: int = 0
    stripe: Counter = field(default_factory=Counter)
    dynamodb: Counter = field(default_factory=Counter)
    sqs: Counter = field(default_factory=Counter)


@dataclass
class Expected:
    by_status: Counter = field(default_factory=Counter)
    matched: int = 0
    granted: int = 0
    revoked: int = 0

    @property
    def listed(self) -> int:
        return sum(self.by_status.values())


@dataclass
class ImportRun:
    size: int
    expected: Expected
    seed_seconds: float = 0.0
    seconds: float = 0.0
    in_aws: float = 0.0
    queue: Dict[str, int] = field(default_factory=dict)
    record: Dict[str, object] = field(default_factory=dict)
    phases: Dict[str, Phase] = field(default_factory=dict)
    announcements: Optional["Announcements"] = None

    @property
    def stripe(self) -> Counter:
        total: Counter = Counter()
        for phase in self.phases.values():
            total.update(phase.stripe)
        return total

    @property
    def dynamodb(self) -> Counter:
        total: Counter = Counter()
        for phase in self.phases.values():
            total.update(phase.dynamodb)
        return total

    @property
    def imported(self) -> int:
        return int(self.record.get("subscriptions", 0)) + int(self.record.get("reread", 0))


@dataclass
class CatchUpRun:
    accounts: int
    setup_seconds: float = 0.0
    seconds: float = 0.0
    fanned_out: Dict[str, int] = field(default_factory=dict)
    queue: Dict[str, int] = field(default_factory=dict)
    stripe: Counter = field(default_factory=Counter)
    accounts_asked: int = 0
    dynamodb: Counter = field(default_factory=Counter)
    sqs: Counter = field(default_factory=Counter)
    # Writes leasing Stripe slots (chalicelib/stripe_ceiling.py), in dynamodb
    # but not the catch-up's own.
    leases: int = 0

    @property
    def writes(self) -> int:
        return sum(n for op, n in self.dynamodb.items() if op in WRITES) - self.leases


class CountingWorker:
    """sync_worker as the queue hands it messages, with each message's
    Stripe and AWS requests put down to the kind of page it was: a listing
    page asks Stripe for a list of subscriptions, a re-read page never does.
    `after` runs after each message, outside what is counted and timed."""

    def __init__(self, sandbox, phases: Dict[str, Phase], after: Optional[Callable[[], None]] = None):
        from app import sync_worker
        self._worker = sync_worker
        self._sandbox = sandbox
        self._phases = phases
        self._after = after
        self.seconds = 0.0
        self.in_aws = 0.0

    def __call__(self, event, context):
        calls_before = Counter(AWS_CALLS.calls)
        stripe_before = len(self._sandbox.requests)
        aws_before = AWS_TIME.total
        started = time.perf_counter()
        try:
            return self._worker(event, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.in_aws += AWS_TIME.total - aws_before
            calls = Counter(AWS_CALLS.calls)
            calls.subtract(calls_before)
            asked = Counter(kind_of(r) for r in self._sandbox.requests[stripe_before:])
            phase = self._phases.setdefault("listing" if asked[LIST_PAGE] else "re-reading", Phase())
            phase.messages += 1
            phase.stripe.update(asked)
            phase.dynamodb.update(dynamodb_of(calls))
            phase.sqs.update({op: n for (service, op), n in calls.items() if service == "sqs" and n})
            # moto keeps every model object it made for its dashboard, the
            # tables' copies its transactions take among them: gigabytes
            # after a few hundred pages. The local stack drops them after
            # each request too.
            reset_model_data()
            if self._after is not None:
                self._after()


class Announcements:
    """What announce_access makes of the entitlements stream, read back
    after each page: moto's SQS answers a receive in time that grows with
    the messages waiting, so they are not left to pile up."""

    def __init__(self, inbox: AccessEventsInbox):
        self._inbox = inbox
        self.seconds = 0.0
        self.stream_records = 0
        self.puts = 0
        self.dynamodb: Counter = Counter()
        self.heard: Counter = Counter()

    def __call__(self) -> None:
        calls_before = Counter(AWS_CALLS.calls)
        started = time.perf_counter()
        self.stream_records += self._inbox.pump.drain()
        self.heard.update(event["type"] for event in self._inbox.drain())
        self.seconds += time.perf_counter() - started
        calls = Counter(AWS_CALLS.calls)
        calls.subtract(calls_before)
        self.puts += calls[("eventbridge", "PutEvents")]
        self.dynamodb.update({op: n for (service, op), n in calls.items()
                              if service == "dynamodb" and (service, op) not in STREAM_READING and n})


def seed_account(sandbox, size: int, now: int) -> Expected:
    expected = Expected()
    sandbox.create_account(id=ACCOUNT, display_name="Bench Import Club")
    for index in range(PRODUCTS):
        metadata = {"customerhub_product_id": "club_%d" % index} if index < NAMED_PRODUCTS else None
        sandbox.create_product(ACCOUNT, name="Class %d" % index, id=product_id(index), metadata=metadata)
    for index in range(size):
        customer_id = "cus_bench_%05d" % index
        metadata = {"customerhub_user_id": "user_bench_%05d" % index} if is_matched(index) else {}
        sandbox.create_customer(ACCOUNT, id=customer_id, metadata=metadata)
        status = status_of(index)
        sandbox.create_subscription(ACCOUNT, customer_id, products_of(index), status=status,
                                    id="sub_bench_%05d" % index)
        expected.by_status[status] += 1
        if is_matched(index):
            expected.matched += 1
            expected.granted += len(products_of(index))
    # Half of what ended meanwhile is canceled at Stripe, half gone from it.
    for index in range(0, REREADS, 2):
        customer_id = "cus_bench_ended_%03d" % index
        sandbox.create_customer(ACCOUNT, id=customer_id, metadata={"customerhub_user_id": "user_ended_%03d" % index})
        sandbox.create_subscription(ACCOUNT, customer_id, [product_id(index % PRODUCTS)], status="canceled",
                                    period_start=now - 40 * 24 * 3600, period_end=now - 10 * 24 * 3600,
                                    id="sub_bench_ended_%03d" % index)
    expected.revoked = REREADS
    return expected


def seed_ended_entitlements(now: datetime) -> None:
    """Granting entitlements written by an earlier import, a day old, whose
    subscriptions ended while the site was disconnected."""
    from chalicelib.access import Access, Product
    from chalicelib.entitlements import View, entitlement_item, microseconds
    from chalicelib.models import EntitlementModel

    view_time = microseconds(now - timedelta(days=1))
    with EntitlementModel.batch_write() as batch:
        for index in range(REREADS):
            stripe_product = product_id(index % PRODUCTS)
            named = "club_%d" % (index % PRODUCTS) if index % PRODUCTS < NAMED_PRODUCTS else stripe_product
            access = Access("active", True, now + timedelta(days=20), "subscription_active",
                            (Product(named, stripe_product),))
            batch.save(entitlement_item(View(
                site_id=SITE, user_id="user_ended_%03d" % index, account_id=ACCOUNT,
                customer_id="cus_bench_ended_%03d" % index, subscription_id="sub_bench_ended_%03d" % index,
                stripe_status="active", access=access, view_time=view_time, stripe_event_id=None), now))


def work_pump(handler):
    import boto3
    from chalicelib.settings import get_settings
    from local.queues import QueuePump
    return QueuePump(boto3.client("sqs", region_name=get_settings().aws_region), handler, retry_after=0)


def measure_import(sandbox, size: int, announce: bool) -> ImportRun:
    from app import app
    from chalicelib.models import ImportModel
    from chalicelib.settings import get_settings

    sandbox.reset()
    # moto's own TransactWriteItems deep-copies every table, streams
    # included, to roll back on failure: a page's write would cost seconds
    # after a few thousand. Measured with the local stack's mend of it.
    with moto_transactions.installed(), aws(), Client(app, project_dir=tempfile.mkdtemp()) as client:
        print("  seeding %s subscriptions at the stand-in ..." % number(size), file=sys.stderr, flush=True)
        started = time.perf_counter()
        now = datetime.now(timezone.utc)
        expected = seed_account(sandbox, size, int(now.timestamp()))
        seed_ended_entitlements(now)
        run = ImportRun(size, expected, seed_seconds=time.perf_counter() - started)
        if announce:
            inbox = AccessEventsInbox(get_settings())
            inbox.pump.skip_to_end()
            run.announcements = Announcements(inbox)
        connect_site(client.http, sandbox, SITE, ACCOUNT)
        print("  seeded in %s; importing ..." % seconds(run.seed_seconds), file=sys.stderr, flush=True)
        worker = CountingWorker(sandbox, run.phases, after=run.announcements)
        with AWS_CALLS.counting():
            run.queue = work_pump(worker).drain()
        run.seconds, run.in_aws = worker.seconds, worker.in_aws
        record = ImportModel.get(SITE)
        run.record = {name: getattr(record, name) for name in
                      ("state", "failure", "page", "subscriptions", "matched", "unmatched", "reread")}
        if record.state != "done" or run.queue.get("failed"):
            raise BenchError("The import ended %s (%s) with %d failed messages"
                             % (record.state, record.failure, run.queue.get("failed", 0)))
    return run


def quiet_account(index: int) -> str:
    return "acct_bench_quiet_%03d" % index


def seed_quiet_accounts(sandbox, accounts: int) -> None:
    """Sites connected to accounts of their own, each with a member who
    subscribed an hour before the connection."""
    from chalicelib import services
    from chalicelib.connections import CONNECTED
    from chalicelib.models import ConnectionModel

    # What the stand-in records is stamped by its clock: an hour back, each
    # account's events are older than its connection.
    clock = sandbox.clock
    sandbox.clock = lambda: clock() - 3600
    try:
        for index in range(accounts):
            account, suffix = quiet_account(index), "%03d" % index
            sandbox.create_account(id=account, display_name="Quiet %d" % index)
            sandbox.create_product(account, name="Gym", id="prod_bench_quiet_" + suffix)
            sandbox.create_customer(account, id="cus_bench_quiet_" + suffix,
                                    metadata={"customerhub_user_id": "user_quiet_" + suffix})
            sandbox.create_subscription(account, "cus_bench_quiet_" + suffix, ["prod_bench_quiet_" + suffix])
    finally:
        sandbox.clock = clock
    gateway = services.get_stripe_gateway()
    now = datetime.now(timezone.utc)
    for index in range(accounts):
        account = quiet_account(index)
        gateway.exchange_code(sandbox.issue_code(account))
        ConnectionModel("site_bench_quiet_%03d" % index, status=CONNECTED, account_id=account,
                        last_account_id=account, display_name="Quiet %d" % index, livemode=False,
                        connected_at=now, connected_by="admin_bench").save()


def measure_catch_up(sandbox, accounts: int) -> CatchUpRun:
    from app import catch_up, sync_worker
    from chalicelib.settings import get_settings
    from local.scheduled import scheduled_event

    run = CatchUpRun(accounts)
    sandbox.reset()
    with aws():
        started = time.perf_counter()
        seed_quiet_accounts(sandbox, accounts)
        run.setup_seconds = time.perf_counter() - started
        pump = work_pump(sync_worker)
        stripe_before = len(sandbox.requests)
        with AWS_CALLS.counting() as calls:
            started = time.perf_counter()
            run.fanned_out = catch_up(scheduled_event(get_settings().aws_region), None)
            run.queue = pump.drain()
            run.seconds = time.perf_counter() - started
        asked = sandbox.requests[stripe_before:]
        run.stripe = Counter("%s %s" % (r["method"], r["path"]) for r in asked)
        run.accounts_asked = len({r["stripe_account"] for r in asked if r["path"] == "/v1/events"})
        run.dynamodb = dynamodb_of(calls.calls)
        run.leases = calls.on(CEILING_TABLE)
        run.sqs = Counter({op: n for (service, op), n in calls.calls.items()
                           if service == "sqs" and op not in CONSUMING and n})
        if run.queue.get("failed"):
            raise BenchError("%d catch-up messages failed" % run.queue["failed"])
    return run


def run(sandbox, targets: Targets, size: int = SUBSCRIPTIONS, accounts: int = ACCOUNTS,
        announce_up_to: int = ANNOUNCE_UP_TO) -> str:
    print("import of %s subscriptions:" % number(size), file=sys.stderr, flush=True)
    imported = measure_import(sandbox, size, announce=size <= announce_up_to)
    print("catch-up of %s accounts ..." % number(accounts), file=sys.stderr, flush=True)
    caught_up = measure_catch_up(sandbox, accounts)
    return render(imported, caught_up, targets, announce_up_to)


def render(r: ImportRun, c: CatchUpRun, targets: Targets, announce_up_to: int) -> str:
    from chalicelib.access import GRANTING_STATUSES
    from chalicelib.imports import REREADS_PER_PAGE

    e = r.expected
    size = "import of %s" % number(r.size)
    stripe = r.stripe
    pages = {status: max(1, math.ceil(e.by_status[status] / PAGE)) for status in GRANTING_STATUSES}
    # A past-due subscription's grace runs from its oldest open invoice: one
    # list of them each, and only for those.
    past_due = e.by_status["past_due"]
    stripe_bound = sum(pages.values()) + PRODUCTS + REREADS + past_due
    stripe_target = targets.at_most("%s: Stripe requests (pages + products + re-reads + open invoices)" % size,
                                    sum(stripe.values()), stripe_bound)
    dynamodb_total = sum(r.dynamodb.values())
    per_subscription = dynamodb_total / r.imported if r.imported else float("inf")
    dynamodb_target = targets.at_most("%s: DynamoDB requests per imported subscription" % size,
                                      per_subscription, DYNAMODB_PER_SUBSCRIPTION, 2)
    counted = tuple(int(r.record.get(name, 0)) for name in ("subscriptions", "matched", "reread"))
    wanted = (e.listed, e.matched, REREADS)
    targets.equal("%s: subscriptions / matched / re-read" % size, " / ".join(number(n) for n in counted),
                  " / ".join(number(n) for n in wanted), counted == wanted)

    seed_rows = [(number(r.size), ", ".join("%s %s" % (s, number(e.by_status[s])) for s in GRANTING_STATUSES),
                  number(e.listed - e.matched), number(PRODUCTS), number(REREADS), seconds(r.seed_seconds))]
    stripe_rows = [
        (LIST_PAGE, number(stripe[LIST_PAGE]), number(sum(pages.values())),
         " + ".join("%s %d" % (status, n) for status, n in pages.items())),
        (PRODUCT_READ, number(stripe[PRODUCT_READ]), number(PRODUCTS), "one per distinct product"),
        (REREAD, number(stripe[REREAD]), number(REREADS), "one per entitlement the listing did not show"),
        (OPEN_INVOICES, number(stripe[OPEN_INVOICES]), number(past_due), "one per past-due subscription listed"),
        (OTHER, number(stripe[OTHER]), "0", ""),
        ("total", number(sum(stripe.values())), "<= " + number(stripe_bound), stripe_target.verdict),
    ]
    phase_rows = []
    for name, handled in (("listing", counted[0]), ("re-reading", counted[2])):
        phase = r.phases.get(name, Phase())
        total = sum(phase.dynamodb.values())
        phase_rows.append((name, number(phase.messages), number(handled), number(total),
                           number(total / handled, 2) if handled else "-", "", "",
                           by_operation(phase.dynamodb), by_operation(phase.sqs)))
    phase_rows.append(("all", number(sum(p.messages for p in r.phases.values())), number(r.imported),
                       number(dynamodb_total), number(per_subscription, 2),
                       "<= " + number(DYNAMODB_PER_SUBSCRIPTION, 2), dynamodb_target.verdict,
                       by_operation(r.dynamodb), by_operation(sum((p.sqs for p in r.phases.values()), Counter()))))
    speed_rows = [(number(r.size), number(r.imported), number(r.queue.get("handled", 0)), seconds(r.seconds),
                   seconds(r.in_aws), number(r.imported / r.seconds if r.seconds else 0, 1))]

    a = r.announcements
    if a is not None:
        heard = (a.heard.get("AccessGranted", 0), a.heard.get("AccessRevoked", 0))
        targets.equal("%s: announcements (granted / revoked)" % size, " / ".join(number(n) for n in heard),
                      "%s / %s" % (number(e.granted), number(e.revoked)), heard == (e.granted, e.revoked))
        announce_rows = [(number(a.stream_records), number(a.puts), number(sum(a.dynamodb.values())),
                          by_operation(a.dynamodb), number(heard[0]), number(e.granted), number(heard[1]),
                          number(e.revoked), seconds(a.seconds))]
        announce_notes = ("Expected: AccessGranted once per product of each matched subscription, AccessRevoked "
                          "once per product of each ended one.",
                          "Read back after each page (the stream into announce_access, then the queue on the "
                          "bus): outside the import's counts and time.")
    else:
        announce_rows = []
        announce_notes = ("Not measured above %s subscriptions: moto spends tens of milliseconds on each stream "
                          "record (the stream, EventBridge's rule, the queue read back), twice as long as the "
                          "import itself." % number(announce_up_to),)

    catch_up_stripe = targets.at_most("catch-up of %d accounts, nothing missed: Stripe requests" % c.accounts,
                                      sum(c.stripe.values()), c.accounts)
    # One per account: when its catch-up ran (the card's events.last_caught_up_at).
    catch_up_writes = targets.at_most("catch-up of %d accounts, nothing missed: DynamoDB writes" % c.accounts,
                                      c.writes, c.accounts)
    if c.accounts_asked != c.accounts:
        targets.failed("catch-up: every account asked once", "%d of %d" % (c.accounts_asked, c.accounts))
    catch_up_rows = [(number(c.accounts), number(c.fanned_out.get("accounts", 0)),
                      number(sum(c.stripe.values())), "<= " + number(c.accounts), catch_up_stripe.verdict,
                      number(c.accounts_asked), by_operation(c.stripe),
                      number(c.writes), "<= " + number(c.accounts), catch_up_writes.verdict,
                      number(sum(c.dynamodb.values())),
                      by_operation(c.dynamodb), by_operation(c.sqs), seconds(c.seconds))]

    return "\n".join([
        table("Import: the account at the Stripe stand-in, and what was stored before  (%s subscriptions)"
              % number(r.size),
              ("subscriptions", "listed by status", "naming nobody", "products", "ended meanwhile", "seeded in"),
              seed_rows, align="rlrrrr",
              notes=("One subscription in %d holds two products. Ended meanwhile: granting entitlements stored a "
                     "day before, half canceled at Stripe, half gone from it." % TWO_PRODUCTS_EVERY,
                     SIZE_NOTE % number(r.size))),
        table("Import: Stripe requests while the work queue was drained",
              ("kind", "requests", "target", "how the target counts"), stripe_rows, align="lrrl",
              notes=("Target: ceil(n/%d) list pages per status, at least one each; one read per distinct product; "
                     "one read per entitlement to re-read; one list of open invoices per past-due subscription." % PAGE,)),
        table("Import: DynamoDB and SQS requests by kind of page (sync_worker, one message a page)",
              ("pages", "messages", "subscriptions", "DynamoDB", "per subscription", "target", "",
               "DynamoDB by operation", "SQS sent by the worker"),
              phase_rows, align="lrrrrrlll",
              notes=("listing: %d subscriptions a page; re-reading: %d entitlements a page (a query of the grants "
                     "index, then a Stripe read and a conditional write each)." % (PAGE, REREADS_PER_PAGE),
                     "Receiving and deleting the messages is the event source mapping's, not counted.")),
        table("Import: speed in-process (sync_worker -> moto; stripe-python -> stand-in on loopback)",
              ("subscriptions", "imported", "messages", "worker time", "in AWS calls", "imported/s"), speed_rows,
              notes=("Report only. The time grows with what is stored: moto copies every table on each "
                     "TransactWriteItems (here with local/moto_transactions.py's mend, as the local stack runs).",)),
        table("Import: announcements (announce_access on the entitlements stream)",
              ("stream records", "PutEvents", "DynamoDB", "DynamoDB by operation", "AccessGranted", "expected",
               "AccessRevoked", "expected", "time"), announce_rows, align="rrrlrrrrr", notes=announce_notes),
        table("Catch-up with nothing missed (catch_up, then the work queue drained)",
              ("accounts", "queued", "Stripe", "target", "", "accounts asked", "Stripe by request",
               "DynamoDB writes", "target", "", "DynamoDB", "DynamoDB by operation", "SQS sent", "time"),
              catch_up_rows, align="rrrrlrlrrlrllr",
              notes=("Each account's member subscribed an hour before its site connected: every event the "
                     "stand-in holds for the account is older than the connection.",
                     "Sites seeded as connected (with the platform's grant at the stand-in) in %s. SQS sent: the "
                     "connector's requests; receiving and deleting are the event source mapping's."
                     % seconds(c.setup_seconds),
                     "DynamoDB writes: the catch-up's own; the %d writes leasing Stripe slots "
                     "(chalicelib/stripe_ceiling.py) are in DynamoDB." % c.leases)),
    ])
