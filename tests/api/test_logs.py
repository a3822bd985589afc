"""The log lines as Lambda writes them (JSON through powertools): every line
of a request names what it is about, and nothing that authenticates anyone
reaches a log record."""
import io
import json
import logging
import time

import pytest

from app import app, expire_access
from chalicelib import observability
from chalicelib.observability import CHATTY_LIBRARIES, SERVICE
from local.scheduled import scheduled_event
from tests.api.test_billing_portal import MEMBER as PORTAL_MEMBER, open_session, portal_open
from tests.api.test_connect_lifecycle import ADMIN, approve_at_stripe, come_back, complete, connect, start
from tests.api.test_expire_access import FunctionContext, make_due, subscribe
from tests.helpers import JWT_SECRET, SECRET_KEY, WEBHOOK_SECRET, deliver, query_of, signed, stripe_event, token

ACCOUNT = "acct_studio"
DAY = 24 * 3600
TOUCHED = ("chalicelib", SERVICE, "") + CHATTY_LIBRARIES


class Records(logging.Handler):
    """Every record, of every logger, as it was made (before any formatter
    masked anything)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def texts(self):
        for record in self.records:
            parts = [record.getMessage(), repr(record.args), repr(record.msg)]
            if record.exc_info:
                parts.append(logging.Formatter().formatException(record.exc_info))
            parts.extend(repr(v) for k, v in vars(record).items() if k in observability.KEYS)
            yield record.name, "\n".join(parts)


@pytest.fixture
def json_logs():
    """Logging configured as in Lambda, writing into a buffer; every
    logger it touched put back as it was afterwards."""
    saved = {name: (logging.getLogger(name), list(logging.getLogger(name).handlers), logging.getLogger(name).level,
                    logging.getLogger(name).propagate, dict(vars(logging.getLogger(name))))
             for name in TOUCHED}
    root_filters = {handler: list(handler.filters) for handler in logging.getLogger().handlers}
    stream = io.StringIO()
    observability.configure_logging(observability.JSON, stream)
    yield stream
    for logger, handlers, level, propagate, attributes in saved.values():
        for added in set(vars(logger)) - set(attributes):
            delattr(logger, added)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    for handler, filters in root_filters.items():
        handler.filters[:] = filters


def lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.fixture
def studio(client, sandbox):
    sandbox.create_account(id=ACCOUNT, display_name="Studio")
    connect(client, sandbox, ACCOUNT)
    sandbox.create_product(ACCOUNT, id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    return sandbox


def test_a_connection_logs_json_lines_naming_the_admin_the_site_and_the_request(client, sandbox, json_logs):
    sandbox.create_account(id=ACCOUNT, display_name="Studio")
    connect(client, sandbox, ACCOUNT)
    (connected,) = [line for line in lines(json_logs) if line["message"].startswith("Site site_a connected")]
    assert connected["level"] == "INFO"
    assert connected["service"] == SERVICE
    assert connected["name"] == "chalicelib.connections"
    assert connected["site_id"] == "site_a"
    assert connected["user_id"] == "admin_1"
    assert connected["route"] == "POST /connectors/stripe/oauth/callback"
    assert connected["function_request_id"]


class LambdaContext:
    aws_request_id = "4d1a0f3e-lambda-request"
    function_name = "stripe-connector-dev"

    def get_remaining_time_in_millis(self):
        return 20_000


def test_through_api_gateway_a_line_carries_lambdas_and_the_gateways_request_ids(studio, json_logs):
    """The function as Lambda calls it, with a REST API proxy event."""
    event = {
        "resource": "/connectors/stripe", "path": "/connectors/stripe", "httpMethod": "DELETE",
        "headers": {"Authorization": ADMIN["Authorization"]},
        "multiValueHeaders": {"Authorization": [ADMIN["Authorization"]]},
        "queryStringParameters": None, "multiValueQueryStringParameters": None, "pathParameters": None,
        "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {"resourcePath": "/connectors/stripe", "httpMethod": "DELETE",
                           "requestId": "c6af9ac6-gateway-request", "path": "/api/connectors/stripe",
                           "stage": "api", "identity": {"sourceIp": "203.0.113.9"}},
    }
    answer = app(event, LambdaContext())
    assert answer["statusCode"] == 200
    (disconnected,) = [line for line in lines(json_logs) if "disconnected" in line["message"]]
    assert disconnected["correlation_id"] == "c6af9ac6-gateway-request"
    assert disconnected["function_request_id"] == "4d1a0f3e-lambda-request"
    assert (disconnected["site_id"], disconnected["route"]) == ("site_a", "DELETE /connectors/stripe")


def test_every_line_of_a_webhook_names_its_event_type_and_account(client, studio, json_logs):
    studio.create_customer(ACCOUNT, id="cus_nobody")
    studio.create_subscription(ACCOUNT, "cus_nobody", ["prod_yoga"], id="sub_nobody")
    event = studio.events[-1]
    json_logs.truncate(0)
    assert deliver(client, event).status_code == 200
    assert deliver(client, event).status_code == 200
    found = lines(json_logs)
    assert [line["message"] for line in found] == [
        "Subscription sub_nobody on acct_studio names no member of site site_a: kept as unmatched",
        "Duplicate delivery of %s" % event["id"]]
    for line in found:
        assert (line["stripe_event_id"], line["stripe_event_type"], line["stripe_account"]) == (
            event["id"], "customer.subscription.created", ACCOUNT)
        # Handled from the queue (stripe_events), not within the request.
        assert "route" not in line and "correlation_id" not in line
        assert "site_id" not in line and "user_id" not in line
    # Two deliveries, two invocations of the queue's function.
    assert found[0]["function_request_id"] != found[1]["function_request_id"]


def test_the_keys_of_one_request_do_not_reach_the_next(client, studio, json_logs):
    event = stripe_event("invoice.paid", ACCOUNT, {"id": "in_1", "object": "invoice"})
    assert deliver(client, event).status_code == 200
    assert client.delete("/connectors/stripe", headers=ADMIN).status_code == 200
    ignored, disconnected = lines(json_logs)[-2:]
    assert ignored["message"].startswith("Ignoring invoice.paid")
    assert ignored["stripe_event_id"] == event["id"]
    # Ignored at the acknowledgement, within the request.
    assert ignored["route"] == "POST /webhooks/stripe"
    assert disconnected["message"] == "Site site_a disconnected from %s by an admin" % ACCOUNT
    assert (disconnected["site_id"], disconnected["user_id"], disconnected["route"]) == (
        "site_a", "admin_1", "DELETE /connectors/stripe")
    assert not {"stripe_event_id", "stripe_event_type", "stripe_account"} & set(disconnected)


def test_the_sweeps_lines_name_the_site_and_account_of_the_entitlement_they_are_about(client, studio, json_logs):
    subscription = subscribe(client, studio, "user_ana", int(time.time()) + 30 * DAY, cancel_at_period_end=True)
    make_due(studio, subscription, "user_ana")
    studio.fail_next("GET", "/v1/subscriptions/" + subscription["id"], 503, should_retry=False)
    json_logs.truncate(0)
    json_logs.seek(0)
    expire_access(scheduled_event("us-east-1"), FunctionContext(seconds_left=300))
    left, done = lines(json_logs)
    assert left["message"].startswith("Sweep left %s of site_a for the next run" % subscription["id"])
    assert (left["site_id"], left["stripe_account"], left["subscription_id"]) == (
        "site_a", ACCOUNT, subscription["id"])
    assert done["message"].startswith("Sweep done")
    assert "site_id" not in done and "subscription_id" not in done


def test_no_secret_token_code_state_or_signature_reaches_any_log_record(client, sandbox, json_logs):
    records = Records()
    root = logging.getLogger()
    saved_level = root.level
    loggers = [root, logging.getLogger("chalicelib"), logging.getLogger(SERVICE)]
    for logger in loggers:
        logger.addHandler(records)
    root.setLevel(logging.DEBUG)
    admin_token = token(site="site_a", role="admin", sub="admin_1")
    secrets = {JWT_SECRET, WEBHOOK_SECRET, SECRET_KEY, admin_token}
    try:
        # The OAuth round trip, and a completion with a code Stripe refuses.
        sandbox.create_account(id=ACCOUNT, display_name="Studio")
        location = approve_at_stripe(sandbox, start(client), ACCOUNT)
        page = come_back(client, location)
        secrets.update({page["code"], page["state"]})
        assert complete(client, page).status_code == 200
        refused = dict(state=query_state(start(client)), code="ac_RefusedCodeNobodyIssued42")
        secrets.update(refused.values())
        assert complete(client, refused).status_code == 502
        # Webhooks: one well signed, one signed with another secret, one with
        # a header that is not a signature at all.
        event = stripe_event("account.updated", ACCOUNT, {"id": ACCOUNT, "object": "account"})
        payload, headers = signed(event)
        secrets.add(headers["Stripe-Signature"])
        secrets.add(headers["Stripe-Signature"].split("v1=")[1])
        assert client.post("/webhooks/stripe", headers=headers, body=payload).status_code == 200
        payload, headers = signed(event, secret="whsec_AnotherEndpointsSecret77")
        secrets.update({headers["Stripe-Signature"], "whsec_AnotherEndpointsSecret77"})
        assert client.post("/webhooks/stripe", headers=headers, body=payload).status_code == 400
        garbage = {"Stripe-Signature": "t=1,v1=NotASignatureButSecretLooking99", "Content-Type": "application/json"}
        secrets.add(garbage["Stripe-Signature"])
        assert client.post("/webhooks/stripe", headers=garbage, body=payload).status_code == 400
        # A member's billing portal session, and a token that does not verify.
        portal_open(client, sandbox, "acct_gym")
        sandbox.create_customer("acct_gym", email="member@gym.test", metadata={"customerhub_user_id": "member_1"})
        secrets.add(PORTAL_MEMBER["Authorization"].split(" ", 1)[1])
        assert open_session(client).status_code == 200
        forged = token(site="site_a", role="admin", secret="forged-secret-of-at-least-thirty-two-bytes!!")
        secrets.add(forged)
        assert client.get("/connectors/stripe", headers={"Authorization": "Bearer " + forged}).status_code == 401
    finally:
        for logger in loggers:
            logger.removeHandler(records)
        root.setLevel(saved_level)

    ours = list(records.texts())
    assert any(name.startswith("chalicelib") for name, _ in ours)
    leaks = [(name, secret, text) for name, text in ours for secret in secrets if secret in text]
    assert leaks == []
    written = json_logs.getvalue()
    assert written
    assert [secret for secret in secrets if secret in written] == []


def query_state(authorize_url):
    return query_of(authorize_url)["state"]
