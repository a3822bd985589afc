"""The import of a connected account's subscriptions: what was there before
the connection, or happened while nobody listened.

It runs in the background, one page per queue message. The import's record
says which page it waits for; a message for another page (a redelivery, or
an import replaced since) is dropped, and a page's writes and counts land
once: the record moves on only with a conditional write.

First the subscriptions that may grant access are listed, status by status,
and written under the webhook's rules (a view never overwrites a newer one).
Before the past_due ones, the account's open invoices are listed, and the
oldest of each subscription noted: a past_due page then knows when each of
its subscriptions fell behind without asking Stripe once per subscription
(one it finds no note of, behind since the listing, is asked).
Then every entitlement the site still grants on the account with a view older
than the import's start was not shown by the listing (a listed one was
written, or a newer view came meanwhile): it is read again from Stripe, so
access that ended while nobody listened ends now."""
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple

from pynamodb.attributes import MapAttribute

from chalicelib import observability
from chalicelib.access import (GRANTING_STATUSES, MAX_PRODUCT_NAME_LENGTH, PAST_DUE, PRODUCT_ID_METADATA_KEY,
                               SUBSCRIPTION_CANCELED,
                               access_of, is_stripe_id, is_unix_time, items_of)
from chalicelib.clock import Clock, utc_now
from chalicelib.connections import CONNECTED, ConnectionStore, grace_of
from chalicelib.entitlements import grant_key, microseconds
from chalicelib.errors import NotConnected
from chalicelib.history import IMPORT, Cause
from chalicelib.import_records import DONE, FAILED, IMPORTING, ImportStore, sync_card
from chalicelib.limits import SYNC_PERIOD, NoLimits, RateLimits, sync_key
from chalicelib.models import ConnectionModel, EntitlementModel, ImportModel, OpenInvoiceModel, update_if
from chalicelib.observability import Metrics
from chalicelib.queues import MAX_RECEIVES, QueueFailure, WorkQueue
from chalicelib.stripe_gateway import StripeGateway
from chalicelib.writer import Reading, ViewWriter, end_as_stored

logger = logging.getLogger(__name__)

IMPORT_MESSAGE = "import"
# The listing's phases: one per status that may grant access, the account's
# open invoices just before the past_due subscriptions, then the re-reads.
OPEN_INVOICES = "open_invoices"
REREAD = "reread"
PHASES = tuple(status for status in GRANTING_STATUSES if status != PAST_DUE) + (OPEN_INVOICES, PAST_DUE, REREAD)
# How long an import's notes of open invoices are kept (TTL).
OPEN_INVOICES_KEPT = timedelta(days=7)
REREADS_PER_PAGE = 100
# An import that has not moved for this long is taken as lost: a new one may start.
STALLED_AFTER = timedelta(minutes=15)


class ImportService:
    """Starts imports; the connector card and POST /connectors/stripe/sync use it."""

    def __init__(self, imports: ImportStore, connections: ConnectionStore, queue: WorkQueue,
                 clock: Clock = utc_now, metrics: Optional[Metrics] = None, limits: Optional[RateLimits] = None):
        self._imports = imports
        self._connections = connections
        self._queue = queue
        self._clock = clock
        self._metrics = metrics or Metrics()
        self._limits = limits or NoLimits()

    def sync_of(self, connection: Optional[ConnectionModel]) -> Optional[dict]:
        return self._imports.sync_of(connection)

    def start(self, connection: ConnectionModel) -> Optional[dict]:
        """A new import of the connection's account, replacing any other: the card's `sync`."""
        return sync_card(self._start(connection), connection)

    def _start(self, connection: ConnectionModel) -> ImportModel:
        now = self._clock()
        record = ImportModel(
            connection.site_id, import_id=uuid.uuid4().hex, account_id=connection.account_id,
            livemode=bool(connection.livemode), state=IMPORTING, started_at=now,
            started_view_time=microseconds(now), updated_at=now, phase=PHASES[0], page=0,
            subscriptions=0, matched=0, unmatched=0, reread=0, products={})
        record.save()
        observability.bind(import_id=record.import_id)
        try:
            self._queue.send(import_message(record, 0))
        except QueueFailure:
            logger.exception("The import of %s for site %s could not be queued", record.account_id,
                             record.site_id)
            self._metrics.count(observability.IMPORT_FAILED)
            record.update(actions=[ImportModel.state.set(FAILED), ImportModel.failure.set("not queued"),
                                   ImportModel.finished_at.set(now)])
        logger.info("Import %s of %s started for site %s", record.import_id, record.account_id, record.site_id)
        return record

    def sync(self, site_id: str) -> dict:
        """POST /connectors/stripe/sync: the card's `sync`, importing. An
        import of the same account still moving is not started twice.
        RateLimited within SYNC_PERIOD of the route's previous sync."""
        connection = self._connections.get(site_id)
        if connection is None or connection.status != CONNECTED:
            raise NotConnected("No Stripe account is connected")
        # After not_connected, which does not count; before anything is read
        # or started, so that a refusal costs this one write. A sync that
        # finds an import running counts too: the admin was answered
        # `importing` as by any other. The import a connection starts is
        # not a sync (start), and does not count.
        self._limits.once_per(sync_key(site_id), SYNC_PERIOD,
                              "This site's subscriptions were synced less than 10 minutes ago")
        current = self._imports.get(site_id)
        if (current is not None and current.state == IMPORTING and current.account_id == connection.account_id
                and self._clock() - current.updated_at < STALLED_AFTER):
            return sync_card(current, connection)
        return self.start(connection)


def import_message(record: ImportModel, page: int) -> Dict[str, Any]:
    return {"kind": IMPORT_MESSAGE, "site_id": record.site_id, "import_id": record.import_id, "page": page}


@dataclass
class PageResult:
    phase: str
    cursor: Optional[str]
    subscriptions: int = 0
    matched: int = 0
    unmatched: int = 0
    reread: int = 0
    products: Dict[str, Tuple[str, Optional[str]]] = field(default_factory=dict)


class ImportWorker:
    """One page of an import per message."""

    def __init__(self, imports: ImportStore, connections: ConnectionStore, stripe: StripeGateway,
                 writer: ViewWriter, queue: WorkQueue, clock: Clock = utc_now, metrics: Optional[Metrics] = None):
        self._metrics = metrics or Metrics()
        self._imports = imports
        self._connections = connections
        self._stripe = stripe
        self._writer = writer
        self._queue = queue
        self._clock = clock

    def handle(self, message: Dict[str, Any], receive_count: int = 1) -> str:
        site_id, import_id, page = message.get("site_id"), message.get("import_id"), message.get("page")
        if not isinstance(site_id, str) or not isinstance(import_id, str) or not isinstance(page, int):
            raise ValueError("Not an import message: %r" % (message,))
        observability.bind(site_id=site_id, import_id=import_id)
        record = self._imports.get(site_id)
        if record is None or record.import_id != import_id or record.state != IMPORTING:
            logger.info("Dropping page %d of import %s: the import ended or was replaced", page, import_id)
            return "dropped"
        if record.page != page:
            if record.page == page + 1 and receive_count > 1:
                # This page was written and counted by an earlier try that may
                # have stopped before it queued the next one.
                self._queue.send(import_message(record, page + 1))
            return "dropped"
        observability.bind(stripe_account=record.account_id)
        connection = self._connections.get(site_id)
        if (connection is None or connection.status != CONNECTED or connection.account_id != record.account_id):
            self._finish(record, FAILED, "the account is no longer connected")
            return FAILED
        try:
            grace = grace_of(connection)
            if record.phase == REREAD:
                result = self._reread(record, grace)
            elif record.phase == OPEN_INVOICES:
                result = self._note_open_invoices(record)
            else:
                result = self._list(record, grace)
        except Exception:
            if receive_count >= MAX_RECEIVES:
                # The queue moves this message aside after this try: the card says so.
                logger.exception("Page %d of import %s failed for the last time", page, import_id)
                self._finish(record, FAILED, "page %d kept failing" % page)
            raise
        return self._advance(record, result)

    def _list(self, record: ImportModel, grace: timedelta) -> PageResult:
        now = self._clock()
        # Timed before Stripe is asked, as a webhook's view is.
        view_time = microseconds(now)
        listed = self._stripe.subscriptions_page(record.account_id, record.phase, record.cursor)
        known = _products_known(record)
        found = self._read_products(record.account_id, listed.data, known)
        result = PageResult(record.phase, listed.last_id if listed.has_more else None,
                            subscriptions=len(listed.data), products=found)
        page = [subscription for subscription in listed.data if is_stripe_id(subscription.get("id"))]
        noted = self._noted_open_invoices(record, page)
        readings = []
        for subscription in page:
            _fill_products(subscription, {**known, **found})
            if subscription["id"] in noted:
                behind_since = datetime.fromtimestamp(noted[subscription["id"]], tz=timezone.utc)
            else:
                behind_since = self._stripe.behind_since(record.account_id, subscription)
            readings.append(Reading(record.site_id, record.account_id, subscription,
                                    access_of(subscription, now, grace, behind_since), view_time, None,
                                    cause=Cause(IMPORT, record.import_id)))
        written = self._writer.write(readings, now)
        for view in written.written + written.stale:
            if view.user_id is None:
                result.unmatched += 1
            else:
                result.matched += 1
        if written.stale:
            logger.info("Import %s left %d subscriptions with newer views", record.import_id, len(written.stale))
        if result.cursor is None:
            result.phase = PHASES[PHASES.index(record.phase) + 1]
        return result

    def _note_open_invoices(self, record: ImportModel) -> PageResult:
        """One page of the account's open invoices (newest first): the oldest
        of each subscription on it is noted. A later page holds older ones
        and overwrites."""
        listed = self._stripe.open_invoices_page(record.account_id, record.cursor)
        oldest: Dict[str, int] = {}
        for invoice in listed.data:
            subscription, created = invoice.get("subscription"), invoice.get("created")
            if subscription and is_unix_time(created) and (subscription not in oldest
                                                           or created < oldest[subscription]):
                oldest[subscription] = created
        expires_at = self._clock() + OPEN_INVOICES_KEPT
        with OpenInvoiceModel.batch_write() as batch:
            for subscription, created in oldest.items():
                batch.save(OpenInvoiceModel(record.import_id, subscription, created=created, expires_at=expires_at))
        cursor = listed.last_id if listed.has_more else None
        return PageResult(OPEN_INVOICES if cursor else PHASES[PHASES.index(OPEN_INVOICES) + 1], cursor)

    def _noted_open_invoices(self, record: ImportModel, page: List[Dict[str, Any]]) -> Dict[str, int]:
        """The oldest open invoice noted for each past_due subscription of the page."""
        if record.phase != PAST_DUE:
            return {}
        keys = [(record.import_id, s["id"]) for s in page if s.get("status") == PAST_DUE]
        if not keys:
            return {}
        return {note.subscription_id: int(note.created)
                for note in OpenInvoiceModel.batch_get(keys, consistent_read=True)}

    def _read_products(self, account_id: str, subscriptions: List[Dict[str, Any]],
                       known: Dict[str, Tuple[str, Optional[str]]]) -> Dict[str, Tuple[str, Optional[str]]]:
        """CustomerHub's id and the name of every product on the page not
        read yet in this import."""
        found: Dict[str, Tuple[str, Optional[str]]] = {}
        for subscription in subscriptions:
            for item in items_of(subscription):
                product = (item.get("price") or {}).get("product")
                if is_stripe_id(product) and product not in known and product not in found:
                    read = self._stripe.product(account_id, product) or {}
                    named = (read.get("metadata") or {}).get(PRODUCT_ID_METADATA_KEY)
                    name = read.get("name") if isinstance(read.get("name"), str) else None
                    found[product] = (named.strip() if isinstance(named, str) and named.strip() else product,
                                      name[:MAX_PRODUCT_NAME_LENGTH] if name else None)
        return found

    def _reread(self, record: ImportModel, grace: timedelta) -> PageResult:
        query = EntitlementModel.grants_index.query(
            grant_key(record.site_id, record.account_id),
            EntitlementModel.view_time < record.started_view_time,
            limit=REREADS_PER_PAGE, last_evaluated_key=json.loads(record.cursor) if record.cursor else None)
        items = list(query)
        for item in items:
            self._reread_one(item, grace, Cause(IMPORT, record.import_id))
        more = query.last_evaluated_key
        return PageResult(REREAD, json.dumps(more) if more else None, reread=len(items))

    def _reread_one(self, item: EntitlementModel, grace: timedelta, cause: Cause) -> None:
        now = self._clock()
        subscription = self._stripe.subscription(item.account_id, item.subscription_id)
        if subscription is None:
            # A write since the index showed it is newer than this read.
            end_as_stored(self._writer.connection, item, now, SUBSCRIPTION_CANCELED, cause)
            return
        behind_since = self._stripe.behind_since(item.account_id, subscription)
        # Whose it is now decides, as for a webhook: another member's (or
        # nobody's) ends this member's access in the same write.
        self._writer.write([Reading(item.site_id, item.account_id, subscription,
                                    access_of(subscription, now, grace, behind_since),
                                    max(microseconds(now), item.view_time + 1), None,
                                    expected=(item.member_key, item.view_time), cause=cause)], now)

    def _advance(self, record: ImportModel, result: PageResult) -> str:
        now = self._clock()
        finished = result.phase == REREAD and result.cursor is None and record.phase == REREAD
        actions = [
            ImportModel.page.set(record.page + 1), ImportModel.phase.set(result.phase),
            ImportModel.cursor.set(result.cursor) if result.cursor else ImportModel.cursor.remove(),
            ImportModel.subscriptions.add(result.subscriptions), ImportModel.matched.add(result.matched),
            ImportModel.unmatched.add(result.unmatched), ImportModel.reread.add(result.reread),
            ImportModel.updated_at.set(now),
        ]
        for product, (product_id, name) in result.products.items():
            actions.append(ImportModel.products[product].set(product_id))
            if name:
                actions.append(ImportModel.product_names[product].set(name))
        if finished:
            actions += [ImportModel.state.set(DONE), ImportModel.finished_at.set(now)]
        if not update_if(record, actions, (ImportModel.import_id == record.import_id)
                         & (ImportModel.page == record.page) & (ImportModel.state == IMPORTING)):
            logger.info("Page %d of import %s was counted by another try", record.page, record.import_id)
            return "dropped"
        # Counted as the record's counts are: once per page, by the try whose update landed.
        self._metrics.count(observability.IMPORT_PAGES)
        self._metrics.count(observability.IMPORT_SUBSCRIPTIONS, result.subscriptions)
        if finished:
            logger.info("Import %s of %s for site %s done: %d subscriptions, %d matched, %d re-read",
                        record.import_id, record.account_id, record.site_id, record.subscriptions,
                        record.matched, record.reread)
            return DONE
        self._queue.send(import_message(record, record.page))
        return IMPORTING

    def _finish(self, record: ImportModel, state: str, why: str) -> None:
        now = self._clock()
        ended = update_if(record, [ImportModel.state.set(state), ImportModel.failure.set(why),
                                   ImportModel.finished_at.set(now), ImportModel.updated_at.set(now)],
                          (ImportModel.import_id == record.import_id) & (ImportModel.state == IMPORTING))
        if ended and state == FAILED:
            self._metrics.count(observability.IMPORT_FAILED)
        logger.warning("Import %s of %s for site %s %s: %s", record.import_id, record.account_id,
                       record.site_id, state, why)


def _products_known(record: ImportModel) -> Dict[str, Tuple[str, Optional[str]]]:
    """The products this import read already: CustomerHub's id and the name."""
    def plain(attribute: Any) -> Dict[str, str]:
        return attribute.as_dict() if isinstance(attribute, MapAttribute) else dict(attribute or {})
    names = plain(record.product_names)
    return {product: (product_id, names.get(product)) for product, product_id in plain(record.products).items()}


def _fill_products(subscription: Dict[str, Any], products: Dict[str, Tuple[str, Optional[str]]]) -> None:
    """Put each item's product in as the expanded object access_of reads, with
    the CustomerHub id read once for the import."""
    for item in items_of(subscription):
        price = item.get("price")
        product = price.get("product") if isinstance(price, dict) else None
        if is_stripe_id(product) and product in products:
            product_id, name = products[product]
            price["product"] = {"id": product, "object": "product", "name": name,
                                "metadata": {PRODUCT_ID_METADATA_KEY: product_id}}
