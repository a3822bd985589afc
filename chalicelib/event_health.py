"""Whether Stripe's events are reaching the connector: the card's `events`,
and the watch on the platform's Connect webhook endpoint.

Stripe disables an endpoint that keeps failing and says so only by email;
events it could not deliver are found only by the catch-up. Both show on
every card, from what is already stored: the event records (by account, and
those only the catch-up found), the catch-up's last run, and the endpoint's
status as last read from Stripe (STRIPE_WEBHOOK_ENDPOINT_ID, by every
catch-up run and the `watch_webhook_endpoint` schedule)."""
import logging
from datetime import timedelta
from typing import Any, Dict, Optional

from chalicelib import observability
from chalicelib.clock import Clock, iso, utc_now
from chalicelib.models import CONNECTED, CatchUpModel, ConnectionModel, WebhookEndpointModel, WebhookEventModel
from chalicelib.observability import Metrics
from chalicelib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

ENABLED = "enabled"
DISABLED = "disabled"
UNKNOWN = "unknown"
MISSED_WITHIN = timedelta(days=1)
# What Stripe names an endpoint that no longer exists.
MISSING = "missing"


class EventHealth:
    def __init__(self, stripe: StripeGateway, endpoint_id: Optional[str], clock: Clock = utc_now,
                 metrics: Optional[Metrics] = None):
        self._stripe = stripe
        self._endpoint_id = endpoint_id
        self._clock = clock
        self._metrics = metrics or Metrics()

    def of(self, connection: Optional[ConnectionModel]) -> Optional[Dict[str, Any]]:
        """The card's `events` for the connection; None when disconnected."""
        if connection is None or connection.status != CONNECTED or not connection.account_id:
            return None
        account_id = connection.account_id
        now = self._clock()
        last = next(iter(WebhookEventModel.account_index.query(account_id, scan_index_forward=False, limit=1)),
                    None)
        missed = WebhookEventModel.missed_index.count(
            account_id, WebhookEventModel.handled_at > now - MISSED_WITHIN)
        try:
            caught_up = CatchUpModel.get(account_id).ran_at
        except CatchUpModel.DoesNotExist:
            caught_up = None
        return {"last_received_at": iso(last.handled_at) if last is not None else None,
                "last_caught_up_at": iso(caught_up),
                "missed_last_day": missed,
                "endpoint": self.endpoint_status()}

    def endpoint_status(self) -> str:
        """The endpoint's status as last read from Stripe: `enabled`,
        `disabled`, or `unknown` (none is watched, none was read yet, or
        Stripe has no such endpoint)."""
        if self._endpoint_id is None:
            return UNKNOWN
        try:
            status = WebhookEndpointModel.get(self._endpoint_id).status
        except WebhookEndpointModel.DoesNotExist:
            return UNKNOWN
        return status if status in (ENABLED, DISABLED) else UNKNOWN

    def check_endpoint(self) -> Dict[str, Any]:
        """Read the endpoint's status from Stripe and keep it; a disabled one
        is counted in the WebhookEndpointDisabled metric (1, else 0), which
        raises the alarm of that name. A failure to read is raised: the
        stored status stays as it was last read."""
        if self._endpoint_id is None:
            return {"endpoint": UNKNOWN, "watched": False}
        status = self._stripe.webhook_endpoint_status(self._endpoint_id) or MISSING
        now = self._clock()
        try:
            stored = WebhookEndpointModel.get(self._endpoint_id, consistent_read=True)
            since = stored.since if stored.status == status else now
        except WebhookEndpointModel.DoesNotExist:
            since = now
        WebhookEndpointModel(self._endpoint_id, status=status, checked_at=now, since=since).save()
        # A missing endpoint delivers nothing either.
        self._metrics.count(observability.WEBHOOK_ENDPOINT_DISABLED, 0 if status == ENABLED else 1)
        if status != ENABLED:
            logger.error("Stripe's webhook endpoint %s is %s since %s: no event is delivered; the hourly "
                         "catch-up is all that finds them", self._endpoint_id, status, iso(since))
        return {"endpoint": status if status in (ENABLED, DISABLED) else UNKNOWN, "watched": True,
                "since": iso(since)}

    def check_endpoint_quietly(self) -> Optional[Dict[str, Any]]:
        """check_endpoint for a caller whose own work must go on (the
        catch-up): a failure is logged, not raised."""
        try:
            return self.check_endpoint()
        except Exception:
            logger.warning("Could not read the webhook endpoint %s from Stripe", self._endpoint_id, exc_info=True)
            return None
