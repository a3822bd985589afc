"""Subscription → access: the contract's access rules as pure functions of a
subscription (as a plain dict, the way Stripe sends it) and a moment."""
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

USER_ID_METADATA_KEY = "customerhub_user_id"
PRODUCT_ID_METADATA_KEY = "customerhub_product_id"

ACTIVE = "active"
CANCELING = "canceling"
PAST_DUE = "past_due"
EXPIRED = "expired"

SUBSCRIPTION_ACTIVE = "subscription_active"
SUBSCRIPTION_CANCELED = "subscription_canceled"
SUBSCRIPTION_UNPAID = "subscription_unpaid"
SUBSCRIPTION_PAUSED = "subscription_paused"
SUBSCRIPTION_INCOMPLETE = "subscription_incomplete"
PERIOD_ENDED = "period_ended"
PRODUCT_REMOVED = "product_removed"

GRANTING_STATUSES = ("active", "trialing", "past_due")
# Why a status that grants nothing ended access.
ENDING_REASONS = {
    "canceled": SUBSCRIPTION_CANCELED,
    "unpaid": SUBSCRIPTION_UNPAID,
    "paused": SUBSCRIPTION_PAUSED,
    "incomplete": SUBSCRIPTION_INCOMPLETE,
    "incomplete_expired": SUBSCRIPTION_INCOMPLETE,
}


@dataclass(frozen=True)
class Product:
    product_id: str          # CustomerHub's id: metadata, else Stripe's
    stripe_product_id: str


@dataclass(frozen=True)
class Access:
    """What one subscription grants, to every product on it."""
    state: str
    grants: bool
    access_until: Optional[datetime]
    reason: str
    products: Tuple[Product, ...]


def access_of(subscription: Dict[str, Any], now: datetime) -> Access:
    status = subscription.get("status")
    products = products_of(subscription)
    if status not in GRANTING_STATUSES:
        ended = _moment(subscription.get("ended_at"))
        return Access(EXPIRED, False, ended, ENDING_REASONS.get(status, SUBSCRIPTION_CANCELED), products)
    period_end = _latest_period_end(subscription)
    cancel_at = _moment(subscription.get("cancel_at"))
    scheduled = bool(subscription.get("cancel_at_period_end")) or cancel_at is not None
    until = period_end
    if cancel_at is not None:
        if status == "past_due":
            # Unpaid: the period that was paid for, or less.
            until = cancel_at if until is None else min(until, cancel_at)
        else:
            # A scheduled cancellation is the end of access, even one past
            # renewals still to come (a failed renewal makes it past_due).
            until = cancel_at
    if until is None:
        # A granting status with no period on any item: nothing to stand on.
        return Access(EXPIRED, False, None, SUBSCRIPTION_INCOMPLETE, products)
    if until <= now:
        # Access is never true past access_until, whatever the status says.
        return Access(EXPIRED, False, until, PERIOD_ENDED, products)
    if status == "past_due":
        state = PAST_DUE
    else:
        state = CANCELING if scheduled else ACTIVE
    return Access(state, True, until, SUBSCRIPTION_ACTIVE, products)


def products_of(subscription: Dict[str, Any]) -> Tuple[Product, ...]:
    """The products on the subscription's items, in item order, once each."""
    found: List[Product] = []
    seen = set()
    for item in _items(subscription):
        product = ((item.get("price") or {}).get("product")
                   or (item.get("plan") or {}).get("product"))
        if isinstance(product, str):
            stripe_id, metadata = product, {}
        elif isinstance(product, dict) and isinstance(product.get("id"), str):
            stripe_id, metadata = product["id"], product.get("metadata") or {}
        else:
            continue
        if stripe_id in seen:
            continue
        seen.add(stripe_id)
        found.append(Product(_text(metadata.get(PRODUCT_ID_METADATA_KEY)) or stripe_id, stripe_id))
    return tuple(found)


def user_of(subscription: Dict[str, Any]) -> Optional[str]:
    """The CustomerHub user: the customer's metadata, else the subscription's."""
    customer = subscription.get("customer")
    if isinstance(customer, dict) and not customer.get("deleted"):
        found = user_named_by(customer.get("metadata"))
        if found:
            return found
    return user_named_by(subscription.get("metadata"))


def user_named_by(metadata: Optional[Dict[str, Any]]) -> Optional[str]:
    """The CustomerHub user a Stripe object's metadata names, if any."""
    return _text((metadata or {}).get(USER_ID_METADATA_KEY))


def customer_id_of(subscription: Dict[str, Any]) -> Optional[str]:
    customer = subscription.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return customer if isinstance(customer, str) else None


def is_readable(access_until: Optional[datetime], grants: bool, now: datetime) -> bool:
    """Whether stored access holds at `now`: it never does past access_until,
    whether or not the sweep has run yet."""
    return grants and (access_until is None or now < access_until)


def _items(subscription: Dict[str, Any]) -> List[Dict[str, Any]]:
    items = subscription.get("items")
    data = items.get("data") if isinstance(items, dict) else None
    return [item for item in data or [] if isinstance(item, dict)]


def _latest_period_end(subscription: Dict[str, Any]) -> Optional[datetime]:
    ends = [_moment(item.get("current_period_end")) for item in _items(subscription)]
    ends = [end for end in ends if end is not None]
    return max(ends) if ends else None


def _moment(value: Any) -> Optional[datetime]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return datetime.fromtimestamp(value, tz=timezone.utc)


def _text(value: Any) -> Optional[str]:
    return value.strip() if isinstance(value, str) and value.strip() else None
