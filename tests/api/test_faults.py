"""Faults at the edges: Stripe rate limiting, failing and hanging; DynamoDB
and EventBridge throttling; the process dying between two writes. Each fault
is followed by what comes next in production (the events queue's next try of
a webhook's event, the sweep's next run, the stream trigger's next batch) and
each ends where a clean run ends: the same entitlements, and one
announcement per access change, sent again after a crash only with the same
change_id. Stripe hears 200 once the event is queued, whatever handling
meets afterwards (tests/api/test_webhook_queue.py: when SQS fails).

Throttling is what the client meets after its own retries: stripe-python
tries a request 1 + max_network_retries (2) times when Stripe says it may,
and a 429 is tried RATE_LIMITED_TRIES times (OTHER_429_TRIES without a rate
limit reason) after a back-off of ours;
PynamoDB's botocore client tries a DynamoDB call 4 times and boto3's
EventBridge client 3 times (standard retry mode). `AWS_FAULTS.answer` throttles
each attempt, so those counts are measured here; `AWS_FAULTS.fail` is the
outcome once the client gave up, without the back-off wait."""
import time
from collections import Counter

import pytest
from pynamodb.exceptions import PynamoDBException

from chalicelib import services
from chalicelib.entitlements import due_shard_of, member_key
from chalicelib.models import ConnectionModel, EntitlementModel
from chalicelib.stripe_ceiling import OTHER_429_TRIES, RATE_LIMITED_TRIES
from tests.api.test_connect_lifecycle import card, connect
from tests.api.test_expire_access import at as moment, subscribe, sweep_at
# studio and t0 are the lifecycle tests' fixtures, used here too.
from tests.api.test_subscription_lifecycle import (ACCOUNT, DAY, GRANTED, REVOKED, SUBSCRIPTION, USER, Life,  # noqa: F401
                                                   delivered, entitlements, failed_where_handled, held,
                                                   recorded, stored, story, studio, t0, tried_again,
                                                   unique_changes, usable)
from tests.helpers import ProcessDied, bearer, deliver, stripe_event

SUBSCRIPTION_PATH = "/v1/subscriptions/" + SUBSCRIPTION
# A deployment's shorter STRIPE_TIMEOUT_SECONDS, and a hang well past it.
TIMEOUT = 0.5
# Long beside the timeout: a hung request is still held when the client,
# having given up on it, has its answer.
HANG = 10.0


@pytest.fixture
def short_stripe_timeout(monkeypatch):
    monkeypatch.setenv("STRIPE_TIMEOUT_SECONDS", str(TIMEOUT))
    services.reset()
    return TIMEOUT


def stripe_reads(sandbox) -> int:
    return len(sandbox.requests_to("GET", SUBSCRIPTION_PATH))


def each_change_heard_once(heard) -> bool:
    return len(unique_changes(heard)) == len(heard)


def times_heard(heard) -> Counter:
    """How often each change went out, by change_id."""
    return Counter(event["change_id"] for event in heard)


def granted_then_deleted(client, life, access_events):
    """The member holds both products; the deletion's event is made, not delivered."""
    delivered(client, life.live("created"))
    heard = access_events.drain()
    return life.live("deleted"), heard


def ends_like_the_clean_life(client, life, heard) -> None:
    assert entitlements(client) == life.expected_access("deleted")
    assert each_change_heard_once(heard)
    assert story(heard, life) == life.expected_story()


# ------------------------------------------------------- Stripe: the webhook


@pytest.mark.parametrize("fault", [
    {"status": 429, "rate_limited_reason": "global-rate", "retry_after": 30},
    {"status": 429, "should_retry": True},
    {"status": 429, "error": {"code": "lock_timeout"}},
    {"status": 500},
], ids=["429 of the rate limiter, Retry-After 30", "429 with Stripe-Should-Retry", "429 lock timeout", "500"])
def test_one_stripe_failure_the_client_may_retry_is_retried_and_the_first_delivery_is_handled(
        client, studio, t0, access_events, fault):
    life = Life(studio, t0)
    created = life.live("created")
    studio.fail_next("GET", SUBSCRIPTION_PATH, **fault)
    delivered(client, created)
    # A 429 is tried again after our back-off (chalicelib/stripe_ceiling.py),
    # a 500 after stripe-python's; neither reads Retry-After.
    assert stripe_reads(studio) == 2
    assert recorded(created)
    assert entitlements(client) == life.expected_access("created")
    heard = access_events.drain()
    assert each_change_heard_once(heard)
    assert story(heard, life) == life.expected_story()[:2]


@pytest.mark.parametrize("fault, attempts", [
    ({"status": 429, "rate_limited_reason": "endpoint-rate", "times": RATE_LIMITED_TRIES}, RATE_LIMITED_TRIES),
    ({"status": 429, "rate_limited_reason": "global-rate", "should_retry": True, "times": RATE_LIMITED_TRIES},
     RATE_LIMITED_TRIES),
    ({"status": 429, "error": {"code": "lock_timeout"}, "times": OTHER_429_TRIES}, OTHER_429_TRIES),
    ({"status": 500, "times": 3}, 3),
], ids=["429 of the rate limiter on every try", "429 with Stripe-Should-Retry on every try",
        "429 lock timeout on every try", "500 on every attempt"])
def test_a_stripe_failure_that_outlasts_the_clients_retries_records_nothing_and_the_queues_next_try_ends_right(
        client, studio, t0, access_events, fault, attempts):
    life = Life(studio, t0)
    deleted, heard = granted_then_deleted(client, life, access_events)
    before, reads = stored(), stripe_reads(studio)
    studio.fail_next("GET", SUBSCRIPTION_PATH, **fault)
    failed_where_handled(client, deleted)
    assert stripe_reads(studio) - reads == attempts
    assert not recorded(deleted)
    assert stored() == before
    assert access_events.drain() == []
    assert entitlements(client) == life.expected_access("created")
    # The queue gives the event again once the limit or the outage is over.
    tried_again()
    heard += access_events.drain()
    ends_like_the_clean_life(client, life, heard)


def test_a_stripe_read_that_hangs_past_the_timeout_once_is_tried_again_and_the_first_delivery_is_handled(
        client, studio, t0, access_events, short_stripe_timeout):
    life = Life(studio, t0)
    created = life.live("created")
    studio.delay_next("GET", SUBSCRIPTION_PATH, HANG)
    delivered(client, created)
    # The first attempt was given up at the timeout, not when it answered: it is still held.
    assert studio.held_requests == 1
    assert stripe_reads(studio) == 2
    assert entitlements(client) == life.expected_access("created")
    heard = access_events.drain()
    assert story(heard, life) == life.expected_story()[:2]


def test_a_stripe_that_hangs_on_every_attempt_fails_the_try_and_the_queues_next_try_ends_right(
        client, studio, t0, access_events, short_stripe_timeout):
    life = Life(studio, t0)
    deleted, heard = granted_then_deleted(client, life, access_events)
    before, reads = stored(), stripe_reads(studio)
    studio.delay_next("GET", SUBSCRIPTION_PATH, HANG, times=3)
    failed_where_handled(client, deleted)
    # Three attempts, each given up at the timeout; not three hangs: all are still held.
    assert studio.held_requests == 3
    assert stripe_reads(studio) - reads == 3
    assert not recorded(deleted)
    assert stored() == before
    tried_again()
    heard += access_events.drain()
    ends_like_the_clean_life(client, life, heard)


# --------------------------------------------------------- Stripe: the sweep


def due_members(client, sandbox, count, period_end):
    """Members whose subscriptions are set to end at period_end, with the
    subscription ids chosen, so the shards they are swept in are known."""
    return {"user_%d" % n: subscribe(client, sandbox, "user_%d" % n, period_end, cancel_at_period_end=True,
                                     id="sub_due_%d" % n)["id"]
            for n in range(count)}


def ended_for(subscription_id, period_end) -> list:
    """GET /access of a member whose one subscription ran out: a clean sweep's result."""
    return [{"product_id": "yoga", "stripe_product_id": "prod_yoga", "subscription_id": subscription_id,
             "state": "expired", "access": False,
             "access_until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(period_end)), "member_from": "metadata"}]


def still_granted(members) -> list:
    return sorted(user for user, subscription_id in members.items()
                  if EntitlementModel.get(member_key("site_a", user), subscription_id).grants)


def sweep_ended_like_a_clean_run(client, members, period_end, heard) -> None:
    for user, subscription_id in members.items():
        seen = client.get("/access/" + user, headers=bearer(site="site_a", role="admin", sub="admin_1"))
        assert seen.json_body["entitlements"] == ended_for(subscription_id, period_end), user
    assert sorted((e["type"], e["user_id"], e["reason"]) for e in unique_changes(heard)) == [
        (REVOKED, user, "period_ended") for user in sorted(members)]


@pytest.mark.parametrize("fault, attempts", [("429 on every try", RATE_LIMITED_TRIES), ("a hang on every attempt", 3)])
def test_a_stripe_that_rate_limits_or_hangs_during_the_sweep_leaves_the_entitlement_for_the_next_run(
        client, studio, t0, access_events, short_stripe_timeout, fault, attempts):
    period_end = t0 + 30 * DAY
    members = due_members(client, studio, 2, period_end)
    access_events.drain()
    path = "/v1/subscriptions/" + members["user_0"]
    if fault.startswith("429"):
        studio.fail_next("GET", path, 429, rate_limited_reason="global-rate", times=attempts)
    else:
        studio.delay_next("GET", path, HANG, times=attempts)
    reads = len(studio.requests_to("GET", path))

    report = sweep_at(moment(period_end + 60)).run()

    assert (report.revoked, report.left) == (1, 1)
    assert len(studio.requests_to("GET", path)) - reads == attempts
    assert still_granted(members) == ["user_0"]
    assert sweep_at(moment(period_end + 120)).run().revoked == 1
    heard = access_events.drain()
    assert each_change_heard_once(heard)
    sweep_ended_like_a_clean_run(client, members, period_end, heard)


# ---------------------------------------------- DynamoDB throttling: webhook


@pytest.mark.parametrize("operation, code", [
    ("BatchGetItem", "ProvisionedThroughputExceededException"),
    ("Query", "ThrottlingException"),
], ids=["duplicate check and whose the subscription is", "sites of the account"])
def test_a_read_throttled_past_the_clients_retries_fails_the_try_before_asking_stripe_and_the_next_ends_right(
        client, studio, t0, access_events, aws_faults, operation, code):
    life = Life(studio, t0)
    deleted, heard = granted_then_deleted(client, life, access_events)
    before, reads = stored(), stripe_reads(studio)
    aws_faults.fail("dynamodb", operation, code=code)
    failed_where_handled(client, deleted)
    assert aws_faults.pending() == []
    assert stripe_reads(studio) == reads
    assert not recorded(deleted)
    assert stored() == before
    tried_again()
    heard += access_events.drain()
    ends_like_the_clean_life(client, life, heard)


def test_one_throttled_attempt_of_the_transaction_is_retried_by_the_client_and_the_event_is_written_once(
        client, studio, t0, access_events, aws_faults):
    life = Life(studio, t0)
    created = life.live("created")
    throttle = aws_faults.answer("dynamodb", "TransactWriteItems", "ProvisionedThroughputExceededException")
    delivered(client, created)
    assert throttle.hits == 1
    assert recorded(created)
    assert entitlements(client) == life.expected_access("created")
    heard = access_events.drain()
    assert story(heard, life) == life.expected_story()[:2]


def test_a_transaction_throttled_on_every_attempt_fails_the_try_after_four_attempts_and_the_next_ends_right(
        client, studio, t0, access_events, aws_faults):
    life = Life(studio, t0)
    deleted, heard = granted_then_deleted(client, life, access_events)
    before = stored()
    throttle = aws_faults.answer("dynamodb", "TransactWriteItems", "ThrottlingException", times=None)
    failed_where_handled(client, deleted)
    # PynamoDB's client: one attempt and max_retry_attempts (3) retries.
    assert throttle.hits == 4
    assert not recorded(deleted)
    assert stored() == before
    aws_faults.clear()
    tried_again()
    heard += access_events.drain()
    ends_like_the_clean_life(client, life, heard)


def test_a_transaction_cancelled_for_a_throttled_item_is_not_taken_for_a_stale_view_and_the_next_try_ends_right(
        client, studio, t0, access_events, aws_faults):
    life = Life(studio, t0)
    deleted, heard = granted_then_deleted(client, life, access_events)
    before = stored()
    # DynamoDB's own way to throttle one item of a transaction: the
    # entitlement, the member's customer and the event's record.
    cancelled = aws_faults.answer(
        "dynamodb", "TransactWriteItems", "TransactionCanceledException",
        CancellationReasons=[{"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity"},
                             {"Code": "None"}, {"Code": "None"}])
    failed_where_handled(client, deleted)
    # Not a throttling code to botocore: not retried.
    assert cancelled.hits == 1
    assert not recorded(deleted)
    assert stored() == before
    tried_again()
    heard += access_events.drain()
    ends_like_the_clean_life(client, life, heard)


def test_a_transaction_whose_answer_is_lost_is_tried_again_by_the_client_which_finds_its_own_record(
        client, studio, t0, access_events, aws_faults):
    life = Life(studio, t0)
    deleted, heard = granted_then_deleted(client, life, access_events)
    # DynamoDB committed it; the answer timed out on the way back.
    lost = aws_faults.lose_answer("dynamodb", "TransactWriteItems")
    delivered(client, deleted)
    assert lost.hits == 1
    assert recorded(deleted)
    heard += access_events.drain()
    ends_like_the_clean_life(client, life, heard)


# ----------------------------------- DynamoDB throttling and crashes: sweep


def shard_of(user, subscription_id) -> int:
    return due_shard_of(member_key("site_a", user), subscription_id)


def test_a_sweep_whose_due_query_is_throttled_for_one_shard_ends_the_others_and_the_next_run_the_rest_once_each(
        client, studio, t0, access_events, aws_faults):
    period_end = t0 + 30 * DAY
    members = due_members(client, studio, 4, period_end)
    access_events.drain()
    shards = sorted(shard_of(user, s) for user, s in members.items())
    # One query per shard, in order: throttle the query of the middle one.
    middle = shards[len(shards) // 2]
    swept_first = [user for user, s in members.items() if shard_of(user, s) != middle]
    assert 0 < len(swept_first) < len(members)
    aws_faults.fail("dynamodb", "Query", code="ProvisionedThroughputExceededException", let_through=middle)

    with pytest.raises(PynamoDBException):
        sweep_at(moment(period_end + 60)).run()

    assert aws_faults.pending() == []
    assert still_granted(members) == sorted(set(members) - set(swept_first))
    heard = access_events.drain()
    assert sorted(e["user_id"] for e in heard) == sorted(swept_first)
    second = sweep_at(moment(period_end + 120)).run()
    assert (second.revoked, second.complete) == (len(members) - len(swept_first), True)
    assert sweep_at(moment(period_end + 180)).run().due == 0
    heard += access_events.drain()
    assert each_change_heard_once(heard)
    sweep_ended_like_a_clean_run(client, members, period_end, heard)


@pytest.mark.parametrize("window, ended_by_the_first_run", [
    ("the second put throttled past the client's retries", 1),
    ("the process dies after the second put landed", 2),
    ("the process dies after Stripe's answer for the third, before its put", 2),
])
def test_a_sweep_interrupted_between_two_writes_is_finished_by_the_next_run_with_one_revocation_each(
        client, studio, t0, access_events, aws_faults, window, ended_by_the_first_run):
    period_end = t0 + 30 * DAY
    members = due_members(client, studio, 4, period_end)
    access_events.drain()
    # What Stripe said is written a batch at a time (with whose each
    # subscription is), here one entitlement a batch: one transaction each.
    if window.startswith("the second put throttled"):
        aws_faults.fail("dynamodb", "TransactWriteItems", code="ProvisionedThroughputExceededException",
                        let_through=1)
    elif window.startswith("the process dies after the second put"):
        aws_faults.crash("dynamodb", "TransactWriteItems", after=True, let_through=1)
    else:
        aws_faults.crash("dynamodb", "TransactWriteItems", after=False, let_through=2)

    with pytest.raises((PynamoDBException, ProcessDied)):
        sweep_at(moment(period_end + 60), write_batch=1).run()

    assert aws_faults.pending() == []
    left = len(members) - ended_by_the_first_run
    assert len(still_granted(members)) == left
    reads = len(studio.requests_to("GET", "/v1/subscriptions/"))
    second = sweep_at(moment(period_end + 120)).run()
    assert (second.revoked, second.complete) == (left, True)
    # What the first run left is read from Stripe again, nothing else.
    assert len(studio.requests_to("GET", "/v1/subscriptions/")) - reads == left
    heard = access_events.drain()
    assert each_change_heard_once(heard)
    sweep_ended_like_a_clean_run(client, members, period_end, heard)


def test_a_sweep_whose_batch_write_fails_ends_none_of_it_and_the_next_run_ends_each_once(
        client, studio, t0, access_events, aws_faults):
    period_end = t0 + 30 * DAY
    members = due_members(client, studio, 4, period_end)
    access_events.drain()
    aws_faults.fail("dynamodb", "TransactWriteItems", code="ProvisionedThroughputExceededException")

    with pytest.raises(PynamoDBException):
        sweep_at(moment(period_end + 60)).run()

    assert aws_faults.pending() == []
    assert len(still_granted(members)) == len(members)
    assert access_events.drain() == []
    second = sweep_at(moment(period_end + 120)).run()
    assert (second.revoked, second.complete) == (len(members), True)
    heard = access_events.drain()
    assert each_change_heard_once(heard)
    sweep_ended_like_a_clean_run(client, members, period_end, heard)


def test_a_sweep_put_whose_answer_is_lost_is_tried_again_and_the_entitlement_ends_once(
        client, studio, t0, access_events, aws_faults):
    period_end = t0 + 30 * DAY
    members = due_members(client, studio, 2, period_end)
    access_events.drain()
    lost = aws_faults.lose_answer("dynamodb", "TransactWriteItems")
    report = sweep_at(moment(period_end + 60)).run()
    assert lost.hits == 1
    # The retry of its own write meets that write: counted as changed meanwhile.
    assert (report.revoked + report.changed_meanwhile, report.left, report.complete) == (2, 0, True)
    assert still_granted(members) == []
    assert sweep_at(moment(period_end + 120)).run().due == 0
    heard = access_events.drain()
    assert each_change_heard_once(heard)
    sweep_ended_like_a_clean_run(client, members, period_end, heard)


# ------------------------------------------------ EventBridge and the stream


def test_puts_throttled_on_every_attempt_hold_the_stream_and_its_next_batch_announces_each_change_once(
        client, studio, t0, access_events, aws_faults):
    life = Life(studio, t0)
    delivered(client, life.live("created"))
    throttle = aws_faults.answer("eventbridge", "PutEvents", "ThrottlingException", times=3)
    assert access_events.drain() == []
    # boto3's EventBridge client: one attempt and two retries.
    assert throttle.hits == 3
    heard = access_events.drain()
    assert each_change_heard_once(heard)
    assert story(heard, life) == life.expected_story()[:2]
    assert entitlements(client) == life.expected_access("created")
    assert held(heard) == usable(entitlements(client))


def test_an_entry_eventbridge_refuses_sends_its_batch_again_and_consumers_drop_the_repeat_by_change_id(
        client, studio, t0, access_events, aws_faults):
    life = Life(studio, t0)
    delivered(client, life.live("created"))
    aws_faults.refuse_entries(positions=[1])
    first = access_events.drain()
    assert [e["product_id"] for e in first] == ["prod_pilates"]
    retry = access_events.drain()
    assert [e["product_id"] for e in retry] == ["prod_pilates", "yoga"]
    heard = first + retry
    assert times_heard(heard) == {first[0]["change_id"]: 2, retry[1]["change_id"]: 1}
    assert story(unique_changes(heard), life) == life.expected_story()[:2]
    assert entitlements(client) == life.expected_access("created")
    assert held(unique_changes(heard)) == usable(entitlements(client))


def test_a_throttled_read_while_announcing_a_revocation_holds_the_stream_and_the_next_batch_sends_it_once(
        client, studio, t0, access_events, aws_faults):
    period_end = t0 + 30 * DAY
    members = due_members(client, studio, 2, period_end)
    access_events.drain()
    assert sweep_at(moment(period_end + 60)).run().revoked == 2
    # A revocation first reads the member's other entitlements.
    aws_faults.fail("dynamodb", "Query", code="ThrottlingException")
    assert access_events.drain() == []
    assert aws_faults.pending() == []
    heard = access_events.drain()
    assert each_change_heard_once(heard)
    sweep_ended_like_a_clean_run(client, members, period_end, heard)


@pytest.mark.parametrize("window, sent_twice", [
    ("before PutEvents", False),
    ("after PutEvents took the entries, before the batch is reported done", True),
])
def test_an_announcer_that_dies_is_given_the_batch_again_and_each_change_keeps_its_change_id(
        client, studio, t0, access_events, aws_faults, window, sent_twice):
    period_end = t0 + 30 * DAY
    members = due_members(client, studio, 3, period_end)
    access_events.drain()
    assert sweep_at(moment(period_end + 60)).run().revoked == 3
    aws_faults.crash("eventbridge", "PutEvents", after=window.startswith("after"))
    with pytest.raises(ProcessDied):
        access_events.drain()
    heard = access_events.drain()
    counts = times_heard(heard)
    # Consumers dedupe by change_id: one distinct change per access flip.
    assert len(counts) == len(members)
    assert set(counts.values()) == ({2} if sent_twice else {1})
    sweep_ended_like_a_clean_run(client, members, period_end, heard)


# ------------------------------------------------------- crashes: webhook


def test_a_crash_between_the_transactions_of_an_event_for_fifty_sites_is_finished_by_the_queues_next_try(
        client, studio, t0, access_events, aws_faults):
    # A site's view writes five items (its entitlement, whose the
    # subscription is, the member's billing customer, the customer's member
    # and the member's access history): one transaction holds 19 sites, the
    # next 19, and the last 12 with the event's record a third.
    sites = ["site_a"] + ["site_%02d" % n for n in range(49)]
    for site in sites[1:]:
        connect(client, studio, ACCOUNT, headers=bearer(site=site, role="owner", sub="admin_1"))
    life = Life(studio, t0, products=(("yoga", "prod_yoga"),))
    created = life.live("created")
    # Stripe hears 200; the function handling the queued event dies.
    aws_faults.crash("dynamodb", "TransactWriteItems", after=True)
    with pytest.raises(ProcessDied):
        deliver(client, created)
    assert not recorded(created)
    assert len(stored()) == 19
    # The function never returned: the queue gives the event again.
    tried_again()
    assert recorded(created)
    heard = access_events.drain()
    assert each_change_heard_once(heard)
    assert sorted((e["type"], e["site_id"], e["product_id"]) for e in heard) == sorted(
        (GRANTED, site, "yoga") for site in sites)
    assert [(item["site_id"]["S"], item["grants"]["BOOL"]) for item in stored()] == [
        (site, True) for site in sorted(sites)]
    # Sites of the first, second and last transaction.
    for site in ("site_00", "site_32", "site_a"):
        own = client.get("/access", headers=bearer(site=site, sub=USER, role="member")).json_body
        assert own["entitlements"] == life.expected_access("created"), site


def test_a_crash_between_disconnecting_two_sites_on_a_revocation_is_finished_by_the_queues_next_try(
        client, studio, t0, access_events, aws_faults):
    site_b = bearer(site="site_b", role="owner", sub="admin_1")
    connect(client, studio, ACCOUNT, headers=site_b)
    period_end = t0 + 30 * DAY
    subscription_id = subscribe(client, studio, "user_bo", period_end)["id"]
    access_events.drain()
    studio.revoke(ACCOUNT)
    revoked = stripe_event("account.application.deauthorized", ACCOUNT,
                           {"id": "ca_test_platform", "object": "application"}, created=int(time.time()))
    # The first site's connection is written; the process dies before the second's.
    aws_faults.crash("dynamodb", "PutItem", after=True)
    with pytest.raises(ProcessDied):
        deliver(client, revoked)
    assert not recorded(revoked)
    assert sorted(c.status for c in ConnectionModel.scan()) == ["connected", "disconnected"]
    tried_again()
    assert recorded(revoked)
    admins = (bearer(site="site_a", role="admin", sub="admin_1"), site_b)
    for headers in admins:
        now = card(client, headers)
        assert (now["status"], now["disconnected_reason"]) == ("disconnected", "revoked_in_stripe")
    # The member keeps what they paid for; the sweep ends it on the stored date.
    assert sweep_at(moment(period_end + 60)).run().revoked == 2
    heard = access_events.drain()
    assert each_change_heard_once(heard)
    assert sorted((e["type"], e["site_id"], e["reason"]) for e in heard) == [
        (REVOKED, "site_a", "period_ended"), (REVOKED, "site_b", "period_ended")]
    for headers in admins:
        seen = client.get("/access/user_bo", headers=headers).json_body["entitlements"]
        assert seen == ended_for(subscription_id, period_end)
