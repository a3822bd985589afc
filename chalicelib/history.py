"""Access history: every change the connector stores for a member's
entitlement (its state, access or access_until), one item per product,
written in the same transaction as the change, with its reason and cause;
kept 400 days. So support answers "why was I cut off?" from one page.

What an entitlement held before a change is known without reading it: the
subscription's member record (SubscriptionMemberModel), read before every
write, carries what the entitlement it points at holds (its `Standing`),
and every write of the entitlement writes that too."""
import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional, Tuple, Union

from chalicelib.access import EXPIRED, PRODUCT_REMOVED, Access, Product
from chalicelib.clock import iso
from chalicelib.entitlements import (MAX_USER_ID_LENGTH, member_key, microseconds, product_attributes,
                                     products_of_attributes)
from chalicelib.errors import InvalidRequest
from chalicelib.models import AccessHistoryModel, EntitlementModel, SubscriptionMemberModel

KEPT_FOR = timedelta(days=400)

# What caused a change (the contract's `cause.kind`).
STRIPE_EVENT = "stripe_event"
SWEEP = "sweep"
IMPORT = "import"
CATCH_UP = "catch_up"
LINK = "link"
UNLINK = "unlink"
CLAIM = "claim"


@dataclass(frozen=True)
class Cause:
    kind: str
    # The Stripe event id (stripe_event, catch_up), the admin's user id
    # (link, unlink), else the id of the run, import or claim.
    id: str


@dataclass(frozen=True)
class Standing:
    """What an entitlement holds: the same for every product on it."""
    state: str
    grants: bool
    access_until: Optional[datetime]
    # In the subscription's order.
    products: Tuple[Product, ...]

    def same_access(self, other: "Standing") -> bool:
        return (self.state, self.grants, self.access_until) == (other.state, other.grants, other.access_until)


def standing_of_access(access: Access) -> Standing:
    return Standing(access.state, access.grants, access.access_until, access.products)


def standing_of(record: Union[EntitlementModel, SubscriptionMemberModel, None]) -> Optional[Standing]:
    """What an entitlement holds, or what a member record says its
    entitlement holds; None for no entitlement (or a member record that
    predates the history)."""
    if record is None or record.state is None:
        return None
    return Standing(record.state, bool(record.grants), record.access_until, products_of_attributes(record.products))


def mirror(holder: SubscriptionMemberModel, standing: Optional[Standing]) -> SubscriptionMemberModel:
    """The member record, carrying what its entitlement now holds."""
    if standing is None:
        holder.state = holder.grants = holder.access_until = holder.products = None
        return holder
    holder.state, holder.grants, holder.access_until = standing.state, standing.grants, standing.access_until
    holder.products = product_attributes(standing.products)
    return holder


def mirror_actions(standing: Standing) -> list:
    """The member record's update to what its entitlement now holds."""
    return [
        SubscriptionMemberModel.state.set(standing.state),
        SubscriptionMemberModel.grants.set(standing.grants),
        SubscriptionMemberModel.access_until.set(standing.access_until) if standing.access_until
        else SubscriptionMemberModel.access_until.remove(),
        SubscriptionMemberModel.products.set(product_attributes(standing.products)),
    ]


def changes(site_id: str, user_id: Optional[str], subscription_id: str, before: Optional[Standing],
            after: Standing, reason: str, cause: Optional[Cause], at: datetime) -> List[AccessHistoryModel]:
    """The history items of one write of a member's entitlement: one per
    product whose state, access or access_until changed (a product that
    left the subscription loses access). Nothing for an unmatched
    subscription (it is no one's) or without a cause."""
    if user_id is None or cause is None:
        return []
    was = {p.product_id: p.name for p in before.products} if before is not None else {}
    items = []
    for product in after.products:
        earlier = before if product.product_id in was else None
        if earlier is not None and earlier.same_access(after):
            continue
        items.append(_item(site_id, user_id, subscription_id, product.product_id,
                           product.name or was.get(product.product_id), earlier, after, reason, cause, at))
    now_on = {p.product_id for p in after.products}
    for product in (before.products if before is not None else ()):
        if product.product_id in now_on or not before.grants:
            continue
        removed = Standing(EXPIRED, False, min(before.access_until, at) if before.access_until else at, ())
        items.append(_item(site_id, user_id, subscription_id, product.product_id, product.name, before, removed,
                           PRODUCT_REMOVED, cause, at))
    return items


def _item(site_id: str, user_id: str, subscription_id: str, product_id: str, name: Optional[str],
          before: Optional[Standing], after: Standing, reason: str, cause: Cause, at: datetime
          ) -> AccessHistoryModel:
    return AccessHistoryModel(
        member_key(site_id, user_id), "%017d#%s#%s" % (microseconds(at), subscription_id, product_id),
        site_id=site_id, user_id=user_id, at=at, subscription_id=subscription_id, product_id=product_id,
        product_name=name,
        from_state=before.state if before else None, from_access=before.grants if before else None,
        from_access_until=before.access_until if before else None,
        to_state=after.state, to_access=after.grants, to_access_until=after.access_until,
        reason=reason, cause_kind=cause.kind, cause_id=cause.id[:255], expires_at=at + KEPT_FOR)


# ------------------------------------------------------------------ reading

def encode_cursor(change_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([change_key]).encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(raw: Any) -> Optional[str]:
    if raw is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8"))
    except (binascii.Error, UnicodeError, ValueError, TypeError):
        decoded = None
    if not (isinstance(decoded, list) and len(decoded) == 1 and isinstance(decoded[0], str)
            and 0 < len(decoded[0]) <= 600):
        raise InvalidRequest("cursor is not one this history gave")
    return decoded[0]


def entry(item: AccessHistoryModel) -> Dict[str, Any]:
    before = None
    if item.from_state is not None:
        before = {"state": item.from_state, "access": bool(item.from_access),
                  "access_until": iso(item.from_access_until)}
    return {
        "at": iso(item.at),
        "product_id": item.product_id,
        "subscription_id": item.subscription_id,
        "from": before,
        "to": {"state": item.to_state, "access": bool(item.to_access), "access_until": iso(item.to_access_until)},
        "reason": item.reason,
        "cause": {"kind": item.cause_kind, "id": item.cause_id},
    }


class AccessHistory:
    """GET /access/history and /access/{user_id}/history."""

    def of_member(self, site_id: str, user_id: str, limit: int, cursor: Optional[str]) -> Dict[str, Any]:
        if not user_id or len(user_id) > MAX_USER_ID_LENGTH:
            raise InvalidRequest("The user id must be 1 to %d characters" % MAX_USER_ID_LENGTH)
        key = member_key(site_id, user_id)
        found: List[AccessHistoryModel] = []
        for item in AccessHistoryModel.query(
                key, AccessHistoryModel.change_key < cursor if cursor else None,
                scan_index_forward=False, consistent_read=True, page_size=limit + 1):
            found.append(item)
            if len(found) > limit:
                break
        more = len(found) > limit
        page = found[:limit]
        answer: Dict[str, Any] = {"history": [entry(item) for item in page],
                                  "next_cursor": encode_cursor(page[-1].change_key) if more else None}
        # The products' names as Stripe had them, beside the contract's
        # entries (for the UI; only when some are known).
        names = {item.product_id: item.product_name for item in page if item.product_name}
        if names:
            answer["product_names"] = names
        return answer
