import re
import time

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from app import app, stripe_events as stripe_events_function, sync_worker
from chalicelib import models, services
from chalicelib.settings import get_settings
from chalicelib.queues import EVENTS_QUEUE
from local import moto_queues, moto_transactions
from local.queues import QueuePump, create_event_queues, create_work_queues
from local.stripe_sandbox import StripeSandbox
from tests import helpers
from tests.helpers import AccessEventsInbox
from tests.iam_check import IAM_CHECK


@pytest.fixture(autouse=True, scope="session")
def mended_moto():
    """moto's DynamoDB with transactions as DynamoDB runs them
    (local/moto_transactions.py), and its queues without a pass over every
    message per request (local/moto_queues.py), as the local stack has
    them: moto's own rollback puts back a copy of each table taken when the
    transaction began, losing what another thread wrote meanwhile,
    announcements included."""
    with moto_transactions.installed(), moto_queues.installed():
        yield


@pytest.fixture(scope="session")
def sandbox_server():
    sandbox = StripeSandbox(secret_key=helpers.SECRET_KEY, client_id=helpers.CLIENT_ID).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def sandbox(sandbox_server):
    """The Stripe stand-in on loopback, empty for each test."""
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture(autouse=True)
def environment(monkeypatch, sandbox_server):
    for name, value in helpers.environment(sandbox_server.url).items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "STRIPE_SECRET_KEY_PARAM",
                 "STRIPE_WEBHOOK_SECRET_PARAM", "AUTH_JWT_SECRET_PARAM", "RETURN_URL_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    services.reset()
    yield
    services.reset()


@pytest.fixture(autouse=True)
def iam_policies():
    """Every AWS call a function makes in a test is one its IAM policy
    allows (tests/iam_check.py)."""
    IAM_CHECK.take_denied()
    yield
    denied = IAM_CHECK.take_denied()
    assert not denied, "Calls the functions' IAM policies (.chalice/policy-*.json) do not allow:\n" + "\n".join(denied)


@pytest.fixture
def aws():
    """DynamoDB and the rest of AWS, in-process, with the tables, the work
    queue and the events queue created."""
    with mock_aws():
        settings = get_settings()
        models.bind(settings)
        models.create_tables()
        sqs = boto3.client("sqs", region_name=settings.aws_region)
        create_work_queues(sqs)
        create_event_queues(sqs)
        yield


@pytest.fixture
def work(aws):
    """The work queue's consumer, run when a test says so: `work.drain()`
    hands every waiting message to `sync_worker` as Lambda would (a failed
    one comes again at once, and goes to the dead-letter queue after its
    last try)."""
    return QueuePump(boto3.client("sqs", region_name=get_settings().aws_region), sync_worker, retry_after=0)


@pytest.fixture
def stripe_events(aws):
    """The events queue's consumer: `stripe_events.drain()` hands every
    waiting event to the `stripe_events` function as Lambda would. An event
    whose handling fails is held back until the next drain, which is the
    queue's next try (after its last, the dead-letter queue)."""
    return QueuePump(boto3.client("sqs", region_name=get_settings().aws_region), stripe_events_function,
                     queue_name=EVENTS_QUEUE, retry_after=None)


@pytest.fixture
def client(aws, sandbox, stripe_events, tmp_path):
    # A project directory without .chalice/config.json: the test client would
    # otherwise put the deploy stage's variables (SSM parameter names, table
    # names) into the environment of every request.
    with Client(app, project_dir=str(tmp_path)) as test_client:
        # `deliver` hands what the webhook queued to the queue's function
        # before it returns, as Lambda's trigger would within moments.
        helpers.QUEUED_EVENTS.consumer = stripe_events
        try:
            yield test_client.http
        finally:
            helpers.QUEUED_EVENTS.consumer = None


@pytest.fixture
def access_events(aws):
    """What CustomerHub hears: the entitlements stream handed to the
    `announce_access` function (as Lambda's trigger would), and the events it
    puts on EventBridge, read back from a queue subscribed to the bus."""
    return AccessEventsInbox(get_settings())


@pytest.fixture
def aws_faults():
    """Faults at the AWS boundary (tests/helpers.py), none armed at the start
    and all disarmed at the end."""
    helpers.AWS_FAULTS.clear()
    yield helpers.AWS_FAULTS
    helpers.AWS_FAULTS.clear()


# Lines a test leaves for the end of the run, where they are read (the
# rehearsal's table of template mistakes). Here, not beside that test: with
# make test's two processes only this conftest is loaded where the summary
# is printed.
SUMMARY = pytest.StashKey[list]()


@pytest.fixture
def summary(request):
    """Lines printed after the run's results (pytest would hide a test's
    prints). Run in a worker process (make test's -n 2), they reach the
    process that prints through the worker's output to it."""
    lines = request.config.stash.setdefault(SUMMARY, [])
    yield lines
    if hasattr(request.config, "workeroutput"):
        request.config.workeroutput.setdefault("rehearsal_summary", []).extend(lines)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """A worker done: the lines it kept, for the summary."""
    lines = getattr(node, "workeroutput", {}).get("rehearsal_summary")
    if lines:
        node.config.stash.setdefault(SUMMARY, []).extend(lines)


def pytest_terminal_summary(terminalreporter):
    lines = terminalreporter.config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.write_sep("-", "the rehearsal against mistakes in the template")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_collection_finish(session):
    """A test named by a value read from the clock is named differently in
    each of make test's processes, and pytest-xdist then refuses the whole
    run ("Different tests were collected"), however rarely the second
    ticks between them. Refuse it here, in every run, with the name."""
    now = int(time.time())
    for item in session.items:
        for number in re.findall(r"\d{10}", item.nodeid):
            if abs(int(number) - now) < 400 * 86400:
                raise pytest.UsageError(
                    "%s is named by what looks like the current time (%s): name the case by a fixed "
                    "value, or give it ids=" % (item.nodeid, number))
