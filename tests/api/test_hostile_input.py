"""Input an attacker, a broken client or a confused configuration could send:
each gets the contract's clear error, and nothing is stored."""
import json
import time

import pytest

from chalicelib.connections import BY_ADMIN, REVOKED, ConnectorService, OAuthStateStore
from chalicelib.errors import InvalidReturnUrl
from chalicelib.models import ConnectionModel, EntitlementModel, WebhookEventModel
from chalicelib.portal import allowed_return_url
from chalicelib.settings import get_settings
from tests.api.test_account_webhooks import revoked_event
from tests.api.test_billing_portal import MEMBER, open_session, portal_open
from tests.api.test_connect_lifecycle import ADMIN, card, connect
from tests.api.test_portal_settings import ENABLED
from tests.helpers import WEBHOOK_SECRET, bearer, deliver, signed, stripe_event, token

JSON = {"Content-Type": "application/json"}
NESTED = "[" * 30000 + "]" * 30000  # under the 64 KiB body limit


def assert_error(response, status, code):
    assert response.status_code == status, response.body
    assert set(response.json_body) == {"error"}
    assert response.json_body["error"]["code"] == code
    assert response.json_body["error"]["message"]


def nothing_recorded():
    return list(WebhookEventModel.scan()) == [] and list(EntitlementModel.scan()) == []


# ---------------------------------------------------------- deeply nested JSON

@pytest.mark.parametrize("method,path,headers", [
    ("POST", "/connectors/stripe/connect", ADMIN),
    ("PUT", "/connectors/stripe/settings", ADMIN),
    ("POST", "/connectors/stripe/oauth/callback", ADMIN),
    ("POST", "/billing/portal/sessions", MEMBER),
])
def test_json_nested_tens_of_thousands_deep_is_invalid_request(client, method, path, headers):
    response = client.request(method, path, headers={**headers, **JSON}, body=NESTED)
    assert_error(response, 400, "invalid_request")


def test_a_signed_webhook_nested_tens_of_thousands_deep_is_invalid_payload(client, sandbox):
    header = signed({"placeholder": True})[1]
    payload, header = NESTED, dict(header)
    from stripe import WebhookSignature
    header["Stripe-Signature"] = WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
    response = client.post("/webhooks/stripe", headers=header, body=payload)
    assert_error(response, 400, "invalid_payload")
    assert nothing_recorded()


# ----------------------------------------------------- the webhook's timestamp

@pytest.mark.parametrize("offset", [3600, 301, -301, -3600])
def test_a_webhook_signed_outside_300_seconds_either_way_is_invalid_signature(client, sandbox, offset):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    event = revoked_event("acct_gym")
    response = deliver(client, event, timestamp=int(time.time()) + offset)
    assert_error(response, 400, "invalid_signature")
    assert card(client)["status"] == "connected"
    assert list(WebhookEventModel.scan()) == []


@pytest.mark.parametrize("offset", [200, -200])
def test_a_webhook_signed_within_300_seconds_either_way_is_handled(client, sandbox, offset):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    response = deliver(client, revoked_event("acct_gym"), timestamp=int(time.time()) + offset)
    assert response.status_code == 200
    assert card(client)["disconnected_reason"] == REVOKED


# ------------------------------------------------------ ids not shaped like Stripe's

@pytest.mark.parametrize("event", [
    stripe_event("customer.subscription.updated", "acct_gym", {"id": "sub_1/../../v1/accounts",
                                                               "object": "subscription"}),
    stripe_event("customer.subscription.updated", "acct_gym", {"id": "sub_%2F", "object": "subscription"}),
    stripe_event("customer.subscription.updated", "acct_gym", {"id": "s" * 300, "object": "subscription"}),
    stripe_event("customer.subscription.updated", "acct_gym", {"id": 42, "object": "subscription"}),
    stripe_event("customer.subscription.updated", "acct_gym", {"object": "subscription"}),
    stripe_event("customer.subscription.updated", "acct_gym", {"id": "sub_ok"}, event_id="evt_" + "x" * 3000),
    stripe_event("customer.subscription.updated", "acct_gym", {"id": "sub_ok"}, event_id="evt_ü"),
    stripe_event("customer.subscription.updated", "acct_gym/x", {"id": "sub_ok"}),
    stripe_event("account.application.deauthorized", "acct_" + "g" * 3000, {"id": "ca_x"}),
    stripe_event("account.updated", ["acct_gym"], {"id": "acct_gym"}),
], ids=["slash", "percent", "300 chars", "number", "no id", "event id 3000", "non-ascii event id",
        "account with slash", "account 3000", "account a list"])
def test_a_signed_event_with_ids_not_shaped_like_stripes_is_acknowledged_and_ignored(client, sandbox, event):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    calls = len(sandbox.requests)
    for _ in range(2):  # the same answer on every delivery: Stripe stops retrying
        response = deliver(client, event)
        assert response.status_code == 200, response.json_body
        assert response.json_body == {"received": True}
    assert len(sandbox.requests) == calls
    assert nothing_recorded()
    assert card(client)["status"] == "connected"


# ------------------------------------- a signed event Stripe could not have made
# Only a holder of the webhook secret can send these; each gets the same
# answer on every delivery, so a retry never changes it.

@pytest.mark.parametrize("created", [True, 1.5, -1, 10 ** 40 + 1, "1796054400"],
                         ids=["boolean", "fraction", "before 1970", "past year 9999", "string"])
def test_a_signed_event_whose_created_is_not_a_unix_time_is_invalid_payload(client, sandbox, created):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    for event in (revoked_event("acct_gym", created=created),
                  stripe_event("customer.subscription.deleted", "acct_gym",
                               {"id": "sub_gone", "object": "subscription", "status": "canceled",
                                "metadata": {"customerhub_user_id": "user_1"}}, created=created)):
        assert_error(deliver(client, event), 400, "invalid_payload")
    assert nothing_recorded()
    assert card(client)["status"] == "connected"


@pytest.mark.parametrize("copy", [
    {"customer": ""},
    {"customer": "cus_1/../../v1/accounts"},
    {"customer": 5},
    {"metadata": "customerhub_user_id"},
    {"metadata": {"customerhub_user_id": "u" * 5000}},
    {"customer": {"id": "cus_1", "metadata": ["customerhub_user_id"]}},
    {"items": "x"},
    {"items": {"data": 5}},
    {"items": {"data": [{"price": "price_1"}]}},
    {"items": {"data": [{"price": {"product": ""}}]}},
    {"items": {"data": [{"price": {"product": {"id": "prod_1", "metadata": "yoga"}}}]}},
    {"items": {"data": [{"plan": ["prod_1"]}]}},
    {"status": ["canceled"]},
    {"status": "active", "items": {"data": [{"price": {"product": "prod_1"}, "current_period_end": 10 ** 40}]}},
    {"status": "active", "ended_at": 1e300, "cancel_at": -10 ** 30},
    {"customer": "cus_" + "c" * 300000},
    {"items": {"data": [{"price": {"product": "prod_" + "p" * 300000}}]}},
    {"items": {"data": [{"price": {"product": {"id": "prod_1",
                                               "metadata": {"customerhub_product_id": "y" * 300000}}}}]}},
], ids=["empty customer id", "customer id with slashes", "customer a number", "metadata a string",
        "user id 5000 long", "customer metadata a list", "items a string", "item data a number",
        "price a string", "empty product id", "product metadata a string", "plan a list",
        "status a list", "period end past year 9999", "times out of range", "customer id 300 kB",
        "product id 300 kB", "product metadata id 300 kB"])
def test_a_signed_copy_not_shaped_like_stripes_is_acknowledged_and_grants_nothing(client, sandbox, copy):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    # Stripe has no sub_gone: the connector falls back on the event's copy.
    subscription = {"id": "sub_gone", "object": "subscription", "status": "canceled",
                    "metadata": {"customerhub_user_id": "user_1"}}
    subscription.update(copy)
    event = stripe_event("customer.subscription.deleted", "acct_gym", subscription)
    for _ in range(2):  # the same answer on every delivery: Stripe stops retrying
        response = deliver(client, event)
        assert response.status_code == 200, response.json_body
    assert not [item for item in EntitlementModel.scan() if item.grants or len(item.user_id or "") > 256]


# ------------------------------------------------------------ the token's claims

def test_a_token_whose_exp_is_a_numeric_string_writes_no_settings(client, sandbox):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    before = ConnectionModel.get("site_a").serialize()
    stringly = token(site="site_a", role="admin", sub="admin_1", exp=str(int(time.time()) + 600))
    response = client.put("/connectors/stripe/settings",
                          headers={"Authorization": "Bearer " + stringly, **JSON}, body=json.dumps(ENABLED))
    assert_error(response, 401, "unauthorized")
    assert ConnectionModel.get("site_a").serialize() == before


@pytest.mark.parametrize("claims", [{"email_verified": "true"}, {"site": "s" * 6000}, {"sub": "u" * 300}])
def test_a_token_with_a_claim_of_the_wrong_type_or_length_is_401(client, claims):
    header = {"Authorization": "Bearer " + token(role="admin", email="a@b.test", **claims)}
    assert_error(client.get("/connectors/stripe", headers=header), 401, "unauthorized")
    assert_error(client.get("/access", headers=header), 401, "unauthorized")


# ------------------------------------------------------------ return URLs

@pytest.mark.parametrize("url", ["javascript:alert(1)", "https:evil.test", "//evil.test/x", "https:",
                                 "http:/app.customerhub.test", ""])
def test_a_url_that_parses_to_no_origin_never_matches_even_a_malformed_allowed_list(url):
    for allowed in (["help.example"], ["", "https://"], ["javascript:"]):
        with pytest.raises(InvalidReturnUrl):
            allowed_return_url(url, "https://app.test", allowed)


def test_a_malformed_return_url_origins_entry_stops_the_connector_from_serving(
        client, sandbox, monkeypatch):
    portal_open(client, sandbox)
    monkeypatch.setenv("RETURN_URL_ORIGINS", "help.example")
    get_settings.cache_clear()
    from chalicelib import services
    services.reset()
    for url in ("javascript:alert(1)", "https:evil.test", "//evil.test/x"):
        assert_error(open_session(client, {"return_url": url}, headers=MEMBER), 500, "internal_error")
    assert sandbox.requests_to("POST", "/v1/billing_portal/sessions") == []


# -------------------------------- an admin's disconnect racing Stripe's revocation

def test_revocation_handled_while_the_admin_disconnects_ends_disconnected_by_admin(client, sandbox):
    """Our deauthorization makes Stripe send account.application.deauthorized;
    here it is handled before the admin's disconnect is written."""
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    webhook = []
    sandbox.before_answering_next("POST", "/oauth/deauthorize",
                                  lambda: webhook.append(deliver(client, sandbox.events[-1])))
    response = client.delete("/connectors/stripe", headers=ADMIN)
    assert [answer.status_code for answer in webhook] == [200]
    assert response.status_code == 200, response.json_body
    assert response.json_body["disconnected_reason"] == BY_ADMIN
    assert card(client)["disconnected_reason"] == BY_ADMIN
    assert not sandbox.is_connected("acct_gym")


def test_revocation_delivered_after_the_admin_disconnected_ends_disconnected_by_admin(client, sandbox):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    assert client.delete("/connectors/stripe", headers=ADMIN).status_code == 200
    for _ in range(2):
        assert deliver(client, sandbox.events[-1]).status_code == 200
    assert card(client)["disconnected_reason"] == BY_ADMIN


class LaggingIndex:
    """The connection store with an account index that still returns the copy
    it had before the last write (a GSI is eventually consistent)."""

    def __init__(self, store, stale):
        self._store = store
        self._stale = stale

    def __getattr__(self, name):
        return getattr(self._store, name)

    def sites_connected_to(self, account_id):
        return [self._stale] if self._stale.account_id == account_id else []


def test_revocation_reading_a_copy_older_than_the_admins_disconnect_changes_nothing(client, sandbox):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    stale = ConnectionModel.get("site_a")
    assert client.delete("/connectors/stripe", headers=ADMIN).status_code == 200
    from chalicelib import services
    real = services.get_connector_service()
    lagging = ConnectorService(LaggingIndex(real._connections, stale), OAuthStateStore(), real._stripe,
                               get_settings().oauth_redirect_uri, real._imports)
    assert lagging.account_deauthorized("acct_gym", False, int(time.time())) == 0
    assert card(client)["disconnected_reason"] == BY_ADMIN


def test_revocation_of_another_sites_admin_leaves_this_site_connected(client, sandbox):
    sandbox.create_account(id="acct_shared")
    site_b = bearer(site="site_b", role="admin", sub="admin_b")
    connect(client, sandbox, "acct_shared")
    connect(client, sandbox, "acct_shared", headers=site_b)
    assert client.delete("/connectors/stripe", headers=site_b).status_code == 200
    assert card(client)["status"] == "connected"
    assert sandbox.is_connected("acct_shared")
