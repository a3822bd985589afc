"""Subscriptions that name no member: kept and listed for the admin, claimed
by the member with the customer's verified email, or linked by the admin;
and once a customer is someone's, every later subscription of theirs is."""
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib import services
from chalicelib.models import CustomerMemberModel, EntitlementModel
from chalicelib.sweep import Sweep
from chalicelib.connections import ConnectionStore
from tests.api.test_connect_lifecycle import ADMIN, connect
from tests.api.test_portal_settings import ENABLED, put_settings
from tests.helpers import AWS_CALLS, bearer, deliver

ACCOUNT = "acct_migrating"
GRANTED, REVOKED = "AccessGranted", "AccessRevoked"
JSON = {"Content-Type": "application/json"}


def member_token(sub, email=None, verified=True, site="site_a"):
    return bearer(site=site, role="member", sub=sub, email=email, email_verified=verified if email else None)


def unmatched(client, query="", headers=ADMIN):
    answer = client.get("/connectors/stripe/unmatched" + query, headers=headers)
    assert answer.status_code == 200, answer.body
    return answer.json_body


def link(client, subscription_id, user_id, headers=ADMIN):
    return client.post("/connectors/stripe/unmatched/%s/link" % subscription_id, headers={**headers, **JSON},
                       body=json.dumps({"user_id": user_id}))


def own_access(client, headers):
    answer = client.get("/access", headers=headers)
    assert answer.status_code == 200, answer.body
    return [(e["product_id"], e["state"], e["access"]) for e in answer.json_body["entitlements"]]


def heard(access_events):
    return [(e["type"], e["user_id"], e["product_id"], e["reason"], e["stripe_event_id"])
            for e in access_events.drain()]


@pytest.fixture
def site(client, sandbox):
    sandbox.create_account(id=ACCOUNT, display_name="Migrating Studio")
    sandbox.create_product(ACCOUNT, name="Yoga", id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    connect(client, sandbox, ACCOUNT)
    return sandbox


def anonymous(sandbox, client, email="ana@studio.test", name="Ana Lima", customer_id="cus_ana", **options):
    """A subscription whose customer and subscription name no member, delivered."""
    try:
        sandbox.create_customer(ACCOUNT, email=email, name=name, id=customer_id)
    except ValueError:
        pass  # a second subscription of the same customer
    subscription = sandbox.create_subscription(ACCOUNT, customer_id, ["prod_yoga"], **options)
    assert deliver(client, sandbox.events[-1]).status_code == 200
    return subscription


def test_an_unmatched_subscription_is_listed_for_the_admin_and_grants_no_one(client, site, access_events):
    subscription = anonymous(site, client)
    listed = unmatched(client)
    assert listed["next_cursor"] is None
    [entry] = listed["unmatched"]
    assert entry == {"subscription_id": subscription["id"], "customer_id": "cus_ana", "email": "ana@studio.test",
                     "name": "Ana Lima", "products": [{"product_id": "yoga", "stripe_product_id": "prod_yoga"}],
                     "state": "active", "access_until": entry["access_until"]}
    assert entry["access_until"].endswith("Z")
    assert heard(access_events) == []
    assert client.get("/connectors/stripe/unmatched", headers=member_token("user_x")).status_code == 403


def test_a_member_with_the_verified_email_claims_it_on_any_member_route(client, site, access_events):
    subscription = anonymous(site, client, email="Ana@Studio.test")
    put_settings(client, ENABLED)
    ana = member_token("user_ana", email="ana@STUDIO.test")
    assert own_access(client, ana) == [("yoga", "active", True)]
    assert heard(access_events) == [(GRANTED, "user_ana", "yoga", "subscription_active", None)]
    assert unmatched(client)["unmatched"] == []
    record = CustomerMemberModel.get("site_a", ACCOUNT + "#cus_ana")
    assert (record.user_id, record.source) == ("user_ana", "claim")
    # The portal opens as that customer.
    opened = client.post("/billing/portal/sessions", headers={**ana, **JSON}, body="{}")
    assert opened.status_code == 200, opened.body
    assert site.requests_to("POST", "/v1/billing_portal/sessions")[-1]["params"]["customer"] == "cus_ana"
    # Nothing more to claim, nothing more announced.
    assert own_access(client, ana) == [("yoga", "active", True)]
    assert heard(access_events) == []
    assert EntitlementModel.get("site_a#", subscription["id"]).claimed_by == "user_ana"


@pytest.mark.parametrize("headers", [
    member_token("user_ana", email="ana@studio.test", verified=False),
    member_token("user_ana"),
    member_token("user_ana", email="ana@studio.test", site="site_b"),
    member_token("user_ana", email="ana.lima@studio.test"),
], ids=["unverified email", "no email", "another site's member", "another email"])
def test_no_claim_without_the_site_and_the_verified_email(client, site, access_events, headers):
    anonymous(site, client)
    assert own_access(client, headers) == []
    assert len(unmatched(client)["unmatched"]) == 1
    assert heard(access_events) == []


def test_a_claim_costs_one_query_when_there_is_nothing_to_claim_and_nothing_without_a_verified_email(client, site):
    with AWS_CALLS.counting() as calls:
        client.get("/billing/portal", headers=member_token("user_bo", email="bo@studio.test"))
    verified = calls.of("dynamodb")
    with AWS_CALLS.counting() as calls:
        client.get("/billing/portal", headers=member_token("user_bo"))
    assert verified - calls.of("dynamodb") == 1


def test_two_members_racing_for_the_same_subscription_one_wins(client, site, access_events):
    subscription = anonymous(site, client)
    unmatched_service = services.get_unmatched_service()
    from chalicelib.auth import Caller
    racers = [Caller(user, "site_a", "member", "ana@studio.test", True) for user in ("user_ana", "user_ana2")]
    barrier = threading.Barrier(2)
    won = []

    def claim(member):
        barrier.wait()
        won.append((member.user_id, unmatched_service.claim_for(member)))

    threads = [threading.Thread(target=claim, args=(m,)) for m in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [user for user, count in won if count == 1]
    assert len(winners) == 1
    assert EntitlementModel.get("site_a#", subscription["id"]).claimed_by == winners[0]
    assert [e[:2] for e in heard(access_events)] == [(GRANTED, winners[0])]


def test_the_admin_links_one_to_a_member_who_never_signed_in(client, site, access_events):
    subscription = anonymous(site, client)
    answer = link(client, subscription["id"], "user_never_seen")
    assert answer.status_code == 200, answer.body
    [entry] = answer.json_body["entitlements"]
    assert (entry["product_id"], entry["subscription_id"], entry["access"]) == ("yoga", subscription["id"], True)
    assert heard(access_events) == [(GRANTED, "user_never_seen", "yoga", "subscription_active", None)]
    assert unmatched(client)["unmatched"] == []
    # Again to the same member: nothing changes.
    assert link(client, subscription["id"], "user_never_seen").status_code == 200
    assert heard(access_events) == []


def test_linking_one_a_member_claimed_after_the_list_was_read_is_already_linked(client, site):
    subscription = anonymous(site, client)
    assert len(unmatched(client)["unmatched"]) == 1
    own_access(client, member_token("user_ana", email="ana@studio.test"))
    answer = link(client, subscription["id"], "user_someone_else")
    assert answer.status_code == 409
    assert answer.json_body["error"]["code"] == "already_linked"


def test_link_answers_what_is_wrong_with_the_request(client, site):
    subscription = anonymous(site, client)
    assert link(client, "sub_never", "user_1").status_code == 404
    assert link(client, "sub_never", "user_1").json_body["error"]["code"] == "not_found"
    for body in ("{}", '{"user_id": ""}', '{"user_id": 5}', '{"user_id": "u", "extra": 1}', "[]"):
        answer = client.post("/connectors/stripe/unmatched/%s/link" % subscription["id"],
                             headers={**ADMIN, **JSON}, body=body)
        assert answer.status_code == 400, body
        assert answer.json_body["error"]["code"] == "invalid_request"
    assert link(client, subscription["id"], "user_1", headers=member_token("user_1")).status_code == 403


def test_a_later_subscription_of_a_customer_an_earlier_one_named_is_that_member_s(client, site, access_events):
    site.create_customer(ACCOUNT, email="bo@studio.test", id="cus_bo")
    site.create_subscription(ACCOUNT, "cus_bo", ["prod_yoga"], metadata={"customerhub_user_id": "user_bo"})
    assert deliver(client, site.events[-1]).status_code == 200
    site.create_product(ACCOUNT, name="Pilates", id="prod_pilates")
    site.create_subscription(ACCOUNT, "cus_bo", ["prod_pilates"])
    assert deliver(client, site.events[-1]).status_code == 200
    assert sorted(own_access(client, member_token("user_bo"))) == [
        ("prod_pilates", "active", True), ("yoga", "active", True)]
    assert unmatched(client)["unmatched"] == []


def test_later_subscriptions_of_a_linked_customer_grant_access_without_metadata(client, site, access_events):
    first = anonymous(site, client)
    assert link(client, first["id"], "user_ana").status_code == 200
    site.create_product(ACCOUNT, name="Pilates", id="prod_pilates")
    site.create_subscription(ACCOUNT, "cus_ana", ["prod_pilates"])
    assert deliver(client, site.events[-1]).status_code == 200
    assert sorted(own_access(client, member_token("user_ana"))) == [
        ("prod_pilates", "active", True), ("yoga", "active", True)]
    assert [e[:3] for e in heard(access_events)] == [(GRANTED, "user_ana", "yoga"), (GRANTED, "user_ana", "prod_pilates")]


def test_a_claimed_subscription_that_ends_is_revoked_by_the_sweep(client, site, access_events):
    now = datetime.now(timezone.utc)
    subscription = anonymous(site, client, cancel_at_period_end=True,
                             period_end=int((now + timedelta(hours=1)).timestamp()))
    own_access(client, member_token("user_ana", email="ana@studio.test"))
    heard(access_events)
    later = now + timedelta(hours=2)
    report = Sweep(ConnectionStore(), services.get_stripe_gateway(), clock=lambda: later).run()
    assert report.revoked == 1
    assert heard(access_events) == [(REVOKED, "user_ana", "yoga", "period_ended", None)]
    assert EntitlementModel.get("site_a#user_ana", subscription["id"]).grants is False


def test_the_list_pages_by_cursor_and_refuses_a_bad_limit_or_cursor(client, site):
    ids = sorted(anonymous(site, client, email="m%d@studio.test" % n, customer_id="cus_m%d" % n)["id"]
                 for n in range(5))
    first = unmatched(client, "?limit=2")
    second = unmatched(client, "?limit=2&cursor=" + first["next_cursor"])
    third = unmatched(client, "?limit=2&cursor=" + second["next_cursor"])
    assert [e["subscription_id"] for e in first["unmatched"] + second["unmatched"] + third["unmatched"]] == ids
    assert third["next_cursor"] is None
    for query in ("?limit=0", "?limit=101", "?limit=x", "?cursor=%%%", "?cursor=c3ViL2Jhcg"):
        answer = client.get("/connectors/stripe/unmatched" + query, headers=ADMIN)
        assert answer.status_code == 400, query
        assert answer.json_body["error"]["code"] == "invalid_request"


def test_an_import_keeps_the_subscriptions_naming_no_one_as_unmatched(client, sandbox, work):
    sandbox.create_account(id="acct_second", display_name="Second")
    sandbox.create_product("acct_second", name="Spin", id="prod_spin")
    sandbox.create_customer("acct_second", email="cy@studio.test", id="cus_cy", name="Cy")
    created = sandbox.create_subscription("acct_second", "cus_cy", ["prod_spin"])
    sync = connect(client, sandbox, "acct_second")["sync"]
    assert sync["state"] == "importing"
    work.drain()
    assert [e["subscription_id"] for e in unmatched(client)["unmatched"]] == [created["id"]]
    assert own_access(client, member_token("user_cy", email="cy@studio.test")) == [("prod_spin", "active", True)]


def test_a_customer_recorded_as_another_member_is_never_claimed(client, site, access_events):
    unnamed = anonymous(site, client)
    # A later subscription of the same customer names a member: the customer is theirs.
    site.create_product(ACCOUNT, name="Pilates", id="prod_pilates")
    site.create_subscription(ACCOUNT, "cus_ana", ["prod_pilates"], metadata={"customerhub_user_id": "user_ana"})
    assert deliver(client, site.events[-1]).status_code == 200
    heard(access_events)
    assert own_access(client, member_token("user_impostor", email="ana@studio.test")) == []
    assert EntitlementModel.get("site_a#", unnamed["id"]).claimed_by is None
    assert unmatched(client)["unmatched"] == []
    assert heard(access_events) == []
    answer = link(client, unnamed["id"], "user_impostor")
    assert (answer.status_code, answer.json_body["error"]["code"]) == (409, "already_linked")
