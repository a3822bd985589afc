"""A subscription grants only its member as Identity names them now: when
its member changes (metadata names someone else, an unlink), the earlier
member's access from it ends in the same write and is announced; a link or
a claim made by mistake can be undone; and a member's billing customer is
the first recorded, whatever is claimed or linked later."""
import json
import time
from datetime import datetime, timezone

import pytest

from chalicelib.models import CustomerMemberModel, EntitlementModel, MemberCustomerModel, SubscriptionMemberModel
from chalicelib.sweep import Sweep
from chalicelib.connections import ConnectionStore
from chalicelib import services
from tests.api.test_connect_lifecycle import ADMIN, connect
from tests.api.test_portal_settings import ENABLED, put_settings
from tests.api.test_unmatched import heard, link, member_token, unmatched
from tests.helpers import AWS_CALLS, deliver

ACCOUNT = "acct_changes"
GRANTED, REVOKED = "AccessGranted", "AccessRevoked"
JSON = {"Content-Type": "application/json"}
DAY = 24 * 3600


@pytest.fixture
def site(client, sandbox):
    sandbox.create_account(id=ACCOUNT, display_name="Changing Studio")
    sandbox.create_product(ACCOUNT, name="Yoga", id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    sandbox.create_product(ACCOUNT, name="Pilates", id="prod_pilates",
                           metadata={"customerhub_product_id": "pilates"})
    connect(client, sandbox, ACCOUNT)
    return sandbox


def delivered(client, sandbox):
    assert deliver(client, sandbox.events[-1]).status_code == 200


def access_of(client, user_id):
    answer = client.get("/access/" + user_id, headers=ADMIN)
    assert answer.status_code == 200, answer.body
    return [(e["product_id"], e["state"], e["access"], e["member_from"]) for e in answer.json_body["entitlements"]]


def unlink(client, subscription_id, headers=ADMIN):
    return client.delete("/connectors/stripe/links/%s" % subscription_id, headers=headers)


def anonymous(sandbox, client, customer_id="cus_ana", email="ana@studio.test", product="prod_yoga"):
    try:
        sandbox.create_customer(ACCOUNT, email=email, name="Ana Lima", id=customer_id)
    except ValueError:
        pass
    subscription = sandbox.create_subscription(ACCOUNT, customer_id, [product])
    delivered(client, sandbox)
    return subscription


# --- reassignment by metadata --------------------------------------------------------

def test_metadata_naming_another_member_ends_the_first_members_access_in_the_same_write(client, site, access_events):
    site.create_customer(ACCOUNT, email="family@studio.test", id="cus_family")
    subscription = site.create_subscription(ACCOUNT, "cus_family", ["prod_yoga"],
                                            metadata={"customerhub_user_id": "user_ana"})
    delivered(client, site)
    assert heard(access_events) == [(GRANTED, "user_ana", "yoga", "subscription_active", site.events[-1]["id"])]

    site.update_subscription(ACCOUNT, subscription["id"], metadata={"customerhub_user_id": "user_bo"})
    delivered(client, site)
    moved = site.events[-1]["id"]
    assert sorted(heard(access_events)) == [(GRANTED, "user_bo", "yoga", "subscription_active", moved),
                                            (REVOKED, "user_ana", "yoga", "subscription_reassigned", moved)]
    assert access_of(client, "user_ana") == [("yoga", "expired", False, "metadata")]
    assert access_of(client, "user_bo") == [("yoga", "active", True, "metadata")]

    # Cancelled afterwards: only the member it belongs to now loses access.
    site.cancel_subscription(ACCOUNT, subscription["id"])
    delivered(client, site)
    assert heard(access_events) == [(REVOKED, "user_bo", "yoga", "subscription_canceled", site.events[-1]["id"])]
    assert access_of(client, "user_ana") == [("yoga", "expired", False, "metadata")]


def test_a_member_named_by_metadata_no_longer_leaves_the_subscription_unmatched(client, site, access_events):
    site.create_customer(ACCOUNT, email="cy@studio.test", id="cus_cy")
    subscription = site.create_subscription(ACCOUNT, "cus_cy", ["prod_yoga"],
                                            metadata={"customerhub_user_id": "user_cy"})
    delivered(client, site)
    heard(access_events)
    site.update_subscription(ACCOUNT, subscription["id"], metadata={"customerhub_user_id": ""})
    delivered(client, site)
    # The customer stays recorded as the member (metadata named them): still theirs, by the record.
    assert access_of(client, "user_cy") == [("yoga", "active", True, "record")]
    assert heard(access_events) == []


def test_the_sweep_ends_the_earlier_members_access_when_stripe_moved_it_meanwhile(client, site, access_events):
    period_end = int(time.time()) + 30 * DAY
    site.create_customer(ACCOUNT, id="cus_family")
    subscription = site.create_subscription(ACCOUNT, "cus_family", ["prod_yoga"], period_end=period_end,
                                            metadata={"customerhub_user_id": "user_ana"})
    delivered(client, site)
    heard(access_events)
    # Moved to another member and renewed while no webhook reached us.
    site.update_subscription(ACCOUNT, subscription["id"], metadata={"customerhub_user_id": "user_bo"})
    site.renew_subscription(ACCOUNT, subscription["id"])

    later = datetime.fromtimestamp(period_end + 60, tz=timezone.utc)
    report = Sweep(ConnectionStore(), services.get_stripe_gateway(), clock=lambda: later).run()

    assert (report.due, report.revoked) == (1, 1)
    assert sorted(e[:4] for e in heard(access_events)) == [(GRANTED, "user_bo", "yoga", "subscription_active"),
                                                           (REVOKED, "user_ana", "yoga", "subscription_reassigned")]


def test_an_import_ends_the_earlier_members_access_when_stripe_moved_it_meanwhile(client, site, work, access_events):
    site.create_customer(ACCOUNT, id="cus_family")
    subscription = site.create_subscription(ACCOUNT, "cus_family", ["prod_yoga"],
                                            metadata={"customerhub_user_id": "user_ana"})
    delivered(client, site)
    work.drain()
    heard(access_events)
    site.update_subscription(ACCOUNT, subscription["id"], metadata={"customerhub_user_id": "user_bo"})

    assert client.post("/connectors/stripe/sync", headers=ADMIN).status_code == 202
    work.drain()

    assert sorted(e[:4] for e in heard(access_events)) == [(GRANTED, "user_bo", "yoga", "subscription_active"),
                                                           (REVOKED, "user_ana", "yoga", "subscription_reassigned")]
    assert access_of(client, "user_ana") == [("yoga", "expired", False, "metadata")]


# --- member_from -----------------------------------------------------------------------

def test_every_entitlement_says_why_it_is_the_members(client, site, access_events):
    site.create_customer(ACCOUNT, id="cus_named", metadata={"customerhub_user_id": "user_named"})
    site.create_subscription(ACCOUNT, "cus_named", ["prod_yoga"])
    delivered(client, site)
    site.create_subscription(ACCOUNT, "cus_named", ["prod_pilates"], metadata={})
    delivered(client, site)
    linked = anonymous(site, client, "cus_linked", "linked@studio.test")
    assert link(client, linked["id"], "user_linked").status_code == 200
    later = site.create_subscription(ACCOUNT, "cus_linked", ["prod_pilates"])
    delivered(client, site)
    anonymous(site, client, "cus_claimed", "claimed@studio.test")
    client.get("/access", headers=member_token("user_claimed", email="claimed@studio.test"))

    assert access_of(client, "user_named") == [("pilates", "active", True, "metadata"),
                                                ("yoga", "active", True, "metadata")]
    assert access_of(client, "user_linked") == [("pilates", "active", True, "record"),
                                                 ("yoga", "active", True, "link")]
    assert access_of(client, "user_claimed") == [("yoga", "active", True, "claim")]
    # A later event of the linked subscription keeps it a link.
    site.update_subscription(ACCOUNT, linked["id"], cancel_at_period_end=True)
    delivered(client, site)
    assert access_of(client, "user_linked") == [("pilates", "active", True, "record"),
                                                 ("yoga", "canceling", True, "link")]
    assert later["id"]


# --- unlink ---------------------------------------------------------------------------

def test_a_mistaken_link_is_undone_and_the_member_loses_only_that_subscriptions_access(client, site, access_events):
    site.create_customer(ACCOUNT, id="cus_ana_own", metadata={"customerhub_user_id": "user_ana"})
    site.create_subscription(ACCOUNT, "cus_ana_own", ["prod_pilates"])
    delivered(client, site)
    stranger = anonymous(site, client, "cus_stranger", "stranger@elsewhere.test")
    assert link(client, stranger["id"], "user_ana").status_code == 200
    heard(access_events)

    answer = unlink(client, stranger["id"])

    assert answer.status_code == 200, answer.body
    assert answer.json_body == {
        "subscription_id": stranger["id"], "customer_id": "cus_stranger", "email": "stranger@elsewhere.test",
        "name": "Ana Lima", "products": [{"product_id": "yoga", "stripe_product_id": "prod_yoga"}],
        "state": "active", "access_until": answer.json_body["access_until"]}
    assert heard(access_events) == [(REVOKED, "user_ana", "yoga", "subscription_unlinked", None)]
    assert access_of(client, "user_ana") == [("pilates", "active", True, "metadata"),
                                             ("yoga", "expired", False, "link")]
    assert [e["subscription_id"] for e in unmatched(client)["unmatched"]] == [stranger["id"]]
    # The customer is nobody's again: its next event keeps it unmatched.
    assert CustomerMemberModel.count("site_a", CustomerMemberModel.customer_ref == ACCOUNT + "#cus_stranger") == 0
    site.update_subscription(ACCOUNT, stranger["id"], cancel_at_period_end=True)
    delivered(client, site)
    assert heard(access_events) == []
    assert access_of(client, "user_ana") == [("pilates", "active", True, "metadata"),
                                             ("yoga", "expired", False, "link")]
    # And the member's own billing customer is still theirs.
    assert MemberCustomerModel.get("site_a", "user_ana").customer_id == "cus_ana_own"


def test_an_unlinked_claim_is_not_claimed_again_by_the_same_member_but_may_be_by_another(client, site,
                                                                                        access_events):
    subscription = anonymous(site, client, "cus_shared", "shared@studio.test")
    ana = member_token("user_ana", email="shared@studio.test")
    client.get("/access", headers=ana)
    assert access_of(client, "user_ana") == [("yoga", "active", True, "claim")]
    heard(access_events)

    assert unlink(client, subscription["id"]).status_code == 200
    client.get("/access", headers=ana)
    assert access_of(client, "user_ana") == [("yoga", "expired", False, "claim")]
    assert heard(access_events) == [(REVOKED, "user_ana", "yoga", "subscription_unlinked", None)]

    client.get("/access", headers=member_token("user_bo", email="shared@studio.test"))
    assert access_of(client, "user_bo") == [("yoga", "active", True, "claim")]
    # The admin may still link it back to the first member on purpose.
    assert unlink(client, subscription["id"]).status_code == 200
    assert link(client, subscription["id"], "user_ana").status_code == 200
    assert access_of(client, "user_ana") == [("yoga", "active", True, "link")]


def test_unlink_answers_what_cannot_be_undone(client, site):
    site.create_customer(ACCOUNT, id="cus_named", metadata={"customerhub_user_id": "user_named"})
    named = site.create_subscription(ACCOUNT, "cus_named", ["prod_yoga"])
    delivered(client, site)
    nobody = anonymous(site, client, "cus_nobody", "nobody@studio.test")

    for subscription_id, status, code in ((named["id"], 409, "not_linked"), (nobody["id"], 409, "not_linked"),
                                          ("sub_never", 404, "not_found"), ("sub..%2F..", 404, "not_found")):
        answer = unlink(client, subscription_id)
        assert (answer.status_code, answer.json_body["error"]["code"]) == (status, code), subscription_id
    assert unlink(client, nobody["id"], headers=member_token("user_named")).status_code == 403
    assert unlink(client, nobody["id"], headers={}).status_code == 401
    # Nothing changed.
    assert access_of(client, "user_named") == [("yoga", "active", True, "metadata")]
    assert len(unmatched(client)["unmatched"]) == 1


def test_a_second_unlink_is_not_linked(client, site):
    subscription = anonymous(site, client)
    assert link(client, subscription["id"], "user_ana").status_code == 200
    assert unlink(client, subscription["id"]).status_code == 200
    again = unlink(client, subscription["id"])
    assert (again.status_code, again.json_body["error"]["code"]) == (409, "not_linked")


def test_unlink_answers_cors_for_the_ui(client, site):
    answer = client.request("OPTIONS", "/connectors/stripe/links/sub_1", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "DELETE"}, body=b"")
    assert "DELETE" in answer.headers["Access-Control-Allow-Methods"]


# --- the billing customer is the first recorded ---------------------------------------

def test_a_strangers_customer_with_the_members_email_never_replaces_their_billing_customer(client, site):
    put_settings(client, ENABLED)
    site.create_customer(ACCOUNT, email="ana@studio.test", id="cus_ana", metadata={"customerhub_user_id": "user_ana"})
    site.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"])
    delivered(client, site)
    # Someone buys on the site's checkout with Ana's email.
    anonymous(site, client, "cus_stranger", "ana@studio.test", product="prod_pilates")
    ana = member_token("user_ana", email="ana@studio.test")

    opened = client.post("/billing/portal/sessions", headers={**ana, **JSON}, body="{}")

    assert opened.status_code == 200, opened.body
    assert site.requests_to("POST", "/v1/billing_portal/sessions")[-1]["params"]["customer"] == "cus_ana"
    assert MemberCustomerModel.get("site_a", "user_ana").customer_id == "cus_ana"


def test_an_admins_link_never_replaces_a_members_billing_customer(client, site):
    put_settings(client, ENABLED)
    site.create_customer(ACCOUNT, id="cus_bo", metadata={"customerhub_user_id": "user_bo"})
    site.create_subscription(ACCOUNT, "cus_bo", ["prod_yoga"])
    delivered(client, site)
    other = anonymous(site, client, "cus_other", "other@studio.test", product="prod_pilates")

    assert link(client, other["id"], "user_bo").status_code == 200

    assert access_of(client, "user_bo") == [("pilates", "active", True, "link"), ("yoga", "active", True, "metadata")]
    opened = client.post("/billing/portal/sessions", headers={**member_token("user_bo"), **JSON}, body="{}")
    assert opened.status_code == 200, opened.body
    assert site.requests_to("POST", "/v1/billing_portal/sessions")[-1]["params"]["customer"] == "cus_bo"


# --- the unmatched list reads what it lists ---------------------------------------------

def test_the_unmatched_list_reads_one_page_however_many_ended_records_lie_behind_it(client, site):
    anonymous(site, client, "cus_open", "open@studio.test")
    now = datetime.now(timezone.utc)
    with EntitlementModel.batch_write() as batch:
        for n in range(1000):
            batch.save(EntitlementModel(
                "site_a#", "sub_ended_%04d" % n, site_id="site_a", account_id=ACCOUNT, customer_id="cus_x%d" % n,
                stripe_status="canceled", state="expired", grants=False, reason="subscription_canceled",
                view_time=1, changed_at=now))

    with AWS_CALLS.counting() as calls:
        listed = unmatched(client)

    assert [e["customer_id"] for e in listed["unmatched"]] == ["cus_open"]
    queries = {op: n for (service, op), n in calls.calls.items() if service == "dynamodb"}
    # The connection, one page of the index, and the customers' records.
    assert queries == {"GetItem": 1, "Query": 1, "BatchGetItem": 1}, queries


def test_the_subscription_members_record_follows_every_change(client, site):
    subscription = anonymous(site, client)
    assert SubscriptionMemberModel.get("site_a", subscription["id"]).user_id is None
    assert link(client, subscription["id"], "user_ana").status_code == 200
    holder = SubscriptionMemberModel.get("site_a", subscription["id"])
    assert (holder.user_id, holder.member_from) == ("user_ana", "link")
    assert unlink(client, subscription["id"]).status_code == 200
    holder = SubscriptionMemberModel.get("site_a", subscription["id"])
    assert (holder.user_id, holder.member_from, holder.unlinked_from) == (None, None, "user_ana")
    assert json.dumps(unmatched(client))


def test_an_unlinked_subscription_stays_unmatched_though_metadata_keeps_its_customer_the_members(client, site,
                                                                                                access_events):
    mistaken = anonymous(site, client, "cus_shared", "shared@studio.test")
    assert link(client, mistaken["id"], "user_ana").status_code == 200
    # Another subscription of the same customer names Ana in its metadata:
    # the site records the customer as hers by metadata.
    site.create_subscription(ACCOUNT, "cus_shared", ["prod_pilates"], metadata={"customerhub_user_id": "user_ana"})
    delivered(client, site)
    heard(access_events)

    assert unlink(client, mistaken["id"]).status_code == 200

    assert [e["subscription_id"] for e in unmatched(client)["unmatched"]] == [mistaken["id"]]
    record = CustomerMemberModel.get("site_a", ACCOUNT + "#cus_shared")
    assert (record.user_id, record.source) == ("user_ana", "metadata")
    # Its next event finds the customer's record, and still leaves it unmatched.
    site.update_subscription(ACCOUNT, mistaken["id"], cancel_at_period_end=True)
    delivered(client, site)
    assert access_of(client, "user_ana") == [("pilates", "active", True, "metadata"),
                                             ("yoga", "expired", False, "link")]
    assert heard(access_events) == [(REVOKED, "user_ana", "yoga", "subscription_unlinked", None)]
