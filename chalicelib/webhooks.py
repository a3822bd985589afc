"""Stripe's Connect webhook: verify, drop duplicates, dispatch by event type."""
import logging
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, Optional

from pynamodb.exceptions import PutError

from chalicelib.connections import Clock, ConnectorService, utc_now
from chalicelib.errors import PayloadTooLarge
from chalicelib.models import WebhookEventModel
from chalicelib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# Stripe retries for 3 days and lists events for 30: an id is remembered past both.
REMEMBER_EVENTS_FOR = timedelta(days=35)

HANDLED = "handled"
DUPLICATE = "duplicate"
IGNORED = "ignored"


class EventLog:
    def seen(self, event_id: str) -> bool:
        try:
            WebhookEventModel.get(event_id, consistent_read=True)
            return True
        except WebhookEventModel.DoesNotExist:
            return False

    def record(self, event: Dict[str, Any], now: datetime) -> None:
        try:
            WebhookEventModel(
                event["id"], event_type=event["type"], account_id=event.get("account"),
                created=event["created"], handled_at=now, expires_at=now + REMEMBER_EVENTS_FOR,
            ).save(condition=WebhookEventModel.event_id.does_not_exist())
        except PutError as exc:
            # A concurrent delivery of the same event finished first: its
            # effects and ours are the same, so either record will do.
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise


class WebhookReceiver:
    def __init__(self, stripe: StripeGateway, events: EventLog, connector: ConnectorService,
                 clock: Clock = utc_now):
        self._stripe = stripe
        self._events = events
        self._connector = connector
        self._clock = clock
        self._handlers: Dict[str, Callable[[Dict[str, Any]], Optional[int]]] = {
            "account.application.deauthorized": self._account_deauthorized,
            "account.updated": self._account_updated,
        }

    def receive(self, payload: bytes, signature_header: Optional[str]) -> str:
        """Handle one delivery. Raises on a bad delivery; any other exception
        means the event was not recorded and Stripe should send it again."""
        if len(payload) > MAX_BODY_BYTES:
            raise PayloadTooLarge("The body is over %d bytes" % MAX_BODY_BYTES)
        event = self._stripe.verify_event(payload, signature_header)
        handler = self._handlers.get(event["type"])
        if handler is None or not event.get("account"):
            logger.info("Ignoring %s %s", event["type"], event["id"])
            return IGNORED
        if self._events.seen(event["id"]):
            logger.info("Duplicate delivery of %s", event["id"])
            return DUPLICATE
        handler(event)
        # Recorded only after its effects: a crash before this line leaves the
        # event unrecorded, and Stripe's retry repeats effects that are idempotent.
        self._events.record(event, self._clock())
        return HANDLED

    def _account_deauthorized(self, event: Dict[str, Any]) -> Optional[int]:
        return self._connector.account_deauthorized(
            event["account"], bool(event.get("livemode")), event["created"])

    def _account_updated(self, event: Dict[str, Any]) -> Optional[int]:
        return self._connector.account_updated(event["account"], bool(event.get("livemode")))
