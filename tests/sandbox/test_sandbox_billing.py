"""What the sandbox bills and keeps for the portal's pages: an invoice per
subscription period, cards saved to customers (Stripe's test cards and what
each does), why a subscription was canceled, and each webhook delivery's
answer. The sandbox serves no payment method routes (the connector reads
none): its records are read here as stripe-python's own objects, and
invoices over HTTP in test_sandbox_invoices."""
import pytest
import stripe

from local.stripe_sandbox import StripeSandbox
from local.stripe_sandbox.payment_methods import CardError, check_card
from tests import helpers
from tests.sandbox.conftest import NOW

DAY = 24 * 3600


@pytest.fixture
def gym(sandbox, stripe_client, clock):
    account = sandbox.create_account(display_name="Local Fitness Studio")
    stripe_client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(account["id"])})
    customer = sandbox.create_customer(account["id"], email="member@localfitness.test", name="Local Member")
    product = sandbox.create_product(account["id"], name="Yoga")
    subscription = sandbox.create_subscription(account["id"], customer["id"], [product["id"]])
    return {"account": account["id"], "customer": customer["id"], "product": product["id"],
            "subscription": subscription["id"], "opts": {"stripe_account": account["id"]}}


def invoices(sandbox, account, **which):
    return [stripe.Invoice.construct_from(i, helpers.SECRET_KEY) for i in sandbox.invoices(account, **which)]


# ------------------------------------------------------------------ invoices

def test_a_new_subscription_is_billed_a_paid_invoice_for_its_first_period(sandbox, stripe_client, gym):
    [invoice] = invoices(sandbox, gym["account"], customer=gym["customer"])
    assert invoice.id.startswith("in_") and invoice.object == "invoice"
    assert (invoice.status, invoice.billing_reason) == ("paid", "subscription_create")
    assert (invoice.total, invoice.amount_paid, invoice.amount_remaining, invoice.currency) == (1500, 1500, 0, "usd")
    assert invoice.parent.type == "subscription_details"
    assert invoice.parent.subscription_details.subscription == gym["subscription"]
    assert invoice.customer_email == "member@localfitness.test" and invoice.account_name == "Local Fitness Studio"
    assert invoice.status_transitions.paid_at == NOW and invoice.number.endswith("-0001")
    [line] = invoice.lines.data
    assert (line.period.start, line.period.end) == (NOW, NOW + 30 * DAY)
    assert line.pricing.price_details.product == gym["product"]
    assert line.description == "1 \u00d7 Yoga (at $15.00 / month)"


def test_each_renewal_is_billed_for_the_next_period_and_numbered_after_the_last(sandbox, stripe_client, gym, clock):
    clock[0] = NOW + 30 * DAY
    sandbox.renew_subscription(gym["account"], gym["subscription"])
    first, renewal = invoices(sandbox, gym["account"], subscription=gym["subscription"])
    assert renewal.billing_reason == "subscription_cycle" and renewal.status == "paid"
    assert (renewal.lines.data[0].period.start, renewal.lines.data[0].period.end) == (NOW + 30 * DAY, NOW + 60 * DAY)
    # Like Stripe's, a renewal invoice's own period looks back at the one that ended.
    assert (renewal.period_start, renewal.period_end) == (NOW, NOW + 30 * DAY)
    assert renewal.number == first.number[:-4] + "0002"


def test_a_subscription_set_to_cancel_is_not_billed_when_its_period_ends(sandbox, gym):
    sandbox.update_subscription(gym["account"], gym["subscription"], cancel_at_period_end=True)
    sandbox.renew_subscription(gym["account"], gym["subscription"])
    assert len(sandbox.invoices(gym["account"], subscription=gym["subscription"])) == 1


@pytest.mark.parametrize("status, invoice_status, paid", [
    ("past_due", "open", 0), ("incomplete", "open", 0), ("trialing", "paid", 0), ("incomplete_expired", "void", 0),
])
def test_the_first_invoice_follows_the_status_the_subscription_starts_in(sandbox, gym, status, invoice_status, paid):
    subscription = sandbox.create_subscription(gym["account"], gym["customer"], [gym["product"]], status=status)
    [invoice] = sandbox.invoices(gym["account"], subscription=subscription["id"])
    assert (invoice["status"], invoice["amount_paid"]) == (invoice_status, paid)


# --------------------------------------------------------------------- cards

def test_a_saved_card_becomes_the_customers_default_payment_method(sandbox, stripe_client, gym):
    method = sandbox.save_card(gym["account"], gym["customer"], "4242 4242 4242 4242", 12, 2034, "123",
                               name="Local Member", postal_code="94107")
    customer = stripe_client.v1.customers.retrieve(gym["customer"], {}, gym["opts"])
    assert customer.invoice_settings.default_payment_method == method["id"]
    fetched = stripe.PaymentMethod.construct_from(
        sandbox.default_payment_method(gym["account"], gym["customer"]), helpers.SECRET_KEY)
    assert fetched.id == method["id"]
    assert (fetched.object, fetched.type, fetched.customer) == ("payment_method", "card", gym["customer"])
    assert (fetched.card.brand, fetched.card.last4, fetched.card.funding) == ("visa", "4242", "credit")
    assert fetched.billing_details.name == "Local Member" and fetched.card.checks.cvc_check == "pass"


@pytest.mark.parametrize("number, code, decline_code", [
    ("4000000000000002", "card_declined", "generic_decline"),
    ("4000000000009995", "card_declined", "insufficient_funds"),
    ("4000000000009987", "card_declined", "lost_card"),
    ("4000000000009979", "card_declined", "stolen_card"),
    ("4000000000000069", "expired_card", "expired_card"),
    ("4000000000000127", "incorrect_cvc", "incorrect_cvc"),
    ("4000000000000119", "processing_error", "processing_error"),
    ("4111111111111111", "card_declined", "test_mode_live_card"),
    ("4242424242424241", "incorrect_number", None),
])
def test_stripes_refusing_test_cards_are_refused_and_nothing_is_saved(sandbox, gym, number, code, decline_code):
    with pytest.raises(CardError) as caught:
        sandbox.save_card(gym["account"], gym["customer"], number, 12, 2034, "123")
    assert (caught.value.code, caught.value.decline_code) == (code, decline_code)
    assert sandbox.default_payment_method(gym["account"], gym["customer"]) is None


def test_a_card_that_declines_only_when_charged_can_be_saved(sandbox, gym):
    saved = sandbox.save_card(gym["account"], gym["customer"], "4000000000000341", 1, 2031, "999")
    assert saved["card"]["last4"] == "0341"


@pytest.mark.parametrize("month, year, cvc, code", [
    (0, 2034, "123", "invalid_expiry_month"), (12, 2029, "123", "invalid_expiry_year"),
    (2, 2030, "123", "invalid_expiry_month"), (12, 2034, "12", "invalid_cvc"), (12, 2034, "12a", "invalid_cvc"),
])
def test_a_card_with_a_wrong_date_or_security_code_is_refused(month, year, cvc, code):
    with pytest.raises(CardError) as caught:
        check_card("4242424242424242", month, year, cvc, NOW)
    assert caught.value.code == code


def test_an_american_express_card_needs_four_digits_of_security_code():
    assert check_card("3782 822463 10005", 12, 2034, "1234", NOW).brand == "amex"
    with pytest.raises(CardError):
        check_card("378282246310005", 12, 2034, "123", NOW)


# ----------------------------------------------------- cancellation details

def test_cancellation_details_are_kept_on_the_subscription_and_in_its_events(sandbox, stripe_client, gym):
    details = {"comment": None, "feedback": "too_expensive", "reason": "cancellation_requested"}
    sandbox.update_subscription(gym["account"], gym["subscription"], cancel_at_period_end=True,
                                cancellation_details=details)
    event = sandbox.events[-1]
    assert event["data"]["object"]["cancellation_details"] == details
    assert event["data"]["previous_attributes"]["cancel_at_period_end"] is False
    fetched = stripe_client.v1.subscriptions.retrieve(gym["subscription"], {}, gym["opts"])
    assert fetched.cancellation_details.feedback == "too_expensive"


# ------------------------------------------------------------------ webhooks

def test_each_delivery_attempt_keeps_the_endpoints_answer_or_the_error():
    with StripeSandbox(webhook_url="http://127.0.0.1:9/hook", webhook_secret="whsec_test") as sandbox:
        account = sandbox.create_account(display_name="Local Fitness Studio")
        sandbox.update_account(account["id"], display_name="Renamed")
        assert sandbox.wait_for_webhooks()
        [event] = sandbox.events
        [attempt] = sandbox.delivery_attempts(event["id"])
        assert attempt["status"] is None and "refused" in attempt["error"].lower()
    assert sandbox.delivery_attempts("evt_never") == []
