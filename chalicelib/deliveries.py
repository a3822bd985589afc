"""Stripe's webhook deliveries: acknowledged at once, handled from a queue.

The acknowledgement (`Deliveries.acknowledge`, POST /webhooks/stripe)
verifies the signature on the raw body and the event's shape, puts the event
on the events queue and answers: one SQS request, no Stripe request and no
DynamoDB request, so that a month-start burst of renewals queues instead of
waiting on Stripe or failing on its rate limit. The `stripe_events` function
hands each queued event to WebhookReceiver.handle (`QueuedEvents.handle`),
where a duplicate is dropped: an event's record is written with its effects,
so a failure there leaves it unrecorded, the function raises and the message
comes again from the queue, and after its last try goes to the dead-letter
queue."""
import json
import logging
import re
from datetime import datetime
from typing import Any, Callable, Dict, Optional

from chalicelib import observability
from chalicelib.access import is_stripe_id, is_unix_time
from chalicelib.errors import InvalidPayload, InvalidSignature, PayloadTooLarge
from chalicelib.observability import Metrics
from chalicelib.queues import MAX_MESSAGE_BYTES, MAX_RECEIVES, QueueFailure, WorkQueue
from chalicelib.stripe_gateway import StripeGateway
from chalicelib.webhooks import (HANDLED_EVENTS, IGNORED, OUTCOME_METRICS, SUBSCRIPTION_EVENTS, WebhookReceiver,
                                 object_id)

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
QUEUED = "queued"

# The characters SQS takes in a message body; a JSON string may hold others
# (U+FFFE, U+FFFF) as they are.
NOT_FOR_SQS = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# What handling reads of a subscription the event carries: its ids, and
# when Stripe no longer has it (the copy then ends access), its status,
# customer, items' prices, products and periods, metadata, cancellation
# and end (chalicelib/access.py, identity.py).
SUBSCRIPTION_FIELDS = ("id", "object", "status", "metadata", "cancel_at", "cancel_at_period_end", "canceled_at",
                       "ended_at", "created", "livemode")
CUSTOMER_FIELDS = ("id", "object", "deleted", "email", "name", "metadata")
ITEM_FIELDS = ("id", "object", "current_period_start", "current_period_end")
PRICE_FIELDS = ("id", "object")
PRODUCT_FIELDS = ("id", "object", "metadata")


class Deliveries:
    """POST /webhooks/stripe: verify, check, queue."""

    def __init__(self, stripe: StripeGateway, queue: WorkQueue, metrics: Optional[Metrics] = None):
        self._stripe = stripe
        self._queue = queue
        self._metrics = metrics or Metrics()

    def acknowledge(self, payload: bytes, signature_header: Optional[str]) -> str:
        """QUEUED, or IGNORED for an event the connector never handles.
        Raises on a bad delivery, and QueueFailure when SQS did not take the
        event (Stripe must then deliver it again)."""
        try:
            if len(payload) > MAX_BODY_BYTES:
                raise PayloadTooLarge("The body is over %d bytes" % MAX_BODY_BYTES)
            event = self._stripe.verify_event(payload, signature_header)
        except (PayloadTooLarge, InvalidSignature, InvalidPayload):
            self._metrics.count(observability.WEBHOOK_REJECTED)
            raise
        observability.bind(
            stripe_event_id=_stripe_id_or_none(event["id"]), stripe_event_type=str(event["type"])[:100],
            stripe_account=_stripe_id_or_none(event.get("account")))
        # What needs no table to decide is decided here, for nothing: the
        # handler would ignore these too. Whether a site is connected to the
        # account is the handler's to ask (a DynamoDB read).
        ignored = ignored_at_once(event)
        if ignored:
            logger.info("Ignoring %s %s: %s", str(event["type"])[:100], event["id"][:255], ignored)
            self._metrics.count(observability.WEBHOOK_IGNORED)
            return IGNORED
        body = message_for(payload.decode("utf-8"), event)
        if body is None:
            # Beyond what Stripe's own limits allow an event to carry.
            logger.warning("Ignoring %s: even reduced to what handling reads, it is over %d bytes",
                           event["id"], MAX_MESSAGE_BYTES)
            self._metrics.count(observability.WEBHOOK_IGNORED)
            return IGNORED
        try:
            self._queue.send_text(body)
        except QueueFailure:
            self._metrics.count(observability.WEBHOOK_FAILED)
            raise
        self._metrics.count(observability.WEBHOOK_QUEUED)
        return QUEUED


class QueuedEvents:
    """The `stripe_events` function: each queued event, handled."""

    def __init__(self, receiver: WebhookReceiver, metrics: Optional[Metrics] = None):
        self._receiver = receiver
        self._metrics = metrics or Metrics()

    def handle(self, body: str, receive_count: int = 1, received_at: Optional[datetime] = None) -> str:
        """The event's outcome. Raises when it could not be handled: nothing
        of it is recorded as done, and the queue gives it again. `received_at`:
        when the webhook queued it (a read of Stripe after that covers it)."""
        try:
            outcome = self._receiver.handle(event_of(body), received_at=received_at)
        except Exception:
            self._metrics.count(observability.WEBHOOK_HANDLING_FAILED)
            if receive_count >= MAX_RECEIVES:
                logger.exception("Handling a queued Stripe event failed on its last try (%d): it goes to the "
                                 "dead-letter queue", receive_count)
            else:
                logger.warning("Handling a queued Stripe event failed (try %d of %d); it comes again",
                               receive_count, MAX_RECEIVES, exc_info=True)
            raise
        self._metrics.count(OUTCOME_METRICS[outcome])
        return outcome


def ignored_at_once(event: Dict[str, Any]) -> Optional[str]:
    """Why the event is acknowledged without queueing, or None: a type the
    connector does not handle, no account, or ids that are not Stripe's (no
    delivery of a well-signed event may fail forever)."""
    if event["type"] not in HANDLED_EVENTS:
        return "not a type the connector handles"
    if not event.get("account"):
        return "no account"
    if not all(is_stripe_id(value) for value in (event["id"], event["account"], object_id(event))):
        return "its ids are not Stripe's"
    return None


def message_for(text: str, event: Dict[str, Any]) -> Optional[str]:
    """The queue message of a verified event: the body as it came when SQS
    can carry it, else the event reduced to what handling reads; None when
    even that is too large."""
    if _fits(text) and not NOT_FOR_SQS.search(text):
        return text
    # ASCII (json.dumps' default): every character escaped is one SQS takes.
    reduced = json.dumps(reduced_event(event), separators=(",", ":"), sort_keys=True)
    return reduced if _fits(reduced) else None


def reduced_event(event: Dict[str, Any]) -> Dict[str, Any]:
    """The event with what the handlers read, and nothing else: its ids,
    type, account, mode and time, and of the object it carries, for a
    subscription what its copy is read for, for another its id."""
    carried = event["data"].get("object")
    if event["type"] in SUBSCRIPTION_EVENTS:
        reduced_object = _subscription(carried)
    else:
        reduced_object = _picked(carried, ("id", "object"))
    return {"id": event["id"], "object": "event", "type": event["type"], "account": event.get("account"),
            "livemode": event.get("livemode"), "created": event["created"], "data": {"object": reduced_object}}


def event_of(body: str) -> Dict[str, Any]:
    """The event a queue message carries: the webhook's, or one EventBridge
    put (its `detail` is Stripe's event; the stage's rule lets only the
    Stripe event source's in). ValueError for a message that is neither
    (the API queues none: one moved here by hand, say)."""
    event = json.loads(body)
    if isinstance(event, dict) and "detail-type" in event and "detail" in event:
        event = event["detail"]
    if (not isinstance(event, dict) or event.get("object") != "event"
            or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str)
            or not is_unix_time(event.get("created")) or not isinstance(event.get("data"), dict)):
        raise ValueError("The message is not a Stripe event")
    return event


def _fits(body: str) -> bool:
    return len(body.encode("utf-8")) <= MAX_MESSAGE_BYTES


def _subscription(carried: Any) -> Any:
    return _picked(carried, SUBSCRIPTION_FIELDS, {
        # An id, as Stripe's events carry it (or what an expanded one says of the member).
        "customer": lambda customer: _picked(customer, CUSTOMER_FIELDS),
        "items": lambda items: _picked(items, ("object", "has_more", "url"), {
            "data": lambda data: [_item(item) for item in data] if isinstance(data, list) else None}),
    })


def _item(item: Any) -> Any:
    def priced(price: Any) -> Any:
        return _picked(price, PRICE_FIELDS, {"product": lambda product: _picked(product, PRODUCT_FIELDS)})
    return _picked(item, ITEM_FIELDS, {"price": priced, "plan": priced})


def _picked(value: Any, names, nested: Optional[Dict[str, Callable[[Any], Any]]] = None) -> Any:
    """Those fields of a Stripe object, the nested ones reduced in turn; an
    id (or another plain value) as it is; anything else, nothing."""
    if not isinstance(value, dict):
        return value if value is None or isinstance(value, (str, int, float, bool)) else None
    picked = {name: value[name] for name in names if name in value}
    for name, reduce in (nested or {}).items():
        if name in value:
            picked[name] = reduce(value[name])
    return picked


def _stripe_id_or_none(value: Any) -> Optional[str]:
    return value if is_stripe_id(value) else None
