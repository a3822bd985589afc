"""Which Stripe customer a site's member is, remembered per site and account."""
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from chalicelib.models import MemberCustomerModel, delete_if, save_if

FROM_SUBSCRIPTION = "subscription"
FROM_EMAIL_LOOKUP = "email_lookup"
# A link by the admin or a claim by verified email.
FROM_LINK = "link"
SOURCES = (FROM_SUBSCRIPTION, FROM_EMAIL_LOOKUP, FROM_LINK)


@dataclass(frozen=True)
class MemberCustomer:
    site_id: str
    user_id: str
    account_id: str
    customer_id: str
    source: str


class MemberCustomerStore:
    def find(self, site_id: str, user_id: str, account_id: str) -> Optional[MemberCustomer]:
        """The member's customer on account_id. One recorded on another
        account (the site has switched accounts since) does not count."""
        try:
            item = MemberCustomerModel.get(site_id, user_id, consistent_read=True)
        except MemberCustomerModel.DoesNotExist:
            return None
        if item.account_id != account_id:
            return None
        return MemberCustomer(item.site_id, item.user_id, item.account_id, item.customer_id, item.source)

    def record(self, found: MemberCustomer, now: datetime) -> bool:
        """Remember found; False when it is an email lookup and a record for
        the same account (of any source) was there first."""
        if found.source not in SOURCES:
            raise ValueError("unknown source %r" % found.source)
        item = MemberCustomerModel(found.site_id, found.user_id, account_id=found.account_id,
                                   customer_id=found.customer_id, source=found.source, recorded_at=now)
        if found.source != FROM_EMAIL_LOOKUP:
            item.save()
            return True
        # A subscription or a link names its customer for sure; an email only
        # suggests one, and a second lookup racing the first must not swap
        # the customer the member's portal opens for.
        condition = (MemberCustomerModel.user_id.does_not_exist()
                     | (MemberCustomerModel.account_id != found.account_id))
        return save_if(item, condition)

    def forget(self, site_id: str, user_id: str, customer_id: str) -> None:
        """Drop the record if it still names customer_id; a newer record
        written meanwhile stays."""
        delete_if(MemberCustomerModel(site_id, user_id), MemberCustomerModel.customer_id == customer_id)
