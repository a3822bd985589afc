"""The local stack's one clock beyond the sandbox: `make run`'s process on
the sandbox's time (local/clock.py), `make sweep`'s and `make catch-up`'s
on the running sandbox's (local/scheduled.py), `make advance` moving it
(local/advance.py); and `make run`'s sandbox told where a person lands after
Stripe's redirect to the API's bouncing callback."""
import time

import pytest
import requests

from chalicelib import clock
from local import advance, clock as local_clock, scheduled
from local.run import local_environment, start_sandbox
from local.stripe_sandbox import StripeSandbox

DAY = 24 * 3600


@pytest.fixture
def running_sandbox():
    sandbox = StripeSandbox(secret_key="sk_test_local_sandbox", client_id="ca_local_sandbox", port=0).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def machine_time():
    """chalicelib's time source put back after the test."""
    previous = clock.use(clock.SystemTime())
    yield
    clock.use(previous)


@pytest.fixture
def stack_environment(monkeypatch, running_sandbox):
    """The environment a command run beside `make run` starts from, with the
    sandbox on its port and an AWS of the caller's (none is asked here);
    local.scheduled replaces the process's environment with the stack's."""
    given = {"STRIPE_SANDBOX_PORT": str(running_sandbox.port), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    monkeypatch.setattr("os.environ", dict(given))
    return given


def test_make_runs_process_reads_the_sandboxs_offset_at_each_use(running_sandbox):
    shared = local_clock.following(running_sandbox)
    assert abs(shared.time() - time.time()) < 5
    running_sandbox.advance_clock(3 * DAY)
    assert abs(shared.time() - running_sandbox.now()) < 5
    assert abs(shared.time() - (time.time() + 3 * DAY)) < 5


def test_the_events_function_gets_each_messages_sent_time_on_the_stacks_clock():
    handed = []
    offset = [0]
    handler = local_clock.sent_times_on_the_clock(lambda event, context: handed.append(event) or "done",
                                                  lambda: offset[0])
    offset[0] = 31 * DAY + 0.25
    event = {"Records": [{"attributes": {"SentTimestamp": "1796614112000", "ApproximateReceiveCount": "1"}},
                         {"attributes": {}}]}
    assert handler(event, None) == "done"
    [seen] = handed
    assert seen["Records"][0]["attributes"] == {"SentTimestamp": str(1796614112000 + 31 * DAY * 1000 + 250),
                                                "ApproximateReceiveCount": "1"}
    assert seen["Records"][1]["attributes"] == {}


def test_a_command_beside_the_stack_runs_on_the_running_sandboxs_time(running_sandbox, stack_environment,
                                                                       machine_time):
    running_sandbox.advance_clock(2 * DAY)
    assert scheduled.use_running_stack() is None
    assert abs(clock.now_seconds() - (time.time() + 2 * DAY)) < 5
    # What EventBridge's schedule would hand the function, at that time.
    said = scheduled.scheduled_event("us-east-1")["time"]
    assert said == clock.iso(clock.utc_now()) and said[:10] == time.strftime(
        "%Y-%m-%d", time.gmtime(time.time() + 2 * DAY))


def test_a_command_beside_no_sandbox_says_to_start_the_stack(monkeypatch, machine_time, capsys):
    monkeypatch.setattr("os.environ", {"STRIPE_SANDBOX_PORT": "9", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert scheduled.use_running_stack() == 2
    assert "did not tell its time" in capsys.readouterr().err


def test_make_advance_moves_the_running_stacks_clock_and_says_what_fell_due(running_sandbox, stack_environment,
                                                                            capsys):
    account = running_sandbox.create_account(display_name="Local Fitness Studio")["id"]
    customer = running_sandbox.create_customer(account, email="member@localfitness.test")["id"]
    product = running_sandbox.create_product(account, name="Yoga")["id"]
    now = int(running_sandbox.now())
    subscription = running_sandbox.create_subscription(account, customer, [product], period_end=now + 30 * DAY,
                                                       cancel_at_period_end=True)["id"]
    assert advance.main(["--days", "31", "--hours", "2"]) == 0
    assert running_sandbox.clock_offset == 31 * DAY + 7200
    said = capsys.readouterr().out
    assert "The local clock is now %s" % time.strftime("%Y-%m-%d", time.gmtime(running_sandbox.now())) in said
    assert "31 days 02:00:00 ahead of this machine's" in said
    assert "Fell due meanwhile, each with its webhooks: canceled 1." in said and subscription in said
    assert running_sandbox.subscription(account, subscription)["status"] == "canceled"


def test_make_advance_says_why_the_sandbox_refused_a_move(running_sandbox, stack_environment, capsys):
    assert advance.main(["--days", "-1"]) == 2
    assert "The clock did not move: " in capsys.readouterr().err
    assert running_sandbox.clock_offset == 0


def test_make_advance_without_the_stack_or_with_stripes_own_keys_says_so(monkeypatch, capsys):
    monkeypatch.setattr("os.environ", {"STRIPE_SANDBOX_PORT": "9"})
    assert advance.main(["--days", "1"]) == 2
    assert "start the local stack with `make run` first" in capsys.readouterr().err
    monkeypatch.setattr("os.environ", {"STRIPE_SECRET_KEY": "sk_test_yours"})
    assert advance.main(["--days", "1"]) == 2
    assert "Stripe's own test clocks" in capsys.readouterr().err


def test_make_runs_sandbox_names_the_ui_as_where_the_person_lands_after_the_apis_bounce():
    env = local_environment({"STRIPE_SANDBOX_PORT": "0", "PORT": "8123", "UI_PORT": "3123"})
    sandbox = start_sandbox(env)
    try:
        assert sandbox.redirect_landings == {
            "http://127.0.0.1:8123/connectors/stripe/oauth/callback":
                "http://localhost:3123/settings/connectors/stripe/callback"}
        page = requests.get(sandbox.url + "/oauth/authorize", timeout=10, params={
            "response_type": "code", "client_id": env["STRIPE_CLIENT_ID"], "scope": "read_write", "state": "s",
            "redirect_uri": env["OAUTH_REDIRECT_URI"]}).text
        assert "You will return to localhost:3123" in page and "You will return to 127.0.0.1" not in page
    finally:
        sandbox.stop()


def test_make_runs_sandbox_sends_the_person_straight_to_a_ui_callback_page_it_names():
    page = "http://localhost:3124/settings/connectors/stripe/callback"
    sandbox = start_sandbox(local_environment({"STRIPE_SANDBOX_PORT": "0", "PORT": "8124",
                                               "OAUTH_REDIRECT_URI": page}))
    try:
        assert sandbox.redirect_landings == {}
    finally:
        sandbox.stop()
