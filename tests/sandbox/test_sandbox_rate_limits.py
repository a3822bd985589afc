"""Stripe's rate limits and a network's latency, as the sandbox plays them
when asked (the month-start benchmark does): requests beyond 25 a second for
one account, or 100 for all, are answered as Stripe's limiter answers them,
on the sandbox's own clock. Driven by the real stripe-python client."""
import pytest
import stripe

from local.stripe_sandbox import StripeSandbox
from tests import helpers

NOW = 1_900_000_000.0


@pytest.fixture
def limited():
    """A sandbox of its own (the shared one is never limited), on a clock
    held still, that records its latency's waits instead of sleeping."""
    now = [NOW]
    waits = []
    sandbox = StripeSandbox(secret_key=helpers.SECRET_KEY, client_id=helpers.CLIENT_ID,
                            clock=lambda: now[0], sleep=waits.append).start()
    client = stripe.StripeClient(helpers.SECRET_KEY, client_id=helpers.CLIENT_ID,
                                 base_addresses={"api": sandbox.url, "connect": sandbox.url},
                                 max_network_retries=0)
    accounts = []
    for name in ("North Gym", "South Gym", "East Gym"):
        account = sandbox.create_account(display_name=name)["id"]
        client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(account)})
        accounts.append(account)
    yield sandbox, client, accounts, now, waits
    sandbox.stop()


def list_customers(client, account):
    return client.v1.customers.list({"limit": 1}, {"stripe_account": account})


def test_requests_beyond_an_accounts_limit_in_a_second_are_answered_429_with_the_limiters_reason(limited):
    sandbox, client, (north, south, _), now, _ = limited
    sandbox.limit_rates(per_account=3, in_all=100)
    for _ in range(3):
        list_customers(client, north)
    with pytest.raises(stripe.RateLimitError) as refused:
        list_customers(client, north)
    assert refused.value.http_status == 429
    assert refused.value.json_body["error"]["code"] == "rate_limit"
    assert refused.value.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    # Another account has its own budget; the refused request counted for nobody.
    list_customers(client, south)
    assert sandbox.rate_limited == 1
    # A second later the first account may ask again.
    now[0] += 1
    for _ in range(3):
        list_customers(client, north)


def test_all_accounts_together_stay_within_the_limit_in_all(limited):
    sandbox, client, accounts, now, _ = limited
    sandbox.limit_rates(per_account=3, in_all=5)
    for account in accounts[:2]:
        for _ in range(2):
            list_customers(client, account)
    list_customers(client, accounts[2])
    with pytest.raises(stripe.RateLimitError):
        list_customers(client, accounts[2])
    now[0] += 0.5
    with pytest.raises(stripe.RateLimitError):
        list_customers(client, accounts[0])
    now[0] += 0.5
    list_customers(client, accounts[0])
    assert sandbox.rate_limited == 2
    # Counted by the sandbox's clock (the three connections first).
    assert sandbox.request_times()[3:] == [NOW] * 6 + [NOW + 0.5, NOW + 1]


def test_without_limits_nothing_is_refused_and_without_latency_nothing_waits(limited):
    sandbox, client, (north, _, _), _, waits = limited
    for _ in range(30):
        list_customers(client, north)
    assert sandbox.rate_limited == 0
    assert waits == []


def test_latency_is_waited_half_before_and_half_after_each_request(limited):
    sandbox, client, (north, _, _), _, waits = limited
    sandbox.add_latency(0.1)
    list_customers(client, north)
    assert waits == [0.05, 0.05]
    with pytest.raises(ValueError):
        sandbox.add_latency(-1)
