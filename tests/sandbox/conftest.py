"""What the sandbox's own tests share: its clock held still, and the real
stripe-python client pointed at it."""
import pytest
import stripe

from tests import helpers

NOW = 1_900_000_000  # 2030-03-17


@pytest.fixture
def clock(sandbox, monkeypatch):
    """The sandbox's clock, frozen at NOW; move it with clock[0] += seconds."""
    now = [NOW]
    monkeypatch.setattr(sandbox, "clock", lambda: now[0])
    return now


@pytest.fixture
def stripe_client(sandbox):
    return stripe.StripeClient(helpers.SECRET_KEY, client_id=helpers.CLIENT_ID,
                               base_addresses={"api": sandbox.url, "connect": sandbox.url},
                               max_network_retries=0)
