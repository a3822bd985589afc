"""Whose a subscription is on a site: `metadata.customerhub_user_id` on the
Stripe customer, else on the subscription, else the member the site has
recorded for that customer (from an earlier subscription that named them, a
link or a claim), else nobody: the subscription is then unmatched."""
from datetime import datetime
from typing import Any, Dict, Iterable, List, Optional, Tuple

from chalicelib.access import customer_id_of, user_of
from chalicelib.models import CustomerMemberModel

NAMED_BY_METADATA = "metadata"
LINKED = "link"
CLAIMED = "claim"


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


class CustomerMembers:
    """The members sites have recorded for Stripe customers."""

    def recorded(self, keys: Iterable[Tuple[str, str, str]]) -> Dict[Tuple[str, str, str], str]:
        """(site, account, customer) → the recorded member, for those that
        have one; one batch read however many keys (up to 100)."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        found = {}
        for record in CustomerMemberModel.batch_get(
                [(site, customer_ref(account, customer)) for site, account, customer in wanted],
                consistent_read=True):
            found[(record.site_id, record.account_id, record.customer_id)] = record.user_id
        return found

    def get(self, site_id: str, account_id: str, customer_id: str) -> Optional[CustomerMemberModel]:
        try:
            return CustomerMemberModel.get(site_id, customer_ref(account_id, customer_id), consistent_read=True)
        except CustomerMemberModel.DoesNotExist:
            return None


class Identity:
    def __init__(self, members: CustomerMembers):
        self._members = members

    def members_of(self, subscriptions: List[Dict[str, Any]], account_id: str,
                   site_ids: List[str]) -> Dict[Tuple[str, str], Tuple[Optional[str], bool]]:
        """(site, subscription id) → (member or None, whether metadata named
        them), for each subscription on each site. The records of customers
        that metadata does not settle are read in one batch."""
        answer: Dict[Tuple[str, str], Tuple[Optional[str], bool]] = {}
        to_look_up = []
        for subscription in subscriptions:
            named = user_of(subscription)
            customer = customer_id_of(subscription)
            for site in site_ids:
                answer[(site, subscription["id"])] = (named, named is not None)
                if named is None and customer:
                    to_look_up.append((site, account_id, customer))
        recorded: Dict[Tuple[str, str, str], str] = {}
        for start in range(0, len(to_look_up), 100):
            recorded.update(self._members.recorded(to_look_up[start:start + 100]))
        for subscription in subscriptions:
            customer = customer_id_of(subscription)
            for site in site_ids:
                if answer[(site, subscription["id"])][0] is None and customer:
                    answer[(site, subscription["id"])] = (recorded.get((site, account_id, customer)), False)
        return answer

    def member_of(self, subscription: Dict[str, Any], account_id: str, site_id: str) -> Optional[str]:
        return self.members_of([subscription], account_id, [site_id])[(site_id, subscription["id"])][0]
