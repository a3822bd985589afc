"""What CustomerHub hears: AccessGranted / AccessRevoked on EventBridge,
made from the entitlements table's stream.

The stream is the outbox: every write that changes what an entitlement grants
appears on it with its old and new image, and the stream's consumer retries
until the announcement is out. A write that changes nothing announces
nothing, so a duplicate delivery sends nothing; a retry after a crash sends
the same change with the same `change_id` (made from the write, not from
the attempt)."""
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from chalicelib import observability
from chalicelib.access import PRODUCT_REMOVED, SUBSCRIPTION_ACTIVE, is_readable
from chalicelib.clock import Clock, iso, utc_now
from chalicelib.entitlements import EntitlementStore
from chalicelib.errors import ConnectorError
from chalicelib.models import EntitlementModel
from chalicelib.observability import Metrics

logger = logging.getLogger(__name__)

SOURCE = "customerhub.stripe-connector"
GRANTED = "AccessGranted"
REVOKED = "AccessRevoked"
ANNOUNCED_METRICS = {GRANTED: observability.ACCESS_GRANTED, REVOKED: observability.ACCESS_REVOKED}
# EventBridge takes at most 10 entries per PutEvents.
ENTRIES_PER_PUT = 10
CHANGE_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4c41-9a51-3f1f6d1f2b7e")


class AnnouncementFailed(ConnectorError):
    """EventBridge did not take every entry; the batch is retried."""

    def __init__(self, message: str, sent: int):
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True)
class Announcement:
    detail_type: str
    detail: Dict[str, Any]


class AccessEventBus:
    """The EventBridge bus CustomerHub listens on."""

    def __init__(self, client: Any, bus_name: str):
        self._client = client
        self._bus_name = bus_name

    def publish(self, announcements: Sequence[Announcement]) -> None:
        """Put every announcement, in order, ten to a call. On a failure,
        AnnouncementFailed says how many went out in the calls before."""
        for start in range(0, len(announcements), ENTRIES_PER_PUT):
            batch = announcements[start:start + ENTRIES_PER_PUT]
            try:
                answer = self._client.put_events(Entries=[{
                    "Source": SOURCE,
                    "DetailType": a.detail_type,
                    "Detail": json.dumps(a.detail, sort_keys=True),
                    "EventBusName": self._bus_name,
                } for a in batch])
            except Exception as exc:
                raise AnnouncementFailed("EventBridge did not take the entries: %s" % exc,
                                         sent=start) from exc
            if answer.get("FailedEntryCount"):
                # Entries that went out will go again on the retry, with the
                # same change_id: consumers drop the repeats.
                codes = sorted({e.get("ErrorCode") for e in answer["Entries"] if e.get("ErrorCode")})
                raise AnnouncementFailed("EventBridge refused %d of %d entries (%s)"
                                         % (answer["FailedEntryCount"], len(batch), ", ".join(codes)),
                                         sent=start)


def changes_between(old: Optional[EntitlementModel], new: Optional[EntitlementModel]) -> List[Announcement]:
    """The announcements one write makes: a product whose access began or
    ended. A change of access_until alone is not announced."""
    if new is None or new.user_id is None:
        # An unmatched subscription grants no one anything to announce.
        return []
    before = _granted_products(old)
    after = _granted_products(new)
    found = []
    for product_id in sorted(set(after) - set(before)):
        found.append(_announcement(GRANTED, new, product_id, SUBSCRIPTION_ACTIVE, iso(new.access_until)))
    for product_id in sorted(set(before) - set(after)):
        if new.grants:
            reason, ended = PRODUCT_REMOVED, new.changed_at
        else:
            reason, ended = new.reason, new.access_until or new.changed_at
        found.append(_announcement(REVOKED, new, product_id, reason, iso(ended)))
    return found


def _granted_products(item: Optional[EntitlementModel]) -> Dict[str, Any]:
    if item is None or not item.grants:
        return {}
    return {p.product_id: p for p in item.products}


def _announcement(kind: str, item: EntitlementModel, product_id: str, reason: str,
                  access_until: Optional[str]) -> Announcement:
    change = "|".join((item.member_key, item.subscription_id, product_id, kind, str(item.view_time)))
    return Announcement(kind, {
        "change_id": str(uuid.uuid5(CHANGE_NAMESPACE, change)),
        "site_id": item.site_id,
        "user_id": item.user_id,
        "product_id": product_id,
        "subscription_id": item.subscription_id,
        "access_until": access_until,
        "reason": reason,
        "stripe_event_id": item.stripe_event_id,
    })


class Announcer:
    def __init__(self, bus: AccessEventBus, entitlements: EntitlementStore, clock: Clock = utc_now,
                 metrics: Optional[Metrics] = None):
        self._metrics = metrics or Metrics()
        self._bus = bus
        self._entitlements = entitlements
        self._clock = clock

    def handle_stream(self, records: Iterable[Dict[str, Any]]) -> Dict[str, List[Dict[str, str]]]:
        """Announce the changes of a batch of stream records, in order, ten
        to an EventBridge call. The first record that fails is reported with
        everything after it, so the stream delivers them again in order."""
        records = list(records)
        pending: List[Tuple[int, Announcement]] = []
        failed_at = len(records)
        for index, record in enumerate(records):
            try:
                pending.extend((index, a) for a in self.changes_of(record))
            except Exception:
                logger.exception("Reading stream record %s failed", _sequence(record))
                failed_at = index
                break
        try:
            self._bus.publish([a for _, a in pending])
        except AnnouncementFailed as exc:
            logger.exception("Announcing stream records failed")
            failed_at = min(failed_at, pending[exc.sent][0])
            pending = pending[:exc.sent]
        for _, a in pending:
            observability.bind(site_id=a.detail["site_id"], user_id=a.detail["user_id"])
            logger.info("%s %s: %s/%s product %s (%s)", a.detail_type, a.detail["change_id"],
                        a.detail["site_id"], a.detail["user_id"], a.detail["product_id"], a.detail["reason"])
            self._metrics.count(ANNOUNCED_METRICS[a.detail_type])
        observability.unbind("site_id", "user_id")
        return {"batchItemFailures": [{"itemIdentifier": _sequence(r)} for r in records[failed_at:]]}

    def changes_of(self, record: Dict[str, Any]) -> List[Announcement]:
        images = record.get("dynamodb") or {}
        old = _image(images.get("OldImage"))
        new = _image(images.get("NewImage"))
        announcements = changes_between(old, new)
        if not announcements:
            return []
        return self._without_other_subscriptions(new, announcements)

    def _without_other_subscriptions(self, new: EntitlementModel,
                                     announcements: List[Announcement]) -> List[Announcement]:
        # A member may hold a product through two subscriptions: while the
        # other one grants it, this one ending must not take it away. (A
        # second grant is announced: it is harmless, and skipping it could
        # skip the only one when stream records are handled late.)
        if all(a.detail_type == GRANTED for a in announcements):
            return announcements
        now = self._clock()
        held_elsewhere = set()
        for item in self._entitlements.of_member(new.site_id, new.user_id):
            if item.subscription_id != new.subscription_id and is_readable(item.access_until, item.grants, now):
                held_elsewhere.update(p.product_id for p in item.products)
        return [a for a in announcements
                if a.detail_type == GRANTED or a.detail["product_id"] not in held_elsewhere]


def _image(raw: Optional[Dict[str, Any]]) -> Optional[EntitlementModel]:
    if not raw:
        return None
    return EntitlementModel.from_raw_data(raw)


def _sequence(record: Dict[str, Any]) -> str:
    return str((record.get("dynamodb") or {}).get("SequenceNumber", ""))

