"""Invoices as the connector reads them: GET /v1/invoices through the real
stripe-python client (its filters, newest-first paging, and what it
refuses), and a subscription falling behind on payment as Stripe's do,
leaving open invoices behind, from the Python API and the dashboard's buttons."""
import pytest
import requests
import stripe

from tests.sandbox.conformance import violations
from tests.sandbox.conftest import NOW
from tests.sandbox.test_sandbox_pages import Page, portal

DAY = 24 * 3600


@pytest.fixture
def gym(sandbox, stripe_client, clock):
    account = sandbox.create_account(display_name="Local Fitness Studio")["id"]
    stripe_client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(account)})
    customer = sandbox.create_customer(account, email="member@localfitness.test")["id"]
    product = sandbox.create_product(account, name="Yoga")["id"]
    subscription = sandbox.create_subscription(account, customer, [product])["id"]
    return {"account": account, "customer": customer, "product": product, "subscription": subscription,
            "opts": {"stripe_account": account}}


# ------------------------------------------------------------ what an invoice carries

@pytest.mark.parametrize("status", ["active", "past_due", "trialing", "incomplete", "incomplete_expired"])
def test_the_first_invoice_of_a_subscription_in_any_status_conforms_to_stripe_invoice(sandbox, gym, status):
    subscription = sandbox.create_subscription(gym["account"], gym["customer"], [gym["product"]], status=status)
    [invoice] = sandbox.invoices(gym["account"], subscription=subscription["id"])
    assert violations(invoice, stripe.Invoice) == []
    assert invoice["issuer"] == {"type": "self"} and invoice["automatic_tax"]["enabled"] is False
    # A trial's first invoice is for nothing.
    assert invoice["total_excluding_tax"] == invoice["total"] == (0 if status == "trialing" else 1500)


# ------------------------------------------------------------ GET /v1/invoices

def ids(listed):
    return [invoice.id for invoice in listed.data]


def renewed_monthly(sandbox, gym, clock, times):
    """The gym's subscription renewed `times` times, each as its period ends:
    its invoices, newest first."""
    for _ in range(times):
        clock[0] += 30 * DAY
        sandbox.renew_subscription(gym["account"], gym["subscription"])
    return [i["id"] for i in reversed(sandbox.invoices(gym["account"], subscription=gym["subscription"]))]


def test_the_open_invoices_of_one_subscription_are_listed_and_no_others(sandbox, stripe_client, gym):
    owing = sandbox.create_subscription(gym["account"], gym["customer"], [gym["product"]], status="past_due")["id"]
    neighbour = sandbox.create_customer(gym["account"], email="neighbour@localfitness.test")["id"]
    sandbox.create_subscription(gym["account"], neighbour, [gym["product"]], status="past_due")
    [open_invoice] = sandbox.invoices(gym["account"], subscription=owing)
    listed = stripe_client.v1.invoices.list({"subscription": owing, "status": "open", "limit": 100}, gym["opts"])
    assert ids(listed) == [open_invoice["id"]] and listed.has_more is False and listed.url == "/v1/invoices"
    [invoice] = listed.data
    assert isinstance(invoice, stripe.Invoice) and invoice.parent.subscription_details.subscription == owing
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == ("open", 0, 1500)
    assert invoice.status_transitions.paid_at is None and invoice.created == NOW


def test_invoices_are_listed_newest_first_and_filtered_by_customer_status_and_collection_method(
        sandbox, stripe_client, gym, clock):
    newest_first = renewed_monthly(sandbox, gym, clock, 2)
    other = sandbox.create_customer(gym["account"], email="other@localfitness.test")["id"]
    theirs = sandbox.create_subscription(gym["account"], other, [gym["product"]], status="past_due")["id"]
    [their_invoice] = sandbox.invoices(gym["account"], subscription=theirs)
    listed = stripe_client.v1.invoices.list
    assert ids(listed({}, gym["opts"])) == [their_invoice["id"]] + newest_first
    assert ids(listed({"customer": gym["customer"]}, gym["opts"])) == newest_first
    assert ids(listed({"status": "open"}, gym["opts"])) == [their_invoice["id"]]
    assert ids(listed({"customer": gym["customer"], "status": "open"}, gym["opts"])) == []
    assert ids(listed({"collection_method": "charge_automatically", "customer": other}, gym["opts"])) == [
        their_invoice["id"]]
    assert ids(listed({"collection_method": "send_invoice"}, gym["opts"])) == []


def test_created_filters_by_moment_or_range(sandbox, stripe_client, gym, clock):
    renewal, first = renewed_monthly(sandbox, gym, clock, 1)
    listed = stripe_client.v1.invoices.list
    assert ids(listed({"created": NOW}, gym["opts"])) == [first]
    assert ids(listed({"created": {"gt": NOW}}, gym["opts"])) == [renewal]
    assert ids(listed({"created": {"gte": NOW, "lt": NOW + 30 * DAY}}, gym["opts"])) == [first]
    assert ids(listed({"created": {"lte": NOW + 30 * DAY}}, gym["opts"])) == [renewal, first]


def test_pages_follow_starting_after_and_ending_before_until_has_more_is_false(sandbox, stripe_client, gym, clock):
    newest_first = renewed_monthly(sandbox, gym, clock, 4)
    opts, listed = gym["opts"], stripe_client.v1.invoices.list
    first = listed({"subscription": gym["subscription"], "limit": 2}, opts)
    assert ids(first) == newest_first[:2] and first.has_more is True
    second = listed({"subscription": gym["subscription"], "limit": 2, "starting_after": ids(first)[-1]}, opts)
    assert ids(second) == newest_first[2:4] and second.has_more is True
    last = listed({"subscription": gym["subscription"], "limit": 2, "starting_after": ids(second)[-1]}, opts)
    assert ids(last) == newest_first[4:] and last.has_more is False
    back = listed({"subscription": gym["subscription"], "limit": 2, "ending_before": ids(last)[0]}, opts)
    assert ids(back) == newest_first[2:4] and back.has_more is True
    walked = listed({"subscription": gym["subscription"], "limit": 2}, opts).auto_paging_iter()
    assert [invoice.id for invoice in walked] == newest_first


def test_an_invoice_of_another_account_is_neither_listed_nor_retrieved(sandbox, stripe_client, gym):
    other = sandbox.create_account(display_name="Other Studio")["id"]
    stripe_client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(other)})
    [invoice] = sandbox.invoices(gym["account"])
    assert ids(stripe_client.v1.invoices.list({}, {"stripe_account": other})) == []
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.invoices.retrieve(invoice["id"], None, {"stripe_account": other})
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (404, "resource_missing", "id")
    assert caught.value.user_message == "No such invoice: '%s'" % invoice["id"]


# ------------------------------------------------------------ what the list refuses

def refused(call):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("params, param, message", [
    ({"status": "overdue"}, "status", "Invalid status: must be one of draft, open, paid, uncollectible, or void"),
    ({"limit": 0}, "limit", "This value must be between 1 and 100 (it currently is 0)."),
    ({"limit": 101}, "limit", "This value must be between 1 and 100 (it currently is 101)."),
    ({"created": {"gte": "last week"}}, "created[gte]", "Invalid integer: last week"),
    ({"colour": "red"}, "colour", "Received unknown parameter: colour"),
])
def test_a_list_request_outside_what_stripe_takes_is_refused_with_stripes_message(stripe_client, gym, params, param,
                                                                                  message):
    error = refused(lambda: stripe_client.v1.invoices.list(params, gym["opts"]))
    assert (error.http_status, error.param, error.user_message) == (400, param, message)


@pytest.mark.parametrize("param, value, kind", [
    ("customer", "cus_missing", "customer"),
    ("subscription", "sub_missing", "subscription"),
    ("starting_after", "in_missing", "invoice"),
    ("ending_before", "in_missing", "invoice"),
])
def test_an_id_the_account_does_not_have_is_refused_as_resource_missing(stripe_client, gym, param, value, kind):
    error = refused(lambda: stripe_client.v1.invoices.list({param: value}, gym["opts"]))
    assert (error.http_status, error.code, error.param) == (400, "resource_missing", param)
    assert error.user_message == "No such %s: '%s'" % (kind, value)


@pytest.mark.parametrize("params, param", [
    ({"due_date": {"lt": NOW}}, "due_date"),
    ({"customer_account": "acct_x"}, "customer_account"),
    ({"expand": ["data.customer"]}, "expand"),
])
def test_a_param_stripe_takes_that_the_sandbox_does_not_carry_out_is_refused_by_name(stripe_client, gym, params,
                                                                                      param):
    error = refused(lambda: stripe_client.v1.invoices.list(params, gym["opts"]))
    assert error.http_status == 400 and error.param == param
    assert error.user_message.startswith("Stripe accepts %s here, but the sandbox does not carry it out" % param)


# ------------------------------------------------------------ falling behind on payment

def open_invoices(stripe_client, gym, subscription=None, **params):
    return stripe_client.v1.invoices.list({"subscription": subscription or gym["subscription"], "status": "open",
                                           "limit": 100, **params}, gym["opts"])


def test_an_unpaid_renewal_moves_every_period_on_makes_it_past_due_and_leaves_an_open_invoice(
        sandbox, stripe_client, gym, clock):
    pilates = sandbox.create_product(gym["account"], name="Pilates")["id"]
    sandbox.update_subscription(gym["account"], gym["subscription"], products=[gym["product"], pilates])
    clock[0] = NOW + 30 * DAY
    sandbox.renew_subscription(gym["account"], gym["subscription"], paid=False)
    sub = stripe_client.v1.subscriptions.retrieve(gym["subscription"], None, gym["opts"])
    assert sub.status == "past_due"
    assert [(i.current_period_start, i.current_period_end) for i in sub["items"].data] == [
        (NOW + 30 * DAY, NOW + 60 * DAY)] * 2
    [invoice] = open_invoices(stripe_client, gym).data
    assert (invoice.billing_reason, invoice.created, invoice.total) == ("subscription_cycle", NOW + 30 * DAY, 3000)
    assert (invoice.amount_paid, invoice.amount_remaining, invoice.status_transitions.paid_at) == (0, 3000, None)
    assert [(line.period.start, line.period.end) for line in invoice.lines.data] == [
        (NOW + 30 * DAY, NOW + 60 * DAY)] * 2
    event = sandbox.events[-1]
    assert event["type"] == "customer.subscription.updated"
    assert event["data"]["previous_attributes"]["status"] == "active"
    assert event["data"]["previous_attributes"]["items"]["data"][0]["current_period_end"] == NOW + 30 * DAY


def test_the_oldest_open_invoice_of_a_subscription_behind_for_two_periods_is_found_by_paging(
        sandbox, stripe_client, gym, clock):
    for month in (1, 2):
        clock[0] = NOW + month * 30 * DAY
        sandbox.renew_subscription(gym["account"], gym["subscription"], paid=False)
    assert sandbox.subscription(gym["account"], gym["subscription"])["status"] == "past_due"
    assert sandbox.events[-1]["data"]["previous_attributes"].keys() == {"items"}
    first_page = open_invoices(stripe_client, gym, limit=1)
    assert first_page.has_more is True and first_page.data[0].created == NOW + 60 * DAY
    rest = open_invoices(stripe_client, gym, limit=1, starting_after=first_page.data[0].id)
    assert rest.has_more is False and [i.created for i in rest.data] == [NOW + 30 * DAY]


def test_a_trial_whose_first_charge_fails_becomes_past_due(sandbox, gym):
    trial = sandbox.create_subscription(gym["account"], gym["customer"], [gym["product"]], status="trialing")["id"]
    assert sandbox.renew_subscription(gym["account"], trial, paid=False)["status"] == "past_due"
    assert [i["status"] for i in sandbox.invoices(gym["account"], subscription=trial)] == ["paid", "open"]


@pytest.mark.parametrize("status", ["unpaid", "paused", "incomplete"])
def test_an_unpaid_renewal_of_a_subscription_stripe_does_not_charge_is_refused_and_changes_nothing(
        sandbox, gym, status):
    sandbox.update_subscription(gym["account"], gym["subscription"], status=status)
    before, events = sandbox.subscription(gym["account"], gym["subscription"]), len(sandbox.events)
    with pytest.raises(ValueError, match="Stripe does not charge it at renewal"):
        sandbox.renew_subscription(gym["account"], gym["subscription"], paid=False)
    assert sandbox.subscription(gym["account"], gym["subscription"]) == before and len(sandbox.events) == events
    assert len(sandbox.invoices(gym["account"], subscription=gym["subscription"])) == 1


def test_an_unpaid_renewal_of_a_subscription_set_to_cancel_cancels_it_and_bills_nothing(sandbox, gym):
    sandbox.update_subscription(gym["account"], gym["subscription"], cancel_at_period_end=True)
    assert sandbox.renew_subscription(gym["account"], gym["subscription"], paid=False)["status"] == "canceled"
    assert sandbox.invoices(gym["account"], status="open") == []


def test_a_failed_payment_makes_it_past_due_with_an_invoice_made_now_and_the_period_unmoved(
        sandbox, stripe_client, gym, clock):
    clock[0] = NOW + 10 * DAY
    sandbox.fail_payment(gym["account"], gym["subscription"])
    sub = stripe_client.v1.subscriptions.retrieve(gym["subscription"], None, gym["opts"])
    assert sub.status == "past_due" and sub["items"].data[0].current_period_end == NOW + 30 * DAY
    [invoice] = open_invoices(stripe_client, gym).data
    assert (invoice.created, invoice.billing_reason, invoice.amount_remaining) == (
        NOW + 10 * DAY, "subscription_update", 1500)
    assert sandbox.events[-1]["data"]["previous_attributes"] == {"status": "active"}


@pytest.mark.parametrize("status", ["past_due", "trialing", "paused"])
def test_a_failed_payment_of_a_subscription_that_is_not_active_is_refused(sandbox, gym, status):
    sandbox.update_subscription(gym["account"], gym["subscription"], status=status)
    with pytest.raises(ValueError, match="only an active subscription's payment can fail"):
        sandbox.fail_payment(gym["account"], gym["subscription"])
    assert sandbox.invoices(gym["account"], status="open") == []


def test_a_paid_renewal_makes_a_past_due_subscription_active_and_the_earlier_invoice_stays_open(
        sandbox, stripe_client, gym, clock):
    sandbox.fail_payment(gym["account"], gym["subscription"])
    clock[0] = NOW + 30 * DAY
    renewed = sandbox.renew_subscription(gym["account"], gym["subscription"])
    assert renewed["status"] == "active"
    assert sandbox.events[-1]["data"]["previous_attributes"]["status"] == "past_due"
    newest = stripe_client.v1.invoices.list({"subscription": gym["subscription"], "limit": 1}, gym["opts"]).data[0]
    assert (newest.status, newest.billing_reason, newest.created) == ("paid", "subscription_cycle", NOW + 30 * DAY)
    assert [i.created for i in open_invoices(stripe_client, gym).data] == [NOW]


def test_paying_the_open_invoices_settles_each_and_makes_the_subscription_active(sandbox, stripe_client, gym, clock):
    sandbox.fail_payment(gym["account"], gym["subscription"])
    clock[0] = NOW + 30 * DAY
    sandbox.renew_subscription(gym["account"], gym["subscription"], paid=False)
    clock[0] = NOW + 33 * DAY
    assert sandbox.pay_open_invoices(gym["account"], gym["subscription"])["status"] == "active"
    assert open_invoices(stripe_client, gym).data == []
    paid = stripe_client.v1.invoices.list({"subscription": gym["subscription"], "status": "paid"}, gym["opts"]).data
    assert [(i.amount_paid, i.amount_remaining, i.status_transitions.paid_at) for i in paid[:2]] == [
        (1500, 0, NOW + 33 * DAY)] * 2
    assert sandbox.events[-1]["data"]["previous_attributes"] == {"status": "past_due"}
    with pytest.raises(ValueError, match="no open invoice"):
        sandbox.pay_open_invoices(gym["account"], gym["subscription"])


def test_a_cursor_paid_between_two_pages_of_open_invoices_still_pages_on(sandbox, stripe_client, gym, clock):
    owing = [sandbox.create_subscription(gym["account"], gym["customer"], [gym["product"]], status="past_due")["id"]
             for _ in range(3)]
    first = stripe_client.v1.invoices.list({"status": "open", "limit": 2}, gym["opts"])
    paid_cursor = first.data[-1]
    sandbox.pay_open_invoices(gym["account"], owing[1])
    rest = stripe_client.v1.invoices.list({"status": "open", "limit": 2, "starting_after": paid_cursor.id},
                                          gym["opts"])
    assert [i.parent.subscription_details.subscription for i in rest.data] == [owing[0]]


# ------------------------------------------------------------ an invoice open for weeks

def test_a_backdated_open_invoice_is_listed_in_its_place_and_found_by_created(sandbox, stripe_client, gym, clock):
    owing = sandbox.create_subscription(gym["account"], gym["customer"], [gym["product"]], status="past_due")["id"]
    [invoice] = sandbox.invoices(gym["account"], subscription=owing)
    moved = sandbox.backdate_invoice(gym["account"], invoice["id"], NOW - 20 * DAY)
    assert (moved["created"], moved["status_transitions"]["finalized_at"], moved["effective_at"]) == (
        NOW - 20 * DAY,) * 3
    listed = stripe_client.v1.invoices.list({}, gym["opts"])
    assert [i.id for i in listed.data][-1] == invoice["id"]
    older = stripe_client.v1.invoices.list({"status": "open", "created": {"lt": NOW - 14 * DAY}}, gym["opts"])
    assert [i.id for i in older.data] == [invoice["id"]]


def test_a_paid_invoice_backdated_keeps_its_payment_at_its_making(sandbox, gym):
    [invoice] = sandbox.invoices(gym["account"])
    moved = sandbox.backdate_invoice(gym["account"], invoice["id"], NOW - DAY)
    assert moved["status_transitions"]["paid_at"] == NOW - DAY


def test_an_invoice_cannot_be_backdated_into_the_future_or_on_another_account(sandbox, gym):
    [invoice] = sandbox.invoices(gym["account"])
    with pytest.raises(ValueError, match="future"):
        sandbox.backdate_invoice(gym["account"], invoice["id"], NOW + 1)
    other = sandbox.create_account(display_name="Other Studio")["id"]
    with pytest.raises(KeyError):
        sandbox.backdate_invoice(other, invoice["id"], NOW - DAY)
    assert sandbox.invoices(gym["account"]) == [invoice]


# ------------------------------------------------------------ the dashboard and the portal

def press(sandbox, subscription, action, json_answer=False):
    headers = {"Accept": "application/json"} if json_answer else {}
    return requests.post("%s/dashboard/subscriptions/%s/%s" % (sandbox.url, subscription, action),
                         headers=headers, allow_redirects=False, timeout=10)


def buttons_of(sandbox, subscription):
    """The names of the dashboard's buttons for one subscription, as a screen reader hears them."""
    shown = Page(requests.get(sandbox.url + "/", timeout=10).text)
    return [name for name in shown.buttons if name.endswith("(%s)" % subscription)]


def test_the_dashboards_renew_unpaid_button_leaves_the_subscription_past_due_owing_the_new_period(sandbox, gym):
    assert "renew unpaid (card declines) Yoga for member@localfitness.test (%s)" % gym["subscription"] in buttons_of(
        sandbox, gym["subscription"])
    answer = press(sandbox, gym["subscription"], "renew_unpaid")
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    sub = sandbox.subscription(gym["account"], gym["subscription"])
    assert sub["status"] == "past_due" and sub["items"]["data"][0]["current_period_start"] == NOW + 30 * DAY
    assert [i["billing_reason"] for i in sandbox.invoices(gym["account"], status="open")] == ["subscription_cycle"]
    assert "1 open invoice" in requests.get(sandbox.url + "/", timeout=10).text
    names = [name.split(" Yoga for ")[0] for name in buttons_of(sandbox, gym["subscription"])]
    assert "renew unpaid (card declines)" in names and "payment succeeds (pays open invoices)" in names
    assert "payment fails (card declines)" not in names and "past due" not in names


def test_the_dashboards_payment_fails_then_payment_succeeds_buttons_answer_json_for_curl(sandbox, gym):
    failed = press(sandbox, gym["subscription"], "payment_fails", json_answer=True)
    assert failed.status_code == 200 and failed.json()["status"] == "past_due"
    assert len(sandbox.invoices(gym["account"], status="open")) == 1
    refused = press(sandbox, gym["subscription"], "payment_fails", json_answer=True)
    assert refused.status_code == 400 and "only an active subscription" in refused.json()["error"]["message"]
    recovered = press(sandbox, gym["subscription"], "pay_open_invoices", json_answer=True)
    assert recovered.status_code == 200 and recovered.json()["status"] == "active"
    assert sandbox.invoices(gym["account"], status="open") == []
    names = [name.split(" Yoga for ")[0] for name in buttons_of(sandbox, gym["subscription"])]
    assert "payment succeeds (pays open invoices)" not in names and "payment fails (card declines)" in names


def test_the_dashboard_refuses_an_unpaid_renewal_stripe_would_not_charge_and_says_why(sandbox, gym):
    sandbox.update_subscription(gym["account"], gym["subscription"], status="paused")
    assert not any(name.startswith("renew unpaid") for name in buttons_of(sandbox, gym["subscription"]))
    answer = press(sandbox, gym["subscription"], "renew_unpaid", json_answer=True)
    assert answer.status_code == 400 and "Stripe does not charge it at renewal" in answer.json()["error"]["message"]
    assert sandbox.subscription(gym["account"], gym["subscription"])["status"] == "paused"


def test_the_portal_shows_a_subscription_behind_on_payment_as_past_due_with_its_open_invoice(
        sandbox, stripe_client, gym, clock):
    clock[0] = NOW + 30 * DAY
    sandbox.renew_subscription(gym["account"], gym["subscription"], paid=False)
    shown = Page(requests.get(portal(stripe_client, gym).url, timeout=10).text).text
    current = shown[shown.index("Current subscriptions"):shown.index("Invoice history")]
    assert "Past due" in current and "Active" not in current
    history = shown[shown.index("Invoice history"):]
    assert history.index("Open") < history.index("Paid")
