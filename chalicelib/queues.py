"""The connector's SQS queues, each consumed by a function one message at a
time: the work queue of imports and catch-ups (`sync_worker`) and the queue
of Stripe's events the webhook has acknowledged (`stripe_events`). A message
that keeps failing goes to its queue's dead-letter queue after MAX_RECEIVES
tries (the queues' redrive policies, declared with the infrastructure)."""
import json
import logging
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence

logger = logging.getLogger(__name__)

# Chalice names the queue in the function's event source at packaging time:
# it is a constant, not a setting.
SYNC_QUEUE = "stripe-connector-sync"
SYNC_DEAD_LETTER_QUEUE = "stripe-connector-sync-dead-letter"
EVENTS_QUEUE = "stripe-connector-events"
EVENTS_DEAD_LETTER_QUEUE = "stripe-connector-events-dead-letter"
# The largest message body the events queue takes (its MaximumMessageSize,
# in bytes), below the 1 MiB a webhook body may be.
MAX_MESSAGE_BYTES = 256 * 1024
# How often a message is tried before the redrive policy moves it aside;
# the worker's last try marks its import failed.
MAX_RECEIVES = 5
# SQS takes at most ten entries per SendMessageBatch.
ENTRIES_PER_SEND = 10
SEND_ATTEMPTS = 3


class QueueFailure(Exception):
    """SQS did not take a message."""


class WorkQueue:
    """One of the queues, found by its name on the first send."""

    def __init__(self, connect: Callable[[], Any], queue_name: str = SYNC_QUEUE):
        # The SQS client is made on the first send: most invocations of the
        # API function (the card, access) send nothing, and making a client
        # costs a cold start about 50 ms.
        self._connect = connect
        self._client: Any = None
        self._queue_name = queue_name
        self._url: Optional[str] = None

    def send(self, message: Dict[str, Any]) -> None:
        self.send_all([message])

    def send_text(self, body: str) -> None:
        """One message, as it is given, in one SendMessage (after the first
        send of the container, which asks the queue's URL first)."""
        try:
            self._sqs().send_message(QueueUrl=self._queue_url(), MessageBody=body)
        except Exception as exc:
            raise QueueFailure("SQS did not take the message: %s" % exc) from exc

    def send_all(self, messages: Sequence[Dict[str, Any]]) -> None:
        """Send every message, ten to a call; entries SQS refuses are sent
        again, and QueueFailure says that some never went."""
        for start in range(0, len(messages), ENTRIES_PER_SEND):
            pending: List[Dict[str, str]] = [
                {"Id": str(index), "MessageBody": json.dumps(message, sort_keys=True)}
                for index, message in enumerate(messages[start:start + ENTRIES_PER_SEND])]
            for _ in range(SEND_ATTEMPTS):
                try:
                    answer = self._sqs().send_message_batch(QueueUrl=self._queue_url(), Entries=pending)
                except Exception as exc:
                    raise QueueFailure("SQS did not take the messages: %s" % exc) from exc
                failed = {entry["Id"] for entry in answer.get("Failed") or []}
                pending = [entry for entry in pending if entry["Id"] in failed]
                if not pending:
                    break
            if pending:
                raise QueueFailure("SQS refused %d messages" % len(pending))

    def _sqs(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _queue_url(self) -> str:
        if self._url is None:
            self._url = self._sqs().get_queue_url(QueueName=self._queue_name)["QueueUrl"]
        return self._url


def sent_at(record: Dict[str, Any]) -> Optional[datetime]:
    """When SQS took the message (its SentTimestamp, milliseconds)."""
    try:
        return datetime.fromtimestamp(int((record.get("attributes") or {})["SentTimestamp"]) / 1000, tz=timezone.utc)
    except (KeyError, TypeError, ValueError):
        return None


def receive_count(record: Dict[str, Any]) -> int:
    """How many times SQS has handed out this message, this time included."""
    try:
        return int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
    except (TypeError, ValueError):
        return 1
