"""Subscriptions that name no member: the admin's list, link and unlink,
and the claim a member with the customer's verified email makes on any
member route.

A link or a claim records the customer as the member on the site (so every
later subscription of the customer is theirs, chalicelib/identity.py), moves
the subscription's entitlement to the member (announced, as any grant), makes
the subscription theirs in its member record and, when the member has no
billing customer yet, remembers this one for their billing portal, in one
transaction. A customer already recorded as another member is never taken
from them, and a member's billing customer is never replaced. An unlink
undoes it: the member's access from the subscription ends (announced), the
subscription is unmatched again, and the customer is no longer theirs unless
Stripe metadata made it so."""
import base64
import binascii
import logging
import uuid
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib import history
from chalicelib.access import (EXPIRED, PERIOD_ENDED, SUBSCRIPTION_UNLINKED, Access, is_readable,
                               is_stripe_id)
from chalicelib.auth import Caller
from chalicelib.clock import Clock, iso, utc_now
from chalicelib.connections import CONNECTED, ConnectionStore
from chalicelib.entitlements import (MAX_USER_ID_LENGTH, EntitlementStore, View, claim_key, due_shard_of,
                                     ended_item, entitlement_item, entitlements_view, grant_key, member_key,
                                     microseconds, newer_than_stored, products_of_attributes, unmatched_key)
from chalicelib.errors import AlreadyLinked, ConnectionChanged, InvalidRequest, NotFound, NotLinked
from chalicelib.identity import CLAIM, LINK, METADATA, UNDOABLE, CustomerMembers, customer_member, customer_ref
from chalicelib.member_customers import FROM_LINK
from chalicelib.models import (CustomerMemberModel, EntitlementModel, MemberCustomerModel, SubscriptionMemberModel,
                               read_many)

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
# Reads and writes of one subscription before a race is the caller's to retry.
ATTEMPTS = 3


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
        would grant access now, oldest id first. Read from the sparse
        unmatched index: the cost follows the page, not the site's history."""
        connection = self._connections.get(site_id)
        if connection is None or connection.status != CONNECTED:
            return {"unmatched": [], "next_cursor": None}
        now = self._clock()
        found: List[EntitlementModel] = []
        more = False
        query = EntitlementModel.unmatched_index.query(
            grant_key(site_id, connection.account_id),
            EntitlementModel.subscription_id > cursor if cursor else None,
            page_size=limit + 1)
        for item in query:
            if not is_readable(item.access_until, item.grants, now):
                continue  # its period is over; the sweep has not ended it yet
            if len(found) == limit:
                more = True
                break
            found.append(item)
        # A customer recorded as a member since (named by a later subscription's
        # metadata) makes their subscriptions theirs: not listed; but not one
        # whose link to that member was undone.
        taken = self._members.recorded(
            (site_id, item.account_id, item.customer_id) for item in found if item.customer_id)
        shown = [item for item in found
                 if taken.get((site_id, item.account_id, item.customer_id), item.unlinked_from) == item.unlinked_from]
        return {"unmatched": [listed(item) for item in shown],
                "next_cursor": encode_cursor(found[-1].subscription_id) if more and found else None}

    def link(self, site_id: str, subscription_id: str, user_id: Any, by: Optional[str] = None) -> Dict[str, list]:
        if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER_ID_LENGTH:
            raise InvalidRequest("user_id must be 1 to %d characters" % MAX_USER_ID_LENGTH)
        if not is_stripe_id(subscription_id):
            raise NotFound("The site has no unmatched subscription %s" % subscription_id[:255])
        for _ in range(ATTEMPTS):
            item, holder = self._unmatched(site_id, subscription_id)
            if item is None or holder is None or not item.customer_id:
                raise NotFound("The site has no unmatched subscription %s" % subscription_id)
            if holder.user_id == user_id:
                break  # theirs already: linking it again changes nothing
            if holder.user_id is not None:
                raise AlreadyLinked("The subscription belongs to another member now")
            record = self._members.get(site_id, item.account_id, item.customer_id)
            if record is not None and record.user_id != user_id:
                raise AlreadyLinked("The subscription's customer belongs to another member now")
            try:
                self._give(item, holder, user_id, LINK, history.Cause(history.LINK, by or "admin"))
                break
            except LostRace as exc:
                if exc.customer_taken:
                    raise AlreadyLinked("The subscription belongs to another member now") from exc
        else:
            raise ConnectionChanged("The subscription kept changing; try again")
        logger.info("Site %s linked %s (customer %s) to a member", site_id, subscription_id, item.customer_id)
        return entitlements_view(self._entitlements.of_member(site_id, user_id), self._clock())

    def unlink(self, site_id: str, subscription_id: str, by: Optional[str] = None) -> Dict[str, Any]:
        """DELETE /connectors/stripe/links/{id}: undo a link or a claim. The
        subscription as the unmatched list shows it."""
        if not is_stripe_id(subscription_id):
            raise NotFound("The site has no subscription %s" % subscription_id[:255])
        for _ in range(ATTEMPTS):
            holder = self._holder(site_id, subscription_id)
            if holder is None:
                raise NotFound("The site has no subscription %s" % subscription_id)
            if holder.user_id is None:
                raise NotLinked("The subscription is unmatched already")
            if holder.member_from not in UNDOABLE:
                raise NotLinked("The subscription's member comes from Stripe metadata or the customer's record, "
                                "not from a link or a claim: change it in Stripe")
            try:
                unmatched = self._take_back(holder, history.Cause(history.UNLINK, by or "admin"))
            except LostRace:
                continue
            logger.info("Site %s unlinked %s from a member", site_id, subscription_id)
            return listed(unmatched)
        raise ConnectionChanged("The subscription kept changing; try again")

    # ----------------------------------------------------------- the member

    def claim_for(self, member: Caller) -> int:
        """Claim the caller's unmatched subscriptions: those on their site
        whose customer's email is their verified email. One query when there
        is nothing to claim; nothing at all without a verified email."""
        if not member.email_verified or not member.email:
            return 0
        candidates = [item for item in EntitlementModel.claim_index.query(claim_key(member.site_id, member.email))
                      if item.user_id is None and item.claimed_by is None and item.customer_id
                      and item.unlinked_from != member.user_id]
        if not candidates:
            return 0
        holders = {(h.site_id, h.subscription_id): h for h in read_many(self._connection, {
            SubscriptionMemberModel: [(item.site_id, item.subscription_id) for item in candidates]
        })[SubscriptionMemberModel]}
        claimed = 0
        cause = history.Cause(history.CLAIM, "claim_" + uuid.uuid4().hex[:16])
        for item in candidates:
            holder = holders.get((item.site_id, item.subscription_id))
            if holder is None or holder.user_id is not None or holder.unlinked_from == member.user_id:
                continue
            try:
                self._give(item, holder, member.user_id, CLAIM, cause)
                claimed += 1
            except LostRace:
                logger.info("Subscription %s of site %s went to someone else first", item.subscription_id,
                            member.site_id)
        if claimed:
            logger.info("A member of site %s claimed %d subscriptions by verified email", member.site_id, claimed)
        return claimed

    # ----------------------------------------------------------- both

    def _holder(self, site_id: str, subscription_id: str) -> Optional[SubscriptionMemberModel]:
        try:
            return SubscriptionMemberModel.get(site_id, subscription_id, consistent_read=True)
        except SubscriptionMemberModel.DoesNotExist:
            return None

    def _unmatched(self, site_id: str, subscription_id: str
                   ) -> Tuple[Optional[EntitlementModel], Optional[SubscriptionMemberModel]]:
        found = read_many(self._connection, {EntitlementModel: [(unmatched_key(site_id), subscription_id)],
                                             SubscriptionMemberModel: [(site_id, subscription_id)]})
        items, holders = found[EntitlementModel], found[SubscriptionMemberModel]
        return (items[0] if items else None), (holders[0] if holders else None)

    def _billing_customer(self, site_id: str, user_id: str) -> Optional[MemberCustomerModel]:
        try:
            return MemberCustomerModel.get(site_id, user_id, consistent_read=True)
        except MemberCustomerModel.DoesNotExist:
            return None

    def _give(self, item: EntitlementModel, holder: SubscriptionMemberModel, user_id: str, source: str,
              cause: history.Cause) -> None:
        now = self._clock()
        view_time = max(microseconds(now), item.view_time + 1, holder.view_time + 1)
        given = _member_entitlement(item, user_id, source, view_time, now)
        taken = ended_item(item, now, item.reason, view_time=view_time)
        taken.claimed_by = user_id
        taken.stripe_event_id = item.stripe_event_id
        billing = self._billing_customer(item.site_id, user_id)
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(customer_member(item.site_id, item.account_id, item.customer_id, user_id, source, now),
                                 condition=CustomerMemberModel.user_id.does_not_exist()
                                 | (CustomerMemberModel.user_id == user_id))
                # Only if nothing was written since it was read (a newer view,
                # or another member's claim).
                transaction.save(taken, condition=EntitlementModel.view_time == item.view_time)
                transaction.save(given, condition=newer_than_stored(view_time))
                for change in history.changes(item.site_id, user_id, item.subscription_id, None,
                                              history.standing_of(given), given.reason, cause, now):
                    transaction.save(change)
                transaction.save(history.mirror(SubscriptionMemberModel(
                    item.site_id, item.subscription_id, account_id=item.account_id, user_id=user_id,
                    member_from=source, unlinked_from=None if source == LINK else holder.unlinked_from,
                    view_time=view_time, read_at=holder.read_at, changed_at=now), history.standing_of(given)),
                    condition=SubscriptionMemberModel.view_time == holder.view_time)
                # The member's billing customer is the first recorded: a
                # customer claimed or linked later never replaces it.
                if billing is None or billing.account_id != item.account_id:
                    transaction.save(MemberCustomerModel(item.site_id, user_id, account_id=item.account_id,
                                                         customer_id=item.customer_id, source=FROM_LINK,
                                                         recorded_at=now),
                                     condition=MemberCustomerModel.user_id.does_not_exist()
                                     | (MemberCustomerModel.account_id != item.account_id))
        except TransactWriteError as exc:
            raise _lost_race(exc) from exc

    def _take_back(self, holder: SubscriptionMemberModel, cause: history.Cause) -> EntitlementModel:
        """The unlink's one transaction; the unmatched item it wrote."""
        site_id, user_id = holder.site_id, holder.user_id
        found = read_many(self._connection, {EntitlementModel: [(member_key(site_id, user_id), holder.subscription_id),
                                                                (unmatched_key(site_id), holder.subscription_id)]})
        items = {item.member_key: item for item in found[EntitlementModel]}
        held = items.get(member_key(site_id, user_id))
        if held is None:
            raise LostRace(customer_taken=False)
        before = items.get(unmatched_key(site_id))
        records = {}
        if held.customer_id:
            records = read_many(self._connection, {
                CustomerMemberModel: [(site_id, customer_ref(held.account_id, held.customer_id))],
                MemberCustomerModel: [(site_id, user_id)]})
        record = next(iter(records.get(CustomerMemberModel, [])), None)
        billing = next(iter(records.get(MemberCustomerModel, [])), None)
        now = self._clock()
        view_time = max(microseconds(now), holder.view_time + 1, held.view_time + 1,
                        before.view_time + 1 if before is not None else 0)
        ended = ended_item(held, now, SUBSCRIPTION_UNLINKED, view_time=view_time, ends_now=True)
        unmatched = _unmatched_entitlement(held, before, user_id, view_time, now)
        # The customer stays the member's only where metadata recorded it so.
        forget_customer = record is not None and record.user_id == user_id and record.source != METADATA
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(ended, condition=EntitlementModel.view_time == held.view_time)
                for change in history.changes(site_id, user_id, holder.subscription_id, history.standing_of(held),
                                              history.standing_of(ended), ended.reason, cause, now):
                    transaction.save(change)
                transaction.save(unmatched, condition=newer_than_stored(view_time))
                transaction.save(history.mirror(SubscriptionMemberModel(
                    site_id, holder.subscription_id, account_id=holder.account_id, user_id=None, member_from=None,
                    unlinked_from=user_id, view_time=view_time, read_at=holder.read_at, changed_at=now),
                    history.standing_of(unmatched)),
                    condition=SubscriptionMemberModel.view_time == holder.view_time)
                if forget_customer:
                    transaction.delete(record, condition=(CustomerMemberModel.user_id == user_id)
                                       & (CustomerMemberModel.source == record.source))
                    if billing is not None and billing.customer_id == held.customer_id:
                        # Billing must not open a customer that is not theirs.
                        transaction.delete(billing, condition=MemberCustomerModel.customer_id == held.customer_id)
        except TransactWriteError as exc:
            raise _lost_race(exc) from exc
        return unmatched


def _lost_race(exc: TransactWriteError) -> LostRace:
    """The race a cancelled transaction lost; anything but a failed
    condition is raised as it came."""
    reasons = exc.cancellation_reasons or []
    codes = [reason.code if reason is not None else None for reason in reasons]
    if "ConditionalCheckFailed" not in codes:
        raise exc
    return LostRace(customer_taken=bool(codes) and codes[0] == "ConditionalCheckFailed")


def _member_entitlement(item: EntitlementModel, user_id: str, source: str, view_time: int,
                        now: datetime) -> EntitlementModel:
    """What the unmatched subscription grants, now the member's."""
    given = EntitlementModel.from_raw_data(item.serialize())
    given.member_key = member_key(item.site_id, user_id)
    given.user_id = user_id
    given.member_from = source
    given.email = None
    given.name = None
    given.claim_key = None
    given.listed_key = None
    given.claimed_by = None
    given.unlinked_from = None
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


def _unmatched_entitlement(held: EntitlementModel, before: Optional[EntitlementModel], user_id: str,
                           view_time: int, now: datetime) -> EntitlementModel:
    """What the member's subscription would grant, unmatched again: listed
    (when it grants) and claimable, but not by the member who had it."""
    access = Access(held.state, bool(held.grants), held.access_until, held.reason,
                    products_of_attributes(held.products))
    if held.grants and not is_readable(held.access_until, held.grants, now):
        access = Access(EXPIRED, False, held.access_until, PERIOD_ENDED, access.products)
    return entitlement_item(View(
        site_id=held.site_id, user_id=None, account_id=held.account_id, customer_id=held.customer_id,
        subscription_id=held.subscription_id, stripe_status=held.stripe_status, access=access,
        view_time=view_time, stripe_event_id=None,
        email=before.email if before is not None else None, name=before.name if before is not None else None,
        unlinked_from=user_id), now)
