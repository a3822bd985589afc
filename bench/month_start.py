"""A month start, on a simulated clock (bench/simulation.py): the connector's
own functions (the webhook route through chalice.test.Client, stripe_events
and sync_worker as Lambda's SQS pollers run them, expire_access on its
schedule) against the Stripe sandbox holding Stripe's rate limits (25
requests a second per account, 100 in all, 429 beyond) and 100 ms of latency
on every request, with DynamoDB and SQS from moto, each AWS request taking a
few simulated milliseconds.

Three runs, each from empty tables and an empty sandbox, at the default
ceiling (STRIPE_REQUESTS_PER_SECOND 20):
- burst: one account's subscriptions renew at the month's start, some
  updated again the same second (the site's billing tags them), and Stripe
  delivers the 10,000 events within a minute, in no particular order;
- sweep: 50,000 entitlements fall due at the month's start among 1,000,000
  stored across 200 accounts; Stripe canceled most of them and renewed the
  rest; expire_access runs every 15 minutes and fans the due shards out;
- import: an account with 100,000 subscriptions connects while another
  account's 100 webhooks arrive.

MONTH_START_SCALE scales every count: a tenth by default, MONTH_START_SCALE=1
the counts above. make bench runs all three; `python -m bench.month_start
[burst|sweep|import]` runs any of them."""
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Dict, List

from tests.helpers import AWS_CALLS

from bench.report import Targets, number, seconds, table
from bench.simulated_stack import (CEILING, CEILING_TABLE, DAY, T0, WORK_CONCURRENCY,
                                   Simulation, connected_account, dynamodb_without_leases, scaled,
                                   seed_connection)
from bench.simulation import peak_per_second
from bench.world import BenchError, configure, connect_site


@dataclass
class Burst:
    subscriptions: int = 0
    events: int = 0
    answered: Counter = field(default_factory=Counter)
    delivered_in: float = 0.0
    settled_in: float = 0.0
    reads: int = 0
    stripe: int = 0
    peak: int = 0
    rate_limited: int = 0
    failed: int = 0
    wrong: int = 0
    sends: int = 0
    dynamodb: int = 0
    leases: int = 0
    handled: int = 0


def burst(targets: Targets) -> str:
    """10,000 events on one account within a minute."""
    from chalicelib.models import EntitlementModel

    subscriptions = scaled(7000)
    tagged = scaled(3000)
    site, account = "site_month", "acct_month_studio"
    run = Burst(subscriptions=subscriptions)
    with Simulation(T0 - 3600) as sim, sim.time.working():
        sandbox = sim.sandbox
        sim.start()
        sandbox.create_account(id=account, display_name="Month Studio")
        product = sandbox.create_product(account, name="Gym", metadata={"customerhub_product_id": "gym"})["id"]
        ids = []
        for index in range(subscriptions):
            customer = sandbox.create_customer(account, email="member%05d@month.test" % index,
                                               metadata={"customerhub_user_id": "user_%05d" % index})["id"]
            ids.append(sandbox.create_subscription(account, customer, [product], period_start=int(T0) - 30 * DAY,
                                                   period_end=int(T0))["id"])
        print("  burst: %s subscriptions at the sandbox; connecting and importing ..." % number(subscriptions),
              file=sys.stderr, flush=True)
        connect_site(sim.http, sandbox, site, account)
        sim.settle(T0 - 60)
        sim.until(T0)
        # The month starts: every subscription renews, some tagged the same second.
        mark = len(sandbox.events)
        for subscription_id in ids:
            sandbox.renew_subscription(account, subscription_id)
        for subscription_id in ids[:tagged]:
            sandbox.update_subscription(account, subscription_id, metadata={"renewed": "2026-12"})
        events = sandbox.events_after(mark)
        random.Random(19).shuffle(events)
        run.events = len(events)
        requests_before = sandbox.request_count
        limited_before = sandbox.rate_limited
        print("  burst: delivering %s events within a minute ..." % number(run.events), file=sys.stderr, flush=True)
        started = time.perf_counter()
        with AWS_CALLS.counting() as calls:
            for index, event in enumerate(events):
                sim.until(T0 + index * 60.0 / len(events))
                run.answered[sim.post(event)] += 1
            run.delivered_in = sim.time.time() - T0
            settled = sim.settle(T0 + 3600)
            run.sends = calls.calls[("sqs", "SendMessage")]
            run.dynamodb = dynamodb_without_leases(calls)
            run.leases = calls.on(CEILING_TABLE)
        run.settled_in = settled - T0
        traffic = [r for r in sandbox.requests[requests_before:]]
        run.stripe = len(traffic)
        run.reads = sum(1 for r in traffic if r["method"] == "GET" and r["path"].startswith("/v1/subscriptions/"))
        run.peak = peak_per_second([r["at"] for r in traffic])
        run.rate_limited = sandbox.rate_limited - limited_before
        run.failed = sim.triggers["events"].failed
        run.handled = sim.triggers["events"].handled
        renewed_until = datetime.fromtimestamp(int(T0) + 30 * DAY, timezone.utc)
        entitlements = {item.subscription_id: item for item in EntitlementModel.scan()}
        run.wrong = sum(1 for subscription_id in ids
                        if subscription_id not in entitlements
                        or not entitlements[subscription_id].grants
                        or entitlements[subscription_id].access_until != renewed_until)
        real = time.perf_counter() - started
    answered_2xx = sum(n for status, n in run.answered.items() if 200 <= status < 300)
    targets.equal("month start, burst: deliveries answered 2xx", number(answered_2xx), number(run.events),
                  answered_2xx == run.events)
    targets.at_most("month start, burst: Stripe reads per subscription", run.reads / subscriptions, 1.1, 2)
    targets.at_most("month start, burst: peak Stripe requests in a second", run.peak, CEILING)
    targets.at_most("month start, burst: 429s (% of Stripe requests)",
                    100.0 * run.rate_limited / max(1, run.stripe), 1.0, 2)
    targets.equal("month start, burst: events failed (a 429 passed on)", number(run.failed), "0", run.failed == 0)
    targets.at_most("month start, burst: simulated minutes until every member's access is right",
                    run.settled_in / 60 if not run.wrong else float("inf"), 10, 1)
    # A subscription event's budget (bench/webhooks.py: 3 for a renewal, 4
    # when another member is named); at once, two instances writing the same
    # subscription cost the one that meets the other's write a retry.
    targets.at_most("month start, burst: DynamoDB requests per event handled (mean)",
                    run.dynamodb / max(1, run.handled), 4, 3)
    targets.at_most("month start, burst: Stripe requests per event handled", run.stripe / max(1, run.handled), 1, 2)
    return table(
        "Month start, burst: %s events on one account within a minute (%s subscriptions renewed, %s of them "
        "updated again)" % (number(run.events), number(subscriptions), number(tagged)),
        ("deliveries", "answered", "SQS sends", "handled", "Stripe reads", "reads/sub", "Stripe requests",
         "peak/s", "429s", "failed", "DynamoDB/event", "leases", "all right after", "wrong", "real time"),
        [(number(run.events), ", ".join("%d: %s" % (s, number(n)) for s, n in sorted(run.answered.items())),
          number(run.sends), number(run.handled), number(run.reads), number(run.reads / subscriptions, 2),
          number(run.stripe), number(run.peak), number(run.rate_limited), number(run.failed),
          number(run.dynamodb / max(1, run.handled), 3), number(run.leases),
          "%s simulated" % seconds(run.settled_in), number(run.wrong), seconds(real))],
        notes=("The acknowledgement's AWS requests: one SQS SendMessage per delivery, nothing else "
               "(SendMessage %s for %s deliveries). Delivered over %s of simulated time; every member's "
               "entitlement then reads the renewed period. DynamoDB per event leaves out the ceiling's "
               "lease writes (%s, on %s)." % (number(run.sends), number(run.events), seconds(run.delivered_in),
                                              number(run.leases), CEILING_TABLE),))


@dataclass
class SweepRun:
    accounts: int = 0
    stored: int = 0
    due: int = 0
    renewed: int = 0
    revoked: int = 0
    kept: int = 0
    left: int = 0
    finished_in: float = 0.0
    runs: int = 0
    shards_handled: int = 0
    stripe: int = 0
    peak: int = 0
    rate_limited: int = 0
    dynamodb: int = 0
    leases: int = 0
    seed_seconds: float = 0.0


def seed_quietly(items) -> int:
    """Entitlements put straight into moto's table, without stream records
    (a million of them would only be skipped): the setting, not the code
    measured."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from chalicelib.models import EntitlementModel

    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table(EntitlementModel.Meta.table_name)
    stream, table.stream_shard = table.stream_shard, None
    count = 0
    try:
        for item in items:
            table.put_item(item.serialize())
            count += 1
    finally:
        table.stream_shard = stream
    return count


def stored_for_the_sweep(due: int) -> int:
    """How many entitlements the sweep's table holds: a million scaled, or
    MONTH_START_STORED. The due index is sparse, so what is stored but not
    due is never read by the sweep (bench/sweep.py shows the same counts
    among 1,000 and 100,000 stored); moto, though, reads every item on every
    query of an index, and a million make the full-count sweep take hours of
    real time."""
    value = os.environ.get("MONTH_START_STORED")
    stored = scaled(1_000_000) if not value else int(value)
    if stored < due:
        raise BenchError("MONTH_START_STORED is at least the %d entitlements due" % due)
    return stored


def sweep(targets: Targets) -> str:
    """50,000 entitlements due among 1,000,000 stored across 200 accounts."""
    import gc

    from app import expire_access
    from chalicelib.access import Access, Product
    from chalicelib.entitlements import View, entitlement_item, member_key, microseconds

    accounts = 200
    due_per_account = max(1, scaled(50_000) // accounts)
    stored = stored_for_the_sweep(due=due_per_account * accounts)
    run = SweepRun(accounts=accounts, due=due_per_account * accounts, stored=stored)
    ends = int(T0)
    with Simulation(T0 - 900) as sim, sim.time.working():
        sandbox = sim.sandbox
        sim.start()
        now = datetime.fromtimestamp(sim.time.time(), timezone.utc)
        view_time = microseconds(now - timedelta(days=20))
        due_keys = []
        renewed = set()

        def view(site_id, account_id, user_id, subscription_id, product, until):
            return entitlement_item(View(
                site_id=site_id, user_id=user_id, account_id=account_id, customer_id="cus" + subscription_id[3:],
                subscription_id=subscription_id, stripe_status="active",
                access=Access("active", True, until, "subscription_active", (Product("gym", product),)),
                view_time=view_time, stripe_event_id=None), now)

        def items():
            rng = random.Random(1)
            for n in range(accounts):
                site_id, account_id, product = "site_ms%03d" % n, "acct_ms%03d" % n, "prod_msgym%03d" % n
                for index in range(due_per_account):
                    subscription_id = "sub_msdue%03d%05d" % (n, index)
                    due_keys.append((member_key(site_id, "user" + subscription_id[3:]), subscription_id))
                    yield view(site_id, account_id, "user" + subscription_id[3:], subscription_id, product,
                               datetime.fromtimestamp(ends, timezone.utc))
            for index in range(stored - run.due):
                n = index % accounts
                subscription_id = "sub_msok%07d" % index
                yield view("site_ms%03d" % n, "acct_ms%03d" % n, "user" + subscription_id[3:], subscription_id,
                           "prod_msgym%03d" % n, datetime.fromtimestamp(ends + DAY * (1 + rng.randrange(29)),
                                                                        timezone.utc))

        print("  sweep: %d accounts at the sandbox ..." % accounts, file=sys.stderr, flush=True)
        for n in range(accounts):
            site_id, account_id, product = "site_ms%03d" % n, "acct_ms%03d" % n, "prod_msgym%03d" % n
            connected_account(sandbox, account_id, "Gym %03d" % n)
            seed_connection(site_id, account_id, "Gym %03d" % n, now)
            sandbox.create_product(account_id, name="Gym", id=product, metadata={"customerhub_product_id": "gym"})
            for index in range(due_per_account):
                subscription_id = "sub_msdue%03d%05d" % (n, index)
                customer = sandbox.create_customer(account_id, id="cus" + subscription_id[3:],
                                                   metadata={"customerhub_user_id": "user" + subscription_id[3:]})
                # One in ten renewed at Stripe; the rest canceled at the period's end.
                if (n * due_per_account + index) % 10 == 0:
                    renewed.add(subscription_id)
                    sandbox._add_subscription(account_id, customer["id"], [product], "active", period_start=ends,
                                              period_end=ends + 30 * DAY, id=subscription_id)
                else:
                    subscription = sandbox._add_subscription(account_id, customer["id"], [product], "canceled",
                                                              period_start=ends - 30 * DAY, period_end=ends,
                                                              id=subscription_id)
                    subscription["canceled_at"] = subscription["ended_at"] = ends
        run.renewed = len(renewed)
        print("  sweep: storing %s entitlements, %s due at the month's start ..." % (number(stored), number(run.due)),
              file=sys.stderr, flush=True)
        gc.collect()
        gc.disable()
        started = time.perf_counter()
        try:
            seed_quietly(items())
        finally:
            gc.enable()
            gc.freeze()
        run.seed_seconds = time.perf_counter() - started
        print("  sweep: stored in %s; the sweep runs every 15 minutes from the month's start ..."
              % seconds(run.seed_seconds), file=sys.stderr, flush=True)
        sim.until(T0)
        requests_before = sandbox.request_count
        limited_before = sandbox.rate_limited
        started = time.perf_counter()
        with AWS_CALLS.counting() as calls:
            schedule = sim.schedule("expire_access", expire_access, every=900, timeout=300, first=T0 + 1)
            checking = 0
            while True:
                sim.time.sleep(60)
                if schedule.runs and schedule.running == 0 and sim.settled():
                    before = calls.of("dynamodb")
                    outcome = outcomes(due_keys, ends, renewed)
                    checking += calls.of("dynamodb") - before
                    if not outcome["left"] or sim.time.time() > T0 + 4 * 3600:
                        break
            run.finished_in = max([sim.triggers["work"].last_handled_at or 0.0]
                                  + [ended for _, ended, _ in schedule.runs]) - T0
            # The reading back is the measurement's, not the sweep's.
            run.dynamodb = dynamodb_without_leases(calls) - checking
            run.leases = calls.on(CEILING_TABLE)
        run.revoked, run.kept, run.left = outcome["ended"], outcome["kept"], outcome["left"]
        real = time.perf_counter() - started
        gc.unfreeze()
        run.runs = len(schedule.runs)
        run.shards_handled = sim.triggers["work"].handled
        traffic = sandbox.requests[requests_before:]
        run.stripe = len(traffic)
        run.peak = peak_per_second([r["at"] for r in traffic])
        run.rate_limited = sandbox.rate_limited - limited_before
    ended_or_kept = run.revoked + run.kept
    targets.equal("month start, sweep: due entitlements ended / kept / left",
                  "%s / %s / %s" % (number(run.revoked), number(run.kept), number(run.left)),
                  "%s / %s / 0" % (number(run.due - run.renewed), number(run.renewed)),
                  run.revoked == run.due - run.renewed and run.kept == run.renewed and run.left == 0)
    targets.at_most("month start, sweep: simulated minutes until all due are ended or kept", run.finished_in / 60,
                    60, 1)
    targets.at_most("month start, sweep: DynamoDB requests per revocation", run.dynamodb / max(1, ended_or_kept),
                    2.5, 2)
    targets.at_most("month start, sweep: peak Stripe requests in a second", run.peak, CEILING)
    return table(
        "Month start, sweep: %s due among %s stored across %d accounts (%s renewed at Stripe)"
        % (number(run.due), number(run.stored), accounts, number(run.renewed)),
        ("due", "ended", "kept", "left", "done after", "sweep runs", "shard messages", "Stripe requests",
         "per second", "peak/s", "429s", "DynamoDB", "per due", "leases", "real time"),
        [(number(run.due), number(run.revoked), number(run.kept), number(run.left),
          "%s simulated" % seconds(run.finished_in), number(run.runs), number(run.shards_handled),
          number(run.stripe), number(run.stripe / max(1.0, run.finished_in), 1), number(run.peak),
          number(run.rate_limited), number(run.dynamodb), number(run.dynamodb / max(1, ended_or_kept), 2),
          number(run.leases), seconds(real))],
        notes=("expire_access runs every 15 minutes from the month's start; its first run fans the 16 due shards "
               "out to the work queue, where sync_worker (%d at a time) takes %s entitlements a message. Stored "
               "in %s straight into moto's table. DynamoDB per due leaves out the ceiling's lease writes."
               % (WORK_CONCURRENCY, number(200), seconds(run.seed_seconds)),))


def outcomes(keys, ends: int, renewed) -> Dict[str, int]:
    """The due entitlements read back: how many ended, how many kept with
    the renewed period, how many still as they were."""
    from chalicelib.models import EntitlementModel

    renewed_until = datetime.fromtimestamp(ends + 30 * DAY, timezone.utc)
    counts = Counter()
    for item in EntitlementModel.batch_get(keys):
        if item.subscription_id in renewed and item.grants and item.access_until == renewed_until:
            counts["kept"] += 1
        elif item.subscription_id not in renewed and not item.grants:
            counts["ended"] += 1
        else:
            counts["left"] += 1
    counts["left"] += len(keys) - sum(counts.values())
    return {name: counts[name] for name in ("ended", "kept", "left")}


@dataclass
class ImportRun:
    subscriptions: int = 0
    imported: int = 0
    state: str = ""
    took: float = 0.0
    pages: int = 0
    others: int = 0
    others_answered: Counter = field(default_factory=Counter)
    others_handled: int = 0
    waits: List[float] = field(default_factory=list)
    stripe: int = 0
    peak: int = 0
    peak_other: int = 0
    rate_limited: int = 0


def import_beside(targets: Targets) -> str:
    """An account of 100,000 subscriptions connects while another account's
    100 webhooks arrive."""
    from chalicelib.access import GRANTING_STATUSES
    from chalicelib.import_records import ImportStore

    size = scaled(100_000)
    others = max(10, scaled(100))
    big_site, big = "site_ms_big", "acct_ms_big"
    small_site, small = "site_ms_small", "acct_ms_small"
    run = ImportRun(subscriptions=size, others=others)
    listed = 0
    with Simulation(T0 - 600) as sim, sim.time.working():
        sandbox = sim.sandbox
        sim.start()
        sandbox.create_account(id=big, display_name="Big Studio")
        print("  import: %s subscriptions at the sandbox ..." % number(size), file=sys.stderr, flush=True)
        for first in range(0, size, 10_000):
            made = sandbox.preload_subscriptions(big, count=min(10_000, size - first))
            # The import lists the statuses that may grant access.
            listed += sum(n for status, n in made["statuses"].items() if status in GRANTING_STATUSES)
        connected_account(sandbox, small, "Small Studio")
        seed_connection(small_site, small, "Small Studio", datetime.fromtimestamp(sim.time.time(), timezone.utc))
        product = sandbox.create_product(small, name="Yoga", metadata={"customerhub_product_id": "yoga"})["id"]
        customers = [sandbox.create_customer(small, email="member%03d@small.test" % n,
                                             metadata={"customerhub_user_id": "user_small_%03d" % n})["id"]
                     for n in range(others)]
        sim.until(T0)
        requests_before = sandbox.request_count
        limited_before = sandbox.rate_limited
        started = time.perf_counter()
        print("  import: connecting; the other account's subscriptions start meanwhile ...", file=sys.stderr,
              flush=True)
        connect_site(sim.http, sandbox, big_site, big)
        sim.until(T0 + 30)
        # Stripe delivers each new subscription's event as it happens, one
        # every 0.6 s.
        posted = []
        for n, customer in enumerate(customers):
            sim.until(T0 + 30 + n * 0.6)
            mark = len(sandbox.events)
            sandbox.create_subscription(small, customer, [product])
            for event in sandbox.events_after(mark):
                if event["type"].startswith("customer.subscription."):
                    posted.append(event["id"])
                    run.others_answered[sim.post(event)] += 1
        store = ImportStore()
        while True:
            record = store.get(big_site)
            if record is not None and record.state != "importing" and sim.settled():
                break
            if sim.time.time() > T0 + 3 * 3600:
                raise BenchError("The import is still running after 3 simulated hours")
            sim.time.sleep(5)
        run.state = record.state
        run.imported = record.subscriptions
        run.took = (record.finished_at or record.updated_at).timestamp() - record.started_at.timestamp()
        events = sim.triggers["events"]
        run.others_handled = events.handled
        run.waits = sorted(events.handled_at[message_id] - sim.aws_clock.sent_at[message_id]
                           for message_id in events.handled_at)
        traffic = sandbox.requests[requests_before:]
        run.stripe = len(traffic)
        run.pages = sum(1 for r in traffic if r["method"] == "GET" and r["path"] == "/v1/subscriptions")
        run.peak = peak_per_second([r["at"] for r in traffic])
        run.rate_limited = sandbox.rate_limited - limited_before
        real = time.perf_counter() - started
    waited = run.waits[-1] if run.waits else float("inf")
    targets.equal("month start, import: subscriptions listed and imported", number(run.imported),
                  number(listed), run.imported == listed and run.state == "done")
    targets.at_most("month start, import: simulated minutes to import %s" % number(size), run.took / 60, 5, 1)
    targets.equal("month start, import: the other account's events answered 2xx and handled",
                  "%s / %s" % (number(sum(n for s, n in run.others_answered.items() if 200 <= s < 300)),
                               number(run.others_handled)), "%s / %s" % (number(others), number(others)),
                  run.others_answered.get(200, 0) == others and run.others_handled == others)
    targets.at_most("month start, import: the other account's longest wait, delivery to handled (s)", waited,
                    30, 1)
    targets.at_most("month start, import: peak Stripe requests in a second", run.peak, CEILING)
    return table(
        "Month start, import: %s subscriptions on one account, beside another account's %d webhooks"
        % (number(size), others),
        ("imported", "state", "took", "list pages", "Stripe requests", "per second", "peak/s", "429s",
         "other's events", "wait p50", "wait max", "real time"),
        [(number(run.imported), run.state, "%s simulated" % seconds(run.took), number(run.pages),
          number(run.stripe), number(run.stripe / max(1.0, run.took), 1), number(run.peak),
          number(run.rate_limited), number(run.others_handled),
          seconds(run.waits[len(run.waits) // 2]) if run.waits else "-", seconds(waited), seconds(real))],
        notes=("The other account's events go through the webhook and stripe_events while sync_worker pages the "
               "import; both draw on the one ceiling.",))


PARTS = {"burst": burst, "sweep": sweep, "import": import_beside}
# What make bench runs: all three, at MONTH_START_SCALE.
IN_MAKE_BENCH = tuple(PARTS)


def run(sandbox, targets: Targets) -> str:
    """make bench's part: every run, each on its own simulated clock (the
    bench's shared sandbox is not used: each run has its own, limited);
    then the environment points at the shared one again."""
    try:
        return "\n".join(PARTS[name](targets) for name in IN_MAKE_BENCH)
    finally:
        configure(sandbox)


def main(argv: List[str]) -> int:
    import logging

    from bench import world  # noqa: F401  (the AWS hooks)

    logging.basicConfig(level=logging.WARNING)
    targets = Targets()
    for name in argv or list(PARTS):
        print(PARTS[name](targets), flush=True)
    print(targets.render())
    return 1 if targets.missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
