"""Events Stripe could not deliver are caught up by the hourly catch_up:
handled as a delivery, duplicates changing nothing, and with nothing missed
one Stripe request per connected account and no write."""
import time

import boto3
import pytest

from app import catch_up
from chalicelib.models import CatchUpModel, RateLimitModel
from chalicelib.queues import EVENTS_QUEUE
from chalicelib.settings import get_settings
from local.scheduled import scheduled_event
from tests.api.test_connect_lifecycle import card, connect
from tests.api.test_import import access, heard, member
from tests.helpers import AWS_CALLS, bearer, deliver

ACCOUNT = "acct_existing"
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


def run_catch_up(work):
    answer = catch_up(scheduled_event("us-east-1"), None)
    assert work.drain()["failed"] == 0
    return answer


@pytest.fixture
def studio(client, sandbox, work):
    sandbox.create_account(id=ACCOUNT, display_name="Existing Studio")
    sandbox.create_product(ACCOUNT, name="Yoga", id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    connect(client, sandbox, ACCOUNT)
    work.drain()
    return sandbox


def test_an_event_stripe_could_not_deliver_is_handled_by_the_catch_up(client, studio, work, access_events):
    created = studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    event = studio.events[-1]
    assert access(client, "user_ana") == set()

    assert run_catch_up(work) == {"accounts": 1, "endpoint": "unknown"}

    assert access(client, "user_ana") == {("yoga", "active", True)}
    assert heard(access_events) == [("AccessGranted", "user_ana", "yoga", "subscription_active", event["id"])]
    assert created["id"] in [r["path"].rsplit("/", 1)[-1] for r in studio.requests_to("GET", "/v1/subscriptions/")]
    asked = studio.requests_to("GET", "/v1/events")[-1]
    assert asked["query"]["delivery_success"] == "false"
    assert asked["stripe_account"] == ACCOUNT
    assert sorted(asked["query"]["types"]) == sorted([
        "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
        "customer.subscription.paused", "customer.subscription.resumed", "account.application.deauthorized",
        "account.updated"])


def test_the_catch_up_handles_what_it_finds_itself_not_through_the_events_queue(client, studio, work):
    studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    run_catch_up(work)
    assert access(client, "user_ana") == {("yoga", "active", True)}
    # It already runs on the work queue: nothing goes on the events queue.
    sqs = boto3.client("sqs", region_name=get_settings().aws_region)
    events = sqs.get_queue_url(QueueName=EVENTS_QUEUE)["QueueUrl"]
    assert sqs.receive_message(QueueUrl=events).get("Messages") is None


def test_events_delivered_meanwhile_change_nothing_the_second_time(client, studio, work, access_events):
    subscription = studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    assert deliver(client, studio.events[-1]).status_code == 200
    studio.cancel_subscription(ACCOUNT, subscription["id"])
    assert deliver(client, studio.events[-1]).status_code == 200
    heard(access_events)

    run_catch_up(work)

    assert access(client, "user_ana") == {("yoga", "expired", False)}
    assert heard(access_events) == []


def test_the_next_catch_up_starts_where_the_last_one_found_events(client, studio, work):
    studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    run_catch_up(work)
    mark = CatchUpModel.get(ACCOUNT).caught_up_to
    assert mark > time.time() - 600
    run_catch_up(work)
    assert studio.requests_to("GET", "/v1/events")[-1]["query"]["created"] == {"gte": str(mark)}


def test_with_nothing_missed_it_costs_one_stripe_request_per_account_and_one_write_of_when_it_ran(
        client, sandbox, work):
    for n in range(3):
        account = "acct_quiet%d" % n
        sandbox.create_account(id=account, display_name="Quiet %d" % n)
        connect(client, sandbox, account, headers=bearer(site="site_%d" % n, role="admin", sub="admin_1"))
    work.drain()
    before = len(sandbox.requests)
    with AWS_CALLS.counting() as calls:
        run_catch_up(work)
    asked = sandbox.requests[before:]
    assert sorted((r["path"], r["stripe_account"]) for r in asked) == [
        ("/v1/events", "acct_quiet0"), ("/v1/events", "acct_quiet1"), ("/v1/events", "acct_quiet2")]
    # The leases of Stripe slots (stripe_ceiling.py), fewer than the
    # requests, and when each account's catch-up ran (the card shows it).
    leases = calls.on(RateLimitModel.Meta.table_name)
    assert leases < len(asked)
    assert sum(n for (service, operation), n in calls.calls.items()
               if service == "dynamodb" and operation in WRITES) == leases + 3
    assert all(CatchUpModel.get("acct_quiet%d" % n).ran_at is not None for n in range(3))


def test_a_missed_revocation_disconnects_the_site(client, studio, work):
    studio.revoke(ACCOUNT)
    run_catch_up(work)
    shown = card(client)
    assert (shown["status"], shown["disconnected_reason"]) == ("disconnected", "revoked_in_stripe")


def test_a_catch_up_whose_event_fails_comes_again_and_then_handles_it(client, studio, work):
    created = studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    studio.fail_next("GET", "/v1/subscriptions/" + created["id"], status=500, times=3)
    catch_up(scheduled_event("us-east-1"), None)
    counts = work.drain()
    assert counts == {"handled": 1, "failed": 1}
    assert access(client, "user_ana") == {("yoga", "active", True)}
    assert CatchUpModel.get(ACCOUNT).caught_up_to > 0


def test_the_first_catch_up_looks_back_to_the_connection_and_never_past_30_days(client, studio, work):
    run_catch_up(work)
    connected_at = card(client)["connected_at"]
    since = int(studio.requests_to("GET", "/v1/events")[-1]["query"]["created"]["gte"])
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)) == connected_at
    # Nothing found: the mark stays at the connection; only the run is noted.
    record = CatchUpModel.get(ACCOUNT)
    assert record.caught_up_to == since and record.ran_at is not None
