"""Coming back from Stripe: the GET callback only bounces the browser to the
UI's page, and the page completes the connection with the admin's token.
Every way that is not a success is a clear error, and nothing is stored or
changed."""
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode

import pytest

from chalicelib.connections import OAuthStateStore
from chalicelib.models import ConnectionModel, OAuthStateModel
from tests.api.test_connect_lifecycle import (ADMIN, CALLBACK_PAGE, approve_at_stripe, card, come_back,
                                              complete, connect, start)
from tests.helpers import bearer, query_of

SAME_SITE_OTHER_ADMIN = bearer(site="site_a", role="owner", sub="admin_2")
OTHER_SITE_ADMIN = bearer(site="site_b", role="admin", sub="admin_1")


def bounce(client, query: str):
    return client.get("/connectors/stripe/oauth/callback" + ("?" + query if query else ""))


def refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.json_body
    assert response.json_body["error"]["code"] == code
    assert response.json_body["error"]["message"]


def nothing_connected():
    return all(item.status != "connected" for item in ConnectionModel.scan())


def fresh_state(client) -> str:
    return query_of(start(client))["state"]


# ------------------------------------------------------------ the GET bounce

@pytest.mark.parametrize("query", [
    "code=ac_123&scope=read_write&state=abc-_DEF",
    "error=access_denied&error_description=The+user+denied+your+request&state=s1",
    "state=x&state=y&code=ac_1",
])
def test_the_get_callback_bounces_to_the_ui_page_with_the_same_query(client, query):
    response = bounce(client, query)
    assert response.status_code == 302
    assert response.headers["Location"] == CALLBACK_PAGE + "?" + query
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.body in (b"", "")


class LambdaContext:
    aws_request_id = "4d1a0f3e-lambda-request"
    function_name = "stripe-connector-dev-APIHandler"

    def get_remaining_time_in_millis(self):
        return 20_000


def test_under_a_rest_api_proxy_event_the_bounce_keeps_the_querys_meaning_not_its_bytes(client):
    """A REST API's proxy event carries the query decoded, never as sent:
    the bounce encodes it again, so `%20` comes back `+` and a repeated
    name's values come together. Every name and value is kept, which is all
    the page reads; the deployed stages send Stripe straight to the page
    (OAUTH_REDIRECT_URI), so the query reaches it untouched there."""
    from app import app
    sent = "error=access_denied&error_description=The%20user%20denied%20your%20request&state=s1&error=again"
    decoded = parse_qsl(sent)
    multi = {}
    for name, value in decoded:
        multi.setdefault(name, []).append(value)
    event = {
        "resource": "/connectors/stripe/oauth/callback", "path": "/connectors/stripe/oauth/callback",
        "httpMethod": "GET", "headers": {"Host": "api.example"}, "multiValueHeaders": {"Host": ["api.example"]},
        "queryStringParameters": {name: values[-1] for name, values in multi.items()},
        "multiValueQueryStringParameters": multi, "pathParameters": None, "stageVariables": None,
        "body": None, "isBase64Encoded": False,
        "requestContext": {"resourcePath": "/connectors/stripe/oauth/callback", "httpMethod": "GET",
                           "requestId": "c6af9ac6-gateway-request", "path": "/api/connectors/stripe/oauth/callback",
                           "stage": "api", "identity": {"sourceIp": "203.0.113.9"}},
    }
    answer = app(event, LambdaContext())
    assert answer["statusCode"] == 302
    location = answer["headers"]["Location"]
    assert location.startswith(CALLBACK_PAGE + "?")
    query = location.split("?", 1)[1]
    assert query != sent
    assert sorted(parse_qsl(query)) == sorted(decoded)
    assert [v for n, v in parse_qsl(query) if n == "error"] == ["access_denied", "again"]


def test_the_get_callback_with_no_query_bounces_to_the_bare_page(client):
    response = bounce(client, "")
    assert response.status_code == 302
    assert response.headers["Location"] == CALLBACK_PAGE


def test_the_get_callback_reads_no_state_and_stores_nothing(client, sandbox):
    sandbox.create_account(id="acct_gym")
    location = approve_at_stripe(sandbox, start(client), "acct_gym")
    for _ in range(3):
        come_back(client, location)
    assert sandbox.requests_to("POST", "/oauth/token") == []
    assert nothing_connected()
    assert len(list(OAuthStateModel.scan())) == 1
    # The state it carried is still there for the page to use.
    assert complete(client, come_back(client, location)).json_body["status"] == "connected"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "text/html"])
def test_the_get_callback_bounces_whatever_content_type_the_browser_names(client, content_type):
    response = client.get("/connectors/stripe/oauth/callback?code=ac_1&state=s1",
                          headers={"Content-Type": content_type})
    assert response.status_code == 302
    assert response.headers["Location"] == CALLBACK_PAGE + "?code=ac_1&state=s1"


def test_the_get_callback_answers_no_cors_headers(client):
    response = bounce(client, "code=x&state=y")
    assert not any(name.lower().startswith("access-control") for name in response.headers)


def test_the_post_callback_answers_cors_and_its_preflight_allows_post(client):
    preflight = client.request("OPTIONS", "/connectors/stripe/oauth/callback", headers={
        "Origin": "https://app.customerhub.test", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.customerhub.test"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    answer = complete(client, {"state": "nope"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.customerhub.test"


@pytest.mark.parametrize("asked", [{"Access-Control-Request-Method": "GET"},
                                   {"Access-Control-Request-Method": "HEAD"},
                                   {"Access-Control-Request-Method": "PUT"},
                                   {"Access-Control-Request-Method": "post"},
                                   {}],
                         ids=["GET", "HEAD", "PUT", "lower-case post", "no method asked"])
def test_a_preflight_on_the_callback_path_for_anything_but_the_post_gets_no_cors_headers(client, asked):
    response = client.request("OPTIONS", "/connectors/stripe/oauth/callback",
                              headers={"Origin": "https://app.customerhub.test", **asked})
    refused(response, 403, "forbidden")
    assert not any(name.lower().startswith("access-control") for name in response.headers)


# ------------------------------------------------------- the POST completion

def test_the_admin_who_started_completes_and_gets_the_card(client, sandbox):
    sandbox.create_account(id="acct_gym", display_name="Gym")
    query = come_back(client, approve_at_stripe(sandbox, start(client), "acct_gym"))
    assert set(query) == {"code", "scope", "state"}
    response = complete(client, query)
    assert response.status_code == 200
    assert response.json_body["status"] == "connected"
    assert response.json_body["account"]["display_name"] == "Gym"
    assert ConnectionModel.get("site_a").connected_by == "admin_1"


@pytest.mark.parametrize("intruder", [SAME_SITE_OTHER_ADMIN, OTHER_SITE_ADMIN],
                         ids=["another admin of the site", "an admin of another site"])
def test_a_state_completed_by_anyone_but_its_admin_is_refused_and_stays_usable(client, sandbox, intruder):
    sandbox.create_account(id="acct_victim")
    query = come_back(client, approve_at_stripe(sandbox, start(client), "acct_victim"))
    refused(complete(client, query, headers=intruder), 400, "invalid_state")
    assert sandbox.requests_to("POST", "/oauth/token") == []
    assert nothing_connected()
    assert card(client, bearer(site="site_b", role="admin", sub="admin_1"))["status"] == "disconnected"
    # The admin who started it still can.
    assert complete(client, query).json_body["status"] == "connected"


def test_an_authorize_link_approved_by_someone_else_connects_nothing_without_the_admin(client, sandbox):
    """A site admin sends their authorize URL to another business's owner, who
    approves: the owner's browser lands on the UI page with no admin session."""
    sandbox.create_account(id="acct_other_business")
    query = come_back(client, approve_at_stripe(sandbox, start(client), "acct_other_business"))
    no_token = client.post("/connectors/stripe/oauth/callback",
                           headers={"Content-Type": "application/json"}, body=json.dumps(query))
    refused(no_token, 401, "unauthorized")
    member = complete(client, query, headers=bearer(site="site_a", role="member", sub="admin_1"))
    refused(member, 403, "forbidden")
    assert sandbox.requests_to("POST", "/oauth/token") == []
    assert nothing_connected()


def test_declining_at_stripe_is_access_denied_and_uses_the_state_up(client, sandbox):
    state = fresh_state(client)
    query = come_back(client, "%s?%s" % (
        "https://api.customerhub.test/connectors/stripe/oauth/callback",
        urlencode({"error": "access_denied", "error_description": "The user denied your request",
                   "state": state})))
    refused(complete(client, query), 400, "access_denied")
    assert nothing_connected()
    refused(complete(client, query), 400, "invalid_state")


def test_another_stripe_error_is_stripe_error(client, sandbox):
    refused(complete(client, {"error": "invalid_scope", "state": fresh_state(client)}), 502, "stripe_error")
    assert nothing_connected()


def test_a_body_with_both_code_and_error_is_taken_as_the_error(client, sandbox):
    sandbox.create_account(id="acct_gym")
    state = fresh_state(client)
    body = {"state": state, "code": sandbox.issue_code("acct_gym"), "error": "access_denied"}
    refused(complete(client, body), 400, "access_denied")
    assert sandbox.requests_to("POST", "/oauth/token") == []
    assert nothing_connected()


def test_fields_stripe_adds_are_ignored(client, sandbox):
    sandbox.create_account(id="acct_gym")
    body = {"state": fresh_state(client), "code": sandbox.issue_code("acct_gym"), "scope": "read_write",
            "something_new": [1, 2]}
    assert complete(client, body).status_code == 200


@pytest.mark.parametrize("body", [
    {"code": "ac_whatever"}, {"code": "ac_whatever", "state": ""},
    {"code": "ac_whatever", "state": "made-up-state"}, {"error": "access_denied"},
    {"error": "access_denied", "state": "made-up"}, {}, {"state": 12345}, {"state": ["a"]},
    {"state": {"x": 1}}, {"state": None}, {"state": True}, {"state": "s" * 5000}, None,
])
def test_a_missing_unknown_or_malformed_state_is_invalid_state_before_anything_else(client, sandbox, body):
    refused(complete(client, body), 400, "invalid_state")
    assert sandbox.requests_to("POST", "/oauth/token") == []
    assert nothing_connected()


def test_an_empty_body_has_no_state_and_is_invalid_state(client, sandbox):
    response = client.post("/connectors/stripe/oauth/callback",
                           headers={**ADMIN, "Content-Type": "application/json"}, body="")
    refused(response, 400, "invalid_state")
    assert nothing_connected()


@pytest.mark.parametrize("shape", [lambda state: [state], lambda state: [{"state": state}],
                                   lambda state: state, lambda state: 42, lambda state: True],
                         ids=["array of the state", "array of the body", "the state as a string", "number",
                              "boolean"])
def test_a_body_that_is_json_but_not_an_object_is_invalid_request_and_uses_up_nothing(client, sandbox, shape):
    sandbox.create_account(id="acct_gym")
    query = come_back(client, approve_at_stripe(sandbox, start(client), "acct_gym"))
    response = complete(client, shape(query["state"]))
    refused(response, 400, "invalid_request")
    assert "object" in response.json_body["error"]["message"]
    assert sandbox.requests_to("POST", "/oauth/token") == []
    assert nothing_connected()
    # It carried no state: the one the admin holds is still theirs to use.
    assert complete(client, query).json_body["status"] == "connected"


def test_a_body_that_is_not_json_is_invalid_request(client):
    response = client.post("/connectors/stripe/oauth/callback",
                           headers={**ADMIN, "Content-Type": "application/json"}, body="{state:")
    refused(response, 400, "invalid_request")


@pytest.mark.parametrize("rest", [{}, {"code": 123}, {"code": ["ac_1"]}, {"error": 7}, {"code": ""}],
                         ids=["neither", "number code", "list code", "number error", "empty code"])
def test_a_good_state_without_a_usable_code_or_error_is_invalid_request(client, sandbox, rest):
    refused(complete(client, {"state": fresh_state(client), **rest}), 400, "invalid_request")
    assert sandbox.requests_to("POST", "/oauth/token") == []
    assert nothing_connected()


def test_a_replayed_state_is_invalid_state(client, sandbox):
    sandbox.create_account(id="acct_gym")
    query = come_back(client, approve_at_stripe(sandbox, start(client), "acct_gym"))
    assert complete(client, query).status_code == 200
    client.delete("/connectors/stripe", headers=ADMIN)
    refused(complete(client, query), 400, "invalid_state")
    assert card(client)["status"] == "disconnected"


def test_a_state_used_by_a_failed_completion_cannot_be_used_again(client, sandbox):
    sandbox.create_account(id="acct_gym")
    state = fresh_state(client)
    refused(complete(client, {"error": "access_denied", "state": state}), 400, "access_denied")
    refused(complete(client, {"code": sandbox.issue_code("acct_gym"), "state": state}), 400, "invalid_state")
    assert nothing_connected()


def test_an_expired_state_is_invalid_state(client, sandbox):
    sandbox.create_account(id="acct_gym")
    eleven_minutes_ago = datetime.now(timezone.utc) - timedelta(minutes=11)
    state = OAuthStateStore().issue("site_a", "admin_1", eleven_minutes_ago)
    refused(complete(client, {"code": sandbox.issue_code("acct_gym"), "state": state}), 400, "invalid_state")
    assert sandbox.requests_to("POST", "/oauth/token") == []
    assert nothing_connected()


def test_states_are_stored_hashed_and_expire(client):
    state = fresh_state(client)
    stored = list(OAuthStateModel.scan())
    assert len(stored) == 1
    assert stored[0].state_hash != state and state not in repr(stored[0].serialize())
    assert (stored[0].site_id, stored[0].user_id) == ("site_a", "admin_1")
    lifetime = stored[0].expires_at - stored[0].created_at
    assert timedelta(minutes=9) < lifetime <= timedelta(minutes=10)


def test_failed_token_exchange_is_stripe_error_and_connects_nothing(client, sandbox):
    refused(complete(client, {"code": "ac_never_issued", "state": fresh_state(client)}), 502, "stripe_error")
    assert nothing_connected()


def test_token_exchange_failing_at_stripe_is_stripe_error(client, sandbox):
    sandbox.create_account(id="acct_gym")
    state = fresh_state(client)
    code = sandbox.issue_code("acct_gym")
    sandbox.fail_next("POST", "/oauth/token", status=500, should_retry=False)
    refused(complete(client, {"code": code, "state": state}), 502, "stripe_error")
    assert nothing_connected()


def test_account_read_failure_is_stripe_error_and_deauthorizes_again(client, sandbox):
    sandbox.create_account(id="acct_gym")
    state = fresh_state(client)
    code = sandbox.issue_code("acct_gym")
    sandbox.fail_next("GET", "/v1/accounts/acct_gym", status=500, should_retry=False)
    refused(complete(client, {"code": code, "state": state}), 502, "stripe_error")
    assert nothing_connected()
    assert not sandbox.is_connected("acct_gym")
    assert len(sandbox.requests_to("POST", "/oauth/deauthorize")) == 1


def test_a_failed_reconnect_leaves_the_existing_connection_as_it_was(client, sandbox):
    sandbox.create_account(id="acct_one", display_name="First")
    sandbox.create_account(id="acct_two", display_name="Second")
    connect(client, sandbox, "acct_one")
    before = ConnectionModel.get("site_a").serialize()
    state = fresh_state(client)
    code = sandbox.issue_code("acct_two")
    sandbox.fail_next("GET", "/v1/accounts/acct_two", status=500, should_retry=False)
    refused(complete(client, {"code": code, "state": state}), 502, "stripe_error")
    assert ConnectionModel.get("site_a").serialize() == before
    assert sandbox.is_connected("acct_one")


def test_deeply_nested_json_is_invalid_request_not_a_crash(client):
    response = client.post("/connectors/stripe/oauth/callback",
                           headers={**ADMIN, "Content-Type": "application/json"}, body="[" * 50000)
    refused(response, 400, "invalid_request")
