"""Subscription events from Stripe become entitlements, what GET /access says,
and what CustomerHub hears on EventBridge."""
import time
from datetime import datetime, timedelta, timezone

import pytest
import stripe

from chalicelib import services
from chalicelib.connections import ConnectionStore
from chalicelib.models import EntitlementModel, MemberCustomerModel, RateLimitModel, WebhookEventModel
from chalicelib.webhooks import EventLog, WebhookReceiver
from tests.api.test_connect_lifecycle import ADMIN, connect
from tests.helpers import AWS_CALLS, WEBHOOK_SECRET, bearer, deliver, stripe_event

ACCOUNT = "acct_studio"
MEMBER = bearer(sub="user_ana", role="member", email="ana@studio.test")
DAY = 24 * 3600


@pytest.fixture
def studio(client, sandbox):
    """A site connected to a Stripe account with one product and a member's customer."""
    sandbox.create_account(id=ACCOUNT, display_name="Studio")
    connect(client, sandbox, ACCOUNT)
    sandbox.create_product(ACCOUNT, name="Yoga", id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    sandbox.create_product(ACCOUNT, name="Pilates", id="prod_pilates")
    sandbox.create_customer(ACCOUNT, email="ana@studio.test", id="cus_ana",
                            metadata={"customerhub_user_id": "user_ana"})
    return sandbox


def last_event(sandbox):
    return sandbox.events[-1]


def access(client, headers=MEMBER):
    response = client.get("/access", headers=headers)
    assert response.status_code == 200, response.json_body
    return response.json_body["entitlements"]


def test_a_new_subscription_grants_access_until_the_period_end_and_announces_it(client, studio, access_events):
    period_end = int(time.time()) + 30 * DAY
    subscription = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], period_end=period_end,
                                              id="sub_ana")
    response = deliver(client, last_event(studio))
    assert response.status_code == 200
    assert response.json_body == {"received": True}
    assert access(client) == [{
        "product_id": "yoga", "stripe_product_id": "prod_yoga", "subscription_id": subscription["id"],
        "state": "active", "access": True,
        "access_until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(period_end)), "member_from": "metadata"}]
    heard = access_events.drain()
    assert len(heard) == 1
    granted = heard[0]
    assert granted["type"] == "AccessGranted"
    assert granted["source"] == "customerhub.stripe-connector"
    assert {k: v for k, v in granted.items() if k not in ("type", "source", "change_id")} == {
        "site_id": "site_a", "user_id": "user_ana", "product_id": "yoga", "subscription_id": "sub_ana",
        "access_until": access(client)[0]["access_until"], "reason": "subscription_active",
        "stripe_event_id": last_event(studio)["id"]}
    assert granted["change_id"]


def test_the_admin_reads_a_members_entitlements_and_a_member_may_not(client, studio):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga", "prod_pilates"])
    deliver(client, last_event(studio))
    response = client.get("/access/user_ana", headers=ADMIN)
    assert response.status_code == 200
    assert [e["product_id"] for e in response.json_body["entitlements"]] == ["prod_pilates", "yoga"]
    assert client.get("/access/user_ana", headers=MEMBER).status_code == 403
    assert client.get("/access/user_ana", headers=bearer(site="site_b")).json_body == {"entitlements": []}
    assert client.get("/access").status_code == 401


def test_an_unknown_member_has_an_empty_list(client, studio):
    assert access(client, bearer(sub="user_nobody", role="member")) == []


def test_the_subscription_records_the_members_customer_for_the_billing_portal(client, studio):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    deliver(client, last_event(studio))
    recorded = MemberCustomerModel.get("site_a", "user_ana")
    assert (recorded.customer_id, recorded.account_id, recorded.source) == ("cus_ana", ACCOUNT, "subscription")


def test_the_user_named_on_the_subscription_is_used_when_the_customer_names_none(client, studio):
    studio.create_customer(ACCOUNT, email="bo@studio.test", id="cus_bo")
    studio.create_subscription(ACCOUNT, "cus_bo", ["prod_yoga"], metadata={"customerhub_user_id": "user_bo"})
    deliver(client, last_event(studio))
    assert [e["product_id"] for e in access(client, bearer(sub="user_bo", role="member"))] == ["yoga"]


def test_a_subscription_naming_no_user_is_kept_as_unmatched_grants_no_one_and_is_not_announced(
        client, studio, access_events):
    studio.create_customer(ACCOUNT, email="anon@studio.test", id="cus_anon", name="Anon Lima")
    created = studio.create_subscription(ACCOUNT, "cus_anon", ["prod_yoga"])
    response = deliver(client, last_event(studio))
    assert response.status_code == 200
    [kept] = list(EntitlementModel.scan())
    assert (kept.member_key, kept.subscription_id, kept.user_id) == ("site_a#", created["id"], None)
    assert (kept.email, kept.name, kept.customer_id) == ("anon@studio.test", "Anon Lima", "cus_anon")
    assert [e.event_id for e in WebhookEventModel.scan()] == [last_event(studio)["id"]]
    assert access_events.drain() == []


def test_an_event_for_an_account_no_site_is_connected_to_is_ignored(client, studio):
    studio.create_account(id="acct_other")
    studio.create_customer("acct_other", id="cus_x", metadata={"customerhub_user_id": "user_x"})
    studio.create_product("acct_other", id="prod_x")
    studio.create_subscription("acct_other", "cus_x", ["prod_x"])
    before = len(studio.requests)
    assert deliver(client, last_event(studio)).status_code == 200
    assert list(EntitlementModel.scan()) == []
    assert len(studio.requests) == before


def test_an_event_whose_livemode_differs_from_the_connection_is_ignored(client, studio):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    event = dict(last_event(studio), livemode=True)
    assert deliver(client, event).status_code == 200
    assert list(EntitlementModel.scan()) == []


def test_a_duplicate_delivery_changes_nothing_and_announces_nothing(client, studio, access_events):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    event = last_event(studio)
    deliver(client, event)
    assert len(access_events.drain()) == 1
    stored = [item.serialize() for item in EntitlementModel.scan()]
    stripe_calls = len(studio.requests)
    assert deliver(client, event).status_code == 200
    assert [item.serialize() for item in EntitlementModel.scan()] == stored
    assert len(studio.requests) == stripe_calls
    assert access_events.drain() == []


def test_a_stripe_failure_while_handling_records_nothing_and_the_queues_next_try_completes(
        client, studio, stripe_events, access_events):
    subscription = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    event = last_event(studio)
    studio.fail_next("GET", "/v1/subscriptions/" + subscription["id"], 500, should_retry=False)
    # Stripe hears 200 at once: the failure is the queue's to retry.
    response = deliver(client, event, handle=False)
    assert (response.status_code, response.json_body) == (200, {"received": True})
    assert stripe_events.drain() == {"handled": 0, "failed": 1}
    assert list(EntitlementModel.scan()) == []
    assert list(WebhookEventModel.scan()) == []
    assert stripe_events.drain() == {"handled": 1, "failed": 0}
    assert access(client)[0]["access"] is True
    assert [e["type"] for e in access_events.drain()] == ["AccessGranted"]


def test_stripe_is_read_again_so_an_old_event_cannot_undo_a_newer_state(client, studio):
    subscription = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    created = last_event(studio)
    studio.update_subscription(ACCOUNT, subscription["id"], cancel_at_period_end=True)
    deliver(client, last_event(studio))
    # The created event arrives late: it carries an active copy, Stripe says canceling.
    deliver(client, created)
    assert access(client)[0]["state"] == "canceling"


def test_when_stripe_no_longer_has_the_subscription_the_events_copy_is_used(client, studio, access_events):
    subscription = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"],
                                              metadata={"customerhub_user_id": "user_ana"})
    deliver(client, last_event(studio))
    studio.cancel_subscription(ACCOUNT, subscription["id"])
    deleted = last_event(studio)
    studio.forget_subscription(ACCOUNT, subscription["id"])
    assert deliver(client, deleted).status_code == 200
    entry = access(client)[0]
    assert (entry["access"], entry["state"]) == (False, "expired")
    assert [(e["type"], e["reason"]) for e in access_events.drain()] == [
        ("AccessGranted", "subscription_active"), ("AccessRevoked", "subscription_canceled")]


def test_periods_are_read_from_the_subscription_items(client, studio):
    now = int(time.time())
    studio.create_product(ACCOUNT, id="prod_late")
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga", "prod_late"], period_end=now + 10 * DAY)
    subscription = last_event(studio)["data"]["object"]
    assert "current_period_end" not in subscription
    studio.update_subscription(ACCOUNT, subscription["id"], period_end=now + 40 * DAY)
    deliver(client, last_event(studio))
    assert {e["access_until"] for e in access(client)} == {
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 40 * DAY))}


def test_a_product_leaving_the_subscription_loses_access(client, studio, access_events):
    subscription = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga", "prod_pilates"])
    deliver(client, last_event(studio))
    studio.update_subscription(ACCOUNT, subscription["id"], products=["prod_yoga"])
    deliver(client, last_event(studio))
    assert [e["product_id"] for e in access(client) if e["access"]] == ["yoga"]
    heard = access_events.drain()
    assert [(e["type"], e["product_id"], e["reason"]) for e in heard] == [
        ("AccessGranted", "prod_pilates", "subscription_active"),
        ("AccessGranted", "yoga", "subscription_active"),
        ("AccessRevoked", "prod_pilates", "product_removed")]


def test_a_body_over_one_mebibyte_is_refused_with_413(client, studio):
    event = stripe_event("customer.subscription.updated", ACCOUNT, {"id": "sub_x", "padding": "x" * (1024 * 1024)})
    response = deliver(client, event)
    assert response.status_code == 413
    assert response.json_body["error"]["code"] == "payload_too_large"


def test_malformed_json_with_a_valid_signature_is_refused_with_400(client, studio):
    payload = '{"id": "evt_1", "object": "event", '
    header = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
    response = client.post("/webhooks/stripe", body=payload,
                           headers={"Stripe-Signature": header, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "invalid_payload"
    assert list(WebhookEventModel.scan()) == []


def test_a_forged_subscription_event_stores_nothing(client, studio):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    response = deliver(client, last_event(studio), secret="whsec_forged")
    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "invalid_signature"
    assert list(EntitlementModel.scan()) == []


def test_access_is_never_true_past_access_until_even_before_the_sweep(client, studio):
    subscription = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], cancel_at_period_end=True)
    deliver(client, last_event(studio))
    assert access(client)[0]["access"] is True
    # The period ends; the sweep has not run yet, so the stored item still grants.
    item = EntitlementModel.get("site_a#user_ana", subscription["id"])
    item.access_until = datetime.now(timezone.utc) - timedelta(seconds=1)
    item.save()
    entry = access(client)[0]
    assert (entry["access"], entry["state"]) == (False, "expired")


def test_a_subscription_event_costs_at_most_three_dynamodb_and_one_stripe_request(client, studio):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga", "prod_pilates"])
    event = last_event(studio)
    stripe_before = len(studio.requests)
    with AWS_CALLS.counting() as calls:
        assert deliver(client, event).status_code == 200
    # The account's sites, one read across tables (the event's record, whose
    # the subscription is, the customer's record) and one transaction; beside
    # them, at most one lease of Stripe slots, which the events after it
    # share (tests/api/test_stripe_ceiling.py).
    leases = calls.on(RateLimitModel.Meta.table_name)
    assert calls.of("dynamodb") - leases <= 3, calls.calls
    assert leases <= 1
    assert len(studio.requests) - stripe_before == 1
    assert calls.of("eventbridge") == 0


def test_a_duplicate_costs_two_dynamodb_requests_and_no_stripe_request(client, studio):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    event = last_event(studio)
    deliver(client, event)
    stripe_before = len(studio.requests)
    with AWS_CALLS.counting() as calls:
        assert deliver(client, event).status_code == 200
    assert calls.of("dynamodb") == 2, calls.calls
    assert len(studio.requests) == stripe_before


def test_a_burst_of_events_on_one_subscription_costs_one_read_of_stripe(client, studio, access_events):
    subscription = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    studio.update_subscription(ACCOUNT, subscription["id"], cancel_at_period_end=True)
    studio.update_subscription(ACCOUNT, subscription["id"], cancel_at_period_end=False)
    studio.update_subscription(ACCOUNT, subscription["id"], metadata={"note": "vip"})
    burst = studio.events[-4:]
    # All four reached the connector before the first was handled, as a
    # queue holds a burst.
    received_at = datetime.now(timezone.utc)
    receiver = services.get_webhook_receiver()
    reads_before = len(studio.requests_to("GET", "/v1/subscriptions/"))
    with AWS_CALLS.counting() as calls:
        outcomes = [receiver.handle(event, received_at=received_at) for event in burst]
    assert outcomes == ["handled"] * 4
    assert len(studio.requests_to("GET", "/v1/subscriptions/")) - reads_before == 1
    # Each later one is recorded as done (a redelivery is a duplicate) and nothing else.
    assert calls.calls[("dynamodb", "PutItem")] == 3, calls.calls
    assert calls.calls[("dynamodb", "TransactWriteItems")] == 1, calls.calls
    assert [e["type"] for e in access_events.drain()] == ["AccessGranted"]
    assert access(client)[0]["state"] == "active"
    with AWS_CALLS.counting() as calls:
        assert deliver(client, burst[-1]).status_code == 200
    assert calls.of("dynamodb") == 2


def test_an_event_that_reached_the_connector_after_the_last_read_is_read_again(client, studio):
    subscription = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    deliver(client, last_event(studio))
    studio.update_subscription(ACCOUNT, subscription["id"], cancel_at_period_end=True)
    reads_before = len(studio.requests_to("GET", "/v1/subscriptions/"))
    assert deliver(client, last_event(studio)).status_code == 200
    assert len(studio.requests_to("GET", "/v1/subscriptions/")) - reads_before == 1
    assert access(client)[0]["state"] == "canceling"


def test_an_event_made_well_before_the_last_read_needs_no_read_whenever_it_arrives(client, studio):
    subscription = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    created = last_event(studio)
    studio.update_subscription(ACCOUNT, subscription["id"], cancel_at_period_end=True)
    # Made a minute before the read the first delivery makes (by Stripe's
    # clock, more than its skew and its second's rounding away), delivered after it.
    updated = dict(last_event(studio), created=int(time.time()) - 60)
    deliver(client, created)
    reads_before = len(studio.requests_to("GET", "/v1/subscriptions/"))
    with AWS_CALLS.counting() as calls:
        assert deliver(client, updated).status_code == 200
    assert len(studio.requests_to("GET", "/v1/subscriptions/")) - reads_before == 0
    assert calls.calls[("dynamodb", "TransactWriteItems")] == 0, calls.calls
    assert access(client)[0]["state"] == "canceling"
    assert WebhookEventModel.get(updated["id"]).event_type == "customer.subscription.updated"


def test_each_change_is_one_eventbridge_put(client, studio, access_events):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    deliver(client, last_event(studio))
    with AWS_CALLS.counting() as calls:
        assert len(access_events.drain()) == 1
    assert calls.calls[("eventbridge", "PutEvents")] == 1


def test_a_view_read_before_the_stored_one_is_left_out_and_the_event_is_still_done(client, studio):
    subscription = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    created = last_event(studio)
    studio.update_subscription(ACCOUNT, subscription["id"], cancel_at_period_end=True)
    deliver(client, last_event(studio))
    stored = EntitlementModel.get("site_a#user_ana", subscription["id"]).serialize()
    # A handler whose read of Stripe is older than the stored view (it read,
    # then stalled while another delivery wrote) must not overwrite it.
    stalled = WebhookReceiver(services.get_stripe_gateway(), EventLog(), services.get_connector_service(),
                              ConnectionStore(), services.get_view_writer(),
                              clock=lambda: datetime.now(timezone.utc) - timedelta(minutes=5))
    assert stalled.handle(created) == "handled"
    assert EntitlementModel.get("site_a#user_ana", subscription["id"]).serialize() == stored
    assert WebhookEventModel.get(created["id"]).event_type == "customer.subscription.created"


def test_a_read_answered_before_a_change_but_arriving_after_its_delivery_does_not_undo_it(client, studio):
    subscription = studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    created = last_event(studio)

    def canceled_meanwhile():
        # Stripe has answered this read (active); before the answer arrives,
        # the subscription is canceled and that event's delivery is handled.
        studio.cancel_subscription(ACCOUNT, subscription["id"])
        other = WebhookReceiver(services.get_stripe_gateway(), EventLog(), services.get_connector_service(),
                                ConnectionStore(), services.get_view_writer())
        assert other.handle(last_event(studio)) == "handled"

    studio.before_answering_next("GET", "/v1/subscriptions/" + subscription["id"], canceled_meanwhile)
    assert deliver(client, created).status_code == 200
    entry = access(client)[0]
    assert (entry["access"], entry["state"]) == (False, "expired")


def test_a_subscription_with_more_items_than_stripe_embeds_grants_every_product(client, studio, access_events):
    products = ["prod_yoga", "prod_pilates"] + [studio.create_product(ACCOUNT, id="prod_extra_%d" % n)["id"]
                                                for n in range(10)]
    studio.create_subscription(ACCOUNT, "cus_ana", products)
    stripe_before = len(studio.requests)
    deliver(client, last_event(studio))
    assert len([e for e in access(client) if e["access"]]) == 12
    # The subscription, then its items past the first ten.
    assert len(studio.requests) - stripe_before == 2
    assert len(access_events.drain()) == 12


def test_every_site_connected_to_the_account_gets_the_entitlement(client, studio):
    site_b_admin = bearer(site="site_b", role="owner")
    connect(client, studio, ACCOUNT, headers=site_b_admin)
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    with AWS_CALLS.counting() as calls:
        deliver(client, last_event(studio))
    assert calls.calls[("dynamodb", "TransactWriteItems")] == 1
    for site in ("site_a", "site_b"):
        assert [e["product_id"] for e in access(client, bearer(site=site, sub="user_ana", role="member"))] == ["yoga"]
        assert MemberCustomerModel.get(site, "user_ana").customer_id == "cus_ana"


def test_a_members_second_subscription_keeps_their_billing_customer_for_one_more_transaction(client, studio):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    deliver(client, last_event(studio))
    studio.create_customer(ACCOUNT, id="cus_ana_work", metadata={"customerhub_user_id": "user_ana"})
    studio.create_subscription(ACCOUNT, "cus_ana_work", ["prod_pilates"])
    with AWS_CALLS.counting() as calls:
        assert deliver(client, last_event(studio)).status_code == 200
    # The first transaction asks to record the new customer for Billing and
    # is refused (she has one); the second writes the rest.
    assert calls.calls[("dynamodb", "TransactWriteItems")] == 2, calls.calls
    assert calls.of("dynamodb") == 4, calls.calls
    assert MemberCustomerModel.get("site_a", "user_ana").customer_id == "cus_ana"
