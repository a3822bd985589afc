"""Entitlements in DynamoDB: one item per site, member and subscription,
holding what the subscription grants to each of its products."""
import logging
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Iterable, List, Optional, Tuple

from chalicelib.access import EXPIRED, Access, Product, is_readable
from chalicelib.clock import Clock, iso, utc_now
from chalicelib.errors import InvalidRequest
from chalicelib.models import EntitlementModel, ProductAttribute

logger = logging.getLogger(__name__)

# The sweep's index is spread over this many partitions. Changing it needs a
# backfill of `due_shard`: the sweep only looks in shards below it.
DUE_SHARDS = 16
MAX_USER_ID_LENGTH = 256


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
    # Why the subscription is the member's (chalicelib/identity.py).
    member_from: Optional[str] = None
    # For an unmatched subscription: the member whose link or claim of it was undone.
    unlinked_from: Optional[str] = None


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
        products=product_attributes(access.products),
        view_time=view.view_time, stripe_event_id=view.stripe_event_id, changed_at=now,
        member_from=None if unmatched else view.member_from,
        unlinked_from=view.unlinked_from if unmatched else None,
    )
    if access.grants:
        item.grant_key = grant_key(view.site_id, view.account_id)
        if unmatched and view.customer_id:
            item.listed_key = grant_key(view.site_id, view.account_id)
            if view.email:
                item.claim_key = claim_key(view.site_id, view.email)
        if access.access_until is not None:
            item.due_shard = due_shard_of(key, view.subscription_id)
            item.due_at = int(access.access_until.timestamp())
    return item


def product_attributes(products: Tuple[Product, ...]) -> List[ProductAttribute]:
    return [ProductAttribute(product_id=p.product_id, stripe_product_id=p.stripe_product_id, name=p.name)
            for p in products]


def products_of_attributes(products: Optional[List[ProductAttribute]]) -> Tuple[Product, ...]:
    return tuple(Product(p.product_id, p.stripe_product_id, p.name) for p in products or [])


def ended_item(item: EntitlementModel, now: datetime, reason: str, stripe_status: Optional[str] = None,
               view_time: Optional[int] = None, stripe_event_id: Optional[str] = None,
               ends_now: bool = False) -> EntitlementModel:
    """The entitlement with its access ended, a newer view than item's. With
    `ends_now` (the subscription went to someone else, or was unlinked),
    access_until is now when it was later."""
    ended = EntitlementModel.from_raw_data(item.serialize())
    ended.grants = False
    ended.state = EXPIRED
    ended.reason = reason
    ended.stripe_event_id = stripe_event_id
    ended.stripe_status = stripe_status or item.stripe_status
    ended.view_time = max(view_time or microseconds(now), item.view_time + 1)
    ended.changed_at = now
    if ends_now and item.grants and (item.access_until is None or item.access_until > now):
        ended.access_until = now
    # Out of the due, grants, claim and unmatched indexes: there is nothing left to end.
    ended.due_shard = None
    ended.due_at = None
    ended.grant_key = None
    ended.claim_key = None
    ended.listed_key = None
    return ended


def newer_than_stored(view_time: int):
    return EntitlementModel.member_key.does_not_exist() | (EntitlementModel.view_time < view_time)


class EntitlementStore:
    def of_member(self, site_id: str, user_id: str) -> List[EntitlementModel]:
        return list(EntitlementModel.query(member_key(site_id, user_id), consistent_read=True))


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
            "member_from": item.member_from,
        })
    view: Dict[str, Any] = {"entitlements": entries}
    # The products' names as Stripe has them, beside the contract's entries
    # (for the UI; only when some are known).
    names = {product.product_id: product.name for _, _, product, _ in best.values() if product.name}
    if names:
        view["product_names"] = names
    return view


def _until_rank(access_until: Optional[datetime]) -> float:
    return float("inf") if access_until is None else access_until.timestamp()
