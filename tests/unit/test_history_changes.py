"""What one write of an entitlement adds to the member's access history
(chalicelib/history.py): one item per product whose state, access or
access_until changed, a removed product losing access, nothing otherwise."""
from datetime import datetime, timedelta, timezone

from chalicelib.access import PRODUCT_REMOVED, Product
from chalicelib.history import STRIPE_EVENT, SWEEP, Cause, Standing, changes

NOW = datetime(2026, 12, 6, 12, tzinfo=timezone.utc)
UNTIL = NOW + timedelta(days=30)
YOGA = Product("yoga", "prod_yoga", "Yoga")
SPIN = Product("spin", "prod_spin", "Spin")
EVENT = Cause(STRIPE_EVENT, "evt_1")


def standing(state="active", grants=True, until=UNTIL, products=(YOGA,)):
    return Standing(state, grants, until, tuple(products))


def summary(items):
    return [(i.product_id, i.from_state, i.to_state, i.to_access, i.reason, i.cause_kind, i.cause_id) for i in items]


def test_a_first_grant_is_one_change_from_nothing():
    items = changes("site_a", "user_ana", "sub_1", None, standing(), "subscription_active", EVENT, NOW)
    assert summary(items) == [("yoga", None, "active", True, "subscription_active", "stripe_event", "evt_1")]
    (item,) = items
    assert item.member_key == "site_a#user_ana" and item.product_name == "Yoga"
    assert item.change_key.endswith("#sub_1#yoga") and item.expires_at == NOW + timedelta(days=400)


def test_a_write_that_moves_nothing_adds_nothing_and_one_that_moves_the_date_adds_a_change():
    assert changes("site_a", "user_ana", "sub_1", standing(), standing(), "subscription_active", EVENT, NOW) == []
    renewed = changes("site_a", "user_ana", "sub_1", standing(), standing(until=UNTIL + timedelta(days=30)),
                      "subscription_active", EVENT, NOW)
    assert summary(renewed) == [("yoga", "active", "active", True, "subscription_active", "stripe_event", "evt_1")]
    assert renewed[0].from_access_until == UNTIL and renewed[0].to_access_until == UNTIL + timedelta(days=30)


def test_a_product_that_leaves_the_subscription_loses_access_now_and_a_new_one_starts_from_nothing():
    items = changes("site_a", "user_ana", "sub_1", standing(products=(YOGA,)), standing(products=(SPIN,)),
                    "subscription_active", EVENT, NOW)
    assert summary(items) == [("spin", None, "active", True, "subscription_active", "stripe_event", "evt_1"),
                              ("yoga", "active", "expired", False, PRODUCT_REMOVED, "stripe_event", "evt_1")]
    assert items[1].to_access_until == NOW


def test_an_unmatched_subscription_or_a_write_without_a_cause_has_no_history():
    assert changes("site_a", None, "sub_1", None, standing(), "subscription_active", EVENT, NOW) == []
    assert changes("site_a", "user_ana", "sub_1", None, standing(), "subscription_active", None, NOW) == []


def test_an_end_by_the_sweep_keeps_the_date_it_ended_on():
    ended = standing(state="expired", grants=False)
    (item,) = changes("site_a", "user_ana", "sub_1", standing(state="canceling"), ended, "period_ended",
                      Cause(SWEEP, "sweep_1"), NOW)
    assert (item.from_state, item.from_access, item.to_state, item.to_access, item.to_access_until) == (
        "canceling", True, "expired", False, UNTIL)
