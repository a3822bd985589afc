"""What the tests share: the test environment, tokens, signed webhooks, and
hooks on every AWS call that count calls and inject faults."""
import io
import json
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.config
import botocore.handlers
import jwt
import moto.core.models  # noqa: F401  (registers the in-process AWS's handler before the fault hooks below)
import stripe
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ReadTimeoutError

JWT_SECRET = "test-secret-for-customerhub-tokens-0123456789-and-more-bytes-so-hs512-is-fine"
WEBHOOK_SECRET = "whsec_test_connector_endpoint"
APP_BASE_URL = "https://app.customerhub.test"
REDIRECT_URI = "https://api.customerhub.test/connectors/stripe/oauth/callback"
SECRET_KEY = "sk_test_platform_key_for_tests"
CLIENT_ID = "ca_test_platform"


def environment(sandbox_url: str) -> dict:
    return {
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_CLIENT_ID": CLIENT_ID,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": sandbox_url,
        "STRIPE_CONNECT_BASE": sandbox_url,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "APP_BASE_URL": APP_BASE_URL,
        "OAUTH_REDIRECT_URI": REDIRECT_URI,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # The sandbox holds no rate limit of its own: at the default ceiling
        # (Stripe's test-mode limit) every test would wait for its slots. The
        # ceiling's own tests (test_stripe_ceiling.py) set the rate they hold.
        "STRIPE_REQUESTS_PER_SECOND": "1000",
    }


def token(site: str = "site_a", role: str = "admin", sub: str = "user_1",
          email: Optional[str] = None, secret: str = JWT_SECRET, algorithm: str = "HS256",
          **claims) -> str:
    now = int(time.time())
    # Some modules mint their tokens once, when collected: a token outlives
    # the whole suite on a slow machine (a test that wants one expired says so).
    body = {"sub": sub, "site": site, "role": role, "iss": "customerhub",
            "aud": "stripe-connector", "iat": now, "exp": now + 4 * 3600}
    if email:
        body["email"] = email
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, secret, algorithm=algorithm)


def bearer(**kwargs) -> dict:
    return {"Authorization": "Bearer " + token(**kwargs)}


def query_of(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def signed(event: dict, secret: str = WEBHOOK_SECRET, timestamp: Optional[int] = None):
    """A webhook body and the headers Stripe would send with it."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return payload, {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"}


class QueuedEvents:
    """Where the webhook's events go next: the events queue's consumer the
    `client` fixture sets (tests/conftest.py, `stripe_events`)."""

    def __init__(self):
        self.consumer = None

    def drain(self) -> Dict[str, int]:
        if self.consumer is None:
            return {"handled": 0, "failed": 0}
        return self.consumer.drain()


QUEUED_EVENTS = QueuedEvents()


def deliver(client, event: dict, handle: bool = True, **sign):
    """POST the event to the webhook as Stripe would, signed, and return its
    answer; once it is queued, hand it to the queue's function as Lambda
    would (`handle=False`: leave it on the queue)."""
    payload, headers = signed(event, **sign)
    response = client.post("/webhooks/stripe", headers=headers, body=payload)
    if handle and response.status_code == 200:
        QUEUED_EVENTS.drain()
    return response


def stripe_event(event_type: str, account: Optional[str], data_object: dict,
                 created: Optional[int] = None, livemode: bool = False,
                 event_id: Optional[str] = None) -> dict:
    return {
        "id": event_id or "evt_%d" % time.time_ns(),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "account": account,
        "created": created if created is not None else int(time.time()),
        "livemode": livemode,
        "type": event_type,
        "data": {"object": data_object},
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
    }


class AccessEventsInbox:
    """Pumps the entitlements stream into `announce_access` and collects the
    AccessGranted / AccessRevoked events EventBridge routes to a queue."""

    def __init__(self, settings):
        from app import announce_access
        from local.streams import StreamPump

        def client(name):
            # Account-based endpoints (<account>.streams-ddb...) are not
            # among the addresses the in-process AWS answers.
            return boto3.client(name, region_name=settings.aws_region,
                                config=botocore.config.Config(account_id_endpoint_mode="disabled"))

        self._sqs = client("sqs")
        self._events = client("events")
        self._queue = self._sqs.create_queue(QueueName="access-events")["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._queue, AttributeNames=["QueueArn"])
        self._events.put_rule(Name="access-events", EventBusName=settings.access_event_bus,
                              EventPattern=json.dumps({"source": ["customerhub.stripe-connector"]}))
        self._events.put_targets(Rule="access-events", EventBusName=settings.access_event_bus,
                                 Targets=[{"Id": "queue", "Arn": arn["Attributes"]["QueueArn"]}])
        self.pump = StreamPump(client("dynamodb"), client("dynamodbstreams"),
                               settings.entitlements_table, announce_access)
        self.received: List[dict] = []

    def drain(self) -> List[dict]:
        """Announce what the stream holds; the events that arrived since the
        last drain, in order, as {"type", **detail}."""
        self.pump.drain()
        arrived = []
        while True:
            answer = self._sqs.receive_message(QueueUrl=self._queue, MaxNumberOfMessages=10)
            messages = answer.get("Messages") or []
            if not messages:
                break
            for message in messages:
                body = json.loads(message["Body"])
                arrived.append(dict(body["detail"], type=body["detail-type"], source=body["source"]))
                self._sqs.delete_message(QueueUrl=self._queue, ReceiptHandle=message["ReceiptHandle"])
        self.received.extend(arrived)
        return arrived


class AwsCalls:
    """Counts AWS API calls (one per operation, retries not counted) through
    a botocore event hook. The hook is installed on every botocore session
    created after this module is imported, which is before any test makes
    one; it counts only inside `counting()`."""

    def __init__(self):
        self.calls: Counter = Counter()
        self.tables: Counter = Counter()
        self.items_read = 0
        self._active = False

    def __call__(self, event_name: str, **kwargs) -> None:
        if self._active:
            # event_name is "before-call.<service>.<Operation>"
            _, service, operation = event_name.split(".", 2)
            self.calls[(service, operation)] += 1

    def named(self, event_name: str, params=None, **kwargs) -> None:
        if self._active and isinstance(params, dict) and "TableName" in params:
            self.tables[params["TableName"]] += 1

    def on(self, table: str) -> int:
        """DynamoDB requests that named this table (a transaction's items do
        not count)."""
        return self.tables[table]

    def read(self, http_response=None, parsed=None, model=None, **kwargs) -> None:
        if self._active and isinstance(parsed, dict) and model is not None:
            if "Items" in parsed:
                self.items_read += len(parsed["Items"])
            elif parsed.get("Item"):
                self.items_read += 1

    def of(self, service: str) -> int:
        return sum(n for (s, _), n in self.calls.items() if s == service)

    @contextmanager
    def counting(self) -> Iterator["AwsCalls"]:
        self.calls.clear()
        self.tables.clear()
        self.items_read = 0
        self._active = True
        try:
            yield self
        finally:
            self._active = False


AWS_CALLS = AwsCalls()
botocore.handlers.BUILTIN_HANDLERS.append(("before-call", AWS_CALLS))
botocore.handlers.BUILTIN_HANDLERS.append(("after-call.dynamodb", AWS_CALLS.read))
botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build.dynamodb", AWS_CALLS.named))


class ProcessDied(BaseException):
    """The process stops here, as a Lambda timeout or a lost container stops
    it. Not an Exception: no `except Exception` on the way up catches it, so
    nothing after it runs, answers or reports."""


# Where a request the fault injector answers itself is pointed, so that the
# in-process AWS, which answers every AWS address, does not also carry it out.
_NOWHERE = "https://aws-fault.invalid/"


class _Body(io.BytesIO):
    def stream(self, **kwargs):
        yield self.read()


@dataclass
class Fault:
    """One armed fault: where it strikes, what it does there, how often."""
    hook: str
    service: str
    operation: str
    act: Callable[..., Any]
    times: Optional[int]
    let_through: int = 0
    hits: int = 0

    @property
    def used_up(self) -> bool:
        return self.times is not None and self.hits >= self.times


class AwsFaults:
    """Faults at the AWS boundary, through botocore's event hooks on every
    session (as AWS_CALLS counts); nothing happens unless armed. Operations
    are named as botocore names them ("dynamodb", "TransactWriteItems";
    "eventbridge", "PutEvents").

    - `answer`: AWS answers each attempt with an error and does nothing. The
      client's own retries are attempts too, so this is throttling as the
      client meets it: it gives up after its last attempt.
    - `fail`: the call fails as its caller sees it once the client gave up
      (outside botocore's retries): before AWS did anything, or with
      `after=True` after AWS did it (the answer is lost on the way back).
    - `lose_answer`: AWS carries the attempt out and its answer is lost on the
      way back (a read timeout); the client, not knowing, tries again.
    - `crash`: the process dies (ProcessDied) just before the call or just
      after AWS carried it out.
    - `refuse_entries`: PutEvents answers 200 but refuses some of its entries
      (EventBridge's partial failure); the others are put on the bus.

    `let_through` lets that many go by first, and `times` (None: until
    `clear()`) says how often a fault strikes; both count attempts for
    `answer`, `lose_answer` and `refuse_entries`, and calls for the others.
    Each armed Fault counts its `hits`.
    """

    def __init__(self):
        self.faults: List[Fault] = []
        self._refused = threading.local()

    def answer(self, service: str, operation: str, code: str, status: int = 400,
               message: str = "Injected by the test", times: Optional[int] = 1,
               let_through: int = 0, **fields: Any) -> Fault:
        """`fields` go into the error body beside the code (CancellationReasons, ...)."""
        def act(request, **kwargs):
            request.url = _NOWHERE
            body = json.dumps(dict(fields, __type=code, message=message)).encode("utf-8")
            return AWSResponse(request.url, status, {"x-amzn-RequestId": "injected-fault",
                                                     "Content-Type": "application/x-amz-json-1.0"},
                               _Body(body))
        return self._arm("before-send", service, operation, act, times, let_through)

    def fail(self, service: str, operation: str, code: str = "InternalServerError",
             times: Optional[int] = 1, let_through: int = 0, after: bool = False) -> Fault:
        def act(**kwargs):
            raise ClientError({"Error": {"Code": code, "Message": "Injected by the test"}}, operation)
        return self._arm("after-call" if after else "before-call", service, operation, act, times, let_through)

    def lose_answer(self, service: str, operation: str, times: Optional[int] = 1,
                    let_through: int = 0) -> Fault:
        def act(request, **kwargs):
            raise ReadTimeoutError(endpoint_url=request.url)
        return self._arm("answer-lost", service, operation, act, times, let_through)

    def crash(self, service: str, operation: str, after: bool = True, let_through: int = 0) -> Fault:
        def act(**kwargs):
            raise ProcessDied("%s %s %s" % ("after" if after else "before", service, operation))
        return self._arm("after-call" if after else "before-call", service, operation, act, 1, let_through)

    def refuse_entries(self, positions: Sequence[int], code: str = "ThrottlingException",
                       times: Optional[int] = 1, let_through: int = 0) -> Fault:
        """The entries at these positions of a PutEvents call are refused."""
        def act(request, **kwargs):
            call = json.loads(request.body)
            refused = [i for i in range(len(call["Entries"])) if i in positions]
            self._refused.answer = (refused, code)
            kept = [entry for i, entry in enumerate(call["Entries"]) if i not in refused]
            if kept:
                body = json.dumps(dict(call, Entries=kept)).encode("utf-8")
                request.body = body
                request.headers["Content-Length"] = str(len(body))
                return None
            request.url = _NOWHERE
            return AWSResponse(request.url, 200, {"x-amzn-RequestId": "injected-fault"},
                               _Body(json.dumps({"FailedEntryCount": 0, "Entries": []}).encode("utf-8")))
        return self._arm("before-send", "eventbridge", "PutEvents", act, times, let_through)

    def pending(self) -> List[Fault]:
        """The armed faults that have not struck as often as they were armed to."""
        return [fault for fault in self.faults if not fault.used_up]

    def clear(self) -> None:
        self.faults.clear()
        self._refused.answer = None

    def _arm(self, hook, service, operation, act, times, let_through) -> Fault:
        fault = Fault(hook, service, operation, act, times, let_through)
        self.faults.append(fault)
        return fault

    def _strike(self, hook: str, event_name: str, **kwargs):
        _, service, operation = event_name.split(".", 2)
        for fault in self.faults:
            if (fault.hook, fault.service, fault.operation) != (hook, service, operation) or fault.used_up:
                continue
            if fault.let_through:
                fault.let_through -= 1
                return None
            fault.hits += 1
            return fault.act(**kwargs)
        return None

    def before_send(self, event_name: str, request=None, **kwargs):
        return self._strike("before-send", event_name, request=request)

    def after_aws(self, event_name: str, request=None, **kwargs):
        return self._strike("answer-lost", event_name, request=request)

    def before_call(self, event_name: str, **kwargs):
        self._strike("before-call", event_name)

    def after_call(self, event_name: str, parsed=None, **kwargs):
        refused = getattr(self._refused, "answer", None)
        if refused and event_name == "after-call.eventbridge.PutEvents" and isinstance(parsed, dict):
            # Put back, at their places, the entries EventBridge refused.
            self._refused.answer = None
            positions, code = refused
            entries = list(parsed.get("Entries") or [])
            for position in positions:
                entries.insert(position, {"ErrorCode": code, "ErrorMessage": "Injected by the test"})
            parsed["Entries"] = entries
            parsed["FailedEntryCount"] = parsed.get("FailedEntryCount", 0) + len(positions)
        self._strike("after-call", event_name)


AWS_FAULTS = AwsFaults()
# "before-send.*.*" sits deeper in botocore's handler tree than the in-process
# AWS's own "before-send" handler, so it is asked first.
botocore.handlers.BUILTIN_HANDLERS.append(("before-send.*.*", AWS_FAULTS.before_send))
# Beside that handler and after it: AWS has answered when this one runs.
botocore.handlers.BUILTIN_HANDLERS.append(("before-send", AWS_FAULTS.after_aws))
botocore.handlers.BUILTIN_HANDLERS.append(("before-call", AWS_FAULTS.before_call))
botocore.handlers.BUILTIN_HANDLERS.append(("after-call", AWS_FAULTS.after_call))


def settled(read: Callable[[], Any], done: Callable[[Any], bool], seconds: float = 10) -> Any:
    """What `read` gives once `done` holds of it (a running stack's webhooks,
    queues and schedules caught up), asserted within `seconds`."""
    deadline = time.monotonic() + seconds
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    assert done(value), value
    return value
