"""make run's schedules (local/schedules.py): app.py's scheduled functions on
their rates, on the stack's clock, what fell due run once, in order, a few
seconds after it fell due; then the whole stack with them on: the card knows
the endpoint from the start, and a period that ended while Stripe's webhooks
were held is ended by the sweep without anyone running it."""
import subprocess
import sys
from types import SimpleNamespace

import pytest
import requests

import app as functions
from local.run import LOCAL_MEMBER, local_environment
from local.schedules import ORDER, SETTLE_SECONDS, LocalSchedules, periods_of, wanted
from local.stack_runner import ROOT, StackProcess
from tests.helpers import settled

DAY = 86400


class Clocks:
    """The stack's clock and the machine's, moved by the test."""

    def __init__(self):
        self.stack = 1_900_000_000.0
        self.machine = 0.0


class Recorded:
    """app.py's Chalice app (its rates) with scheduled functions that say they ran."""

    def __init__(self, failing=()):
        self.app = functions.app
        self.ran = []
        for name in ORDER:
            setattr(self, name, self._function(name, name in failing))

    def _function(self, name, fails):
        def run(event, context):
            assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
            self.ran.append(name)
            if fails:
                raise RuntimeError("Stripe is down")
            return {"ran": name}
        return run


def schedules(recorded, clocks):
    return LocalSchedules(recorded, "us-east-1", now=lambda: clocks.stack, waited=lambda: clocks.machine)


def test_the_rates_are_app_pys_own():
    assert periods_of(functions.app) == {"watch_webhook_endpoint": 300, "expire_access": 900, "catch_up": 3600}


def test_the_endpoint_is_read_once_it_settles_after_the_start_and_the_rest_a_period_later():
    clocks, recorded = Clocks(), Recorded()
    local = schedules(recorded, clocks)
    assert local.run_due() == []
    clocks.machine += SETTLE_SECONDS
    assert local.run_due() == ["watch_webhook_endpoint"]
    clocks.stack += 299
    assert local.run_due() == []
    clocks.stack += 601
    clocks.machine += 1
    assert local.run_due() == []
    clocks.machine += SETTLE_SECONDS
    assert local.run_due() == ["watch_webhook_endpoint", "expire_access"]
    assert recorded.ran == ["watch_webhook_endpoint", "watch_webhook_endpoint", "expire_access"]


def test_a_clock_moved_a_month_ahead_runs_each_once_in_order_and_next_a_period_after_the_new_time():
    clocks, recorded = Clocks(), Recorded()
    local = schedules(recorded, clocks)
    clocks.machine += SETTLE_SECONDS
    local.run_due()
    recorded.ran.clear()
    clocks.stack += 31 * DAY
    # Stripe's webhooks from the move are handled first: nothing runs yet.
    assert local.run_due() == []
    clocks.machine += SETTLE_SECONDS
    assert local.run_due() == ["watch_webhook_endpoint", "expire_access", "catch_up"]
    assert local.run_due() == []
    clocks.stack += 900
    clocks.machine += SETTLE_SECONDS
    local.run_due()
    clocks.machine += SETTLE_SECONDS
    assert local.run_due() == ["watch_webhook_endpoint", "expire_access"]
    assert recorded.ran == ["watch_webhook_endpoint", "expire_access", "catch_up",
                            "watch_webhook_endpoint", "expire_access"]


def test_a_run_that_fails_is_logged_the_others_run_and_it_comes_again_at_its_next_time(caplog):
    clocks, recorded = Clocks(), Recorded(failing={"expire_access"})
    local = schedules(recorded, clocks)
    clocks.stack += DAY
    local.run_due()
    clocks.machine += SETTLE_SECONDS
    assert local.run_due() == ["watch_webhook_endpoint", "expire_access", "catch_up"]
    assert recorded.ran == ["watch_webhook_endpoint", "expire_access", "catch_up"]
    assert "expire_access failed on its schedule; it runs again in 15 minutes" in caplog.text
    clocks.stack += 900
    local.run_due()
    clocks.machine += SETTLE_SECONDS
    local.run_due()
    assert recorded.ran.count("expire_access") == 2


def test_an_app_without_one_of_the_schedules_is_refused():
    recorded = Recorded()
    stripped = SimpleNamespace(app=SimpleNamespace(event_sources=[
        source for source in functions.app.event_sources if getattr(source, "name", "") != "catch_up"]),
        **{name: getattr(recorded, name) for name in ORDER})
    with pytest.raises(ValueError, match="app.py schedules no catch_up"):
        schedules(stripped, Clocks())


@pytest.mark.parametrize("setting, on", [("", True), ("on", True), ("ON", True), ("off", False), (" off ", False)])
def test_local_schedules_is_on_or_off(setting, on):
    assert wanted(setting) is on


def test_make_run_refuses_another_word_for_local_schedules_before_it_starts_anything():
    env = local_environment({"PATH": "/usr/bin:/bin", "LOCAL_SCHEDULES": "sometimes", "PORT": "1"})
    done = subprocess.run([sys.executable, "-m", "local.run"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "The connector will not start: LOCAL_SCHEDULES must be on or off, not 'sometimes'" in done.stderr


# ------------------------------------------------------------- the whole stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = StackProcess(tmp_path_factory.mktemp("schedules") / "local-run.log",
                         overrides={"LOCAL_SCHEDULES": "on"}).start()
    yield stack
    stack.stop()


def test_with_make_runs_schedules_the_card_knows_the_endpoint_and_a_held_periods_end_is_swept(stack):
    admin = stack.headers("admin")
    member = stack.headers("member")
    stack.connect()
    card = lambda: requests.get(stack.api_url + "/connectors/stripe", headers=admin, timeout=30).json()  # noqa: E731
    # Nobody ran make catch-up: watch_webhook_endpoint ran at the start.
    settled(card, lambda c: c["events"]["endpoint"] == "enabled", seconds=30)
    assert "watch_webhook_endpoint ran on its schedule" in stack.log_tail(100_000)

    subscription = stack.subscribe(LOCAL_MEMBER[1], "Rowing")["id"]
    access = lambda: requests.get(stack.api_url + "/access", headers=member, timeout=30).json()  # noqa: E731
    assert [item["access"] for item in settled(access, lambda a: a["entitlements"], seconds=30)["entitlements"]] \
        == [True]
    history = lambda: requests.get(stack.api_url + "/access/history", headers=member,  # noqa: E731
                                   timeout=30).json()["history"]
    stack.dashboard("/dashboard/subscriptions/%s/cancel_at_period_end" % subscription)
    # Its webhook handled first: handled after the move, it would read the subscription ended.
    settled(history, lambda h: h[0]["to"]["state"] == "canceling", seconds=30)
    stack.dashboard("/dashboard/webhooks/hold")
    try:
        moved = stack.dashboard("/dashboard/clock/advance", days="31")
        assert [item["what"] for item in moved["happened"]] == ["canceled"]

        ended = settled(history, lambda h: h and h[0]["to"]["access"] is False, seconds=30)
        assert (ended[0]["reason"], ended[0]["cause"]["kind"]) == ("period_ended", "sweep")
        # And the hourly catch-up, due as well, brought in the event Stripe could not deliver.
        caught = settled(card, lambda c: c["events"]["missed_last_day"] >= 1, seconds=30)["events"]
        assert caught["last_caught_up_at"] and caught["missed_last_day"] >= 1
    finally:
        stack.dashboard("/dashboard/webhooks/release")
    log = stack.log_tail(100_000)
    assert "expire_access ran on its schedule" in log and "catch_up ran on its schedule" in log
