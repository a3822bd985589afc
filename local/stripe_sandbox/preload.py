"""Pre-loading an account with what a business that used Stripe long before
it connected a platform would hold: many customers, most of them naming a
CustomerHub member, each with a subscription, in the statuses a real account
has.

Stripe sends a Connect platform webhooks for what happens on an account
while the platform is connected; what was there before, the platform learns
by listing it (the connector's import). So a pre-load records no events:
nothing is sent, ``/v1/events`` lists nothing of it, and a catch-up finds
nothing to replay. Everything is backdated to match (started up to a year
ago), so on an account already connected it still reads as older than the
connection, and only the platform's next import finds it. Nor is billing
history made up, but for what a status says: a past_due subscription owes
the invoice its period began with, open since then.
"""
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

from local.stripe_sandbox.subscriptions import DEFAULT_PERIOD_SECONDS

DEFAULT_PRELOAD = 2000
MAX_PRELOAD = 10000
# Reused by name when the account already has them, else made with this customerhub_product_id.
PRELOAD_PRODUCTS: Tuple[Tuple[str, str], ...] = (("Yoga", "yoga"), ("Pilates", "pilates"), ("Spin", "spin"))
# Percent of the subscriptions in each status; the rest are active.
PRELOAD_STATUS_PERCENTS: Tuple[Tuple[str, int], ...] = (("trialing", 7), ("past_due", 5), ("canceled", 3))
# Percent of the customers whose metadata names no member: the admin's unmatched list.
UNMATCHED_PERCENT = 5
PRELOAD_EMAIL = "preload-%04d@example.com"
PRELOAD_USER_ID = "user_preload_%04d"

_DAY = 24 * 3600
_TRIAL_SECONDS = 14 * _DAY
_PERIOD = DEFAULT_PERIOD_SECONDS


class Preload:
    """Many subscriptions at once, without events."""

    def preload_subscriptions(self, account_id: str, count: int = DEFAULT_PRELOAD,
                              unmatched_percent: int = UNMATCHED_PERCENT,
                              status_percents: Sequence[Tuple[str, int]] = PRELOAD_STATUS_PERCENTS,
                              products: Sequence[Tuple[str, str]] = PRELOAD_PRODUCTS) -> Dict[str, Any]:
        """`count` new customers on the account (``preload-0001@example.com``
        on, numbered after any earlier pre-load), each with one monthly
        subscription to one of `products` (name, customerhub_product_id),
        taken in turn. Exactly `unmatched_percent` of the customers (rounded
        down) name nobody; the others name ``user_preload_0001`` on in
        ``metadata.customerhub_user_id``. Statuses in the given percents
        (rounded down), the rest active, shuffled the same way every time.
        Active and past_due ones started 31 to 365 days ago and are in their
        current period; trialing ones are in a 14-day trial that began in the
        last 13 days; canceled ones ended at a period's end in the past.
        A past_due one holds its period's unpaid invoice, made as the period
        began. Records no event and no other invoice (see the module's
        docstring).
        Returns what was made: counts by status, how many name nobody, the
        product ids and the customers' numbers."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PRELOAD:
            raise ValueError("count must be a whole number from 1 to %d" % MAX_PRELOAD)
        with self._lock:
            self._account_or_raise(account_id)
            earlier = self._preloads.get(account_id, [])
            first = 1 + sum(p["subscriptions"] for p in earlier)
            product_ids = [self._preload_product(account_id, name, metadata_id) for name, metadata_id in products]
            rng = random.Random("%s:%d" % (account_id, first))
            statuses = _statuses(count, status_percents)
            rng.shuffle(statuses)
            unmatched = set(rng.sample(range(count), count * unmatched_percent // 100))
            now = int(self.now())
            for index in range(count):
                number = first + index
                status = statuses[index]
                created, start, end = _dates(status, now, rng)
                metadata = {} if index in unmatched else {"customerhub_user_id": PRELOAD_USER_ID % number}
                customer = self.create_customer(account_id, email=PRELOAD_EMAIL % number, metadata=metadata,
                                                name="Pre-loaded customer %d" % number)
                self._customers[account_id][customer["id"]]["created"] = created
                subscription = self._add_subscription(account_id, customer["id"],
                                                      [product_ids[index % len(product_ids)]], status,
                                                      period_start=start, period_end=end, created=created)
                subscription["billing_cycle_anchor"] = created
                subscription["start_date"] = created
                if status == "canceled":
                    subscription["canceled_at"] = subscription["ended_at"] = end
                elif status == "past_due":
                    owed = self._bill_subscription(account_id, subscription, "subscription_cycle", paid=False)
                    self.backdate_invoice(account_id, owed["id"], start)
            summary = {
                "account": account_id,
                "subscriptions": count,
                "statuses": {s: statuses.count(s) for s in ["active", *(s for s, _ in status_percents)]},
                "unmatched": len(unmatched),
                "products": product_ids,
                "numbers": [first, first + count - 1],
                "events": 0,
            }
            self._preloads.setdefault(account_id, []).append(summary)
            return dict(summary)

    def preloads(self, account_id: str) -> List[Dict[str, Any]]:
        """What each pre-load on the account made, oldest first."""
        with self._lock:
            return [dict(p) for p in self._preloads.get(account_id, [])]

    def _preload_product(self, account_id: str, name: str, metadata_id: str) -> str:
        for product in self._products.get(account_id, {}).values():
            if product["name"] == name:
                return product["id"]
        return self.create_product(account_id, name=name, metadata={"customerhub_product_id": metadata_id})["id"]


def _statuses(count: int, percents: Sequence[Tuple[str, int]]) -> List[str]:
    statuses: List[str] = []
    for status, percent in percents:
        statuses += [status] * (count * percent // 100)
    return statuses + ["active"] * (count - len(statuses))


def _dates(status: str, now: int, rng: random.Random) -> Tuple[int, int, int]:
    """When a pre-loaded subscription was created, and its current (for a
    canceled one, its last) period's start and end."""
    if status == "trialing":
        created = now - rng.randint(0, _TRIAL_SECONDS - _DAY)
        return created, created, created + _TRIAL_SECONDS
    created = now - rng.randint(31 * _DAY, 365 * _DAY)
    periods = (now - created) // _PERIOD
    if status == "canceled":
        periods = rng.randint(1, periods)
        return created, created + (periods - 1) * _PERIOD, created + periods * _PERIOD
    start = created + periods * _PERIOD
    return created, start, start + _PERIOD


def preload_notice(summary: Optional[Dict[str, Any]]) -> str:
    """A pre-load's counts in words: 2,000 subscriptions (1,700 active, ...); 100 customers name no member."""
    if not summary:
        return ""
    statuses = ", ".join("{:,} {}".format(n, s) for s, n in summary["statuses"].items() if n)
    unmatched = summary["unmatched"]
    return "{:,} subscription{} ({}); {:,} customer{} no member".format(
        summary["subscriptions"], "" if summary["subscriptions"] == 1 else "s", statuses, unmatched,
        " names" if unmatched == 1 else "s name")
