"""The access rules, identity and GET /access view, as pure functions of a
subscription (a plain dict shaped like Stripe API 2026-10-28) and a moment."""
from datetime import datetime, timedelta, timezone
from itertools import product as pairs

import pytest

from chalicelib.access import (Product, access_of, customer_id_of, is_readable, products_of,
                               user_of)
from chalicelib.entitlements import (DUE_SHARDS, View, due_shard_of, entitlement_item,
                                     entitlements_view, member_key)

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=timezone.utc)
PERIOD_END = datetime(2026, 12, 24, 16, 0, tzinfo=timezone.utc)
PERIOD_START = datetime(2026, 11, 24, 16, 0, tzinfo=timezone.utc)


def ts(moment):
    return int(moment.timestamp())


def stripe_product(product_id="prod_basic", customerhub_product_id=None, metadata=None):
    """An expanded Stripe product; `customerhub_product_id` goes in its metadata."""
    metadata = dict(metadata or {})
    if customerhub_product_id is not None:
        metadata["customerhub_product_id"] = customerhub_product_id
    return {"object": "product", "id": product_id, "active": True, "name": product_id,
            "livemode": False, "metadata": metadata}


def stripe_customer(customer_id="cus_1", user_id=None, metadata=None, deleted=False):
    """An expanded Stripe customer; `user_id` goes in its metadata."""
    if deleted:
        return {"object": "customer", "id": customer_id, "deleted": True}
    metadata = dict(metadata or {})
    if user_id is not None:
        metadata["customerhub_user_id"] = user_id
    return {"object": "customer", "id": customer_id, "email": "member@example.test",
            "livemode": False, "metadata": metadata}


def sub_item(product="prod_basic", period_end=PERIOD_END, period_start=PERIOD_START, item_id=None):
    """A subscription item: `product` is a product id or an expanded product."""
    product_id = product if isinstance(product, str) else product["id"]
    return {
        "object": "subscription_item",
        "id": item_id or "si_" + product_id,
        "price": {"object": "price", "id": "price_" + product_id, "product": product,
                  "recurring": {"interval": "month", "interval_count": 1}},
        "quantity": 1,
        "current_period_start": ts(period_start),
        "current_period_end": ts(period_end),
    }


def subscription(status="active", items=None, customer="cus_1", metadata=None,
                 cancel_at_period_end=False, cancel_at=None, canceled_at=None, ended_at=None,
                 subscription_id="sub_1"):
    """A subscription in API 2026-10-28: no period of its own, only on the items."""
    items = [sub_item()] if items is None else items
    return {
        "object": "subscription",
        "id": subscription_id,
        "customer": customer,
        "status": status,
        "items": {"object": "list", "data": items, "has_more": False,
                  "total_count": len(items), "url": "/v1/subscription_items?subscription=" + subscription_id},
        "metadata": dict(metadata or {}),
        "cancel_at_period_end": cancel_at_period_end,
        "cancel_at": ts(cancel_at) if cancel_at is not None else None,
        "canceled_at": ts(canceled_at) if canceled_at is not None else None,
        "ended_at": ts(ended_at) if ended_at is not None else None,
        "start_date": ts(PERIOD_START - timedelta(days=90)),
        "livemode": False,
    }


# --- access_of: granting statuses -------------------------------------------------

@pytest.mark.parametrize("status", ["active", "trialing"])
def test_active_or_trialing_grants_access_until_the_latest_item_period_end(status):
    later = PERIOD_END + timedelta(days=3)
    sub = subscription(status=status, items=[
        sub_item("prod_a", period_end=PERIOD_END),
        sub_item("prod_b", period_end=later),
        sub_item("prod_c", period_end=PERIOD_END - timedelta(days=1)),
    ])

    access = access_of(sub, NOW)

    assert access.grants is True
    assert access.state == "active"
    assert access.access_until == later
    assert access.reason == "subscription_active"


def test_access_until_is_an_aware_utc_datetime_of_the_item_period_end():
    access = access_of(subscription(), NOW)

    assert access.access_until == PERIOD_END
    assert access.access_until.utcoffset() == timedelta(0)


@pytest.mark.parametrize("status", ["active", "trialing"])
def test_cancel_at_period_end_keeps_access_until_the_period_end(status):
    access = access_of(subscription(status=status, cancel_at_period_end=True), NOW)

    assert access.grants is True
    assert access.state == "canceling"
    assert access.access_until == PERIOD_END
    assert access.reason == "subscription_active"


def test_cancel_at_period_end_with_cancel_at_at_the_period_end_is_canceling_until_the_period_end():
    sub = subscription(cancel_at_period_end=True, cancel_at=PERIOD_END)

    access = access_of(sub, NOW)

    assert (access.state, access.grants, access.access_until) == ("canceling", True, PERIOD_END)


@pytest.mark.parametrize("status", ["active", "trialing"])
def test_cancel_at_before_the_period_end_is_canceling_until_cancel_at(status):
    cancel_at = NOW + timedelta(days=5)

    access = access_of(subscription(status=status, cancel_at=cancel_at), NOW)

    assert access.grants is True
    assert access.state == "canceling"
    assert access.access_until == cancel_at


@pytest.mark.parametrize("status", ["active", "trialing"])
def test_cancel_at_after_the_period_end_ends_access_at_the_period_end_until_a_renewal_is_paid(status):
    # A far cancel_at is not paid for yet: the period that was is the limit.
    cancel_at = PERIOD_END + timedelta(days=40)
    access = access_of(subscription(status=status, cancel_at=cancel_at), NOW)
    assert (access.state, access.grants, access.access_until) == ("canceling", True, PERIOD_END)


def test_a_paid_renewal_before_a_far_cancel_at_extends_access_to_the_new_period_end():
    cancel_at = PERIOD_END + timedelta(days=40)
    renewed = sub_item(period_start=PERIOD_END, period_end=PERIOD_END + timedelta(days=30))
    access = access_of(subscription(cancel_at=cancel_at, items=[renewed]), PERIOD_END + timedelta(days=1))
    assert (access.state, access.access_until) == ("canceling", PERIOD_END + timedelta(days=30))


def test_the_last_renewal_before_cancel_at_grants_access_until_cancel_at():
    cancel_at = PERIOD_END + timedelta(days=40)
    renewed = sub_item(period_start=PERIOD_END + timedelta(days=30), period_end=PERIOD_END + timedelta(days=60))
    access = access_of(subscription(cancel_at=cancel_at, items=[renewed]), PERIOD_END + timedelta(days=31))
    assert access.access_until == cancel_at


# --- access_of: past due ------------------------------------------------------------
# The grace runs from when the subscription fell behind: its oldest open
# invoice (behind_since), else its earliest item period start; access ends at
# the earliest of the grace's end, the latest period end and a cancel_at.

DAY = timedelta(days=1)
GRACE = timedelta(days=14)


@pytest.mark.parametrize("case, behind_by, grace, period_end, cancel_at, until, state, reason", [
    ("fell behind today: the grace", 0, GRACE, PERIOD_END, None, NOW + GRACE, "past_due", "subscription_active"),
    ("fell behind 10 days ago: 4 days left", 10, GRACE, PERIOD_END, None, NOW + 4 * DAY, "past_due",
     "subscription_active"),
    ("the grace outlasts the period: the period end", 0, 60 * DAY, PERIOD_END, None, PERIOD_END, "past_due",
     "subscription_active"),
    ("a cancellation sooner than both", 0, GRACE, PERIOD_END, NOW + 2 * DAY, NOW + 2 * DAY, "past_due",
     "subscription_active"),
    ("a cancellation later than the grace", 0, GRACE, PERIOD_END, NOW + 20 * DAY, NOW + GRACE, "past_due",
     "subscription_active"),
    ("invoice older than the grace: nothing", 15, GRACE, PERIOD_END, None, NOW - DAY, "expired",
     "subscription_past_due"),
    ("grace of 0 days: nothing", 0, timedelta(0), PERIOD_END, None, NOW, "expired", "subscription_past_due"),
    ("renewed while past due: the new period grants nothing", 40, GRACE, PERIOD_END + 30 * DAY, None,
     NOW - 26 * DAY, "expired", "subscription_past_due"),
])
def test_past_due_access_lasts_the_sites_grace_from_when_it_fell_behind(
        case, behind_by, grace, period_end, cancel_at, until, state, reason):
    sub = subscription(status="past_due", items=[sub_item(period_end=period_end)], cancel_at=cancel_at)

    access = access_of(sub, NOW, grace=grace, behind_since=NOW - behind_by * DAY)

    assert (access.state, access.access_until, access.reason) == (state, until, reason), case
    assert access.grants is (state == "past_due")


def test_past_due_with_no_open_invoice_counts_the_grace_from_the_earliest_item_period_start():
    sub = subscription(status="past_due", items=[
        sub_item("prod_a", period_start=NOW - 3 * DAY), sub_item("prod_b", period_start=NOW - 1 * DAY)])

    access = access_of(sub, NOW)

    assert (access.state, access.access_until) == ("past_due", NOW - 3 * DAY + GRACE)


def test_past_due_keeps_access_no_later_than_the_latest_item_period_end():
    sub = subscription(status="past_due", items=[sub_item(period_end=NOW + 2 * DAY)])

    assert access_of(sub, NOW, grace=60 * DAY, behind_since=NOW).access_until == NOW + 2 * DAY


def test_a_past_due_subscription_renewed_without_payment_does_not_move_access_forward():
    first = access_of(subscription(status="past_due"), NOW + DAY, behind_since=NOW)
    renewed = subscription(status="past_due", items=[sub_item(period_start=PERIOD_END,
                                                              period_end=PERIOD_END + 30 * DAY)])

    second = access_of(renewed, NOW + 2 * DAY, behind_since=NOW)

    assert first.access_until == second.access_until == NOW + GRACE


def test_the_grace_does_not_apply_to_an_active_subscription():
    access = access_of(subscription(status="active"), NOW, grace=timedelta(0), behind_since=NOW - 30 * DAY)

    assert (access.state, access.access_until) == ("active", PERIOD_END)


# --- access_of: statuses that grant nothing ----------------------------------------

@pytest.mark.parametrize("status, reason", [
    ("unpaid", "subscription_unpaid"),
    ("paused", "subscription_paused"),
    ("incomplete", "subscription_incomplete"),
    ("incomplete_expired", "subscription_incomplete"),
    ("canceled", "subscription_canceled"),
])
def test_non_granting_status_is_expired_without_access_and_names_its_reason(status, reason):
    ended = NOW - timedelta(hours=1) if status in ("canceled", "incomplete_expired") else None
    sub = subscription(status=status, items=[sub_item("prod_a"), sub_item("prod_b")], ended_at=ended)

    access = access_of(sub, NOW)

    assert access.grants is False
    assert access.state == "expired"
    assert access.reason == reason
    assert not is_readable(access.access_until, access.grants, NOW)
    # The products are still named, so that their access can be revoked.
    assert [p.stripe_product_id for p in access.products] == ["prod_a", "prod_b"]


def test_canceled_subscription_with_a_future_period_end_still_grants_nothing():
    sub = subscription(status="canceled", cancel_at_period_end=True, ended_at=NOW - timedelta(minutes=1))

    access = access_of(sub, NOW)

    assert (access.grants, access.state, access.reason) == (False, "expired", "subscription_canceled")


# --- access_of: never past access_until ------------------------------------------

@pytest.mark.parametrize("status", ["active", "trialing", "past_due"])
@pytest.mark.parametrize("ended_by", [timedelta(0), timedelta(seconds=1), timedelta(days=2)])
def test_granting_status_whose_period_ended_by_now_has_no_access_with_reason_period_ended(status, ended_by):
    period_end = NOW - ended_by
    sub = subscription(status=status, items=[sub_item(period_end=period_end)])

    access = access_of(sub, NOW)

    assert access.grants is False
    assert access.state == "expired"
    assert access.reason == "period_ended"
    assert access.access_until == period_end


def test_cancel_at_already_passed_has_no_access_with_reason_period_ended():
    cancel_at = NOW - timedelta(hours=1)

    access = access_of(subscription(cancel_at=cancel_at), NOW)

    assert (access.grants, access.state, access.reason) == (False, "expired", "period_ended")
    assert access.access_until == cancel_at


def test_period_ending_one_second_after_now_still_grants():
    access = access_of(subscription(items=[sub_item(period_end=NOW + timedelta(seconds=1))]), NOW)

    assert access.grants is True
    assert is_readable(access.access_until, access.grants, NOW)


# --- access_of / products_of: items and products ---------------------------------

@pytest.mark.parametrize("status", ["active", "trialing", "past_due"])
def test_subscription_without_items_names_no_product_and_grants_nothing(status):
    access = access_of(subscription(status=status, items=[]), NOW)

    assert access.products == ()
    assert access.grants is False
    assert access.state == "expired"


def test_subscription_without_an_items_list_names_no_product():
    sub = subscription()
    del sub["items"]

    assert products_of(sub) == ()
    assert access_of(sub, NOW).grants is False


def test_product_with_customerhub_product_id_metadata_is_that_product():
    sub = subscription(items=[sub_item(stripe_product("prod_gold", customerhub_product_id="gold-plan"))])

    assert products_of(sub) == (Product(product_id="gold-plan", stripe_product_id="prod_gold"),)


def test_product_without_customerhub_product_id_metadata_is_its_stripe_id():
    sub = subscription(items=[sub_item(stripe_product("prod_gold", metadata={"tier": "gold"}))])

    assert products_of(sub) == (Product(product_id="prod_gold", stripe_product_id="prod_gold"),)


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_product_with_blank_customerhub_product_id_metadata_is_its_stripe_id(blank):
    sub = subscription(items=[sub_item(stripe_product("prod_gold", customerhub_product_id=blank))])

    assert products_of(sub) == (Product(product_id="prod_gold", stripe_product_id="prod_gold"),)


def test_customerhub_product_id_metadata_is_stripped():
    sub = subscription(items=[sub_item(stripe_product("prod_gold", customerhub_product_id="  gold  "))])

    assert products_of(sub)[0].product_id == "gold"


def test_unexpanded_product_id_is_its_stripe_id():
    sub = subscription(items=[sub_item("prod_plain")])

    assert products_of(sub) == (Product(product_id="prod_plain", stripe_product_id="prod_plain"),)


def test_same_product_on_two_items_is_counted_once():
    gold = stripe_product("prod_gold", customerhub_product_id="gold")
    sub = subscription(items=[
        sub_item(gold, item_id="si_1"),
        sub_item("prod_silver"),
        sub_item(gold, item_id="si_2"),
        sub_item("prod_gold", item_id="si_3"),
    ])

    products = products_of(sub)

    assert products == (Product("gold", "prod_gold"), Product("prod_silver", "prod_silver"))
    assert access_of(sub, NOW).products == products


def test_every_product_on_the_items_is_named_in_item_order():
    sub = subscription(items=[sub_item("prod_b"), sub_item(stripe_product("prod_a", "hub-a"))])

    assert products_of(sub) == (Product("prod_b", "prod_b"), Product("hub-a", "prod_a"))


# --- Identity ------------------------------------------------------------------------

def test_user_is_named_by_the_customer_metadata_before_the_subscription_metadata():
    sub = subscription(customer=stripe_customer(user_id="u_customer"),
                       metadata={"customerhub_user_id": "u_subscription"})

    assert user_of(sub) == "u_customer"


def test_user_is_named_by_the_subscription_metadata_when_the_customer_names_nobody():
    sub = subscription(customer=stripe_customer(metadata={"other": "x"}),
                       metadata={"customerhub_user_id": "u_subscription"})

    assert user_of(sub) == "u_subscription"


def test_user_is_named_by_the_subscription_metadata_when_the_customer_metadata_is_blank():
    sub = subscription(customer=stripe_customer(user_id="  "),
                       metadata={"customerhub_user_id": "u_subscription"})

    assert user_of(sub) == "u_subscription"


def test_user_is_named_by_the_subscription_metadata_when_the_customer_is_not_expanded():
    sub = subscription(customer="cus_1", metadata={"customerhub_user_id": "u_subscription"})

    assert user_of(sub) == "u_subscription"


def test_deleted_customer_falls_back_to_the_subscription_metadata():
    sub = subscription(customer=stripe_customer(deleted=True),
                       metadata={"customerhub_user_id": "u_subscription"})

    assert user_of(sub) == "u_subscription"


@pytest.mark.parametrize("customer, metadata", [
    ("cus_1", {}),
    (stripe_customer(), {}),
    (stripe_customer(deleted=True), {}),
    (stripe_customer(user_id=""), {"customerhub_user_id": " "}),
    (None, None),
])
def test_subscription_naming_no_user_has_none(customer, metadata):
    assert user_of(subscription(customer=customer, metadata=metadata)) is None


@pytest.mark.parametrize("customer", ["cus_9", stripe_customer("cus_9"), stripe_customer("cus_9", deleted=True)])
def test_customer_id_is_read_from_an_id_or_an_expanded_customer(customer):
    assert customer_id_of(subscription(customer=customer)) == "cus_9"


def test_subscription_without_a_customer_has_no_customer_id():
    assert customer_id_of(subscription(customer=None)) is None


# --- is_readable ----------------------------------------------------------------

def test_stored_grant_is_readable_before_access_until():
    assert is_readable(NOW + timedelta(seconds=1), True, NOW) is True


@pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=1), timedelta(days=30)])
def test_stored_grant_is_not_readable_at_or_past_access_until(after):
    assert is_readable(NOW - after, True, NOW) is False


@pytest.mark.parametrize("access_until", [None, NOW + timedelta(days=1)])
def test_stored_non_grant_is_never_readable(access_until):
    assert is_readable(access_until, False, NOW) is False


# --- entitlement_item --------------------------------------------------------------

def view_of(sub, now=NOW, site_id="site_1", user_id="u_1", view_time=None, stripe_event_id="evt_1"):
    return View(site_id=site_id, user_id=user_id, account_id="acct_1",
                customer_id=customer_id_of(sub), subscription_id=sub["id"],
                stripe_status=sub["status"], access=access_of(sub, now),
                view_time=view_time if view_time is not None else int(now.timestamp() * 1_000_000),
                stripe_event_id=stripe_event_id, member_from="metadata" if user_id else None)


def item_of(sub, now=NOW, **view):
    return entitlement_item(view_of(sub, now, **view), now)


def test_granting_entitlement_is_in_the_due_index_at_its_access_until():
    item = item_of(subscription(cancel_at=NOW + timedelta(days=4)))

    assert item.due_at == ts(NOW + timedelta(days=4))
    assert item.due_shard == due_shard_of(item.member_key, item.subscription_id)
    assert 0 <= item.due_shard < DUE_SHARDS
    serialized = item.serialize()
    assert serialized["due_at"] == {"N": str(ts(NOW + timedelta(days=4)))}
    assert "due_shard" in serialized


@pytest.mark.parametrize("sub", [
    subscription(status="canceled", ended_at=NOW - timedelta(hours=1)),
    subscription(status="unpaid"),
    subscription(status="paused"),
    subscription(items=[sub_item(period_end=NOW - timedelta(days=1))]),
    subscription(items=[]),
], ids=["canceled", "unpaid", "paused", "period_ended", "no_items"])
def test_entitlement_that_grants_nothing_is_left_out_of_the_due_index(sub):
    item = item_of(sub)

    assert item.grants is False
    assert item.due_shard is None and item.due_at is None
    serialized = item.serialize()
    assert "due_shard" not in serialized and "due_at" not in serialized


def test_entitlement_item_holds_the_view_and_its_access():
    gold = stripe_product("prod_gold", customerhub_product_id="gold")
    sub = subscription(items=[sub_item(gold), sub_item("prod_silver")], cancel_at_period_end=True)

    item = item_of(sub, site_id="site_9", user_id="u_9", view_time=123, stripe_event_id="evt_9")

    assert item.member_key == member_key("site_9", "u_9")
    assert (item.site_id, item.user_id, item.subscription_id) == ("site_9", "u_9", "sub_1")
    assert (item.state, item.grants, item.access_until, item.reason) == (
        "canceling", True, PERIOD_END, "subscription_active")
    assert [(p.product_id, p.stripe_product_id) for p in item.products] == [
        ("gold", "prod_gold"), ("prod_silver", "prod_silver")]
    assert (item.view_time, item.stripe_event_id, item.changed_at) == (123, "evt_9", NOW)


# --- member_key / due_shard_of ----------------------------------------------------

def test_member_key_is_different_for_every_site_and_user_pair():
    parts = ["", "a", "b", "#", "\\", "a#b", "a\\", "\\#", "#b", "a\\#b", "\\\\", "##", "a#", "b#c", "\\#\\"]
    keys = {}
    for site_id, user_id in pairs(parts, repeat=2):
        keys.setdefault(member_key(site_id, user_id), set()).add((site_id, user_id))

    assert {key: owners for key, owners in keys.items() if len(owners) > 1} == {}


def test_member_key_of_a_site_with_a_separator_differs_from_a_user_with_one():
    assert member_key("a#b", "c") != member_key("a", "b#c")
    assert member_key("a\\", "#b") != member_key("a\\#", "b")


def test_due_shard_is_stable_and_within_the_shards():
    shards = {due_shard_of(member_key("site_1", "u_%d" % n), "sub_%d" % n) for n in range(200)}

    assert shards <= set(range(DUE_SHARDS))
    assert len(shards) > 1
    assert due_shard_of("k", "sub_1") == due_shard_of("k", "sub_1")


# --- entitlements_view (GET /access) ---------------------------------------------

def test_no_entitlements_is_an_empty_list():
    assert entitlements_view([], NOW) == {"entitlements": []}


def test_granting_entitlement_reads_as_its_state_with_access_and_a_utc_timestamp():
    item = item_of(subscription(cancel_at_period_end=True, items=[
        sub_item(stripe_product("prod_gold", customerhub_product_id="gold"))]))

    assert entitlements_view([item], NOW) == {"entitlements": [{
        "product_id": "gold",
        "stripe_product_id": "prod_gold",
        "subscription_id": "sub_1",
        "state": "canceling",
        "access": True,
        "access_until": "2026-12-24T16:00:00Z",
        "member_from": "metadata",
    }], "product_names": {"gold": "prod_gold"}}


@pytest.mark.parametrize("later", [timedelta(0), timedelta(seconds=1), timedelta(days=10)])
def test_stored_grant_reads_expired_without_access_once_access_until_has_passed(later):
    item = item_of(subscription(status="past_due", items=[sub_item(period_start=PERIOD_END - timedelta(days=14))]))
    assert item.grants is True  # the sweep has not run yet

    entry, = entitlements_view([item], PERIOD_END + later)["entitlements"]

    assert entry["access"] is False
    assert entry["state"] == "expired"
    assert entry["access_until"] == "2026-12-24T16:00:00Z"


def test_stored_grant_reads_with_access_one_second_before_access_until():
    item = item_of(subscription(status="past_due", items=[sub_item(period_start=PERIOD_END - timedelta(days=14))]))

    entry, = entitlements_view([item], PERIOD_END - timedelta(seconds=1))["entitlements"]

    assert (entry["access"], entry["state"]) == (True, "past_due")


def test_stored_non_grant_reads_expired_without_access():
    item = item_of(subscription(status="unpaid"))

    entry, = entitlements_view([item], NOW)["entitlements"]

    assert (entry["access"], entry["state"]) == (False, "expired")


@pytest.mark.parametrize("order", ["granting_first", "granting_last"])
def test_product_of_two_subscriptions_reads_from_the_one_that_grants_now(order):
    gold = stripe_product("prod_gold", customerhub_product_id="gold")
    ended = item_of(subscription(status="canceled", subscription_id="sub_old", items=[sub_item(gold)],
                                 ended_at=NOW - timedelta(hours=1)),
                    view_time=2_000_000_000_000_000)  # the latest view, but it grants nothing
    granting = item_of(subscription(subscription_id="sub_new", items=[sub_item(gold)]), view_time=1)
    items = [granting, ended] if order == "granting_first" else [ended, granting]

    entry, = entitlements_view(items, NOW)["entitlements"]

    assert entry["subscription_id"] == "sub_new"
    assert (entry["access"], entry["state"]) == (True, "active")


@pytest.mark.parametrize("order", ["granting_first", "granting_last"])
def test_product_of_two_subscriptions_ignores_a_stored_grant_that_has_passed(order):
    # Both are stored as granting; at read_at only sub_granting still does.
    passed = item_of(subscription(subscription_id="sub_passed", items=[sub_item("prod_gold")]),
                     view_time=9)
    granting = item_of(subscription(subscription_id="sub_granting", items=[
        sub_item("prod_gold", period_end=PERIOD_END + timedelta(days=30))]), view_time=1)
    assert passed.grants and granting.grants
    items = [granting, passed] if order == "granting_first" else [passed, granting]
    read_at = PERIOD_END + timedelta(days=1)

    entry, = entitlements_view(items, read_at)["entitlements"]

    assert entry["subscription_id"] == "sub_granting"
    assert (entry["access"], entry["state"]) == (True, "active")
    assert entry["access_until"] == "2027-01-23T16:00:00Z"


def test_entitlements_are_sorted_by_product_id_one_entry_per_product():
    first = item_of(subscription(subscription_id="sub_a", items=[
        sub_item(stripe_product("prod_1", customerhub_product_id="zeta")),
        sub_item(stripe_product("prod_2", customerhub_product_id="alpha")),
    ]))
    second = item_of(subscription(subscription_id="sub_b", items=[
        sub_item(stripe_product("prod_3", customerhub_product_id="mid")),
        sub_item(stripe_product("prod_2", customerhub_product_id="alpha")),
    ]))

    entries = entitlements_view([first, second], NOW)["entitlements"]

    assert [e["product_id"] for e in entries] == ["alpha", "mid", "zeta"]
    assert all(set(e) == {"product_id", "stripe_product_id", "subscription_id", "state", "access",
                          "access_until", "member_from"} for e in entries)
