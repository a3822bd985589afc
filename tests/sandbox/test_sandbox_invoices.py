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
