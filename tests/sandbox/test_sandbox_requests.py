"""What the Stripe sandbox refuses, as Stripe does: params that do not fit the
stripe-python TypedDict of their route, ids the account does not have, and
a Stripe-Account header on the platform's own endpoints. Driven by the real
stripe-python client, and by raw HTTP where the client cannot send the shape."""
import json
import typing
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest
import stripe

from local.stripe_sandbox import ROUTES
from local.stripe_sandbox.params import ROUTE_PARAMS, load_typed_dicts, resolve
from tests import helpers


@pytest.fixture
def client(sandbox):
    return stripe.StripeClient(helpers.SECRET_KEY, client_id=helpers.CLIENT_ID,
                               base_addresses={"api": sandbox.url, "connect": sandbox.url},
                               max_network_retries=0)


@pytest.fixture
def gym(sandbox, client):
    """A connected account with a customer, a product, a subscription and a
    portal configuration."""
    account = sandbox.create_account(display_name="Local Fitness")["id"]
    client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(account)})
    customer = sandbox.create_customer(account, email="member@localfitness.test")["id"]
    product = sandbox.create_product(account, name="Yoga")["id"]
    subscription = sandbox.create_subscription(account, customer, [product])["id"]
    opts = {"stripe_account": account}
    configuration = client.v1.billing_portal.configurations.create(
        {"features": {"invoice_history": {"enabled": True}}}, opts).id
    return {"account": account, "customer": customer, "product": product, "subscription": subscription,
            "configuration": configuration, "opts": opts}


def refused(call, error=stripe.InvalidRequestError):
    with pytest.raises(error) as caught:
        call()
    return caught.value


def raw(sandbox, method, path, fields, headers=None):
    """The answer to a hand-made request: status and JSON body."""
    body = urlencode(fields).encode()
    url = sandbox.url + path + ("" if method == "POST" else "?" + body.decode())
    request = urllib.request.Request(url, data=body if method == "POST" else None, method=method,
                                     headers={"Authorization": "Bearer " + helpers.SECRET_KEY, **(headers or {})})
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as answer:
        return answer.code, json.loads(answer.read())


# ------------------------------------------------------------ the route table

def test_every_api_and_oauth_route_has_a_typed_dict_to_check_its_params():
    checked = {route.handler for route in ROUTES if route.kind in ("api", "oauth")}
    assert set(ROUTE_PARAMS) == checked
    for handler, route in ROUTE_PARAMS.items():
        typed_dict = resolve(route.typed_dict)
        names = typing.get_type_hints(typed_dict, localns={"StripeContext": stripe.StripeContext,
                                                           "Mapping": typing.Mapping})
        assert set(route.handled or ()) <= set(names), handler


def test_every_type_the_mapped_typed_dicts_use_is_one_the_check_knows():
    load_typed_dicts()


# ------------------------------------------------------------ unknown params

@pytest.mark.parametrize("name, call, param", [
    ("customers", lambda c, g: c.v1.customers.list({"colour": "red"}, g["opts"]), "colour"),
    ("products", lambda c, g: c.v1.products.create({"name": "Pilates", "colour": "red"}, g["opts"]), "colour"),
    ("subscriptions", lambda c, g: c.v1.subscriptions.update(g["subscription"], {"colour": "red"}, g["opts"]),
     "colour"),
    ("subscription items", lambda c, g: c.v1.subscription_items.list(
        {"subscription": g["subscription"], "colour": "red"}, g["opts"]), "colour"),
    ("portal configurations", lambda c, g: c.v1.billing_portal.configurations.update(
        g["configuration"], {"features": {"invoice_history": {"enabled": True, "colour": "red"}}}, g["opts"]),
     "features[invoice_history][colour]"),
    ("portal sessions", lambda c, g: c.v1.billing_portal.sessions.create(
        {"customer": g["customer"], "configuration": g["configuration"], "flow_data": {"colour": "red"}},
        g["opts"]), "flow_data[colour]"),
    ("events", lambda c, g: c.v1.events.list({"created": {"since": 5}}, g["opts"]), "created[since]"),
    ("accounts", lambda c, g: c.v1.accounts.retrieve(g["account"], {"colour": "red"}), "colour"),
    ("subscription list", lambda c, g: c.v1.subscriptions.list(
        {"cancellation_details": {"comment": "x"}}, g["opts"]), "cancellation_details"),
])
def test_an_unknown_param_is_refused_with_parameter_unknown_and_its_bracket_name(client, gym, name, call, param):
    error = refused(lambda: call(client, gym))
    assert error.http_status == 400 and error.code == "parameter_unknown" and error.param == param
    assert error.user_message == "Received unknown parameter: %s" % param


def test_an_unknown_param_on_oauth_token_is_an_oauth_invalid_request(sandbox, client, gym):
    error = refused(lambda: client.oauth.token({"grant_type": "authorization_code", "code": "ac_x",
                                                "colour": "red"}), stripe.oauth_error.InvalidRequestError)
    assert error.http_status == 400 and "Received unknown parameter: colour" in error.user_message


def test_a_malformed_bracket_key_is_an_unknown_param(sandbox, gym):
    status, body = raw(sandbox, "GET", "/v1/customers", {"email[": "a"}, {"Stripe-Account": gym["account"]})
    assert status == 400 and body["error"]["code"] == "parameter_unknown" and body["error"]["param"] == "email["


# ------------------------------------------------------------ wrong types

@pytest.mark.parametrize("call, param, message, code", [
    (lambda c, g: c.v1.customers.list({"limit": "ten"}, g["opts"]), "limit", "Invalid integer: ten",
     "parameter_invalid_integer"),
    (lambda c, g: c.v1.subscriptions.update(g["subscription"], {"proration_date": "soon"}, g["opts"]),
     "proration_date", "Invalid integer: soon", "parameter_invalid_integer"),
    (lambda c, g: c.v1.events.list({"delivery_success": "maybe"}, g["opts"]), "delivery_success",
     "Invalid boolean: maybe", None),
    (lambda c, g: c.v1.billing_portal.configurations.update(
        g["configuration"], {"features": {"invoice_history": {"enabled": "yes"}}}, g["opts"]),
     "features[invoice_history][enabled]", "Invalid boolean: yes", None),
    (lambda c, g: c.v1.subscriptions.retrieve(g["subscription"], {"expand": "customer"}, g["opts"]), "expand",
     "Invalid array", None),
    (lambda c, g: c.v1.products.create({"name": "Pilates", "metadata": "vip"}, g["opts"]), "metadata",
     "Invalid hash", None),
    (lambda c, g: c.v1.billing_portal.configurations.create({"features": "all"}, g["opts"]), "features",
     "Invalid hash", None),
    (lambda c, g: c.v1.subscriptions.list({"created": {"gte": "yesterday"}}, g["opts"]), "created[gte]",
     "Invalid integer: yesterday", "parameter_invalid_integer"),
])
def test_a_value_of_the_wrong_type_is_refused_with_stripes_message(client, gym, call, param, message, code):
    error = refused(lambda: call(client, gym))
    assert (error.http_status, error.param, error.user_message, error.code) == (400, param, message, code)


def test_an_empty_string_unsets_only_a_param_that_can_be_unset(sandbox, client, gym):
    error = refused(lambda: client.v1.products.create({"name": ""}, gym["opts"]))
    assert error.code == "parameter_invalid_empty" and error.param == "name"
    assert error.user_message.startswith("You passed an empty string for 'name'.")
    sandbox.update_subscription(gym["account"], gym["subscription"], cancel_at=2_000_000_000)
    unset = client.v1.subscriptions.update(gym["subscription"], {"cancel_at": ""}, gym["opts"])
    assert unset.cancel_at is None


# ------------------------------------------------------------ values outside an enum

@pytest.mark.parametrize("call, param, choices", [
    (lambda c, g: c.v1.subscriptions.list({"status": "sleeping"}, g["opts"]), "status",
     "active, all, canceled, ended, incomplete, incomplete_expired, past_due, paused, trialing, or unpaid"),
    (lambda c, g: c.v1.billing_portal.configurations.create(
        {"features": {"subscription_cancel": {"enabled": True, "mode": "sometimes"}}}, g["opts"]),
     "features[subscription_cancel][mode]", "at_period_end or immediately"),
    (lambda c, g: c.v1.subscriptions.update(g["subscription"], {"proration_behavior": "maybe"}, g["opts"]),
     "proration_behavior", "always_invoice, create_prorations, or none"),
    (lambda c, g: c.v1.subscriptions.update(g["subscription"], {"cancel_at": "someday"}, g["opts"]),
     "cancel_at", "max_billed_until, max_period_end, or min_period_end"),
])
def test_a_value_outside_the_enum_is_refused_with_the_allowed_values(client, gym, call, param, choices):
    error = refused(lambda: call(client, gym))
    assert error.http_status == 400 and error.param == param
    assert error.user_message == "Invalid %s: must be one of %s" % (param, choices)


def test_an_unknown_grant_type_is_refused_as_unsupported_grant_type(client):
    error = refused(lambda: client.oauth.token({"grant_type": "password", "code": "ac_x"}),
                    stripe.oauth_error.UnsupportedGrantTypeError)
    assert "must be one of authorization_code or refresh_token" in error.user_message


# ------------------------------------------------------------ missing required params

@pytest.mark.parametrize("call, param", [
    (lambda c, g: c.v1.products.create({"metadata": {"k": "v"}}, g["opts"]), "name"),
    (lambda c, g: c.v1.billing_portal.configurations.create({"metadata": {"k": "v"}}, g["opts"]), "features"),
    (lambda c, g: c.v1.billing_portal.configurations.create(
        {"features": {"subscription_cancel": {"mode": "immediately"}}}, g["opts"]),
     "features[subscription_cancel][enabled]"),
    (lambda c, g: c.v1.subscription_items.list({"limit": 3}, g["opts"]), "subscription"),
])
def test_a_missing_required_param_is_refused_with_parameter_missing(client, gym, call, param):
    error = refused(lambda: call(client, gym))
    assert error.http_status == 400 and error.code == "parameter_missing" and error.param == param
    assert error.user_message == "Missing required param: %s." % param


def test_deauthorize_without_an_account_is_an_oauth_invalid_request(client):
    error = refused(lambda: client.oauth.deauthorize({}), stripe.oauth_error.InvalidRequestError)
    assert error.user_message == "Missing required param: stripe_user_id."


# ------------------------------------------------------------ what a refusal leaves behind

def test_a_refused_request_changes_nothing_and_records_no_event(sandbox, client, gym):
    events, products = len(sandbox.events), sandbox.products(gym["account"])
    refused(lambda: client.v1.subscriptions.update(
        gym["subscription"], {"cancel_at_period_end": True, "colour": "red"}, gym["opts"]))
    refused(lambda: client.v1.products.create({"name": "Pilates", "shippable": "maybe"}, gym["opts"]))
    assert sandbox.subscription(gym["account"], gym["subscription"])["cancel_at_period_end"] is False
    assert len(sandbox.events) == events and sandbox.products(gym["account"]) == products


def test_a_refused_request_stores_no_idempotent_answer(client, gym):
    opts = dict(gym["opts"], idempotency_key="create-pilates")
    refused(lambda: client.v1.products.create({"name": "Pilates", "colour": "red"}, opts))
    assert client.v1.products.create({"name": "Pilates"}, opts).name == "Pilates"


def test_a_param_stripe_knows_but_the_sandbox_does_not_carry_out_is_refused_by_name(client, gym):
    error = refused(lambda: client.v1.subscriptions.list({"plan": "price_x"}, gym["opts"]))
    assert error.http_status == 400 and error.param == "plan" and error.code is None
    assert "does not carry it out" in error.user_message


def test_oauth_token_takes_the_key_as_client_secret_as_stripes_curl_examples_do(sandbox):
    account = sandbox.create_account()["id"]
    status, body = raw(sandbox, "POST", "/oauth/token", {
        "grant_type": "authorization_code", "code": sandbox.issue_code(account),
        "client_secret": helpers.SECRET_KEY}, {"Authorization": ""})
    assert status == 200 and body["stripe_user_id"] == account


# ------------------------------------------------------------ ids the account does not have

@pytest.mark.parametrize("kind, object_id, call", [
    ("customer", "cus_missing", lambda c, g: c.v1.customers.retrieve("cus_missing", {}, g["opts"])),
    ("product", "prod_missing", lambda c, g: c.v1.products.retrieve("prod_missing", {}, g["opts"])),
    ("subscription", "sub_missing", lambda c, g: c.v1.subscriptions.retrieve("sub_missing", {}, g["opts"])),
    ("subscription", "sub_missing", lambda c, g: c.v1.subscriptions.update(
        "sub_missing", {"metadata": {"k": "v"}}, g["opts"])),
    ("subscription", "sub_missing", lambda c, g: c.v1.subscriptions.cancel("sub_missing", {}, g["opts"])),
    ("configuration", "bpc_missing", lambda c, g: c.v1.billing_portal.configurations.retrieve(
        "bpc_missing", {}, g["opts"])),
    ("configuration", "bpc_missing", lambda c, g: c.v1.billing_portal.configurations.update(
        "bpc_missing", {"active": False}, g["opts"])),
    ("event", "evt_missing", lambda c, g: c.v1.events.retrieve("evt_missing", {}, g["opts"])),
])
def test_an_id_in_the_path_the_account_does_not_have_is_resource_missing_404(client, gym, kind, object_id, call):
    error = refused(lambda: call(client, gym))
    assert (error.http_status, error.code, error.param) == (404, "resource_missing", "id")
    assert error.user_message == "No such %s: '%s'" % (kind, object_id)


@pytest.mark.parametrize("kind, param, call", [
    ("customer", "customer", lambda c, g: c.v1.billing_portal.sessions.create(
        {"customer": "cus_missing", "configuration": g["configuration"]}, g["opts"])),
    ("configuration", "configuration", lambda c, g: c.v1.billing_portal.sessions.create(
        {"customer": g["customer"], "configuration": "bpc_missing"}, g["opts"])),
    ("customer", "customer", lambda c, g: c.v1.subscriptions.list({"customer": "cus_missing"}, g["opts"])),
    ("price", "price", lambda c, g: c.v1.subscriptions.list({"price": "price_missing"}, g["opts"])),
    ("subscription", "subscription", lambda c, g: c.v1.subscription_items.list(
        {"subscription": "sub_missing"}, g["opts"])),
    ("customer", "starting_after", lambda c, g: c.v1.customers.list({"starting_after": "cus_missing"}, g["opts"])),
    ("subscription", "starting_after", lambda c, g: c.v1.subscriptions.list(
        {"starting_after": "sub_missing"}, g["opts"])),
    ("event", "ending_before", lambda c, g: c.v1.events.list({"ending_before": "evt_missing"}, g["opts"])),
    ("billing_portal.configuration", "starting_after", lambda c, g: c.v1.billing_portal.configurations.list(
        {"starting_after": "bpc_missing"}, g["opts"])),
    ("subscription_item", "starting_after", lambda c, g: c.v1.subscription_items.list(
        {"subscription": g["subscription"], "starting_after": "si_missing"}, g["opts"])),
])
def test_an_id_given_as_a_param_the_account_does_not_have_is_resource_missing_400(client, gym, kind, param, call):
    error = refused(lambda: call(client, gym))
    assert (error.http_status, error.code, error.param) == (400, "resource_missing", param)
    assert error.user_message.startswith("No such %s: '" % kind)


def test_an_object_of_another_account_is_missing_on_this_one(sandbox, client, gym):
    other = sandbox.create_account()["id"]
    client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(other)})
    error = refused(lambda: client.v1.customers.retrieve(gym["customer"], {}, {"stripe_account": other}))
    assert (error.http_status, error.code) == (404, "resource_missing")
    error = refused(lambda: client.v1.subscriptions.list({"customer": gym["customer"]}, {"stripe_account": other}))
    assert (error.http_status, error.code, error.param) == (400, "resource_missing", "customer")


def test_an_account_the_platform_cannot_reach_is_a_permission_error_as_at_stripe(client, gym):
    # Stripe answers account_invalid (403), not resource_missing, for an
    # account that is not connected or does not exist; the connector reads
    # that as "no longer connected".
    for call in (lambda: client.v1.accounts.retrieve("acct_missing"),
                 lambda: client.v1.customers.list({}, {"stripe_account": "acct_missing"})):
        error = refused(call, stripe.PermissionError)
        assert (error.http_status, error.json_body["error"]["code"]) == (403, "account_invalid")


# ------------------------------------------------------------ platform-only endpoints

def test_oauth_token_with_stripe_account_is_refused_and_the_code_stays_unused(sandbox, client, gym):
    account = sandbox.create_account()["id"]
    code = sandbox.issue_code(account)
    error = refused(lambda: client.oauth.token({"grant_type": "authorization_code", "code": code}, gym["opts"]),
                    stripe.oauth_error.InvalidRequestError)
    assert error.http_status == 400 and "Stripe-Account" in error.user_message
    assert not sandbox.is_connected(account)
    assert client.oauth.token({"grant_type": "authorization_code", "code": code}).stripe_user_id == account


def test_oauth_deauthorize_with_stripe_account_is_refused_and_the_account_stays_connected(sandbox, client, gym):
    events = len(sandbox.events)
    error = refused(lambda: client.oauth.deauthorize({"stripe_user_id": gym["account"]}, gym["opts"]),
                    stripe.oauth_error.InvalidRequestError)
    assert error.http_status == 400 and "Stripe-Account" in error.user_message
    assert sandbox.is_connected(gym["account"]) and len(sandbox.events) == events


def test_the_platform_only_refusal_comes_in_the_oauth_error_shape(sandbox, gym):
    status, body = raw(sandbox, "POST", "/oauth/deauthorize",
                       {"client_id": helpers.CLIENT_ID, "stripe_user_id": gym["account"]},
                       {"Stripe-Account": gym["account"]})
    assert status == 400 and body["error"] == "invalid_request" and "Stripe-Account" in body["error_description"]
