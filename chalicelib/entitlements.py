"""Entitlements in DynamoDB: one item per site, member and subscription,
holding what the subscription grants to each of its products."""
import logging
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.access import EXPIRED, Access, is_readable
from chalicelib.clock import Clock, iso, utc_now
from chalicelib.errors import InvalidRequest
from chalicelib.identity import NAMED_BY_METADATA, customer_member
from chalicelib.member_customers import FROM_SUBSCRIPTION
from chalicelib.models import EntitlementModel, MemberCustomerModel, ProductAttribute, WebhookEventModel

logger = logging.getLogger(__name__)

# The sweep's index is spread over this many partitions. Changing it needs a
# backfill of `due_shard`: the sweep only looks in shards below it.
DUE_SHARDS = 16
MAX_USER_ID_LENGTH = 256
# DynamoDB's limit on the items of one transaction, less the event's record.
WRITES_PER_TRANSACTION = 99


def member_key(site_id: str, user_id: str) -> str:
    # The site is escaped so that no (site, user) pair shares a key with another.
    return site_id.replace("\\", "\\\\").replace("#", "\\#") + "#" + user_id


def unmatched_key(site_id: str) -> str:
    """Where a site keeps the subscriptions that name no member: the site's
    key with no user (a member's user id is never empty)."""
    return member_key(site_id, "")


def claim_key(site_id: str, email: str) -> str:
    return member_key(site_id, email.strip().lower())


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
    # None: the subscription names no member (see chalicelib/identity.py).
    user_id: Optional[str]
    account_id: str
    customer_id: Optional[str]
    subscription_id: str
    stripe_status: str
    access: Access
    view_time: int
    stripe_event_id: Optional[str]
    # The customer's email and name, kept for an unmatched subscription.
    email: Optional[str] = None
    name: Optional[str] = None
    # True when the subscription's own metadata named the member: the
    # customer is then recorded as theirs on the site.
    named: bool = False


class StaleView(Exception):
    """A newer view of the subscription is stored already."""


class EventAlreadyDone(Exception):
    """Another delivery of the same event recorded it first."""


def entitlement_item(view: View, now: datetime) -> EntitlementModel:
    unmatched = view.user_id is None
    key = unmatched_key(view.site_id) if unmatched else member_key(view.site_id, view.user_id)
    access = view.access
    item = EntitlementModel(
        key, view.subscription_id,
        site_id=view.site_id, user_id=view.user_id, account_id=view.account_id,
        customer_id=view.customer_id, email=view.email if unmatched else None,
        name=view.name if unmatched else None, stripe_status=view.stripe_status, state=access.state,
        grants=access.grants, access_until=access.access_until, reason=access.reason,
        products=[ProductAttribute(product_id=p.product_id, stripe_product_id=p.stripe_product_id)
                  for p in access.products],
        view_time=view.view_time, stripe_event_id=view.stripe_event_id, changed_at=now,
    )
    if access.grants:
        item.grant_key = grant_key(view.site_id, view.account_id)
        if unmatched and view.email and view.customer_id:
            item.claim_key = claim_key(view.site_id, view.email)
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
    ended.claim_key = None
    return ended


@dataclass
class Writes:
    """What one view writes: its entitlement and the records beside it (the
    member's customer for the billing portal and, where metadata named the
    member, the customer's member on the site). They land together or,
    when a newer view is stored, not at all."""
    item: EntitlementModel
    records: List[Model]


def member_writes(views: Sequence[View], now: datetime) -> List[Writes]:
    writes = []
    for view in views:
        records: List[Model] = []
        if view.user_id is not None and view.customer_id:
            records.append(MemberCustomerModel(
                view.site_id, view.user_id, account_id=view.account_id, customer_id=view.customer_id,
                source=FROM_SUBSCRIPTION, recorded_at=now))
            if view.named:
                records.append(customer_member(view.site_id, view.account_id, view.customer_id, view.user_id,
                                               NAMED_BY_METADATA, now))
        writes.append(Writes(entitlement_item(view, now), records))
    return writes


def _key_of(record: Model) -> tuple:
    """The table and key of a record: what DynamoDB takes as one item."""
    return (type(record).__name__, getattr(record, record._hash_keyname),
            getattr(record, record._range_keyname) if record._range_keyname else None)


def newer_than_stored(view_time: int):
    return EntitlementModel.member_key.does_not_exist() | (EntitlementModel.view_time < view_time)


def write_condition(item: EntitlementModel):
    """A view lands only over an older one; an unmatched one also not over a
    subscription a member has claimed since (it is theirs now)."""
    condition = newer_than_stored(item.view_time)
    if item.user_id is None:
        condition = condition & EntitlementModel.claimed_by.does_not_exist()
    return condition


class EntitlementStore:
    def __init__(self, connection: Connection):
        self._connection = connection

    def of_member(self, site_id: str, user_id: str) -> List[EntitlementModel]:
        return list(EntitlementModel.query(member_key(site_id, user_id), consistent_read=True))

    def write(self, writes: Sequence[Writes], done: Optional[WebhookEventModel]) -> List[EntitlementModel]:
        """Write the entitlements, the records beside them and the event's
        record: a transaction holds whole views, the event's record goes with
        the last. An entitlement whose stored view is newer is left out with
        its records (and returned), the rest is written; a record written by
        another delivery meanwhile raises EventAlreadyDone and writes nothing."""
        stale: List[EntitlementModel] = []
        pending = list(writes)
        while True:
            try:
                self._write_chunks(pending, done)
                return stale
            except StaleView as exc:
                stale.extend(exc.args[0])
                pending = [w for w in pending if w.item not in exc.args[0]]

    def _write_chunks(self, writes: List[Writes], done: Optional[WebhookEventModel]) -> None:
        chunks: List[Tuple[List[EntitlementModel], List[Model]]] = [([], [])]
        seen = set()
        for write in writes:
            # A transaction may write an item once: a record two views share goes once.
            records = []
            for record in write.records:
                key = _key_of(record)
                if key not in seen:
                    seen.add(key)
                    records.append(record)
            items, chunk_records = chunks[-1]
            if items and len(items) + len(chunk_records) + 1 + len(records) > WRITES_PER_TRANSACTION:
                chunks.append(([], []))
                items, chunk_records = chunks[-1]
            items.append(write.item)
            chunk_records.extend(records)
        for index, (items, records) in enumerate(chunks):
            # The record goes with the last chunk: an earlier crash leaves the
            # event undone, and Stripe's retry writes a newer view of the same.
            last = index == len(chunks) - 1
            self._transact(items, records, done if last else None)

    def _transact(self, items: List[EntitlementModel], records: Sequence[Model],
                  done: Optional[WebhookEventModel]) -> None:
        if not items and not records and done is None:
            return
        try:
            with TransactWrite(connection=self._connection) as transaction:
                for item in items:
                    transaction.save(item, condition=write_condition(item))
                for record in records:
                    transaction.save(record)
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
