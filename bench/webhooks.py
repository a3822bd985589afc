"""The webhook pipeline, per kind of event: what one delivery costs at the
webhook's acknowledgement (one SQS send), what handling it costs in
`stripe_events` (DynamoDB, Stripe), what it costs afterwards in
`announce_access` (the entitlements stream's consumer: EventBridge PutEvents
and its own DynamoDB reads), and how many events a second go through
in-process.

Each delivery goes through `chalice.test.Client` to POST /webhooks/stripe,
signed as Stripe signs it; then the events queue is drained into
`stripe_events` (as Lambda's trigger would), the stream into
`announce_access` (tests.helpers.AccessEventsInbox), and the announcements
that reached EventBridge are read back."""
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from tests.helpers import AWS_CALLS, AccessEventsInbox, signed, stripe_event

from chalice.test import Client

from bench.report import Targets, millis, number, table, verdict_of
from bench.world import AWS_TIME, BenchError, aws, connect_site, stripe_requests

EVENTS = 200
# A lease of Stripe slots serves several requests (chalicelib/stripe_ceiling.py).
MOST_LEASES_PER_STRIPE_REQUEST = 0.25
WARM_UP = 20
SITE = "site_bench"
ACCOUNT = "acct_bench_studio"
ELSEWHERE = "acct_bench_nobody"
WEBHOOK = "/webhooks/stripe"
# Requests the event source mapping stand-in makes to read the stream: not
# the consumer's own cost.
STREAM_READING = {("dynamodb", "DescribeTable")}
# Each group is measured from empty tables: moto's TransactWriteItems gets
# slower as the tables it writes to grow, which would make a kind measured
# later look slower. A duplicate needs the renewals handled first.
# The ceiling's lanes are one item of the rate limits table, which nothing
# else writes while a webhook is handled.
CEILING_TABLE = "stripe-connector-rate-limits"
GROUPS = (("renewal", "duplicate"), ("product",), ("past_due",), ("reassigned",), ("gone",), ("unconnected",),
          ("unhandled",))


@dataclass
class Kind:
    key: str
    label: str
    make: Callable[[int], dict]
    dynamodb_limit: Optional[int] = None
    stripe_limit: Optional[int] = None


@dataclass
class Measured:
    kind: Kind
    events: int = 0
    # At POST /webhooks/stripe: every AWS request, and how long it took.
    acknowledgement: Counter = field(default_factory=Counter)
    acknowledgement_max: int = 0
    answered_in: List[float] = field(default_factory=list)
    # In stripe_events:
    dynamodb: Counter = field(default_factory=Counter)
    dynamodb_max: int = 0
    stripe: int = 0
    puts: int = 0
    announce_dynamodb: Counter = field(default_factory=Counter)
    heard: int = 0
    durations: List[float] = field(default_factory=list)
    in_aws: float = 0.0
    refused: Counter = field(default_factory=Counter)
    # Writes leasing Stripe slots (chalicelib/stripe_ceiling.py): counted
    # apart from the handler's own DynamoDB requests.
    leases: int = 0

    def per_event(self, total: float) -> float:
        return total / self.events if self.events else 0.0


def by_operation(counts: Counter, per: int) -> str:
    if not counts:
        return "-"
    return ", ".join("%s %s" % (op, number(n / per, 2 if n % per else 0)) for op, n in sorted(counts.items()))


class Pipeline:
    def __init__(self, http, sandbox, inbox: AccessEventsInbox, events):
        self.http = http
        self.sandbox = sandbox
        self.inbox = inbox
        # The events queue's stand-in trigger (local.queues.QueuePump).
        self.events = events

    def deliver(self, event: dict):
        """Acknowledged, then handled from the queue."""
        payload, headers = signed(event)
        response = self.http.post(WEBHOOK, headers=headers, body=payload)
        if self.events.drain()["failed"]:
            raise BenchError("Handling %s failed" % event["id"])
        return response

    def measure(self, kind: Kind, events: int, warm_up: int) -> Measured:
        for index in range(warm_up):
            self.deliver(kind.make(index))
            self.inbox.drain()
        measured = Measured(kind)
        stripe_before = stripe_requests(self.sandbox)
        for index in range(warm_up, warm_up + events):
            event = kind.make(index)
            payload, headers = signed(event)
            with AWS_CALLS.counting() as calls:
                started = time.perf_counter()
                response = self.http.post(WEBHOOK, headers=headers, body=payload)
                measured.answered_in.append(time.perf_counter() - started)
            measured.acknowledgement.update({"%s %s" % call: n for call, n in calls.calls.items()})
            measured.acknowledgement_max = max(measured.acknowledgement_max, sum(calls.calls.values()))
            if response.status_code != 200:
                measured.refused[response.status_code] += 1
            with AWS_CALLS.counting() as calls:
                aws_before = AWS_TIME.total
                started = time.perf_counter()
                if self.events.drain()["failed"]:
                    measured.refused["handling failed"] += 1
                measured.durations.append(time.perf_counter() - started)
                measured.in_aws += AWS_TIME.total - aws_before
            dynamodb = Counter({op: n for (service, op), n in calls.calls.items() if service == "dynamodb"})
            leases = calls.on(CEILING_TABLE)
            dynamodb["UpdateItem"] -= leases
            dynamodb = +dynamodb
            measured.leases += leases
            measured.dynamodb.update(dynamodb)
            measured.dynamodb_max = max(measured.dynamodb_max, sum(dynamodb.values()))
            with AWS_CALLS.counting() as calls:
                measured.heard += len(self.inbox.drain())
            measured.puts += calls.calls[("eventbridge", "PutEvents")]
            measured.announce_dynamodb.update({op: n for (service, op), n in calls.calls.items()
                                               if service == "dynamodb" and (service, op) not in STREAM_READING})
            measured.events += 1
        measured.stripe = stripe_requests(self.sandbox) - stripe_before
        return measured


def setup_studio(pipeline: Pipeline) -> Dict[str, dict]:
    """A connected site with two members, each with a subscription whose
    first event was handled: the members exist before anything is measured."""
    sandbox = pipeline.sandbox
    sandbox.create_account(id=ACCOUNT, display_name="Bench Studio")
    connect_site(pipeline.http, sandbox, SITE, ACCOUNT)
    sandbox.create_product(ACCOUNT, name="Yoga", id="prod_bench_yoga", metadata={"customerhub_product_id": "yoga"})
    sandbox.create_product(ACCOUNT, name="Pilates", id="prod_bench_pilates")
    subscriptions = {}
    for user, products, status in (("ana", ["prod_bench_yoga"], "active"),
                                   ("bo", ["prod_bench_yoga", "prod_bench_pilates"], "active"),
                                   ("cy", ["prod_bench_yoga"], "past_due"),
                                   ("dee", ["prod_bench_pilates"], "active")):
        sandbox.create_customer(ACCOUNT, email="%s@bench.test" % user, id="cus_bench_" + user,
                                metadata={} if user == "dee" else {"customerhub_user_id": "user_" + user})
        subscriptions[user] = sandbox.create_subscription(
            ACCOUNT, "cus_bench_" + user, products, status=status, id="sub_bench_" + user,
            metadata={"customerhub_user_id": "user_dee"} if user == "dee" else None)
        created = sandbox.events[-1]
        if created["type"] != "customer.subscription.created" or pipeline.deliver(created).status_code != 200:
            raise BenchError("The first event of %s's subscription was not handled" % user)
    pipeline.inbox.drain()
    return subscriptions


def kinds(pipeline: Pipeline, subscriptions: Dict[str, dict]) -> List[Kind]:
    sandbox = pipeline.sandbox
    renewals: List[dict] = []

    def renewal(index: int) -> dict:
        # The normal case: the period moved on; what the member may use did not.
        subscription = sandbox.renew_subscription(ACCOUNT, subscriptions["ana"]["id"])
        event = stripe_event("customer.subscription.updated", ACCOUNT, subscription,
                             event_id="evt_bench_renewal_%04d" % index)
        renewals.append(event)
        return event

    def product_change(index: int) -> dict:
        # Pilates leaves and comes back: one product's access ends or begins.
        products = ["prod_bench_yoga"] if index % 2 == 0 else ["prod_bench_yoga", "prod_bench_pilates"]
        subscription = sandbox.update_subscription(ACCOUNT, subscriptions["bo"]["id"], products=products)
        return stripe_event("customer.subscription.updated", ACCOUNT, subscription,
                            event_id="evt_bench_product_%04d" % index)

    def past_due(index: int) -> dict:
        # Stripe retries a failed payment and says so: the subscription is
        # past due, and its oldest open invoice is read as well.
        subscription = sandbox.subscription(ACCOUNT, subscriptions["cy"]["id"])
        return stripe_event("customer.subscription.updated", ACCOUNT, subscription,
                            event_id="evt_bench_past_due_%04d" % index)

    def reassigned(index: int) -> dict:
        # The subscription's metadata names another member each time: one
        # member's access ends and the other's begins, in one write.
        user = "user_dee" if index % 2 else "user_eve"
        subscription = sandbox.update_subscription(ACCOUNT, subscriptions["dee"]["id"],
                                                   metadata={"customerhub_user_id": user})
        return stripe_event("customer.subscription.updated", ACCOUNT, subscription,
                            event_id="evt_bench_reassigned_%04d" % index)

    def gone(index: int) -> dict:
        # Canceled and no longer at Stripe when the event arrives: the
        # event's copy is used, with its customer and products read from Stripe.
        subscription_id = "sub_bench_gone_%04d" % index
        sandbox.create_subscription(ACCOUNT, "cus_bench_bo", ["prod_bench_yoga", "prod_bench_pilates"],
                                    id=subscription_id)
        subscription = sandbox.cancel_subscription(ACCOUNT, subscription_id)
        sandbox.forget_subscription(ACCOUNT, subscription_id)
        return stripe_event("customer.subscription.deleted", ACCOUNT, subscription,
                            event_id="evt_bench_gone_%04d" % index)

    def duplicate(index: int) -> dict:
        return renewals[index]

    def unconnected(index: int) -> dict:
        return stripe_event("customer.subscription.updated", ELSEWHERE,
                            {"id": "sub_elsewhere_%04d" % index, "object": "subscription", "status": "active"},
                            event_id="evt_bench_elsewhere_%04d" % index)

    def unhandled(index: int) -> dict:
        return stripe_event("invoice.paid", ACCOUNT, {"id": "in_bench_%04d" % index, "object": "invoice"},
                            event_id="evt_bench_invoice_%04d" % index)

    return [
        # The account's sites, one read across tables (the event's record,
        # whose the subscription is, the customer's record) and one transaction.
        Kind("renewal", "subscription.updated: renewal (normal case)", renewal, 3, 1),
        Kind("product", "subscription.updated: product removed/added", product_change, 3, 1),
        # Only a past-due subscription costs a second Stripe request: its open invoices.
        Kind("past_due", "subscription.updated: past due (open invoices read)", past_due, 3, 2),
        # The member who loses it: their entitlement is read to be ended.
        Kind("reassigned", "subscription.updated: another member named", reassigned, 4, 1),
        Kind("gone", "subscription.deleted: no longer at Stripe (2 products)", gone),
        Kind("duplicate", "duplicate delivery of a handled event", duplicate, 2, 0),
        Kind("unconnected", "ignored: account no site is connected to", unconnected),
        Kind("unhandled", "ignored: type not handled (invoice.paid)", unhandled),
    ]


def run(sandbox, targets: Targets, events: int = EVENTS, warm_up: int = WARM_UP) -> str:
    import boto3

    from app import app, stripe_events
    from chalicelib.queues import EVENTS_QUEUE
    from chalicelib.settings import get_settings
    from local.queues import QueuePump

    results: Dict[str, Measured] = {}
    order: List[str] = []
    for group in GROUPS:
        sandbox.reset()
        with aws():
            inbox = AccessEventsInbox(get_settings())
            # No .chalice/config.json there: the stage's variables stay out
            # of the environment of each request.
            queued = QueuePump(boto3.client("sqs", region_name=get_settings().aws_region), stripe_events,
                               queue_name=EVENTS_QUEUE, retry_after=0)
            with Client(app, project_dir=tempfile.mkdtemp()) as client:
                pipeline = Pipeline(client.http, sandbox, inbox, queued)
                subscriptions = setup_studio(pipeline)
                every = kinds(pipeline, subscriptions)
                order = [kind.key for kind in every]
                for kind in every:
                    if kind.key in group:
                        results[kind.key] = pipeline.measure(kind, events, warm_up)
    return render([results[key] for key in order if key in results], targets, events, warm_up)


def render(results: List[Measured], targets: Targets, events: int, warm_up: int) -> str:
    acknowledgement_rows, cost_rows, announce_rows, speed_rows = [], [], [], []
    for m in results:
        kind = m.kind
        if m.refused:
            targets.failed("%s: every delivery answered 200 and handled" % kind.key,
                           ", ".join("%d x %s" % (n, s) for s, n in sorted(m.refused.items(), key=str)))
        # Only SQS's SendMessage, and not for a type that is never handled.
        queued = 0 if kind.key == "unhandled" else 1
        sent = m.acknowledgement["sqs SendMessage"]
        others = sum(m.acknowledgement.values()) - sent
        acknowledgement_target = targets.equal(
            "%s: AWS requests at the acknowledgement" % kind.key,
            "%s SendMessage, %s else" % (number(m.per_event(sent), 2), number(m.per_event(others), 2)),
            "%d SendMessage, 0 else" % queued, sent == queued * m.events and others == 0)
        acknowledgement_rows.append((
            kind.label, number(m.per_event(sum(m.acknowledgement.values())), 2), number(m.acknowledgement_max),
            by_operation(m.acknowledgement, m.events), verdict_of(acknowledgement_target),
            millis(statistics.fmean(m.answered_in)),
            millis(sorted(m.answered_in)[min(len(m.answered_in) - 1, int(len(m.answered_in) * 0.95))]),
        ))
        dynamodb_target = stripe_target = None
        if kind.dynamodb_limit is not None:
            dynamodb_target = targets.at_most("%s: DynamoDB requests per event (max)" % kind.key,
                                              m.dynamodb_max, kind.dynamodb_limit)
        if kind.stripe_limit is not None:
            stripe_target = targets.at_most("%s: Stripe requests per event (mean)" % kind.key,
                                            m.per_event(m.stripe), kind.stripe_limit, 2)
        lease_target = None
        if m.stripe:
            lease_target = targets.at_most("%s: ceiling lease writes per Stripe request (mean)" % kind.key,
                                           m.leases / m.stripe, MOST_LEASES_PER_STRIPE_REQUEST, 2)
        dynamodb_total = sum(m.dynamodb.values())
        cost_rows.append((
            kind.label,
            number(m.per_event(dynamodb_total), 2), number(m.dynamodb_max),
            "-" if kind.dynamodb_limit is None else "<= %d" % kind.dynamodb_limit, verdict_of(dynamodb_target),
            number(m.per_event(m.stripe), 2),
            "-" if kind.stripe_limit is None else "<= %d" % kind.stripe_limit, verdict_of(stripe_target),
            number(m.per_event(m.leases), 2), verdict_of(lease_target),
            by_operation(m.dynamodb, m.events),
        ))
        announce_rows.append((
            kind.label, number(m.per_event(m.puts), 2), number(m.per_event(sum(m.announce_dynamodb.values())), 2),
            by_operation(m.announce_dynamodb, m.events), number(m.per_event(m.heard), 2),
        ))
        total = sum(m.durations)
        ordered = sorted(m.durations)
        speed_rows.append((
            kind.label, number(m.events), number(m.events / total if total else 0, 1),
            millis(statistics.fmean(ordered)), millis(ordered[len(ordered) // 2]),
            millis(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]), millis(ordered[-1]),
            millis(m.per_event(m.in_aws)), millis(m.per_event(total - m.in_aws)),
        ))
    scope = "%d events per kind, after %d warm-up events" % (events, warm_up)
    return "\n".join([
        table("Webhook: the acknowledgement, POST /webhooks/stripe  (%s)" % scope,
              ("event", "AWS/delivery", "max", "AWS requests by operation, per delivery", "", "mean", "p95"),
              acknowledgement_rows, align="lrrllrr",
              notes=("Verified, checked and queued: no DynamoDB and no Stripe request. Measured after the "
                     "warm-up, so the queue's URL, asked once per container, is known.",)),
        table("Webhook: requests per event handled by stripe_events  (%s)" % scope,
              ("event", "DynamoDB/event", "max", "target", "", "Stripe/event", "target", "", "leases/event", "",
               "DynamoDB requests by operation, per event"),
              cost_rows, align="lrrrlrrlrll",
              notes=("DynamoDB: requests made while stripe_events handled the event (mean, and the most one "
                     "event made), the ceiling's leases apart; the trigger's own ReceiveMessage and "
                     "DeleteMessage are not counted.",
                     "Stripe: requests the Stripe stand-in answered during the kind's deliveries, per event.",
                     "leases: writes leasing Stripe slots under STRIPE_REQUESTS_PER_SECOND, per event; target "
                     "<= %s per Stripe request." % MOST_LEASES_PER_STRIPE_REQUEST)),
        table("Webhook: announce cost per event in announce_access (entitlements stream consumer)",
              ("event", "PutEvents/event", "DynamoDB/event", "DynamoDB by operation", "announcements/event"),
              announce_rows, align="lrrlr",
              notes=("The stream is drained into announce_access after each delivery; reading the stream "
                     "(DescribeTable, dynamodbstreams) is the event source mapping's, not counted.",
                     "announcements/event: AccessGranted/AccessRevoked read back from a queue on the bus.")),
        table("Webhook: handling speed in-process (stripe_events -> moto; stripe-python -> stand-in on loopback)",
              ("event", "events", "events/s", "mean", "p50", "p95", "max", "in AWS calls", "the rest"),
              speed_rows,
              notes=("Time of handling the queued event, the trigger's receive and delete included: the POST, "
                     "signing and draining the stream are outside it. Each kind starts from empty tables "
                     "(duplicates after the renewals).",
                     "in AWS calls: mean time inside botocore calls, i.e. moto; the rest: the connector, "
                     "Chalice and the Stripe round trip on loopback, and the waits for Stripe slots under "
                     "STRIPE_REQUESTS_PER_SECOND (20: about 15 requests a second at most).",
                     "moto deep-copies every table a TransactWriteItems touches, stream included "
                     "(moto/dynamodb/models/__init__.py:613),",
                     "so a subscription event's time in-process grows with the tables and is mostly moto's.")),
    ])
