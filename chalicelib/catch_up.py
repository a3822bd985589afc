"""The hourly catch-up of events Stripe could not deliver.

The scheduled function puts one message per connected account on the work
queue; the worker lists that account's undelivered events of the handled
types since its last catch-up and hands each, oldest first, to the webhook's
own handling (a duplicate of a delivered event changes nothing). With nothing
missed it costs one Stripe request per account and one write (when it ran,
for the card's event health)."""
import logging
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional

from chalicelib import observability
from chalicelib.access import is_stripe_id
from chalicelib.clock import Clock, utc_now
from chalicelib.connections import ConnectionStore, ConnectorService
from chalicelib.errors import AccountNotConnected
from chalicelib.event_health import EventHealth
from chalicelib.history import CATCH_UP
from chalicelib.models import CatchUpModel, ConnectionModel, save_if
from chalicelib.observability import Metrics
from chalicelib.queues import WorkQueue
from chalicelib.stripe_gateway import StripeGateway
from chalicelib.webhooks import HANDLED, HANDLED_EVENTS, WebhookReceiver

logger = logging.getLogger(__name__)

CATCH_UP_MESSAGE = "catch_up"
# Stripe lists events for 30 days.
LOOK_BACK_AT_MOST = timedelta(days=30)
# An event is stamped `created` a moment before it can be listed: the next
# catch-up looks again this far before the last one's listing began.
OVERLAP = timedelta(minutes=5)


class CatchUp:
    def __init__(self, connections: ConnectionStore, connector: ConnectorService, stripe: StripeGateway,
                 receiver: WebhookReceiver, queue: WorkQueue, clock: Clock = utc_now,
                 metrics: Optional[Metrics] = None, health: Optional[EventHealth] = None):
        self._metrics = metrics or Metrics()
        self._health = health
        self._connections = connections
        self._connector = connector
        self._stripe = stripe
        self._receiver = receiver
        self._queue = queue
        self._clock = clock

    def fan_out(self) -> Dict[str, Any]:
        """One message per connected account (several sites may share one);
        and the platform's webhook endpoint read from Stripe, whose state
        every card shows."""
        endpoint = self._health.check_endpoint_quietly() if self._health is not None else None
        accounts = sorted({connection.account_id for connection in ConnectionModel.account_index.scan()
                           if connection.account_id})
        self._queue.send_all([{"kind": CATCH_UP_MESSAGE, "account_id": account} for account in accounts])
        logger.info("Catch-up queued for %d connected accounts", len(accounts))
        return {"accounts": len(accounts), "endpoint": endpoint["endpoint"] if endpoint else None}

    def catch_up(self, message: Dict[str, Any]) -> Dict[str, int]:
        account_id = message.get("account_id")
        if not is_stripe_id(account_id):
            raise ValueError("Not a catch-up message: %r" % (message,))
        observability.bind(stripe_account=account_id)
        now = self._clock()
        since = self._since(account_id, now)
        if since is None:
            logger.info("Catch-up of %s: no site is connected to it any more", account_id)
            return {"events": 0}
        try:
            events = self._stripe.undelivered_events(account_id, list(HANDLED_EVENTS), since)
        except AccountNotConnected:
            # Stripe refuses the platform the account: revoked while its
            # deauthorization went undelivered (and its events are no longer
            # ours to list).
            return {"events": 0, "revoked": self._revoked(account_id, now)}
        outcomes: Dict[str, int] = {}
        for event in events:
            # Listed with Stripe-Account, an event may not say whose it is.
            event.setdefault("account", account_id)
            # Listed at `now`: a read of the subscription after that saw it.
            outcome = self._receiver.handle(event, received_at=now, found_by=CATCH_UP)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        # Each event bound its own ids; what follows is about the account.
        observability.unbind("stripe_event_id", "stripe_event_type")
        self._metrics.count(observability.CATCH_UP_EVENTS, len(events))
        # Those Stripe never delivered (a later delivery of one is a duplicate).
        self._metrics.count(observability.EVENTS_MISSED, outcomes.get(HANDLED, 0))
        if events:
            # Only after every event was handled: a failure above leaves the
            # mark where it was and the message is tried again. Nothing found,
            # the mark stays: the same window is asked again next time.
            mark = int((now - OVERLAP).timestamp())
            marked = save_if(CatchUpModel(account_id, caught_up_to=mark, updated_at=now, ran_at=now),
                             CatchUpModel.account_id.does_not_exist() | (CatchUpModel.caught_up_to < mark))
            logger.info("Catch-up of %s: %d undelivered events (%s)", account_id, len(events),
                        ", ".join("%s %d" % item for item in sorted(outcomes.items())))
        else:
            marked = False
            logger.info("Catch-up of %s: nothing undelivered since %d", account_id, since)
        if not marked:
            # When it last ran, for the card's event health, whatever it found.
            CatchUpModel(account_id).update(actions=[
                CatchUpModel.ran_at.set(now),
                CatchUpModel.caught_up_to.set(CatchUpModel.caught_up_to | since),
                CatchUpModel.updated_at.set(CatchUpModel.updated_at | now)])
        return {"events": len(events)}

    def _revoked(self, account_id: str, now: datetime) -> int:
        modes = {bool(site.livemode) for site in self._connections.sites_connected_to(account_id)}
        revoked = sum(self._connector.account_deauthorized(account_id, livemode, int(now.timestamp()))
                      for livemode in modes)
        logger.warning("Catch-up of %s: Stripe gives no access to it; %d sites disconnected", account_id, revoked)
        return revoked

    def _since(self, account_id: str, now) -> Optional[int]:
        """Where this account's catch-up starts: its last mark, else its
        earliest connection; never more than 30 days back."""
        earliest = int((now - LOOK_BACK_AT_MOST).timestamp())
        try:
            return max(int(CatchUpModel.get(account_id, consistent_read=True).caught_up_to), earliest)
        except CatchUpModel.DoesNotExist:
            pass
        connected: List[int] = [int(site.connected_at.timestamp())
                                for site in self._connections.sites_connected_to(account_id) if site.connected_at]
        if not connected:
            return None
        return max(min(connected), earliest)
