"""The local stand-in for Lambda's SQS event source mapping: it receives the
work queue's messages one at a time, hands each to the function as Lambda
would, deletes it when the function returns, and leaves it to come again
when the function raises (the queue's redrive policy moves it to the
dead-letter queue after MAX_RECEIVES tries, as in AWS)."""
import json
import logging
import threading
from typing import Any, Callable, Dict, Optional

from chalicelib.queues import MAX_RECEIVES, SYNC_DEAD_LETTER_QUEUE, SYNC_QUEUE

logger = logging.getLogger("local.queues")

Handler = Callable[[Dict[str, Any], Any], Any]


def create_work_queues(sqs: Any, visibility_timeout: int = 30) -> str:
    """The work queue and its dead-letter queue (infra/ declares them in AWS); its URL."""
    dead = sqs.create_queue(QueueName=SYNC_DEAD_LETTER_QUEUE)["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs.create_queue(QueueName=SYNC_QUEUE, Attributes={
        "VisibilityTimeout": str(visibility_timeout),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(MAX_RECEIVES)}),
    })["QueueUrl"]


class QueuePump:
    def __init__(self, sqs: Any, handler: Handler, queue_name: str = SYNC_QUEUE, retry_after: int = 2):
        self._sqs = sqs
        self._handler = handler
        self._url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        self._arn = sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        # A failed message is visible again after this many seconds.
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def drain(self, limit: int = 100_000) -> Dict[str, int]:
        """Hand over messages until none is visible; a failed one is made
        visible again after `retry_after` seconds (at once when 0)."""
        counts = {"handled": 0, "failed": 0}
        with self._lock:
            for _ in range(limit):
                answer = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=1,
                                                   AttributeNames=["All"], MessageAttributeNames=["All"])
                messages = answer.get("Messages") or []
                if not messages:
                    break
                message = messages[0]
                try:
                    self._handler({"Records": [self._record(message)]}, None)
                except Exception:
                    counts["failed"] += 1
                    logger.warning("Work message %s failed; it comes again", message["MessageId"], exc_info=True)
                    self._sqs.change_message_visibility(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"],
                                                        VisibilityTimeout=self._retry_after)
                    continue
                counts["handled"] += 1
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])
        return counts

    def _record(self, message: Dict[str, Any]) -> Dict[str, Any]:
        return {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"], "attributes": message.get("Attributes") or {},
                "messageAttributes": message.get("MessageAttributes") or {},
                "md5OfBody": message.get("MD5OfBody"), "eventSource": "aws:sqs",
                "eventSourceARN": self._arn, "awsRegion": self._arn.split(":")[3]}

    def start(self, interval: float = 0.5) -> "QueuePump":
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.drain()
                except Exception:  # keep pumping: the next round retries
                    logger.exception("Receiving work messages failed")
        self._thread = threading.Thread(target=loop, name="queue-pump", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
