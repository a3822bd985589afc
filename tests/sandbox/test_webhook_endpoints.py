"""The sandbox's webhook endpoints, driven by the real stripe-python client:
the endpoint it is configured with (WEBHOOK_ENDPOINT_ID), those made through
/v1/webhook_endpoints with their own secrets, and an endpoint disabled as
Stripe disables one that keeps failing: it is sent nothing, and the events it
missed stay listed by delivery_success=false."""
import json

import pytest
import requests
import stripe
from stripe._list_object import ListObject

from local.stripe_sandbox import API_VERSION, WEBHOOK_ENDPOINT_ID
from tests.sandbox.conformance import violations
from tests.sandbox.conftest import Receiver, studio_sending_to
from tests.sandbox.test_sandbox_pages import page

WEBHOOK_SECRET = "whsec_local_endpoint"


@pytest.fixture
def other_receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture
def studio(receiver):
    """A sandbox sending webhooks to the receiver, with a connected account
    and a member subscribed to Yoga."""
    with studio_sending_to(receiver, WEBHOOK_SECRET) as studio:
        sandbox = studio["sandbox"]
        studio["subscription"] = sandbox.create_subscription(studio["account"], studio["customer"],
                                                             [studio["product"]])["id"]
        assert sandbox.wait_for_webhooks()
        yield studio


def raw(answer):
    return json.loads(answer.last_response.body)


def refused(call):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        call()
    return caught.value


def cancel_at_period_end(studio):
    """A subscription change the sandbox records as customer.subscription.updated; its event."""
    sandbox = studio["sandbox"]
    sandbox.update_subscription(studio["account"], studio["subscription"], cancel_at_period_end=True)
    assert sandbox.wait_for_webhooks()
    event = sandbox.events[-1]
    assert event["type"] == "customer.subscription.updated"
    return event


def undelivered(studio):
    listed = studio["client"].v1.events.list({"delivery_success": False, "limit": 100}, studio["opts"])
    return [e.id for e in listed.data]


# ------------------------------------------------------------------ the configured endpoint

def test_the_configured_endpoint_is_retrieved_enabled_as_stripe_shows_it_without_its_secret(studio, receiver):
    answer = studio["client"].v1.webhook_endpoints.retrieve(WEBHOOK_ENDPOINT_ID)
    body = raw(answer)
    assert violations(body, stripe.WebhookEndpoint) == []
    created = body.pop("created")
    assert isinstance(created, int) and created > 0
    assert body == {"id": WEBHOOK_ENDPOINT_ID, "object": "webhook_endpoint", "api_version": API_VERSION,
                    "application": None, "description": None, "enabled_events": ["*"], "livemode": False,
                    "metadata": {}, "status": "enabled", "url": receiver.url}
    assert studio["sandbox"].webhook_endpoint() == dict(body, created=created)


def test_a_sandbox_without_a_webhook_url_has_no_endpoint(sandbox, stripe_client):
    assert stripe_client.v1.webhook_endpoints.list().data == [] and sandbox.webhook_endpoints == []
    error = refused(lambda: stripe_client.v1.webhook_endpoints.retrieve(WEBHOOK_ENDPOINT_ID))
    assert error.http_status == 404 and error.code == "resource_missing"


# ------------------------------------------------------------------ disabled and enabled again

def test_a_disabled_endpoint_is_sent_nothing_and_the_event_stays_undelivered(studio, receiver):
    updated = studio["client"].v1.webhook_endpoints.update(WEBHOOK_ENDPOINT_ID, {"disabled": True})
    assert updated.status == "disabled" and "secret" not in raw(updated)
    assert studio["client"].v1.webhook_endpoints.retrieve(WEBHOOK_ENDPOINT_ID).status == "disabled"
    sent_before = list(receiver.ids)

    event = cancel_at_period_end(studio)
    assert receiver.ids == sent_before
    # Stripe makes no attempt at a disabled endpoint, and records none.
    assert studio["sandbox"].delivery_attempts(event["id"]) == []
    assert event["pending_webhooks"] == 1 and event["id"] in undelivered(studio)
    listed = studio["client"].v1.events.retrieve(event["id"], None, studio["opts"])
    assert listed.pending_webhooks == 1


def test_enabled_again_the_endpoint_is_sent_new_events_and_the_missed_one_stays_undelivered(studio, receiver):
    client, sandbox = studio["client"], studio["sandbox"]
    client.v1.webhook_endpoints.update(WEBHOOK_ENDPOINT_ID, {"disabled": True})
    missed = cancel_at_period_end(studio)
    assert client.v1.webhook_endpoints.update(WEBHOOK_ENDPOINT_ID, {"disabled": False}).status == "enabled"

    sandbox.update_subscription(studio["account"], studio["subscription"], cancel_at_period_end=False)
    assert sandbox.wait_for_webhooks()
    sent = sandbox.events[-1]
    assert receiver.ids[-1] == sent["id"] and missed["id"] not in receiver.ids
    body, header = receiver.received[-1]
    assert stripe.Webhook.construct_event(body, header, WEBHOOK_SECRET).id == sent["id"]
    assert [a["status"] for a in sandbox.delivery_attempts(sent["id"])] == [200]
    assert sent["pending_webhooks"] == 0 and undelivered(studio) == [missed["id"]]


def test_the_python_method_disables_and_enables_and_refuses_another_status(studio, receiver):
    sandbox = studio["sandbox"]
    assert sandbox.set_webhook_endpoint_status("disabled")["status"] == "disabled"
    missed = cancel_at_period_end(studio)
    assert missed["id"] not in receiver.ids
    assert sandbox.delivery_states(missed["id"]) == {WEBHOOK_ENDPOINT_ID: "disabled"}
    assert sandbox.set_webhook_endpoint_status("enabled", WEBHOOK_ENDPOINT_ID)["status"] == "enabled"
    with pytest.raises(ValueError):
        sandbox.set_webhook_endpoint_status("paused")
    with pytest.raises(KeyError):
        sandbox.set_webhook_endpoint_status("disabled", "we_nothing")
    assert sandbox.webhook_endpoint()["status"] == "enabled"


def test_a_reset_enables_the_endpoint_again_and_forgets_those_made_through_the_api(studio):
    sandbox, client = studio["sandbox"], studio["client"]
    client.v1.webhook_endpoints.update(WEBHOOK_ENDPOINT_ID, {"disabled": True, "enabled_events": ["account.updated"]})
    client.v1.webhook_endpoints.create({"url": "https://hooks.gym.test/stripe", "enabled_events": ["*"]})
    sandbox.reset()
    [endpoint] = sandbox.webhook_endpoints
    assert (endpoint["id"], endpoint["status"], endpoint["enabled_events"]) == (WEBHOOK_ENDPOINT_ID, "enabled", ["*"])


# ------------------------------------------------------------------ create, list, update, delete

def test_a_created_endpoint_shows_its_secret_once_and_is_sent_only_what_it_listens_for_signed_with_it(
        studio, receiver, other_receiver):
    client, sandbox = studio["client"], studio["sandbox"]
    created = client.v1.webhook_endpoints.create({
        "url": other_receiver.url, "enabled_events": ["customer.subscription.updated"], "connect": True,
        "description": "Gym hooks", "metadata": {"team": "ops"}})
    body = raw(created)
    assert violations(body, stripe.WebhookEndpoint) == []
    assert body["id"].startswith("we_") and body["secret"].startswith("whsec_") and body["status"] == "enabled"
    assert (body["url"], body["enabled_events"], body["description"], body["metadata"], body["api_version"]) == (
        other_receiver.url, ["customer.subscription.updated"], "Gym hooks", {"team": "ops"}, None)
    assert "secret" not in raw(client.v1.webhook_endpoints.retrieve(created.id))

    sandbox.update_account(studio["account"], display_name="Local Fitness & Spa")
    event = cancel_at_period_end(studio)
    [(payload, header)] = other_receiver.received
    assert stripe.Webhook.construct_event(payload, header, body["secret"]).id == event["id"]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, WEBHOOK_SECRET)
    # The configured endpoint hears everything, the new one only its type.
    assert event["id"] in receiver.ids
    assert sandbox.delivery_states(event["id"]) == {WEBHOOK_ENDPOINT_ID: "delivered", created.id: "delivered"}


def test_a_connect_endpoint_hears_the_connected_accounts_and_an_account_endpoint_the_platform(
        studio, other_receiver):
    client, sandbox = studio["client"], studio["sandbox"]
    client.v1.webhook_endpoints.create({"url": other_receiver.url, "enabled_events": ["*"]})
    cancel_at_period_end(studio)
    customer = sandbox.create_customer(None, email="owner@customerhub.test")["id"]
    product = sandbox.create_product(None, name="Platform plan")["id"]
    sandbox.create_subscription(None, customer, [product])
    assert sandbox.wait_for_webhooks()
    [(payload, _)] = other_receiver.received
    assert json.loads(payload)["account"] is None and json.loads(payload)["type"] == "customer.subscription.created"


def test_the_list_pages_newest_first(studio):
    endpoints = studio["client"].v1.webhook_endpoints
    first = endpoints.create({"url": "https://hooks.gym.test/one", "enabled_events": ["*"]}).id
    second = endpoints.create({"url": "https://hooks.gym.test/two", "enabled_events": ["*"]}).id
    page_one = endpoints.list({"limit": 2})
    body = raw(page_one)
    assert violations(body, ListObject[stripe.WebhookEndpoint]) == []
    assert [e["id"] for e in body["data"]] == [second, first] and body["has_more"] is True
    assert body["url"] == "/v1/webhook_endpoints" and all("secret" not in e for e in body["data"])
    page_two = endpoints.list({"limit": 2, "starting_after": first})
    assert [e.id for e in page_two.data] == [WEBHOOK_ENDPOINT_ID] and page_two.has_more is False


def test_an_update_changes_url_events_description_and_metadata(studio, other_receiver):
    client = studio["client"]
    updated = client.v1.webhook_endpoints.update(WEBHOOK_ENDPOINT_ID, {
        "url": other_receiver.url, "enabled_events": ["customer.subscription.updated"],
        "description": "Moved", "metadata": {"team": "ops"}})
    assert (updated.url, updated.enabled_events, updated.description, updated.metadata.to_dict()) == (
        other_receiver.url, ["customer.subscription.updated"], "Moved", {"team": "ops"})
    cleared = client.v1.webhook_endpoints.update(WEBHOOK_ENDPOINT_ID, {"description": "", "metadata": {"team": ""}})
    assert cleared.description is None and cleared.metadata.to_dict() == {}
    event = cancel_at_period_end(studio)
    assert [json.loads(body)["id"] for body, _ in other_receiver.received] == [event["id"]]
    body, header = other_receiver.received[0]
    # The configured endpoint keeps its secret when its URL moves.
    assert stripe.Webhook.construct_event(body, header, WEBHOOK_SECRET).id == event["id"]


def test_a_deleted_endpoint_answers_stripes_stub_is_gone_and_is_sent_nothing(studio, receiver):
    client = studio["client"]
    deleted = client.v1.webhook_endpoints.delete(WEBHOOK_ENDPOINT_ID)
    assert raw(deleted) == {"id": WEBHOOK_ENDPOINT_ID, "object": "webhook_endpoint", "deleted": True}
    error = refused(lambda: client.v1.webhook_endpoints.retrieve(WEBHOOK_ENDPOINT_ID))
    assert error.http_status == 404 and error.code == "resource_missing"
    assert client.v1.webhook_endpoints.list().data == []
    event = cancel_at_period_end(studio)
    assert event["id"] not in receiver.ids and event["id"] in undelivered(studio)


# ------------------------------------------------------------------ what is refused

@pytest.mark.parametrize("call", [
    lambda endpoints: endpoints.retrieve("we_nothing"),
    lambda endpoints: endpoints.update("we_nothing", {"disabled": True}),
    lambda endpoints: endpoints.delete("we_nothing"),
])
def test_an_unknown_id_is_stripes_404_resource_missing(studio, call):
    error = refused(lambda: call(studio["client"].v1.webhook_endpoints))
    assert error.http_status == 404 and error.code == "resource_missing" and error.param == "id"
    assert error.user_message == "No such webhook endpoint: 'we_nothing'"


@pytest.mark.parametrize("call, param, code", [
    (lambda e: e.update(WEBHOOK_ENDPOINT_ID, {"colour": "red"}), "colour", "parameter_unknown"),
    (lambda e: e.list({"colour": "red"}), "colour", "parameter_unknown"),
    (lambda e: e.create({"url": "https://hooks.gym.test/x", "enabled_events": ["*"], "colour": "red"}), "colour",
     "parameter_unknown"),
    (lambda e: e.create({"enabled_events": ["*"]}), "url", "parameter_missing"),
    (lambda e: e.create({"url": "https://hooks.gym.test/x"}), "enabled_events", "parameter_missing"),
    (lambda e: e.create({"url": "hooks.gym.test", "enabled_events": ["*"]}), "url", "url_invalid"),
])
def test_a_bad_param_is_stripes_400_and_changes_nothing(studio, call, param, code):
    error = refused(lambda: call(studio["client"].v1.webhook_endpoints))
    assert error.http_status == 400 and error.param == param and error.code == code
    [endpoint] = studio["sandbox"].webhook_endpoints
    assert (endpoint["id"], endpoint["status"]) == (WEBHOOK_ENDPOINT_ID, "enabled")


def test_an_event_type_stripe_does_not_have_or_a_non_boolean_disabled_is_refused(studio):
    endpoints = studio["client"].v1.webhook_endpoints
    error = refused(lambda: endpoints.update(WEBHOOK_ENDPOINT_ID, {"enabled_events": ["customer.teleported"]}))
    assert error.http_status == 400 and error.param == "enabled_events[0]"
    error = refused(lambda: endpoints.update(WEBHOOK_ENDPOINT_ID, {"disabled": "maybe"}))
    assert error.http_status == 400 and error.param == "disabled"
    assert studio["sandbox"].webhook_endpoint()["enabled_events"] == ["*"]


def test_what_the_sandbox_does_not_carry_out_is_refused_rather_than_ignored(studio):
    endpoints = studio["client"].v1.webhook_endpoints
    error = refused(lambda: endpoints.create({"url": "https://hooks.gym.test/x", "enabled_events": ["*"],
                                              "api_version": "2020-08-27"}))
    assert error.http_status == 400 and error.param == "api_version"
    error = refused(lambda: endpoints.retrieve(WEBHOOK_ENDPOINT_ID, None, studio["opts"]))
    assert error.http_status == 400 and "Stripe-Account" in error.user_message
    error = refused(lambda: endpoints.retrieve(WEBHOOK_ENDPOINT_ID, {"expand": ["application"]}))
    assert error.http_status == 400 and error.param == "expand"
    assert len(studio["sandbox"].webhook_endpoints) == 1


# ------------------------------------------------------------------ the dashboard

def test_the_dashboard_button_disables_and_enables_the_endpoint_and_says_so(studio, receiver):
    sandbox = studio["sandbox"]
    action = "/dashboard/webhook_endpoints/%s/" % WEBHOOK_ENDPOINT_ID
    shown = page(requests.get(sandbox.url + "/", timeout=10))
    assert ("h3", "Webhook endpoints") in shown.headings and shown.unlabelled() == []
    assert "Disable endpoint %s" % receiver.url in shown.buttons
    assert {"action": action + "disable", "method": "post", "fields": {}} in shown.forms

    disabled = requests.post(sandbox.url + action + "disable", allow_redirects=False, timeout=10)
    assert disabled.status_code == 303 and sandbox.webhook_endpoint()["status"] == "disabled"
    shown = page(requests.get(sandbox.url + disabled.headers["Location"], timeout=10))
    assert ('role="status">Webhook endpoint <code>%s</code> disabled: events are recorded and not sent to it.'
            % receiver.url) in shown.text
    assert "Enable endpoint %s" % receiver.url in shown.buttons
    assert "Disable endpoint %s" % receiver.url not in shown.buttons
    assert '<p class="problem"><strong>Webhook endpoint <code>%s</code> is disabled.</strong>' % receiver.url \
        in shown.text

    missed = cancel_at_period_end(studio)
    detail = page(requests.get(sandbox.url + "/dashboard/events/" + missed["id"], timeout=10))
    assert "Not sent: webhook endpoint disabled" in detail.text

    enabled = requests.post(sandbox.url + action + "enable", headers={"Accept": "application/json"}, timeout=10)
    assert enabled.status_code == 200 and enabled.json()["status"] == "enabled" and "secret" not in enabled.json()
    assert studio["client"].v1.webhook_endpoints.retrieve(WEBHOOK_ENDPOINT_ID).status == "enabled"


def test_the_dashboard_refuses_an_unknown_endpoint_or_action(studio):
    sandbox = studio["sandbox"]
    unknown = requests.post(sandbox.url + "/dashboard/webhook_endpoints/we_nothing/disable",
                            headers={"Accept": "application/json"}, timeout=10)
    assert unknown.status_code == 404 and "we_nothing" in unknown.json()["error"]["message"]
    pause = requests.post(sandbox.url + "/dashboard/webhook_endpoints/%s/pause" % WEBHOOK_ENDPOINT_ID,
                          allow_redirects=False, timeout=10)
    assert pause.status_code == 404 and page(pause).link("Go to the sandbox dashboard") == "/"
    assert sandbox.webhook_endpoint()["status"] == "enabled"
