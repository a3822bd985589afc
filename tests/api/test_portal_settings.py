"""An admin saves the billing portal settings; the site's portal configuration
at Stripe follows them."""
import json
from datetime import timedelta

import pytest

from app import to_response
from chalicelib import services
from chalicelib.connections import ConnectionStore, grace_of
from chalicelib.errors import ConnectionChanged
from chalicelib.member_customers import MemberCustomerStore
from chalicelib.models import ConnectionModel
from chalicelib.portal import CANCELLATION_REASONS, PortalService, PortalSettings
from tests.api.test_connect_lifecycle import ADMIN, card, connect
from tests.helpers import APP_BASE_URL, bearer

PRIVACY = "https://gym.test/privacy"
TERMS = "https://gym.test/terms"
ENABLED = {"portal_enabled": True, "privacy_policy_url": PRIVACY,
           "terms_of_service_url": TERMS, "allow_cancel": False}
DISABLED = dict(ENABLED, portal_enabled=False)
JSON = {"Content-Type": "application/json"}
DEFAULT_GRACE_DAYS = 14


def shown(body, grace_days=DEFAULT_GRACE_DAYS):
    """The card's settings after saving body."""
    return dict(body, past_due_grace_days=body.get("past_due_grace_days", grace_days))


def put_settings(client, body, headers=ADMIN):
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.put("/connectors/stripe/settings", headers={**headers, **JSON}, body=raw)


def assert_error(response, status, code):
    assert response.status_code == status, response.body
    assert response.json_body["error"]["code"] == code
    assert response.json_body["error"]["message"]


def connected(client, sandbox, account_id="acct_gym"):
    sandbox.create_account(id=account_id, display_name="Gym")
    connect(client, sandbox, account_id)
    return account_id


def stored():
    return ConnectionModel.get("site_a")


# ------------------------------------------------------------ bad requests

@pytest.mark.parametrize("body", [
    dict(ENABLED, privacy_policy_url=None),
    dict(ENABLED, terms_of_service_url=None),
    dict(ENABLED, privacy_policy_url=None, terms_of_service_url=None),
])
def test_enabling_without_both_urls_is_400_invalid_settings_and_stores_nothing(client, sandbox, body):
    connected(client, sandbox)
    before, calls = stored().serialize(), len(sandbox.requests)
    assert_error(put_settings(client, body), 400, "invalid_settings")
    assert stored().serialize() == before
    assert len(sandbox.requests) == calls


@pytest.mark.parametrize("url", [
    "http://gym.test/privacy",
    "javascript:alert(1)",
    "/privacy",
    "gym.test/privacy",
    "//gym.test/privacy",
    "https:///privacy",
    "https://",
    "",
    "https://gym.test/" + "p" * 2033,
    "https://owner:secret@gym.test/privacy",
    "https://gym.test/pri vacy",
    "https://gym.test\\@evil.test/",
    "https://gym.test:port/privacy",
    "ftp://gym.test/privacy",
])
@pytest.mark.parametrize("field", ["privacy_policy_url", "terms_of_service_url"])
def test_a_url_that_is_not_absolute_https_is_400_invalid_settings_and_stores_nothing(
        client, sandbox, field, url):
    connected(client, sandbox)
    before, calls = stored().serialize(), len(sandbox.requests)
    response = put_settings(client, dict(ENABLED, **{field: url}))
    assert_error(response, 400, "invalid_settings")
    assert field in response.json_body["error"]["message"]
    assert stored().serialize() == before
    assert len(sandbox.requests) == calls


def test_a_url_of_exactly_2048_characters_is_accepted(client, sandbox):
    connected(client, sandbox)
    url = "https://gym.test/" + "p" * (2048 - len("https://gym.test/"))
    response = put_settings(client, dict(ENABLED, privacy_policy_url=url))
    assert response.status_code == 200, response.body
    assert response.json_body["settings"]["privacy_policy_url"] == url


def test_a_bad_url_is_refused_when_disabling_too(client, sandbox):
    connected(client, sandbox)
    assert_error(put_settings(client, dict(DISABLED, terms_of_service_url="http://gym.test/terms")),
                 400, "invalid_settings")


@pytest.mark.parametrize("body,words", [
    (dict(ENABLED, portal_enabled="true"), "portal_enabled"),
    (dict(ENABLED, portal_enabled=1), "portal_enabled"),
    (dict(ENABLED, portal_enabled=None), "portal_enabled"),
    (dict(ENABLED, allow_cancel="yes"), "allow_cancel"),
    (dict(ENABLED, allow_cancel=0), "allow_cancel"),
    (dict(ENABLED, privacy_policy_url=42), "privacy_policy_url"),
    (dict(ENABLED, terms_of_service_url=["https://gym.test/terms"]), "terms_of_service_url"),
    ({k: v for k, v in ENABLED.items() if k != "allow_cancel"}, "Missing field: allow_cancel"),
    ({"portal_enabled": False}, "Missing field"),
    ({}, "Missing field"),
    (dict(ENABLED, site="site_b"), "Unknown field: site"),
    (dict(ENABLED, default_return_url="https://evil.test"), "Unknown field"),
    ([ENABLED], "object"),
    ("{not json", "JSON"),
    ("", "body is required"),
])
def test_a_malformed_body_is_400_invalid_request_and_stores_nothing(client, sandbox, body, words):
    connected(client, sandbox)
    before, calls = stored().serialize(), len(sandbox.requests)
    response = put_settings(client, body)
    assert_error(response, 400, "invalid_request")
    assert words in response.json_body["error"]["message"]
    assert stored().serialize() == before
    assert len(sandbox.requests) == calls


def test_bad_settings_are_400_even_when_no_account_is_connected(client):
    assert_error(put_settings(client, dict(ENABLED, privacy_policy_url="http://gym.test/p")),
                 400, "invalid_settings")


# ---------------------------------------------------------- not connected

def test_enabling_the_portal_with_no_account_connected_is_409_not_connected_and_stores_nothing(client, sandbox):
    assert_error(put_settings(client, ENABLED), 409, "not_connected")
    assert card(client)["settings"]["portal_enabled"] is False
    assert ConnectionModel.count() == 0
    assert sandbox.requests == []


def test_enabling_the_portal_after_a_disconnect_is_409_and_keeps_the_stored_urls(client, sandbox):
    connected(client, sandbox)
    assert put_settings(client, ENABLED).status_code == 200
    client.delete("/connectors/stripe", headers=ADMIN)
    assert_error(put_settings(client, dict(ENABLED, privacy_policy_url="https://gym.test/new")),
                 409, "not_connected")
    assert card(client)["settings"] == shown(dict(ENABLED, portal_enabled=False))


def test_settings_with_the_portal_off_are_saved_on_a_site_never_connected_without_asking_stripe(client, sandbox):
    body = dict(DISABLED, allow_cancel=True, past_due_grace_days=30)
    response = put_settings(client, body)
    assert response.status_code == 200, response.body
    assert response.json_body["status"] == "disconnected"
    assert response.json_body["account"] is None
    assert response.json_body["disconnected_reason"] is None
    assert response.json_body["settings"] == body
    assert card(client) == response.json_body
    assert sandbox.requests == []


def test_settings_saved_while_disconnected_are_kept_for_the_next_connection(client, sandbox):
    connected(client, sandbox)
    assert put_settings(client, ENABLED).status_code == 200
    client.delete("/connectors/stripe", headers=ADMIN)
    calls = len(sandbox.requests)
    body = dict(DISABLED, privacy_policy_url="https://gym.test/new", allow_cancel=True, past_due_grace_days=7)
    response = put_settings(client, body)
    assert response.status_code == 200, response.body
    assert response.json_body["status"] == "disconnected"
    assert response.json_body["disconnected_reason"] == "disconnected_by_admin"
    assert response.json_body["settings"] == body
    assert len(sandbox.requests) == calls

    connect(client, sandbox, "acct_gym")
    assert card(client)["settings"] == body
    assert put_settings(client, dict(body, portal_enabled=True)).status_code == 200
    [configuration] = [c for c in sandbox.portal_configurations("acct_gym")
                       if c["id"] == stored().portal_configuration_id]
    assert configuration["business_profile"]["privacy_policy_url"] == "https://gym.test/new"
    assert configuration["features"]["subscription_cancel"]["enabled"] is True


# --------------------------------------------------- past due grace days

def test_the_grace_is_14_days_until_an_admin_changes_it(client, sandbox):
    assert card(client)["settings"]["past_due_grace_days"] == 14
    connected(client, sandbox)
    assert card(client)["settings"]["past_due_grace_days"] == 14
    assert stored().past_due_grace_days == 14


@pytest.mark.parametrize("days", [0, 1, 30, 60])
def test_grace_days_from_0_to_60_are_saved_and_shown_on_the_card(client, sandbox, days):
    connected(client, sandbox)
    response = put_settings(client, dict(ENABLED, past_due_grace_days=days))
    assert response.status_code == 200, response.body
    assert response.json_body["settings"] == dict(ENABLED, past_due_grace_days=days)
    assert card(client)["settings"]["past_due_grace_days"] == days
    assert stored().past_due_grace_days == days
    assert type(stored().past_due_grace_days) is int
    assert grace_of(stored()) == timedelta(days=days)


def test_grace_days_left_out_are_kept_as_they_were(client, sandbox):
    connected(client, sandbox)
    put_settings(client, dict(DISABLED, past_due_grace_days=21))
    response = put_settings(client, ENABLED)
    assert response.status_code == 200, response.body
    assert response.json_body["settings"]["past_due_grace_days"] == 21
    assert stored().past_due_grace_days == 21


def test_grace_days_have_no_stripe_side(client, sandbox):
    account = connected(client, sandbox)
    put_settings(client, ENABLED)
    [configuration] = sandbox.portal_configurations(account)
    path = "/v1/billing_portal/configurations/" + configuration["id"]
    put_settings(client, ENABLED)
    put_settings(client, dict(ENABLED, past_due_grace_days=3))
    without, with_grace = [request["params"] for request in sandbox.requests_to("POST", path)]
    assert with_grace == without
    # The same configuration, updated again with the same settings (its
    # `updated` moves when the second does).
    [after] = sandbox.portal_configurations(account)
    assert dict(after, updated=None) == dict(configuration, updated=None)


def test_a_connection_stored_before_grace_days_existed_reads_14(client, sandbox):
    connected(client, sandbox)
    stored().update(actions=[ConnectionModel.past_due_grace_days.remove()])
    raw = ConnectionModel._get_connection().get_item("site_a", consistent_read=True)["Item"]
    assert "past_due_grace_days" not in raw
    assert stored().past_due_grace_days == 14
    assert grace_of(stored()) == timedelta(days=14)
    assert card(client)["settings"]["past_due_grace_days"] == 14


def test_grace_days_stay_on_the_card_after_a_disconnect(client, sandbox):
    connected(client, sandbox)
    put_settings(client, dict(DISABLED, past_due_grace_days=45))
    client.delete("/connectors/stripe", headers=ADMIN)
    assert card(client)["settings"]["past_due_grace_days"] == 45


@pytest.mark.parametrize("days", [-1, 61, 365, 10 ** 30])
def test_grace_days_out_of_0_to_60_are_400_invalid_settings_and_store_nothing(client, sandbox, days):
    connected(client, sandbox)
    before, calls = stored().serialize(), len(sandbox.requests)
    response = put_settings(client, dict(ENABLED, past_due_grace_days=days))
    assert_error(response, 400, "invalid_settings")
    assert "past_due_grace_days" in response.json_body["error"]["message"]
    assert stored().serialize() == before
    assert len(sandbox.requests) == calls


@pytest.mark.parametrize("body", [ENABLED, DISABLED])
def test_grace_days_out_of_range_are_400_even_when_no_account_is_connected(client, sandbox, body):
    assert_error(put_settings(client, dict(body, past_due_grace_days=61)), 400, "invalid_settings")
    assert ConnectionModel.count() == 0
    assert sandbox.requests == []


@pytest.mark.parametrize("raw", ["true", "false", "14.0", "14.5", "1e1", '"14"', "null", "[14]", '{"days": 14}'])
def test_grace_days_that_are_not_a_whole_number_are_400_invalid_request_and_store_nothing(client, sandbox, raw):
    connected(client, sandbox)
    before, calls = stored().serialize(), len(sandbox.requests)
    body = json.dumps(ENABLED)[:-1] + ', "past_due_grace_days": %s}' % raw
    response = put_settings(client, body)
    assert_error(response, 400, "invalid_request")
    assert "past_due_grace_days" in response.json_body["error"]["message"]
    assert stored().serialize() == before
    assert len(sandbox.requests) == calls


def test_a_type_error_in_the_grace_days_wins_over_a_bad_url(client, sandbox):
    connected(client, sandbox)
    response = put_settings(client, dict(ENABLED, privacy_policy_url="http://gym.test/p", past_due_grace_days="7"))
    assert_error(response, 400, "invalid_request")


def test_grace_of_is_the_connections_grace_as_a_duration():
    assert grace_of(ConnectionModel("site_x")) == timedelta(days=14)
    assert grace_of(ConnectionModel("site_x", past_due_grace_days=0)) == timedelta(0)
    assert grace_of(ConnectionModel("site_x", past_due_grace_days=60)) == timedelta(days=60)


# ------------------------------------------------------------- enabling

def test_enabling_creates_the_sites_configuration_on_the_connected_account(client, sandbox):
    account = connected(client, sandbox)
    response = put_settings(client, ENABLED)
    assert response.status_code == 200, response.body
    assert response.json_body["status"] == "connected"
    assert response.json_body["settings"] == shown(ENABLED)
    assert card(client) == response.json_body

    [configuration] = sandbox.portal_configurations(account)
    assert sandbox.portal_configurations(None) == []
    assert configuration["active"] is True
    assert configuration["default_return_url"] == APP_BASE_URL
    assert configuration["business_profile"]["privacy_policy_url"] == PRIVACY
    assert configuration["business_profile"]["terms_of_service_url"] == TERMS
    features = configuration["features"]
    assert features["payment_method_update"]["enabled"] is True
    assert features["invoice_history"]["enabled"] is True
    assert features["customer_update"]["enabled"] is False
    assert features["subscription_cancel"]["enabled"] is False
    assert features["subscription_cancel"]["mode"] == "at_period_end"
    assert features["subscription_cancel"]["cancellation_reason"]["enabled"] is True
    assert set(features["subscription_cancel"]["cancellation_reason"]["options"]) == set(CANCELLATION_REASONS)
    assert stored().portal_configuration_id == configuration["id"]
    [request] = sandbox.requests_to("POST", "/v1/billing_portal/configurations")
    assert request["stripe_account"] == account


def test_allow_cancel_turns_on_cancellation_at_period_end_with_reasons(client, sandbox):
    account = connected(client, sandbox)
    response = put_settings(client, dict(ENABLED, allow_cancel=True))
    assert response.json_body["settings"]["allow_cancel"] is True
    cancel = sandbox.portal_configurations(account)[0]["features"]["subscription_cancel"]
    assert cancel["enabled"] is True
    assert cancel["mode"] == "at_period_end"
    assert cancel["cancellation_reason"]["enabled"] is True
    assert "too_expensive" in cancel["cancellation_reason"]["options"]


def test_a_second_enable_updates_the_same_configuration_instead_of_making_another(client, sandbox):
    account = connected(client, sandbox)
    put_settings(client, ENABLED)
    first = stored().portal_configuration_id
    response = put_settings(client, dict(ENABLED, allow_cancel=True, terms_of_service_url="https://gym.test/t2"))
    assert response.status_code == 200
    [configuration] = sandbox.portal_configurations(account)
    assert configuration["id"] == first == stored().portal_configuration_id
    assert configuration["features"]["subscription_cancel"]["enabled"] is True
    assert configuration["business_profile"]["terms_of_service_url"] == "https://gym.test/t2"
    assert len(sandbox.requests_to("POST", "/v1/billing_portal/configurations/" + first)) == 1


def test_enabling_when_the_stored_configuration_is_gone_at_stripe_creates_a_new_one(client, sandbox):
    account = connected(client, sandbox)
    stored().update(actions=[ConnectionModel.portal_configuration_id.set("bpc_deleted_at_stripe")])
    response = put_settings(client, ENABLED)
    assert response.status_code == 200, response.body
    [configuration] = sandbox.portal_configurations(account)
    assert configuration["active"] is True
    assert stored().portal_configuration_id == configuration["id"]


# ------------------------------------------------------------- disabling

def test_disabling_turns_the_configuration_off_and_keeps_the_urls(client, sandbox):
    account = connected(client, sandbox)
    put_settings(client, dict(ENABLED, allow_cancel=True))
    configuration_id = stored().portal_configuration_id
    response = put_settings(client, dict(DISABLED, allow_cancel=True))
    assert response.status_code == 200
    assert response.json_body["settings"] == shown(dict(DISABLED, allow_cancel=True))
    [configuration] = sandbox.portal_configurations(account)
    assert configuration["active"] is False
    assert stored().portal_configuration_id == configuration_id


def test_enabling_again_reactivates_the_same_configuration(client, sandbox):
    account = connected(client, sandbox)
    put_settings(client, ENABLED)
    put_settings(client, DISABLED)
    put_settings(client, ENABLED)
    [configuration] = sandbox.portal_configurations(account)
    assert configuration["active"] is True


def test_disabling_with_no_configuration_stores_the_urls_and_calls_no_stripe(client, sandbox):
    connected(client, sandbox)
    calls = len(sandbox.requests)
    body = {"portal_enabled": False, "privacy_policy_url": PRIVACY, "terms_of_service_url": None,
            "allow_cancel": True}
    response = put_settings(client, body)
    assert response.status_code == 200
    assert response.json_body["settings"] == shown(body)
    assert len(sandbox.requests) == calls


def test_disabling_when_the_configuration_is_gone_at_stripe_still_saves(client, sandbox):
    connected(client, sandbox)
    stored().update(actions=[ConnectionModel.portal_enabled.set(True),
                             ConnectionModel.portal_configuration_id.set("bpc_deleted_at_stripe")])
    response = put_settings(client, DISABLED)
    assert response.status_code == 200
    assert response.json_body["settings"]["portal_enabled"] is False
    assert stored().portal_configuration_id is None


def test_disconnecting_turns_the_portal_off_on_the_card(client, sandbox):
    connected(client, sandbox)
    put_settings(client, ENABLED)
    response = client.delete("/connectors/stripe", headers=ADMIN)
    assert response.json_body["settings"] == shown(dict(ENABLED, portal_enabled=False))
    assert card(client)["settings"]["portal_enabled"] is False


# --------------------------------------------------------- Stripe failing

def test_stripe_failing_to_create_is_502_and_the_stored_settings_stay(client, sandbox):
    account = connected(client, sandbox)
    put_settings(client, DISABLED)
    before = stored().serialize()
    sandbox.fail_next("POST", "/v1/billing_portal/configurations", status=500, should_retry=False)
    response = put_settings(client, ENABLED)
    assert_error(response, 502, "stripe_error")
    assert "Sandbox" not in response.json_body["error"]["message"]
    assert stored().serialize() == before
    assert sandbox.portal_configurations(account) == []


@pytest.mark.parametrize("change", [dict(ENABLED, allow_cancel=True), DISABLED])
def test_stripe_failing_to_update_is_502_and_the_stored_settings_stay(client, sandbox, change):
    account = connected(client, sandbox)
    put_settings(client, ENABLED)
    before = stored().serialize()
    configuration_id = stored().portal_configuration_id
    sandbox.fail_next("POST", "/v1/billing_portal/configurations/" + configuration_id,
                      status=400, error={"type": "invalid_request_error", "message": "Nope"})
    assert_error(put_settings(client, change), 502, "stripe_error")
    assert stored().serialize() == before
    [configuration] = sandbox.portal_configurations(account)
    assert configuration["active"] is True
    assert configuration["features"]["subscription_cancel"]["enabled"] is False


def test_an_account_stripe_no_longer_lets_us_reach_is_502(client, sandbox):
    connected(client, sandbox)
    sandbox.revoke("acct_gym")
    sandbox.wait_for_webhooks()
    before = stored().serialize()
    assert_error(put_settings(client, ENABLED), 502, "stripe_error")
    assert stored().serialize() == before


# ------------------------------------------------------------ a lost race

class RacingConnectionStore(ConnectionStore):
    """Hands out the connection, then lets another request save it first."""

    def get(self, site_id):
        mine = super().get(site_id)
        theirs = super().get(site_id)
        theirs.display_name = "Renamed meanwhile"
        super().save(theirs)
        return mine


def test_a_concurrent_change_is_a_conflict_and_the_new_configuration_is_turned_off(client, sandbox):
    account = connected(client, sandbox)
    portal = PortalService(RacingConnectionStore(), MemberCustomerStore(), services.get_stripe_gateway(),
                           APP_BASE_URL)
    with pytest.raises(ConnectionChanged):
        portal.save_settings("site_a", PortalSettings(True, PRIVACY, TERMS, False))
    [configuration] = sandbox.portal_configurations(account)
    assert configuration["active"] is False
    assert stored().portal_enabled is False
    assert stored().portal_configuration_id is None


def test_a_conflict_answers_409_conflict_with_a_message():
    response = to_response(ConnectionChanged("The connector was changed meanwhile; reload it"))
    assert response.status_code == 409
    assert response.body["error"] == {"code": "conflict",
                                      "message": "The connector was changed meanwhile; reload it"}


# ------------------------------------------------------- who may call it

def test_saving_settings_without_a_token_is_401(client):
    assert_error(put_settings(client, ENABLED, headers={}), 401, "unauthorized")


def test_saving_settings_as_a_member_is_403_and_changes_nothing(client, sandbox):
    account = connected(client, sandbox)
    assert_error(put_settings(client, ENABLED, headers=bearer(site="site_a", role="member")), 403, "forbidden")
    assert sandbox.portal_configurations(account) == []


def test_the_settings_go_to_the_admins_own_site_only(client, sandbox):
    connected(client, sandbox)
    other = bearer(site="site_b", role="owner", sub="owner_b")
    assert_error(put_settings(client, ENABLED, headers=other), 409, "not_connected")
    assert card(client)["settings"]["portal_enabled"] is False


def test_settings_preflight_allows_put_from_the_app_origin(client):
    response = client.request("OPTIONS", "/connectors/stripe/settings", headers={
        "Origin": APP_BASE_URL, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization,content-type"}, body=b"")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP_BASE_URL
    assert "PUT" in response.headers["Access-Control-Allow-Methods"]
    assert set(response.headers["Access-Control-Allow-Headers"].split(",")) == {"Authorization", "Content-Type"}
