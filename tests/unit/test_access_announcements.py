"""What CustomerHub hears: the announcements one entitlement write makes,
from the old and new images of the item, without any AWS around it."""
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.access import access_of, customer_id_of
from chalicelib.announcements import changes_between
from chalicelib.entitlements import View, entitlement_item
from chalicelib.models import EntitlementModel

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=timezone.utc)
PERIOD_END = datetime(2026, 12, 24, 16, 0, tzinfo=timezone.utc)
DETAIL_KEYS = {"change_id", "site_id", "user_id", "product_id", "subscription_id",
               "access_until", "reason", "stripe_event_id"}


def ts(moment):
    return int(moment.timestamp())


def sub_item(product_id, customerhub_product_id=None, period_end=PERIOD_END):
    metadata = {} if customerhub_product_id is None else {"customerhub_product_id": customerhub_product_id}
    return {
        "object": "subscription_item",
        "id": "si_" + product_id,
        "price": {"object": "price", "id": "price_" + product_id,
                  "product": {"object": "product", "id": product_id, "metadata": metadata}},
        "current_period_start": ts(period_end - timedelta(days=30)),
        "current_period_end": ts(period_end),
    }


def subscription(status="active", items=None, cancel_at_period_end=False, cancel_at=None, ended_at=None):
    """A subscription in API 2026-10-28: the period is only on the items."""
    items = [sub_item("prod_gold", "gold"), sub_item("prod_silver")] if items is None else items
    return {
        "object": "subscription",
        "id": "sub_1",
        "customer": {"object": "customer", "id": "cus_1", "metadata": {"customerhub_user_id": "u_1"}},
        "status": status,
        "items": {"object": "list", "data": items, "has_more": False},
        "metadata": {},
        "cancel_at_period_end": cancel_at_period_end,
        "cancel_at": ts(cancel_at) if cancel_at is not None else None,
        "ended_at": ts(ended_at) if ended_at is not None else None,
        "livemode": False,
    }


def written(sub, now=NOW, view_time=None, stripe_event_id="evt_1"):
    """The entitlement a view of `sub` writes, as its stream image reads back."""
    view = View(site_id="site_1", user_id="u_1", account_id="acct_1", customer_id=customer_id_of(sub),
                subscription_id=sub["id"], stripe_status=sub["status"], access=access_of(sub, now),
                view_time=view_time if view_time is not None else int(now.timestamp() * 1_000_000),
                stripe_event_id=stripe_event_id)
    item = entitlement_item(view, now)
    return EntitlementModel.from_raw_data(item.serialize())


def by_product(announcements):
    return {a.detail["product_id"]: a for a in announcements}


# --- access begins -------------------------------------------------------------------

def test_first_grant_announces_access_granted_once_per_product():
    new = written(subscription(), stripe_event_id="evt_created")

    announcements = changes_between(None, new)

    assert [a.detail_type for a in announcements] == ["AccessGranted", "AccessGranted"]
    found = by_product(announcements)
    assert set(found) == {"gold", "prod_silver"}
    for product_id, a in found.items():
        assert a.detail["reason"] == "subscription_active"
        assert a.detail["access_until"] == "2026-12-24T16:00:00Z"
        assert a.detail["site_id"] == "site_1"
        assert a.detail["user_id"] == "u_1"
        assert a.detail["subscription_id"] == "sub_1"
        assert a.detail["stripe_event_id"] == "evt_created"


def test_first_write_that_grants_nothing_announces_nothing():
    assert changes_between(None, written(subscription(status="incomplete"))) == []


def test_grant_after_a_pause_announces_access_granted():
    old = written(subscription(status="paused"), view_time=1)
    new = written(subscription(status="active"), view_time=2, stripe_event_id="evt_resumed")

    announcements = changes_between(old, new)

    assert [(a.detail_type, a.detail["product_id"], a.detail["reason"]) for a in announcements] == [
        ("AccessGranted", "gold", "subscription_active"),
        ("AccessGranted", "prod_silver", "subscription_active"),
    ]


# --- no change in access -------------------------------------------------------------

def test_access_until_moving_alone_announces_nothing():
    old = written(subscription(), view_time=1)
    renewed = PERIOD_END + timedelta(days=30)
    new = written(subscription(items=[sub_item("prod_gold", "gold", renewed),
                                      sub_item("prod_silver", period_end=renewed)]),
                  now=PERIOD_END - timedelta(hours=1), view_time=2, stripe_event_id="evt_renewed")
    assert new.access_until != old.access_until

    assert changes_between(old, new) == []


def test_scheduled_cancellation_while_access_continues_announces_nothing():
    old = written(subscription(), view_time=1)
    new = written(subscription(cancel_at=NOW + timedelta(days=3)), view_time=2, stripe_event_id="evt_2")
    assert (new.state, new.grants) == ("canceling", True)

    assert changes_between(old, new) == []


def test_past_due_while_access_continues_announces_nothing():
    old = written(subscription(), view_time=1)
    new = written(subscription(status="past_due"), view_time=2, stripe_event_id="evt_2")

    assert changes_between(old, new) == []


@pytest.mark.parametrize("sub", [subscription(), subscription(status="canceled", ended_at=NOW)],
                         ids=["granting", "not_granting"])
def test_same_state_written_twice_announces_nothing(sub):
    old = written(sub, view_time=1)
    new = written(sub, view_time=2, stripe_event_id="evt_again")

    assert changes_between(old, new) == []


def test_write_with_no_new_image_announces_nothing():
    assert changes_between(written(subscription()), None) == []


# --- access ends ---------------------------------------------------------------------

@pytest.mark.parametrize("status, reason", [
    ("canceled", "subscription_canceled"),
    ("unpaid", "subscription_unpaid"),
    ("paused", "subscription_paused"),
    ("incomplete_expired", "subscription_incomplete"),
])
def test_subscription_that_stops_granting_announces_access_revoked_with_its_reason(status, reason):
    old = written(subscription(), view_time=1)
    new = written(subscription(status=status, ended_at=NOW), view_time=2, stripe_event_id="evt_ended")

    announcements = changes_between(old, new)

    assert [a.detail_type for a in announcements] == ["AccessRevoked", "AccessRevoked"]
    found = by_product(announcements)
    assert set(found) == {"gold", "prod_silver"}
    for a in found.values():
        assert a.detail["reason"] == reason == new.reason
        assert a.detail["stripe_event_id"] == "evt_ended"
        assert a.detail["subscription_id"] == "sub_1"


def test_cancel_announces_access_revoked_with_the_new_items_reason():
    old = written(subscription(cancel_at_period_end=True), view_time=1)
    new = written(subscription(status="canceled", ended_at=NOW), view_time=2, stripe_event_id="evt_deleted")

    announcements = changes_between(old, new)

    assert {(a.detail_type, a.detail["product_id"], a.detail["reason"]) for a in announcements} == {
        ("AccessRevoked", "gold", "subscription_canceled"),
        ("AccessRevoked", "prod_silver", "subscription_canceled"),
    }
    assert all(a.detail["access_until"] == "2026-11-24T16:00:00Z" for a in announcements)


def test_period_ending_announces_access_revoked_with_reason_period_ended():
    old = written(subscription(), view_time=1)
    after_end = PERIOD_END + timedelta(minutes=5)
    new = written(subscription(), now=after_end, view_time=2, stripe_event_id=None)
    assert (new.grants, new.reason) == (False, "period_ended")

    announcements = changes_between(old, new)

    assert {(a.detail_type, a.detail["product_id"], a.detail["reason"]) for a in announcements} == {
        ("AccessRevoked", "gold", "period_ended"),
        ("AccessRevoked", "prod_silver", "period_ended"),
    }
    assert all(a.detail["stripe_event_id"] is None for a in announcements)


def test_product_removed_while_the_subscription_grants_revokes_that_product_only():
    old = written(subscription(), view_time=1)
    new = written(subscription(items=[sub_item("prod_gold", "gold")]), view_time=2, stripe_event_id="evt_2")

    announcements = changes_between(old, new)

    assert len(announcements) == 1
    a = announcements[0]
    assert (a.detail_type, a.detail["product_id"], a.detail["reason"]) == (
        "AccessRevoked", "prod_silver", "product_removed")
    assert a.detail["stripe_event_id"] == "evt_2"


def test_product_added_grants_that_product_only():
    old = written(subscription(items=[sub_item("prod_gold", "gold")]), view_time=1)
    new = written(subscription(items=[sub_item("prod_gold", "gold"), sub_item("prod_bronze", "bronze")]),
                  view_time=2, stripe_event_id="evt_2")

    announcements = changes_between(old, new)

    assert len(announcements) == 1
    a = announcements[0]
    assert (a.detail_type, a.detail["product_id"], a.detail["reason"]) == (
        "AccessGranted", "bronze", "subscription_active")
    assert a.detail["access_until"] == "2026-12-24T16:00:00Z"


def test_product_swapped_revokes_the_old_and_grants_the_new():
    old = written(subscription(items=[sub_item("prod_gold", "gold")]), view_time=1)
    new = written(subscription(items=[sub_item("prod_bronze", "bronze")]), view_time=2)

    announcements = changes_between(old, new)

    assert {(a.detail_type, a.detail["product_id"], a.detail["reason"]) for a in announcements} == {
        ("AccessGranted", "bronze", "subscription_active"),
        ("AccessRevoked", "gold", "product_removed"),
    }


# --- change_id and detail ------------------------------------------------------------

def test_change_id_is_the_same_for_the_same_write():
    old = written(subscription(), view_time=1)
    new = written(subscription(status="canceled", ended_at=NOW), view_time=2, stripe_event_id="evt_2")
    # The stream delivers the same write again: the same images.
    again_old = written(subscription(), view_time=1)
    again_new = written(subscription(status="canceled", ended_at=NOW), view_time=2, stripe_event_id="evt_2")

    first = {a.detail["product_id"]: a.detail["change_id"] for a in changes_between(old, new)}
    second = {a.detail["product_id"]: a.detail["change_id"] for a in changes_between(again_old, again_new)}

    assert first == second
    assert len(set(first.values())) == 2  # one change per product


def test_change_id_differs_for_another_write_of_the_same_change():
    first = changes_between(written(subscription(), view_time=1),
                            written(subscription(status="canceled", ended_at=NOW), view_time=2))
    second = changes_between(written(subscription(), view_time=1),
                             written(subscription(status="canceled", ended_at=NOW), view_time=3))

    first_ids = {a.detail["change_id"] for a in first}
    second_ids = {a.detail["change_id"] for a in second}
    assert first_ids.isdisjoint(second_ids)


def test_grant_and_revoke_of_one_product_have_different_change_ids():
    granted, = changes_between(None, written(subscription(items=[sub_item("prod_gold", "gold")]), view_time=5))
    revoked, = changes_between(written(subscription(items=[sub_item("prod_gold", "gold")]), view_time=4),
                               written(subscription(status="canceled", ended_at=NOW,
                                                    items=[sub_item("prod_gold", "gold")]), view_time=5))

    assert granted.detail["change_id"] != revoked.detail["change_id"]


def test_change_id_is_a_uuid():
    for a in changes_between(None, written(subscription())):
        assert str(uuid.UUID(a.detail["change_id"])) == a.detail["change_id"]


def test_detail_has_exactly_the_contract_keys_and_is_json():
    granted = changes_between(None, written(subscription(), view_time=1))
    revoked = changes_between(written(subscription(), view_time=1),
                              written(subscription(status="unpaid"), view_time=2))
    removed = changes_between(written(subscription(), view_time=1),
                              written(subscription(items=[sub_item("prod_gold", "gold")]), view_time=2))

    for a in granted + revoked + removed:
        assert set(a.detail) == DETAIL_KEYS
        assert json.loads(json.dumps(a.detail)) == a.detail
