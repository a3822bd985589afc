"""Products and subscriptions in the Stripe sandbox, driven by the real stripe-python client."""
import json
import re
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest
import stripe

from tests.sandbox.conftest import NOW

DAY = 24 * 3600


def connect(sandbox, client, **account_fields):
    account = sandbox.create_account(**account_fields)
    client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(account["id"])})
    return account["id"]


@pytest.fixture
def gym(sandbox, stripe_client, clock):
    """A connected account with a customer, a product and a subscription to it."""
    account_id = connect(sandbox, stripe_client, display_name="Local Fitness")
    customer = sandbox.create_customer(account_id, email="member@localfitness.test", metadata={"user": "u1"})
    product = sandbox.create_product(account_id, name="Yoga", metadata={"customerhub_product_id": "yoga"})
    subscription = sandbox.create_subscription(account_id, customer["id"], [product["id"]])
    return {"account": account_id, "customer": customer["id"], "product": product["id"],
            "subscription": subscription["id"], "opts": {"stripe_account": account_id}}


def types_after(sandbox, count):
    return [e["type"] for e in sandbox.events[count:]]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def post(url, fields=None, json_answer=False):
    """A form POST as a browser (redirects not followed) or curl with Accept: application/json."""
    headers = {"Accept": "application/json"} if json_answer else {}
    request = urllib.request.Request(url, data=urlencode(fields or {}).encode(), method="POST", headers=headers)
    try:
        return urllib.request.build_opener(_NoRedirects).open(request)
    except urllib.error.HTTPError as answer:
        return answer


def get_page(url):
    with urllib.request.urlopen(url) as answer:
        return answer.read().decode()


# ------------------------------------------------------------- retrieve

def test_retrieve_expands_customer_and_product_into_objects(sandbox, stripe_client, gym):
    sub = stripe_client.v1.subscriptions.retrieve(
        gym["subscription"], {"expand": ["customer", "items.data.price.product"]}, gym["opts"])
    assert sub.object == "subscription" and sub.status == "active"
    assert sub.customer.id == gym["customer"] and sub.customer.metadata.user == "u1"
    item = sub["items"].data[0]
    assert item.price.product.id == gym["product"] and item.price.product.metadata.customerhub_product_id == "yoga"
    assert item.price.product.name == "Yoga" and item.price.recurring.interval == "month"
    assert sandbox.requests_to("GET", "/v1/subscriptions/")[-1]["query"]["expand"] == [
        "customer", "items.data.price.product"]


def test_retrieve_without_expand_has_ids_and_the_period_only_on_items(stripe_client, gym, clock):
    sub = stripe_client.v1.subscriptions.retrieve(gym["subscription"], {}, gym["opts"])
    assert sub.customer == gym["customer"]
    raw = sub.to_dict()
    assert "current_period_end" not in raw and "current_period_start" not in raw
    [item] = raw["items"]["data"]
    assert item["price"]["product"] == gym["product"] and item["subscription"] == gym["subscription"]
    assert (item["current_period_start"], item["current_period_end"]) == (NOW, NOW + 30 * DAY)
    assert "total_count" not in raw["items"]  # Stripe sends it, but stripe-python does not declare it
    assert raw["items"]["url"] == "/v1/subscription_items?subscription=%s" % gym["subscription"]
    assert raw["cancel_at_period_end"] is False and raw["cancel_at"] is None and raw["canceled_at"] is None
    assert raw["start_date"] == NOW and raw["created"] == NOW and raw["livemode"] is False


def test_expanding_items_data_price_changes_nothing(stripe_client, gym):
    sub = stripe_client.v1.subscriptions.retrieve(gym["subscription"], {"expand": ["items.data.price"]}, gym["opts"])
    assert sub["items"].data[0].price.product == gym["product"]


def test_unknown_expand_path_raises_invalid_request_error(stripe_client, gym):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscriptions.retrieve(gym["subscription"], {"expand": ["latest_invoice.charge"]},
                                                gym["opts"])
    assert caught.value.http_status == 400
    assert caught.value.user_message == "This property cannot be expanded (latest_invoice.charge)."


def test_subscription_of_another_account_is_resource_missing(sandbox, stripe_client, gym):
    other = connect(sandbox, stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscriptions.retrieve(gym["subscription"], {}, {"stripe_account": other})
    assert caught.value.http_status == 404 and caught.value.code == "resource_missing"
    assert caught.value.param == "id" and gym["subscription"] in caught.value.user_message


def test_forgotten_subscription_is_resource_missing_and_records_no_event(sandbox, stripe_client, gym):
    before = len(sandbox.events)
    sandbox.forget_subscription(gym["account"], gym["subscription"])
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscriptions.retrieve(gym["subscription"], {}, gym["opts"])
    assert caught.value.http_status == 404 and caught.value.code == "resource_missing"
    assert types_after(sandbox, before) == []
    with pytest.raises(KeyError):
        sandbox.subscription(gym["account"], gym["subscription"])


def test_deleted_customer_expands_to_the_deleted_stub(sandbox, stripe_client, gym):
    sandbox.delete_customer(gym["account"], gym["customer"])
    sub = stripe_client.v1.subscriptions.retrieve(gym["subscription"], {"expand": ["customer"]}, gym["opts"])
    assert sub.customer.to_dict() == {"id": gym["customer"], "object": "customer", "deleted": True}
    assert stripe_client.v1.customers.retrieve(gym["customer"], {}, gym["opts"]).deleted is True
    assert stripe_client.v1.customers.list({}, gym["opts"]).data == []
    assert sub.status == "active"


def test_injected_failure_on_the_retrieve_path_matches_a_get_with_a_query(sandbox, stripe_client, gym):
    path = "/v1/subscriptions/" + gym["subscription"]
    sandbox.fail_next("GET", path, 500, should_retry=False)
    with pytest.raises(stripe.APIError) as caught:
        stripe_client.v1.subscriptions.retrieve(gym["subscription"], {"expand": ["customer"]}, gym["opts"])
    assert caught.value.http_status == 500
    assert stripe_client.v1.subscriptions.retrieve(gym["subscription"], {"expand": ["customer"]},
                                                   gym["opts"]).customer.id == gym["customer"]
    assert len(sandbox.requests_to("GET", path)) == 2


def test_livemode_of_subscription_and_event_follow_the_account(sandbox, stripe_client):
    account_id = connect(sandbox, stripe_client, livemode=True)
    customer = sandbox.create_customer(account_id)
    product = sandbox.create_product(account_id, name="Live")
    sub = sandbox.create_subscription(account_id, customer["id"], [product["id"]])
    assert sub["livemode"] is True and product["livemode"] is True
    assert sandbox.events[-1]["livemode"] is True


# ---------------------------------------------------------- state helpers

def test_create_records_created_with_the_unexpanded_subscription(sandbox, gym):
    event = sandbox.events[-1]
    assert event["type"] == "customer.subscription.created" and event["account"] == gym["account"]
    assert event["data"]["object"] == sandbox.subscription(gym["account"], gym["subscription"])
    assert event["data"]["object"]["customer"] == gym["customer"]
    assert event["data"]["object"]["items"]["data"][0]["price"]["product"] == gym["product"]
    assert "previous_attributes" not in event["data"]


def test_create_takes_status_periods_metadata_and_cancel_flags(sandbox, gym, clock):
    sub = sandbox.create_subscription(gym["account"], gym["customer"], [gym["product"]], status="trialing",
                                      period_start=NOW - DAY, period_end=NOW + 7 * DAY, metadata={"k": "v"},
                                      cancel_at_period_end=True, cancel_at=NOW + 9 * DAY, id="sub_custom")
    assert sub["id"] == "sub_custom" and sub["status"] == "trialing" and sub["metadata"] == {"k": "v"}
    assert sub["cancel_at_period_end"] is True and sub["canceled_at"] == NOW and sub["cancel_at"] == NOW + 9 * DAY
    item = sub["items"]["data"][0]
    assert (item["current_period_start"], item["current_period_end"]) == (NOW - DAY, NOW + 7 * DAY)


def test_helpers_raise_key_error_for_unknown_objects_and_value_error_for_bad_input(sandbox, gym):
    with pytest.raises(KeyError):
        sandbox.create_product("acct_unknown", name="x")
    with pytest.raises(KeyError):
        sandbox.create_subscription(gym["account"], "cus_unknown", [gym["product"]])
    with pytest.raises(KeyError):
        sandbox.create_subscription(gym["account"], gym["customer"], ["prod_unknown"])
    with pytest.raises(KeyError):
        sandbox.update_subscription(gym["account"], "sub_unknown", status="past_due")
    with pytest.raises(KeyError):
        sandbox.renew_subscription(gym["account"], "sub_unknown")
    with pytest.raises(KeyError):
        sandbox.update_product(gym["account"], "prod_unknown", name="x")
    with pytest.raises(ValueError):
        sandbox.create_subscription(gym["account"], gym["customer"], [gym["product"]], status="happy")
    with pytest.raises(ValueError):
        sandbox.update_subscription(gym["account"], gym["subscription"], quantity=2)


def test_helpers_answer_copies(sandbox, gym):
    sandbox.subscription(gym["account"], gym["subscription"])["status"] = "past_due"
    sandbox.products(gym["account"])[0]["name"] = "changed"
    assert sandbox.subscription(gym["account"], gym["subscription"])["status"] == "active"
    assert sandbox.products(gym["account"])[0]["name"] == "Yoga"


def test_update_product_merges_metadata(sandbox, gym):
    product = sandbox.update_product(gym["account"], gym["product"], metadata={"customerhub_product_id": "",
                                                                               "other": "1"}, name="Hot yoga")
    assert product["metadata"] == {"other": "1"} and product["name"] == "Hot yoga"


def test_status_change_records_updated_with_the_old_status(sandbox, gym):
    before = len(sandbox.events)
    sub = sandbox.update_subscription(gym["account"], gym["subscription"], status="past_due")
    assert sub["status"] == "past_due"
    [event] = sandbox.events[before:]
    assert event["type"] == "customer.subscription.updated"
    assert event["data"]["previous_attributes"] == {"status": "active"}
    assert event["data"]["object"]["status"] == "past_due"


def test_events_after_a_count_are_those_recorded_since_oldest_first(sandbox, gym):
    before = len(sandbox.events_after(0))
    sandbox.update_subscription(gym["account"], gym["subscription"], status="past_due")
    sandbox.cancel_subscription(gym["account"], gym["subscription"])
    assert sandbox.events_after(before) == sandbox.events[before:]
    assert [e["type"] for e in sandbox.events_after(before)] == ["customer.subscription.updated",
                                                                 "customer.subscription.deleted"]


def test_pausing_records_paused_and_resuming_records_resumed(sandbox, gym):
    before = len(sandbox.events)
    sandbox.update_subscription(gym["account"], gym["subscription"], status="paused")
    sandbox.update_subscription(gym["account"], gym["subscription"], status="active")
    assert types_after(sandbox, before) == ["customer.subscription.paused", "customer.subscription.resumed"]
    assert [e["data"]["object"]["status"] for e in sandbox.events[before:]] == ["paused", "active"]


def test_cancel_at_period_end_sets_canceled_at_and_undoing_clears_it(sandbox, gym, clock):
    before = len(sandbox.events)
    clock[0] += 60
    sub = sandbox.update_subscription(gym["account"], gym["subscription"], cancel_at_period_end=True)
    assert sub["cancel_at_period_end"] is True and sub["canceled_at"] == NOW + 60 and sub["status"] == "active"
    sub = sandbox.update_subscription(gym["account"], gym["subscription"], cancel_at_period_end=False)
    assert sub["cancel_at_period_end"] is False and sub["canceled_at"] is None
    events = sandbox.events[before:]
    assert [e["type"] for e in events] == ["customer.subscription.updated"] * 2
    assert events[0]["data"]["previous_attributes"] == {"cancel_at_period_end": False, "canceled_at": None}
    assert events[1]["data"]["previous_attributes"] == {"cancel_at_period_end": True, "canceled_at": NOW + 60}


def test_cancel_at_and_metadata_changes_list_only_what_changed(sandbox, gym):
    sandbox.update_subscription(gym["account"], gym["subscription"], metadata={"a": "1", "b": "2"})
    sub = sandbox.update_subscription(gym["account"], gym["subscription"], metadata={"a": "", "c": "3"},
                                      cancel_at=NOW + DAY)
    assert sub["metadata"] == {"b": "2", "c": "3"} and sub["cancel_at"] == NOW + DAY
    assert sandbox.events[-1]["data"]["previous_attributes"] == {"cancel_at": None,
                                                                 "metadata": {"a": "1", "c": None}}


def test_an_update_that_changes_nothing_records_no_event(sandbox, gym):
    before = len(sandbox.events)
    sandbox.update_subscription(gym["account"], gym["subscription"], status="active", cancel_at=None)
    assert types_after(sandbox, before) == []


def test_products_replace_keeps_staying_items_and_adds_new_ones_in_the_current_period(sandbox, gym, clock):
    pilates = sandbox.create_product(gym["account"], name="Pilates")["id"]
    spin = sandbox.create_product(gym["account"], name="Spin")["id"]
    sub = sandbox.update_subscription(gym["account"], gym["subscription"], products=[gym["product"], pilates])
    [yoga_item, pilates_item] = sub["items"]["data"]
    clock[0] += DAY
    sub = sandbox.update_subscription(gym["account"], gym["subscription"], products=[pilates, spin])
    assert [i["price"]["product"] for i in sub["items"]["data"]] == [pilates, spin]
    assert sub["items"]["data"][0]["id"] == pilates_item["id"] and len(sub["items"]["data"]) == 2
    assert {(i["current_period_start"], i["current_period_end"]) for i in sub["items"]["data"]} == {
        (NOW, NOW + 30 * DAY)}
    previous = sandbox.events[-1]["data"]["previous_attributes"]
    assert list(previous) == ["items"]
    assert [i["id"] for i in previous["items"]["data"]] == [yoga_item["id"], pilates_item["id"]]


def test_period_end_update_moves_every_item(sandbox, gym):
    pilates = sandbox.create_product(gym["account"], name="Pilates")["id"]
    sandbox.update_subscription(gym["account"], gym["subscription"], products=[gym["product"], pilates])
    sub = sandbox.update_subscription(gym["account"], gym["subscription"], period_end=NOW + 5)
    assert [i["current_period_end"] for i in sub["items"]["data"]] == [NOW + 5, NOW + 5]
    assert sandbox.events[-1]["data"]["previous_attributes"]["items"]["data"][0]["current_period_end"] == \
        NOW + 30 * DAY


def test_renew_moves_the_period_on_and_makes_past_due_active(sandbox, gym):
    sandbox.update_subscription(gym["account"], gym["subscription"], status="past_due")
    before = len(sandbox.events)
    sub = sandbox.renew_subscription(gym["account"], gym["subscription"])
    item = sub["items"]["data"][0]
    assert (item["current_period_start"], item["current_period_end"]) == (NOW + 30 * DAY, NOW + 60 * DAY)
    assert sub["status"] == "active"
    [event] = sandbox.events[before:]
    assert event["type"] == "customer.subscription.updated"
    assert event["data"]["previous_attributes"]["status"] == "past_due"
    assert event["data"]["previous_attributes"]["items"]["data"][0]["current_period_end"] == NOW + 30 * DAY
    sub = sandbox.renew_subscription(gym["account"], gym["subscription"], period_end=NOW + 90 * DAY)
    assert sub["items"]["data"][0]["current_period_start"] == NOW + 60 * DAY
    assert sub["items"]["data"][0]["current_period_end"] == NOW + 90 * DAY


def test_renewing_a_subscription_set_to_cancel_at_period_end_cancels_it(sandbox, gym, clock):
    sandbox.update_subscription(gym["account"], gym["subscription"], cancel_at_period_end=True)
    clock[0] += 30 * DAY
    sub = sandbox.renew_subscription(gym["account"], gym["subscription"])
    assert sub["status"] == "canceled" and sub["ended_at"] == NOW + 30 * DAY and sub["canceled_at"] == NOW
    assert sandbox.events[-1]["type"] == "customer.subscription.deleted"


def test_cancel_records_deleted_with_the_canceled_subscription(sandbox, gym, clock):
    clock[0] += 5
    before = len(sandbox.events)
    sub = sandbox.cancel_subscription(gym["account"], gym["subscription"])
    assert sub["status"] == "canceled" and sub["canceled_at"] == sub["ended_at"] == NOW + 5
    assert sub["cancel_at_period_end"] is False
    [event] = sandbox.events[before:]
    assert event["type"] == "customer.subscription.deleted" and event["data"]["object"] == sub
    with pytest.raises(ValueError):
        sandbox.cancel_subscription(gym["account"], gym["subscription"])


# ------------------------------------------------------------- list

def test_list_leaves_out_canceled_unless_asked_and_filters_by_customer(sandbox, stripe_client, gym):
    other = sandbox.create_customer(gym["account"], email="other@localfitness.test")["id"]
    second = sandbox.create_subscription(gym["account"], other, [gym["product"]])["id"]
    canceled = sandbox.create_subscription(gym["account"], gym["customer"], [gym["product"]])["id"]
    sandbox.cancel_subscription(gym["account"], canceled)
    listed = stripe_client.v1.subscriptions.list

    assert [s.id for s in listed({}, gym["opts"]).data] == [second, gym["subscription"]]
    assert [s.id for s in listed({"status": "all"}, gym["opts"]).data] == [canceled, second, gym["subscription"]]
    assert [s.id for s in listed({"status": "canceled"}, gym["opts"]).data] == [canceled]
    assert [s.id for s in listed({"customer": gym["customer"]}, gym["opts"]).data] == [gym["subscription"]]
    assert [s.id for s in listed({"customer": gym["customer"], "status": "all"}, gym["opts"]).data] == [
        canceled, gym["subscription"]]
    assert listed({"status": "past_due"}, gym["opts"]).data == []
    page = listed({"limit": 1}, gym["opts"])
    assert [s.id for s in page.data] == [second] and page.has_more
    rest = listed({"limit": 1, "starting_after": second}, gym["opts"])
    assert [s.id for s in rest.data] == [gym["subscription"]] and not rest.has_more
    other_account = connect(sandbox, stripe_client)
    assert listed({"status": "all"}, {"stripe_account": other_account}).data == []


def test_list_expands_with_the_data_prefix_only(stripe_client, gym):
    listed = stripe_client.v1.subscriptions.list({"expand": ["data.customer", "data.items.data.price"]},
                                                 gym["opts"])
    assert listed.data[0].customer.email == "member@localfitness.test"
    assert listed.data[0]["items"].data[0].price.product.startswith("prod_")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscriptions.list({"expand": ["customer"]}, gym["opts"])
    assert "data.customer" in caught.value.user_message


def test_an_expansion_deeper_than_four_levels_is_refused_as_stripe_does(stripe_client, gym):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscriptions.list({"expand": ["data.items.data.price.product"]}, gym["opts"])
    assert caught.value.http_status == 400
    assert caught.value.param == "expand"
    assert "more than 4 levels" in caught.value.user_message
    retrieved = stripe_client.v1.subscriptions.retrieve(
        gym["subscription"], {"expand": ["items.data.price.product"]}, gym["opts"])
    assert retrieved["items"].data[0].price.product.name == "Yoga"


def test_list_with_an_unknown_status_is_a_400(stripe_client, gym):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscriptions.list({"status": "happy"}, gym["opts"])
    assert caught.value.param == "status"


# ------------------------------------------------------ update and cancel

def test_api_update_sets_cancel_at_period_end_and_records_the_event_with_its_request(sandbox, stripe_client,
                                                                                     gym):
    sub = stripe_client.v1.subscriptions.update(gym["subscription"], {"cancel_at_period_end": True},
                                                gym["opts"])
    assert sub.cancel_at_period_end is True and sub.canceled_at == NOW
    event = sandbox.events[-1]
    assert event["type"] == "customer.subscription.updated"
    assert event["data"]["previous_attributes"] == {"cancel_at_period_end": False, "canceled_at": None}
    assert event["request"]["id"] == sub.last_response.request_id
    sub = stripe_client.v1.subscriptions.update(gym["subscription"], {"cancel_at_period_end": False},
                                                gym["opts"])
    assert sub.cancel_at_period_end is False and sub.canceled_at is None


def test_api_update_sets_and_clears_cancel_at_and_merges_metadata(sandbox, stripe_client, gym):
    sub = stripe_client.v1.subscriptions.update(
        gym["subscription"], {"cancel_at": NOW + DAY, "metadata": {"a": "1", "b": "2"}}, gym["opts"])
    assert sub.cancel_at == NOW + DAY and sub.metadata.to_dict() == {"a": "1", "b": "2"}
    sub = stripe_client.v1.subscriptions.update(
        gym["subscription"], {"cancel_at": "", "metadata": {"a": ""}, "expand": ["customer"]}, gym["opts"])
    assert sub.cancel_at is None and sub.metadata.to_dict() == {"b": "2"} and sub.customer.id == gym["customer"]
    assert sandbox.events[-1]["data"]["previous_attributes"] == {"cancel_at": NOW + DAY, "metadata": {"a": "1"}}
    assert sandbox.events[-1]["data"]["object"]["customer"] == gym["customer"]


def test_api_update_with_an_unknown_parameter_is_a_400(stripe_client, gym):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscriptions.update(gym["subscription"], {"quantity": 2}, gym["opts"])
    assert caught.value.param == "quantity"


def test_api_delete_cancels_now_and_a_second_cancel_is_resource_missing(sandbox, stripe_client, gym):
    sub = stripe_client.v1.subscriptions.cancel(gym["subscription"], {}, gym["opts"])
    assert sub.status == "canceled" and sub.ended_at == NOW
    assert sandbox.events[-1]["type"] == "customer.subscription.deleted"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscriptions.cancel(gym["subscription"], {}, gym["opts"])
    assert caught.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscriptions.update(gym["subscription"], {"cancel_at_period_end": True}, gym["opts"])
    assert "canceled subscription" in caught.value.user_message
    assert stripe_client.v1.subscriptions.update(gym["subscription"], {"metadata": {"k": "v"}},
                                                 gym["opts"]).metadata.k == "v"


# ---------------------------------------------------------------- products

def test_products_are_created_and_retrieved_on_their_own_account(sandbox, stripe_client, gym):
    product = stripe_client.v1.products.create({"name": "Pilates", "metadata": {"customerhub_product_id": "p"}},
                                               gym["opts"])
    assert product.id.startswith("prod_") and product.object == "product" and product.active is True
    fetched = stripe_client.v1.products.retrieve(product.id, {}, gym["opts"])
    assert fetched.name == "Pilates" and fetched.metadata.customerhub_product_id == "p"
    other = connect(sandbox, stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.products.retrieve(product.id, {}, {"stripe_account": other})
    assert caught.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.products.create({}, gym["opts"])
    assert caught.value.param == "name"


# ---------------------------------------------------------------- dashboard

def test_dashboard_form_creates_a_subscription_and_a_product_by_name_then_redirects(sandbox, gym, clock):
    answer = post(sandbox.url + "/dashboard/accounts/%s/subscriptions" % gym["account"], {
        "customer": "member@localfitness.test", "product": "Pilates", "product_metadata_id": "pilates",
        "period_seconds": "20", "cancel_at_period_end": "true"})
    assert answer.status == 303 and answer.headers["Location"] == "/"
    sub = sandbox.subscriptions(gym["account"])[-1]
    product = [p for p in sandbox.products(gym["account"]) if p["name"] == "Pilates"][0]
    assert sub["customer"] == gym["customer"] and sub["cancel_at_period_end"] is True
    assert sub["items"]["data"][0]["price"]["product"] == product["id"]
    assert sub["items"]["data"][0]["current_period_end"] == NOW + 20
    assert product["metadata"] == {"customerhub_product_id": "pilates"}
    assert sandbox.events[-1]["type"] == "customer.subscription.created"


def test_dashboard_subscription_endpoint_answers_json_for_curl_and_reuses_a_named_product(sandbox, gym):
    answer = post(sandbox.url + "/dashboard/accounts/%s/subscriptions" % gym["account"],
                  {"customer": gym["customer"], "product": "Yoga"}, json_answer=True)
    assert answer.status == 200
    sub = json.loads(answer.read())
    assert sub["object"] == "subscription" and sub["items"]["data"][0]["price"]["product"] == gym["product"]
    assert sub["items"]["data"][0]["current_period_end"] == NOW + 30 * DAY
    assert len(sandbox.products(gym["account"])) == 1
    by_id = json.loads(post(sandbox.url + "/dashboard/accounts/%s/subscriptions" % gym["account"],
                            {"customer": gym["customer"], "product": gym["product"]}, json_answer=True).read())
    assert by_id["items"]["data"][0]["price"]["product"] == gym["product"]


def test_dashboard_subscription_endpoint_refuses_an_unknown_customer(sandbox, gym):
    url = sandbox.url + "/dashboard/accounts/%s/subscriptions" % gym["account"]
    answer = post(url, {"customer": "nobody@localfitness.test", "product": "Yoga"}, json_answer=True)
    assert answer.status == 400 and "nobody@localfitness.test" in json.loads(answer.read())["error"]["message"]
    assert post(url, {"customer": "nobody@localfitness.test", "product": "Yoga"}).status == 400
    assert post(sandbox.url + "/dashboard/accounts/acct_none/subscriptions", {}).status == 404
    assert len(sandbox.subscriptions(gym["account"])) == 1


@pytest.mark.parametrize("action, status, flag, event", [
    ("cancel_at_period_end", "active", True, "customer.subscription.updated"),
    ("renew", "active", False, "customer.subscription.updated"),
    ("past_due", "past_due", False, "customer.subscription.updated"),
    ("unpaid", "unpaid", False, "customer.subscription.updated"),
    ("pause", "paused", False, "customer.subscription.paused"),
    ("cancel_now", "canceled", False, "customer.subscription.deleted"),
])
def test_dashboard_action_changes_the_subscription_and_records_its_event(sandbox, gym, action, status, flag,
                                                                         event):
    answer = post(sandbox.url + "/dashboard/subscriptions/%s/%s" % (gym["subscription"], action))
    assert answer.status == 303 and answer.headers["Location"] == "/"
    sub = sandbox.subscription(gym["account"], gym["subscription"])
    assert sub["status"] == status and sub["cancel_at_period_end"] is flag
    assert sandbox.events[-1]["type"] == event


def test_dashboard_undo_cancel_and_resume_answer_json(sandbox, gym):
    url = sandbox.url + "/dashboard/subscriptions/%s/" % gym["subscription"]
    sandbox.update_subscription(gym["account"], gym["subscription"], cancel_at_period_end=True,
                                cancel_at=NOW + DAY, status="paused")
    answer = post(url + "undo_cancel", json_answer=True)
    assert answer.status == 200
    sub = json.loads(answer.read())
    assert sub["cancel_at_period_end"] is False and sub["cancel_at"] is None and sub["canceled_at"] is None
    sub = json.loads(post(url + "resume", json_answer=True).read())
    assert sub["status"] == "active" and sandbox.events[-1]["type"] == "customer.subscription.resumed"
    renewed = json.loads(post(url + "renew", json_answer=True).read())
    assert renewed["items"]["data"][0]["current_period_end"] == NOW + 60 * DAY
    assert post(url + "explode", json_answer=True).status == 404
    assert post(sandbox.url + "/dashboard/subscriptions/sub_none/renew", json_answer=True).status == 404


def test_dashboard_action_on_a_canceled_subscription_is_refused(sandbox, gym):
    sandbox.cancel_subscription(gym["account"], gym["subscription"])
    answer = post(sandbox.url + "/dashboard/subscriptions/%s/renew" % gym["subscription"], json_answer=True)
    assert answer.status == 400 and "canceled" in json.loads(answer.read())["error"]["message"]


def test_dashboard_page_lists_products_and_subscriptions_with_their_buttons(sandbox, gym):
    sandbox.update_subscription(gym["account"], gym["subscription"], cancel_at_period_end=True)
    page = get_page(sandbox.url + "/")
    assert "Yoga" in page and gym["product"] in page and "customerhub_product_id=yoga" in page
    assert gym["subscription"] in page and "member@localfitness.test" in page
    assert "2030-04-16 17:46:40 UTC" in page and "cancels at period end" in page
    assert 'formaction="/dashboard/subscriptions/%s/undo_cancel"' % gym["subscription"] in page
    assert 'formaction="/dashboard/subscriptions/%s/cancel_at_period_end"' % gym["subscription"] not in page
    assert 'action="/dashboard/accounts/%s/subscriptions"' % gym["account"] in page


def test_dashboard_customer_endpoint_answers_json_for_curl(sandbox, gym):
    answer = post(sandbox.url + "/dashboard/accounts/%s/customers" % gym["account"],
                  {"email": "new@localfitness.test"}, json_answer=True)
    assert answer.status == 200 and json.loads(answer.read())["email"] == "new@localfitness.test"


# ------------------------------------------------------------- billing portal

def portal_session(stripe_client, gym, cancel):
    configuration = stripe_client.v1.billing_portal.configurations.create(
        {"features": {"subscription_cancel": cancel}}, gym["opts"])
    return stripe_client.v1.billing_portal.sessions.create(
        {"customer": gym["customer"], "configuration": configuration.id}, gym["opts"])


def cancel_forms(page):
    """A portal page's subscription controls: the link to a cancel's confirm
    step, and the forms that cancel (on that step) or keep a subscription."""
    return re.findall(r'(?:action|href)="(/p/session/[^"]+/subscriptions/[^"]+)"', page)


def test_portal_cancel_at_period_end_and_dont_cancel(sandbox, stripe_client, gym):
    session = portal_session(stripe_client, gym, {"enabled": True, "mode": "at_period_end"})
    [cancel] = cancel_forms(get_page(session.url))
    assert cancel == "/p/session/%s/subscriptions/%s/cancel" % (session.id, gym["subscription"])
    assert cancel_forms(get_page(sandbox.url + cancel)) == [cancel]
    assert sandbox.subscription(gym["account"], gym["subscription"])["cancel_at_period_end"] is False
    answer = post(sandbox.url + cancel)
    assert answer.status == 303 and answer.headers["Location"] == "/p/session/" + session.id
    sub = sandbox.subscription(gym["account"], gym["subscription"])
    assert sub["cancel_at_period_end"] is True and sub["status"] == "active"
    assert sandbox.events[-1]["type"] == "customer.subscription.updated"
    page = get_page(session.url)
    [keep] = cancel_forms(page)
    assert keep.endswith("/keep") and "Don\u2019t cancel" in page
    post(sandbox.url + keep)
    assert sandbox.subscription(gym["account"], gym["subscription"])["cancel_at_period_end"] is False


def test_portal_cancel_immediately_cancels_and_the_subscription_leaves_the_page(sandbox, stripe_client, gym):
    session = portal_session(stripe_client, gym, {"enabled": True, "mode": "immediately"})
    [cancel] = cancel_forms(get_page(session.url))
    assert post(sandbox.url + cancel).status == 303
    assert sandbox.subscription(gym["account"], gym["subscription"])["status"] == "canceled"
    assert sandbox.events[-1]["type"] == "customer.subscription.deleted"
    assert gym["subscription"] not in get_page(session.url)


def test_portal_without_subscription_cancel_shows_no_cancel_button_and_refuses_the_post(sandbox, stripe_client,
                                                                                      gym):
    session = portal_session(stripe_client, gym, {"enabled": False})
    page = get_page(session.url)
    assert gym["subscription"] in page and cancel_forms(page) == []
    answer = post(sandbox.url + "/p/session/%s/subscriptions/%s/cancel" % (session.id, gym["subscription"]))
    assert answer.status == 403
    assert sandbox.subscription(gym["account"], gym["subscription"])["cancel_at_period_end"] is False


def test_an_answer_embeds_ten_items_and_the_rest_are_listed_by_subscription(sandbox, stripe_client, gym):
    account_id = gym["account"]
    products = [sandbox.create_product(account_id, name="P%d" % n)["id"] for n in range(12)]
    customer = sandbox.create_customer(account_id, email="many@gym.test")["id"]
    subscription = sandbox.create_subscription(account_id, customer, products)
    answer = stripe_client.v1.subscriptions.retrieve(subscription["id"], {}, {"stripe_account": account_id})
    assert (len(answer["items"].data), answer["items"].has_more) == (10, True)
    first = stripe_client.v1.subscription_items.list(
        {"subscription": subscription["id"], "limit": 5, "expand": ["data.price.product"]},
        {"stripe_account": account_id})
    rest = stripe_client.v1.subscription_items.list(
        {"subscription": subscription["id"], "starting_after": first.data[-1].id},
        {"stripe_account": account_id})
    assert first.has_more and not rest.has_more
    assert first.data[0].price.product.object == "product"
    assert {i.price.product.id for i in first.data} | {i.price.product for i in rest.data} == set(products)
