"""Whose a subscription is on a site: `metadata.customerhub_user_id` on the
Stripe customer, else on the subscription, else the member an admin linked
it to or who claimed it, else the member the site has recorded for that
customer (from an earlier subscription that named them, a link or a claim),
else nobody: the subscription is then unmatched."""
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Iterable, Optional, Tuple

from chalicelib.access import customer_id_of, user_of
from chalicelib.models import CustomerMemberModel, SubscriptionMemberModel

# Why a subscription is its member's (`member_from`), and why a site
# recorded a customer as a member (the customer record's `source`).
METADATA = "metadata"
RECORD = "record"
LINK = "link"
CLAIM = "claim"
# Only these can be undone (DELETE /connectors/stripe/links/{id}).
UNDOABLE = (LINK, CLAIM)


@dataclass(frozen=True)
class Membership:
    user_id: Optional[str]
    member_from: Optional[str]


UNMATCHED = Membership(None, None)


def membership(subscription: Dict[str, Any], holder: Optional[SubscriptionMemberModel],
               recorded: Optional[str]) -> Membership:
    """The subscription's member now, from its metadata, its own link or
    claim (`holder`, whose it was as last written), and the member recorded
    for its customer. A link or claim that was undone never comes back by
    the customer's record."""
    named = user_of(subscription)
    if named:
        return Membership(named, METADATA)
    if holder is not None and holder.user_id and holder.member_from in UNDOABLE:
        return Membership(holder.user_id, holder.member_from)
    if recorded and not (holder is not None and holder.unlinked_from == recorded):
        return Membership(recorded, RECORD)
    return UNMATCHED


def customer_ref(account_id: str, customer_id: str) -> str:
    return account_id + "#" + customer_id


def customer_member(site_id: str, account_id: str, customer_id: str, user_id: str, source: str,
                    now: datetime) -> CustomerMemberModel:
    return CustomerMemberModel(site_id, customer_ref(account_id, customer_id), user_id=user_id,
                               account_id=account_id, customer_id=customer_id, source=source, recorded_at=now)


def customer_email(subscription: Dict[str, Any]) -> Tuple[Optional[str], Optional[str]]:
    """The expanded customer's email and name, as Stripe has them."""
    customer = subscription.get("customer")
    if not isinstance(customer, dict) or customer.get("deleted"):
        return None, None

    def text(value: Any, longest: int) -> Optional[str]:
        return value.strip()[:longest] if isinstance(value, str) and value.strip() else None

    return text(customer.get("email"), 512), text(customer.get("name"), 256)


def customer_key(site_id: str, account_id: str, subscription: Dict[str, Any]) -> Optional[Tuple[str, str]]:
    """The key of the site's record of the subscription's customer."""
    customer = customer_id_of(subscription)
    return (site_id, customer_ref(account_id, customer)) if customer else None


class CustomerMembers:
    """The members sites have recorded for Stripe customers."""

    def recorded(self, keys: Iterable[Tuple[str, str, str]]) -> Dict[Tuple[str, str, str], str]:
        """(site, account, customer) → the recorded member, for those that
        have one; one batch read per hundred keys."""
        wanted = sorted(set(keys))
        found = {}
        for start in range(0, len(wanted), 100):
            for record in CustomerMemberModel.batch_get(
                    [(site, customer_ref(account, customer)) for site, account, customer in wanted[start:start + 100]],
                    consistent_read=True):
                found[(record.site_id, record.account_id, record.customer_id)] = record.user_id
        return found

    def get(self, site_id: str, account_id: str, customer_id: str) -> Optional[CustomerMemberModel]:
        try:
            return CustomerMemberModel.get(site_id, customer_ref(account_id, customer_id), consistent_read=True)
        except CustomerMemberModel.DoesNotExist:
            return None
