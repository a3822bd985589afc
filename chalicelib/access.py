"""Subscription → access: the contract's access rules as pure functions of a
subscription (as a plain dict, the way Stripe sends it) and a moment."""
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple

USER_ID_METADATA_KEY = "customerhub_user_id"
PRODUCT_ID_METADATA_KEY = "customerhub_product_id"
# As long as a token's `sub` may be: a longer id could never be a member.
MAX_USER_ID_LENGTH = 256
# Stripe's own limit on a metadata value.
MAX_METADATA_VALUE_LENGTH = 500
# Stripe caps a product's name well below this; a longer one is cut here.
MAX_PRODUCT_NAME_LENGTH = 250
# Stripe's ids: letters, digits and `_`. Anything else (a `/`, 3,000
# characters) could never be read from Stripe or stored as a key, and would
# fail on every one of Stripe's retries.
STRIPE_ID = re.compile(r"[A-Za-z0-9_]{1,255}")
# A Unix time a date can hold (up to the end of year 9999).
LATEST_UNIX_TIME = 253402300799

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
SUBSCRIPTION_REASSIGNED = "subscription_reassigned"
SUBSCRIPTION_UNLINKED = "subscription_unlinked"
SUBSCRIPTION_PAST_DUE = "subscription_past_due"

# How long a past-due subscription keeps access while Stripe retries the
# payment, unless the site says otherwise (past_due_grace_days).
DEFAULT_PAST_DUE_GRACE = timedelta(days=14)

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
    # The Stripe product's name, when it was read with the subscription.
    name: Optional[str] = field(default=None, compare=False)


@dataclass(frozen=True)
class Access:
    """What one subscription grants, to every product on it."""
    state: str
    grants: bool
    access_until: Optional[datetime]
    reason: str
    products: Tuple[Product, ...]


def access_of(subscription: Dict[str, Any], now: datetime, grace: timedelta = DEFAULT_PAST_DUE_GRACE,
              behind_since: Optional[datetime] = None) -> Access:
    """What the subscription grants at `now`. `grace` is the site's
    past_due_grace_days; `behind_since`, for a past_due subscription, when
    its oldest unpaid invoice was made (None: none is open, and the earliest
    item period start stands for it)."""
    status = subscription.get("status")
    products = products_of(subscription)
    if status not in GRANTING_STATUSES:
        ended = _moment(subscription.get("ended_at"))
        reason = ENDING_REASONS.get(status) if isinstance(status, str) else None
        return Access(EXPIRED, False, ended, reason or SUBSCRIPTION_CANCELED, products)
    period_end = _latest_period_end(subscription)
    if period_end is None:
        # A granting status with no period on any item: nothing to stand on.
        return Access(EXPIRED, False, None, SUBSCRIPTION_INCOMPLETE, products)
    cancel_at = _moment(subscription.get("cancel_at"))
    scheduled = bool(subscription.get("cancel_at_period_end")) or cancel_at is not None
    # A far cancel_at ends access no later than the period paid for: a
    # renewal extends it when it is paid, never before.
    until = period_end if cancel_at is None else min(period_end, cancel_at)
    grace_end = None
    if status == "past_due":
        # A subscription left past_due renews its period without a payment:
        # access runs from when it fell behind, not from the new period.
        since = behind_since or _earliest_period_start(subscription)
        if since is not None:
            grace_end = since + grace
            until = min(until, grace_end)
    if until <= now:
        # Access is never true past access_until, whatever the status says.
        reason = SUBSCRIPTION_PAST_DUE if grace_end is not None and until == grace_end else PERIOD_ENDED
        return Access(EXPIRED, False, until, reason, products)
    if status == "past_due":
        state = PAST_DUE
    else:
        state = CANCELING if scheduled else ACTIVE
    return Access(state, True, until, SUBSCRIPTION_ACTIVE, products)


def products_of(subscription: Dict[str, Any]) -> Tuple[Product, ...]:
    """The products on the subscription's items, in item order, once each."""
    found: List[Product] = []
    seen = set()
    for item in items_of(subscription):
        product = _field(item.get("price"), "product") or _field(item.get("plan"), "product")
        name = None
        if is_stripe_id(product):
            stripe_id, metadata = product, {}
        elif isinstance(product, dict) and is_stripe_id(product.get("id")):
            stripe_id, metadata = product["id"], product.get("metadata")
            name = product.get("name") if isinstance(product.get("name"), str) else None
        else:
            continue
        if stripe_id in seen:
            continue
        seen.add(stripe_id)
        found.append(Product(_metadata_value(metadata, PRODUCT_ID_METADATA_KEY) or stripe_id, stripe_id,
                             name[:MAX_PRODUCT_NAME_LENGTH] if name else None))
    return tuple(found)


def user_of(subscription: Dict[str, Any]) -> Optional[str]:
    """The CustomerHub user: the customer's metadata, else the subscription's."""
    customer = subscription.get("customer")
    if isinstance(customer, dict) and not customer.get("deleted"):
        found = user_named_by(customer.get("metadata"))
        if found:
            return found
    return user_named_by(subscription.get("metadata"))


def user_named_by(metadata: Any) -> Optional[str]:
    """The CustomerHub user a Stripe object's metadata names, if any."""
    user_id = _metadata_value(metadata, USER_ID_METADATA_KEY)
    return user_id if user_id and len(user_id) <= MAX_USER_ID_LENGTH else None


def customer_id_of(subscription: Dict[str, Any]) -> Optional[str]:
    customer = subscription.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return customer if is_stripe_id(customer) else None


def is_stripe_id(value: Any) -> bool:
    return isinstance(value, str) and STRIPE_ID.fullmatch(value) is not None


def is_unix_time(value: Any) -> bool:
    # A bool is an int to Python, not a time to anyone.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= LATEST_UNIX_TIME


def is_readable(access_until: Optional[datetime], grants: bool, now: datetime) -> bool:
    """Whether stored access holds at `now`: it never does past access_until,
    whether or not the sweep has run yet."""
    return grants and (access_until is None or now < access_until)


def items_of(subscription: Dict[str, Any]) -> List[Dict[str, Any]]:
    data = _field(subscription.get("items"), "data")
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def _latest_period_end(subscription: Dict[str, Any]) -> Optional[datetime]:
    ends = [_moment(item.get("current_period_end")) for item in items_of(subscription)]
    ends = [end for end in ends if end is not None]
    return max(ends) if ends else None


def _earliest_period_start(subscription: Dict[str, Any]) -> Optional[datetime]:
    starts = [_moment(item.get("current_period_start")) for item in items_of(subscription)]
    starts = [start for start in starts if start is not None]
    return min(starts) if starts else None


def _moment(value: Any) -> Optional[datetime]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= LATEST_UNIX_TIME:
        return None
    return datetime.fromtimestamp(value, tz=timezone.utc)


def _field(value: Any, name: str) -> Any:
    """A field of a Stripe object; of anything else (an event's copy may hold
    any JSON), nothing."""
    return value.get(name) if isinstance(value, dict) else None


def _metadata_value(metadata: Any, key: str) -> Optional[str]:
    value = _text(_field(metadata, key))
    return value if value and len(value) <= MAX_METADATA_VALUE_LENGTH else None


def _text(value: Any) -> Optional[str]:
    return value.strip() if isinstance(value, str) and value.strip() else None
