"""What the functions count, in CloudWatch's embedded metric format: one
line per invocation on stdout (where Lambda's log agent reads it), in the
namespace CustomerHub/StripeConnector, written only in Lambda unless
POWERTOOLS_METRICS_DISABLED says otherwise."""
import json
import time

import pytest

from app import announce_access, expire_access
from chalicelib import services
from chalicelib.observability import (NAMESPACE, SERVICE, STRIPE_CEILING_LEASES, STRIPE_CEILING_WAITED,
                                      STRIPE_REQUESTS)
from local.scheduled import scheduled_event
from tests.api.test_catch_up import run_catch_up
from tests.api.test_connect_lifecycle import ADMIN, connect
from tests.api.test_expire_access import FunctionContext, make_due, subscribe
from tests.helpers import bearer, deliver, signed, stripe_event

ACCOUNT = "acct_studio"
DAY = 24 * 3600
STRIPE_TRAFFIC = {STRIPE_REQUESTS, STRIPE_CEILING_LEASES, STRIPE_CEILING_WAITED}


class EmfLines:
    """The EMF lines the functions printed since the last look."""

    def __init__(self, capsys):
        self._capsys = capsys

    def take(self):
        found = []
        for line in self._capsys.readouterr().out.splitlines():
            try:
                document = json.loads(line)
            except ValueError:
                continue
            if isinstance(document, dict) and "_aws" in document:
                found.append(document)
        return found

    def counts(self, stripe_traffic=False):
        """Each line's metrics, {name: value}; without the Stripe traffic's
        (requests, leases, waits: what they are depends on timing) unless
        asked for. A line that held nothing else is left out."""
        lines = [counts_of(document) for document in self.take()]
        if not stripe_traffic:
            lines = [{name: value for name, value in line.items() if name not in STRIPE_TRAFFIC} for line in lines]
        return [line for line in lines if line]


def counts_of(document):
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["service"]]
    assert document["service"] == SERVICE
    assert all(m["Unit"] == "Count" for m in directive["Metrics"])
    # Powertools writes each value as a list of samples; one per name here.
    values = {m["Name"]: document[m["Name"]] for m in directive["Metrics"]}
    assert all(isinstance(v, list) and len(v) == 1 for v in values.values()), values
    return {name: int(v[0]) for name, v in values.items()}


@pytest.fixture
def emf(monkeypatch, capsys):
    """Metrics written as in Lambda. Listed before the fixtures that build
    services, so that those are built to write them."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    services.reset()
    return EmfLines(capsys)


@pytest.fixture
def studio(emf, client, sandbox):
    sandbox.create_account(id=ACCOUNT, display_name="Studio")
    connect(client, sandbox, ACCOUNT)
    sandbox.create_product(ACCOUNT, id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    sandbox.create_customer(ACCOUNT, email="ana@studio.test", id="cus_ana",
                            metadata={"customerhub_user_id": "user_ana"})
    emf.take()
    return sandbox


def test_each_delivery_writes_a_line_as_it_is_acknowledged_and_another_as_it_is_handled(client, studio, emf):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], id="sub_ana")
    created = studio.events[-1]
    assert deliver(client, created).status_code == 200
    assert deliver(client, created).status_code == 200
    unhandled = stripe_event("invoice.paid", ACCOUNT, {"id": "in_1", "object": "invoice"})
    assert deliver(client, unhandled).status_code == 200
    payload, headers = signed(created, secret="whsec_someone_else")
    assert client.post("/webhooks/stripe", headers=headers, body=payload).status_code == 400

    # The API's invocation, then stripe_events' (an event never handled is
    # not queued).
    assert emf.counts() == [{"WebhookQueued": 1}, {"WebhookHandled": 1}, {"WebhookQueued": 1},
                            {"WebhookDuplicate": 1}, {"WebhookIgnored": 1}, {"WebhookRejected": 1}]


def test_a_delivery_answered_500_counts_as_failed_and_a_failure_while_handling_as_handling_failed(
        client, studio, emf, aws_faults):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], id="sub_ana")
    aws_faults.fail("sqs", "SendMessage")
    assert deliver(client, studio.events[-1]).status_code == 500
    assert emf.counts() == [{"WebhookFailed": 1}]
    studio.fail_next("GET", "/v1/subscriptions/sub_ana", 500, should_retry=False)
    assert deliver(client, studio.events[-1]).status_code == 200
    assert emf.counts() == [{"WebhookQueued": 1}, {"WebhookHandlingFailed": 1}]


def test_each_request_to_stripe_is_counted_with_its_429s_by_reason_and_the_leases_of_slots(client, studio, emf):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], id="sub_ana")
    studio.fail_next("GET", "/v1/subscriptions/sub_ana", 429, rate_limited_reason="global-rate")
    assert deliver(client, studio.events[-1]).status_code == 200
    # The webhook's invocation queued it; the queue function's asked Stripe.
    queued, line = emf.counts(stripe_traffic=True)
    assert queued == {"WebhookQueued": 1}
    assert line.pop(STRIPE_CEILING_LEASES) >= 1
    line.pop(STRIPE_CEILING_WAITED, None)
    assert line == {"WebhookHandled": 1, "StripeRequests": 2, "StripeRateLimited": 1,
                    "StripeRateLimitedGlobalRate": 1}


def test_an_invocation_that_counted_nothing_writes_nothing_and_warns_nothing(client, studio, emf, recwarn):
    assert client.get("/access", headers=bearer(sub="user_ana", role="member")).status_code == 200
    assert client.get("/connectors/stripe", headers=ADMIN).status_code == 200
    assert emf.take() == []
    assert [str(w.message) for w in recwarn] == []


def test_outside_lambda_nothing_is_written_to_stdout_by_default(client, studio, emf, monkeypatch):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    services.reset()
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], id="sub_ana")
    assert deliver(client, studio.events[-1]).status_code == 200
    assert emf.take() == []


def test_announce_access_counts_the_grants_and_revocations_it_put(client, studio, emf, access_events):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], id="sub_ana")
    deliver(client, studio.events[-1])
    emf.take()
    access_events.drain()
    assert emf.counts() == [{"AccessGranted": 1}]
    studio.cancel_subscription(ACCOUNT, "sub_ana")
    deliver(client, studio.events[-1])
    access_events.drain()
    assert emf.counts() == [{"WebhookQueued": 1}, {"WebhookHandled": 1}, {"AccessRevoked": 1}]


def test_a_stream_batch_that_announces_nothing_writes_nothing(emf, aws):
    assert announce_access({"Records": []}, None) == {"batchItemFailures": []}
    assert emf.take() == []


def test_every_sweep_writes_due_revoked_kept_and_left_zeros_included(client, studio, emf):
    assert expire_access(scheduled_event("us-east-1"), FunctionContext(seconds_left=300))["due"] == 0
    assert emf.counts() == [{"SweepDue": 0, "SweepKept": 0, "SweepLeft": 0, "SweepRevoked": 0}]


def test_an_entitlement_the_sweep_could_not_check_is_counted_as_sweep_left(client, studio, emf):
    revoked = subscribe(client, studio, "user_bo", int(time.time()) + 30 * DAY, cancel_at_period_end=True)
    left = subscribe(client, studio, "user_cy", int(time.time()) + 30 * DAY, cancel_at_period_end=True)
    make_due(studio, revoked, "user_bo")
    make_due(studio, left, "user_cy")
    studio.fail_next("GET", "/v1/subscriptions/" + left["id"], 503, should_retry=False)
    emf.take()
    report = expire_access(scheduled_event("us-east-1"), FunctionContext(seconds_left=300))
    assert (report["due"], report["revoked"], report["left"]) == (2, 1, 1)
    assert emf.counts() == [{"SweepDue": 2, "SweepKept": 0, "SweepLeft": 1, "SweepRevoked": 1}]


def test_an_import_counts_its_pages_and_subscriptions_once_per_page(client, studio, emf, work):
    for name in ("bo", "cy", "di"):
        studio.create_customer(ACCOUNT, id="cus_" + name, metadata={"customerhub_user_id": "user_" + name})
        studio.create_subscription(ACCOUNT, "cus_" + name, ["prod_yoga"])
    work.drain()
    emf.take()
    response = client.post("/connectors/stripe/sync", headers=ADMIN)
    assert response.status_code == 202
    assert work.drain()["failed"] == 0
    lines = emf.counts()
    # One line per page (each its own sync_worker invocation): the three
    # statuses that may grant access (the account's open invoices before
    # past_due), then the re-reads.
    assert lines == [{"ImportPages": 1, "ImportSubscriptions": n} for n in (3, 0, 0, 0, 0)]


def test_an_import_whose_account_was_disconnected_counts_as_failed(client, studio, emf, work):
    work.drain()
    assert client.post("/connectors/stripe/sync", headers=ADMIN).status_code == 202
    assert client.delete("/connectors/stripe", headers=ADMIN).status_code == 200
    emf.take()
    work.drain()
    assert emf.counts() == [{"ImportFailed": 1}]


def test_the_catch_up_counts_the_events_it_found_zero_included(client, studio, emf, work):
    work.drain()
    emf.take()
    run_catch_up(work)
    assert emf.counts() == [{"CatchUpEvents": 0, "EventsMissed": 0}]
    # Nothing is listening in the tests: Stripe's delivery of this event failed.
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_yoga"], id="sub_ana")
    run_catch_up(work)
    assert emf.counts() == [{"CatchUpEvents": 1, "EventsMissed": 1}]
    # Found again by the next run (Stripe still has not delivered it): a duplicate, not missed twice.
    run_catch_up(work)
    assert emf.counts() == [{"CatchUpEvents": 1, "EventsMissed": 0}]
