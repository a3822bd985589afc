"""The local stack the soak runs against.

`python -m local.run`, as `make run` starts it, in a process of its own on
free loopback ports (local/stack_runner.py): its embedded AWS, its stream
pump and its API server.
Stripe is a sandbox in the soak's own process, given to the stack the way
Stripe test-mode keys would be (`STRIPE_SECRET_KEY`, `STRIPE_API_BASE`, ...).
The sandbox has no webhook URL, so it records events and sends none: the
soak delivers every one itself. The webhook answers once an event is queued;
the stack's stand-in of Lambda's trigger hands it to stripe_events, so the
soak waits for the events queue to empty before it looks at access."""
import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import boto3
import requests
from boto3.dynamodb.types import TypeDeserializer

from chalicelib.queues import EVENTS_DEAD_LETTER_QUEUE, EVENTS_QUEUE
from local.run import (LOCAL_ACCOUNT, LOCAL_JWT_SECRET, LOCAL_SITE, SANDBOX_CLIENT_ID, SANDBOX_SECRET_KEY,
                       SANDBOX_WEBHOOK_SECRET)
from local.stack_runner import StackError, StackProcess, expect_status
from local.stripe_sandbox import StripeSandbox

SOURCE = "customerhub.stripe-connector"
QUEUE = "soak-access-events"


def start_sandbox() -> StripeSandbox:
    sandbox = StripeSandbox(secret_key=SANDBOX_SECRET_KEY, client_id=SANDBOX_CLIENT_ID).start()
    sandbox.create_account(id=LOCAL_ACCOUNT, display_name="Local Fitness Studio",
                           email="owner@localfitness.test")
    return sandbox


class LocalStack(StackProcess):
    """The stack on free ports (local/stack_runner.py), given the soak's
    sandbox as it would be given Stripe's test-mode keys: it starts no
    sandbox of its own."""

    def __init__(self, sandbox: StripeSandbox, log_path: str):
        super().__init__(Path(log_path), ports=("PORT", "LOCAL_AWS_PORT", "UI_PORT"), overrides={
            "STRIPE_SECRET_KEY": sandbox.secret_key, "STRIPE_CLIENT_ID": sandbox.client_id,
            "STRIPE_WEBHOOK_SECRET": SANDBOX_WEBHOOK_SECRET,
            "STRIPE_API_BASE": sandbox.url, "STRIPE_CONNECT_BASE": sandbox.url,
            "AUTH_JWT_SECRET": LOCAL_JWT_SECRET})
        self.sandbox = sandbox
        self.webhook_secret = SANDBOX_WEBHOOK_SECRET
        self.aws_url = self.env["AWS_ENDPOINT_URL"]
        self.site_id = LOCAL_SITE
        self.account_id = LOCAL_ACCOUNT
        self.admin_token = self.tokens["admin"]
        self._events_sqs: Any = None
        self._events_url: Optional[str] = None
        self._events_table: Any = None

    # ------------------------------------------------------------ the API

    def admin_headers(self) -> Dict[str, str]:
        return {"Authorization": "Bearer " + self.admin_token, "Content-Type": "application/json"}

    def access_of(self, user_id: str, session: Optional[requests.Session] = None) -> Dict[str, Any]:
        answer = (session or requests).get("%s/access/%s" % (self.api_url, user_id),
                                           headers=self.admin_headers(), timeout=30)
        expect_status(answer, 200, "GET /access/%s" % user_id)
        return answer.json()

    def events_unhandled(self) -> int:
        """Events on the events queue, waiting or being handled."""
        if self._events_url is None:
            self._events_sqs = self.aws("sqs")
            self._events_url = self._events_sqs.get_queue_url(QueueName=EVENTS_QUEUE)["QueueUrl"]
        attributes = self._events_sqs.get_queue_attributes(QueueUrl=self._events_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def event_handled(self, event_id: str) -> bool:
        """Whether the event's record is written: its handling is done."""
        if self._events_table is None:
            self._events_table = self.aws("dynamodb")
        found = self._events_table.get_item(TableName="stripe-connector-webhook-events",
                                            Key={"event_id": {"S": event_id}}, ConsistentRead=True)
        return "Item" in found

    def events_queued(self) -> Tuple[int, int]:
        """Events on the events queue (waiting or being handled), and in its
        dead-letter queue."""
        sqs = self.aws("sqs")
        counts = []
        for name in (EVENTS_QUEUE, EVENTS_DEAD_LETTER_QUEUE):
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            counts.append(int(attributes["ApproximateNumberOfMessages"])
                          + int(attributes["ApproximateNumberOfMessagesNotVisible"]))
        return counts[0], counts[1]

    def wait_for_events(self, limit: float = 600.0) -> float:
        """Wait until stripe_events has handled every event the webhook
        queued (acknowledged is not yet handled); how long that took."""
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if self.events_unhandled() == 0:
                return time.monotonic() - started
            time.sleep(0.25)
        raise StackError("The events queue still held %d events after %d s (log: %s)"
                         % (self.events_queued()[0], limit, self.log_path))

    def handling_retries(self) -> int:
        """Queued events whose handling failed once and came again (the stack's log)."""
        with open(self.log_path, errors="replace") as log:
            return sum("Handling a queued Stripe event failed" in line for line in log)

    def run_sweep(self) -> Dict[str, Any]:
        """`make sweep`: expire_access once, against this stack."""
        done = self.run_module("local.sweep", timeout=300)
        with open(self.log_path, "a") as log:
            log.write(done.stderr)
        if done.returncode != 0:
            raise StackError("python -m local.sweep exited with %d: %s" % (done.returncode, done.stderr[-2000:]))
        return json.loads(done.stdout[done.stdout.index("{"):])

    # ------------------------------------------------------------ AWS

    def aws(self, service: str):
        return boto3.client(service, endpoint_url=self.aws_url, region_name=self.env["AWS_DEFAULT_REGION"],
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def stream_images(self) -> List[Tuple[Optional[dict], Optional[dict]]]:
        """Every write of the entitlements table, in order, as (old, new)
        images in plain Python."""
        dynamodb, streams = self.aws("dynamodb"), self.aws("dynamodbstreams")
        table = dynamodb.describe_table(TableName="stripe-connector-entitlements")["Table"]
        shards = streams.describe_stream(StreamArn=table["LatestStreamArn"])["StreamDescription"]["Shards"]
        images = []
        for shard in shards:
            for record in _records(streams, table["LatestStreamArn"], shard["ShardId"]):
                change = record["dynamodb"]
                images.append((_plain(change.get("OldImage")), _plain(change.get("NewImage"))))
        return images


class AccessEventsQueue:
    """A queue subscribed to the access event bus by a rule, as a consumer of
    AccessGranted / AccessRevoked would be (tests.helpers.AccessEventsInbox
    does the same in-process). It is read all along, not only at the end:
    moto's ReceiveMessage looks at every message in the queue each time,
    and reading 1,400 waiting messages took over a minute."""

    def __init__(self, stack: LocalStack):
        self._sqs = stack.aws("sqs")
        events = stack.aws("events")
        self._queue = self._sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._queue, AttributeNames=["QueueArn"])
        events.put_rule(Name=QUEUE, EventBusName="default", EventPattern=json.dumps({"source": [SOURCE]}))
        events.put_targets(Rule=QUEUE, EventBusName="default",
                           Targets=[{"Id": "queue", "Arn": arn["Attributes"]["QueueArn"]}])
        self.received: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self, interval: float = 1.0) -> "AccessEventsQueue":
        def loop() -> None:
            while not self._stop.wait(interval):
                self.read()
        self._thread = threading.Thread(target=loop, name="soak-access-events", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def read(self) -> int:
        """Take what has arrived since the last read; how many messages that was."""
        with self._lock:
            return self._read()

    def _read(self) -> int:
        taken = 0
        while True:
            messages = self._sqs.receive_message(QueueUrl=self._queue, MaxNumberOfMessages=10,
                                                 VisibilityTimeout=300).get("Messages") or []
            if not messages:
                return taken
            for message in messages:
                body = json.loads(message["Body"])
                self.received.append(dict(body["detail"], type=body["detail-type"]))
            self._sqs.delete_message_batch(QueueUrl=self._queue, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            taken += len(messages)

    def settle(self, enough: int, quiet: float = 3.0, limit: float = 60.0) -> None:
        """Read until nothing new has come for `quiet` seconds with at least
        `enough` messages in hand, or for `limit` seconds at most. The stack's
        stream pump announces every 0.5 s."""
        self.stop()
        started = last = time.monotonic()
        while time.monotonic() - started < limit:
            if self.read():
                last = time.monotonic()
            elif time.monotonic() - last >= quiet and len(self.received) >= enough:
                return
            time.sleep(0.25)


def _records(streams, arn: str, shard_id: str) -> Iterator[dict]:
    after = None
    while True:
        if after is None:
            iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id,
                                                  ShardIteratorType="TRIM_HORIZON")
        else:
            iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id,
                                                  ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                                                  SequenceNumber=after)
        records = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]
        if not records:
            return
        yield from records
        after = records[-1]["dynamodb"]["SequenceNumber"]


_DESERIALIZE = TypeDeserializer().deserialize


def _plain(image: Optional[dict]) -> Optional[dict]:
    if not image:
        return None
    return {name: _DESERIALIZE(value) for name, value in image.items()}
