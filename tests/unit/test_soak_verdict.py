"""What `make soak` holds the connector to: mismatches between the API and
the access rules, flips of the stored entitlements, and the announcements'
sequences, as pure functions of what the soak saw."""
import itertools
from datetime import datetime, timedelta, timezone

from soak import verdict
from soak.verdict import GRANTED, REVOKED, Holding

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=timezone.utc)
SITE = "site_local"
CHANGES = itertools.count()


def ts(moment):
    return int(moment.timestamp())


def subscription(user="ana", products=("yoga",), status="active", ends=NOW + timedelta(days=30),
                 cancel_at_period_end=False, sub_id="sub_1"):
    return {
        "id": sub_id, "object": "subscription", "status": status, "cancel_at_period_end": cancel_at_period_end,
        "cancel_at": None, "ended_at": ts(NOW) if status == "canceled" else None, "metadata": {},
        "customer": {"id": "cus_1", "object": "customer", "metadata": {"customerhub_user_id": user}},
        "items": {"object": "list", "data": [
            {"id": "si_%s" % p, "current_period_end": ts(ends),
             "price": {"id": "price_%s" % p, "product": {"id": "prod_%s" % p, "metadata": {"customerhub_product_id": p}}}}
            for p in products]},
    }


def image(sub_id, grants, products, user="ana"):
    return {"site_id": SITE, "user_id": user, "subscription_id": sub_id, "grants": grants,
            "products": [{"product_id": p, "stripe_product_id": "prod_" + p} for p in products]}


def heard(kind, product="yoga", change_id=None, user="ana"):
    return {"type": kind, "change_id": change_id or "change_%d" % next(CHANGES),
            "site_id": SITE, "user_id": user, "product_id": product}


# The access rules against the API

def test_an_active_subscription_grants_each_of_its_products_until_its_period_ends():
    expected = verdict.expected_holdings(SITE, [subscription(products=("yoga", "swim"))], NOW)
    until = NOW + timedelta(days=30)
    assert expected == {(SITE, "ana", "yoga"): Holding(True, until, "active"),
                        (SITE, "ana", "swim"): Holding(True, until, "active")}


def test_a_canceled_subscription_holds_its_products_without_access():
    expected = verdict.expected_holdings(SITE, [subscription(status="canceled")], NOW)
    assert expected == {(SITE, "ana", "yoga"): verdict.NO_ACCESS}


def test_of_two_subscriptions_to_one_product_the_one_granting_longest_stands():
    longer = NOW + timedelta(days=60)
    expected = verdict.expected_holdings(SITE, [
        subscription(sub_id="sub_1", cancel_at_period_end=True),
        subscription(sub_id="sub_2", ends=longer),
        subscription(sub_id="sub_3", status="unpaid")], NOW)
    assert expected == {(SITE, "ana", "yoga"): Holding(True, longer, "active")}


def test_an_api_answer_is_read_as_holdings():
    answer = {"entitlements": [
        {"product_id": "yoga", "state": "canceling", "access": True, "access_until": "2026-12-24T16:00:00Z"},
        {"product_id": "swim", "state": "expired", "access": False, "access_until": "2026-11-01T00:00:00Z"}]}
    assert verdict.observed_holdings(SITE, "ana", answer) == {
        (SITE, "ana", "yoga"): Holding(True, datetime(2026, 12, 24, 16, 0, tzinfo=timezone.utc), "canceling"),
        (SITE, "ana", "swim"): verdict.NO_ACCESS}


def test_a_pair_is_a_mismatch_when_access_or_its_end_or_state_differ():
    until = NOW + timedelta(days=30)
    pair = lambda product: (SITE, "ana", product)  # noqa: E731
    expected = {pair("yoga"): Holding(True, until, "active"), pair("swim"): Holding(True, until, "active"),
                pair("spin"): Holding(True, until, "active"), pair("box"): verdict.NO_ACCESS,
                pair("same"): Holding(True, until, "past_due")}
    observed = {pair("yoga"): verdict.NO_ACCESS, pair("swim"): Holding(True, until, "canceling"),
                pair("spin"): Holding(True, until + timedelta(days=1), "active"),
                pair("same"): Holding(True, until, "past_due"), pair("gym"): Holding(True, until, "active")}
    found = verdict.mismatches(expected, observed)
    assert [m.pair[2] for m in found] == ["gym", "spin", "swim", "yoga"]


# Flips of the stored entitlements

def test_each_write_that_turns_a_product_on_or_off_is_a_flip():
    writes = [
        (None, image("sub_1", True, ["yoga", "swim"])),
        (image("sub_1", True, ["yoga", "swim"]), image("sub_1", True, ["yoga", "swim"])),  # a renewal
        (image("sub_1", True, ["yoga", "swim"]), image("sub_1", True, ["yoga"])),         # swim removed
        (image("sub_1", True, ["yoga"]), image("sub_1", False, ["yoga"])),                 # canceled
        (None, image("sub_2", False, ["spin"])),                                           # never granted
    ]
    assert verdict.flips_of(writes) == {(SITE, "ana", "yoga"): 2, (SITE, "ana", "swim"): 2}


def test_a_product_held_through_two_subscriptions_flips_only_when_neither_grants_it():
    writes = [
        (None, image("sub_1", True, ["yoga"])),
        (None, image("sub_2", True, ["yoga"])),
        (image("sub_1", True, ["yoga"]), image("sub_1", False, ["yoga"])),
        (image("sub_2", True, ["yoga"]), image("sub_2", False, ["yoga"])),
    ]
    assert verdict.flips_of(writes) == {(SITE, "ana", "yoga"): 2}


def test_members_are_kept_apart():
    writes = [(None, image("sub_1", True, ["yoga"], user="ana")), (None, image("sub_2", True, ["yoga"], user="bo"))]
    assert verdict.flips_of(writes) == {(SITE, "ana", "yoga"): 1, (SITE, "bo", "yoga"): 1}


# Announcements

def test_announcements_are_counted_once_per_change_id():
    seen = verdict.announcements_of([heard(GRANTED, change_id="c1"), heard(GRANTED, change_id="c1"),
                                     heard(REVOKED, change_id="c2")])
    assert (seen.received, seen.repeats, seen.notifications) == (3, 1, 2)
    assert [m["type"] for m in seen.by_pair[(SITE, "ana", "yoga")]] == [GRANTED, REVOKED]


def test_announcements_alternating_from_a_grant_and_ending_on_the_final_access_are_in_order():
    seen = verdict.announcements_of([heard(GRANTED), heard(REVOKED), heard(GRANTED), heard(GRANTED, "swim"),
                                     heard(REVOKED, "swim")])
    expected = {(SITE, "ana", "yoga"): Holding(True, NOW, "active"), (SITE, "ana", "swim"): verdict.NO_ACCESS}
    assert verdict.sequence_errors(seen, expected) == []


def test_a_second_grant_a_first_revoke_or_a_last_word_against_the_final_access_is_an_error():
    seen = verdict.announcements_of([heard(GRANTED), heard(GRANTED), heard(REVOKED, "swim"),
                                     heard(GRANTED, "spin")])
    expected = {(SITE, "ana", "spin"): verdict.NO_ACCESS, (SITE, "ana", "gym"): Holding(True, NOW, "active")}
    errors = verdict.sequence_errors(seen, expected)
    assert errors == ["site_local/ana gym: heard nothing, but access is now granted",
                      "site_local/ana spin: heard Granted, but access is now not granted",
                      "site_local/ana swim: heard Revoked",
                      "site_local/ana yoga: heard Granted, Granted"]


def test_pairs_whose_notifications_and_flips_differ_are_listed():
    pair = lambda product: (SITE, "ana", product)  # noqa: E731
    assert verdict.count_differences({pair("yoga"): 2, pair("swim"): 1}, {pair("yoga"): 2, pair("spin"): 1}) == [
        "site_local/ana spin: 0 notifications, 1 flips", "site_local/ana swim: 1 notifications, 0 flips"]
