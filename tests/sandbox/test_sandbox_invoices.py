"""Invoices as the connector reads them: GET /v1/invoices through the real
stripe-python client (its filters, newest-first paging, and what it
refuses), and a subscription falling behind on payment as Stripe's do,
leaving open invoices behind."""
import pytest
import stripe

from tests.sandbox.conformance import violations
from tests.sandbox.conftest import NOW

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
