"""Who may call what, and the contract's error body for every failure,
the framework's own included."""
import json
import threading
import time

import jwt
import pytest
import requests

from local.api_server import make_server
from tests.helpers import APP_BASE_URL, bearer, token

ADMIN_ROUTES = [("GET", "/connectors/stripe"), ("POST", "/connectors/stripe/connect"),
                ("DELETE", "/connectors/stripe")]


def call(client, method, path, headers=None, body=None):
    return client.request(method, path, headers=headers or {}, body=body or b"")


def assert_error(response, status, code):
    assert response.status_code == status, response.body
    body = response.json_body
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.mark.parametrize("method,path", ADMIN_ROUTES)
def test_admin_routes_without_a_token_are_401(client, method, path):
    assert_error(call(client, method, path), 401, "unauthorized")


@pytest.mark.parametrize("method,path", ADMIN_ROUTES)
def test_admin_routes_for_a_member_are_403(client, method, path):
    assert_error(call(client, method, path, bearer(role="member")), 403, "forbidden")


def test_a_head_reaches_the_app_and_is_answered_as_its_get(client):
    """Deployed, API Gateway hands a HEAD to the function as it is: the app
    answers it as the GET, its checks included."""
    get = call(client, "GET", "/connectors/stripe", bearer())
    head = call(client, "HEAD", "/connectors/stripe", bearer())
    assert (head.status_code, head.headers, head.body) == (get.status_code, get.headers, get.body)
    assert head.status_code == 200
    assert_error(call(client, "HEAD", "/connectors/stripe", bearer(role="member")), 403, "forbidden")
    bounce = call(client, "HEAD", "/connectors/stripe/oauth/callback?code=ac_1&state=s")
    assert bounce.status_code == 302 and "Access-Control-Allow-Origin" not in bounce.headers


@pytest.mark.parametrize("bad", [
    token(secret="an-entirely-different-secret-of-enough-length"),
    token(exp=int(time.time()) - 1),
    token(aud="another-audience"),
    token(iss="not-customerhub"),
    jwt.encode({"sub": "u", "site": "site_a", "role": "admin", "iss": "customerhub",
                "aud": "stripe-connector", "exp": int(time.time()) + 60}, None, algorithm="none"),
    "garbage",
])
def test_bad_tokens_are_401_and_never_echoed(client, bad):
    response = call(client, "GET", "/connectors/stripe", {"Authorization": "Bearer " + bad})
    assert_error(response, 401, "unauthorized")
    assert bad not in response.body.decode()


def test_the_site_always_comes_from_the_token(client, sandbox):
    sandbox.create_account(id="acct_a")
    from tests.api.test_connect_lifecycle import connect
    connect(client, sandbox, "acct_a", headers=bearer(site="site_a"))
    other = call(client, "GET", "/connectors/stripe?site=site_a", bearer(site="site_b"))
    assert other.json_body["status"] == "disconnected"
    body = json.dumps({"site": "site_a"}).encode()
    deleted = call(client, "DELETE", "/connectors/stripe", bearer(site="site_b"), body)
    assert deleted.status_code == 200
    assert call(client, "GET", "/connectors/stripe", bearer(site="site_a")).json_body["status"] == "connected"


@pytest.mark.parametrize("body,message", [
    (b"{not json", "JSON"), (b"[]", "object"), (b'{"landing": "signup"}', "landing"),
    (b'{"always_prompt": "yes"}', "always_prompt"), (b'{"always_prompt": null}', "always_prompt"),
    (b'{"email": 12}', "email"),
    (b'{"site": "site_b"}', "Unknown field"),
])
def test_connect_with_a_bad_body_is_400_and_stores_no_state(client, body, message):
    from chalicelib.models import OAuthStateModel
    response = call(client, "POST", "/connectors/stripe/connect",
                    {**bearer(), "Content-Type": "application/json"}, body)
    assert_error(response, 400, "invalid_request")
    assert message in response.json_body["error"]["message"]
    assert list(OAuthStateModel.scan()) == []


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/connectors/stripe", 200), ("HEAD", "/connectors/stripe", 200), ("GET", "/access", 200),
    ("GET", "/access/history", 200), ("GET", "/billing/portal", 200), ("GET", "/access/user_x", 200),
    ("GET", "/access/user_x/history", 200), ("DELETE", "/connectors/stripe", 200),
    ("POST", "/connectors/stripe/sync", 409), ("DELETE", "/connectors/stripe/links/sub_x", 404),
])
def test_a_route_that_reads_no_body_answers_whatever_content_type_is_named(client, method, path, status):
    # A stray header from a client library, with no body: the route's own answer, not a 415.
    response = call(client, method, path, {**bearer(role="owner"), "Content-Type": "text/plain"})
    assert response.status_code == status, response.body


def test_connect_with_a_form_body_is_415(client):
    response = call(client, "POST", "/connectors/stripe/connect",
                    {**bearer(), "Content-Type": "application/x-www-form-urlencoded"}, b"a=b")
    assert_error(response, 415, "unsupported_media_type")


def test_connect_with_an_oversized_body_is_413(client):
    response = call(client, "POST", "/connectors/stripe/connect",
                    {**bearer(), "Content-Type": "application/json"},
                    json.dumps({"email": "a" * 70000 + "@x.test"}).encode())
    assert_error(response, 413, "payload_too_large")


def test_a_wrong_method_on_a_known_route_is_405_in_the_contract_shape(client):
    response = call(client, "PATCH", "/connectors/stripe", bearer())
    assert_error(response, 405, "method_not_allowed")


def test_ui_routes_answer_cors_for_the_app_origin_only(client):
    response = call(client, "GET", "/connectors/stripe", {**bearer(), "Origin": "https://evil.test"})
    assert response.headers["Access-Control-Allow-Origin"] == APP_BASE_URL
    denied = call(client, "GET", "/connectors/stripe", {"Origin": APP_BASE_URL})
    assert denied.status_code == 401
    assert denied.headers["Access-Control-Allow-Origin"] == APP_BASE_URL


@pytest.mark.parametrize("path,methods", [("/connectors/stripe", "GET,DELETE"),
                                          ("/connectors/stripe/connect", "POST")])
def test_preflight_allows_authorization_and_content_type(client, path, methods):
    response = call(client, "OPTIONS", path, {
        "Origin": APP_BASE_URL, "Access-Control-Request-Method": methods.split(",")[0],
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == APP_BASE_URL
    assert set(response.headers["Access-Control-Allow-Headers"].split(",")) == {"Authorization", "Content-Type"}
    for method in methods.split(","):
        assert method in response.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.fixture
def local_api(aws, sandbox):
    from app import app
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server.server_address[1]
    server.shutdown()


def test_local_server_answers_an_unknown_route_404_without_echoing_headers(local_api):
    secret_header = "Bearer do-not-echo-this-value"
    response = requests.get(local_api + "/no/such/route", headers={"Authorization": secret_header})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "No such route"}}
    assert "do-not-echo" not in response.text


def test_local_server_serves_the_card(local_api):
    response = requests.get(local_api + "/connectors/stripe", headers=bearer())
    assert response.status_code == 200
    assert response.json()["status"] == "disconnected"


def _browser_routes():
    """Every route the UI calls with a token: all but Stripe's webhook and
    the GET callback bounce, which answer no CORS, and HEAD, which the UI
    never sends."""
    from app import CALLBACK_PATH, WEBHOOK_PATH, app
    found = []
    for path, methods in sorted(app.routes.items()):
        for method in sorted(set(methods) - {"OPTIONS", "HEAD"}):
            if path == WEBHOOK_PATH or (path == CALLBACK_PATH and method == "GET"):
                continue
            found.append((path.replace("{user_id}", "user_ana").replace("{subscription_id}", "sub_1"), method))
    return found


@pytest.mark.parametrize("path,method", _browser_routes())
def test_every_route_the_ui_calls_answers_the_preflight_for_the_app_origin(client, path, method):
    response = client.request("OPTIONS", path, headers={
        "Origin": APP_BASE_URL, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type"}, body=b"")
    assert response.status_code == 204, (path, method)
    assert response.headers["Access-Control-Allow-Origin"] == APP_BASE_URL
    assert method in response.headers["Access-Control-Allow-Methods"]
