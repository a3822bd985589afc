"""The local Stripe sandbox, driven by the real stripe-python client."""
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import stripe

from local.stripe_sandbox import Request, StripeSandbox, parse_form

ROOT = Path(__file__).resolve().parents[2]

SECRET_KEY = "sk_test_sandbox"
CLIENT_ID = "ca_sandbox"
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"


@pytest.fixture
def sandbox():
    with StripeSandbox(secret_key=SECRET_KEY, client_id=CLIENT_ID) as sb:
        yield sb


def make_client(sb, api_key=SECRET_KEY, retries=0):
    return stripe.StripeClient(api_key, client_id=CLIENT_ID,
                               base_addresses={"api": sb.url, "connect": sb.url},
                               max_network_retries=retries)


@pytest.fixture
def client(sandbox):
    return make_client(sandbox)


def connect(sb, client, **account_fields):
    account = sb.create_account(**account_fields)
    client.oauth.token({"grant_type": "authorization_code", "code": sb.issue_code(account["id"])})
    return account["id"]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def post_form(url, fields):
    """A browser form submit; the 302 comes back as an HTTPError we return."""
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        return opener.open(urllib.request.Request(url, data=urlencode(fields).encode(), method="POST"))
    except urllib.error.HTTPError as answer:
        return answer


# ------------------------------------------------------------------ OAuth

def test_token_exchange_returns_the_account_and_connects_it(sandbox, client):
    account = sandbox.create_account(display_name="Acme Fitness")
    token = client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(account["id"])})
    assert token.stripe_user_id == account["id"]
    assert token.livemode is False and token.scope == "read_write" and token.token_type == "bearer"
    assert token.access_token.startswith("sk_test_") and token.refresh_token.startswith("rt_")
    assert sandbox.is_connected(account["id"])
    assert [e["type"] for e in sandbox.events] == ["account.application.authorized"]


def test_unknown_code_raises_invalid_grant(client):
    with pytest.raises(stripe.oauth_error.InvalidGrantError) as caught:
        client.oauth.token({"grant_type": "authorization_code", "code": "ac_nope"})
    assert caught.value.http_status == 400
    assert "ac_nope" in caught.value.user_message


def test_code_is_single_use(sandbox, client):
    code = sandbox.issue_code(sandbox.create_account()["id"])
    client.oauth.token({"grant_type": "authorization_code", "code": code})
    with pytest.raises(stripe.oauth_error.InvalidGrantError):
        client.oauth.token({"grant_type": "authorization_code", "code": code})


def test_code_older_than_five_minutes_raises_invalid_grant(sandbox, client):
    now = [1_800_000_000.0]
    sandbox.clock = lambda: now[0]
    code = sandbox.issue_code(sandbox.create_account()["id"])
    now[0] += 301
    with pytest.raises(stripe.oauth_error.InvalidGrantError):
        client.oauth.token({"grant_type": "authorization_code", "code": code})


def test_wrong_grant_type_raises_unsupported_grant_type(client):
    with pytest.raises(stripe.oauth_error.UnsupportedGrantTypeError):
        client.oauth.token({"grant_type": "refresh_token", "refresh_token": "rt_x"})


def test_deauthorize_disconnects_and_records_the_deauthorized_event(sandbox, client):
    account_id = connect(sandbox, client)
    answer = client.oauth.deauthorize({"stripe_user_id": account_id})
    assert answer.stripe_user_id == account_id
    assert not sandbox.is_connected(account_id)
    event = sandbox.events[-1]
    assert event["type"] == "account.application.deauthorized" and event["account"] == account_id
    assert event["data"]["object"] == {"id": CLIENT_ID, "object": "application", "name": "CustomerHub"}
    assert sandbox.requests_to("POST", "/oauth/deauthorize")[0]["params"]["client_id"] == CLIENT_ID


def test_deauthorize_of_a_not_connected_account_raises_invalid_client(sandbox, client):
    account_id = sandbox.create_account()["id"]
    with pytest.raises(stripe.oauth_error.InvalidClientError) as caught:
        client.oauth.deauthorize({"stripe_user_id": account_id})
    assert caught.value.http_status == 401
    assert "not connected" in caught.value.user_message


def test_wrong_key_on_oauth_raises_invalid_client_with_a_masked_key(sandbox):
    with pytest.raises(stripe.oauth_error.InvalidClientError) as caught:
        make_client(sandbox, api_key="sk_test_wrongkey1234").oauth.token(
            {"grant_type": "authorization_code", "code": "ac_x"})
    assert "sk_test_****1234" in caught.value.user_message
    assert "wrongkey" not in caught.value.http_body


# ------------------------------------------------------------------ API

def test_accounts_retrieve_returns_the_connected_account(sandbox, client):
    account_id = connect(sandbox, client, display_name="Acme Fitness", business_name="Acme LLC",
                         email="owner@acme.test")
    account = client.v1.accounts.retrieve(account_id)
    assert account.id == account_id and account.object == "account" and account.type == "standard"
    assert account.settings.dashboard.display_name == "Acme Fitness"
    assert account.business_profile.name == "Acme LLC" and account.email == "owner@acme.test"
    assert account.charges_enabled is True and isinstance(account.created, int)


def test_accounts_retrieve_of_a_revoked_account_raises_permission_error(sandbox, client):
    account_id = connect(sandbox, client)
    sandbox.revoke(account_id)
    with pytest.raises(stripe.PermissionError) as caught:
        client.v1.accounts.retrieve(account_id)
    assert caught.value.error.code == "account_invalid" and caught.value.http_status == 403
    assert sandbox.events[-1]["type"] == "account.application.deauthorized"


def test_stripe_account_header_for_an_unknown_account_raises_permission_error(client):
    with pytest.raises(stripe.PermissionError) as caught:
        client.v1.events.list({}, {"stripe_account": "acct_unknown"})
    assert caught.value.error.code == "account_invalid"


def test_wrong_api_key_raises_authentication_error_without_echoing_the_key(sandbox):
    with pytest.raises(stripe.AuthenticationError) as caught:
        make_client(sandbox, api_key="sk_test_wrongkey1234").v1.events.list()
    assert caught.value.http_status == 401
    assert "sk_test_****1234" in caught.value.user_message and "wrongkey" not in caught.value.http_body


def test_injected_500_raises_api_error_when_the_client_does_not_retry(sandbox, client):
    sandbox.fail_next("GET", "/v1/events")
    with pytest.raises(stripe.APIError) as caught:
        client.v1.events.list()
    assert caught.value.http_status == 500 and caught.value.user_message == "Sandbox failure"
    assert client.v1.events.list().data == []


def test_injected_429_is_stripes_rate_limit_error_with_retry_after(sandbox, client):
    sandbox.fail_next("GET", "/v1/events", status=429, retry_after=3)
    with pytest.raises(stripe.RateLimitError) as caught:
        client.v1.events.list()
    assert (caught.value.http_status, caught.value.error.code) == (429, "rate_limit")
    assert caught.value.headers["Retry-After"] == "3"
    # A rate limit is not one Stripe advises retrying unless asked to.
    assert caught.value.headers["Stripe-Should-Retry"] == "false"
    assert client.v1.events.list().data == []


def test_an_injected_429_names_its_rate_limit_only_when_asked_as_stripes_rate_limiter_does(sandbox, client):
    sandbox.fail_next("GET", "/v1/events", status=429, rate_limited_reason="endpoint-concurrency")
    sandbox.fail_next("GET", "/v1/customers", status=429, error={"code": "lock_timeout"})
    with pytest.raises(stripe.RateLimitError) as limited:
        client.v1.events.list()
    with pytest.raises(stripe.RateLimitError) as locked:
        client.v1.customers.list()
    assert limited.value.headers["Stripe-Rate-Limited-Reason"] == "endpoint-concurrency"
    # A 429 of another kind (a lock timeout) says no rate limit.
    assert "Stripe-Rate-Limited-Reason" not in locked.value.headers
    assert locked.value.error.code == "lock_timeout"


def test_each_request_is_recorded_with_when_it_arrived(sandbox, client):
    before = time.time()
    client.v1.events.list()
    client.v1.events.list()
    first, second = sandbox.requests_to("GET", "/v1/events")
    assert before <= first["received_at"] <= second["received_at"] <= time.time()


def test_a_delayed_request_outlasts_the_clients_timeout_and_is_still_recorded(sandbox):
    impatient = stripe.StripeClient(SECRET_KEY, base_addresses={"api": sandbox.url},
                                    http_client=stripe.RequestsClient(timeout=0.2), max_network_retries=0)
    sandbox.delay_next("GET", "/v1/events", 0.6)
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.events.list()
    assert len(sandbox.requests_to("GET", "/v1/events")) == 1
    # Only the next request waited.
    assert impatient.v1.events.list().data == []


def test_a_delayed_request_that_outlives_a_reset_is_not_carried_out(sandbox, client):
    account = sandbox.create_account()["id"]
    code = sandbox.issue_code(account)
    sandbox.delay_next("POST", "/oauth/token", 0.3)
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(
        sandbox.handle(Request("POST", "/oauth/token", {}, {"grant_type": "authorization_code", "code": code},
                               {"authorization": "Bearer " + SECRET_KEY}))))
    waiting.start()
    while not sandbox.requests_to("POST", "/oauth/token"):
        time.sleep(0.01)
    sandbox.reset()
    waiting.join()
    assert answers[0].status == 500
    assert sandbox.requests == []


def test_a_delayed_request_holds_up_no_other_request(sandbox, client):
    sandbox.delay_next("GET", "/v1/events", 5.0)
    waiting = threading.Thread(target=client.v1.events.list)
    waiting.start()
    while not sandbox.requests_to("GET", "/v1/events"):
        time.sleep(0.01)
    assert client.v1.customers.list().data == []
    # Answered while the delayed request is still held.
    assert sandbox.held_requests == 1
    waiting.join()
    assert sandbox.held_requests == 0


def test_injected_500_is_retried_with_the_same_idempotency_key(sandbox):
    account = sandbox.create_account()
    sandbox.fail_next("POST", "/oauth/token", status=503)
    token = make_client(sandbox, retries=2).oauth.token(
        {"grant_type": "authorization_code", "code": sandbox.issue_code(account["id"])})
    assert token.stripe_user_id == account["id"]
    attempts = sandbox.requests_to("POST", "/oauth/token")
    assert len(attempts) == 2
    assert attempts[0]["headers"]["idempotency-key"] == attempts[1]["headers"]["idempotency-key"]


def test_injected_oauth_failure_raises_the_oauth_error_asked_for(sandbox, client):
    sandbox.fail_next("POST", "/oauth/deauthorize", status=400, error={"error": "invalid_grant"})
    with pytest.raises(stripe.oauth_error.InvalidGrantError):
        client.oauth.deauthorize({"stripe_user_id": "acct_x"})


def test_repeated_idempotency_key_replays_the_first_answer(sandbox, client):
    code = sandbox.issue_code(sandbox.create_account()["id"])
    params = {"grant_type": "authorization_code", "code": code}
    first = client.oauth.token(params, {"idempotency_key": "idem-1"})
    again = client.oauth.token(params, {"idempotency_key": "idem-1"})
    assert again.access_token == first.access_token
    # On /oauth/* the refusal is an OAuth error, as every error there is.
    with pytest.raises(stripe.oauth_error.InvalidRequestError) as refused:
        client.oauth.token({"grant_type": "authorization_code", "code": "ac_other"}, {"idempotency_key": "idem-1"})
    assert refused.value.http_status == 400 and "idempotent" in refused.value.user_message


def test_events_list_is_newest_first_and_filtered_by_account_type_and_page(sandbox, client):
    first = connect(sandbox, client, display_name="One")
    second = connect(sandbox, client, display_name="Two")
    sandbox.update_account(first, display_name="One renamed")
    sandbox.revoke(first)
    listed = client.v1.events.list({"limit": 1}, {"stripe_account": second})
    assert [e.type for e in listed.data] == ["account.application.authorized"] and not listed.has_more
    everything = client.v1.events.list()
    assert [e.type for e in everything.data] == ["account.application.deauthorized", "account.updated",
                                                 "account.application.authorized",
                                                 "account.application.authorized"]
    page = client.v1.events.list({"limit": 2, "starting_after": everything.data[1].id})
    assert [e.id for e in page.data] == [e.id for e in everything.data[2:]] and not page.has_more
    updated = client.v1.events.list({"type": "account.updated"})
    assert updated.data[0].data.object.settings.dashboard.display_name == "One renamed"
    assert updated.data[0].data.previous_attributes.settings.dashboard.display_name == "One"
    assert client.v1.events.retrieve(updated.data[0].id).id == updated.data[0].id
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.events.retrieve("evt_missing")
    assert caught.value.code == "resource_missing" and caught.value.http_status == 404


def test_undelivered_events_are_listed_with_delivery_success_false(sandbox, client):
    connect(sandbox, client)
    assert len(client.v1.events.list({"delivery_success": False}).data) == 1
    assert client.v1.events.list({"delivery_success": True}).data == []


# --------------------------------------------------------- authorize pages

def test_authorize_url_renders_the_page_with_state_accounts_and_prefilled_email(sandbox, client):
    sandbox.create_account(id="acct_1234567890abcdef", display_name="Acme <Fitness>")
    url = client.oauth.authorize_url({"scope": "read_write", "state": "st-123", "redirect_uri": REDIRECT_URI,
                                      "stripe_user": {"email": "owner@acme.test"},
                                      "stripe_landing": "register", "always_prompt": "true"})
    with urllib.request.urlopen(url) as answer:
        page = answer.read().decode()
    assert answer.status == 200
    assert "Stripe sandbox \u2014 connect your account" in page
    assert 'name="state" value="st-123"' in page and CLIENT_ID in page
    assert "acct_1234567890abcdef" in page and "Acme &lt;Fitness&gt;" in page
    assert 'value="owner@acme.test"' in page
    assert page.index("Create a new test account") < page.index("Use an existing test account")


def test_authorize_page_for_another_client_id_is_a_400_error_page(sandbox):
    query = urlencode({"response_type": "code", "client_id": "ca_other", "redirect_uri": REDIRECT_URI})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(sandbox.url + "/oauth/authorize?" + query)
    assert caught.value.code == 400 and "text/html" in caught.value.headers["Content-Type"]


def test_approving_redirects_with_a_code_and_state_keeping_the_redirect_query(sandbox, client):
    account = sandbox.create_account()
    answer = post_form(sandbox.url + "/oauth/authorize", {
        "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI + "?tenant=a b", "state": "s-1_x",
        "decision": "approve", "account_id": account["id"]})
    assert answer.status == 302
    location = urlsplit(answer.headers["Location"])
    query = parse_qs(location.query)
    assert location.path == "/oauth/callback"
    assert query["tenant"] == ["a b"] and query["state"] == ["s-1_x"]
    token = client.oauth.token({"grant_type": "authorization_code", "code": query["code"][0]})
    assert token.stripe_user_id == account["id"]


def test_approving_with_a_new_account_creates_it(sandbox):
    answer = post_form(sandbox.url + "/oauth/authorize", {
        "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "state": "s", "decision": "approve",
        "account_id": "new", "new_display_name": "Brand New Gym", "new_email": "gym@example.test"})
    assert answer.status == 302 and "code=ac_" in answer.headers["Location"]
    [account] = sandbox.accounts
    assert account["settings"]["dashboard"]["display_name"] == "Brand New Gym"
    assert account["email"] == "gym@example.test"


def test_declining_redirects_with_access_denied(sandbox):
    answer = post_form(sandbox.url + "/oauth/authorize", {
        "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "state": "s-2", "decision": "decline"})
    assert answer.status == 302
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query == {"error": ["access_denied"], "error_description": ["The user denied your request"],
                     "state": ["s-2"]}
    assert "code" not in query


# ------------------------------------------------------------------ webhooks

def test_events_are_delivered_to_the_webhook_with_a_signature_stripe_verifies():
    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            received.append((body, self.headers["Stripe-Signature"], self.headers["Content-Type"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    secret = "whsec_test_secret"
    try:
        with StripeSandbox(webhook_url="http://127.0.0.1:%d/webhooks/stripe" % receiver.server_address[1],
                           webhook_secret=secret) as sb:
            client = make_client(sb)
            account_id = connect(sb, client)
            client.oauth.deauthorize({"stripe_user_id": account_id})
            assert sb.wait_for_webhooks(timeout=5)
            assert client.v1.events.list({"delivery_success": False}).data == []
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert [json.loads(body)["type"] for body, _, _ in received] == [
        "account.application.authorized", "account.application.deauthorized"]
    for body, header, content_type in received:
        assert stripe.WebhookSignature.verify_header(body, header, secret, tolerance=300)
        assert content_type == "application/json; charset=utf-8"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(received[0][0], received[0][1], "whsec_other", tolerance=300)


# ------------------------------------------------ customers and billing portal

def test_customers_are_listed_by_email_only_on_their_own_account(sandbox, client):
    mine = connect(sandbox, client)
    other = connect(sandbox, client)
    customer = sandbox.create_customer(mine, email="member@example.test", metadata={"user": "u1"})
    sandbox.create_customer(other, email="member@example.test")
    found = client.v1.customers.list({"email": "member@example.test"}, {"stripe_account": mine})
    assert [c.id for c in found.data] == [customer["id"]]
    assert client.v1.customers.retrieve(customer["id"], {}, {"stripe_account": mine}).metadata.user == "u1"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.retrieve(customer["id"], {}, {"stripe_account": other})


def test_portal_configuration_stores_booleans_and_updates_in_place(sandbox, client):
    account_id = connect(sandbox, client)
    opts = {"stripe_account": account_id}
    created = client.v1.billing_portal.configurations.create({
        "features": {"payment_method_update": {"enabled": True}, "invoice_history": {"enabled": True},
                     "subscription_cancel": {"enabled": True, "mode": "at_period_end",
                                             "cancellation_reason": {"enabled": True,
                                                                     "options": ["too_expensive", "other"]}}},
        "business_profile": {"privacy_policy_url": "https://a.test/p", "terms_of_service_url": "https://a.test/t"},
        "default_return_url": "https://app.test/"}, opts)
    assert created.id.startswith("bpc_") and created.object == "billing_portal.configuration"
    assert created.active is True and created.features.invoice_history.enabled is True
    assert created.features.subscription_cancel.cancellation_reason.options == ["too_expensive", "other"]
    updated = client.v1.billing_portal.configurations.update(created.id, {"active": False}, opts)
    assert updated.active is False and updated.features.payment_method_update.enabled is True
    assert client.v1.billing_portal.configurations.retrieve(created.id, {}, opts).active is False


def test_portal_session_needs_a_customer_on_that_account_and_serves_a_page(sandbox, client):
    account_id = connect(sandbox, client)
    opts = {"stripe_account": account_id}
    configuration = client.v1.billing_portal.configurations.create(
        {"features": {"invoice_history": {"enabled": True}}}, opts)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.billing_portal.sessions.create({"customer": "cus_missing", "configuration": configuration.id},
                                                 opts)
    assert caught.value.param == "customer" and caught.value.code == "resource_missing"
    customer = sandbox.create_customer(account_id, email="member@example.test")
    session = client.v1.billing_portal.sessions.create(
        {"customer": customer["id"], "configuration": configuration.id, "return_url": "https://app.test/x"}, opts)
    assert session.object == "billing_portal.session" and session.url == "%s/p/session/%s" % (sandbox.url, session.id)
    with urllib.request.urlopen(session.url) as answer:
        page = answer.read().decode()
    assert "member@example.test" in page and 'href="https://app.test/x"' in page


# ------------------------------------------------------------------ plumbing

def test_nested_form_encoding_becomes_dicts_and_lists():
    assert parse_form("a[b][c]=x&expand[0]=one&expand[]=two&flag=true&"
                      "features[subscription_cancel][cancellation_reason][options][0]=too_expensive") == {
        "a": {"b": {"c": "x"}}, "expand": ["one", "two"], "flag": "true",
        "features": {"subscription_cancel": {"cancellation_reason": {"options": ["too_expensive"]}}}}


def test_reset_forgets_accounts_events_and_requests(sandbox, client):
    connect(sandbox, client)
    sandbox.fail_next("GET", "/v1/events")
    sandbox.reset()
    assert sandbox.accounts == [] and sandbox.events == [] and sandbox.requests == []
    assert client.v1.events.list().data == []


def test_module_imports_no_stripe_chalice_or_boto3():
    script = ("import sys, local.stripe_sandbox; "
              "print(sorted(m for m in ('stripe', 'chalice', 'boto3') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "[]"


def test_request_log_on_stderr_never_shows_the_key(capfd):
    with StripeSandbox(log_requests=True) as sb:
        make_client(sb).v1.events.list()
        make_client(sb, api_key="sk_test_wrongkey1234").oauth.authorize_url({"state": "s"})
        with pytest.raises(stripe.AuthenticationError):
            make_client(sb, api_key="sk_test_wrongkey1234").v1.events.list()
    err = capfd.readouterr().err
    assert "GET /v1/events 200" in err
    assert "sk_test_sandbox" not in err and "wrongkey" not in err and "Bearer" not in err
