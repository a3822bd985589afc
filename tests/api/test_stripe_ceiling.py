"""One ceiling for Stripe (chalicelib/stripe_ceiling.py): the lanes in
DynamoDB (moto) shared by instances, what a request waits, what a lease
costs, what happens when DynamoDB fails, and what a 429 becomes.

Two kinds of time: a simulated one, in which instances with Stripe's own
latency run for minutes in a moment (each instance's clock and sleep are its
own; the simulation always moves the instance that is earliest, so DynamoDB
sees the writes in the order of their times), and the real one, with threads
against the sandbox, measured by when the sandbox received each request."""
import heapq
import logging
import random
import threading

import boto3
import pytest

from chalicelib import observability, services
from chalicelib.errors import StripeFailure
from chalicelib.models import RateLimitModel
from chalicelib.observability import Metrics
from chalicelib.stripe_ceiling import (BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, BUCKET_RETRY_SECONDS,
                                       LONGEST_WAIT_SECONDS, OTHER_429_TRIES, RATE_LIMITED_TRIES, CeilingFull,
                                       DynamoLanes, Schedule, StripeCeiling, StripeTraffic)
from chalicelib.stripe_gateway import StripeGateway, make_client
from tests.api.test_connect_lifecycle import connect
from tests.helpers import AWS_CALLS, CLIENT_ID, SECRET_KEY, WEBHOOK_SECRET, deliver, stripe_event

START = 1_900_000_000.0
LANES_TABLE = RateLimitModel.Meta.table_name


class OwnTime:
    """One instance's clock and sleep, moved by hand."""

    def __init__(self, now: float = START):
        self.now = now
        self.slept = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class OneWriteAtATime:
    """DynamoDB applies the writes to one item one at a time; moto in
    process does not guard its state against threads, so they take turns."""
    lock = threading.Lock()

    def __init__(self, client):
        self._client = client

    def update_item(self, **request):
        with self.lock:
            return self._client.update_item(**request)


def lanes() -> DynamoLanes:
    client = boto3.client("dynamodb", region_name="us-east-1")
    return DynamoLanes(lambda: client, LANES_TABLE)


def ceiling(time: OwnTime, per_second: float = 20, seed: int = 0, **options) -> StripeCeiling:
    return StripeCeiling(lanes(), per_second, clock=time.clock, sleep=time.sleep, rng=random.Random(seed), **options)


def lease_writes() -> int:
    return AWS_CALLS.calls[("dynamodb", "UpdateItem")]


def busiest_second(moments) -> int:
    """The most requests any one-second window [t, t+1) holds."""
    moments = sorted(moments)
    most, start = 0, 0
    for end, moment in enumerate(moments):
        while moment - moments[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def steady_rate(moments) -> float:
    """Requests a second between the first and the last tenth of them (the
    start, while leases grow, and the end, when few instances are left,
    are not the steady state)."""
    moments = sorted(moments)
    first, last = len(moments) // 10, len(moments) * 9 // 10
    return (last - first) / (moments[last] - moments[first])


def simulate(instances: int, requests_each: int, latency, per_second: float = 20):
    """Instances that each send one request after another, each answered
    after latency(n) seconds; the moments the requests were sent."""
    times = [OwnTime(START + n * 0.001) for n in range(instances)]
    ceilings = [ceiling(time, per_second, seed=n) for n, time in enumerate(times)]
    sent = []
    left = [requests_each] * instances
    turns = [(time.now, n) for n, time in enumerate(times)]
    while turns:
        _, n = heapq.heappop(turns)
        ceilings[n].acquire()
        sent.append(times[n].now)
        times[n].now += latency(len(sent))
        left[n] -= 1
        if left[n]:
            heapq.heappush(turns, (times[n].now, n))
    return sent


# ------------------------------------------------------------ the schedule


@pytest.mark.parametrize("per_second", [0.5, 1, 3, 7, 20, 25, 24, 100, 20.9, 1000])
def test_no_span_of_a_second_and_the_lateness_holds_more_slots_than_the_ceiling(per_second):
    schedule = Schedule.for_rate(per_second)
    window_ms = 1000 + schedule.late_ms + 100
    # Slots a lane's spacing apart: a window of that span holds ceil(window / spacing) of them.
    per_lane = -(-window_ms // schedule.spacing_ms)
    assert schedule.lanes * per_lane <= max(1, int(per_second))
    assert schedule.sustained_per_second <= per_second


def test_at_twenty_a_second_five_lanes_of_slots_a_round_trip_apart_sustain_about_fifteen():
    schedule = Schedule.for_rate(20)
    assert (schedule.lanes, schedule.per_lane, schedule.spacing_ms) == (5, 4, 338)
    assert 14 < schedule.sustained_per_second < 15


# ---------------------------------------------------- instances, simulated


def test_a_lone_request_goes_at_once_and_costs_one_lease_write(aws):
    time = OwnTime()
    with AWS_CALLS.counting():
        ceiling(time).acquire()
    assert time.slept == []
    assert AWS_CALLS.on(LANES_TABLE) == 1


def test_requests_far_apart_cost_a_write_each_and_book_no_more_than_two_slots(aws):
    time = OwnTime()
    alone = ceiling(time)
    booked = []
    with AWS_CALLS.counting():
        for _ in range(5):
            leased_at = time.now
            alone.acquire()
            booked.append(max(lanes_as_stored().values()) - round(leased_at * 1000))
            time.now += 5
    assert lease_writes() == 5
    # Two slots the first time, one of them unused; then one, or two again
    # while one is enough: never a lease's worth left to waste.
    spacing = Schedule.for_rate(20).spacing_ms
    assert booked[0] == 2 * spacing
    assert all(length <= 2 * spacing for length in booked)


def test_one_instance_quicker_than_a_lane_spreads_over_the_idle_lanes_and_never_passes_the_ceiling(aws):
    with AWS_CALLS.counting():
        sent = simulate(instances=1, requests_each=300, latency=lambda n: 0.005)
    assert busiest_second(sent) <= 20
    # All the lanes, at the schedule's sustained rate.
    assert steady_rate(sent) > 0.9 * Schedule.for_rate(20).sustained_per_second
    assert lease_writes() / len(sent) <= 0.25


@pytest.mark.parametrize("latency", [0.005, 0.05, 0.25, 0.35])
def test_instances_with_stripes_latency_share_the_ceiling_and_lease_many_requests_a_write(aws, latency):
    jitter = random.Random(7)
    with AWS_CALLS.counting():
        sent = simulate(instances=10, requests_each=60,
                        latency=lambda n: latency * jitter.uniform(0.7, 1.3))
    assert busiest_second(sent) <= 20
    assert steady_rate(sent) > 0.85 * Schedule.for_rate(20).sustained_per_second
    assert lease_writes() / len(sent) <= 0.25


def test_instances_whose_clocks_disagree_by_the_margin_still_stay_under_the_ceiling(aws):
    times = [OwnTime(START), OwnTime(START + 0.05), OwnTime(START - 0.05)]
    ceilings = [ceiling(time, seed=n) for n, time in enumerate(times)]
    skew = [0.0, 0.05, -0.05]
    sent = []
    turns = [(time.now - skew[n], n) for n, time in enumerate(times)]
    while len(sent) < 300:
        _, n = heapq.heappop(turns)
        ceilings[n].acquire()
        # What a shared clock would say of each request.
        sent.append(times[n].now - skew[n])
        times[n].now += 0.01
        heapq.heappush(turns, (times[n].now - skew[n], n))
    assert busiest_second(sent) <= 20


# ---------------------------------------------------- a full bucket, a failing one


def lanes_as_stored() -> dict:
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=LANES_TABLE, Key={"limit_key": {"S": "stripe-ceiling"}})["Item"]
    return {name: int(value["N"]) for name, value in item.items() if name.startswith("lane_")}


def book_every_lane(until: float) -> None:
    item = {"limit_key": {"S": "stripe-ceiling"}}
    for lane in range(Schedule.for_rate(20).lanes):
        item["lane_%d" % lane] = {"N": str(int(until * 1000))}
    boto3.client("dynamodb", region_name="us-east-1").put_item(TableName=LANES_TABLE, Item=item)


def test_every_lane_booked_beyond_the_longest_wait_is_ceiling_full_a_stripe_failure_without_waiting(aws):
    book_every_lane(START + LONGEST_WAIT_SECONDS + 5)
    time = OwnTime()
    metrics = Metrics()
    full = ceiling(time, metrics=metrics)
    with pytest.raises(CeilingFull) as raised:
        full.acquire()
    assert isinstance(raised.value, StripeFailure)
    assert time.slept == []
    assert metrics.flush()[observability.STRIPE_CEILING_FULL] == 1
    # What it learned stands: the next request is refused without a write.
    with AWS_CALLS.counting():
        with pytest.raises(CeilingFull):
            full.acquire()
    assert lease_writes() == 0


def test_a_full_ceiling_fails_the_gateways_call_as_a_stripe_failure_without_asking_stripe(aws, sandbox, account):
    product = sandbox.create_product(account, id="prod_waiting")["id"]
    book_every_lane(OwnTime().now + LONGEST_WAIT_SECONDS + 5)
    gateway = paced_gateway(sandbox, StripeTraffic(ceiling(OwnTime())))
    with pytest.raises(StripeFailure):
        gateway.product(account, product)
    assert sandbox.requests_to("GET", "/v1/products/" + product) == []


def test_lanes_booked_within_the_longest_wait_make_the_request_sleep_until_its_slot(aws):
    book_every_lane(START + 3)
    time = OwnTime()
    metrics = Metrics()
    ceiling(time, metrics=metrics).acquire()
    assert time.slept == [pytest.approx(3)]
    assert metrics.flush()[observability.STRIPE_CEILING_WAITED] == 1


def test_a_lane_booked_further_ahead_than_any_clock_could_is_taken_back(aws):
    book_every_lane(START + 3600)
    time = OwnTime()
    ceiling(time).acquire()
    assert time.slept == []


@pytest.mark.parametrize("fault", ["refused", "timed out"])
def test_a_bucket_that_cannot_be_written_paces_the_instance_alone_and_is_tried_again_later(
        aws, aws_faults, caplog, fault):
    if fault == "refused":
        aws_faults.fail("dynamodb", "UpdateItem", code="ProvisionedThroughputExceededException", times=None)
    else:
        aws_faults.lose_answer("dynamodb", "UpdateItem", times=None)
    time = OwnTime()
    metrics = Metrics()
    alone = ceiling(time, metrics=metrics)
    sent = []
    with caplog.at_level(logging.WARNING, logger="chalicelib.stripe_ceiling"):
        for _ in range(5):
            alone.acquire()
            sent.append(time.now)
    # One a second: the instance's share of twenty a second.
    assert sent == [pytest.approx(START + n) for n in range(5)]
    assert metrics.flush()[observability.STRIPE_CEILING_UNAVAILABLE] == 1
    assert "could not be written" in caplog.text
    aws_faults.clear()
    time.now = START + BUCKET_RETRY_SECONDS + 1
    with AWS_CALLS.counting():
        alone.acquire()
    assert lease_writes() == 1


# ------------------------------------------------- threads against the sandbox


@pytest.fixture
def account(sandbox):
    account = sandbox.create_account(id="acct_busy")["id"]
    StripeGateway(make_client(SECRET_KEY, CLIENT_ID, sandbox.url, sandbox.url), WEBHOOK_SECRET).exchange_code(
        sandbox.issue_code(account))
    return account


@pytest.mark.parametrize("stripe_latency", [0.0, 0.1])
def test_concurrent_instances_stay_under_the_ceiling_in_every_second_at_stripe(aws, sandbox, account,
                                                                                stripe_latency):
    per_second, instances, each = 60, 5, 90
    product = sandbox.create_product(account, id="prod_busy")["id"]
    path = "/v1/products/" + product
    if stripe_latency:
        sandbox.delay_next("GET", path, stripe_latency, times=instances * each)
    gateways = []
    for n in range(instances):
        client = OneWriteAtATime(boto3.client("dynamodb", region_name="us-east-1"))
        own = StripeCeiling(DynamoLanes(lambda client=client: client, LANES_TABLE), per_second,
                            rng=random.Random(n))
        gateways.append(StripeGateway(make_client(SECRET_KEY, CLIENT_ID, sandbox.url, sandbox.url,
                                                  traffic=StripeTraffic(own)), WEBHOOK_SECRET))
    failures = []

    def work(gateway):
        try:
            for _ in range(each):
                assert gateway.product(account, product)["id"] == product
        except Exception as exc:  # reported below, in the test's own thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(gateway,)) for gateway in gateways]
    with AWS_CALLS.counting():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    received = [request["received_at"] for request in sandbox.requests_to("GET", path)]
    assert len(received) == instances * each
    peak = busiest_second(received)
    writes = AWS_CALLS.on(LANES_TABLE)
    print("\n%d instances, Stripe latency %.2f s: busiest second %d requests (ceiling %d), "
          "%.1f requests a second over %.1f s, %.3f lease writes a request"
          % (instances, stripe_latency, peak, per_second, len(received) / (max(received) - min(received)),
             max(received) - min(received), writes / len(received)))
    assert peak <= per_second
    assert writes / len(received) <= 0.25


# ------------------------------------------------------------- webhooks


def test_a_burst_of_webhook_events_shares_leases_the_handlers_own_dynamodb_requests_unchanged(
        client, sandbox, monkeypatch):
    # The default ceiling, which the other tests lift.
    monkeypatch.setenv("STRIPE_REQUESTS_PER_SECOND", "20")
    services.reset()
    sandbox.create_account(id="acct_burst")
    connect(client, sandbox, "acct_burst")
    sandbox.create_product("acct_burst", id="prod_yoga")
    sandbox.create_customer("acct_burst", id="cus_ana", metadata={"customerhub_user_id": "user_ana"})
    subscription = sandbox.create_subscription("acct_burst", "cus_ana", ["prod_yoga"], id="sub_ana")
    assert deliver(client, sandbox.events[-1]).status_code == 200
    events, own, leases = 40, [], 0
    for n in range(events):
        renewed = sandbox.renew_subscription("acct_burst", subscription["id"])
        with AWS_CALLS.counting() as calls:
            assert deliver(client, stripe_event("customer.subscription.updated", "acct_burst", renewed,
                                                event_id="evt_burst_%d" % n)).status_code == 200
        leases += calls.on(LANES_TABLE)
        own.append(calls.of("dynamodb") - calls.on(LANES_TABLE))
    print("\n%d renewals back to back: %.3f lease writes an event, at most %d DynamoDB requests of "
          "the handler's own" % (events, leases / events, max(own)))
    # The event's record, the account's sites, whose the subscription is,
    # and one transaction (test_subscription_webhooks.py), with one Stripe
    # request each: the leases are a fraction of a write on top.
    assert max(own) <= 4
    assert leases / events <= 0.25


# ------------------------------------------------------------------- a 429


class Waits:
    def __init__(self):
        self.slept = []

    def __call__(self, seconds):
        self.slept.append(seconds)


def paced_gateway(sandbox, traffic):
    return StripeGateway(make_client(SECRET_KEY, CLIENT_ID, sandbox.url, sandbox.url, traffic=traffic),
                         WEBHOOK_SECRET)


def test_a_429_once_is_retried_after_a_backoff_and_the_call_succeeds_counted_by_its_reason(sandbox, account):
    product = sandbox.create_product(account, id="prod_limited")["id"]
    path = "/v1/products/" + product
    sandbox.fail_next("GET", path, 429, rate_limited_reason="endpoint-concurrency")
    waits, metrics = Waits(), Metrics()
    gateway = paced_gateway(sandbox, StripeTraffic(metrics=metrics, sleep=waits, random_fraction=lambda: 0.5))
    assert gateway.product(account, product)["id"] == product
    assert len(sandbox.requests_to("GET", path)) == 2
    assert waits.slept == [0.5 * BACKOFF_BASE_SECONDS]
    counted = metrics.flush()
    assert counted[observability.STRIPE_RATE_LIMITED] == 1
    assert counted["StripeRateLimitedEndpointConcurrency"] == 1
    assert counted[observability.STRIPE_REQUESTS] == 2
    assert observability.STRIPE_OTHER_429 not in counted


@pytest.mark.parametrize("should_retry", [None, True], ids=["plain 429", "429 with Stripe-Should-Retry"])
def test_a_429_on_every_try_ends_as_stripe_failure_after_the_bounded_tries(sandbox, account, should_retry):
    product = sandbox.create_product(account, id="prod_limited")["id"]
    path = "/v1/products/" + product
    sandbox.fail_next("GET", path, 429, rate_limited_reason="global-rate", times=20, should_retry=should_retry)
    waits, metrics = Waits(), Metrics()
    gateway = paced_gateway(sandbox, StripeTraffic(metrics=metrics, sleep=waits, random_fraction=lambda: 1.0))
    with pytest.raises(StripeFailure):
        gateway.product(account, product)
    # Not stripe-python's retries on top of ours, even when Stripe says it may.
    assert len(sandbox.requests_to("GET", path)) == RATE_LIMITED_TRIES
    assert len(waits.slept) == RATE_LIMITED_TRIES - 1
    assert metrics.flush()["StripeRateLimitedGlobalRate"] == RATE_LIMITED_TRIES


def test_a_429_without_a_rate_limit_reason_is_retried_fewer_times_and_counted_apart(sandbox, account, caplog):
    product = sandbox.create_product(account, id="prod_locked")["id"]
    path = "/v1/products/" + product
    sandbox.fail_next("GET", path, 429, error={"code": "lock_timeout"}, times=20)
    waits, metrics = Waits(), Metrics()
    gateway = paced_gateway(sandbox, StripeTraffic(metrics=metrics, sleep=waits, random_fraction=lambda: 0.0))
    with caplog.at_level(logging.INFO, logger="chalicelib.stripe_ceiling"):
        with pytest.raises(StripeFailure):
            gateway.product(account, product)
    assert len(sandbox.requests_to("GET", path)) == OTHER_429_TRIES
    counted = metrics.flush()
    assert counted[observability.STRIPE_OTHER_429] == OTHER_429_TRIES
    assert observability.STRIPE_RATE_LIMITED not in counted
    assert "answered 429 without a rate limit GET %s" % path in caplog.text


def test_the_backoff_waits_grow_to_their_cap_and_are_full_jitter():
    highest = StripeTraffic(random_fraction=lambda: 0.999999)
    assert [round(highest.backoff(n), 3) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, BACKOFF_CAP_SECONDS]
    drawn = StripeTraffic(random_fraction=random.Random(3).random)
    waits = [drawn.backoff(3) for _ in range(500)]
    assert all(0 <= wait < 2.0 for wait in waits)
    # Full jitter: anywhere from nothing to the cap, not a fixed wait plus a little.
    assert min(waits) < 0.1 and max(waits) > 1.9
    assert len({round(wait, 6) for wait in waits}) > 490


def test_a_429_is_logged_by_its_path_alone_never_a_key_an_email_or_a_query(sandbox, account, caplog):
    sandbox.fail_next("GET", "/v1/customers", 429, rate_limited_reason="global-rate", times=20)
    gateway = paced_gateway(sandbox, StripeTraffic(sleep=Waits()))
    with caplog.at_level(logging.INFO, logger="chalicelib.stripe_ceiling"):
        with pytest.raises(StripeFailure):
            gateway.customers_with_email(account, "ana@studio.test")
    assert "rate limited (global-rate) GET /v1/customers" in caplog.text
    assert "giving up" in caplog.text
    for secret in (SECRET_KEY, "ana@studio.test", "studio.test", "email=", "Bearer"):
        assert secret not in caplog.text


def test_every_request_of_the_gateway_takes_a_slot_first_its_clients_own_retries_included(aws, sandbox, account):
    product = sandbox.create_product(account, id="prod_flaky")["id"]
    path = "/v1/products/" + product
    sandbox.fail_next("GET", path, 500)
    time = OwnTime()
    metrics = Metrics()
    gateway = paced_gateway(sandbox, StripeTraffic(ceiling(time, metrics=metrics), metrics=metrics))
    gateway.product(account, product)
    counted = metrics.flush()
    assert len(sandbox.requests_to("GET", path)) == counted[observability.STRIPE_REQUESTS] == 2
