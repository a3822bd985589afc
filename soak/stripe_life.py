"""What happens at Stripe during the soak: a studio's products, its members
as customers, their subscriptions and what becomes of them.

Every step is one call on the sandbox that records exactly one event, so the
soak's delivery counts follow from the steps. The steps are drawn from a
seeded random generator and applied in order by one thread; the soak's
senders deliver the events meanwhile, so Stripe keeps changing while the
connector reads it.

A member never holds one product through two subscriptions: each product is
on at most one of the member's subscriptions, ever. A product held twice is a
case of its own: the connector then announces a second AccessGranted while
the first subscription still grants it (chalicelib/announcements.py says
why), so announcements per member and product no longer alternate, and the
counts here would not tell that apart from a fault."""
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set

from local.stripe_sandbox import StripeSandbox

DAY = 24 * 3600
MONTH = 30 * DAY
# Seconds a short period lasts: over before the sweep that ends it.
SHORT_PERIOD = (20, 30)
PRODUCTS = (("Yoga", "yoga"), ("Pilates", "pilates"), ("Spin", "spin"), ("Swim", "swim"),
            ("Boxing", "boxing"), ("Climbing", None))
# Members whose customer names nobody: their subscriptions name them instead.
NAMED_ON_SUBSCRIPTION = 0.05
# Phase 2 subscriptions changed twice, the second time while Stripe's answer
# to a read made after the first is still on its way.
LATE_ANSWERS = 30


@dataclass
class Member:
    user_id: str
    customer_id: str
    named_on_customer: bool
    used: Set[str] = field(default_factory=set)


@dataclass
class Step:
    what: str
    run: Callable[[], Any]
    # A change Stripe makes while its answer to the next read of this
    # subscription is on its way (see Feed).
    meanwhile: Optional["Step"] = None
    subscription_id: Optional[str] = None


@dataclass
class Subscribed:
    subscription_id: str
    member: Member
    kind: str  # short_cancel, short_plain or long


class StripeLife:
    def __init__(self, sandbox: StripeSandbox, account_id: str, rng: random.Random):
        self.sandbox = sandbox
        self.account_id = account_id
        self.rng = rng
        self.products: List[str] = []
        self.members: List[Member] = []
        self.subscriptions: Dict[str, Subscribed] = {}
        self.short_ends_at = 0
        self.skipped: List[str] = []

    def open_shop(self, members: int) -> None:
        for name, metadata_id in PRODUCTS:
            product = self.sandbox.create_product(
                self.account_id, name=name,
                metadata={"customerhub_product_id": metadata_id} if metadata_id else None)
            self.products.append(product["id"])
        for index in range(members):
            user_id = "soak_member_%03d" % index
            on_customer = self.rng.random() >= NAMED_ON_SUBSCRIPTION
            customer = self.sandbox.create_customer(
                self.account_id, email="%s@localfitness.test" % user_id, name="Member %d" % index,
                metadata={"customerhub_user_id": user_id} if on_customer else None)
            self.members.append(Member(user_id, customer["id"], on_customer))

    def apply(self, step: Step) -> bool:
        try:
            step.run()
            return True
        except ValueError as exc:
            self.skipped.append("%s: %s" % (step.what, exc))
            return False

    # ----------------------------------------------------------- phase 1

    def phase_one(self, count: int) -> List[Step]:
        """`count` new subscriptions, the short ones first (their clock runs
        from the start), and changes to some of the long ones after their
        creation."""
        kinds = ["short_cancel"] * 90 + ["short_plain"] * 50
        long_statuses = ["trialing"] * 20 + ["incomplete"] * 20 + ["past_due"] * 20
        long_statuses += ["active"] * (count - len(kinds) - len(long_statuses))
        self.rng.shuffle(long_statuses)
        owners = self._owners(count)
        placed: List[tuple] = []
        for index, member in enumerate(owners):
            kind = kinds[index] if index < len(kinds) else "long"
            status = "active" if kind != "long" else long_statuses[index - len(kinds)]
            products = self._free(member, 2 if self.rng.random() < 0.2 else 1)
            subscription_id = "sub_soak%05d" % index
            self.subscriptions[subscription_id] = Subscribed(subscription_id, member, kind)
            placed.append((float(index), self._create(subscription_id, member, products, kind, status)))
            if kind == "long":
                for offset, step in self._first_changes(subscription_id, status):
                    placed.append((index + offset, step))
        placed.sort(key=lambda pair: pair[0])
        return [step for _, step in placed]

    def _owners(self, count: int) -> List[Member]:
        """Every member once, then members drawn at random, three
        subscriptions each at most (there are six products)."""
        owners = list(self.members)[:count]
        held = Counter(owner.user_id for owner in owners)
        while len(owners) < count:
            member = self.rng.choice(self.members)
            if held[member.user_id] < 3:
                held[member.user_id] += 1
                owners.append(member)
        self.rng.shuffle(owners)
        return owners

    def _free(self, member: Member, wanted: int) -> List[str]:
        free = [p for p in self.products if p not in member.used]
        chosen = self.rng.sample(free, min(wanted, len(free)))
        member.used.update(chosen)
        return chosen

    def _create(self, subscription_id: str, member: Member, products: List[str], kind: str, status: str) -> Step:
        def run() -> None:
            now = int(self.sandbox.clock())
            if kind == "long":
                end = now + MONTH
            else:
                end = now + self.rng.randint(*SHORT_PERIOD)
                self.short_ends_at = max(self.short_ends_at, end)
            self.sandbox.create_subscription(
                self.account_id, member.customer_id, products, status=status, period_start=now, period_end=end,
                cancel_at_period_end=kind == "short_cancel", id=subscription_id,
                metadata=None if member.named_on_customer else {"customerhub_user_id": member.user_id})
        return Step("create %s (%s, %s)" % (subscription_id, kind, status), run)

    def _first_changes(self, subscription_id: str, status: str) -> List[tuple]:
        later = self.rng.uniform(1, 300)
        if status == "incomplete":
            return [(later, self._status(subscription_id, "active"))] if self.rng.random() < 0.75 else []
        if status != "active":
            return []
        draw = self.rng.random()
        if draw < 0.10:
            return [(later, self._status(subscription_id, "past_due"))]
        if draw < 0.16:
            return [(later, self._status(subscription_id, "past_due")),
                    (later + self.rng.uniform(1, 60), self._status(subscription_id, "unpaid"))]
        if draw < 0.26:
            return [(later, self._cancel(subscription_id))]
        if draw < 0.34:
            return [(later, self._status(subscription_id, "paused"))]
        if draw < 0.44:
            return [(later, self._items(subscription_id))]
        if draw < 0.52:
            return [(later, self._renew(subscription_id))]
        if draw < 0.60:
            return [(later, self._cancel_at_period_end(subscription_id, True))]
        if draw < 0.63:
            return [(later, self._cancel_at(subscription_id, 10 * DAY))]
        return []

    # ----------------------------------------------------------- phase 2

    def phase_two(self) -> List[Step]:
        """More changes on the same subscriptions, as they stand now: Stripe
        ending the short periods (a renewal, or the cancellation that was
        asked for), failed and recovered payments, pauses, undone
        cancellations, product changes."""
        placed: List[tuple] = []
        unchanged = []
        for subscription in self.sandbox.subscriptions(self.account_id):
            subscription_id = subscription["id"]
            if subscription_id not in self.subscriptions:
                continue
            kind = self.subscriptions[subscription_id].kind
            steps = self._next_changes(subscription, kind)
            placed.extend(steps)
            if not steps and kind == "long" and subscription["status"] == "active" and not (
                    subscription["cancel_at_period_end"] or subscription["cancel_at"] is not None):
                unchanged.append(subscription_id)
        for index, subscription_id in enumerate(self.rng.sample(unchanged, min(LATE_ANSWERS, len(unchanged)))):
            placed.append((self.rng.uniform(0, 1000), self._late_answer(subscription_id, index % 3)))
        placed.sort(key=lambda pair: pair[0])
        return [step for _, step in placed]

    def _late_answer(self, subscription_id: str, variant: int) -> Step:
        first, then = (
            (self._cancel_at_period_end(subscription_id, True), self._cancel(subscription_id)),
            (self._status(subscription_id, "past_due"), self._status(subscription_id, "unpaid")),
            (self._status(subscription_id, "paused"), self._status(subscription_id, "active")),
        )[variant]
        return Step(first.what, first.run, meanwhile=then, subscription_id=subscription_id)

    def _next_changes(self, subscription: Dict[str, Any], kind: str) -> List[tuple]:
        subscription_id = subscription["id"]
        status = subscription["status"]
        at = self.rng.uniform(0, 1000)
        draw = self.rng.random()
        canceling = subscription["cancel_at_period_end"] or subscription["cancel_at"] is not None
        if status in ("canceled", "incomplete_expired"):
            return []
        if kind == "short_cancel":
            # Its period is over: Stripe cancels it, as was asked.
            return [(at, self._renew(subscription_id, from_now=True))]
        if kind == "short_plain":
            if draw < 0.5:
                return [(at, self._renew(subscription_id, from_now=True))]
            return [(at, self._status(subscription_id, "unpaid") if draw < 0.75 else self._cancel(subscription_id))]
        if status == "paused":
            return [(at, self._status(subscription_id, "active"))] if draw < 0.6 else []
        if status == "past_due":
            if draw < 0.5:
                return [(at, self._renew(subscription_id))]
            if draw < 0.7:
                return [(at, self._cancel(subscription_id))]
            return [(at, self._status(subscription_id, "unpaid"))] if draw < 0.85 else []
        if status == "unpaid":
            return [(at, self._cancel(subscription_id))] if draw < 0.4 else []
        if status == "trialing":
            return [(at, self._status(subscription_id, "active"))] if draw < 0.5 else []
        if status == "incomplete":
            return [(at, self._status(subscription_id, "incomplete_expired" if draw < 0.5 else "active"))]
        if canceling:
            if draw < 0.5:
                return [(at, self._undo_cancel(subscription_id))]
            return [(at, self._cancel(subscription_id))] if draw < 0.6 else []
        # Active, not canceling.
        then = at + self.rng.uniform(1, 40)
        for share, steps in ((0.12, [self._items(subscription_id)]),
                             (0.07, [self._status(subscription_id, "past_due")]),
                             (0.05, [self._status(subscription_id, "paused")]),
                             (0.07, [self._cancel(subscription_id)]),
                             (0.06, [self._cancel_at_period_end(subscription_id, True)]),
                             (0.05, [self._renew(subscription_id)]),
                             (0.04, [self._status(subscription_id, "paused"), self._status(subscription_id, "active")]),
                             (0.04, [self._status(subscription_id, "past_due"), self._renew(subscription_id)]),
                             (0.03, [self._items(subscription_id), self._cancel(subscription_id)])):
            if draw < share:
                return [(at, steps[0])] + [(then + i, step) for i, step in enumerate(steps[1:])]
            draw -= share
        return []

    # ----------------------------------------------------------- the steps

    def _status(self, subscription_id: str, status: str) -> Step:
        return Step("%s -> %s" % (subscription_id, status), lambda: self.sandbox.update_subscription(
            self.account_id, subscription_id, status=status))

    def _cancel(self, subscription_id: str) -> Step:
        return Step("%s canceled" % subscription_id,
                    lambda: self.sandbox.cancel_subscription(self.account_id, subscription_id))

    def _cancel_at_period_end(self, subscription_id: str, value: bool) -> Step:
        return Step("%s cancel_at_period_end=%s" % (subscription_id, value), lambda: self.sandbox.update_subscription(
            self.account_id, subscription_id, cancel_at_period_end=value))

    def _undo_cancel(self, subscription_id: str) -> Step:
        return Step("%s cancellation undone" % subscription_id, lambda: self.sandbox.update_subscription(
            self.account_id, subscription_id, cancel_at_period_end=False, cancel_at=None))

    def _cancel_at(self, subscription_id: str, seconds: int) -> Step:
        return Step("%s cancel_at +%ds" % (subscription_id, seconds), lambda: self.sandbox.update_subscription(
            self.account_id, subscription_id, cancel_at=int(self.sandbox.clock()) + seconds))

    def _renew(self, subscription_id: str, from_now: bool = False) -> Step:
        def run() -> None:
            current = self.sandbox.subscription(self.account_id, subscription_id)
            ends = max(item["current_period_end"] for item in current["items"]["data"])
            start = max(ends, int(self.sandbox.clock())) if from_now else ends
            self.sandbox.renew_subscription(self.account_id, subscription_id, period_end=start + MONTH)
        return Step("%s renewed" % subscription_id, run)

    def _items(self, subscription_id: str) -> Step:
        """Add a product, swap one for another, or drop one of two."""
        def run() -> None:
            member = self.subscriptions[subscription_id].member
            current = self.sandbox.subscription(self.account_id, subscription_id)
            products = [item["price"]["product"] for item in current["items"]["data"]]
            draw = self.rng.random()
            if len(products) > 1 and draw < 0.4:
                products.remove(self.rng.choice(products))
            else:
                added = self._free(member, 1)
                if not added:
                    raise ValueError("%s has no product left to add" % member.user_id)
                if draw < 0.7:
                    products.remove(self.rng.choice(products))
                products += added
            self.sandbox.update_subscription(self.account_id, subscription_id, products=products)
        return Step("%s items changed" % subscription_id, run)

