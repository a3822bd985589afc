"""An admin whose site offers the billing portal connects another Stripe
account: the portal comes along, made on the new account with the stored
settings, before the connection answers."""
import logging

import pytest

from chalicelib.models import ConnectionModel
from tests.api.test_billing_portal import EMAIL, available, last_session_request, open_session
from tests.api.test_connect_lifecycle import ADMIN, approve_at_stripe, card, come_back, complete, connect, start
from tests.api.test_portal_settings import DISABLED, ENABLED, put_settings, shown
from tests.helpers import APP_BASE_URL, AWS_CALLS, SECRET_KEY, bearer

CONFIGURATIONS = "/v1/billing_portal/configurations"
CONNECTIONS_TABLE = "stripe-connector-connections"
SETTINGS = dict(ENABLED, allow_cancel=True)


def site_on_first_account(client, sandbox, settings=SETTINGS):
    """site_a connected to acct_one with these portal settings saved; the
    configuration id stored for it (None when the portal is off)."""
    sandbox.create_account(id="acct_one", display_name="First")
    sandbox.create_account(id="acct_two", display_name="Second")
    connect(client, sandbox, "acct_one")
    assert put_settings(client, settings).status_code == 200
    return stored().portal_configuration_id


def switch(client, sandbox, account_id="acct_two"):
    """The admin connects account_id; the callback's answer, with the
    DynamoDB requests it made."""
    query = come_back(client, approve_at_stripe(sandbox, start(client), account_id))
    with AWS_CALLS.counting() as calls:
        response = complete(client, query)
    return response, calls


def stored():
    return ConnectionModel.get("site_a")


def assert_error_409_portal_disabled(response):
    assert response.status_code == 409, response.body
    assert response.json_body["error"]["code"] == "portal_disabled"


def made_on_switch(sandbox, since):
    return [r for r in sandbox.requests[since:] if r["method"] == "POST" and r["path"].startswith(CONFIGURATIONS)]


# ------------------------------------------------------ the portal comes along

def test_switching_with_the_portal_on_answers_with_it_on_made_on_the_new_account_with_the_same_settings(
        client, sandbox):
    old_configuration = site_on_first_account(client, sandbox)
    [old_before] = sandbox.portal_configurations("acct_one")
    response, calls = switch(client, sandbox)

    assert response.status_code == 200, response.body
    assert response.json_body["account"]["id"] == "acct_two"
    assert response.json_body["settings"] == shown(SETTINGS)
    assert card(client)["settings"] == shown(SETTINGS)
    [configuration] = sandbox.portal_configurations("acct_two")
    assert configuration["active"] is True
    assert configuration["business_profile"]["privacy_policy_url"] == SETTINGS["privacy_policy_url"]
    assert configuration["business_profile"]["terms_of_service_url"] == SETTINGS["terms_of_service_url"]
    assert configuration["default_return_url"] == APP_BASE_URL
    cancel = configuration["features"]["subscription_cancel"]
    assert (cancel["enabled"], cancel["mode"]) == (True, "at_period_end")
    assert configuration["metadata"] == {"customerhub_site_id": "site_a"}
    assert stored().portal_configuration_id == configuration["id"] != old_configuration
    # The old account's configuration is left as it was, as a disconnect leaves it.
    assert sandbox.portal_configurations("acct_one") == [old_before]
    assert not sandbox.is_connected("acct_one")
    # The connection is written once, with the portal's outcome: get, put, and
    # the index query for the old account's other sites.
    assert calls.on(CONNECTIONS_TABLE) == 3


def test_after_a_switch_the_member_opens_the_portal_on_the_new_account_with_its_configuration(client, sandbox):
    site_on_first_account(client, sandbox)
    sandbox.create_customer("acct_one", email=EMAIL, id="cus_on_one")
    sandbox.create_customer("acct_two", email=EMAIL, id="cus_on_two")
    assert open_session(client).status_code == 200
    assert switch(client, sandbox)[0].status_code == 200

    assert available(client) is True
    response = open_session(client)
    assert response.status_code == 200, response.body
    request = last_session_request(sandbox)
    assert request["stripe_account"] == "acct_two"
    assert request["params"]["customer"] == "cus_on_two"
    [configuration] = sandbox.portal_configurations("acct_two")
    assert request["params"]["configuration"] == configuration["id"]


def test_switching_with_the_portal_off_keeps_it_off_and_asks_stripe_for_no_configuration(client, sandbox):
    site_on_first_account(client, sandbox, dict(DISABLED, allow_cancel=True))
    calls = len(sandbox.requests)
    response, _ = switch(client, sandbox)
    assert response.status_code == 200, response.body
    assert response.json_body["settings"] == shown(dict(DISABLED, allow_cancel=True))
    assert made_on_switch(sandbox, calls) == []
    assert sandbox.portal_configurations("acct_two") == []
    assert stored().portal_configuration_id is None


def test_a_switch_after_a_disconnect_finds_the_portal_off_and_leaves_it_off(client, sandbox):
    site_on_first_account(client, sandbox)
    assert client.delete("/connectors/stripe", headers=ADMIN).status_code == 200
    calls = len(sandbox.requests)
    response, _ = switch(client, sandbox)
    assert response.status_code == 200, response.body
    assert response.json_body["settings"] == shown(dict(SETTINGS, portal_enabled=False))
    assert made_on_switch(sandbox, calls) == []


# ---------------------------------------------------------- Stripe refusing

@pytest.mark.parametrize("status, error", [
    (400, {"type": "invalid_request_error", "message": "The account cannot have a portal"}),
    (500, {"type": "api_error", "message": "Something went wrong"}),
], ids=["refused", "failing"])
def test_stripe_refusing_the_configuration_leaves_the_connection_standing_with_the_portal_off(
        client, sandbox, caplog, status, error):
    site_on_first_account(client, sandbox)
    # The client's retries of a 500 meet the same answer.
    sandbox.fail_next("POST", CONFIGURATIONS, status=status, error=error, times=3 if status >= 500 else 1)
    calls = len(sandbox.requests)
    with caplog.at_level(logging.WARNING, logger="chalicelib.connections"):
        response, connections = switch(client, sandbox)

    assert response.status_code == 200, response.body
    shown_card = response.json_body
    assert shown_card["status"] == "connected"
    assert shown_card["account"]["id"] == "acct_two"
    assert shown_card["settings"] == shown(dict(SETTINGS, portal_enabled=False))
    assert shown_card["sync"]["state"] == "importing"
    assert card(client)["settings"] == shown(dict(SETTINGS, portal_enabled=False))
    assert made_on_switch(sandbox, calls)
    assert sandbox.portal_configurations("acct_two") == []
    assert stored().portal_configuration_id is None
    assert sandbox.is_connected("acct_two") and not sandbox.is_connected("acct_one")
    assert connections.on(CONNECTIONS_TABLE) == 3
    said = [r.getMessage() for r in caplog.records if r.name == "chalicelib.connections"
            and r.levelno == logging.WARNING]
    assert any("site_a" in line and "acct_two" in line and "portal off" in line for line in said), said
    assert not any(SECRET_KEY in line for line in said)
    assert_error_409_portal_disabled(open_session(client))


def test_the_admin_turns_the_portal_on_again_after_stripe_refused_it_on_the_switch(client, sandbox):
    site_on_first_account(client, sandbox)
    sandbox.fail_next("POST", CONFIGURATIONS, status=400,
                      error={"type": "invalid_request_error", "message": "Not now"})
    assert switch(client, sandbox)[0].json_body["settings"]["portal_enabled"] is False
    response = put_settings(client, SETTINGS)
    assert response.status_code == 200, response.body
    [configuration] = sandbox.portal_configurations("acct_two")
    assert stored().portal_configuration_id == configuration["id"]


# ------------------------------------------------------- nothing half done

def test_a_switch_whose_connection_cannot_be_stored_turns_off_the_configuration_it_made(
        client, sandbox, aws_faults):
    old_configuration = site_on_first_account(client, sandbox)
    before = stored().serialize()
    query = come_back(client, approve_at_stripe(sandbox, start(client), "acct_two"))
    # The first item put while completing is the connection.
    aws_faults.fail("dynamodb", "PutItem", code="InternalServerError")
    response = complete(client, query)

    assert response.status_code >= 500
    assert aws_faults.pending() == []
    assert stored().serialize() == before
    assert stored().portal_configuration_id == old_configuration
    [configuration] = sandbox.portal_configurations("acct_two")
    assert configuration["active"] is False
    assert not sandbox.is_connected("acct_two")
    assert sandbox.is_connected("acct_one")


# ------------------------------------------------------ the same account again

def test_reconnecting_the_same_account_keeps_its_configuration_and_makes_no_other(client, sandbox):
    configuration_id = site_on_first_account(client, sandbox)
    calls = len(sandbox.requests)
    response, _ = switch(client, sandbox, "acct_one")
    assert response.status_code == 200, response.body
    assert response.json_body["settings"] == shown(SETTINGS)
    assert stored().portal_configuration_id == configuration_id
    assert made_on_switch(sandbox, calls) == []
    [configuration] = sandbox.portal_configurations("acct_one")
    assert configuration["active"] is True
    assert sandbox.is_connected("acct_one")


def test_another_site_on_the_new_account_keeps_its_own_configuration(client, sandbox):
    site_on_first_account(client, sandbox)
    other_admin = bearer(site="site_b", role="owner", sub="owner_b")
    connect(client, sandbox, "acct_two", headers=other_admin)
    assert put_settings(client, ENABLED, headers=other_admin).status_code == 200
    [theirs] = sandbox.portal_configurations("acct_two")
    assert switch(client, sandbox)[0].status_code == 200
    configurations = {c["id"]: c for c in sandbox.portal_configurations("acct_two")}
    assert len(configurations) == 2
    assert configurations[theirs["id"]] == theirs
    assert configurations[stored().portal_configuration_id]["metadata"] == {"customerhub_site_id": "site_a"}
    assert card(client, other_admin)["settings"]["portal_enabled"] is True
