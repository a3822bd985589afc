"""Writing what a subscription grants on a site, whoever read it (a webhook,
the import, the sweep, an import's re-read).

A view is written with the subscription's member record (whose it is now,
SubscriptionMemberModel) on the condition that the record is still as read,
and with the records beside it: the customer's member where metadata named
them, the member's billing customer where they had none. When the member
changed (metadata names someone else now, or nobody), the earlier member's
entitlement ends in the same transaction, with reason
`subscription_reassigned`. A view older than the member record is stale:
it is left out."""
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.access import SUBSCRIPTION_REASSIGNED, Access, customer_id_of
from chalicelib.entitlements import (EventAlreadyDone, View, ended_item, entitlement_item, member_key,
                                     newer_than_stored, unmatched_key)
from chalicelib.history import Cause, Standing, changes, mirror, mirror_actions, standing_of, standing_of_access
from chalicelib.identity import METADATA, customer_email, customer_key, customer_member, membership
from chalicelib.member_customers import FROM_EMAIL_LOOKUP, FROM_SUBSCRIPTION
from chalicelib.models import (CustomerMemberModel, EntitlementModel, MemberCustomerModel, SubscriptionMemberModel,
                               WebhookEventModel, read_many)

logger = logging.getLogger(__name__)

# DynamoDB's limit on the items of one transaction.
ITEMS_PER_TRANSACTION = 100
# Rounds of read, decide and write when other writers keep changing the
# same subscriptions; after them the caller's retry (Stripe's, the queue's)
# starts afresh.
ATTEMPTS = 4

ENTITLEMENT = "entitlement"
HOLDER = "holder"
PREVIOUS = "previous"
RECORD = "record"
BILLING = "billing"
EVENT = "event"
HISTORY = "history"
# A condition on an item that is not written.
CHECK = "check"


class SubscriptionsKeptChanging(Exception):
    """Other writers changed the same subscriptions on every attempt."""


@dataclass(frozen=True)
class Reading:
    """A subscription as read from Stripe for one site, with what it grants
    there (the site's grace decides a past-due subscription's access)."""
    site_id: str
    account_id: str
    subscription: Dict[str, Any]
    access: Access
    view_time: int
    stripe_event_id: Optional[str]
    # (member_key, view_time) of the entitlement the reader started from (the
    # sweep, a re-read): written only if it is still that, else stale.
    expected: Optional[Tuple[str, int]] = None
    # False for an event's copy of a subscription Stripe no longer has.
    read_from_stripe: bool = True
    # What read it, for the members' access history.
    cause: Optional[Cause] = None

    @property
    def subscription_id(self) -> str:
        return self.subscription["id"]


@dataclass
class WriteResult:
    written: List[View] = field(default_factory=list)
    # Views older than what is stored: left out.
    stale: List[View] = field(default_factory=list)


@dataclass
class _Planned:
    reading: Reading
    view: View
    # (item, condition, role): what this view writes, together.
    puts: List[Tuple[Model, Any, str]]


def holder_of(view: View, holder: Optional[SubscriptionMemberModel], now: datetime,
              read_from_stripe: bool = True) -> SubscriptionMemberModel:
    return mirror(SubscriptionMemberModel(
        view.site_id, view.subscription_id, account_id=view.account_id, user_id=view.user_id,
        member_from=view.member_from, unlinked_from=holder.unlinked_from if holder is not None else None,
        view_time=view.view_time,
        read_at=view.view_time if read_from_stripe else (holder.read_at if holder is not None else None),
        changed_at=now), standing_of_access(view.access))


def holder_unchanged(holder: Optional[SubscriptionMemberModel]):
    """The member record is as it was read (or still absent)."""
    if holder is None:
        return SubscriptionMemberModel.site_id.does_not_exist()
    return SubscriptionMemberModel.view_time == holder.view_time


def holder_key_of(holder: SubscriptionMemberModel) -> Tuple[str, str]:
    """The key of the entitlement the member record points at."""
    key = member_key(holder.site_id, holder.user_id) if holder.user_id else unmatched_key(holder.site_id)
    return key, holder.subscription_id


@dataclass
class Known:
    """What a view's writes depend on, read in one request: whose each
    subscription is on each site, the sites' records of its customer, and
    whether the event was handled already."""
    holders: Dict[Tuple[str, str], SubscriptionMemberModel]
    recorded: Dict[Tuple[str, str], str]
    holder_keys: frozenset
    customer_keys: frozenset
    event_done: bool = False

    def covers(self, readings: Sequence[Reading]) -> bool:
        return all((r.site_id, r.subscription_id) in self.holder_keys
                   and customer_key(r.site_id, r.account_id, r.subscription) in self.customer_keys | {None}
                   for r in readings)

    def read_since(self, site_ids: Sequence[str], subscription_id: str, moment: int) -> bool:
        """Whether the subscription was read from Stripe on every site at or
        after `moment` (microseconds)."""
        for site_id in site_ids:
            holder = self.holders.get((site_id, subscription_id))
            if holder is None or holder.read_at is None or holder.read_at < moment:
                return False
        return True


class ViewWriter:
    def __init__(self, connection: Optional[Connection] = None):
        # By default, where the models are bound (models.bind).
        self._connection = connection or Connection(region=EntitlementModel.Meta.region,
                                                    host=getattr(EntitlementModel.Meta, "host", None))

    @property
    def connection(self) -> Connection:
        return self._connection

    def prefetch(self, site_ids: Sequence[str], account_id: str, subscription_id: str,
                 customer_id: Optional[str], event_id: Optional[str] = None) -> Known:
        """Read, before Stripe is asked, what writing the subscription on the
        sites depends on (and the event's record): one request."""
        customer = {"id": customer_id} if customer_id else None
        readings = [Reading(site_id, account_id, {"id": subscription_id, "customer": customer}, None, 0, None)
                    for site_id in site_ids]
        return self._read(readings, event_id)

    def _read(self, readings: Sequence[Reading], event_id: Optional[str] = None) -> Known:
        holder_keys = frozenset((r.site_id, r.subscription_id) for r in readings)
        customer_keys = frozenset(key for key in (customer_key(r.site_id, r.account_id, r.subscription)
                                                  for r in readings) if key)
        wanted: Dict[Any, List[Tuple]] = {SubscriptionMemberModel: list(holder_keys),
                                          CustomerMemberModel: list(customer_keys)}
        if event_id is not None:
            wanted[WebhookEventModel] = [(event_id,)]
        found = read_many(self._connection, wanted)
        return Known(
            holders={(h.site_id, h.subscription_id): h for h in found[SubscriptionMemberModel]},
            recorded={(c.site_id, c.customer_ref): c.user_id for c in found[CustomerMemberModel]},
            holder_keys=holder_keys, customer_keys=customer_keys,
            event_done=bool(found.get(WebhookEventModel)))

    def write(self, readings: Sequence[Reading], now: datetime,
              done: Optional[WebhookEventModel] = None, known: Optional[Known] = None) -> WriteResult:
        """Write every reading that is newer than what is stored, and the
        event's record with the last transaction. Raises EventAlreadyDone
        when another delivery recorded the event first. `known`: what was
        read before Stripe was asked (prefetch), used for the first attempt."""
        result = WriteResult()
        pending = list(readings)
        # Members whose billing customer turned out to be recorded already.
        billed: set = set()
        previous: Optional[Dict[Tuple[str, str], EntitlementModel]] = None
        for _ in range(ATTEMPTS):
            if known is None or not known.covers(pending):
                known, previous = self._read(pending), None
            planned, previous = self._plan(pending, now, result, known, billed, previous)
            try:
                self._write_chunks(planned, done, result)
                return result
            except _Conflict as exc:
                result.stale.extend(exc.stale)
                billed |= exc.billed
                pending = exc.again
                if not exc.only_billing:
                    # Something else was written meanwhile: read afresh.
                    known = None
        raise SubscriptionsKeptChanging("%d subscriptions kept changing while they were written" % len(pending))

    # ------------------------------------------------------------ planning

    def _plan(self, readings: List[Reading], now: datetime, result: WriteResult, known: Known, billed: set,
              previous: Optional[Dict[Tuple[str, str], Any]]
              ) -> Tuple[List[_Planned], Dict[Tuple[str, str], Any]]:
        """Decide what each reading writes, from what was read (and, when a
        subscription changes hands, the earlier member's entitlement)."""
        views = []
        for reading in readings:
            holder = known.holders.get((reading.site_id, reading.subscription_id))
            recorded = known.recorded.get(customer_key(reading.site_id, reading.account_id, reading.subscription))
            view = self._view(reading, holder, recorded)
            if holder is not None and holder.view_time >= reading.view_time:
                result.stale.append(view)
                continue
            views.append((reading, holder, view))
        if previous is None:
            previous = self._previous_entitlements([(holder, view) for _, holder, view in views])
        planned = []
        for reading, holder, view in views:
            puts: List[Tuple[Model, Any, str]] = []
            item = entitlement_item(view, now)
            puts.append((item, newer_than_stored(view.view_time), ENTITLEMENT))
            puts.append((holder_of(view, holder, now, reading.read_from_stripe), holder_unchanged(holder), HOLDER))
            puts.extend((change, None, HISTORY) for change in changes(
                view.site_id, view.user_id, view.subscription_id, _before(holder, view, previous),
                standing_of_access(view.access), view.access.reason, reading.cause, now))
            if holder is not None:
                earlier = previous.get(holder_key_of(holder))
                if earlier is not None and earlier.member_key != item.member_key:
                    ended = ended_item(earlier, now, SUBSCRIPTION_REASSIGNED, stripe_status=view.stripe_status,
                                       view_time=view.view_time, stripe_event_id=view.stripe_event_id,
                                       ends_now=True)
                    puts.append((ended, EntitlementModel.view_time == earlier.view_time, PREVIOUS))
                    puts.extend((change, None, HISTORY) for change in changes(
                        earlier.site_id, earlier.user_id, earlier.subscription_id, standing_of(earlier),
                        standing_of(ended), ended.reason, reading.cause, now))
            # Whether the member may need this customer recorded for Billing:
            # only when the subscription is new to them. Read with the earlier
            # member's entitlement when it changed hands; else tried, and a
            # refusal (they have one) costs the transaction once more.
            record_billing = (holder is None or holder.user_id != view.user_id) \
                and (view.site_id, view.user_id) not in billed
            if record_billing and holder is not None:
                record_billing = _may_record_billing(previous.get(("billing", view.site_id, view.user_id)), view)
            puts.extend(self._records(view, record_billing, now))
            if reading.expected is not None:
                puts = _expecting(puts, reading)
            planned.append(_Planned(reading, view, puts))
        return planned, previous

    @staticmethod
    def _view(reading: Reading, holder: Optional[SubscriptionMemberModel], recorded: Optional[str]) -> View:
        member = membership(reading.subscription, holder, recorded)
        email, name = customer_email(reading.subscription)
        return View(
            site_id=reading.site_id, user_id=member.user_id, account_id=reading.account_id,
            customer_id=customer_id_of(reading.subscription), subscription_id=reading.subscription_id,
            stripe_status=str(reading.subscription.get("status")), access=reading.access,
            view_time=reading.view_time, stripe_event_id=reading.stripe_event_id, email=email, name=name,
            member_from=member.member_from, unlinked_from=holder.unlinked_from if holder is not None else None)

    def _previous_entitlements(self, views: List[Tuple[Optional[SubscriptionMemberModel], View]]
                               ) -> Dict[Tuple[str, ...], Any]:
        """The entitlements of the members the subscriptions are leaving, and
        the billing customers of those they go to: one request."""
        changed = [(holder, view) for holder, view in views if holder is not None and holder.user_id != view.user_id]
        if not changed:
            return {}
        found = read_many(self._connection, {
            # The earlier member's, to end; the new member's, if they had
            # one before (the history's `from`).
            EntitlementModel: [holder_key_of(holder) for holder, _ in changed]
            + [(member_key(view.site_id, view.user_id), view.subscription_id) for _, view in changed
               if view.user_id is not None],
            MemberCustomerModel: [(view.site_id, view.user_id) for _, view in changed
                                  if view.user_id is not None and view.member_from == METADATA]})
        known: Dict[Tuple[str, ...], Any] = {(item.member_key, item.subscription_id): item
                                             for item in found[EntitlementModel]}
        known.update({("billing", b.site_id, b.user_id): b for b in found[MemberCustomerModel]})
        return known

    @staticmethod
    def _records(view: View, record_billing: bool, now: datetime) -> List[Tuple[Model, Any, str]]:
        if view.member_from != METADATA or not view.customer_id:
            return []
        # Metadata names its customer for sure: the site records it as the
        # member's (a later naming wins).
        records: List[Tuple[Model, Any, str]] = [(customer_member(
            view.site_id, view.account_id, view.customer_id, view.user_id, METADATA, now), None, RECORD)]
        if record_billing:
            # The member's billing customer is the first recorded on the
            # account; only a guess by email gives way to one a subscription
            # names. Asked only when the subscription is new to the member: a
            # refusal (they have one) costs the transaction once more.
            records.append((MemberCustomerModel(
                view.site_id, view.user_id, account_id=view.account_id, customer_id=view.customer_id,
                source=FROM_SUBSCRIPTION, recorded_at=now),
                MemberCustomerModel.user_id.does_not_exist() | (MemberCustomerModel.account_id != view.account_id)
                | (MemberCustomerModel.source == FROM_EMAIL_LOOKUP), BILLING))
        return records

    # ------------------------------------------------------------ writing

    def _write_chunks(self, planned: List[_Planned], done: Optional[WebhookEventModel],
                      result: WriteResult) -> None:
        chunks: List[List[_Planned]] = [[]]
        for plan in planned:
            size = sum(len(p.puts) for p in chunks[-1])
            if chunks[-1] and size + len(plan.puts) + 1 > ITEMS_PER_TRANSACTION:
                chunks.append([])
            chunks[-1].append(plan)
        for index, chunk in enumerate(chunks):
            # The event's record goes with the last chunk: an earlier crash
            # leaves the event undone, and the retry writes newer views.
            last = index == len(chunks) - 1
            try:
                self._transact(chunk, done if last else None)
            except _Conflict as exc:
                exc.again.extend(plan.reading for later in chunks[index + 1:] for plan in later)
                # The later chunks were never tried: what was read for them holds.
                raise
            result.written.extend(plan.view for plan in chunk)

    def _transact(self, chunk: List[_Planned], done: Optional[WebhookEventModel]) -> None:
        if not chunk and done is None:
            return
        # DynamoDB reports a cancelled transaction's reasons in the order of
        # its items, and PynamoDB sends condition checks before puts.
        checks: List[Tuple[int, str]] = []
        saves: List[Tuple[int, str]] = []
        seen = set()
        try:
            with TransactWrite(connection=self._connection) as transaction:
                for index, plan in enumerate(chunk):
                    for item, condition, role in plan.puts:
                        # A transaction writes an item once: a record two
                        # views share (one customer's subscriptions) goes once.
                        key = _key_of(item)
                        if role in (RECORD, BILLING) and key in seen:
                            continue
                        seen.add(key)
                        if role == CHECK:
                            transaction.condition_check(type(item), getattr(item, item._hash_keyname),
                                                        getattr(item, item._range_keyname), condition=condition)
                            checks.append((index, role))
                        else:
                            transaction.save(item, condition=condition)
                            saves.append((index, role))
                if done is not None:
                    transaction.save(done, condition=WebhookEventModel.event_id.does_not_exist())
                    saves.append((-1, EVENT))
        except TransactWriteError as exc:
            roles = checks + saves
            reasons = exc.cancellation_reasons or []
            failed = [i for i, reason in enumerate(reasons)
                      if reason is not None and reason.code == "ConditionalCheckFailed"]
            if not failed or len(failed) != len([r for r in reasons if r is not None]):
                raise
            if any(roles[i][1] == EVENT for i in failed if i < len(roles)):
                raise EventAlreadyDone(done.event_id) from exc
            stale = {roles[i][0] for i in failed if i < len(roles) and roles[i][1] in (ENTITLEMENT, CHECK)}
            billed = {(chunk[roles[i][0]].view.site_id, chunk[roles[i][0]].view.user_id)
                      for i in failed if i < len(roles) and roles[i][1] == BILLING}
            for plan in (chunk[i] for i in stale):
                logger.info("A newer view of %s is stored for %s", plan.view.subscription_id, plan.view.site_id)
            only_billing = all(i < len(roles) and roles[i][1] == BILLING for i in failed)
            raise _Conflict([chunk[i].view for i in sorted(stale)],
                            [plan.reading for i, plan in enumerate(chunk) if i not in stale], billed,
                            only_billing) from exc


def end_as_stored(connection: Connection, item: EntitlementModel, now: datetime, reason: str,
                  cause: Optional[Cause]) -> bool:
    """End the entitlement as stored (the sweep trusting its date, an import
    whose subscription Stripe no longer has), with its access history and
    the member record's account of it, in one transaction; False when
    something was written since it was read."""
    ended = ended_item(item, now, reason)
    holders = read_many(connection, {SubscriptionMemberModel: [(item.site_id, item.subscription_id)]})
    holder = next(iter(holders[SubscriptionMemberModel]), None)
    try:
        with TransactWrite(connection=connection) as transaction:
            transaction.save(ended, condition=EntitlementModel.view_time == item.view_time)
            for change in changes(item.site_id, item.user_id, item.subscription_id, standing_of(item),
                                  standing_of(ended), reason, cause, now):
                transaction.save(change)
            if holder is not None and holder.user_id == item.user_id:
                transaction.update(holder, actions=mirror_actions(standing_of(ended)),
                                   condition=SubscriptionMemberModel.view_time == holder.view_time)
    except TransactWriteError as exc:
        codes = [reason.code for reason in exc.cancellation_reasons or [] if reason is not None]
        if codes and all(code == "ConditionalCheckFailed" for code in codes):
            return False
        raise
    return True


def _before(holder: Optional[SubscriptionMemberModel], view: View,
            previous: Dict[Tuple[str, ...], Any]) -> Optional[Standing]:
    """What the member's entitlement held before this view: told by the
    member record when the subscription stays theirs, else read with the
    entitlement it leaves (a member it comes back to may have one)."""
    if holder is not None and holder.user_id == view.user_id:
        return standing_of(holder)
    if view.user_id is None:
        return None
    return standing_of(previous.get((member_key(view.site_id, view.user_id), view.subscription_id)))


def _may_record_billing(billing: Optional[MemberCustomerModel], view: View) -> bool:
    """Whether the view's customer may become the member's billing customer:
    they have none on this account, or only one guessed by email."""
    return billing is None or billing.account_id != view.account_id or (
        billing.source == FROM_EMAIL_LOOKUP and billing.customer_id != view.customer_id)


def _expecting(puts: List[Tuple[Model, Any, str]], reading: Reading) -> List[Tuple[Model, Any, str]]:
    """The puts, written only if the entitlement the reader started from is
    unchanged: a write since then is newer than this reading."""
    key, view_time = reading.expected
    unchanged = EntitlementModel.view_time == view_time
    found = False
    changed = []
    for item, condition, role in puts:
        if isinstance(item, EntitlementModel) and item.member_key == key:
            condition, role, found = unchanged, ENTITLEMENT, True
        changed.append((item, condition, role))
    if not found:
        changed.append((EntitlementModel(key, reading.subscription_id), unchanged, CHECK))
    return changed


def _key_of(item: Model) -> tuple:
    return (type(item).__name__, getattr(item, item._hash_keyname),
            getattr(item, item._range_keyname) if item._range_keyname else None)


class _Conflict(Exception):
    """A transaction's conditions failed: `stale` views are older than what
    is stored; `again` are to be read and decided once more."""

    def __init__(self, stale: List[View], again: List[Reading], billed: Optional[set] = None,
                 only_billing: bool = False):
        super().__init__("%d stale, %d to try again" % (len(stale), len(again)))
        self.stale = stale
        self.again = again
        # Only a member's billing customer was there already: what was read still holds.
        self.only_billing = only_billing
        # Members who have a billing customer already: not asked again.
        self.billed = billed or set()


def with_reason(access: Access, reason: str) -> Access:
    return replace(access, reason=reason)
