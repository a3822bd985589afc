"""Access never exceeds what was paid: a past-due subscription keeps access
for the site's grace from its oldest unpaid invoice and never renews it
unpaid; a far cancel_at ends access no later than the period paid for."""
import json
import time
from datetime import datetime, timezone

import pytest

from chalicelib import services
from chalicelib.connections import ConnectionStore
from chalicelib.sweep import Sweep
from tests.api.test_connect_lifecycle import ADMIN, connect
from tests.api.test_unmatched import heard
from tests.helpers import deliver

ACCOUNT = "acct_dues"
GRANTED, REVOKED = "AccessGranted", "AccessRevoked"
DAY = 24 * 3600


@pytest.fixture
def site(client, sandbox):
    sandbox.create_account(id=ACCOUNT, display_name="Dues Studio")
    sandbox.create_product(ACCOUNT, name="Yoga", id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    sandbox.create_customer(ACCOUNT, id="cus_ana", metadata={"customerhub_user_id": "user_ana"})
    connect(client, sandbox, ACCOUNT)
    return sandbox


def delivered(client, sandbox):
    assert deliver(client, sandbox.events[-1]).status_code == 200


def entry(client, user_id="user_ana"):
    answer = client.get("/access/" + user_id, headers=ADMIN)
    assert answer.status_code == 200, answer.body
    [only] = answer.json_body["entitlements"]
    return only["state"], only["access"], only["access_until"]


def iso(moment):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def fell_behind(sandbox, subscription, days_ago):
    """The subscription's open invoice, made `days_ago` days ago; when it was made."""
    [invoice] = sandbox.invoices(ACCOUNT, subscription=subscription["id"], status="open")
    created = int(time.time()) - days_ago * DAY
    sandbox.backdate_invoice(ACCOUNT, invoice["id"], created)
    return created


def test_a_past_due_subscription_keeps_access_for_the_grace_from_its_oldest_open_invoice(client, site, access_events):
    subscription = site.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], status="past_due",
                                            period_start=int(time.time()) - 5 * DAY)
    created = fell_behind(site, subscription, 5)

    delivered(client, site)

    assert entry(client) == ("past_due", True, iso(created + 14 * DAY))
    assert [e[:4] for e in heard(access_events)] == [(GRANTED, "user_ana", "yoga", "subscription_active")]


def test_a_past_due_subscription_whose_invoice_is_older_than_the_grace_gives_no_access(client, site, access_events):
    subscription = site.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], status="past_due",
                                            period_start=int(time.time()) - 20 * DAY)
    created = fell_behind(site, subscription, 20)

    delivered(client, site)

    assert entry(client) == ("expired", False, iso(created + 14 * DAY))
    assert heard(access_events) == []


def test_a_renewal_while_past_due_grants_nothing_more(client, site, access_events):
    now = int(time.time())
    subscription = site.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], period_start=now - 30 * DAY + 3600,
                                            period_end=now + 3600)
    delivered(client, site)
    paid_until = entry(client)[2]
    site.fail_payment(ACCOUNT, subscription["id"])
    delivered(client, site)
    behind = entry(client)
    assert behind[:2] == ("past_due", True) and behind[2] == paid_until
    # The period renews without a payment: access stays where the grace ends.
    site.renew_subscription(ACCOUNT, subscription["id"], paid=False)
    delivered(client, site)
    [oldest, _] = sorted(site.invoices(ACCOUNT, subscription=subscription["id"], status="open"),
                         key=lambda invoice: invoice["created"])
    assert entry(client) == ("past_due", True, iso(oldest["created"] + 14 * DAY))
    heard(access_events)
    # Paid at last: the new period grants.
    site.pay_open_invoices(ACCOUNT, subscription["id"])
    delivered(client, site)
    state, access, until = entry(client)
    assert (state, access) == ("active", True) and until > paid_until


def test_only_a_past_due_subscription_costs_a_stripe_request_for_its_invoices(client, site):
    site.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], id="sub_paying")
    before = len(site.requests)
    delivered(client, site)
    assert [r["path"] for r in site.requests[before:]] == ["/v1/subscriptions/sub_paying"]

    site.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], status="past_due", id="sub_behind")
    before = len(site.requests)
    delivered(client, site)
    assert [r["path"] for r in site.requests[before:]] == ["/v1/subscriptions/sub_behind", "/v1/invoices"]
    assert site.requests[-1]["query"] == {"subscription": "sub_behind", "status": "open", "limit": "100"}


def test_the_sweep_ends_access_whose_grace_ran_out_with_reason_past_due(client, site, access_events):
    subscription = site.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], status="past_due",
                                            period_start=int(time.time()) - 10 * DAY)
    created = fell_behind(site, subscription, 10)
    delivered(client, site)
    heard(access_events)

    later = datetime.fromtimestamp(created + 14 * DAY + 60, tz=timezone.utc)
    report = Sweep(ConnectionStore(), services.get_stripe_gateway(), clock=lambda: later).run()

    assert (report.due, report.revoked) == (1, 1)
    assert [e[:4] for e in heard(access_events)] == [(REVOKED, "user_ana", "yoga", "subscription_past_due")]


def test_a_far_cancel_at_ends_access_at_the_period_end_even_after_a_disconnect(client, site, access_events):
    now = int(time.time())
    period_end = now + 30 * DAY
    site.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], period_end=period_end, cancel_at=now + 200 * DAY)
    delivered(client, site)
    assert entry(client) == ("canceling", True, iso(period_end))
    heard(access_events)
    assert client.delete("/connectors/stripe", headers=ADMIN).status_code == 200

    later = datetime.fromtimestamp(period_end + 60, tz=timezone.utc)
    report = Sweep(ConnectionStore(), services.get_stripe_gateway(), clock=lambda: later).run()

    assert report.revoked == 1
    assert [e[:4] for e in heard(access_events)] == [(REVOKED, "user_ana", "yoga", "period_ended")]


def test_the_sites_grace_decides_how_long_a_past_due_member_keeps_access(client, site):
    settings = {"portal_enabled": False, "privacy_policy_url": None, "terms_of_service_url": None,
                "allow_cancel": False, "past_due_grace_days": 30}
    assert client.put("/connectors/stripe/settings", headers={**ADMIN, "Content-Type": "application/json"},
                      body=json.dumps(settings)).status_code == 200
    subscription = site.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], status="past_due",
                                            period_start=int(time.time()) - 20 * DAY,
                                            period_end=int(time.time()) + 40 * DAY)
    created = fell_behind(site, subscription, 20)

    delivered(client, site)

    # 20 days behind: out of the default 14 days, within the site's 30.
    assert entry(client) == ("past_due", True, iso(created + 30 * DAY))
