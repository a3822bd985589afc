"""Every answer the Stripe sandbox gives matches the stripe-python class that
reads it (tests/sandbox/conformance.py): each api and oauth route is walked
with a valid request through the real client, expanded and listed forms
included, and so is every webhook the sandbox signs and sends."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe
from stripe._list_object import ListObject

from chalicelib.portal import PortalSettings, portal_configuration_params
from local.stripe_sandbox import ROUTES, WEBHOOK_ENDPOINT_ID, StripeSandbox
from tests.sandbox.conformance import event_violations, violations

SECRET_KEY = "sk_test_sandbox"
CLIENT_ID = "ca_sandbox"
WEBHOOK_SECRET = "whsec_answers"
EXPANDED = ["customer", "items.data.price.product"]

Account = stripe.Account
Configuration = stripe.billing_portal.Configuration


class _Receiver(BaseHTTPRequestHandler):
    received: list

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.received.append((body, self.headers["Stripe-Signature"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhooks():
    """What a webhook endpoint on loopback received: (raw body, signature header)."""
    received = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), type("Receiver", (_Receiver,), {"received": received}))
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    yield received, "http://127.0.0.1:%d/webhooks/stripe" % receiver.server_address[1]
    receiver.shutdown()
    receiver.server_close()


@pytest.fixture
def sandbox(webhooks):
    with StripeSandbox(secret_key=SECRET_KEY, client_id=CLIENT_ID, webhook_url=webhooks[1],
                       webhook_secret=WEBHOOK_SECRET) as sb:
        yield sb


@pytest.fixture
def client(sandbox):
    return stripe.StripeClient(SECRET_KEY, client_id=CLIENT_ID,
                               base_addresses={"api": sandbox.url, "connect": sandbox.url}, max_network_retries=0)


@pytest.fixture
def gym(sandbox, client):
    """A connected account with a customer, a product, a subscription to it and a portal configuration."""
    account = sandbox.create_account(display_name="Local Fitness", business_name="Local Fitness LLC",
                                     email="owner@localfitness.test")["id"]
    client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(account)})
    customer = sandbox.create_customer(account, email="member@localfitness.test", metadata={"user": "u1"})
    yoga = sandbox.create_product(account, name="Yoga", metadata={"customerhub_product_id": "yoga"})
    pilates = sandbox.create_product(account, name="Pilates")
    subscription = sandbox.create_subscription(account, customer["id"], [yoga["id"], pilates["id"]])
    opts = {"stripe_account": account}
    configuration = client.v1.billing_portal.configurations.create({"features": {
        "invoice_history": {"enabled": True}}}, opts)
    return {"account": account, "customer": customer["id"], "product": yoga["id"],
            "subscription": subscription["id"], "configuration": configuration.id, "opts": opts}


def raw(answer):
    """The JSON the sandbox sent, before stripe-python read it."""
    return json.loads(answer.last_response.body)


def conforms(answer, cls):
    """answer, as sent, matches cls; its JSON is returned for more checks."""
    body = raw(answer)
    assert violations(body, cls) == []
    return body


def events_conform(answer):
    body = conforms(answer, ListObject[stripe.Event]) if answer.object == "list" else conforms(answer, stripe.Event)
    for event in body["data"] if answer.object == "list" else [body]:
        assert event_violations(event) == []
    return body


# ------------------------------------------------------------------ one walk per route

def walk_oauth_token(sandbox, client, gym):
    account = sandbox.create_account(display_name="Second Studio")["id"]
    token = client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(account)})
    assert conforms(token, stripe.OAuth.OAuthToken)["stripe_user_id"] == account


def walk_oauth_deauthorize(sandbox, client, gym):
    answer = client.oauth.deauthorize({"stripe_user_id": gym["account"]})
    assert conforms(answer, stripe.OAuth.OAuthDeauthorization) == {"stripe_user_id": gym["account"]}


def walk_current_account(sandbox, client, gym):
    conforms(client.v1.accounts.retrieve_current(None, gym["opts"]), Account)
    conforms(client.v1.accounts.retrieve_current(), Account)


def walk_retrieve_account(sandbox, client, gym):
    body = conforms(client.v1.accounts.retrieve(gym["account"]), Account)
    assert body["settings"]["dashboard"]["display_name"] == "Local Fitness"


def walk_list_events(sandbox, client, gym):
    sandbox.update_account(gym["account"], display_name="Local Fitness & Spa")
    sandbox.update_subscription(gym["account"], gym["subscription"], cancel_at_period_end=True)
    listed = events_conform(client.v1.events.list({"limit": 100}, gym["opts"]))
    assert {e["type"] for e in listed["data"]} >= {"account.updated", "customer.subscription.updated"}
    events_conform(client.v1.events.list({"types": ["customer.subscription.*"], "delivery_success": False}))


def walk_retrieve_event(sandbox, client, gym):
    for event in sandbox.events:
        events_conform(client.v1.events.retrieve(event["id"]))


def walk_list_webhook_endpoints(sandbox, client, gym):
    client.v1.webhook_endpoints.create({"url": "https://hooks.gym.test/stripe", "enabled_events": ["*"]})
    listed = conforms(client.v1.webhook_endpoints.list({"limit": 2}), ListObject[stripe.WebhookEndpoint])
    assert [e["id"] for e in listed["data"]][1:] == [WEBHOOK_ENDPOINT_ID]


def walk_create_webhook_endpoint(sandbox, client, gym):
    created = conforms(client.v1.webhook_endpoints.create({
        "url": "https://hooks.gym.test/stripe", "enabled_events": ["customer.subscription.updated"], "connect": True,
        "description": "Gym hooks", "metadata": {"team": "ops"}}), stripe.WebhookEndpoint)
    assert created["secret"].startswith("whsec_")


def walk_retrieve_webhook_endpoint(sandbox, client, gym):
    body = conforms(client.v1.webhook_endpoints.retrieve(WEBHOOK_ENDPOINT_ID), stripe.WebhookEndpoint)
    assert body["status"] == "enabled" and "secret" not in body


def walk_update_webhook_endpoint(sandbox, client, gym):
    body = conforms(client.v1.webhook_endpoints.update(WEBHOOK_ENDPOINT_ID, {
        "disabled": True, "description": "Local", "metadata": {"team": "ops"}}), stripe.WebhookEndpoint)
    assert body["status"] == "disabled"


def walk_delete_webhook_endpoint(sandbox, client, gym):
    assert conforms(client.v1.webhook_endpoints.delete(WEBHOOK_ENDPOINT_ID), stripe.WebhookEndpoint) == {
        "id": WEBHOOK_ENDPOINT_ID, "object": "webhook_endpoint", "deleted": True}


def walk_list_customers(sandbox, client, gym):
    listed = conforms(client.v1.customers.list({"email": "member@localfitness.test"}, gym["opts"]),
                      ListObject[stripe.Customer])
    assert [c["id"] for c in listed["data"]] == [gym["customer"]]


def walk_create_customer(sandbox, client, gym):
    conforms(client.v1.customers.create({"email": "new@localfitness.test", "name": "New Member",
                                         "metadata": {"customerhub_user_id": "u2"}}, gym["opts"]), stripe.Customer)


def walk_retrieve_customer(sandbox, client, gym):
    conforms(client.v1.customers.retrieve(gym["customer"], None, gym["opts"]), stripe.Customer)
    sandbox.delete_customer(gym["account"], gym["customer"])
    assert conforms(client.v1.customers.retrieve(gym["customer"], None, gym["opts"]), stripe.Customer)["deleted"]


def walk_list_portal_configurations(sandbox, client, gym):
    listed = conforms(client.v1.billing_portal.configurations.list({"active": True}, gym["opts"]),
                      ListObject[Configuration])
    assert [c["id"] for c in listed["data"]] == [gym["configuration"]]


def walk_create_portal_configuration(sandbox, client, gym):
    settings = PortalSettings(portal_enabled=True, privacy_policy_url="https://gym.test/privacy",
                              terms_of_service_url="https://gym.test/terms", allow_cancel=True)
    params = portal_configuration_params(settings, "https://gym.test/account", "site_1")
    conforms(client.v1.billing_portal.configurations.create(params, gym["opts"]), Configuration)


def walk_retrieve_portal_configuration(sandbox, client, gym):
    conforms(client.v1.billing_portal.configurations.retrieve(gym["configuration"], None, gym["opts"]),
             Configuration)


def walk_update_portal_configuration(sandbox, client, gym):
    conforms(client.v1.billing_portal.configurations.update(gym["configuration"], {
        "active": False,
        "features": {"customer_update": {"enabled": True, "allowed_updates": ["email", "address"]},
                     "subscription_cancel": {"enabled": True, "mode": "immediately",
                                             "proration_behavior": "create_prorations"},
                     "subscription_pause": {"enabled": True, "duration": {
                         "type": "interval_options", "interval_options": [{"interval": "week", "interval_count": 2}]}},
                     "subscription_update": {"enabled": True, "default_allowed_updates": ["price"]}},
    }, gym["opts"]), Configuration)


def walk_create_portal_session(sandbox, client, gym):
    conforms(client.v1.billing_portal.sessions.create({
        "customer": gym["customer"], "configuration": gym["configuration"],
        "return_url": "https://gym.test/account"}, gym["opts"]), stripe.billing_portal.Session)


def walk_retrieve_product(sandbox, client, gym):
    conforms(client.v1.products.retrieve(gym["product"], None, gym["opts"]), stripe.Product)


def walk_create_product(sandbox, client, gym):
    conforms(client.v1.products.create({"name": "Spin", "description": "Indoor cycling",
                                        "metadata": {"customerhub_product_id": "spin"}}, gym["opts"]), stripe.Product)


def walk_list_subscriptions(sandbox, client, gym):
    for params in ({}, {"status": "all", "expand": ["data.customer"]}, {"customer": gym["customer"]}):
        listed = conforms(client.v1.subscriptions.list(params, gym["opts"]), ListObject[stripe.Subscription])
        assert [s["id"] for s in listed["data"]] == [gym["subscription"]]


def walk_retrieve_subscription(sandbox, client, gym):
    plain = conforms(client.v1.subscriptions.retrieve(gym["subscription"], None, gym["opts"]), stripe.Subscription)
    assert plain["customer"] == gym["customer"]
    expanded = conforms(client.v1.subscriptions.retrieve(gym["subscription"], {"expand": EXPANDED}, gym["opts"]),
                        stripe.Subscription)
    assert expanded["customer"]["id"] == gym["customer"]
    assert expanded["items"]["data"][0]["price"]["product"]["id"] == gym["product"]
    sandbox.delete_customer(gym["account"], gym["customer"])
    gone = conforms(client.v1.subscriptions.retrieve(gym["subscription"], {"expand": EXPANDED}, gym["opts"]),
                    stripe.Subscription)
    assert gone["customer"]["deleted"] is True


def walk_update_subscription(sandbox, client, gym):
    conforms(client.v1.subscriptions.update(gym["subscription"], {
        "cancel_at_period_end": True, "metadata": {"note": "moving away"}, "expand": EXPANDED}, gym["opts"]),
        stripe.Subscription)


def walk_cancel_subscription(sandbox, client, gym):
    canceled = conforms(client.v1.subscriptions.cancel(gym["subscription"], {"expand": ["customer"]}, gym["opts"]),
                        stripe.Subscription)
    assert canceled["status"] == "canceled"


def walk_list_subscription_items(sandbox, client, gym):
    for params in ({"subscription": gym["subscription"]},
                   {"subscription": gym["subscription"], "limit": 1, "expand": ["data.price.product"]}):
        conforms(client.v1.subscription_items.list(params, gym["opts"]), ListObject[stripe.SubscriptionItem])


def walk_list_invoices(sandbox, client, gym):
    owing = sandbox.create_subscription(gym["account"], gym["customer"], [gym["product"]], status="past_due")["id"]
    for params, expected in (({}, 2), ({"subscription": owing, "status": "open", "limit": 100}, 1),
                             ({"customer": gym["customer"], "status": "paid"}, 1)):
        listed = conforms(client.v1.invoices.list(params, gym["opts"]), ListObject[stripe.Invoice])
        assert len(listed["data"]) == expected and listed["url"] == "/v1/invoices"


def walk_retrieve_invoice(sandbox, client, gym):
    [invoice] = sandbox.invoices(gym["account"], subscription=gym["subscription"])
    assert conforms(client.v1.invoices.retrieve(invoice["id"], None, gym["opts"]), stripe.Invoice) == invoice


WALKS = {
    "_oauth_token": walk_oauth_token,
    "_oauth_deauthorize": walk_oauth_deauthorize,
    "_api_current_account": walk_current_account,
    "_api_retrieve_account": walk_retrieve_account,
    "_api_list_events": walk_list_events,
    "_api_retrieve_event": walk_retrieve_event,
    "_api_list_webhook_endpoints": walk_list_webhook_endpoints,
    "_api_create_webhook_endpoint": walk_create_webhook_endpoint,
    "_api_retrieve_webhook_endpoint": walk_retrieve_webhook_endpoint,
    "_api_update_webhook_endpoint": walk_update_webhook_endpoint,
    "_api_delete_webhook_endpoint": walk_delete_webhook_endpoint,
    "_api_list_customers": walk_list_customers,
    "_api_create_customer": walk_create_customer,
    "_api_retrieve_customer": walk_retrieve_customer,
    "_api_list_portal_configurations": walk_list_portal_configurations,
    "_api_create_portal_configuration": walk_create_portal_configuration,
    "_api_retrieve_portal_configuration": walk_retrieve_portal_configuration,
    "_api_update_portal_configuration": walk_update_portal_configuration,
    "_api_create_portal_session": walk_create_portal_session,
    "_api_retrieve_product": walk_retrieve_product,
    "_api_create_product": walk_create_product,
    "_api_list_subscriptions": walk_list_subscriptions,
    "_api_retrieve_subscription": walk_retrieve_subscription,
    "_api_update_subscription": walk_update_subscription,
    "_api_cancel_subscription": walk_cancel_subscription,
    "_api_list_subscription_items": walk_list_subscription_items,
    "_api_list_invoices": walk_list_invoices,
    "_api_retrieve_invoice": walk_retrieve_invoice,
}


def handler_of(request):
    for route in ROUTES:
        if route.method == request["method"] and route.pattern.match(request["path"]):
            return route.handler
    return None


def test_every_api_and_oauth_route_has_a_walk():
    assert set(WALKS) == {route.handler for route in ROUTES if route.kind in ("api", "oauth")}


@pytest.mark.parametrize("handler", sorted(WALKS))
def test_each_route_answers_what_its_stripe_python_class_declares(handler, sandbox, client, gym):
    before = len(sandbox.requests)
    WALKS[handler](sandbox, client, gym)
    assert handler in {handler_of(r) for r in sandbox.requests[before:]}


def test_webhooks_the_sandbox_signs_carry_events_and_objects_as_their_classes_declare(sandbox, client, gym,
                                                                                      webhooks):
    account, subscription = gym["account"], gym["subscription"]
    sandbox.update_account(account, display_name="Local Fitness & Spa")
    sandbox.update_subscription(account, subscription, status="past_due")
    sandbox.update_subscription(account, subscription, status="paused")
    sandbox.update_subscription(account, subscription, status="active")
    sandbox.renew_subscription(account, subscription)
    sandbox.renew_subscription(account, subscription, paid=False)
    sandbox.pay_open_invoices(account, subscription)
    client.v1.subscriptions.update(subscription, {"cancel_at_period_end": True}, gym["opts"])
    client.v1.subscriptions.cancel(subscription, None, gym["opts"])
    client.oauth.deauthorize({"stripe_user_id": account})
    assert sandbox.wait_for_webhooks(timeout=5)

    received, _ = webhooks
    types = []
    for body, header in received:
        event = stripe.Webhook.construct_event(body, header, WEBHOOK_SECRET)
        payload = json.loads(body)
        assert event_violations(payload) == []
        assert ("previous_attributes" in payload["data"]) == payload["type"].endswith(".updated")
        types.append(event.type)
    assert types == [
        "account.application.authorized", "customer.subscription.created", "account.updated",
        "customer.subscription.updated", "customer.subscription.paused", "customer.subscription.resumed",
        "customer.subscription.updated", "invoice.payment_failed", "customer.subscription.updated",
        "customer.subscription.updated", "customer.subscription.updated", "customer.subscription.deleted",
        "account.application.deauthorized"]


# ------------------------------------------------------------------ the values behind the fields

def test_a_new_subscription_is_flexible_anchored_at_its_start_and_uses_no_unmodelled_feature(sandbox, client, gym):
    body = raw(client.v1.subscriptions.retrieve(gym["subscription"], None, gym["opts"]))
    assert body["billing_mode"]["type"] == "flexible" and body["billing_cycle_anchor"] == body["start_date"]
    assert body["discounts"] == [] and body["automatic_tax"]["enabled"] is False
    assert body["invoice_settings"]["issuer"] == {"type": "self"} and body["latest_invoice"] is None
    assert body["trial_start"] is None and body["trial_end"] is None
    for item in body["items"]["data"]:
        assert item["plan"]["id"] == item["price"]["id"] and item["plan"]["amount"] == item["price"]["unit_amount"]
        assert item["discounts"] == [] and item["tax_rates"] == []
    trial = sandbox.create_subscription(gym["account"], gym["customer"], [gym["product"]], status="trialing")
    assert trial["trial_start"] == trial["start_date"]
    assert trial["trial_end"] == trial["items"]["data"][0]["current_period_end"]


def test_a_portal_configuration_fills_in_every_feature_the_request_left_out(client, gym):
    features = raw(client.v1.billing_portal.configurations.retrieve(gym["configuration"], None,
                                                                     gym["opts"]))["features"]
    assert features == {
        "customer_update": {"allowed_updates": [], "enabled": False},
        "invoice_history": {"enabled": True},
        "payment_method_update": {"enabled": False, "payment_method_configuration": None},
        "subscription_cancel": {
            "cancellation_reason": {"enabled": False, "options": ["too_expensive", "missing_features",
                                                                  "switched_service", "unused", "other"]},
            "enabled": False, "mode": "at_period_end", "proration_behavior": "none"},
        "subscription_pause": {"duration": {"interval_options": [{"interval": "month", "interval_count": 1}],
                                            "type": "interval_options"}, "enabled": False},
        "subscription_update": {"billing_cycle_anchor": "unchanged", "default_allowed_updates": [], "enabled": False,
                                "proration_behavior": "none", "schedule_at_period_end": {"conditions": []},
                                "trial_update_behavior": "end_trial"},
    }


def test_a_portal_configuration_update_merges_features_and_an_empty_string_empties_a_list(client, gym):
    configurations = client.v1.billing_portal.configurations
    configurations.update(gym["configuration"], {"features": {
        "customer_update": {"enabled": True, "allowed_updates": ["email"]},
        "subscription_update": {"enabled": True, "products": [{"product": gym["product"], "prices": ["price_x"]}]}}},
        gym["opts"])
    updated = configurations.update(gym["configuration"], {"features": {
        "customer_update": {"allowed_updates": ""},
        "subscription_pause": {"duration": {"type": "interval_options", "interval_options": [{"interval": "week"}]}},
    }}, gym["opts"])
    features = conforms(updated, Configuration)["features"]
    assert features["customer_update"] == {"allowed_updates": [], "enabled": True}
    assert features["subscription_pause"]["duration"]["interval_options"] == [{"interval": "week", "interval_count": 1}]
    assert features["invoice_history"] == {"enabled": True}
    # products is includable at Stripe: kept, and left out of answers.
    assert features["subscription_update"]["enabled"] is True and "products" not in features["subscription_update"]


def test_an_accounts_settings_have_stripes_defaults_for_what_the_sandbox_does_not_model(client, gym):
    settings = raw(client.v1.accounts.retrieve(gym["account"]))["settings"]
    assert settings["branding"] == {"icon": None, "logo": None, "primary_color": None, "secondary_color": None}
    assert settings["card_payments"]["decline_on"] == {"avs_failure": False, "cvc_failure": False}
    assert settings["payments"]["statement_descriptor"] is None
    assert settings["dashboard"] == {"display_name": "Local Fitness", "timezone": "Etc/UTC"}
