"""An admin connects, sees the card, disconnects and connects another account."""
import json
from urllib.parse import urlsplit

import requests

from chalicelib.models import ConnectionModel
from tests.helpers import APP_BASE_URL, CLIENT_ID, REDIRECT_URI, bearer, query_of

ADMIN = bearer(site="site_a", role="admin", sub="admin_1")
CALLBACK_PAGE = APP_BASE_URL + "/settings/connectors/stripe/callback"


def start(client, body=None, headers=ADMIN):
    response = client.post("/connectors/stripe/connect", headers={**headers, "Content-Type": "application/json"},
                           body="" if body is None else json.dumps(body))
    assert response.status_code == 200, response.body
    return response.json_body["authorize_url"]


def approve_at_stripe(sandbox, authorize_url, account_id):
    """What the admin's browser does on the sandbox's authorize page."""
    query = query_of(authorize_url)
    answer = requests.post(sandbox.url + "/oauth/authorize", allow_redirects=False, data={
        "client_id": query["client_id"], "scope": query["scope"], "state": query["state"],
        "redirect_uri": query["redirect_uri"], "decision": "approve", "account_id": account_id})
    assert answer.status_code == 302
    return answer.headers["Location"]


def come_back(client, location):
    """Stripe's redirect reaches the GET callback, which bounces the browser
    to the UI's callback page with the same query; what the page received."""
    parts = urlsplit(location)
    assert parts.scheme + "://" + parts.netloc + parts.path == REDIRECT_URI
    bounce = client.get("/connectors/stripe/oauth/callback?" + parts.query)
    assert bounce.status_code == 302
    assert bounce.headers["Location"] == CALLBACK_PAGE + "?" + parts.query
    return query_of(bounce.headers["Location"])


def complete(client, body, headers=ADMIN):
    """What the UI's callback page posts, with the admin's token."""
    return client.post("/connectors/stripe/oauth/callback",
                       headers={**headers, "Content-Type": "application/json"}, body=json.dumps(body))


def connect(client, sandbox, account_id, headers=ADMIN, body=None):
    """The whole round trip; the connector card it ends with."""
    query = come_back(client, approve_at_stripe(sandbox, start(client, body, headers), account_id))
    response = complete(client, query, headers)
    assert response.status_code == 200, response.json_body
    return response.json_body


def card(client, headers=ADMIN):
    response = client.get("/connectors/stripe", headers=headers)
    assert response.status_code == 200
    return response.json_body


def test_a_new_site_shows_a_disconnected_card(client):
    assert card(client) == {
        "status": "disconnected", "account": None, "connected_at": None,
        "disconnected_reason": None,
        "settings": {"portal_enabled": False, "privacy_policy_url": None,
                     "terms_of_service_url": None, "allow_cancel": False,
                     "past_due_grace_days": 14},
        "sync": None, "events": None}


def test_connect_url_carries_what_stripe_needs_and_a_fresh_state(client, sandbox):
    first = start(client, {"email": "owner@gym.test", "landing": "register", "always_prompt": True})
    second = start(client)
    assert first.startswith(sandbox.url + "/oauth/authorize?")
    query = query_of(first)
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["scope"] == "read_write"
    assert query["redirect_uri"] == REDIRECT_URI
    assert query["stripe_user[email]"] == "owner@gym.test"
    assert query["stripe_landing"] == "register"
    assert query["always_prompt"] == "true"
    assert len(query["state"]) >= 32
    assert query_of(second)["state"] != query["state"]
    assert "stripe_landing" not in query_of(second) and "always_prompt" not in query_of(second)
    # Given as false, it is passed on as false: the URL says what was asked.
    assert query_of(start(client, {"always_prompt": False}))["always_prompt"] == "false"


def test_the_authorize_page_renders_for_the_connect_url(client, sandbox):
    sandbox.create_account(id="acct_page", display_name="Page Gym")
    page = requests.get(start(client))
    assert page.status_code == 200
    assert "Page Gym" in page.text


def test_connect_then_card_shows_the_account_name_and_livemode(client, sandbox):
    sandbox.create_account(id="acct_gym", display_name="Downtown Gym")
    assert connect(client, sandbox, "acct_gym") ["status"] == "connected"
    shown = card(client)
    assert shown["status"] == "connected"
    assert shown["account"] == {"id": "acct_gym", "display_name": "Downtown Gym", "livemode": False}
    assert shown["connected_at"].endswith("Z")
    assert shown["disconnected_reason"] is None
    stored = ConnectionModel.get("site_a")
    assert stored.connected_by == "admin_1"
    assert sandbox.is_connected("acct_gym")


def test_no_oauth_token_is_stored(client, sandbox):
    sandbox.create_account(id="acct_tok", display_name="Token Gym")
    connect(client, sandbox, "acct_tok")
    item = ConnectionModel.get("site_a").serialize()
    text = repr(item)
    assert "sk_test" not in text and "rt_" not in text and "pk_test" not in text
    assert not any("token" in name for name in item)


def test_display_name_falls_back_to_business_name_then_email_then_id(client, sandbox):
    sandbox.create_account(id="acct_biz", business_name="Biz Name Ltd", email="biz@x.test")
    connect(client, sandbox, "acct_biz")
    assert card(client)["account"]["display_name"] == "Biz Name Ltd"
    sandbox.create_account(id="acct_mail", email="only@mail.test")
    connect(client, sandbox, "acct_mail")
    assert card(client)["account"]["display_name"] == "only@mail.test"
    sandbox.create_account(id="acct_bare")
    connect(client, sandbox, "acct_bare")
    assert card(client)["account"]["display_name"] == "acct_bare"


def test_disconnect_deauthorizes_and_shows_disconnected_by_admin(client, sandbox):
    sandbox.create_account(id="acct_gym", display_name="Downtown Gym")
    connect(client, sandbox, "acct_gym")
    response = client.delete("/connectors/stripe", headers=ADMIN)
    assert response.status_code == 200
    assert response.json_body["status"] == "disconnected"
    assert response.json_body["account"] is None
    assert response.json_body["connected_at"] is None
    assert response.json_body["disconnected_reason"] == "disconnected_by_admin"
    assert not sandbox.is_connected("acct_gym")
    assert card(client) == response.json_body


def test_disconnecting_a_disconnected_site_is_200_and_calls_no_stripe(client, sandbox):
    assert client.delete("/connectors/stripe", headers=ADMIN).status_code == 200
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    client.delete("/connectors/stripe", headers=ADMIN)
    calls = len(sandbox.requests)
    again = client.delete("/connectors/stripe", headers=ADMIN)
    assert again.status_code == 200
    assert again.json_body["disconnected_reason"] == "disconnected_by_admin"
    assert len(sandbox.requests) == calls


def test_connect_disconnect_then_connect_another_account(client, sandbox):
    sandbox.create_account(id="acct_one", display_name="First")
    sandbox.create_account(id="acct_two", display_name="Second")
    connect(client, sandbox, "acct_one")
    client.delete("/connectors/stripe", headers=ADMIN)
    assert connect(client, sandbox, "acct_two", body={"always_prompt": True}) ["status"] == "connected"
    shown = card(client)
    assert shown["account"]["id"] == "acct_two"
    assert shown["account"]["display_name"] == "Second"
    assert shown["disconnected_reason"] is None


def test_connecting_another_account_replaces_and_deauthorizes_the_old_one(client, sandbox):
    sandbox.create_account(id="acct_one", display_name="First")
    sandbox.create_account(id="acct_two", display_name="Second")
    connect(client, sandbox, "acct_one")
    connection = ConnectionModel.get("site_a")
    connection.update(actions=[ConnectionModel.portal_enabled.set(True),
                               ConnectionModel.privacy_policy_url.set("https://gym.test/privacy"),
                               ConnectionModel.terms_of_service_url.set("https://gym.test/terms"),
                               ConnectionModel.portal_configuration_id.set("bpc_old")])
    assert connect(client, sandbox, "acct_two") ["status"] == "connected"
    shown = card(client)
    assert shown["account"]["id"] == "acct_two"
    # The portal comes along, made on the new account (tests/api/test_switch_keeps_portal.py).
    assert shown["settings"]["portal_enabled"] is True
    assert shown["settings"]["privacy_policy_url"] == "https://gym.test/privacy"
    [configuration] = sandbox.portal_configurations("acct_two")
    assert ConnectionModel.get("site_a").portal_configuration_id == configuration["id"]
    assert not sandbox.is_connected("acct_one")
    assert sandbox.is_connected("acct_two")


def test_a_shared_account_is_deauthorized_only_when_its_last_site_leaves(client, sandbox):
    sandbox.create_account(id="acct_shared", display_name="One Business")
    other_admin = bearer(site="site_b", role="owner", sub="owner_b")
    connect(client, sandbox, "acct_shared")
    connect(client, sandbox, "acct_shared", headers=other_admin)
    assert card(client, other_admin)["status"] == "connected"
    client.delete("/connectors/stripe", headers=ADMIN)
    assert sandbox.is_connected("acct_shared")
    assert card(client, other_admin)["status"] == "connected"
    client.delete("/connectors/stripe", headers=other_admin)
    assert not sandbox.is_connected("acct_shared")


def test_disconnect_goes_ahead_when_stripe_says_the_account_is_not_connected(client, sandbox):
    sandbox.create_account(id="acct_gone")
    connect(client, sandbox, "acct_gone")
    sandbox.revoke("acct_gone")
    response = client.delete("/connectors/stripe", headers=ADMIN)
    assert response.status_code == 200
    assert response.json_body["status"] == "disconnected"


def test_disconnect_is_502_and_changes_nothing_when_stripe_fails(client, sandbox):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    before = ConnectionModel.get("site_a").serialize()
    sandbox.fail_next("POST", "/oauth/deauthorize", status=500, should_retry=False)
    response = client.delete("/connectors/stripe", headers=ADMIN)
    assert response.status_code == 502
    assert response.json_body["error"]["code"] == "stripe_error"
    assert ConnectionModel.get("site_a").serialize() == before
    assert sandbox.is_connected("acct_gym")
