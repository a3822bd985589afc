"""Stripe's events, delivered (from the events queue, chalicelib/deliveries.py)
or listed by the catch-up: drop duplicates, dispatch by event type."""
import logging
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, List, Optional

from chalicelib import observability
from chalicelib.access import access_of, is_stripe_id
from chalicelib.clock import Clock, utc_now
from chalicelib.connections import ConnectionStore, ConnectorService, grace_of
from chalicelib.entitlements import EventAlreadyDone, microseconds
from chalicelib.history import CATCH_UP, STRIPE_EVENT, Cause
from chalicelib.models import ConnectionModel, WebhookEventModel, save_if
from chalicelib.observability import Metrics
from chalicelib.stripe_gateway import StripeGateway
from chalicelib.writer import Reading, ViewWriter

logger = logging.getLogger(__name__)

# Stripe retries for 3 days and lists events for 30: an id is remembered past both.
REMEMBER_EVENTS_FOR = timedelta(days=35)

# How far Stripe's clock (an event's `created`) may be off ours.
CREATED_SKEW_SECONDS = 5
HANDLED = "handled"
DUPLICATE = "duplicate"
IGNORED = "ignored"
OUTCOME_METRICS = {HANDLED: observability.WEBHOOK_HANDLED, DUPLICATE: observability.WEBHOOK_DUPLICATE,
                   IGNORED: observability.WEBHOOK_IGNORED}

# Statuses a subscription never leaves.
FINAL_STATUSES = ("canceled", "incomplete_expired")

SUBSCRIPTION_EVENTS = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
)
ACCOUNT_EVENTS = ("account.application.deauthorized", "account.updated")
HANDLED_EVENTS = SUBSCRIPTION_EVENTS + ACCOUNT_EVENTS


def event_record(event: Dict[str, Any], now: datetime, found_by: str = STRIPE_EVENT) -> WebhookEventModel:
    """The event's record; one the catch-up found (Stripe had not delivered
    it) is counted as missed for its account."""
    return WebhookEventModel(
        event["id"], event_type=event["type"], account_id=event.get("account"),
        created=event["created"], handled_at=now, expires_at=now + REMEMBER_EVENTS_FOR,
        missed_account=event.get("account") if found_by == CATCH_UP else None,
    )


def made_by(event: Dict[str, Any], received_at: Optional[datetime]) -> int:
    """A moment (microseconds, our clock) by which the event surely existed."""
    created = (event["created"] + 1 + CREATED_SKEW_SECONDS) * 1_000_000
    return created if received_at is None else min(created, microseconds(received_at))


def _stripe_id_or_none(value: Any) -> Optional[str]:
    return value if is_stripe_id(value) else None


def object_id(event: Dict[str, Any]) -> Any:
    carried = event["data"].get("object")
    return carried.get("id") if isinstance(carried, dict) else None


class EventLog:
    def seen(self, event_id: str) -> bool:
        try:
            WebhookEventModel.get(event_id, consistent_read=True)
            return True
        except WebhookEventModel.DoesNotExist:
            return False

    def record(self, event: Dict[str, Any], now: datetime, found_by: str = STRIPE_EVENT) -> None:
        # When a concurrent delivery of the same event recorded it first, its
        # effects and ours are the same, so either record will do.
        self.record_once(event, now, found_by)

    def record_once(self, event: Dict[str, Any], now: datetime, found_by: str = STRIPE_EVENT) -> bool:
        """Record the event; False when it was recorded already."""
        return save_if(event_record(event, now, found_by), WebhookEventModel.event_id.does_not_exist())


class WebhookReceiver:
    def __init__(self, stripe: StripeGateway, events: EventLog, connector: ConnectorService,
                 connections: ConnectionStore, writer: ViewWriter,
                 clock: Clock = utc_now, metrics: Optional[Metrics] = None):
        self._metrics = metrics or Metrics()
        self._stripe = stripe
        self._events = events
        self._connector = connector
        self._connections = connections
        self._writer = writer
        self._clock = clock
        self._handlers: Dict[str, Callable[[Dict[str, Any], Optional[datetime], str], str]] = {
            "account.application.deauthorized": self._account_deauthorized,
            "account.updated": self._account_updated,
        }
        for event_type in SUBSCRIPTION_EVENTS:
            self._handlers[event_type] = self._subscription_changed

    def handle(self, event: Dict[str, Any], received_at: Optional[datetime] = None,
               found_by: str = STRIPE_EVENT) -> str:
        """Handle one event, delivered or listed from Stripe (the catch-up):
        the same rules, and a duplicate changes nothing. `found_by`: the
        cause the access history gives its changes (`catch_up` for an event
        Stripe had not delivered, else `stripe_event`). `received_at`: when
        it reached the connector (by our clock, not Stripe's): a subscription
        read from Stripe after that saw what the event says, and is not read
        again for it. The event's ids are
        bound to every line logged from here on (a signed event's, so Stripe's
        own, but bound only when shaped like Stripe's)."""
        observability.bind(
            stripe_event_id=_stripe_id_or_none(event["id"]), stripe_event_type=str(event["type"])[:100],
            stripe_account=_stripe_id_or_none(event.get("account")))
        handler = self._handlers.get(event["type"])
        if handler is None or not event.get("account"):
            logger.info("Ignoring %s %s", event["type"], event["id"][:255])
            return IGNORED
        if not all(is_stripe_id(value) for value in (event["id"], event["account"], object_id(event))):
            logger.warning("Ignoring a %s event whose ids are not Stripe's", event["type"])
            return IGNORED
        return handler(event, received_at, found_by)

    def _seen(self, event: Dict[str, Any]) -> bool:
        if self._events.seen(event["id"]):
            logger.info("Duplicate delivery of %s", event["id"])
            return True
        return False

    def _account_deauthorized(self, event: Dict[str, Any], received_at: Optional[datetime], found_by: str) -> str:
        if self._seen(event):
            return DUPLICATE
        self._connector.account_deauthorized(
            event["account"], bool(event.get("livemode")), event["created"])
        return self._done(event, found_by)

    def _account_updated(self, event: Dict[str, Any], received_at: Optional[datetime], found_by: str) -> str:
        if self._seen(event):
            return DUPLICATE
        self._connector.account_updated(event["account"], bool(event.get("livemode")))
        return self._done(event, found_by)

    def _done(self, event: Dict[str, Any], found_by: str) -> str:
        # Recorded only after its effects: a crash before this line leaves the
        # event unrecorded, and Stripe's retry repeats effects that are idempotent.
        self._events.record(event, self._clock(), found_by)
        return HANDLED

    def _subscription_changed(self, event: Dict[str, Any], received_at: Optional[datetime], found_by: str) -> str:
        account_id = event["account"]
        sites = self._sites_for(event)
        carried = event["data"]["object"]
        subscription_id = carried["id"]
        if not sites:
            logger.info("Ignoring %s %s: no connected site for it", event["type"], event["id"])
            return IGNORED
        # One read: the event's record (a duplicate stops here), whose the
        # subscription is on each site and when it was last read from Stripe.
        carried_customer = carried.get("customer")
        known = self._writer.prefetch(
            [site.site_id for site in sites], account_id, subscription_id,
            carried_customer if is_stripe_id(carried_customer) else None, event["id"])
        if known.event_done:
            logger.info("Duplicate delivery of %s", event["id"])
            return DUPLICATE
        # A read of the subscription that began after the event was made saw
        # what it says: the event needs no read of its own, and a burst on one
        # subscription costs one. The event was made before it reached us
        # (our clock), and before its `created` second ended (Stripe's clock,
        # trusted to CREATED_SKEW_SECONDS of ours).
        if known.read_since([site.site_id for site in sites], subscription_id, made_by(event, received_at)):
            if not self._events.record_once(event, self._clock(), found_by):
                logger.info("%s was handled by another delivery meanwhile", event["id"])
                return DUPLICATE
            logger.info("%s needs no read: %s was read from Stripe after it", event["id"], subscription_id)
            self._metrics.count(observability.WEBHOOK_COALESCED)
            return HANDLED
        # Stripe's order of delivery is not the order of changes: what
        # Stripe has now is the truth, the event only says where to look.
        # The view is timed when it is asked for: an answer may arrive after a
        # later read's view was written, and must then not pass it, while the
        # delivery of the last change, asked for after it, passes every view
        # of an earlier state.
        now = self._clock()
        subscription = self._stripe.subscription(account_id, subscription_id)
        view_time = microseconds(now)
        from_copy = subscription is None
        behind_since = None
        if from_copy:
            logger.info("Stripe no longer has %s; using the copy in %s", subscription_id, event["id"])
            subscription = self._stripe.expand(account_id, carried)
            # Nothing comes after an ended subscription: its copy is the newest
            # view there can be. Any other copy is as old as its event;
            # `created` is in whole seconds, so it counts as of the end of its
            # second (a read made earlier in that second is older).
            if subscription.get("status") not in FINAL_STATUSES:
                view_time = (event["created"] + 1) * 1_000_000 - 1
        else:
            behind_since = self._stripe.behind_since(account_id, subscription)
        readings = []
        for site in sites:
            access = access_of(subscription, now, grace_of(site), behind_since)
            if from_copy and access.grants:
                # What Stripe does not have, it cannot have sold: a copy may end
                # access, never grant it.
                logger.warning("Stripe has no %s; %s's copy would grant access, so it is ignored",
                               subscription_id, event["id"])
                return IGNORED
            readings.append(Reading(site.site_id, account_id, subscription, access, view_time, event["id"],
                                    read_from_stripe=not from_copy, cause=Cause(found_by, event["id"])))
        try:
            result = self._writer.write(readings, now, event_record(event, now, found_by), known=known)
        except EventAlreadyDone:
            logger.info("%s was handled by another delivery meanwhile", event["id"])
            return DUPLICATE
        for view in result.written:
            if view.user_id is None:
                logger.info("Subscription %s on %s names no member of site %s: kept as unmatched",
                            subscription_id, account_id, view.site_id)
        for view in result.stale:
            logger.info("A newer view of %s is stored for %s; %s left it", subscription_id,
                        view.site_id, event["id"])
        return HANDLED

    def _sites_for(self, event: Dict[str, Any]) -> List[ConnectionModel]:
        livemode = bool(event.get("livemode"))
        sites = []
        for site in self._connections.sites_connected_to(event["account"]):
            if bool(site.livemode) != livemode:
                logger.info("Ignoring %s for %s: livemode differs", event["id"], site.site_id)
                continue
            sites.append(site)
        return sites
