"""An account connected with subscribers already paying: the import brings
them in, in the background, page by page, under the webhook's rules."""
import json
import time

import pytest

from chalicelib.limits import sync_key
from chalicelib.models import EntitlementModel, ImportModel, RateLimitModel
from tests.api.test_connect_lifecycle import ADMIN, card, connect
from tests.helpers import AWS_CALLS, bearer, deliver, stripe_event

ACCOUNT = "acct_existing"
DAY = 24 * 3600
GRANTED, REVOKED = "AccessGranted", "AccessRevoked"
MEMBER = bearer(site="site_a", role="member", sub="user_x")


def member(sandbox, name, account=ACCOUNT, named=True):
    """A customer of the account, naming the CustomerHub member user_<name> unless named=False."""
    return sandbox.create_customer(account, email=name + "@studio.test", id="cus_" + name + account[-4:],
                                   metadata={"customerhub_user_id": "user_" + name} if named else {})["id"]


def access(client, user):
    answer = client.get("/access/" + user, headers=ADMIN)
    assert answer.status_code == 200
    return {(e["product_id"], e["state"], e["access"]) for e in answer.json_body["entitlements"]}


def heard(access_events):
    return sorted((e["type"], e["user_id"], e["product_id"], e["reason"], e["stripe_event_id"])
                  for e in access_events.drain())


@pytest.fixture
def studio(sandbox):
    sandbox.create_account(id=ACCOUNT, display_name="Existing Studio")
    sandbox.create_product(ACCOUNT, name="Yoga", id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    sandbox.create_product(ACCOUNT, name="Pilates", id="prod_pilates")
    return sandbox


def test_connecting_imports_the_subscriptions_that_grant_access_and_announces_each_once(
        client, studio, work, access_events):
    now = int(time.time())
    studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    studio.create_subscription(ACCOUNT, member(studio, "ben"), ["prod_pilates"], status="trialing")
    studio.create_subscription(ACCOUNT, member(studio, "cy"), ["prod_yoga", "prod_pilates"], status="past_due")
    studio.create_subscription(ACCOUNT, member(studio, "di"), ["prod_yoga"], cancel_at_period_end=True)
    studio.create_subscription(ACCOUNT, member(studio, "ed"), ["prod_yoga"], status="canceled")
    studio.create_subscription(ACCOUNT, member(studio, "fay", named=False), ["prod_yoga"])
    studio.create_subscription(ACCOUNT, member(studio, "gus", named=False), ["prod_pilates"],
                               metadata={"customerhub_user_id": "user_gus"})

    connected = connect(client, studio, ACCOUNT)
    assert connected["sync"]["state"] == "importing"
    assert connected["sync"]["finished_at"] is None
    assert work.drain()["failed"] == 0

    assert access(client, "user_ana") == {("yoga", "active", True)}
    assert access(client, "user_ben") == {("prod_pilates", "active", True)}
    assert access(client, "user_cy") == {("yoga", "past_due", True), ("prod_pilates", "past_due", True)}
    assert access(client, "user_di") == {("yoga", "canceling", True)}
    assert access(client, "user_ed") == set()
    assert access(client, "user_gus") == {("prod_pilates", "active", True)}
    sync = card(client)["sync"]
    assert sync["state"] == "done"
    assert (sync["subscriptions"], sync["matched"], sync["unmatched"]) == (6, 5, 1)
    assert sync["started_at"] <= sync["finished_at"]
    assert sync["started_at"] >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    assert heard(access_events) == sorted([
        (GRANTED, "user_ana", "yoga", "subscription_active", None),
        (GRANTED, "user_ben", "prod_pilates", "subscription_active", None),
        (GRANTED, "user_cy", "yoga", "subscription_active", None),
        (GRANTED, "user_cy", "prod_pilates", "subscription_active", None),
        (GRANTED, "user_di", "yoga", "subscription_active", None),
        (GRANTED, "user_gus", "prod_pilates", "subscription_active", None)])
    # The member's billing portal finds the customer the import recorded.
    assert client.get("/access", headers=bearer(site="site_a", role="member", sub="user_ana")).json_body[
        "entitlements"][0]["product_id"] == "yoga"


def test_an_import_lists_pages_of_a_hundred_and_reads_each_product_once(client, studio, work):
    customers = [member(studio, "m%03d" % n) for n in range(230)]
    for n, customer in enumerate(customers):
        studio.create_subscription(ACCOUNT, customer, ["prod_yoga"] if n % 2 else ["prod_yoga", "prod_pilates"])
    connect(client, studio, ACCOUNT)
    before = len(studio.requests)
    work.drain()
    asked = [(r["method"], r["path"]) for r in studio.requests[before:]]
    listed = [r for r in studio.requests[before:] if r["path"] == "/v1/subscriptions"]
    assert len(listed) == 3 + 2          # active: 3 pages; trialing, past_due: 1 each
    assert all(r["query"].get("limit") == "100" for r in listed)
    assert sorted(p for m, p in asked if p.startswith("/v1/products/")) == [
        "/v1/products/prod_pilates", "/v1/products/prod_yoga"]
    # And one page of the account's open invoices, before the past_due page.
    assert [r["query"] for r in studio.requests[before:] if r["path"] == "/v1/invoices"] == [
        {"status": "open", "limit": "100"}]
    assert len(asked) == len(listed) + 2 + 1
    assert card(client)["sync"]["subscriptions"] == 230
    assert access(client, "user_m229") == {("yoga", "active", True)}
    assert access(client, "user_m000") == {("yoga", "active", True), ("prod_pilates", "active", True)}


def test_switching_accounts_imports_the_new_one_and_the_old_members_keep_what_they_paid_for(
        client, studio, work, access_events):
    studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    connect(client, studio, ACCOUNT)
    work.drain()
    studio.create_account(id="acct_second", display_name="Second Studio")
    studio.create_product("acct_second", name="Spin", id="prod_spin")
    studio.create_subscription("acct_second", member(studio, "ben", account="acct_second"), ["prod_spin"])
    heard(access_events)

    switched = connect(client, studio, "acct_second")
    assert switched["sync"]["state"] == "importing"
    work.drain()

    assert access(client, "user_ben") == {("prod_spin", "active", True)}
    assert access(client, "user_ana") == {("yoga", "active", True)}
    assert heard(access_events) == [(GRANTED, "user_ben", "prod_spin", "subscription_active", None)]
    assert card(client)["sync"]["subscriptions"] == 1


def test_a_reconnection_brings_in_what_changed_while_disconnected(client, studio, work, access_events):
    kept = studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    ended = studio.create_subscription(ACCOUNT, member(studio, "ben"), ["prod_yoga"])
    gone = studio.create_subscription(ACCOUNT, member(studio, "cy"), ["prod_pilates"])
    moved = studio.create_subscription(ACCOUNT, member(studio, "di", named=False), ["prod_pilates"],
                                       metadata={"customerhub_user_id": "user_di"})
    connect(client, studio, ACCOUNT)
    work.drain()
    heard(access_events)
    assert client.delete("/connectors/stripe", headers=ADMIN).status_code == 200

    # While nobody listens: one cancels, one vanishes, one is handed to
    # another member, one renews, and a new member subscribes.
    studio.cancel_subscription(ACCOUNT, ended["id"])
    studio.forget_subscription(ACCOUNT, gone["id"])
    studio.update_subscription(ACCOUNT, moved["id"], metadata={"customerhub_user_id": "user_eve"})
    studio.renew_subscription(ACCOUNT, kept["id"])
    studio.create_subscription(ACCOUNT, member(studio, "fay"), ["prod_pilates"])

    connect(client, studio, ACCOUNT)
    assert work.drain()["failed"] == 0

    assert access(client, "user_ana") == {("yoga", "active", True)}
    assert access(client, "user_ben") == {("yoga", "expired", False)}
    assert access(client, "user_cy") == {("prod_pilates", "expired", False)}
    assert access(client, "user_di") == {("prod_pilates", "expired", False)}
    assert access(client, "user_eve") == {("prod_pilates", "active", True)}
    assert access(client, "user_fay") == {("prod_pilates", "active", True)}
    assert heard(access_events) == sorted([
        (REVOKED, "user_ben", "yoga", "subscription_canceled", None),
        (REVOKED, "user_cy", "prod_pilates", "subscription_canceled", None),
        # Handed to another member: the same write ends the first one's access.
        (REVOKED, "user_di", "prod_pilates", "subscription_reassigned", None),
        (GRANTED, "user_eve", "prod_pilates", "subscription_active", None),
        (GRANTED, "user_fay", "prod_pilates", "subscription_active", None)])
    stored = ImportModel.get("site_a")
    # The listing wrote the handed-over subscription as user_eve's, which
    # ended user_di's access: only the two it did not list are read again.
    assert (stored.subscriptions, stored.reread) == (3, 2)


def test_a_webhook_newer_than_the_import_s_read_wins(client, studio, work, access_events):
    subscription = studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    connect(client, studio, ACCOUNT)

    def cancel_and_deliver():
        # While the import's page is on its way back, the member cancels and
        # Stripe's event is delivered and handled first.
        studio.cancel_subscription(ACCOUNT, subscription["id"])
        assert deliver(client, studio.events[-1]).status_code == 200

    studio.before_answering_next("GET", "/v1/subscriptions", cancel_and_deliver)
    work.drain()
    assert access(client, "user_ana") == {("yoga", "expired", False)}
    assert EntitlementModel.get("site_a#user_ana", subscription["id"]).stripe_event_id == studio.events[-1]["id"]


def test_a_page_redelivered_after_it_was_written_repeats_nothing(client, studio, work, access_events):
    for name in ("ana", "ben"):
        studio.create_subscription(ACCOUNT, member(studio, name), ["prod_yoga"])
    connect(client, studio, ACCOUNT)
    first_page = {"kind": "import", "site_id": "site_a", "import_id": ImportModel.get("site_a").import_id,
                  "page": 0}
    work.drain()
    before = len(studio.requests)
    # The same message again, as SQS may hand it out twice.
    redelivery = {"Records": [{"messageId": "m1", "receiptHandle": "r1", "body": json.dumps(first_page),
                               "attributes": {"ApproximateReceiveCount": "2"}}]}
    from app import sync_worker
    sync_worker(redelivery, None)
    work.drain()
    assert len(studio.requests) == before
    assert card(client)["sync"]["subscriptions"] == 2
    assert len([e for e in access_events.drain() if e["type"] == GRANTED]) == 2


def test_a_page_that_stops_before_queueing_the_next_is_picked_up_by_its_redelivery(
        client, studio, work, aws_faults):
    for n in range(3):
        studio.create_subscription(ACCOUNT, member(studio, "p%d" % n), ["prod_yoga"])
    connect(client, studio, ACCOUNT)
    # The first page is written and counted; queueing the next one fails.
    aws_faults.fail("sqs", "SendMessageBatch", times=1)
    counts = work.drain()
    assert counts["failed"] == 1
    assert card(client)["sync"]["state"] == "done"
    assert card(client)["sync"]["subscriptions"] == 3


def test_stripe_failing_once_on_a_page_is_retried(client, studio, work):
    studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    connect(client, studio, ACCOUNT)
    studio.fail_next("GET", "/v1/subscriptions", status=500, times=3)
    counts = work.drain()
    assert counts["failed"] == 1
    assert card(client)["sync"]["state"] == "done"
    assert access(client, "user_ana") == {("yoga", "active", True)}


def test_a_page_that_keeps_failing_goes_to_the_dead_letter_queue_and_the_card_says_failed(
        client, studio, work):
    import boto3
    studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    connect(client, studio, ACCOUNT)
    studio.fail_next("GET", "/v1/subscriptions", status=500, times=100)
    counts = work.drain()
    assert counts["failed"] == 5
    sync = card(client)["sync"]
    assert sync["state"] == "failed" and sync["finished_at"] is not None
    sqs = boto3.client("sqs", region_name="us-east-1")
    dead = sqs.get_queue_url(QueueName="stripe-connector-sync-dead-letter")["QueueUrl"]
    assert len(sqs.receive_message(QueueUrl=dead, MaxNumberOfMessages=10).get("Messages") or []) == 1


def test_sync_now_starts_an_import_once_and_needs_a_connection(client, studio, work):
    assert client.post("/connectors/stripe/sync", headers=ADMIN).status_code == 409
    assert client.post("/connectors/stripe/sync", headers=ADMIN).json_body["error"]["code"] == "not_connected"
    assert client.post("/connectors/stripe/sync", headers=MEMBER).status_code == 403
    connect(client, studio, ACCOUNT)
    running = ImportModel.get("site_a").import_id
    again = client.post("/connectors/stripe/sync", headers=ADMIN)
    assert again.status_code == 202
    assert again.json_body["sync"]["state"] == "importing"
    assert ImportModel.get("site_a").import_id == running
    work.drain()
    studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    previous_sync_started(minutes_ago=10)
    resync = client.post("/connectors/stripe/sync", headers=ADMIN)
    assert resync.status_code == 202 and resync.json_body["sync"]["state"] == "importing"
    assert ImportModel.get("site_a").import_id != running
    work.drain()
    assert card(client)["sync"]["subscriptions"] == 1
    assert access(client, "user_ana") == {("yoga", "active", True)}


def previous_sync_started(minutes_ago, site_id="site_a"):
    """As if the route's previous sync of the site had started that long ago."""
    counter = RateLimitModel.get(sync_key(site_id))
    counter.update(actions=[RateLimitModel.started_at.set(time.time() - minutes_ago * 60)])


def sync(client, headers=ADMIN):
    return client.post("/connectors/stripe/sync", headers=headers)


def assert_rate_limited(response, longest):
    assert response.status_code == 429, response.json_body
    assert response.json_body["error"]["code"] == "rate_limited"
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= longest
    return int(retry_after)


def test_a_sync_within_ten_minutes_of_the_previous_is_429_with_retry_after_and_starts_nothing(
        client, studio, work):
    connect(client, studio, ACCOUNT)
    work.drain()
    assert sync(client).status_code == 202
    work.drain()
    done = ImportModel.get("site_a")
    stripe_requests = len(studio.requests)

    refused = sync(client)

    assert 590 <= assert_rate_limited(refused, longest=600)
    assert "try again in 10 minutes" in refused.json_body["error"]["message"]
    assert ImportModel.get("site_a").serialize() == done.serialize()
    assert work.drain()["handled"] == 0
    assert len(studio.requests) == stripe_requests


def test_retry_after_counts_from_when_the_previous_sync_started(client, studio, work):
    connect(client, studio, ACCOUNT)
    assert sync(client).status_code == 202
    previous_sync_started(minutes_ago=9)
    refused = sync(client)
    retry_after = assert_rate_limited(refused, longest=60)
    assert retry_after >= 55
    assert refused.json_body["error"]["message"].endswith("try again in %d seconds" % retry_after)
    # A refusal is not a sync: the next may still start ten minutes after the last one did.
    previous_sync_started(minutes_ago=10)
    assert sync(client).status_code == 202


def test_neither_the_import_a_connection_starts_nor_a_409_counts_as_a_sync(client, studio, work):
    assert sync(client).json_body["error"]["code"] == "not_connected"
    assert sync(client).status_code == 409
    connected = connect(client, studio, ACCOUNT)
    assert connected["sync"]["state"] == "importing"
    assert sync(client).status_code == 202
    # Nor does a reconnection let a sync through early, or get refused itself.
    work.drain()
    reconnected = connect(client, studio, ACCOUNT)
    assert reconnected["sync"]["state"] == "importing"
    assert_rate_limited(sync(client), longest=600)


def test_the_limit_is_each_sites_own(client, studio, work):
    connect(client, studio, ACCOUNT)
    other_admin = bearer(site="site_b", role="admin", sub="admin_b")
    connect(client, studio, ACCOUNT, headers=other_admin)
    assert sync(client).status_code == 202
    assert sync(client, other_admin).status_code == 202
    assert_rate_limited(sync(client), longest=600)
    assert_rate_limited(sync(client, other_admin), longest=600)


def test_a_refused_sync_costs_the_connection_read_and_one_write_to_the_limits(client, studio, work):
    connect(client, studio, ACCOUNT)
    work.drain()
    limits = RateLimitModel.Meta.table_name
    with AWS_CALLS.counting() as calls:
        assert sync(client).status_code == 202
    assert calls.on(limits) == 1
    assert calls.calls[("dynamodb", "UpdateItem")] == 1
    with AWS_CALLS.counting() as calls:
        assert_rate_limited(sync(client), longest=600)
    assert calls.on(limits) == 1
    assert dict(calls.calls) == {("dynamodb", "GetItem"): 1, ("dynamodb", "UpdateItem"): 1}


def test_a_sync_whose_limit_cannot_be_counted_is_500_and_starts_nothing(client, studio, work, aws_faults):
    connect(client, studio, ACCOUNT)
    work.drain()
    done = ImportModel.get("site_a")
    aws_faults.fail("dynamodb", "UpdateItem")
    response = sync(client)
    assert response.status_code == 500
    assert response.json_body["error"]["code"] == "internal_error"
    assert ImportModel.get("site_a").serialize() == done.serialize()
    assert work.drain()["handled"] == 0


def test_an_import_of_an_account_disconnected_meanwhile_stops(client, studio, work):
    studio.create_subscription(ACCOUNT, member(studio, "ana"), ["prod_yoga"])
    connect(client, studio, ACCOUNT)
    assert client.delete("/connectors/stripe", headers=ADMIN).status_code == 200
    before = len(studio.requests)
    work.drain()
    assert len(studio.requests) == before
    assert ImportModel.get("site_a").state == "failed"
    assert access(client, "user_ana") == set()



def iso(moment):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def test_past_due_subscriptions_learn_when_they_fell_behind_from_the_accounts_open_invoices_listed_once(
        client, studio, work):
    now = int(time.time())
    expected = {}
    for n in range(150):
        subscription = studio.create_subscription(ACCOUNT, member(studio, "p%03d" % n), ["prod_yoga"],
                                                  status="past_due", period_start=now - 20 * DAY)
        # Each fell behind n hours ago; every tenth also failed to renew
        # since (a newer open invoice, on the listing's first page, its
        # oldest on the second).
        fell = now - n * 3600
        [first] = studio.invoices(ACCOUNT, subscription=subscription["id"], status="open")
        studio.backdate_invoice(ACCOUNT, first["id"], fell)
        if n % 10 == 0:
            subscription = studio.renew_subscription(ACCOUNT, subscription["id"], paid=False)
        period_end = max(item["current_period_end"] for item in subscription["items"]["data"])
        expected["user_p%03d" % n] = min(fell + 14 * DAY, period_end)
    # Past due with no open invoice at all: asked, and behind since its period began.
    studio._add_subscription(ACCOUNT, member(studio, "nobill"), ["prod_yoga"], "past_due",
                             period_start=now - 2 * DAY, period_end=now + 28 * DAY, id="sub_nobill")

    connect(client, studio, ACCOUNT)
    before = len(studio.requests)
    work.drain()

    invoices = [r["query"] for r in studio.requests[before:] if r["path"] == "/v1/invoices"]
    assert len(invoices) == 3
    assert invoices[0] == {"status": "open", "limit": "100"}
    assert invoices[1]["starting_after"].startswith("in_")
    assert invoices[2] == {"subscription": "sub_nobill", "status": "open", "limit": "100"}
    for user, until in expected.items():
        answer = client.get("/access/" + user, headers=ADMIN).json_body["entitlements"]
        assert [(e["state"], e["access_until"]) for e in answer] == [("past_due", iso(until))], user
    assert client.get("/access/user_nobill", headers=ADMIN).json_body["entitlements"][0]["access_until"] == iso(
        now + 12 * DAY)
    assert card(client)["sync"]["subscriptions"] == 151
