"""Stripe telling us about the connected account: revoked from its dashboard,
renamed; and deliveries that must change nothing."""
import json
import time

import pytest

from chalicelib.models import ConnectionModel, WebhookEventModel
from tests.api.test_connect_lifecycle import ADMIN, card, connect
from tests.helpers import bearer, deliver, signed, stripe_event

APPLICATION = {"id": "ca_test_platform", "object": "application", "name": "CustomerHub"}


def revoked_event(account, **kwargs):
    return stripe_event("account.application.deauthorized", account, APPLICATION, **kwargs)


def test_revocation_in_stripe_disconnects_the_site_with_revoked_in_stripe(client, sandbox):
    sandbox.create_account(id="acct_gym", display_name="Gym")
    connect(client, sandbox, "acct_gym")
    sandbox.revoke("acct_gym")
    response = deliver(client, sandbox.events[-1])
    assert response.status_code == 200
    assert response.json_body == {"received": True}
    shown = card(client)
    assert shown["status"] == "disconnected"
    assert shown["disconnected_reason"] == "revoked_in_stripe"
    assert shown["account"] is None
    assert "Access-Control-Allow-Origin" not in response.headers


def test_revocation_disconnects_every_site_on_that_account(client, sandbox):
    sandbox.create_account(id="acct_shared")
    site_b = bearer(site="site_b", role="owner")
    connect(client, sandbox, "acct_shared")
    connect(client, sandbox, "acct_shared", headers=site_b)
    deliver(client, revoked_event("acct_shared"))
    assert card(client)["disconnected_reason"] == "revoked_in_stripe"
    assert card(client, site_b)["disconnected_reason"] == "revoked_in_stripe"


def test_the_deauthorization_after_an_admin_disconnect_keeps_disconnected_by_admin(client, sandbox):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    client.delete("/connectors/stripe", headers=ADMIN)
    deliver(client, sandbox.events[-1])
    assert card(client)["disconnected_reason"] == "disconnected_by_admin"


def test_a_late_deauthorization_of_an_earlier_connection_changes_nothing(client, sandbox):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    before = ConnectionModel.get("site_a").serialize()
    deliver(client, revoked_event("acct_gym", created=int(time.time()) - 3600))
    assert ConnectionModel.get("site_a").serialize() == before
    assert card(client)["status"] == "connected"


def test_a_deauthorization_for_another_livemode_is_ignored(client, sandbox):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    assert deliver(client, revoked_event("acct_gym", livemode=True)).status_code == 200
    assert card(client)["status"] == "connected"


@pytest.mark.parametrize("account", [None, "acct_nobody_knows"])
def test_events_for_no_connected_site_are_acknowledged_and_ignored(client, account):
    response = deliver(client, revoked_event(account))
    assert response.status_code == 200
    assert response.json_body == {"received": True}


def test_a_duplicate_delivery_is_acknowledged_and_changes_nothing(client, sandbox):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    event = revoked_event("acct_gym")
    deliver(client, event)
    assert WebhookEventModel.get(event["id"]).event_type == "account.application.deauthorized"
    connect(client, sandbox, "acct_gym")
    before = ConnectionModel.get("site_a").serialize()
    assert deliver(client, event).status_code == 200
    assert ConnectionModel.get("site_a").serialize() == before


def test_account_updated_refreshes_the_display_name_from_stripe(client, sandbox):
    sandbox.create_account(id="acct_gym", display_name="Old Name")
    connect(client, sandbox, "acct_gym")
    sandbox.update_account("acct_gym", display_name="New Name")
    assert deliver(client, sandbox.events[-1]).status_code == 200
    assert card(client)["account"]["display_name"] == "New Name"


def test_account_updated_is_not_recorded_when_stripe_fails_and_the_queues_next_try_renames(
        client, sandbox, stripe_events):
    sandbox.create_account(id="acct_gym", display_name="Old Name")
    connect(client, sandbox, "acct_gym")
    sandbox.update_account("acct_gym", display_name="New Name")
    event = sandbox.events[-1]
    sandbox.fail_next("GET", "/v1/accounts/acct_gym", status=500, should_retry=False)
    assert deliver(client, event, handle=False).status_code == 200
    assert stripe_events.drain() == {"handled": 0, "failed": 1}
    assert WebhookEventModel.count() == 0
    assert card(client)["account"]["display_name"] == "Old Name"
    assert stripe_events.drain() == {"handled": 1, "failed": 0}
    assert card(client)["account"]["display_name"] == "New Name"


def test_a_forged_signature_is_400_and_changes_nothing(client, sandbox):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    response = deliver(client, revoked_event("acct_gym"), secret="whsec_forged")
    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "invalid_signature"
    assert card(client)["status"] == "connected"
    assert WebhookEventModel.count() == 0


def test_a_stale_signature_is_400_and_changes_nothing(client, sandbox):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    response = deliver(client, revoked_event("acct_gym"), timestamp=int(time.time()) - 301)
    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "invalid_signature"
    assert card(client)["status"] == "connected"


def test_a_missing_signature_is_400(client):
    payload = json.dumps(revoked_event("acct_x"))
    response = client.post("/webhooks/stripe", headers={"Content-Type": "application/json"}, body=payload)
    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "invalid_signature"


def test_a_body_altered_after_signing_is_400(client):
    payload, headers = signed(revoked_event("acct_x"))
    response = client.post("/webhooks/stripe", headers=headers, body=payload.replace("acct_x", "acct_y"))
    assert response.json_body["error"]["code"] == "invalid_signature"


def test_malformed_json_with_a_valid_signature_is_invalid_payload(client):
    import stripe
    payload = '{"id": "evt_1", "object": "event",'
    header = stripe.WebhookSignature.generate_signature_header(payload, "whsec_test_connector_endpoint")
    response = client.post("/webhooks/stripe", body=payload,
                           headers={"Stripe-Signature": header, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "invalid_payload"


def test_a_body_over_one_mebibyte_is_413(client):
    event = revoked_event("acct_x")
    event["data"]["object"]["padding"] = "x" * (1024 * 1024)
    response = deliver(client, event)
    assert response.status_code == 413
    assert response.json_body["error"]["code"] == "payload_too_large"
