"""What a new user noticed walking the first hour at 1280 and 360 px, in
Chromium: the finders show a whole email and user id; on a phone the menu
is as tall as its links on a short page; a member whose subscriptions were
on the site's earlier Stripe account is not told to subscribe first; a
member's access and its history give the same day for when access ended;
and before any account is connected the unmatched subscribers say there is
nothing to match yet."""
import json
import re

import pytest
from playwright.sync_api import Page, Route, expect

from local.run import LOCAL_MEMBER
from test_connectors_ui import open_connectors, sign_in, start_connecting, stripe_card
from test_first_hour import back_on_the_local_account, connect_a_new_account_at_stripe
from test_member_view import access_of
from tests.helpers import settled

EMAIL = LOCAL_MEMBER[1]
USER_ID = LOCAL_MEMBER[0]


def overflow(page: Page, selector: str) -> dict:
    return page.locator(selector).evaluate(
        "input => ({scroll: input.scrollWidth, client: input.clientWidth, width: input.offsetWidth})")


@pytest.mark.parametrize("width", [1280, 360])
def test_the_members_finders_show_a_whole_email_and_user_id(page, stack, step, width):
    page.set_viewport_size({"width": width, "height": 900})
    try:
        sign_in(page, "admin")
        page.goto("/settings/members")
        page.get_by_label("User id").fill(USER_ID)
        page.get_by_label("Customer's email").fill(EMAIL)
        step("both finders filled at %d px" % width)
        for selector in ("#find-user-id", "#find-email"):
            sizes = overflow(page, selector)
            assert sizes["scroll"] <= sizes["client"], (selector, sizes)
        # Nothing leaves the screen sideways.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


def test_on_a_phone_the_menu_is_as_tall_as_its_links_on_a_short_page(page, stack, step):
    page.set_viewport_size({"width": 360, "height": 800})
    try:
        sign_in(page, "admin")
        page.goto("/settings/members")
        expect(page.get_by_role("heading", level=1)).to_have_text("Members")
        step("the Members page, empty, at 360 px")
        spare = page.get_by_role("navigation", name="Main menu").evaluate("""nav => {
            const style = getComputedStyle(nav);
            const inside = nav.querySelector(':scope > ul').getBoundingClientRect().height;
            const around = ['paddingTop', 'paddingBottom', 'borderTopWidth', 'borderBottomWidth']
              .reduce((sum, name) => sum + parseFloat(style[name]), 0);
            return nav.getBoundingClientRect().height - inside - around;
        }""")
        assert spare <= 1, spare
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


def test_after_a_switch_a_member_with_subscriptions_on_the_old_account_is_not_told_to_subscribe_first(
        page, stack, step):
    back_on_the_local_account(stack)
    # One member whose subscription ended on the old account, one whose paid period goes on.
    stack.customer("paz@example.test", "user_paz")
    ended = stack.subscribe("paz@example.test", "Yoga")["id"]
    stack.dashboard("/dashboard/subscriptions/%s/cancel_now" % ended)
    stack.customer("quin@example.test", "user_quin")
    stack.subscribe("quin@example.test", "Pilates")
    settled(lambda: access_of(stack, "user_paz"), lambda a: [e["access"] for e in a] == [False])
    settled(lambda: access_of(stack, "user_quin"), lambda a: [e["access"] for e in a] == [True])
    try:
        sign_in(page, "admin")
        start_connecting(page, different_account=True)
        connect_a_new_account_at_stripe(page, "Harbour Swim Club")
        expect(stripe_card(page).get_by_text("Harbour Swim Club")).to_be_visible()

        sign_in(page, "member", user_id="user_paz", email="paz@example.test")
        billing = page.get_by_role("region", name="Billing")
        expect(billing).not_to_contain_text("Checking billing")
        expect(billing).not_to_contain_text("no billing to manage here yet")
        expect(billing).not_to_contain_text("Once you subscribe")
        expect(billing).to_contain_text("another Stripe account")
        expect(billing).to_contain_text("subscribe again")
        step("a member whose subscription ended on the old account")

        sign_in(page, "member", user_id="user_quin", email="quin@example.test")
        expect(billing).not_to_contain_text("Checking billing")
        expect(billing).not_to_contain_text("Once you subscribe")
        expect(billing).to_contain_text("another Stripe account")
        expect(billing).to_contain_text("until the date it shows")
        step("a member whose paid period goes on")
    finally:
        back_on_the_local_account(stack)


ENDED = "2027-01-06T12:00:00+00:00"
RECORDED = "2027-01-07T12:00:00+00:00"


def answer(route: Route, body: dict) -> None:
    route.fulfill(status=200, content_type="application/json", body=json.dumps(body))


@pytest.mark.parametrize("cause", [{"kind": "stripe_event", "id": "evt_ended"}, {"kind": "sweep", "id": "run_1"}])
def test_the_access_card_and_the_history_give_the_same_day_for_when_access_ended(page, stack, step, cause):
    # Recorded a day after the paid period ended: the moved clock's cancellation, or the sweep's next run.
    standing = {"state": "canceling", "access": True, "access_until": ENDED}
    history = {"next_cursor": None, "product_names": {"yoga": "Yoga"}, "history": [
        {"at": RECORDED, "product_id": "yoga", "subscription_id": "sub_1", "from": standing,
         "to": {"state": "expired", "access": False, "access_until": ENDED},
         "reason": "subscription_canceled" if cause["kind"] == "stripe_event" else "period_ended", "cause": cause}]}
    access = {"product_names": {"yoga": "Yoga"}, "entitlements": [
        {"product_id": "yoga", "stripe_product_id": "prod_1", "subscription_id": "sub_1", "state": "expired",
         "access": False, "access_until": ENDED, "member_from": "metadata"}]}
    page.route(re.compile(r"/access/history\?"), lambda route: answer(route, history))
    page.route(re.compile(r"/access$"), lambda route: answer(route, access))
    try:
        sign_in(page, "member")
        card = page.get_by_role("region", name="My access").get_by_role("listitem")
        expect(card).to_contain_text("No access since")
        since = re.search(r"No access since (.+)\.", card.inner_text()).group(1)
        line = page.get_by_role("region", name="History").get_by_role("listitem").first
        expect(line).to_contain_text("Access ended on")
        # The history leaves out this year's year: the same day, as far as it says.
        ended = line.locator("time").first.inner_text()
        assert since.startswith(ended), (since, line.inner_text())
        step("the same day in both")
    finally:
        page.unroute_all()


def test_before_any_account_is_connected_there_is_nothing_to_match(page, stack, step):
    stack.ensure_disconnected()
    try:
        sign_in(page, "admin")
        open_connectors(page)
        unmatched = page.get_by_role("region", name="Unmatched subscribers")
        expect(unmatched).to_contain_text("Nothing to match until a Stripe account is connected")
        expect(unmatched).not_to_contain_text("every subscription names a member")
        step("nothing to match while not connected")
    finally:
        back_on_the_local_account(stack)


def test_a_slow_answer_to_an_earlier_email_search_does_not_replace_the_later_ones(page, stack, step):
    stack.ensure_connected()
    held = []

    def hold_the_first(route: Route) -> None:
        if "slow%40example.test" in route.request.url:
            held.append(route)
        else:
            route.continue_()

    try:
        page.route(re.compile(r"/members\?email="), hold_the_first)
        sign_in(page, "admin")
        page.goto("/settings/members")
        finder = page.get_by_label("Customer's email")
        finder.fill("slow@example.test")
        page.get_by_role("button", name="Find customers").click()
        expect(page.get_by_text("Looking for customers…")).to_be_visible()
        finder.fill(EMAIL)
        page.get_by_role("button", name="Find customers").click()
        expect(page.get_by_text("One customer has this email:")).to_be_visible()
        assert len(held) == 1
        # The first search's answer comes last: it has no customer, and is not shown.
        held[0].continue_()
        page.wait_for_load_state("networkidle")
        expect(page.get_by_text("One customer has this email:")).to_be_visible()
        expect(page.get_by_text("No customer of the connected Stripe account has the email")).to_have_count(0)
        step("the later search's answer stays")
    finally:
        page.unroute_all()
