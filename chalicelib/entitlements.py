"""Entitlements in DynamoDB: one item per site, member and subscription,
holding what the subscription grants to each of its products."""
import logging
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.access import EXPIRED, Access, is_readable
from chalicelib.clock import Clock, iso, utc_now
from chalicelib.errors import InvalidRequest
from chalicelib.member_customers import FROM_SUBSCRIPTION
from chalicelib.models import EntitlementModel, MemberCustomerModel, ProductAttribute, WebhookEventModel

logger = logging.getLogger(__name__)

# The sweep's index is spread over this many partitions. Changing it needs a
# backfill of `due_shard`: the sweep only looks in shards below it.
DUE_SHARDS = 16
MAX_USER_ID_LENGTH = 256
# Two puts per site and the event record stay under DynamoDB's 100 items.
SITES_PER_TRANSACTION = 49


def member_key(site_id: str, user_id: str) -> str:
    # The site is escaped so that no (site, user) pair shares a key with another.
    return site_id.replace("\\", "\\\\").replace("#", "\\#") + "#" + user_id


def grant_key(site_id: str, account_id: str) -> str:
    """The grants index's key: a site's access on one Stripe account."""
    return member_key(site_id, account_id)


def due_shard_of(key: str, subscription_id: str) -> int:
    return zlib.crc32(("%s|%s" % (key, subscription_id)).encode("utf-8")) % DUE_SHARDS


def microseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


@dataclass(frozen=True)
class View:
    """A subscription as read from Stripe (or, when Stripe no longer has it,
    as the event carried it), and what it grants."""
    site_id: str
    user_id: str
    account_id: str
    customer_id: Optional[str]
    subscription_id: str
    stripe_status: str
    access: Access
    view_time: int
    stripe_event_id: Optional[str]


class StaleView(Exception):
    """A newer view of the subscription is stored already."""


class EventAlreadyDone(Exception):
    """Another delivery of the same event recorded it first."""


def entitlement_item(view: View, now: datetime) -> EntitlementModel:
    key = member_key(view.site_id, view.user_id)
    access = view.access
    item = EntitlementModel(
        key, view.subscription_id,
        site_id=view.site_id, user_id=view.user_id, account_id=view.account_id,
        customer_id=view.customer_id, stripe_status=view.stripe_status, state=access.state,
        grants=access.grants, access_until=access.access_until, reason=access.reason,
        products=[ProductAttribute(product_id=p.product_id, stripe_product_id=p.stripe_product_id)
                  for p in access.products],
        view_time=view.view_time, stripe_event_id=view.stripe_event_id, changed_at=now,
    )
    if access.grants:
        item.grant_key = grant_key(view.site_id, view.account_id)
        if access.access_until is not None:
            item.due_shard = due_shard_of(key, view.subscription_id)
            item.due_at = int(access.access_until.timestamp())
    return item


def ended_item(item: EntitlementModel, now: datetime, reason: str,
               stripe_status: Optional[str] = None) -> EntitlementModel:
    """The entitlement with its access ended now, a newer view than item's."""
    ended = EntitlementModel.from_raw_data(item.serialize())
    ended.grants = False
    ended.state = EXPIRED
    ended.reason = reason
    ended.stripe_event_id = None
    ended.stripe_status = stripe_status or item.stripe_status
    ended.view_time = max(microseconds(now), item.view_time + 1)
    ended.changed_at = now
    # Out of the due and grants indexes: there is nothing left to end.
    ended.due_shard = None
    ended.due_at = None
    ended.grant_key = None
    return ended


def member_writes(views: Sequence[View], now: datetime) -> Tuple[List[EntitlementModel], List[MemberCustomerModel]]:
    """The entitlements and the members' customer records that views make:
    one record per site and member (a transaction may write an item once)."""
    items, customers = [], {}
    for view in views:
        items.append(entitlement_item(view, now))
        if view.customer_id:
            customers[(view.site_id, view.user_id)] = MemberCustomerModel(
                view.site_id, view.user_id, account_id=view.account_id, customer_id=view.customer_id,
                source=FROM_SUBSCRIPTION, recorded_at=now)
    return items, list(customers.values())


def newer_than_stored(view_time: int):
    return EntitlementModel.member_key.does_not_exist() | (EntitlementModel.view_time < view_time)


class EntitlementStore:
    def __init__(self, connection: Connection):
        self._connection = connection

    def of_member(self, site_id: str, user_id: str) -> List[EntitlementModel]:
        return list(EntitlementModel.query(member_key(site_id, user_id), consistent_read=True))

    def write(self, items: Sequence[EntitlementModel], customers: Sequence[MemberCustomerModel],
              done: Optional[WebhookEventModel]) -> List[EntitlementModel]:
        """Write the entitlements, the members' customers and the event's
        record together: either all of them land or none. An entitlement
        whose stored view is newer is left out (and returned), the rest is
        written; a record written by another delivery meanwhile raises
        EventAlreadyDone and writes nothing."""
        stale: List[EntitlementModel] = []
        pending = list(items)
        while True:
            try:
                self._write_chunks(pending, customers, done)
                return stale
            except StaleView as exc:
                stale.extend(exc.args[0])
                pending = [item for item in pending if item not in exc.args[0]]

    def _write_chunks(self, items: List[EntitlementModel], customers: Sequence[MemberCustomerModel],
                      done: Optional[WebhookEventModel]) -> None:
        chunks = [(items[i:i + SITES_PER_TRANSACTION], customers[i:i + SITES_PER_TRANSACTION])
                  for i in range(0, max(len(items), len(customers), 1), SITES_PER_TRANSACTION)]
        for index, (chunk_items, chunk_customers) in enumerate(chunks):
            # The record goes with the last chunk: an earlier crash leaves the
            # event undone, and Stripe's retry writes a newer view of the same.
            last = index == len(chunks) - 1
            self._transact(chunk_items, chunk_customers, done if last else None)

    def _transact(self, items: List[EntitlementModel], customers: Sequence[MemberCustomerModel],
                  done: Optional[WebhookEventModel]) -> None:
        if not items and not customers and done is None:
            return
        try:
            with TransactWrite(connection=self._connection) as transaction:
                for item in items:
                    transaction.save(item, condition=newer_than_stored(item.view_time))
                for customer in customers:
                    transaction.save(customer)
                if done is not None:
                    transaction.save(done, condition=WebhookEventModel.event_id.does_not_exist())
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            failed = [i for i, reason in enumerate(reasons)
                      if reason is not None and reason.code == "ConditionalCheckFailed"]
            if not failed or len(failed) != len([r for r in reasons if r is not None]):
                raise
            if done is not None and len(reasons) - 1 in failed:
                raise EventAlreadyDone(done.event_id) from exc
            stale = [items[i] for i in failed if i < len(items)]
            if not stale:
                raise
            raise StaleView(stale) from exc


class AccessService:
    """GET /access and /access/{user_id}: what a member may use now."""

    def __init__(self, store: EntitlementStore, clock: Clock = utc_now):
        self._store = store
        self._clock = clock

    def entitlements_of(self, site_id: str, user_id: str) -> Dict[str, list]:
        if not user_id or len(user_id) > MAX_USER_ID_LENGTH:
            raise InvalidRequest("The user id must be 1 to %d characters" % MAX_USER_ID_LENGTH)
        return entitlements_view(self._store.of_member(site_id, user_id), self._clock())


def entitlements_view(items: Iterable[EntitlementModel], now: datetime) -> Dict[str, list]:
    """GET /access: one entry per product, from the subscription that grants
    it now (the longest), else from the latest view of any."""
    best: Dict[str, tuple] = {}
    for item in items:
        readable = is_readable(item.access_until, item.grants, now)
        for product in item.products:
            rank = (readable, _until_rank(item.access_until) if readable else 0, item.view_time)
            if product.product_id not in best or rank > best[product.product_id][0]:
                best[product.product_id] = (rank, item, product, readable)
    entries = []
    for product_id in sorted(best):
        _, item, product, readable = best[product_id]
        entries.append({
            "product_id": product.product_id,
            "stripe_product_id": product.stripe_product_id,
            "subscription_id": item.subscription_id,
            "state": item.state if readable else EXPIRED,
            "access": readable,
            "access_until": iso(item.access_until),
        })
    return {"entitlements": entries}


def _until_rank(access_until: Optional[datetime]) -> float:
    return float("inf") if access_until is None else access_until.timestamp()
