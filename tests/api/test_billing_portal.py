"""A member sees the Billing link and opens the billing portal as the Stripe
customer that is them on the site's connected account."""
import json
import time
from datetime import datetime, timezone

import pytest
import requests

from chalicelib import services
from chalicelib.auth import Caller
from chalicelib.connections import ConnectionStore
from chalicelib.identity import LINK, CustomerMembers, customer_member
from chalicelib.member_customers import (FROM_EMAIL_LOOKUP, FROM_LINK, FROM_SUBSCRIPTION, MemberCustomer,
                                         MemberCustomerStore)
from chalicelib.models import ConnectionModel, MemberCustomerModel, RateLimitModel
from chalicelib.portal import PortalService
from tests.api.test_connect_lifecycle import ADMIN, connect
from tests.api.test_portal_settings import ENABLED, put_settings
from tests.helpers import APP_BASE_URL, AWS_CALLS, bearer

EMAIL = "member@gym.test"
MEMBER = bearer(site="site_a", role="member", sub="member_1", email=EMAIL, email_verified=True)
JSON = {"Content-Type": "application/json"}
SESSIONS = "/v1/billing_portal/sessions"
NOW = datetime(2026, 11, 24, 16, 0, tzinfo=timezone.utc)


def portal_open(client, sandbox, account_id="acct_gym"):
    sandbox.create_account(id=account_id, display_name="Gym")
    connect(client, sandbox, account_id)
    assert put_settings(client, ENABLED).status_code == 200
    return account_id


def available(client, headers=MEMBER):
    response = client.get("/billing/portal", headers=headers)
    assert response.status_code == 200, response.body
    return response.json_body["available"]


def open_session(client, body=None, headers=MEMBER):
    raw = b"" if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
    return client.post("/billing/portal/sessions", headers={**headers, **JSON}, body=raw)


def assert_error(response, status, code):
    assert response.status_code == status, response.body
    assert response.json_body["error"]["code"] == code
    assert response.json_body["error"]["message"]


def last_session_request(sandbox):
    return sandbox.requests_to("POST", SESSIONS)[-1]


def remembered(user_id="member_1", site_id="site_a"):
    try:
        return MemberCustomerModel.get(site_id, user_id)
    except MemberCustomerModel.DoesNotExist:
        return None


# ------------------------------------------------------------ the link

def test_the_link_is_hidden_until_an_account_is_connected_and_the_portal_enabled(client, sandbox):
    assert available(client) is False
    sandbox.create_account(id="acct_gym")
    sandbox.create_customer("acct_gym", email=EMAIL)
    connect(client, sandbox, "acct_gym")
    assert available(client) is False
    put_settings(client, ENABLED)
    assert available(client) is True
    put_settings(client, dict(ENABLED, portal_enabled=False))
    assert available(client) is False


def test_the_link_is_hidden_from_a_member_with_no_customer_on_the_account(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email="someone.else@gym.test")
    assert available(client) is False
    assert remembered() is None


def test_the_link_shows_for_a_recorded_customer_without_asking_stripe(client, sandbox):
    account = portal_open(client, sandbox)
    MemberCustomerStore().record(MemberCustomer("site_a", "member_1", account, "cus_recorded",
                                                FROM_SUBSCRIPTION), NOW)
    calls = len(sandbox.requests)
    assert available(client, bearer(site="site_a", role="member", sub="member_1")) is True
    assert len(sandbox.requests) == calls


def test_the_link_shows_for_a_customer_found_by_verified_email_and_remembers_it(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_found")
    assert available(client) is True
    assert (remembered().customer_id, remembered().source) == ("cus_found", FROM_EMAIL_LOOKUP)
    calls = len(sandbox.requests)
    assert available(client) is True
    assert open_session(client).status_code == 200
    [request] = sandbox.requests[calls:]
    assert (request["path"], request["params"]["customer"]) == (SESSIONS, "cus_found")


@pytest.mark.parametrize("headers", [
    bearer(site="site_a", role="member", sub="member_1"),
    bearer(site="site_a", role="member", sub="member_1", email=EMAIL),
    bearer(site="site_a", role="member", sub="member_1", email=EMAIL, email_verified=False),
], ids=["no email", "email_verified missing", "email_verified false"])
def test_the_link_is_hidden_without_a_verified_email_or_a_record_and_stripe_is_not_asked(
        client, sandbox, headers):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, metadata={"customerhub_user_id": "member_1"})
    calls = len(sandbox.requests)
    assert available(client, headers) is False
    assert len(sandbox.requests) == calls
    assert remembered() is None


def test_the_link_is_hidden_when_several_customers_could_be_the_member(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    sandbox.create_customer(account, email=EMAIL)
    assert available(client) is False


def test_the_link_is_hidden_when_the_only_customer_with_the_email_is_recorded_for_another_member(
        client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_stranger")
    record_as_member(account, "cus_stranger", "member_2")
    assert available(client) is False
    assert remembered() is None


def test_stripe_failing_to_list_customers_for_the_link_is_502_and_nothing_is_remembered(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    sandbox.fail_next("GET", "/v1/customers", status=500, should_retry=False)
    assert_error(client.get("/billing/portal", headers=MEMBER), 502, "stripe_error")
    assert remembered() is None


def test_a_member_of_another_site_sees_nothing_of_this_sites_portal(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, metadata={"customerhub_user_id": "member_1"})
    stranger = bearer(site="site_b", role="member", sub="member_1", email=EMAIL, email_verified=True)
    assert available(client, stranger) is False
    calls = len(sandbox.requests)
    assert_error(open_session(client, headers=stranger), 409, "portal_disabled")
    assert len(sandbox.requests) == calls


def test_disconnecting_hides_the_link_and_refuses_sessions(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    assert open_session(client).status_code == 200
    client.delete("/connectors/stripe", headers=ADMIN)
    assert available(client) is False
    assert_error(open_session(client), 409, "portal_disabled")


def test_a_session_while_the_portal_is_off_is_409_portal_disabled(client, sandbox):
    assert_error(open_session(client), 409, "portal_disabled")
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    assert_error(open_session(client), 409, "portal_disabled")


# ------------------------------------------------- finding the customer

def test_the_customer_whose_metadata_names_the_member_is_used(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_unnamed")
    sandbox.create_customer(account, email=EMAIL, id="cus_named", metadata={"customerhub_user_id": "member_1"})
    response = open_session(client)
    assert response.status_code == 200, response.body
    assert response.json_body["url"].startswith(sandbox.url + "/p/session/")
    request = last_session_request(sandbox)
    assert request["stripe_account"] == account
    assert request["params"]["customer"] == "cus_named"
    assert request["params"]["configuration"] == ConnectionModel.get("site_a").portal_configuration_id
    assert request["params"]["return_url"] == APP_BASE_URL
    [listed] = sandbox.requests_to("GET", "/v1/customers")
    assert listed["query"] == {"email": EMAIL, "limit": "100"}
    assert listed["stripe_account"] == account


def test_the_only_customer_naming_nobody_is_used(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_only")
    sandbox.create_customer(account, email="someone.else@gym.test", id="cus_other")
    assert open_session(client).status_code == 200
    assert last_session_request(sandbox)["params"]["customer"] == "cus_only"


def test_two_customers_naming_nobody_are_ambiguous_and_404(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    sandbox.create_customer(account, email=EMAIL)
    assert_error(open_session(client), 404, "no_billing_account")
    assert sandbox.requests_to("POST", SESSIONS) == []
    assert remembered() is None


def test_two_customers_naming_the_member_are_ambiguous_and_404(client, sandbox):
    account = portal_open(client, sandbox)
    for _ in range(2):
        sandbox.create_customer(account, email=EMAIL, metadata={"customerhub_user_id": "member_1"})
    assert_error(open_session(client), 404, "no_billing_account")


def test_a_customer_naming_someone_else_is_never_used(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, metadata={"customerhub_user_id": "member_2"})
    assert_error(open_session(client), 404, "no_billing_account")
    assert sandbox.requests_to("POST", SESSIONS) == []


def test_a_customer_naming_someone_else_does_not_make_the_unnamed_one_ambiguous(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, metadata={"customerhub_user_id": "member_2"})
    sandbox.create_customer(account, email=EMAIL, id="cus_mine")
    assert open_session(client).status_code == 200
    assert last_session_request(sandbox)["params"]["customer"] == "cus_mine"


def record_as_member(account, customer_id, user_id):
    """The site's record that customer_id is user_id (from their
    subscription, a link or a claim)."""
    customer_member("site_a", account, customer_id, user_id, LINK, NOW).save()


def test_a_strangers_customer_with_the_members_email_recorded_for_another_member_is_not_opened(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_stranger")
    record_as_member(account, "cus_stranger", "member_2")
    assert_error(open_session(client), 404, "no_billing_account")
    assert sandbox.requests_to("POST", SESSIONS) == []
    assert remembered() is None


def test_a_customer_naming_the_member_but_recorded_for_another_member_is_not_opened(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_disputed", metadata={"customerhub_user_id": "member_1"})
    record_as_member(account, "cus_disputed", "member_2")
    assert_error(open_session(client), 404, "no_billing_account")
    assert sandbox.requests_to("POST", SESSIONS) == []


def test_a_customer_recorded_for_another_member_does_not_make_the_members_own_ambiguous(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_stranger")
    sandbox.create_customer(account, email=EMAIL, id="cus_mine")
    record_as_member(account, "cus_stranger", "member_2")
    assert open_session(client).status_code == 200
    assert last_session_request(sandbox)["params"]["customer"] == "cus_mine"
    assert remembered().customer_id == "cus_mine"


def test_a_record_for_another_member_on_another_site_or_account_does_not_count(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_mine")
    customer_member("site_b", account, "cus_mine", "member_2", LINK, NOW).save()
    record_as_member("acct_other", "cus_mine", "member_2")
    assert open_session(client).status_code == 200
    assert last_session_request(sandbox)["params"]["customer"] == "cus_mine"


class CountingCustomerMembers(CustomerMembers):
    def __init__(self):
        self.reads = []

    def recorded(self, keys):
        keys = list(keys)
        self.reads.append(keys)
        return super().recorded(keys)


def test_a_customer_found_by_email_and_since_recorded_for_another_member_is_forgotten(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_shared")
    assert open_session(client).status_code == 200
    record_as_member(account, "cus_shared", "member_2")
    assert available(client) is False
    assert remembered() is None
    assert_error(open_session(client), 404, "no_billing_account")
    assert [r["params"]["customer"] for r in sandbox.requests_to("POST", SESSIONS)] == ["cus_shared"]


def test_a_customer_recorded_from_a_subscription_is_kept_whatever_the_customer_members_say(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email="family@gym.test", id="cus_sub")
    MemberCustomerStore().record(MemberCustomer("site_a", "member_1", account, "cus_sub", FROM_SUBSCRIPTION), NOW)
    record_as_member(account, "cus_sub", "member_2")
    assert open_session(client).status_code == 200
    assert last_session_request(sandbox)["params"]["customer"] == "cus_sub"


def test_the_records_of_every_customer_with_the_email_are_read_in_one_batch(client, sandbox):
    account = portal_open(client, sandbox)
    for n in range(3):
        sandbox.create_customer(account, email=EMAIL, id="cus_%d" % n)
    sandbox.create_customer(account, email=EMAIL, id="cus_named_elsewhere", metadata={"customerhub_user_id": "x"})
    record_as_member(account, "cus_0", "member_2")
    record_as_member(account, "cus_1", "member_3")
    members = CountingCustomerMembers()
    portal = PortalService(ConnectionStore(), MemberCustomerStore(), services.get_stripe_gateway(), APP_BASE_URL,
                           members=members)
    caller = Caller(user_id="member_1", site_id="site_a", role="member", email=EMAIL, email_verified=True)
    assert portal.open_session(caller, None)["url"]
    assert last_session_request(sandbox)["params"]["customer"] == "cus_2"
    [keys] = members.reads
    assert sorted(keys) == [("site_a", account, "cus_%d" % n) for n in range(3)]


def test_a_member_with_no_customer_is_404_no_billing_account(client, sandbox):
    portal_open(client, sandbox)
    assert_error(open_session(client), 404, "no_billing_account")


def test_customers_of_the_platform_or_other_accounts_do_not_count(client, sandbox):
    portal_open(client, sandbox)
    sandbox.create_account(id="acct_other")
    sandbox.create_customer("acct_other", email=EMAIL)
    sandbox.create_customer(None, email=EMAIL)
    assert_error(open_session(client), 404, "no_billing_account")


def test_a_token_without_email_and_nothing_recorded_is_404_without_asking_stripe(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    calls = len(sandbox.requests)
    assert_error(open_session(client, headers=bearer(site="site_a", role="member", sub="member_1")),
                 404, "no_billing_account")
    assert len(sandbox.requests) == calls


@pytest.mark.parametrize("verified", [False, None], ids=["email_verified false", "no email_verified"])
def test_an_email_customerhub_has_not_verified_finds_no_customer_and_asks_stripe_nothing(
        client, sandbox, verified):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, metadata={"customerhub_user_id": "member_1"})
    unverified = bearer(site="site_a", role="member", sub="member_1", email=EMAIL, email_verified=verified)
    calls = len(sandbox.requests)
    assert_error(open_session(client, headers=unverified), 404, "no_billing_account")
    assert len(sandbox.requests) == calls
    assert remembered() is None


def test_a_recorded_customer_opens_the_portal_whatever_the_email_says(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_recorded")
    MemberCustomerStore().record(MemberCustomer("site_a", "member_1", account, "cus_recorded",
                                                FROM_SUBSCRIPTION), NOW)
    unverified = bearer(site="site_a", role="member", sub="member_1", email="typed@anything.test")
    assert open_session(client, headers=unverified).status_code == 200
    assert last_session_request(sandbox)["params"]["customer"] == "cus_recorded"


# ------------------------------------------------------- remembering it

def test_the_second_session_costs_exactly_one_stripe_request(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_member")
    assert open_session(client).status_code == 200
    record = remembered()
    assert (record.account_id, record.customer_id, record.source) == (account, "cus_member", FROM_EMAIL_LOOKUP)
    calls = len(sandbox.requests)
    assert open_session(client).status_code == 200
    [request] = sandbox.requests[calls:]
    assert (request["method"], request["path"]) == ("POST", SESSIONS)
    assert request["params"]["customer"] == "cus_member"


def test_a_customer_recorded_from_subscriptions_is_used_without_a_lookup(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_by_email")
    sandbox.create_customer(account, email="billing@family.test", id="cus_subscribed")
    MemberCustomerStore().record(MemberCustomer("site_a", "member_1", account, "cus_subscribed",
                                                FROM_SUBSCRIPTION), NOW)
    assert open_session(client).status_code == 200
    assert last_session_request(sandbox)["params"]["customer"] == "cus_subscribed"
    assert sandbox.requests_to("GET", "/v1/customers") == []


def test_a_customer_remembered_on_another_account_does_not_count(client, sandbox):
    portal_open(client, sandbox, "acct_old")
    sandbox.create_customer("acct_old", email=EMAIL, id="cus_old")
    assert open_session(client).status_code == 200
    portal_open(client, sandbox, "acct_new")
    sandbox.create_customer("acct_new", email=EMAIL, id="cus_new")
    assert open_session(client).status_code == 200
    request = last_session_request(sandbox)
    assert (request["stripe_account"], request["params"]["customer"]) == ("acct_new", "cus_new")
    assert (remembered().account_id, remembered().customer_id) == ("acct_new", "cus_new")


def test_a_remembered_customer_gone_at_stripe_is_forgotten_and_looked_up_again(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_current")
    MemberCustomerStore().record(MemberCustomer("site_a", "member_1", account, "cus_deleted",
                                                FROM_SUBSCRIPTION), NOW)
    response = open_session(client)
    assert response.status_code == 200, response.body
    tried = [r["params"]["customer"] for r in sandbox.requests_to("POST", SESSIONS)]
    assert tried == ["cus_deleted", "cus_current"]
    assert (remembered().customer_id, remembered().source) == ("cus_current", FROM_EMAIL_LOOKUP)


def test_a_remembered_customer_gone_with_nobody_to_replace_it_is_404_and_forgotten(client, sandbox):
    account = portal_open(client, sandbox)
    MemberCustomerStore().record(MemberCustomer("site_a", "member_1", account, "cus_deleted",
                                                FROM_EMAIL_LOOKUP), NOW)
    assert_error(open_session(client), 404, "no_billing_account")
    assert remembered() is None


def test_an_email_lookup_never_replaces_a_subscriptions_record(aws):
    store = MemberCustomerStore()
    store.record(MemberCustomer("site_a", "member_1", "acct_gym", "cus_sub", FROM_SUBSCRIPTION), NOW)
    assert store.record(MemberCustomer("site_a", "member_1", "acct_gym", "cus_mail", FROM_EMAIL_LOOKUP),
                        NOW) is False
    assert store.find("site_a", "member_1", "acct_gym").customer_id == "cus_sub"
    assert store.find("site_a", "member_1", "acct_other") is None
    assert store.record(MemberCustomer("site_a", "member_1", "acct_other", "cus_x", FROM_EMAIL_LOOKUP), NOW)
    store.record(MemberCustomer("site_a", "member_1", "acct_other", "cus_y", FROM_SUBSCRIPTION), NOW)
    assert store.find("site_a", "member_1", "acct_other").customer_id == "cus_y"


@pytest.mark.parametrize("source", [FROM_EMAIL_LOOKUP, FROM_LINK])
def test_an_email_lookup_never_replaces_an_earlier_record_of_any_source_on_the_same_account(aws, source):
    store = MemberCustomerStore()
    store.record(MemberCustomer("site_a", "member_1", "acct_gym", "cus_first", source), NOW)
    assert store.record(MemberCustomer("site_a", "member_1", "acct_gym", "cus_later", FROM_EMAIL_LOOKUP),
                        NOW) is False
    kept = store.find("site_a", "member_1", "acct_gym")
    assert (kept.customer_id, kept.source) == ("cus_first", source)


# --------------------------------------------------------- return URLs

@pytest.mark.parametrize("return_url", [
    "https://evil.test/account",
    "https://app.customerhub.test.evil.test/",
    "https://app.customerhub.test@evil.test/",
    "https://evil.test\\@app.customerhub.test/",
    "http://app.customerhub.test/account",
    "https://app.customerhub.test:8443/account",
    "//evil.test/account",
    "/account",
    "javascript:alert(document.domain)",
    "https://app.customerhub.test/\naccount",
    "",
    42,
    {"url": APP_BASE_URL},
])
def test_a_return_url_off_the_allowed_origins_is_400_invalid_return_url(client, sandbox, return_url):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    calls = len(sandbox.requests)
    assert_error(open_session(client, {"return_url": return_url}), 400, "invalid_return_url")
    assert len(sandbox.requests) == calls


def test_a_bad_return_url_is_400_even_when_the_portal_is_off(client):
    assert_error(open_session(client, {"return_url": "https://evil.test/"}), 400, "invalid_return_url")


def test_a_return_url_on_the_apps_origin_goes_to_stripe(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    url = "https://APP.customerhub.test:443/account/billing?tab=plans"
    assert open_session(client, {"return_url": url}).status_code == 200
    assert last_session_request(sandbox)["params"]["return_url"] == url


@pytest.fixture
def extra_origins(monkeypatch):
    # Set before the client reads the settings: the test client puts the
    # stage's own variables in the environment once it starts.
    monkeypatch.setenv("RETURN_URL_ORIGINS", "https://members.gym.test, https://other.gym.test:8443")


def test_a_return_url_on_an_allowed_extra_origin_goes_to_stripe(extra_origins, client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    for url in ("https://members.gym.test/back", "https://other.gym.test:8443/"):
        assert open_session(client, {"return_url": url}).status_code == 200
        assert last_session_request(sandbox)["params"]["return_url"] == url
    assert_error(open_session(client, {"return_url": "https://other.gym.test/"}), 400, "invalid_return_url")


def test_a_null_return_url_means_the_app(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    assert open_session(client, {"return_url": None}).status_code == 200
    assert last_session_request(sandbox)["params"]["return_url"] == APP_BASE_URL


@pytest.mark.parametrize("body,words", [
    ({"return_url": APP_BASE_URL, "customer": "cus_someone"}, "Unknown field: customer"),
    ([APP_BASE_URL], "object"),
    ("{not json", "JSON"),
])
def test_a_malformed_session_request_is_400_invalid_request(client, sandbox, body, words):
    portal_open(client, sandbox)
    response = open_session(client, body)
    assert_error(response, 400, "invalid_request")
    assert words in response.json_body["error"]["message"]


# --------------------------------------------------------- Stripe failing

def test_stripe_failing_to_make_the_session_is_502(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    sandbox.fail_next("POST", SESSIONS, status=500, should_retry=False)
    assert_error(open_session(client), 502, "stripe_error")


def test_stripe_failing_to_list_customers_is_502_and_nothing_is_remembered(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    sandbox.fail_next("GET", "/v1/customers", status=500, should_retry=False)
    assert_error(open_session(client), 502, "stripe_error")
    assert remembered() is None


# ---------------------------------------------------- opening the portal

def test_the_session_url_opens_the_portal_for_the_member(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    page = requests.get(open_session(client).json_body["url"])
    assert page.status_code == 200
    assert "text/html" in page.headers["Content-Type"]
    assert EMAIL in page.text


def test_an_admin_opens_the_portal_as_their_own_customer_too(client, sandbox):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email="admin@gym.test", metadata={"customerhub_user_id": "admin_1"})
    admin = bearer(site="site_a", role="admin", sub="admin_1", email="admin@gym.test", email_verified=True)
    assert available(client, admin) is True
    assert open_session(client, headers=admin).status_code == 200


# ------------------------------------------------------------ the limit

@pytest.fixture
def fresh_minute():
    """Sessions are counted per minute of the clock: a test that opens
    eleven starts where the minute has room for them all."""
    left = 60 - time.time() % 60
    if left < 10:
        time.sleep(left + 0.05)


def use_up_sessions(client, headers=MEMBER, sessions=10):
    for _ in range(sessions):
        assert open_session(client, headers=headers).status_code == 200


def assert_rate_limited(response):
    assert_error(response, 429, "rate_limited")
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60
    assert response.json_body["error"]["message"].endswith(
        "try again in %s second%s" % (retry_after, "" if retry_after == "1" else "s"))


def test_past_ten_sessions_in_a_minute_a_member_is_429_and_stripe_is_not_asked(client, sandbox, fresh_minute):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    use_up_sessions(client)
    calls = len(sandbox.requests)
    assert_rate_limited(open_session(client))
    assert_rate_limited(open_session(client))
    assert len(sandbox.requests) == calls


def test_the_limit_is_each_members_own(client, sandbox, fresh_minute):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    sandbox.create_customer(account, email="other@gym.test")
    use_up_sessions(client)
    assert_rate_limited(open_session(client))
    other = bearer(site="site_a", role="member", sub="member_2", email="other@gym.test", email_verified=True)
    assert open_session(client, headers=other).status_code == 200
    # The same user id on another site is another member.
    elsewhere = bearer(site="site_b", role="member", sub="member_1", email=EMAIL, email_verified=True)
    assert_error(open_session(client, headers=elsewhere), 409, "portal_disabled")


def test_requests_that_fail_validation_do_not_count(client, sandbox, fresh_minute):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL)
    for _ in range(5):
        assert_error(open_session(client, {"return_url": "https://evil.test/"}), 400, "invalid_return_url")
        assert_error(open_session(client, {"customer": "cus_x"}), 400, "invalid_request")
    use_up_sessions(client)
    assert_rate_limited(open_session(client))
    # A refused request is checked as any other first: a bad one is still told so.
    assert_error(open_session(client, {"return_url": "https://evil.test/"}), 400, "invalid_return_url")


def test_sessions_the_portal_turns_away_count(client, sandbox, fresh_minute):
    for _ in range(10):
        assert_error(open_session(client), 409, "portal_disabled")
    assert_rate_limited(open_session(client))


def test_a_session_costs_one_write_to_the_limits_and_a_refused_one_nothing_else(client, sandbox, fresh_minute):
    account = portal_open(client, sandbox)
    sandbox.create_customer(account, email=EMAIL, id="cus_recorded")
    MemberCustomerStore().record(MemberCustomer("site_a", "member_1", account, "cus_recorded",
                                                FROM_SUBSCRIPTION), NOW)
    # No email: the member routes' claim asks nothing.
    recorded = bearer(site="site_a", role="member", sub="member_1")
    limits = RateLimitModel.Meta.table_name
    for _ in range(10):
        with AWS_CALLS.counting() as calls:
            assert open_session(client, headers=recorded).status_code == 200
        # The member's counter, and at times a lease of Stripe slots
        # (stripe_ceiling.py) in the same table.
        assert 1 <= calls.on(limits) <= 2
    with AWS_CALLS.counting() as calls:
        assert_rate_limited(open_session(client, headers=recorded))
    assert dict(calls.calls) == {("dynamodb", "UpdateItem"): 1}
    assert calls.on(limits) == 1


# ------------------------------------------------------- who may call it

@pytest.mark.parametrize("method,path", [("GET", "/billing/portal"), ("POST", "/billing/portal/sessions")])
def test_member_routes_without_a_token_are_401(client, method, path):
    assert_error(client.request(method, path, headers={}, body=b""), 401, "unauthorized")


@pytest.mark.parametrize("role", ["nobody", "guest"])
def test_member_routes_with_an_unknown_role_are_401(client, role):
    assert_error(client.get("/billing/portal", headers=bearer(role=role)), 401, "unauthorized")


@pytest.mark.parametrize("path,method", [("/billing/portal", "GET"), ("/billing/portal/sessions", "POST")])
def test_member_routes_answer_the_preflight_for_the_app_origin(client, path, method):
    response = client.request("OPTIONS", path, headers={
        "Origin": APP_BASE_URL, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type"}, body=b"")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP_BASE_URL
    assert method in response.headers["Access-Control-Allow-Methods"]
    assert set(response.headers["Access-Control-Allow-Headers"].split(",")) == {"Authorization", "Content-Type"}


def test_member_answers_carry_cors_for_the_app_origin(client):
    response = client.get("/billing/portal", headers={**MEMBER, "Origin": "https://evil.test"})
    assert response.headers["Access-Control-Allow-Origin"] == APP_BASE_URL
