"""The local stand-in for Lambda's SQS event source mappings: it receives a
queue's messages one at a time, hands each to the function as Lambda would,
deletes it when the function returns, and leaves it to come again when the
function raises (the queue's redrive policy moves it to the dead-letter
queue after MAX_RECEIVES tries, as in AWS)."""
import json
import logging
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

from chalicelib.queues import (EVENTS_DEAD_LETTER_QUEUE, EVENTS_QUEUE, MAX_MESSAGE_BYTES, MAX_RECEIVES,
                               SYNC_DEAD_LETTER_QUEUE, SYNC_QUEUE)
from local.pump import Pump

logger = logging.getLogger("local.queues")

Handler = Callable[[Dict[str, Any], Any], Any]

# How long a message a test's pump holds back stays invisible: longer than
# any test, which drains again to make it visible.
HELD = 3600


def create_work_queues(sqs: Any, visibility_timeout: int = 30) -> str:
    """The work queue and its dead-letter queue (infra/ declares them in AWS); its URL."""
    return _create_with_dead_letter(sqs, SYNC_QUEUE, SYNC_DEAD_LETTER_QUEUE, visibility_timeout)


def create_event_queues(sqs: Any, visibility_timeout: int = 30) -> str:
    """The queue of acknowledged Stripe events and its dead-letter queue,
    with the message size the template gives it; its URL."""
    return _create_with_dead_letter(sqs, EVENTS_QUEUE, EVENTS_DEAD_LETTER_QUEUE, visibility_timeout,
                                    {"MaximumMessageSize": str(MAX_MESSAGE_BYTES)})


# The rule that plays the stage's StripeEventRule (infra/template.yaml).
EVENT_SOURCE_RULE = "stripe-connector-events-from-eventbridge"


def route_event_source(events: Any, sqs: Any, source: str, bus: str = "default") -> str:
    """EventBridge's rule for Stripe's event destination: events whose
    `source` is `source` go to the events queue, as the stage's rule sends
    its partner bus's. The embedded EventBridge names no partner bus, so the
    rule is on `bus` (the default one); its ARN."""
    queue_url = sqs.get_queue_url(QueueName=EVENTS_QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule_arn = events.put_rule(Name=EVENT_SOURCE_RULE, EventBusName=bus,
                               EventPattern=json.dumps({"source": [source]}), State="ENABLED")["RuleArn"]
    events.put_targets(Rule=EVENT_SOURCE_RULE, EventBusName=bus, Targets=[{"Id": "events-queue", "Arn": queue_arn}])
    return rule_arn


def _create_with_dead_letter(sqs: Any, name: str, dead_letter_name: str, visibility_timeout: int,
                             attributes: Optional[Dict[str, str]] = None) -> str:
    dead = sqs.create_queue(QueueName=dead_letter_name)["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs.create_queue(QueueName=name, Attributes=dict(attributes or {}, **{
        "VisibilityTimeout": str(visibility_timeout),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(MAX_RECEIVES)}),
    }))["QueueUrl"]


def sqs_record(message: Dict[str, Any], queue_arn: str,
               attributes: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """A received message as Lambda's SQS event carries it (`attributes`:
    in place of the message's own)."""
    return {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"], "attributes": attributes if attributes is not None
            else message.get("Attributes") or {},
            "messageAttributes": message.get("MessageAttributes") or {},
            "md5OfBody": message.get("MD5OfBody"), "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn, "awsRegion": queue_arn.split(":")[3]}


class InvocationContext:
    """What Lambda's context gives the function: its request id, fresh for
    each invocation, and the time it has left."""

    def __init__(self, seconds: float = 60.0):
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class QueuePump(Pump):
    """`retry_after`: seconds until a failed message is visible again (0: at
    once); None holds it back until the next `drain()`, so that a test sees
    what one try left behind before the queue's next try."""

    def __init__(self, sqs: Any, handler: Handler, queue_name: str = SYNC_QUEUE,
                 retry_after: Optional[int] = 2):
        super().__init__("queue pump", logger)
        self._sqs = sqs
        self._handler = handler
        self._url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        self._arn = sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        self._retry_after = retry_after
        self._held: List[str] = []
        self._lock = threading.Lock()

    def drain(self, limit: int = 100_000) -> Dict[str, int]:
        """Hand over messages until none is visible; a failed one is made
        visible again after `retry_after` seconds, or held back until the
        next drain."""
        with self._lock:
            self._release_held()
            return self._drain(limit)

    def _drain(self, limit: int) -> Dict[str, int]:
        counts = {"handled": 0, "failed": 0}
        for _ in range(limit):
            answer = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=1,
                                               AttributeNames=["All"], MessageAttributeNames=["All"])
            messages = answer.get("Messages") or []
            if not messages:
                break
            message = messages[0]
            try:
                self._handler({"Records": [self._record(message)]}, InvocationContext())
            except Exception:
                counts["failed"] += 1
                logger.warning("Message %s failed; it comes again", message["MessageId"], exc_info=True)
                self._try_again_later(message)
                continue
            except BaseException:
                # The process died (a test's ProcessDied): SQS hands the
                # message out again once its visibility timeout is over.
                self._try_again_later(message)
                raise
            counts["handled"] += 1
            self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])
        return counts

    def _try_again_later(self, message: Dict[str, Any]) -> None:
        if self._retry_after is None:
            self._sqs.change_message_visibility(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"],
                                                VisibilityTimeout=HELD)
            self._held.append(message["ReceiptHandle"])
        else:
            self._sqs.change_message_visibility(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"],
                                                VisibilityTimeout=self._retry_after)

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for receipt_handle in held:
            self._sqs.change_message_visibility(QueueUrl=self._url, ReceiptHandle=receipt_handle,
                                                VisibilityTimeout=0)

    def _record(self, message: Dict[str, Any]) -> Dict[str, Any]:
        return sqs_record(message, self._arn)

    def start(self, interval: float = 0.5, workers: int = 1) -> "QueuePump":
        """Pump in the background, as `workers` concurrent invocations of the
        function (the event source mapping's maximum concurrency). Each
        worker receives for itself, as Lambda's do: SQS's visibility timeout
        keeps them off each other's messages."""
        self._run(interval, workers)
        return self

    def _round(self) -> None:
        self._drain(100_000)
