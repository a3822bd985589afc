"""Every way back from Stripe that is not a success: a redirect with the
reason, and nothing stored or changed."""
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest

from chalicelib.connections import OAuthStateStore
from chalicelib.models import ConnectionModel, OAuthStateModel
from tests.api.test_connect_lifecycle import ADMIN, approve_at_stripe, card, connect, start
from tests.helpers import APP_BASE_URL, bearer, query_of


def callback(client, **params):
    return client.get("/connectors/stripe/oauth/callback?" + urlencode(params))


def reason_of(response):
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(APP_BASE_URL + "/settings/connectors/stripe?")
    query = query_of(location)
    assert query["result"] == "error"
    return query["reason"]


def nothing_connected():
    return all(item.status != "connected" for item in ConnectionModel.scan())


def test_user_declining_at_stripe_is_access_denied(client, sandbox):
    state = query_of(start(client))["state"]
    response = callback(client, error="access_denied", error_description="The user denied", state=state)
    assert reason_of(response) == "access_denied"
    assert nothing_connected()


def test_another_stripe_error_is_stripe_error(client):
    state = query_of(start(client))["state"]
    assert reason_of(callback(client, error="invalid_scope", state=state)) == "stripe_error"


@pytest.mark.parametrize("params", [
    {"code": "ac_whatever"}, {"code": "ac_whatever", "state": ""},
    {"code": "ac_whatever", "state": "made-up-state"}, {"error": "access_denied"},
    {"error": "access_denied", "state": "made-up"}, {},
])
def test_missing_or_unknown_state_is_invalid_state_before_anything_else(client, sandbox, params):
    assert reason_of(callback(client, **params)) == "invalid_state"
    assert sandbox.requests_to("POST", "/oauth/token") == []
    assert nothing_connected()


def test_a_replayed_state_is_invalid_state(client, sandbox):
    sandbox.create_account(id="acct_gym")
    location = approve_at_stripe(sandbox, start(client), "acct_gym")
    query = query_of(location)
    assert callback(client, **query).headers["Location"].endswith("result=connected")
    client.delete("/connectors/stripe", headers=ADMIN)
    assert reason_of(callback(client, **query)) == "invalid_state"
    assert card(client)["status"] == "disconnected"


def test_a_state_used_by_a_failed_callback_cannot_be_used_again(client, sandbox):
    sandbox.create_account(id="acct_gym")
    state = query_of(start(client))["state"]
    assert reason_of(callback(client, error="access_denied", state=state)) == "access_denied"
    code = sandbox.issue_code("acct_gym")
    assert reason_of(callback(client, code=code, state=state)) == "invalid_state"
    assert nothing_connected()


def test_an_expired_state_is_invalid_state(client, sandbox):
    sandbox.create_account(id="acct_gym")
    eleven_minutes_ago = datetime.now(timezone.utc) - timedelta(minutes=11)
    state = OAuthStateStore().issue("site_a", "admin_1", eleven_minutes_ago)
    assert reason_of(callback(client, code=sandbox.issue_code("acct_gym"), state=state)) == "invalid_state"
    assert sandbox.requests_to("POST", "/oauth/token") == []
    assert nothing_connected()


def test_states_are_stored_hashed_and_expire(client):
    state = query_of(start(client))["state"]
    stored = list(OAuthStateModel.scan())
    assert len(stored) == 1
    assert stored[0].state_hash != state and state not in repr(stored[0].serialize())
    lifetime = stored[0].expires_at - stored[0].created_at
    assert timedelta(minutes=9) < lifetime <= timedelta(minutes=10)


def test_the_connection_goes_to_the_site_that_asked_not_another(client, sandbox):
    sandbox.create_account(id="acct_a")
    location = approve_at_stripe(sandbox, start(client), "acct_a")
    callback(client, **query_of(location))
    assert card(client, ADMIN)["account"]["id"] == "acct_a"
    assert card(client, bearer(site="site_b", role="admin", sub="admin_b"))["status"] == "disconnected"


def test_failed_token_exchange_is_stripe_error_and_connects_nothing(client, sandbox):
    state = query_of(start(client))["state"]
    assert reason_of(callback(client, code="ac_never_issued", state=state)) == "stripe_error"
    assert nothing_connected()


def test_token_exchange_failing_at_stripe_is_stripe_error(client, sandbox):
    sandbox.create_account(id="acct_gym")
    state = query_of(start(client))["state"]
    code = sandbox.issue_code("acct_gym")
    sandbox.fail_next("POST", "/oauth/token", status=500, should_retry=False)
    assert reason_of(callback(client, code=code, state=state)) == "stripe_error"
    assert nothing_connected()


def test_account_read_failure_is_stripe_error_and_deauthorizes_again(client, sandbox):
    sandbox.create_account(id="acct_gym")
    state = query_of(start(client))["state"]
    code = sandbox.issue_code("acct_gym")
    sandbox.fail_next("GET", "/v1/accounts/acct_gym", status=500, should_retry=False)
    assert reason_of(callback(client, code=code, state=state)) == "stripe_error"
    assert nothing_connected()
    assert not sandbox.is_connected("acct_gym")
    assert len(sandbox.requests_to("POST", "/oauth/deauthorize")) == 1


def test_a_failed_reconnect_leaves_the_existing_connection_as_it_was(client, sandbox):
    sandbox.create_account(id="acct_one", display_name="First")
    sandbox.create_account(id="acct_two", display_name="Second")
    connect(client, sandbox, "acct_one")
    before = ConnectionModel.get("site_a").serialize()
    state = query_of(start(client))["state"]
    code = sandbox.issue_code("acct_two")
    sandbox.fail_next("GET", "/v1/accounts/acct_two", status=500, should_retry=False)
    assert reason_of(callback(client, code=code, state=state)) == "stripe_error"
    assert ConnectionModel.get("site_a").serialize() == before
    assert sandbox.is_connected("acct_one")


def test_callback_answers_no_cors_headers(client):
    response = callback(client, code="x", state="y")
    assert not any(name.lower().startswith("access-control") for name in response.headers)
