"""The rate limits: their arithmetic on the table, with a clock the test
moves, and how a refusal reaches the browser (Retry-After, which the UI may
read across origins), through the test client and the local server."""
import threading
from datetime import datetime, timedelta, timezone

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from chalicelib.errors import RateLimited
from chalicelib.limits import DynamoRateLimits, portal_session_key, sync_key
from chalicelib.models import RateLimitModel
from chalicelib.settings import get_settings
from local.api_server import make_server
from tests.api.test_connect_lifecycle import ADMIN, connect
from tests.helpers import APP_BASE_URL, AWS_CALLS

START = datetime(2026, 11, 24, 16, 0, 0, tzinfo=timezone.utc)
TEN_MINUTES = timedelta(minutes=10)
MINUTE = timedelta(minutes=1)


class Clock:
    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now

    def move(self, **delta):
        self.now += timedelta(**delta)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def limits(aws, clock):
    settings = get_settings()
    return DynamoRateLimits(lambda: boto3.client("dynamodb", region_name=settings.aws_region),
                            settings.rate_limits_table, clock)


def refused(take):
    with pytest.raises(RateLimited) as caught:
        take()
    return caught.value.retry_after


# ------------------------------------------------------ once per period

def test_once_per_period_refuses_until_the_period_from_the_last_start_is_over(limits, clock):
    limits.once_per("k", TEN_MINUTES, "Synced")
    clock.move(seconds=1.5)
    assert refused(lambda: limits.once_per("k", TEN_MINUTES, "Synced")) == 599
    clock.move(seconds=598.4)
    assert refused(lambda: limits.once_per("k", TEN_MINUTES, "Synced")) == 1
    clock.move(seconds=0.1)
    limits.once_per("k", TEN_MINUTES, "Synced")


def test_a_refusal_does_not_move_the_start_and_says_when_in_words(limits, clock):
    limits.once_per("k", TEN_MINUTES, "Synced")
    clock.move(minutes=3)
    with pytest.raises(RateLimited) as caught:
        limits.once_per("k", TEN_MINUTES, "Synced")
    assert caught.value.retry_after == 420
    assert str(caught.value) == "Synced: try again in 7 minutes"
    clock.move(minutes=7)
    limits.once_per("k", TEN_MINUTES, "Synced")


def test_a_start_is_kept_for_its_period_then_left_to_ttl(limits, clock):
    limits.once_per(sync_key("site_a"), TEN_MINUTES, "Synced")
    stored = RateLimitModel.get(sync_key("site_a"))
    assert stored.started_at == START.timestamp()
    assert stored.expires_at == START + TEN_MINUTES


# --------------------------------------------------- at most per window

def test_at_most_counts_per_minute_of_the_clock_and_refusals_do_not_count(limits, clock):
    clock.move(seconds=20)
    for _ in range(10):
        limits.at_most("m", 10, MINUTE, "Sessions")
    assert refused(lambda: limits.at_most("m", 10, MINUTE, "Sessions")) == 40
    clock.move(seconds=39.5)
    assert refused(lambda: limits.at_most("m", 10, MINUTE, "Sessions")) == 1
    clock.move(seconds=0.5)
    for _ in range(10):
        limits.at_most("m", 10, MINUTE, "Sessions")
    assert refused(lambda: limits.at_most("m", 10, MINUTE, "Sessions")) == 60


def test_each_window_has_its_counter_that_ttl_removes_after_it(limits, clock):
    limits.at_most("m", 10, MINUTE, "Sessions")
    [counter] = list(RateLimitModel.scan())
    assert counter.calls == 1
    assert counter.expires_at == START + MINUTE


def test_a_limit_costs_one_request_allowed_or_refused(limits, clock):
    limits.once_per("k", TEN_MINUTES, "Synced")
    for _ in range(9):
        limits.at_most("m", 10, MINUTE, "Sessions")
    for take in (lambda: limits.at_most("m", 10, MINUTE, "Sessions"),
                 lambda: refused(lambda: limits.at_most("m", 10, MINUTE, "Sessions")),
                 lambda: refused(lambda: limits.once_per("k", TEN_MINUTES, "Synced"))):
        with AWS_CALLS.counting() as calls:
            take()
        assert dict(calls.calls) == {("dynamodb", "UpdateItem"): 1}


def test_members_whose_site_and_user_ids_join_alike_have_counters_of_their_own(limits, clock):
    assert portal_session_key("a#b", "c") != portal_session_key("a", "b#c")
    limits.at_most(portal_session_key("a#b", "c"), 1, MINUTE, "Sessions")
    limits.at_most(portal_session_key("a", "b#c"), 1, MINUTE, "Sessions")
    refused(lambda: limits.at_most(portal_session_key("a#b", "c"), 1, MINUTE, "Sessions"))


def test_another_failure_of_dynamodb_is_raised_as_it_is(limits, aws_faults):
    aws_faults.fail("dynamodb", "UpdateItem", code="ProvisionedThroughputExceededException")
    with pytest.raises(ClientError) as caught:
        limits.once_per("k", TEN_MINUTES, "Synced")
    assert caught.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"


# ------------------------------------------------ what the browser sees

def test_a_refusal_names_retry_after_for_the_ui_to_read(client, sandbox):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    assert client.post("/connectors/stripe/sync", headers=ADMIN).status_code == 202
    response = client.post("/connectors/stripe/sync", headers={**ADMIN, "Origin": APP_BASE_URL})
    assert response.status_code == 429
    assert response.headers["Retry-After"].isdigit()
    assert response.headers["Access-Control-Allow-Origin"] == APP_BASE_URL
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"].split(",")


@pytest.fixture
def local_api(client):
    from app import app
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server.server_address[1]
    server.shutdown()


def test_the_local_server_passes_retry_after_and_its_exposure_on(client, sandbox, local_api):
    sandbox.create_account(id="acct_gym")
    connect(client, sandbox, "acct_gym")
    assert requests.post(local_api + "/connectors/stripe/sync", headers=ADMIN).status_code == 202
    response = requests.post(local_api + "/connectors/stripe/sync", headers={**ADMIN, "Origin": APP_BASE_URL})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert 590 <= int(response.headers["Retry-After"]) <= 600
    assert response.headers["Access-Control-Expose-Headers"] == "Retry-After"
