"""A subscription's life as Stripe sends it (created, set to cancel at the
period end, the cancellation undone, renewed, past_due, deleted), delivered in
order, twice, shuffled, days late and with crashes in between: the member ends
with the same entitlements and CustomerHub hears the same changes every time.

The pipeline reads the subscription from Stripe again for every event, so a
delivery sees Stripe's state at the moment it arrives. Where a variant
delivers each event right after its step happened, the announcements it makes
are compared with the in-order life; where the events arrive after the whole
life, only the final entitlements and the consistency of what was announced
can be compared."""
import random
import time

import boto3
import botocore.config
import pytest

from app import announce_access
from chalicelib.models import EntitlementModel, MemberCustomerModel, WebhookEventModel
from chalicelib.settings import get_settings
from local.streams import StreamPump
from tests.api.test_connect_lifecycle import ADMIN, connect
from tests.helpers import QUEUED_EVENTS, bearer, deliver, stripe_event

ACCOUNT = "acct_studio"
SUBSCRIPTION = "sub_life"
USER = "user_ana"
DAY = 24 * 3600
GRANTED, REVOKED = "AccessGranted", "AccessRevoked"

# The life, in Stripe's order, and the event each step makes.
STEPS = ("created", "canceling", "uncanceled", "renewed", "past_due", "deleted")
EVENT_TYPES = {
    "created": "customer.subscription.created",
    "canceling": "customer.subscription.updated",
    "uncanceled": "customer.subscription.updated",
    "renewed": "customer.subscription.updated",
    "past_due": "customer.subscription.updated",
    "deleted": "customer.subscription.deleted",
}
# (CustomerHub product id, Stripe product id): Yoga names itself in its
# metadata, Pilates does not and is known by its Stripe id.
LIFE_PRODUCTS = (("prod_pilates", "prod_pilates"), ("yoga", "prod_yoga"))


@pytest.fixture
def t0(sandbox, monkeypatch):
    """Stripe's clock, held still: the events' `created` and the moment of
    cancellation are known to the second."""
    now = int(time.time())
    monkeypatch.setattr(sandbox, "clock", lambda: now)
    return now


@pytest.fixture
def studio(client, sandbox, t0):
    sandbox.create_account(id=ACCOUNT, display_name="Studio")
    connect(client, sandbox, ACCOUNT)
    sandbox.create_product(ACCOUNT, name="Yoga", id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
    sandbox.create_product(ACCOUNT, name="Pilates", id="prod_pilates")
    sandbox.create_customer(ACCOUNT, email="ana@studio.test", id="cus_ana",
                            metadata={"customerhub_user_id": USER})
    return sandbox


def add_member(sandbox, name: str) -> str:
    """Another member of the site with a customer on the account naming them."""
    user = "user_" + name
    sandbox.create_customer(ACCOUNT, email=name + "@studio.test", id="cus_" + name,
                            metadata={"customerhub_user_id": user})
    return user


def at(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


class Life:
    """One subscription going through STEPS in the sandbox, each step
    recording the one event Stripe makes for it."""

    def __init__(self, sandbox, t0, subscription_id=SUBSCRIPTION, products=LIFE_PRODUCTS, metadata=None,
                 user=USER):
        self.sandbox = sandbox
        self.user = user
        self.customer = "cus_" + user[len("user_"):]
        self.subscription_id = subscription_id
        self.products = products
        self.metadata = metadata
        self.first_end = t0 + 30 * DAY
        self.second_end = t0 + 60 * DAY
        self.ended_at = t0
        self.events = {}

    def live(self, step: str) -> dict:
        sandbox, sub = self.sandbox, self.subscription_id
        before = len(sandbox.events)
        if step == "created":
            sandbox.create_subscription(ACCOUNT, self.customer, [stripe_id for _, stripe_id in self.products],
                                        period_end=self.first_end, metadata=self.metadata, id=sub)
        elif step == "canceling":
            sandbox.update_subscription(ACCOUNT, sub, cancel_at_period_end=True)
        elif step == "uncanceled":
            sandbox.update_subscription(ACCOUNT, sub, cancel_at_period_end=False)
        elif step == "renewed":
            sandbox.renew_subscription(ACCOUNT, sub, period_end=self.second_end)
        elif step == "past_due":
            sandbox.update_subscription(ACCOUNT, sub, status="past_due")
        elif step == "deleted":
            sandbox.cancel_subscription(ACCOUNT, sub)
        made = sandbox.events[before:]
        assert [e["type"] for e in made] == [EVENT_TYPES[step]], made
        self.events[step] = made[0]
        return made[0]

    def live_all(self) -> list:
        return [self.live(step) for step in STEPS]

    def step_of(self, event_id) -> str:
        for step, event in self.events.items():
            if event["id"] == event_id:
                return step
        return "unknown event %s" % event_id

    def expected_access(self, step: str) -> list:
        """GET /access once the life was delivered in order up to `step`."""
        state, access, until = {
            "created": ("active", True, self.first_end),
            "canceling": ("canceling", True, self.first_end),
            "uncanceled": ("active", True, self.first_end),
            "renewed": ("active", True, self.second_end),
            # No invoice is open: the grace (14 days) runs from the period's start.
            "past_due": ("past_due", True, self.first_end + 14 * DAY),
            "deleted": ("expired", False, self.ended_at),
        }[step]
        return [{"product_id": product_id, "stripe_product_id": stripe_id,
                 "subscription_id": self.subscription_id, "state": state, "access": access,
                 "access_until": at(until), "member_from": "metadata"}
                for product_id, stripe_id in sorted(self.products)]

    def expected_story(self) -> list:
        """What CustomerHub hears when the life is delivered in order: access
        begins with the first event and ends with the last; nothing between
        changes who may use what (access_until alone is not announced)."""
        return ([(GRANTED, product_id, "subscription_active", at(self.first_end), "created")
                 for product_id, _ in sorted(self.products)]
                + [(REVOKED, product_id, "subscription_canceled", at(self.ended_at), "deleted")
                   for product_id, _ in sorted(self.products)])


def delivered(client, event) -> None:
    """Acknowledged, and handled from the queue (with whatever waited there)."""
    response = deliver(client, event, handle=False)
    assert response.status_code == 200, response.json_body
    assert response.json_body == {"received": True}
    assert QUEUED_EVENTS.drain()["failed"] == 0


def failed_where_handled(client, event) -> None:
    """Stripe hears 200, the event is queued; handling it fails, and it
    waits on the queue for its next try."""
    response = deliver(client, event, handle=False)
    assert response.status_code == 200, response.json_body
    assert QUEUED_EVENTS.drain() == {"handled": 0, "failed": 1}


def tried_again() -> None:
    """The queue's next try of the event whose handling failed: done."""
    assert QUEUED_EVENTS.drain() == {"handled": 1, "failed": 0}


def recorded(event) -> bool:
    try:
        WebhookEventModel.get(event["id"], consistent_read=True)
        return True
    except WebhookEventModel.DoesNotExist:
        return False


def stored():
    return sorted((item.serialize() for item in EntitlementModel.scan(consistent_read=True)),
                  key=lambda item: (item["member_key"]["S"], item["subscription_id"]["S"]))


def members_customers():
    return sorted(str(item.serialize()) for item in MemberCustomerModel.scan(consistent_read=True))


def entitlements(client, user=USER) -> list:
    """GET /access as the member and GET /access/{user_id} as the admin: the same list."""
    own = client.get("/access", headers=bearer(sub=user, role="member"))
    seen_by_admin = client.get("/access/" + user, headers=ADMIN)
    assert own.status_code == 200, own.json_body
    assert seen_by_admin.status_code == 200, seen_by_admin.json_body
    assert own.json_body == seen_by_admin.json_body
    return own.json_body["entitlements"]


def usable(entries) -> list:
    return sorted(entry["product_id"] for entry in entries if entry["access"])


def unique_changes(heard) -> list:
    """The announcements once each, in the order first heard. A change sent
    again (EventBridge has no idempotent put) carries the same change_id and
    must carry the same content."""
    first, order = {}, []
    for event in heard:
        earlier = first.get(event["change_id"])
        if earlier is None:
            first[event["change_id"]] = event
            order.append(event)
        else:
            assert earlier == event, "change_id %s was sent with different content" % event["change_id"]
    return order


def by_change_id(heard) -> dict:
    return {event["change_id"]: event for event in unique_changes(heard)}


def held(changes) -> list:
    """The products CustomerHub believes the member holds, replaying what it heard in order."""
    products = set()
    for event in changes:
        if event["type"] == GRANTED:
            products.add(event["product_id"])
        else:
            assert event["type"] == REVOKED, event
            products.discard(event["product_id"])
    return sorted(products)


def story(changes, life) -> list:
    for event in changes:
        assert event["source"] == "customerhub.stripe-connector"
        assert (event["site_id"], event["user_id"], event["subscription_id"]) == (
            "site_a", life.user, life.subscription_id), event
    return [(e["type"], e["product_id"], e["reason"], e["access_until"], life.step_of(e["stripe_event_id"]))
            for e in changes]


def announced_by_a_fresh_consumer(access_events) -> list:
    """What a consumer reading the entitlements stream from its beginning
    announces when nothing fails: the same writes, announced again."""
    settings = get_settings()

    def aws(name):
        return boto3.client(name, region_name=settings.aws_region,
                            config=botocore.config.Config(account_id_endpoint_mode="disabled"))

    StreamPump(aws("dynamodb"), aws("dynamodbstreams"), settings.entitlements_table, announce_access).drain()
    return access_events.drain()


# ------------------------------------------------------------------ in order


def test_the_life_delivered_in_order_goes_through_each_state_and_announces_one_grant_and_one_revoke_per_product(
        client, studio, t0, access_events):
    life = Life(studio, t0)
    heard = []
    for step in STEPS:
        delivered(client, life.live(step))
        heard += access_events.drain()
        now = entitlements(client)
        assert now == life.expected_access(step), step
        assert held(unique_changes(heard)) == usable(now), step
    assert len(unique_changes(heard)) == len(heard)
    assert story(heard, life) == life.expected_story()
    assert all(recorded(event) for event in life.events.values())


def test_periods_are_only_on_the_items_in_the_pinned_api_version_and_a_renewal_moves_access_until(
        client, studio, t0):
    life = Life(studio, t0)
    created = life.live("created")
    for subscription in (created["data"]["object"], studio.subscription(ACCOUNT, SUBSCRIPTION)):
        assert "current_period_end" not in subscription
        assert "current_period_start" not in subscription
        assert {item["current_period_end"] for item in subscription["items"]["data"]} == {life.first_end}
    delivered(client, created)
    life.live("canceling")
    life.live("uncanceled")
    renewed = life.live("renewed")
    assert "current_period_end" not in renewed["data"]["object"]
    delivered(client, renewed)
    assert {entry["access_until"] for entry in entitlements(client)} == {at(life.second_end)}


def test_an_active_copy_of_a_subscription_stripe_does_not_have_grants_nothing(
        client, studio, t0, access_events):
    """Stripe answers 404 for the subscription; the event's copy says active.
    A copy may end access, never grant it."""
    studio.create_product(ACCOUNT, id="prod_late")
    copy = {"id": "sub_never_had", "object": "subscription", "status": "active", "customer": "cus_ana",
            "cancel_at_period_end": False, "cancel_at": None, "ended_at": None,
            "metadata": {"customerhub_user_id": USER},
            "items": {"object": "list", "data": [
                {"id": "si_1", "object": "subscription_item", "current_period_start": t0,
                 "current_period_end": t0 + 40 * DAY, "price": {"id": "price_1", "product": "prod_late"}}]}}
    for status in ("active", "trialing", "past_due"):
        delivered(client, stripe_event("customer.subscription.updated", ACCOUNT, dict(copy, status=status),
                                       created=t0))
    assert entitlements(client) == []
    assert access_events.drain() == []
    assert list(EntitlementModel.scan()) == []


def test_an_ended_copy_still_ends_access_stripe_granted_before_it_lost_the_subscription(
        client, studio, t0, access_events):
    studio.create_subscription(ACCOUNT, "cus_ana", ["prod_pilates"], id="sub_lost",
                               metadata={"customerhub_user_id": USER})
    delivered(client, stripe_event("customer.subscription.created", ACCOUNT,
                                   {"id": "sub_lost", "object": "subscription"}))
    assert [e["access"] for e in entitlements(client)] == [True]
    ended = dict(studio.subscription(ACCOUNT, "sub_lost"), status="canceled", ended_at=t0 + DAY)
    studio.forget_subscription(ACCOUNT, "sub_lost")
    access_events.drain()
    delivered(client, stripe_event("customer.subscription.deleted", ACCOUNT, ended, created=t0 + DAY))
    assert [(e["state"], e["access"]) for e in entitlements(client)] == [("expired", False)]
    assert [e["type"] for e in access_events.drain()] == [REVOKED]


# --------------------------------------------------------------- duplicated


def test_the_life_with_every_event_delivered_twice_ends_the_same_and_announces_each_change_once(
        client, studio, t0, access_events):
    life = Life(studio, t0)
    heard = []
    for step in STEPS:
        event = life.live(step)
        delivered(client, event)
        heard += access_events.drain()
        after_first = stored()
        delivered(client, event)
        assert stored() == after_first, step
        assert access_events.drain() == [], step
        assert entitlements(client) == life.expected_access(step), step
    assert len(unique_changes(heard)) == len(heard)
    assert story(heard, life) == life.expected_story()
    assert len(list(WebhookEventModel.scan())) == len(STEPS)


# ------------------------------------------------------------------ crashes


def test_the_life_with_a_crash_at_every_step_ends_the_same_and_announces_the_same_changes_once_each(
        client, studio, t0, access_events, aws_faults):
    life = Life(studio, t0)
    crashes = {"created": "stripe read", "canceling": "transaction", "uncanceled": "after write",
               "renewed": "stripe read", "past_due": "transaction", "deleted": "after write"}
    heard = []
    for step in STEPS:
        event = life.live(step)
        before = stored()
        crash = crashes[step]
        if crash == "stripe read":
            studio.fail_next("GET", "/v1/subscriptions/" + SUBSCRIPTION, 500, should_retry=False)
        elif crash == "transaction":
            aws_faults.fail("dynamodb", "TransactWriteItems")
        else:
            aws_faults.fail("dynamodb", "TransactWriteItems", after=True)
        failed_where_handled(client, event)
        assert aws_faults.pending() == []
        if crash == "after write":
            # The write landed; the function did not return, and the queue
            # gives the event again.
            assert recorded(event)
        else:
            assert not recorded(event)
            assert stored() == before
        tried_again()
        if step in ("created", "deleted"):
            # EventBridge fails too: the stream stops at the record, the next drain sends it.
            aws_faults.fail("eventbridge", "PutEvents")
            assert access_events.drain() == []
            assert aws_faults.pending() == []
        heard += access_events.drain()
        now = entitlements(client)
        assert now == life.expected_access(step), step
        assert held(unique_changes(heard)) == usable(now), step
    assert len(unique_changes(heard)) == len(heard)
    assert story(heard, life) == life.expected_story()
    # The same writes, announced by a consumer that never failed: the same change_ids, none lost.
    assert by_change_id(heard) == by_change_id(announced_by_a_fresh_consumer(access_events))


def test_a_dynamodb_failure_in_the_transaction_stores_nothing_and_the_queues_next_try_completes(
        client, studio, t0, access_events, aws_faults):
    life = Life(studio, t0)
    for step in ("created", "canceling", "uncanceled", "renewed"):
        delivered(client, life.live(step))
    access_events.drain()
    past_due = life.live("past_due")
    before = stored()
    customers_before = members_customers()
    aws_faults.fail("dynamodb", "TransactWriteItems")
    failed_where_handled(client, past_due)
    assert aws_faults.pending() == []
    assert not recorded(past_due)
    assert stored() == before
    assert members_customers() == customers_before
    assert entitlements(client) == life.expected_access("renewed")
    tried_again()
    assert recorded(past_due)
    assert entitlements(client) == life.expected_access("past_due")
    assert access_events.drain() == []


def test_a_crash_after_the_write_makes_the_queues_next_try_a_duplicate_that_announces_nothing_twice(
        client, studio, t0, access_events, aws_faults):
    life = Life(studio, t0)
    for step in STEPS[:-1]:
        delivered(client, life.live(step))
    access_events.drain()
    deleted = life.live("deleted")
    aws_faults.fail("dynamodb", "TransactWriteItems", after=True)
    failed_where_handled(client, deleted)
    assert aws_faults.pending() == []
    assert recorded(deleted)
    after_crash = stored()
    assert entitlements(client) == life.expected_access("deleted")
    stripe_reads = len(studio.requests)
    tried_again()
    # Stripe delivers duplicates too.
    delivered(client, deleted)
    assert len(studio.requests) == stripe_reads
    assert stored() == after_crash
    heard = access_events.drain()
    assert [(e["type"], e["product_id"], life.step_of(e["stripe_event_id"])) for e in heard] == [
        (REVOKED, "prod_pilates", "deleted"), (REVOKED, "yoga", "deleted")]
    assert access_events.drain() == []


def test_an_eventbridge_failure_holds_the_stream_at_that_record_until_the_next_drain_sends_the_same_change_ids(
        client, studio, t0, access_events, aws_faults):
    life = Life(studio, t0)
    delivered(client, life.live("created"))
    aws_faults.fail("eventbridge", "PutEvents")
    assert access_events.drain() == []
    assert aws_faults.pending() == []
    # Later writes wait behind the failed record: order is kept.
    for step in STEPS[1:]:
        delivered(client, life.live(step))
    heard = access_events.drain()
    assert story(heard, life) == life.expected_story()
    assert access_events.drain() == []
    assert by_change_id(heard) == by_change_id(announced_by_a_fresh_consumer(access_events))


def test_a_failure_on_the_second_put_of_a_twelve_product_grant_sends_the_first_ten_again_with_the_same_change_ids(
        client, studio, t0, access_events, aws_faults):
    products = tuple(("prod_p%02d" % n, "prod_p%02d" % n) for n in range(12))
    for _, stripe_id in products:
        studio.create_product(ACCOUNT, id=stripe_id)
    life = Life(studio, t0, products=products)
    delivered(client, life.live("created"))
    aws_faults.fail("eventbridge", "PutEvents", let_through=1)
    first_try = access_events.drain()
    assert aws_faults.pending() == []
    assert [e["product_id"] for e in first_try] == [p for p, _ in products[:10]]
    retry = access_events.drain()
    assert [e["product_id"] for e in retry] == [p for p, _ in products]
    assert [e["change_id"] for e in retry[:10]] == [e["change_id"] for e in first_try]
    changes = unique_changes(first_try + retry)
    assert [(e["type"], e["product_id"]) for e in changes] == [(GRANTED, p) for p, _ in products]
    assert by_change_id(changes) == by_change_id(announced_by_a_fresh_consumer(access_events))
    assert held(changes) == usable(entitlements(client))


# ---------------------------------------------------------------- shuffled


def test_the_whole_life_delivered_afterwards_shuffled_with_repeats_ends_the_same_and_announces_nothing(
        client, studio, t0, access_events):
    # One member per seed: each subscription's events come in their own order.
    lives = {seed: Life(studio, t0, subscription_id="sub_seed_%d" % seed, user=add_member(studio, "seed%d" % seed))
             for seed in (1, 7, 42)}
    for seed, life in lives.items():
        rng = random.Random(seed)
        events = life.live_all()
        deliveries = events + rng.sample(events, 3)
        rng.shuffle(deliveries)
        for event in deliveries:
            delivered(client, event)
    changes = unique_changes(access_events.drain())
    for seed, life in lives.items():
        final = entitlements(client, life.user)
        assert final == life.expected_access("deleted"), seed
        assert held(e for e in changes if e["user_id"] == life.user) == usable(final), seed
    # Every delivery read Stripe after the cancellation: access never began.
    assert changes == []


def test_the_life_delivered_late_and_out_of_order_as_it_happens_ends_the_same_and_keeps_the_view_consistent(
        client, studio, t0, access_events):
    # One member per seed. After each step Stripe delivers some of what is
    # pending, in no particular order, and sometimes one it delivered before.
    runs = [{"seed": seed, "rng": random.Random(seed), "pending": [], "sent": [], "heard": [],
             "granted_while_alive": False,
             "life": Life(studio, t0, subscription_id="sub_seed_%d" % seed, user=add_member(studio, "seed%d" % seed))}
            for seed in (3, 11, 2024)]
    for step in STEPS:
        for run in runs:
            rng = run["rng"]
            run["pending"].append(run["life"].live(step))
            rng.shuffle(run["pending"])
            count = rng.randint(0, len(run["pending"])) if step != "deleted" else len(run["pending"])
            now, run["pending"] = run["pending"][:count], run["pending"][count:]
            again = rng.sample(run["sent"], min(len(run["sent"]), rng.randint(0, 1)))
            for event in now + again:
                delivered(client, event)
            run["sent"] += now
            run["granted_while_alive"] = run["granted_while_alive"] or (bool(now) and step != "deleted")
        heard = access_events.drain()
        for run in runs:
            life = run["life"]
            run["heard"] += [e for e in heard if e["user_id"] == life.user]
            assert held(unique_changes(run["heard"])) == usable(entitlements(client, life.user)), (run["seed"], step)
    for run in runs:
        life = run["life"]
        final = entitlements(client, life.user)
        assert final == life.expected_access("deleted"), run["seed"]
        changes = unique_changes(run["heard"])
        assert held(changes) == usable(final) == []
        expected = [(kind, product_id) for kind, product_id, *_ in life.expected_story()]
        if not run["granted_while_alive"]:
            expected = []
        assert [(e["type"], e["product_id"]) for e in changes] == expected, run["seed"]
        story(changes, life)  # each change names this member and subscription


# -------------------------------------------------------------- days later


def test_events_delivered_again_days_later_change_no_entitlement_and_announce_nothing(
        client, studio, t0, access_events):
    life = Life(studio, t0)
    for step in STEPS:
        delivered(client, life.live(step))
    access_events.drain()
    final = entitlements(client)
    assert final == life.expected_access("deleted")
    # Stripe sends some events again, and events about the subscription from
    # three days ago arrive for the first time.
    again = [life.events[step] for step in ("created", "renewed", "deleted")]
    old = [stripe_event(life.events[step]["type"], ACCOUNT, life.events[step]["data"]["object"],
                        created=t0 - 3 * DAY, event_id="evt_old_%s" % step)
           for step in ("created", "canceling", "past_due")]
    for event in again + old:
        delivered(client, event)
    assert entitlements(client) == final
    assert access_events.drain() == []


def test_old_copies_delivered_days_later_after_stripe_lost_the_subscription_change_nothing(
        client, studio, t0, access_events):
    life = Life(studio, t0, metadata={"customerhub_user_id": USER})
    for step in STEPS:
        delivered(client, life.live(step))
    heard = access_events.drain()
    final = entitlements(client)
    studio.forget_subscription(ACCOUNT, SUBSCRIPTION)
    old = [stripe_event(life.events[step]["type"], ACCOUNT, life.events[step]["data"]["object"],
                        created=t0 - 3 * DAY, event_id="evt_old_%s" % step)
           for step in ("created", "uncanceled", "past_due")]
    for event in old:
        delivered(client, event)
    assert entitlements(client) == final == life.expected_access("deleted")
    assert access_events.drain() == []
    assert story(heard, life) == life.expected_story()


# ------------------------------------------------------ identity and overlap


def test_a_deleted_subscription_stripe_no_longer_has_still_revokes_the_member_named_on_its_customer(
        client, studio, t0, access_events):
    life = Life(studio, t0)
    delivered(client, life.live("created"))
    access_events.drain()
    deleted = life.live("deleted")
    studio.forget_subscription(ACCOUNT, SUBSCRIPTION)
    delivered(client, deleted)
    assert entitlements(client) == life.expected_access("deleted")
    assert [(e["type"], e["product_id"], e["reason"]) for e in access_events.drain()] == [
        (REVOKED, "prod_pilates", "subscription_canceled"), (REVOKED, "yoga", "subscription_canceled")]


def test_a_product_named_in_its_metadata_keeps_that_name_when_the_events_copy_is_used(client, studio, t0):
    life = Life(studio, t0, metadata={"customerhub_user_id": USER})
    delivered(client, life.live("created"))
    deleted = life.live("deleted")
    studio.forget_subscription(ACCOUNT, SUBSCRIPTION)
    delivered(client, deleted)
    assert entitlements(client) == life.expected_access("deleted")


def test_a_product_held_through_two_subscriptions_is_not_revoked_while_the_other_still_grants_it(
        client, studio, t0, access_events):
    both = Life(studio, t0, subscription_id="sub_both")
    yoga_only = Life(studio, t0, subscription_id="sub_yoga", products=(("yoga", "prod_yoga"),))
    delivered(client, both.live("created"))
    delivered(client, yoga_only.live("created"))
    heard = access_events.drain()
    assert usable(entitlements(client)) == ["prod_pilates", "yoga"] == held(unique_changes(heard))

    # The second one falls past_due (it still grants), then the first one ends.
    delivered(client, yoga_only.live("canceling"))
    delivered(client, yoga_only.live("uncanceled"))
    delivered(client, yoga_only.live("renewed"))
    delivered(client, yoga_only.live("past_due"))
    delivered(client, both.live("canceling"))
    delivered(client, both.live("deleted"))
    ended_one = access_events.drain()
    assert [(e["type"], e["product_id"], e["subscription_id"], e["reason"]) for e in ended_one] == [
        (REVOKED, "prod_pilates", "sub_both", "subscription_canceled")]
    heard += ended_one
    entries = entitlements(client)
    assert [(e["product_id"], e["subscription_id"], e["state"], e["access"]) for e in entries] == [
        ("prod_pilates", "sub_both", "expired", False), ("yoga", "sub_yoga", "past_due", True)]
    assert held(unique_changes(heard)) == usable(entries) == ["yoga"]

    delivered(client, yoga_only.live("deleted"))
    ended_other = access_events.drain()
    assert [(e["type"], e["product_id"], e["subscription_id"], e["reason"]) for e in ended_other] == [
        (REVOKED, "yoga", "sub_yoga", "subscription_canceled")]
    heard += ended_other
    assert held(unique_changes(heard)) == usable(entitlements(client)) == []
