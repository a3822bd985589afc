"""The Stripe gateway against the sandbox: what each Stripe answer becomes."""
import pytest

from chalicelib.errors import AccountNotConnected, StripeFailure
from chalicelib.stripe_gateway import StripeGateway, display_name_of, make_client
from tests.helpers import CLIENT_ID, SECRET_KEY, WEBHOOK_SECRET


def gateway(sandbox, key=SECRET_KEY):
    return StripeGateway(make_client(key, CLIENT_ID, sandbox.url, sandbox.url), WEBHOOK_SECRET)


def test_deauthorizing_an_account_that_is_not_connected_is_account_not_connected(sandbox):
    sandbox.create_account(id="acct_never")
    with pytest.raises(AccountNotConnected):
        gateway(sandbox).deauthorize("acct_never")


def test_deauthorizing_with_a_wrong_platform_key_is_a_failure_not_a_disconnect(sandbox):
    sandbox.create_account(id="acct_x")
    sandbox.issue_code("acct_x")
    with pytest.raises(StripeFailure) as raised:
        gateway(sandbox, key="sk_test_wrong_key").deauthorize("acct_x")
    assert not isinstance(raised.value, AccountNotConnected)


def test_reading_an_account_that_is_not_connected_is_account_not_connected(sandbox):
    sandbox.create_account(id="acct_never")
    with pytest.raises(AccountNotConnected):
        gateway(sandbox).account_profile("acct_never")


def test_failures_carry_no_secret_key(sandbox):
    with pytest.raises(StripeFailure) as raised:
        gateway(sandbox).exchange_code("ac_unknown")
    assert SECRET_KEY not in str(raised.value)


def test_display_name_prefers_dashboard_then_business_then_email_then_id():
    assert display_name_of({"id": "acct_1", "settings": {"dashboard": {"display_name": " Gym "}},
                            "business_profile": {"name": "Biz"}, "email": "a@b"}) == "Gym"
    assert display_name_of({"id": "acct_1", "settings": {"dashboard": {"display_name": ""}},
                            "business_profile": {"name": "Biz"}, "email": "a@b"}) == "Biz"
    assert display_name_of({"id": "acct_1", "business_profile": None, "email": "a@b"}) == "a@b"
    assert display_name_of({"id": "acct_1", "settings": None}) == "acct_1"
