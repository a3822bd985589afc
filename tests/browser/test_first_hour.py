"""A newcomer's first hour in the reference UI, as README's "Your first hour"
walks it, in Chromium: the gear leads to Connectors from any page; switching
to a different Stripe account says beforehand what it replaces and what
happens to members, and afterwards which account replaced which (also when
two tabs switch at once, and when Stripe refuses the portal on the new
account); a reload of the page Stripe sends the admin back to says how the
connection went; the card's menu fits a phone; the banners say what is true
now, in red only for failures; the portal settings name every mistake at
once; a member reads their products by name; and the admin links an
unmatched subscriber to a member found by email. Each test arranges what it
needs through the API or the sandbox, and leaves the site connected to the
local account."""
import json
import re
from typing import List

import pytest
from playwright.sync_api import Page, Route, expect

from local.run import LOCAL_ACCOUNT
from test_connectors_ui import (PORTAL_ON, open_advanced_options, open_connectors, portal_on_the_local_account,
                                sign_in, start_connecting, stripe_card, until)

LOCAL_NAME = "Local Fitness Studio"
CALLBACK_API = "**/connectors/stripe/oauth/callback"
RED_BACKGROUND = "rgb(253, 236, 234)"
RED_TEXT = "rgb(180, 35, 24)"


def back_on_the_local_account(stack) -> None:
    card = stack.card()
    if card["status"] != "connected" or card["account"]["id"] != LOCAL_ACCOUNT:
        stack.connect(LOCAL_ACCOUNT)


def connect_a_new_account_at_stripe(page: Page, name: str) -> None:
    """On the sandbox's authorize page: a new account by that name, connected."""
    page.get_by_role("radio", name="New account").check()
    page.get_by_label("Display name").fill(name)
    page.get_by_role("button", name="Connect", exact=True).click()


def news(page: Page):
    """What the Connectors page says above the card."""
    return page.locator("main .messages")


def test_the_gear_on_the_connectors_page_keeps_the_connectors_link_in_sight(page, stack, step):
    sign_in(page, "admin")
    gear = page.get_by_role("button", name="Settings")
    connectors = page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Connectors")
    expect(gear).to_have_attribute("aria-expanded", "true")
    # The help article's first step, from the page an admin lands on.
    gear.click()
    expect(connectors).to_be_visible()
    expect(gear).to_have_attribute("aria-expanded", "true")
    gear.click()
    expect(connectors).to_be_visible()
    step("the gear pressed twice on Connectors")
    connectors.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Connectors")

    # Elsewhere the gear opens and folds the settings, and says which.
    page.get_by_role("link", name="Account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    expect(gear).to_have_attribute("aria-expanded", "false")
    expect(connectors).to_be_hidden()
    gear.click()
    expect(connectors).to_be_visible()
    expect(gear).to_have_attribute("aria-expanded", "true")
    gear.click()
    expect(connectors).to_be_hidden()
    expect(gear).to_have_attribute("aria-expanded", "false")


def test_connect_a_different_account_says_what_it_replaces_and_then_which_replaced_which(page, stack, step):
    portal_on_the_local_account(stack)
    try:
        sign_in(page, "admin")
        card = stripe_card(page)
        card.get_by_role("button", name="More actions").click()
        page.get_by_role("menuitem", name="Connect a different account").click()
        dialog = page.get_by_role("dialog", name="Connect Stripe to a different account")
        expect(dialog).to_contain_text("The account you choose at Stripe replaces %s on this site." % LOCAL_NAME)
        expect(dialog).to_contain_text("Members' access follows the new account's subscriptions once they are "
                                       "imported. What they paid for through %s lasts to the end of that period"
                                       % LOCAL_NAME)
        expect(dialog).to_contain_text("The billing portal's settings carry over to the new account")
        expect(dialog.get_by_label("Choose a different account")).to_be_checked()
        step("what switching replaces")
        dialog.get_by_role("button", name="Connect").click()
        connect_a_new_account_at_stripe(page, "Quay Paddle Club")

        done = page.get_by_role("status").filter(has_text="Stripe is connected")
        expect(done).to_contain_text("Now connected to Quay Paddle Club (replacing %s)." % LOCAL_NAME)
        expect(done).to_contain_text("Members' access now follows Quay Paddle Club's subscriptions")
        expect(card.get_by_text("Quay Paddle Club")).to_be_visible()
        expect(page.get_by_text("The connection had changed meanwhile")).to_have_count(0)
        step("which replaced which")
    finally:
        back_on_the_local_account(stack)


def test_when_stripe_refuses_the_portal_on_the_new_account_the_page_says_the_portal_is_off(page, stack, step):
    portal_on_the_local_account(stack)

    def portal_refused(route: Route) -> None:
        # As the API answers when Stripe refused the portal's configuration on the new account.
        answer = route.fetch()
        body = answer.json() if answer.status == 200 else None
        if body and body.get("status") == "connected" and body["account"]["id"] != LOCAL_ACCOUNT:
            body["settings"]["portal_enabled"] = False
            route.fulfill(response=answer, body=json.dumps(body))
        else:
            route.fulfill(response=answer)

    try:
        sign_in(page, "admin")
        start_connecting(page, different_account=True)
        page.route(re.compile(r"/connectors/stripe(/oauth/callback)?$"),
                   lambda route: portal_refused(route) if route.request.method in ("GET", "POST")
                   else route.continue_())
        connect_a_new_account_at_stripe(page, "Wharf Canoe Club")
        expect(page.get_by_role("status").filter(has_text="Stripe is connected")).to_contain_text(
            "Now connected to Wharf Canoe Club (replacing %s)." % LOCAL_NAME)
        off = page.get_by_role("alert").filter(has_text="The billing portal is off")
        expect(off).to_contain_text("Stripe refused to set the billing portal up on Wharf Canoe Club, so members "
                                    "don't see Billing.")
        expect(off).to_contain_text("turn it on again under Advanced options")
        expect(off).not_to_have_css("background-color", RED_BACKGROUND)
        expect(stripe_card(page).locator("dd").filter(has_text=re.compile("^Off$"))).to_be_visible()
        step("the portal is off, and why")
    finally:
        page.unroute_all()
        back_on_the_local_account(stack)


def test_two_tabs_switching_at_once_the_last_says_which_account_it_really_replaced(page, browser, stack, step):
    back_on_the_local_account(stack)
    other = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=stack.ui_url).new_page()
    try:
        for tab in (page, other):
            sign_in(tab, "admin")
            expect(stripe_card(tab).get_by_text(LOCAL_NAME)).to_be_visible()
            start_connecting(tab, different_account=True)

        connect_a_new_account_at_stripe(page, "Pier Sculling Club")
        expect(page.get_by_role("status").filter(has_text="Stripe is connected")).to_contain_text(
            "Now connected to Pier Sculling Club (replacing %s)." % LOCAL_NAME)

        connect_a_new_account_at_stripe(other, "Dock Kayak Club")
        expect(other.get_by_role("status").filter(has_text="Stripe is connected")).to_contain_text(
            "Now connected to Dock Kayak Club (replacing Pier Sculling Club).")
        meanwhile = other.get_by_role("alert").filter(has_text="The connection had changed meanwhile")
        expect(meanwhile).to_contain_text("When you pressed Connect, %s was connected, but Pier Sculling Club was "
                                          "connected since, in another tab or by another admin" % LOCAL_NAME)
        expect(stripe_card(other).get_by_text("Dock Kayak Club")).to_be_visible()
        step("the first tab, after the second")
    finally:
        other.context.close()
        back_on_the_local_account(stack)


def test_reloading_the_page_stripe_sent_back_to_while_it_completes_says_it_connected(page, browser, stack, step):
    back_on_the_local_account(stack)
    held: List[Route] = []

    def hold(route: Route) -> None:
        # The first answer is held for good; the page after the reload asks again.
        if route.request.method == "POST" and not held:
            held.append(route)
        else:
            route.continue_()

    try:
        sign_in(page, "admin")
        start_connecting(page, different_account=True)
        page.route(CALLBACK_API, hold)
        connect_a_new_account_at_stripe(page, "Slip Rowing Club")
        expect(page.get_by_text("Completing the connection with Stripe")).to_be_visible()
        until(lambda: bool(held), lambda: page.wait_for_timeout(200))
        callback = page.url
        # The API completes the connection, but its answer never reaches the page: the admin reloads first.
        assert held[0].fetch().status == 200
        page.reload()

        done = page.get_by_role("status").filter(has_text="Stripe is connected")
        expect(done).to_contain_text("Now connected to Slip Rowing Club (replacing %s)." % LOCAL_NAME)
        expect(news(page).get_by_role("alert")).to_have_count(0)
        expect(page).to_have_url(re.compile("/settings/connectors$"))
        expect(stripe_card(page).get_by_text("Slip Rowing Club")).to_be_visible()
        step("reloaded while completing")

        # The same link again in this tab: how it went, not an error.
        page.goto(callback)
        again = page.get_by_role("status").filter(has_text="Stripe is already connected")
        expect(again).to_contain_text("This link back from Stripe was used in this tab already.")
        expect(news(page).get_by_role("alert")).to_have_count(0)
        step("the used link again")

        # Another tab never sent it: there the used link is refused, and nothing changes.
        other = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=stack.ui_url).new_page()
        try:
            sign_in(other, "admin")
            other.goto(callback)
            expect(news(other).get_by_role("alert")).to_contain_text("This link has expired or was already used")
            expect(stripe_card(other).get_by_text("Slip Rowing Club")).to_be_visible()
        finally:
            other.context.close()
    finally:
        page.unroute_all()
        back_on_the_local_account(stack)


@pytest.mark.parametrize("width", [360, 414])
def test_the_cards_more_actions_menu_opens_inside_a_narrow_screen(page, stack, step, width):
    stack.ensure_connected()
    page.set_viewport_size({"width": width, "height": 800})
    try:
        sign_in(page, "admin")
        open_connectors(page)
        stripe_card(page).get_by_role("button", name="More actions").click()
        items = page.get_by_role("menu", name="More actions").get_by_role("menuitem")
        expect(items).to_have_count(3)
        step("the menu at %d px" % width)
        for index in range(3):
            box = items.nth(index).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, (items.nth(index).inner_text(), box)
        page.keyboard.press("Escape")
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


def test_the_banner_stops_saying_being_imported_once_the_card_says_imported(page, stack, step):
    stack.ensure_disconnected()
    try:
        sign_in(page, "admin")
        expect(stripe_card(page).get_by_text("Not connected")).to_be_visible()
        start_connecting(page)
        page.get_by_role("radio", name=re.compile(LOCAL_NAME)).check()
        page.get_by_role("button", name="Connect", exact=True).click()
        done = page.get_by_role("status").filter(has_text="Stripe is connected")
        expect(done).to_contain_text("Connected to %s." % LOCAL_NAME)
        expect(stripe_card(page).get_by_text(re.compile(r"^Imported \d+ subscriptions? "))).to_be_visible()
        expect(done).to_contain_text("Its subscriptions are imported")
        expect(done).not_to_contain_text("being imported")
        step("imported, in both places")
    finally:
        back_on_the_local_account(stack)


def test_a_card_read_that_fails_while_importing_is_tried_again_and_the_card_ends_imported(page, stack, step):
    back_on_the_local_account(stack)
    reads = []

    def flaky(route: Route) -> None:
        # As the API answers: importing first, then one read lost (a 503 on
        # the way), then the card as it is.
        if route.request.method != "GET":
            route.continue_()
            return
        reads.append(route.request.url)
        if len(reads) == 2:
            route.fulfill(status=503, content_type="application/json",
                          body=json.dumps({"error": {"code": "internal_error", "message": "Try again."}}))
            return
        answer = route.fetch()
        body = answer.json()
        if len(reads) == 1:
            body["sync"] = dict(body["sync"], state="importing", finished_at=None)
        route.fulfill(response=answer, body=json.dumps(body))

    try:
        page.route(re.compile(r"/connectors/stripe$"), flaky)
        sign_in(page, "admin")
        card = stripe_card(page)
        expect(card.get_by_text(re.compile(r"^Imported \d+ subscriptions? "))).to_be_visible(timeout=15_000)
        assert len(reads) >= 3, reads
        expect(page.get_by_role("alert")).to_have_count(0)
        step("imported, after a lost read")
    finally:
        page.unroute_all()


def test_cancelling_at_stripe_and_a_disconnect_read_as_news_not_as_errors(page, stack, step):
    back_on_the_local_account(stack)
    try:
        sign_in(page, "admin")
        start_connecting(page)
        page.get_by_role("button", name="Decline").click()
        cancelled = page.get_by_role("status").filter(has_text="You cancelled at Stripe")
        expect(cancelled).to_contain_text("Nothing was connected or changed")
        expect(cancelled).not_to_have_css("background-color", RED_BACKGROUND)
        expect(news(page).get_by_role("alert")).to_have_count(0)
        step("cancelled at Stripe")

        stack.ensure_disconnected()
        page.reload()
        reason = stripe_card(page).get_by_text("An admin disconnected it.")
        expect(reason).to_be_visible()
        expect(reason).not_to_have_css("color", RED_TEXT)
        step("disconnected")
    finally:
        back_on_the_local_account(stack)


def test_the_portal_settings_name_every_mistake_at_once_beside_its_field(page, stack, step):
    stack.ensure_connected()
    before = stack.card()["settings"]
    sign_in(page, "admin")
    open_connectors(page)
    open_advanced_options(page)
    page.get_by_label("Enable Stripe Customer Portal").check()
    privacy = page.get_by_label("Privacy Policy URL")
    terms = page.get_by_label("Terms of Service URL")
    days = page.get_by_label("Days of access while a payment is retried")
    privacy.fill("javascript:alert(document.domain)")
    terms.fill("http://localfitness.test/terms")
    days.fill("61")
    page.get_by_role("button", name="Save").click()
    for field in (privacy, terms, days):
        expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#privacy-policy-url-error")).to_have_text("Privacy Policy URL must be an absolute https URL")
    expect(page.locator("#terms-of-service-url-error")).to_have_text(
        "Terms of Service URL must be an absolute https URL")
    expect(page.locator("#past-due-grace-days-error")).to_have_text(
        "Days of access while a payment is retried must be from 0 to 60")
    expect(page.get_by_text("Not saved: 3 fields need fixing.")).to_be_visible()
    expect(privacy).to_be_focused()
    step("three mistakes at once")

    privacy.fill("")
    terms.fill("")
    days.fill("14")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#privacy-policy-url-error")).to_have_text("Enabling the portal needs the Privacy Policy URL")
    expect(page.locator("#terms-of-service-url-error")).to_have_text(
        "Enabling the portal needs the Terms of Service URL")
    expect(days).not_to_have_attribute("aria-invalid", "true")
    assert stack.card()["settings"] == before
    step("both URLs missing")

    privacy.fill(PORTAL_ON["privacy_policy_url"])
    terms.fill(PORTAL_ON["terms_of_service_url"])
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved. Members now find Billing in their profile menu.")).to_be_visible()
    for field in (privacy, terms, days):
        expect(field).not_to_have_attribute("aria-invalid", "true")


def test_a_member_reads_their_products_by_name_without_stripes_ids(page, stack, step):
    stack.ensure_connected()
    stack.customer("yan@example.test", "user_yan")
    stack.subscribe("yan@example.test", "Yoga")
    sign_in(page, "member", user_id="user_yan", email="yan@example.test")
    access = page.get_by_role("region", name="My access")
    history = page.get_by_role("region", name="History")
    # Refresh reads the access and the history at once: a webhook handled
    # between the two reads shows the one before the other.
    until(lambda: access.get_by_role("listitem").count() == 1 and history.get_by_role("listitem").count() == 1,
          lambda: page.get_by_role("button", name="Refresh").click())
    expect(access.get_by_role("heading", name="Yoga", exact=True)).to_be_visible()
    expect(access).to_contain_text("Active")
    expect(access).not_to_contain_text("prod_")
    expect(access).not_to_contain_text("yoga")
    expect(history.get_by_role("listitem").first).to_have_text(re.compile("^Yoga: Access granted"))
    step("the member's products by name")


def test_admin_links_an_unmatched_subscriber_to_a_member_found_by_email(page, stack, step):
    stack.ensure_connected()
    stack.customer("uma@example.test", "user_uma")
    stack.dashboard("/dashboard/accounts/%s/customers" % LOCAL_ACCOUNT, email="otto@example.test")
    subscription = stack.subscribe("otto@example.test", "Kayaking")["id"]
    sign_in(page, "admin")
    open_connectors(page)
    row = page.get_by_role("row").filter(has_text="otto@example.test")
    until(lambda: row.count() == 1, lambda: page.get_by_role("button", name="Refresh unmatched subscribers").click())

    row.get_by_role("button", name="Link").click()
    dialog = page.get_by_role("dialog", name="Link a subscriber")
    dialog.get_by_label("Find the member by email").fill("nobody-at-all@example.test")
    dialog.get_by_role("button", name="Find the member by email").click()
    expect(dialog).to_contain_text("No member of this site has a Stripe customer with the email "
                                   "nobody-at-all@example.test.")
    dialog.get_by_label("Find the member by email").fill("uma@example.test")
    dialog.get_by_role("button", name="Find the member by email").click()
    found = dialog.get_by_role("radio", name=re.compile("^user_uma"))
    expect(found).to_be_checked()
    expect(dialog.get_by_label("Member's user id")).to_have_value("user_uma")
    step("the member found by email")
    dialog.get_by_role("button", name="Link", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Linked otto@example.test to user_uma")).to_contain_text(
        "they have access to Kayaking.")
    expect(row).to_have_count(0)
    access = stack.admin("GET", "/access/user_uma").json()["entitlements"]
    assert [(e["subscription_id"], e["access"]) for e in access] == [(subscription, True)]
    step("linked")
