"""The reference CustomerHub UI in Chromium, driven as a person would: the
admin connects Stripe through the sandbox's authorize page, declines,
replays a used link, sets up the portal, links an unmatched subscriber,
disconnects and connects another account; a member opens Billing and
cancels in the portal. Each test arranges what it needs through the API
or the sandbox's dashboard, so each also runs alone."""
import re
import time
from typing import Callable, List
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from playwright.sync_api import Page, expect

from local.run import LOCAL_ACCOUNT, LOCAL_MEMBER

CALLBACK_PAGE = "/settings/connectors/stripe/callback"
GREEN = "rgb(34, 161, 85)"
GRACE_LABEL = "Days of access while a payment is retried"
PORTAL_ON = {"portal_enabled": True, "privacy_policy_url": "https://localfitness.test/privacy",
             "terms_of_service_url": "https://localfitness.test/terms", "allow_cancel": True}


def sign_in(page: Page, role: str, user_id: str = None, email: str = None) -> None:
    page.goto("/")
    page.get_by_role("radio", name="Member" if role == "member" else "Site admin").check()
    if user_id:
        page.get_by_label("User id").fill(user_id)
    if email:
        page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account" if role == "member" else "Connectors")


def stripe_card(page: Page):
    return page.get_by_role("region", name="Stripe")


def open_connectors(page: Page) -> None:
    page.goto("/settings/connectors")
    expect(stripe_card(page).get_by_role("heading", name="Stripe")).to_be_visible()
    expect(stripe_card(page)).not_to_have_attribute("aria-busy", "true")


def start_connecting(page: Page, different_account: bool = False) -> None:
    card = stripe_card(page)
    if card.get_by_role("button", name="Connect", exact=True).count():
        card.get_by_role("button", name="Connect", exact=True).click()
    else:
        card.get_by_role("button", name="More actions").click()
        page.get_by_role("menuitem", name="Connect a different account").click()
    dialog = page.get_by_role("dialog", name="Connect Stripe")
    expect(dialog).to_be_visible()
    if different_account:
        dialog.get_by_label("Choose a different account").check()
    dialog.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("heading", name="Connect your Stripe account")).to_be_visible()


def callback_addresses(page: Page) -> List[str]:
    """The callback page's addresses the tab goes to from now on, as Stripe's
    redirect and the API's bounce send it there."""
    seen: List[str] = []
    page.on("request", lambda request: seen.append(request.url)
            if request.is_navigation_request() and CALLBACK_PAGE + "?" in request.url else None)
    return seen


def open_advanced_options(page: Page) -> None:
    options = page.locator("details", has=page.get_by_text("Advanced options"))
    if options.get_attribute("open") is None:
        page.get_by_text("Advanced options").click()


def keep_grace_days(stack, days: int) -> None:
    settings = stack.card()["settings"]
    answer = stack.admin("PUT", "/connectors/stripe/settings", json=dict(settings, past_due_grace_days=days))
    assert answer.status_code == 200, answer.text


def portal_on_the_local_account(stack) -> None:
    card = stack.card()
    if card["status"] != "connected" or card["account"]["id"] != LOCAL_ACCOUNT:
        stack.connect(LOCAL_ACCOUNT)
    answer = stack.admin("PUT", "/connectors/stripe/settings", json=PORTAL_ON)
    assert answer.status_code == 200, answer.text


def open_profile_menu(page: Page):
    """The profile menu, open, once it has asked whether Billing belongs in it."""
    page.get_by_role("button", name="Profile").click()
    menu = page.get_by_role("menu", name="Profile")
    expect(menu).to_be_visible()
    expect(menu).not_to_have_attribute("aria-busy", "true")
    return menu


def until(check: Callable[[], bool], refresh: Callable[[], None], tries: int = 20) -> None:
    """What arrives by webhook shows after a refresh or two."""
    for _ in range(tries):
        if check():
            return
        refresh()
        time.sleep(0.5)
    assert check()


def test_admin_connects_through_stripes_authorize_page_and_the_card_turns_green_with_the_name(page, stack, step):
    stack.ensure_disconnected()
    subscription = stack.subscribe(LOCAL_MEMBER[1], "Yoga")
    sign_in(page, "admin")
    page.get_by_role("link", name="Account").click()
    page.get_by_role("button", name="Settings").click()
    page.get_by_role("link", name="Connectors").click()
    expect(stripe_card(page).get_by_text("Not connected")).to_be_visible()
    step("connectors, not connected")

    start_connecting(page)
    step("the sandbox's authorize page")
    page.get_by_role("radio", name=re.compile("Local Fitness Studio")).check()
    page.get_by_role("button", name="Connect", exact=True).click()

    expect(page.get_by_role("status").filter(has_text="Stripe is connected")).to_be_visible()
    card = stripe_card(page)
    expect(card.get_by_text("Connected", exact=True)).to_be_visible()
    expect(card.get_by_text("Local Fitness Studio")).to_be_visible()
    expect(card).to_have_css("border-top-color", GREEN)
    # The import of the subscriptions made before the connection (this one, and
    # those of tests that ran earlier on this stack), counted as Stripe has them.
    grantable = stack.grantable_subscriptions()
    assert subscription["id"] in grantable
    imported = card.get_by_text(re.compile(r"^Imported \d+ subscriptions? "))
    expect(imported).to_have_text(re.compile(r"^Imported %d subscriptions? .*: (\d+) matched to members, (\d+) "
                                             r"unmatched" % len(grantable)))
    matched, unmatched = map(int, re.search(r"(\d+) matched to members, (\d+) unmatched",
                                            imported.inner_text()).groups())
    assert matched + unmatched == len(grantable) and matched >= 1
    expect(page).to_have_url(re.compile("/settings/connectors$"))
    step("connected")


def test_declining_at_stripe_says_you_cancelled_and_changes_nothing(page, stack, step):
    stack.ensure_connected()
    sign_in(page, "admin")
    start_connecting(page)
    page.get_by_role("button", name="Decline").click()
    cancelled = page.get_by_role("status").filter(has_text="You cancelled at Stripe")
    expect(cancelled).to_contain_text("Nothing was connected or changed")
    expect(stripe_card(page).get_by_text("Local Fitness Studio")).to_be_visible()
    step("declined")
    # Said once: a reload shows the card without the old news.
    page.reload()
    expect(stripe_card(page).get_by_text("Local Fitness Studio")).to_be_visible()
    expect(page.get_by_text("You cancelled at Stripe")).to_have_count(0)


def test_a_used_link_back_from_stripe_is_refused_when_opened_again(page, stack, step):
    stack.ensure_connected()
    sign_in(page, "admin")
    addresses = callback_addresses(page)
    start_connecting(page)
    page.get_by_role("button", name="Connect", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Stripe is connected")).to_be_visible()
    assert addresses and "code=" in addresses[-1], addresses
    step("connected once")

    page.goto(addresses[-1])
    # This tab used it: the page says how that went, not that the link failed.
    expect(page.get_by_role("status").filter(has_text="Stripe is already connected")).to_contain_text(
        "This link back from Stripe was used in this tab already.")
    expect(stripe_card(page).get_by_text("Connected", exact=True)).to_be_visible()
    step("the same link refused")


def test_an_error_stripe_sends_back_says_stripe_failed(page, stack, step):
    stack.ensure_connected()
    sign_in(page, "admin")
    start_connecting(page)
    state = parse_qs(urlsplit(page.url).query)["state"][0]
    # As Stripe redirects when it fails on its side, with the state it was given.
    page.goto("%s?%s" % (CALLBACK_PAGE, urlencode({
        "error": "server_error", "error_description": "An unexpected error occurred", "state": state})))
    expect(page.get_by_role("alert")).to_contain_text("Stripe failed")
    expect(page.get_by_role("alert")).to_contain_text("nothing was changed")
    expect(stripe_card(page).get_by_text("Local Fitness Studio")).to_be_visible()
    step("Stripe failed")


def test_portal_settings_show_the_apis_error_beside_a_javascript_url_then_save_good_ones(page, stack, step):
    stack.ensure_connected()
    sign_in(page, "admin")
    open_connectors(page)
    options = page.locator("details", has=page.get_by_text("Advanced options"))
    if options.get_attribute("open") is None:
        page.get_by_text("Advanced options").click()
    page.get_by_label("Enable Stripe Customer Portal").check()
    page.get_by_label("Privacy Policy URL").fill("javascript:alert(document.domain)")
    page.get_by_label("Terms of Service URL").fill("https://localfitness.test/terms")
    page.get_by_label("Allow users to cancel subscriptions?").check()
    page.get_by_role("button", name="Save").click()

    privacy = page.get_by_label("Privacy Policy URL")
    expect(privacy).to_have_attribute("aria-invalid", "true")
    expect(privacy).to_be_focused()
    expect(page.locator("#privacy-policy-url-error")).to_have_text("Privacy Policy URL must be an absolute https URL")
    expect(page.get_by_label("Terms of Service URL")).not_to_have_attribute("aria-invalid", "true")
    assert stack.card()["settings"]["portal_enabled"] is False
    step("the javascript URL refused beside its field")

    privacy.fill("https://localfitness.test/privacy")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved. Members now find Billing in their profile menu.")).to_be_visible()
    expect(privacy).not_to_have_attribute("aria-invalid", "true")
    expect(stripe_card(page).get_by_text("On", exact=True)).to_be_visible()
    assert dict(stack.card()["settings"], past_due_grace_days=None) == {
        "portal_enabled": True, "privacy_policy_url": "https://localfitness.test/privacy",
        "terms_of_service_url": "https://localfitness.test/terms", "allow_cancel": True,
        "past_due_grace_days": None}
    step("saved")


def test_admin_saves_the_days_of_access_while_a_payment_is_retried_and_reads_them_back_after_a_reload(
        page, stack, step):
    stack.ensure_connected()
    sign_in(page, "admin")
    open_connectors(page)
    open_advanced_options(page)
    days = page.get_by_label(GRACE_LABEL)
    expect(days).to_have_value(str(stack.card()["settings"]["past_due_grace_days"]))
    try:
        days.fill("30")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status").filter(has_text=re.compile("^Saved"))).to_be_visible()
        expect(days).not_to_have_attribute("aria-invalid", "true")
        assert stack.card()["settings"]["past_due_grace_days"] == 30
        step("saved 30 days")

        page.reload()
        expect(stripe_card(page)).not_to_have_attribute("aria-busy", "true")
        open_advanced_options(page)
        expect(page.get_by_label(GRACE_LABEL)).to_have_value("30")
        step("30 days after a reload")
    finally:
        keep_grace_days(stack, 14)


def test_61_days_of_access_while_a_payment_is_retried_show_the_apis_error_beside_the_field(page, stack, step):
    stack.ensure_connected()
    before = stack.card()
    sign_in(page, "admin")
    open_connectors(page)
    open_advanced_options(page)
    days = page.get_by_label(GRACE_LABEL)
    days.fill("61")
    page.get_by_role("button", name="Save").click()
    expect(days).to_have_attribute("aria-invalid", "true")
    expect(days).to_be_focused()
    expect(page.locator("#past-due-grace-days-error")).to_have_text(GRACE_LABEL + " must be from 0 to 60")
    expect(page.get_by_text("Not saved: %s must be from 0 to 60" % GRACE_LABEL)).to_be_visible()
    assert stack.card()["settings"] == before["settings"]
    step("61 days refused beside the field")


def test_while_disconnected_the_admin_saves_the_settings_for_the_next_connection_with_the_portal_off(
        page, stack, step):
    stack.ensure_disconnected()
    sign_in(page, "admin")
    open_connectors(page)
    open_advanced_options(page)
    expect(page.get_by_label("Enable Stripe Customer Portal")).to_be_disabled()
    try:
        page.get_by_label(GRACE_LABEL).fill("20")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Saved. They apply once Stripe is connected.")).to_be_visible()
        card = stack.card()
        assert (card["status"], card["settings"]["past_due_grace_days"]) == ("disconnected", 20)
        step("saved while disconnected")
    finally:
        keep_grace_days(stack, 14)


def test_billing_shows_only_for_a_member_stripe_knows_and_opens_the_portal(page, stack, step):
    portal_on_the_local_account(stack)
    sign_in(page, "member", user_id="user_nobody", email="nobody@localfitness.test")
    billing = page.get_by_role("region", name="Billing")
    expect(billing).to_contain_text("You have no billing to manage here yet")
    menu = open_profile_menu(page)
    expect(menu.get_by_role("menuitem", name="My access")).to_be_visible()
    expect(menu.get_by_role("menuitem", name="Billing")).to_have_count(0)
    step("no Billing for a member with no Stripe customer")
    page.keyboard.press("Escape")

    sign_in(page, "member")
    expect(billing).to_contain_text("Choose Billing in the Profile menu")
    menu = open_profile_menu(page)
    expect(menu.get_by_role("menuitem").first).to_have_text("Billing")
    step("Billing for the member Stripe knows")
    menu.get_by_role("menuitem", name="Billing").click()
    expect(page.get_by_role("heading", name="Billing portal")).to_be_visible()
    step("the portal")


def test_member_opens_billing_cancels_in_the_portal_and_comes_back(page, stack, step):
    stack.ensure_connected()
    answer = stack.admin("PUT", "/connectors/stripe/settings", json={
        "portal_enabled": True, "privacy_policy_url": "https://localfitness.test/privacy",
        "terms_of_service_url": "https://localfitness.test/terms", "allow_cancel": True})
    assert answer.status_code == 200, answer.text
    stack.subscribe(LOCAL_MEMBER[1], "Pilates")
    sign_in(page, "member")
    pilates = page.locator("li", has=page.get_by_role("heading", name="pilates"))
    until(lambda: pilates.count() == 1, lambda: page.get_by_role("button", name="Refresh").click())
    expect(pilates).to_contain_text("Active")
    step("the member's access")

    page.get_by_role("button", name="Profile").click()
    expect(page.get_by_role("menu", name="Profile")).to_be_visible()
    page.get_by_role("menuitem", name="Billing").click()
    expect(page.get_by_role("heading", name="Billing portal")).to_be_visible()
    step("the sandbox's portal")
    page.get_by_role("link", name="Cancel subscription Pilates").click()
    page.get_by_role("radio", name="It\u2019s too expensive").check()
    page.get_by_role("button", name="Cancel subscription").click()
    expect(page.get_by_role("status")).to_contain_text("Your Pilates subscription will end on")
    step("cancelled in the portal")

    page.get_by_role("link", name=re.compile("^Return to")).click()
    expect(page).to_have_url(stack.ui_url + "/account")
    until(lambda: "Canceling" in pilates.inner_text(), lambda: page.get_by_role("button", name="Refresh").click())
    expect(pilates).to_contain_text("the subscription does not renew")
    step("back on the account page")


def test_admin_links_an_unmatched_subscriber_to_a_member(page, stack, step):
    stack.ensure_connected()
    stack.dashboard("/dashboard/accounts/%s/customers" % LOCAL_ACCOUNT, email="zoe@example.test")
    stack.subscribe("zoe@example.test", "Rowing")
    sign_in(page, "admin")
    open_connectors(page)
    row = page.get_by_role("row").filter(has_text="zoe@example.test")
    until(lambda: row.count() == 1, lambda: page.get_by_role("button", name="Refresh unmatched subscribers").click())
    expect(row).to_contain_text("rowing")
    step("the unmatched subscriber")

    row.get_by_role("button", name="Link").click()
    dialog = page.get_by_role("dialog", name="Link a subscriber")
    dialog.get_by_label("Member's user id").fill("user_zoe")
    step("the link dialog")
    dialog.get_by_role("button", name="Link").click()
    expect(page.get_by_text("Linked zoe@example.test to user_zoe")).to_be_visible()
    expect(row).to_have_count(0)
    access = stack.admin("GET", "/access/user_zoe").json()["entitlements"]
    assert [(e["product_id"], e["access"]) for e in access] == [("rowing", True)]
    step("linked")


def test_admin_disconnects_after_confirming(page, stack, step):
    stack.ensure_connected()
    sign_in(page, "admin")
    open_connectors(page)
    card = stripe_card(page)
    card.get_by_role("button", name="More actions").click()
    page.get_by_role("menuitem", name="Disconnect").click()
    dialog = page.get_by_role("dialog", name="Disconnect Stripe?")
    expect(dialog).to_contain_text("Members keep the access they have paid for")
    step("asked first")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(card.get_by_text("Connected", exact=True)).to_be_visible()

    card.get_by_role("button", name="More actions").click()
    page.get_by_role("menuitem", name="Disconnect").click()
    page.get_by_role("dialog", name="Disconnect Stripe?").get_by_role("button", name="Disconnect").click()
    expect(card.get_by_text("Not connected")).to_be_visible()
    expect(card).to_contain_text("An admin disconnected it.")
    expect(card.get_by_role("button", name="Connect", exact=True)).to_be_focused()
    assert stack.card()["disconnected_reason"] == "disconnected_by_admin"
    step("disconnected")


def test_choose_a_different_account_connects_another_account(page, stack, step):
    sign_in(page, "admin")
    open_connectors(page)
    start_connecting(page, different_account=True)
    assert "always_prompt=true" in page.url
    page.get_by_role("radio", name="New account").check()
    page.get_by_label("Display name").fill("Harbor Rowing Club")
    step("a new account at the sandbox")
    page.get_by_role("button", name="Connect", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Connected to Harbor Rowing Club")).to_be_visible()
    expect(stripe_card(page).get_by_text("Harbor Rowing Club")).to_be_visible()
    step("connected to the other account")


def test_a_revocation_in_stripe_says_why_the_card_is_disconnected(page, stack, step):
    account = stack.ensure_connected()["account"]["id"]
    sign_in(page, "admin")
    requests.post(stack.sandbox_url + "/dashboard/accounts/%s/revoke" % account, timeout=30)
    until(lambda: stack.card()["status"] == "disconnected", lambda: None)
    open_connectors(page)
    expect(stripe_card(page)).to_contain_text("Access was revoked in Stripe")
    step("revoked")


def test_menus_and_dialogs_work_from_the_keyboard_with_focus_in_sight(page, stack, step):
    stack.ensure_connected()
    sign_in(page, "admin")
    open_connectors(page)
    more = stripe_card(page).get_by_role("button", name="More actions")
    more.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("menuitem", name="Sync now")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Connect a different account")).to_be_focused()
    page.keyboard.press("End")
    expect(page.get_by_role("menuitem", name="Disconnect")).to_be_focused()
    step("the More actions menu from the keyboard")
    page.keyboard.press("Escape")
    expect(page.get_by_role("menu", name="More actions")).to_be_hidden()
    expect(more).to_be_focused()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"

    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.get_by_role("menuitem", name="Sync now")).to_have_count(0)
    expect(stripe_card(page).get_by_text(re.compile("Importing subscriptions|Imported"))).to_be_visible()

    profile = page.get_by_role("button", name="Profile")
    profile.focus()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menu", name="Profile").get_by_role("menuitem").first).to_be_focused()
    page.keyboard.press("Escape")
    expect(profile).to_be_focused()

    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    # Every control of the page can be reached with Tab and says what it is.
    unnamed = page.evaluate("""() => [...document.querySelectorAll('button, input, a[href], summary')]
        .filter((el) => el.offsetParent !== null)
        .filter((el) => !(el.getAttribute('aria-label') || el.textContent.trim()
                          || (el.id && document.querySelector(`label[for="${el.id}"]`))))
        .map((el) => el.outerHTML.slice(0, 80))""")
    assert unnamed == []


def test_the_pages_fit_a_360_pixel_wide_screen(page, stack, step):
    stack.ensure_connected()
    page.set_viewport_size({"width": 360, "height": 740})
    try:
        for role, path in (("admin", "/settings/connectors"), ("member", "/account")):
            sign_in(page, role)
            page.goto(path)
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            page.wait_for_load_state("networkidle")
            step("%s at 360 px" % path)
            assert page.evaluate("document.documentElement.scrollWidth") <= 360, path
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})
