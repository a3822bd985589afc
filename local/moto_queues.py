"""SQS queues in the embedded AWS whose requests do not slow down as a queue
fills.

moto (5.2) answers each SendMessage by computing every attribute of the
queue first (to read one, ContentBasedDeduplication), among them the three
approximate counts, each a pass over every message that reads the machine's
clock twice per message; a ReceiveMessage lists the visible messages the
same way, and a DeleteMessage passes over every message twice. A month
start that queues 10,000 deliveries within a minute then spends most of its
time in those passes: minutes of machine time per thousand messages queued,
growing with the square of the queue.

Here a queue's attributes are computed one at a time, when read (the counts
only for GetQueueAttributes, as SQS itself does), the visible messages are
listed reading the clock once, and a delete finds its message in one pass.
What each request answers is moto's own.
"""
import json
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List

from moto.core.utils import camelcase_to_underscores, unix_time_millis
from moto.sqs.exceptions import ReceiptHandleIsInvalid
from moto.sqs.models import Message, Queue

_MENDED = ("attributes", "messages", "delete_message")
# moto's own, as imported.
ORIGINALS = {name: Queue.__dict__[name] for name in _MENDED}


class _Attributes(Mapping):
    """A queue's attributes, as moto's `Queue.attributes` names and renders
    them, each computed when read."""

    def __init__(self, queue: Queue):
        self._queue = queue

    def _names(self) -> List[str]:
        queue = self._queue
        names = list(queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            names += queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:
            names += queue.KMS_ATTRIBUTES
        return names

    def __getitem__(self, name: str) -> Any:
        if name not in self._names():
            raise KeyError(name)
        queue = self._queue
        if name == "RedrivePolicy" and queue.redrive_policy:
            return json.dumps(queue.redrive_policy)
        value = queue.policy if name == "Policy" else getattr(queue, camelcase_to_underscores(name))
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def _attributes(queue: Queue) -> Mapping:
    return _Attributes(queue)


def _messages(queue: Queue) -> List[Message]:
    """The messages visible now (moto: `visible and not delayed`)."""
    now = unix_time_millis()
    return [message for message in queue._messages
            if now > message.visible_at and not now < message.delayed_until]


def _delete_message(queue: Queue, receipt_handle: str) -> None:
    if receipt_handle in queue.deleted_messages:
        return  # deleted already: SQS accepts it again
    for message in list(queue._messages):
        if message.receipt_handle == receipt_handle or receipt_handle in message._old_receipt_handles:
            try:
                queue._messages.remove(message)
            except ValueError:
                pass  # another request deleted it meanwhile
            queue.pending_messages.discard(message)
            queue.deleted_messages.update(message.all_receipt_handles)
            return
    raise ReceiptHandleIsInvalid()


_mends: Dict[str, Any] = {
    "attributes": property(_attributes),
    "messages": property(_messages),
    "delete_message": _delete_message,
}


def install() -> None:
    """Mend every SQS queue in this process."""
    for name in _MENDED:
        setattr(Queue, name, _mends[name])


@contextmanager
def installed() -> Iterator[None]:
    """The mend inside the block only."""
    originals = {name: Queue.__dict__[name] for name in _MENDED}
    install()
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(Queue, name, original)
