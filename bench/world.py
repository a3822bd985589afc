"""The world the measurements run in: the test environment, the Stripe
stand-in on loopback, moto with the tables created, connected sites.

`tests.helpers` is imported first, before anything makes a botocore
session: it installs the AWS call counter on the sessions made after it."""
import json
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional
from urllib.parse import urlsplit

from tests import helpers  # noqa: F401  (first: installs the AWS call counter)
from tests.helpers import bearer, query_of

import botocore.handlers
import requests
from moto import mock_aws
from moto.core.model_instances import reset_model_data

from local.stripe_sandbox import StripeSandbox

# What a developer's shell may hold that would send the connector elsewhere
# (real AWS, SSM) or change what it is configured with.
CLEARED = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
           "STRIPE_SECRET_KEY_PARAM", "STRIPE_WEBHOOK_SECRET_PARAM", "AUTH_JWT_SECRET_PARAM",
           "RETURN_URL_ORIGINS", "CONNECTIONS_TABLE", "OAUTH_STATES_TABLE", "WEBHOOK_EVENTS_TABLE",
           "MEMBER_CUSTOMERS_TABLE", "ENTITLEMENTS_TABLE", "ACCESS_EVENT_BUS")
CALLBACK_PATH = "/connectors/stripe/oauth/callback"


class AwsTime:
    """Wall time spent in AWS calls (botocore and, in-process, moto), from a
    botocore hook installed as tests.helpers installs its call counter: on
    every session made after this module is imported."""

    def __init__(self):
        self.total = 0.0
        # Per thread: the month-start's simulated Lambda instances call AWS at once.
        self._started = threading.local()

    def before(self, **kwargs) -> None:
        self._started.at = time.perf_counter()

    def after(self, **kwargs) -> None:
        started = getattr(self._started, "at", None)
        if started is not None:
            self.total += time.perf_counter() - started
            self._started.at = None


AWS_TIME = AwsTime()
botocore.handlers.BUILTIN_HANDLERS.append(("before-call", AWS_TIME.before))
botocore.handlers.BUILTIN_HANDLERS.append(("after-call", AWS_TIME.after))


class SimulatedAws:
    """Where AWS requests go on the month-start's simulated clock
    (bench/simulation.py, AwsOnTheClock); nowhere at other times."""

    def __init__(self):
        self.target = None

    def before(self, event_name: str, **kwargs) -> None:
        if self.target is not None:
            self.target.before_call(event_name)

    def after(self, event_name: str, parsed=None, **kwargs) -> None:
        if self.target is not None and parsed is not None:
            self.target.after_call(event_name, parsed)


SIMULATED_AWS = SimulatedAws()
botocore.handlers.BUILTIN_HANDLERS.append(("before-call", SIMULATED_AWS.before))
botocore.handlers.BUILTIN_HANDLERS.append(("after-call", SIMULATED_AWS.after))


def forget_models(**kwargs) -> None:
    """moto remembers every model object it ever made (for its dashboard):
    every item ever put, and every copy an update takes. In-process, as in
    the local stack's AWS (local/embedded_aws.py), the record is dropped
    after each request: a month start's million items would otherwise keep
    every version of each."""
    reset_model_data()


botocore.handlers.BUILTIN_HANDLERS.append(("after-call", forget_models))


class BenchError(Exception):
    """The measurement could not be set up or did not behave as expected."""


def start_sandbox() -> StripeSandbox:
    return StripeSandbox(secret_key=helpers.SECRET_KEY, client_id=helpers.CLIENT_ID).start()


def configure(sandbox: StripeSandbox) -> None:
    """The test environment, pointed at the sandbox, and fresh services."""
    for name in CLEARED:
        os.environ.pop(name, None)
    os.environ.update(helpers.environment(sandbox.url))
    from chalicelib import services
    services.reset()


@contextmanager
def aws() -> Iterator[None]:
    """moto with the connector's tables, work queue and events queue. The
    settings are read here, before any chalice test client patches the
    environment with a stage's."""
    import boto3
    from chalicelib import models, services
    from chalicelib.settings import get_settings
    from local.queues import create_event_queues, create_work_queues

    services.reset()
    with mock_aws():
        settings = get_settings()
        models.bind(settings)
        models.create_tables()
        sqs = boto3.client("sqs", region_name=settings.aws_region)
        # A connection starts an import: its first page is queued.
        create_work_queues(sqs)
        # Webhooks queue their events.
        create_event_queues(sqs)
        yield
    services.reset()


def stripe_requests(sandbox: StripeSandbox) -> int:
    """Requests the stand-in has answered so far."""
    return len(sandbox.requests)


def connect_site(http, sandbox: StripeSandbox, site_id: str, account_id: str) -> None:
    """Connect a site the way an admin does: the connect call, Stripe's
    authorize page, the callback's bounce and the UI page's completion."""
    admin = bearer(site=site_id, role="admin", sub="admin_" + site_id)
    started = http.post("/connectors/stripe/connect", headers=dict(admin, **{"Content-Type": "application/json"}),
                        body="")
    if started.status_code != 200:
        raise BenchError("POST /connectors/stripe/connect answered %d" % started.status_code)
    query = query_of(started.json_body["authorize_url"])
    approved = requests.post(sandbox.url + "/oauth/authorize", allow_redirects=False, data={
        "client_id": query["client_id"], "scope": query["scope"], "state": query["state"],
        "redirect_uri": query["redirect_uri"], "decision": "approve", "account_id": account_id})
    if approved.status_code != 302:
        raise BenchError("The sandbox's authorize page answered %d" % approved.status_code)
    back = http.get(CALLBACK_PATH + "?" + urlsplit(approved.headers["Location"]).query)
    page = query_of(back.headers.get("Location", ""))
    completed = http.post(CALLBACK_PATH, headers=dict(admin, **{"Content-Type": "application/json"}),
                          body=json.dumps(page))
    if completed.status_code != 200:
        raise BenchError("Connecting %s to %s answered %d: %s"
                         % (site_id, account_id, completed.status_code, completed.body))
