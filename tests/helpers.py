"""What the tests share: the test environment, tokens, and signed webhooks."""
import json
import time
from collections import Counter
from contextlib import contextmanager
from typing import Iterator, List, Optional
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.config
import botocore.handlers
import jwt
import stripe

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
    }


def token(site: str = "site_a", role: str = "admin", sub: str = "user_1",
          email: Optional[str] = None, secret: str = JWT_SECRET, algorithm: str = "HS256",
          **claims) -> str:
    now = int(time.time())
    body = {"sub": sub, "site": site, "role": role, "iss": "customerhub",
            "aud": "stripe-connector", "iat": now, "exp": now + 600}
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


def deliver(client, event: dict, **sign):
    """POST the event to the webhook as Stripe would, signed."""
    payload, headers = signed(event, **sign)
    return client.post("/webhooks/stripe", headers=headers, body=payload)


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
        self.items_read = 0
        self._active = False

    def __call__(self, event_name: str, **kwargs) -> None:
        if self._active:
            # event_name is "before-call.<service>.<Operation>"
            _, service, operation = event_name.split(".", 2)
            self.calls[(service, operation)] += 1

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
        self.items_read = 0
        self._active = True
        try:
            yield self
        finally:
            self._active = False


AWS_CALLS = AwsCalls()
botocore.handlers.BUILTIN_HANDLERS.append(("before-call", AWS_CALLS))
botocore.handlers.BUILTIN_HANDLERS.append(("after-call.dynamodb", AWS_CALLS.read))
