"""Subscriptions that name no member: the admin's list and link, and the
claim a member with the customer's verified email makes on any member route.

A link or a claim records the customer as the member on the site (so every
later subscription of the customer is theirs, chalicelib/identity.py), moves
the subscription's entitlement to the member (announced, as any grant), marks
the unmatched subscription as theirs and remembers the customer for the
member's billing portal, in one transaction. A customer already recorded as
another member is never taken from them."""
import base64
import binascii
import logging
from datetime import datetime
from typing import Any, Dict, List, Optional

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.access import EXPIRED, PERIOD_ENDED, is_readable, is_stripe_id
from chalicelib.auth import Caller
from chalicelib.clock import Clock, iso, utc_now
from chalicelib.connections import CONNECTED, ConnectionStore
from chalicelib.entitlements import (MAX_USER_ID_LENGTH, EntitlementStore, claim_key, due_shard_of,
                                     entitlements_view, member_key, microseconds, newer_than_stored,
                                     unmatched_key)
from chalicelib.errors import AlreadyLinked, InvalidRequest, NotFound
from chalicelib.identity import CLAIMED, LINKED, CustomerMembers, customer_member
from chalicelib.member_customers import FROM_LINK
from chalicelib.models import CustomerMemberModel, EntitlementModel, MemberCustomerModel

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 100


class LostRace(Exception):
    """The subscription or its customer changed hands meanwhile."""

    def __init__(self, customer_taken: bool):
        super().__init__("customer taken" if customer_taken else "subscription changed")
        self.customer_taken = customer_taken


def parse_limit(raw: Any) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not isinstance(raw, str) or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest("limit must be a whole number from 1 to %d" % MAX_LIMIT)
    return int(raw)


def encode_cursor(subscription_id: str) -> str:
    return base64.urlsafe_b64encode(subscription_id.encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(raw: Any) -> Optional[str]:
    if raw is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError, TypeError):
        decoded = None
    if not is_stripe_id(decoded):
        raise InvalidRequest("cursor is not one this list gave")
    return decoded


def listed(item: EntitlementModel) -> Dict[str, Any]:
    return {
        "subscription_id": item.subscription_id,
        "customer_id": item.customer_id,
        "email": item.email,
        "name": item.name,
        "products": [{"product_id": p.product_id, "stripe_product_id": p.stripe_product_id}
                     for p in item.products],
        "state": item.state,
        "access_until": iso(item.access_until),
    }


class UnmatchedService:
    def __init__(self, connections: ConnectionStore, members: CustomerMembers, entitlements: EntitlementStore,
                 connection: Connection, clock: Clock = utc_now):
        self._connections = connections
        self._members = members
        self._entitlements = entitlements
        self._connection = connection
        self._clock = clock

    # ------------------------------------------------------------ the admin

    def unmatched(self, site_id: str, limit: int, cursor: Optional[str]) -> Dict[str, Any]:
        """The site's unmatched subscriptions on its connected account that
        would grant access now, oldest id first."""
        connection = self._connections.get(site_id)
        if connection is None or connection.status != CONNECTED:
            return {"unmatched": [], "next_cursor": None}
        now = self._clock()
        start = ({"member_key": {"S": unmatched_key(site_id)}, "subscription_id": {"S": cursor}}
                 if cursor else None)
        found: List[EntitlementModel] = []
        more = False
        query = EntitlementModel.query(
            unmatched_key(site_id), consistent_read=True, last_evaluated_key=start,
            filter_condition=(EntitlementModel.grants == True)  # noqa: E712 (a DynamoDB condition)
            & (EntitlementModel.account_id == connection.account_id)
            & EntitlementModel.claimed_by.does_not_exist(),
            page_size=MAX_LIMIT)
        for item in query:
            if not is_readable(item.access_until, item.grants, now):
                continue
            if len(found) == limit:
                more = True
                break
            found.append(item)
        # A customer recorded as a member since (named by a later subscription's
        # metadata) makes their subscriptions theirs: not listed.
        taken = self._members.recorded(
            (site_id, item.account_id, item.customer_id) for item in found if item.customer_id)
        shown = [item for item in found if (site_id, item.account_id, item.customer_id) not in taken]
        return {"unmatched": [listed(item) for item in shown],
                "next_cursor": encode_cursor(found[-1].subscription_id) if more and found else None}

    def link(self, site_id: str, subscription_id: str, user_id: Any) -> Dict[str, list]:
        if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER_ID_LENGTH:
            raise InvalidRequest("user_id must be 1 to %d characters" % MAX_USER_ID_LENGTH)
        if not is_stripe_id(subscription_id):
            raise NotFound("The site has no unmatched subscription %s" % subscription_id[:255])
        for _ in range(3):
            item = self._unmatched(site_id, subscription_id)
            if item is None or not item.customer_id:
                raise NotFound("The site has no unmatched subscription %s" % subscription_id)
            record = self._members.get(site_id, item.account_id, item.customer_id)
            owner = record.user_id if record is not None else item.claimed_by
            if owner is not None and owner != user_id:
                raise AlreadyLinked("The subscription belongs to another member now")
            if item.claimed_by == user_id:
                break  # theirs already: linking it again changes nothing
            try:
                self._give(item, user_id, LINKED)
                break
            except LostRace as exc:
                if exc.customer_taken:
                    raise AlreadyLinked("The subscription belongs to another member now") from exc
        logger.info("Site %s linked %s (customer %s) to a member", site_id, subscription_id, item.customer_id)
        return entitlements_view(self._entitlements.of_member(site_id, user_id), self._clock())

    # ----------------------------------------------------------- the member

    def claim_for(self, member: Caller) -> int:
        """Claim the caller's unmatched subscriptions: those on their site
        whose customer's email is their verified email. One query when there
        is nothing to claim; nothing at all without a verified email."""
        if not member.email_verified or not member.email:
            return 0
        claimed = 0
        for item in EntitlementModel.claim_index.query(claim_key(member.site_id, member.email)):
            if item.user_id is not None or item.claimed_by is not None or not item.customer_id:
                continue
            try:
                self._give(item, member.user_id, CLAIMED)
                claimed += 1
            except LostRace:
                logger.info("Subscription %s of site %s went to someone else first", item.subscription_id,
                            member.site_id)
        if claimed:
            logger.info("A member of site %s claimed %d subscriptions by verified email", member.site_id, claimed)
        return claimed

    # ----------------------------------------------------------- both

    def _unmatched(self, site_id: str, subscription_id: str) -> Optional[EntitlementModel]:
        try:
            return EntitlementModel.get(unmatched_key(site_id), subscription_id, consistent_read=True)
        except EntitlementModel.DoesNotExist:
            return None

    def _give(self, item: EntitlementModel, user_id: str, source: str) -> None:
        now = self._clock()
        view_time = max(microseconds(now), item.view_time + 1)
        given = _member_entitlement(item, user_id, view_time, now)
        taken = EntitlementModel.from_raw_data(item.serialize())
        taken.claimed_by = user_id
        taken.grants = False
        taken.view_time = view_time
        taken.changed_at = now
        for key in ("claim_key", "grant_key", "due_shard", "due_at"):
            setattr(taken, key, None)
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(customer_member(item.site_id, item.account_id, item.customer_id, user_id, source, now),
                                 condition=CustomerMemberModel.user_id.does_not_exist()
                                 | (CustomerMemberModel.user_id == user_id))
                # Only if nothing was written since it was read (a newer view,
                # or another member's claim).
                transaction.save(taken, condition=(EntitlementModel.view_time == item.view_time)
                                 & (EntitlementModel.claimed_by.does_not_exist()
                                    | (EntitlementModel.claimed_by == user_id)))
                transaction.save(given, condition=newer_than_stored(view_time))
                transaction.save(MemberCustomerModel(item.site_id, user_id, account_id=item.account_id,
                                                     customer_id=item.customer_id, source=FROM_LINK,
                                                     recorded_at=now))
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            codes = [reason.code if reason is not None else None for reason in reasons]
            if "ConditionalCheckFailed" not in codes:
                raise
            raise LostRace(customer_taken=bool(codes) and codes[0] == "ConditionalCheckFailed") from exc


def _member_entitlement(item: EntitlementModel, user_id: str, view_time: int, now: datetime) -> EntitlementModel:
    """What the unmatched subscription grants, now the member's."""
    given = EntitlementModel.from_raw_data(item.serialize())
    given.member_key = member_key(item.site_id, user_id)
    given.user_id = user_id
    given.email = None
    given.name = None
    given.claim_key = None
    given.claimed_by = None
    given.stripe_event_id = None
    given.view_time = view_time
    given.changed_at = now
    if item.grants and not is_readable(item.access_until, item.grants, now):
        # Its period is over; the sweep has not ended it yet.
        given.grants, given.state, given.reason = False, EXPIRED, PERIOD_ENDED
        given.grant_key = given.due_shard = given.due_at = None
    elif given.due_at is not None:
        given.due_shard = due_shard_of(given.member_key, item.subscription_id)
    return given
