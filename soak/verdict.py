"""What the soak holds the connector to, as pure functions of what it saw:
the sandbox's final subscriptions, the API's answers, the entitlements
table's stream and the announcements read back from EventBridge.

Every pair below is (site, member, CustomerHub product).

- **Mismatch**: a pair where the API's `GET /access/{user_id}` and the access
  rules applied to Stripe's final subscriptions disagree on `access`, or,
  where both grant, on `access_until` or `state`.
- **Flip**: a change of whether the stored entitlements grant the pair. The
  entitlements table's stream is replayed in order from empty; after each
  write, a pair is granted when any of the member's stored entitlements has
  `grants` set and lists the product. Each write that turns that on or off is
  one flip. An access whose period passed is not a flip until a write (the
  sweep's) says so, which is also when the contract has it announced.
- **Notification**: an AccessGranted or AccessRevoked, counted once per
  `change_id`. Per pair they must alternate from AccessGranted, the last one
  must agree with the final access, and their number must equal the flips.
"""
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from chalicelib.access import access_of, user_of

GRANTED = "AccessGranted"
REVOKED = "AccessRevoked"

Pair = Tuple[str, str, str]


@dataclass(frozen=True)
class Holding:
    """A member's access to one product."""
    access: bool
    access_until: Optional[datetime] = None
    state: Optional[str] = None


NO_ACCESS = Holding(False)


@dataclass(frozen=True)
class Mismatch:
    pair: Pair
    expected: Holding
    observed: Holding

    def __str__(self) -> str:
        return "%s/%s %s: the rules say %s, the API says %s" % (
            self.pair[0], self.pair[1], self.pair[2], _shown(self.expected), _shown(self.observed))


def expected_holdings(site_id: str, subscriptions: Iterable[Dict[str, Any]],
                      now: datetime) -> Dict[Pair, Holding]:
    """What the access rules grant each member now, from subscriptions as
    Stripe has them (customer and products expanded). Where several
    subscriptions hold a product, the one granting longest stands, as in
    GET /access."""
    found: Dict[Pair, Holding] = {}
    for subscription in subscriptions:
        user_id = user_of(subscription)
        if user_id is None:
            continue
        access = access_of(subscription, now)
        for product in access.products:
            pair = (site_id, user_id, product.product_id)
            holding = Holding(True, access.access_until, access.state) if access.grants else NO_ACCESS
            if _ranks_above(holding, found.get(pair)):
                found[pair] = holding
    return found


def observed_holdings(site_id: str, user_id: str, answer: Dict[str, Any]) -> Dict[Pair, Holding]:
    """The holdings in a GET /access answer."""
    found = {}
    for entry in answer.get("entitlements") or []:
        pair = (site_id, user_id, entry["product_id"])
        if entry.get("access"):
            found[pair] = Holding(True, parse_time(entry.get("access_until")), entry.get("state"))
        else:
            found[pair] = NO_ACCESS
    return found


def mismatches(expected: Dict[Pair, Holding], observed: Dict[Pair, Holding]) -> List[Mismatch]:
    found = []
    for pair in sorted(set(expected) | set(observed)):
        want = expected.get(pair, NO_ACCESS)
        got = observed.get(pair, NO_ACCESS)
        if want.access != got.access or (want.access and (want.access_until, want.state)
                                         != (got.access_until, got.state)):
            found.append(Mismatch(pair, want, got))
    return found


def flips_of(images: Iterable[Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]]) -> Dict[Pair, int]:
    """Flips per pair from the entitlements' stream, in order: (old image,
    new image) per write, as plain dicts (a missing new image is a delete)."""
    granted: Dict[Tuple[str, str], Dict[str, frozenset]] = {}
    flips: Dict[Pair, int] = {}
    for old, new in images:
        image = new or old
        if image is None:
            continue
        member = (image["site_id"], image["user_id"])
        held = granted.setdefault(member, {})
        before = _union(held.values())
        held[image["subscription_id"]] = _granted_products(new)
        after = _union(held.values())
        for product_id in before ^ after:
            pair = (member[0], member[1], product_id)
            flips[pair] = flips.get(pair, 0) + 1
    return flips


@dataclass
class Announcements:
    """Announcements per pair, in the order they arrived, once per change_id."""
    by_pair: Dict[Pair, List[Dict[str, Any]]] = field(default_factory=dict)
    received: int = 0
    repeats: int = 0

    @property
    def notifications(self) -> int:
        return sum(len(seen) for seen in self.by_pair.values())


def announcements_of(messages: Iterable[Dict[str, Any]]) -> Announcements:
    """`messages` are {"type": detail-type, **detail}, in arrival order."""
    result = Announcements()
    seen = set()
    for message in messages:
        result.received += 1
        if message["change_id"] in seen:
            result.repeats += 1
            continue
        seen.add(message["change_id"])
        pair = (message["site_id"], message["user_id"], message["product_id"])
        result.by_pair.setdefault(pair, []).append(message)
    return result


def sequence_errors(announcements: Announcements, expected: Dict[Pair, Holding]) -> List[str]:
    """Pairs whose announcements do not alternate from AccessGranted, or whose
    last one disagrees with the final access."""
    errors = []
    for pair in sorted(set(announcements.by_pair) | {p for p, h in expected.items() if h.access}):
        kinds = [m["type"] for m in announcements.by_pair.get(pair, [])]
        wanted = [GRANTED if i % 2 == 0 else REVOKED for i in range(len(kinds))]
        final = expected.get(pair, NO_ACCESS).access
        if kinds != wanted:
            errors.append("%s/%s %s: heard %s" % (pair[0], pair[1], pair[2], _kinds(kinds)))
        elif (kinds[-1] == GRANTED if kinds else False) != final:
            errors.append("%s/%s %s: heard %s, but access is now %s" % (
                pair[0], pair[1], pair[2], _kinds(kinds), "granted" if final else "not granted"))
    return errors


def count_differences(notifications: Dict[Pair, int], flips: Dict[Pair, int]) -> List[str]:
    return ["%s/%s %s: %d notifications, %d flips" % (pair + (notifications.get(pair, 0), flips.get(pair, 0)))
            for pair in sorted(set(notifications) | set(flips))
            if notifications.get(pair, 0) != flips.get(pair, 0)]


def history_of(images: Sequence[Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]],
               pair: Pair) -> List[str]:
    """The stored writes behind a pair, for a person to read: each write of
    the member's entitlements that lists the product before or after."""
    lines = []
    for index, (old, new) in enumerate(images):
        image = new or old
        if image is None or (image["site_id"], image["user_id"]) != pair[:2]:
            continue
        if not any(pair[2] in [p["product_id"] for p in (i or {}).get("products") or []] for i in (old, new)):
            continue
        lines.append("write %d: %s %s -> %s (view %s, event %s)" % (
            index, image["subscription_id"], _grant_of(old, pair[2]), _grant_of(new, pair[2]),
            (new or {}).get("view_time"), (new or {}).get("stripe_event_id")))
    return lines


def parse_time(value: Optional[str]) -> Optional[datetime]:
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _ranks_above(holding: Holding, current: Optional[Holding]) -> bool:
    if current is None:
        return True
    if holding.access != current.access:
        return holding.access
    return holding.access and _until(holding) > _until(current)


def _until(holding: Holding) -> float:
    return float("inf") if holding.access_until is None else holding.access_until.timestamp()


def _granted_products(image: Optional[Dict[str, Any]]) -> frozenset:
    if not image or not image.get("grants"):
        return frozenset()
    return frozenset(p["product_id"] for p in image.get("products") or [])


def _grant_of(image: Optional[Dict[str, Any]], product_id: str) -> str:
    if image is None:
        return "none"
    listed = product_id in [p["product_id"] for p in image.get("products") or []]
    return "%s/%s%s" % (image.get("stripe_status"), image.get("state"),
                        " grants" if image.get("grants") and listed else "" if listed else " (not listed)")


def _union(sets: Iterable[frozenset]) -> frozenset:
    return frozenset().union(*sets)


def _kinds(kinds: Sequence[str]) -> str:
    return ", ".join(k.replace("Access", "") for k in kinds) or "nothing"


def _shown(holding: Holding) -> str:
    if not holding.access:
        return "no access"
    until = holding.access_until.strftime("%Y-%m-%dT%H:%M:%SZ") if holding.access_until else "-"
    return "%s until %s" % (holding.state, until)
