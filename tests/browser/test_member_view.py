"""The admin's view of a member and the event health on the Stripe card, in
Chromium: the admin finds a member by user id or by a customer's email,
reads what their subscriptions give them and every change to it, and undoes
a link after confirming; a member reads their own history; the card says
when Stripe's events last came, and warns when Stripe has disabled the
webhook endpoint or events came only through the catch-up. Each test makes
its own member through the sandbox's API and dashboard."""
import re

from playwright.sync_api import Page, expect

from local.run import LOCAL_ACCOUNT
from local.stripe_sandbox import WEBHOOK_ENDPOINT_ID
from test_connectors_ui import open_connectors, sign_in, stripe_card
from tests.helpers import settled

WARNING_BACKGROUND = "rgb(255, 244, 214)"
STRIPE_EVENT = r"\(Stripe event evt_\w+\)"


def history_of(stack, user_id: str) -> list:
    return stack.admin("GET", "/access/%s/history" % user_id).json()["history"]


def access_of(stack, user_id: str) -> list:
    return stack.admin("GET", "/access/%s" % user_id).json()["entitlements"]


def member_region(page: Page):
    return page.get_by_role("region", name=re.compile("^Member "))


def timeline(page: Page):
    return member_region(page).get_by_role("list", name="History")


def open_member(page: Page, user_id: str) -> None:
    page.get_by_label("User id").fill(user_id)
    page.get_by_role("button", name="Show member", exact=True).click()
    expect(member_region(page).get_by_role("heading", level=2)).to_have_text("Member " + user_id)
    expect(member_region(page)).not_to_have_attribute("aria-busy", "true")


def test_admin_finds_a_member_by_user_id_and_reads_their_access_granted_then_ended_with_its_causes(
        page, stack, step):
    stack.ensure_connected()
    stack.customer("ana@example.test", "user_ana")
    subscription = stack.subscribe("ana@example.test", "Yoga")
    settled(lambda: history_of(stack, "user_ana"), lambda h: len(h) == 1)
    stack.dashboard("/dashboard/subscriptions/%s/cancel_now" % subscription["id"])
    settled(lambda: history_of(stack, "user_ana"), lambda h: len(h) == 2)

    sign_in(page, "admin")
    open_connectors(page)
    page.get_by_role("link", name="Find a member").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Members")
    open_member(page, "user_ana")
    member = member_region(page)
    yoga = member.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Yoga", exact=True))
    expect(yoga).to_contain_text("Expired")
    expect(yoga).to_contain_text("No access since")
    expect(yoga).to_contain_text("Theirs because the customer's or the subscription's Stripe metadata names them.")
    expect(yoga.get_by_role("button", name=re.compile("^Undo"))).to_have_count(0)
    lines = timeline(page).get_by_role("listitem")
    expect(lines).to_have_count(2)
    expect(lines.nth(0)).to_have_text(re.compile(
        r"^Yoga: Access ended on .+: subscription canceled %s$" % STRIPE_EVENT))
    expect(lines.nth(1)).to_have_text(re.compile(
        r"^Yoga: Access granted on .+: subscription active %s$" % STRIPE_EVENT))
    expect(page).to_have_url(re.compile(r"/settings/members\?user=user_ana$"))
    step("the member found by user id")


def test_admin_finds_members_by_a_customers_email_and_picks_one_of_several(page, stack, step):
    stack.ensure_connected()
    stack.customer("kim@example.test")
    # The dashboard subscribes the latest customer with the email.
    stack.customer("kim@example.test", "user_kim")
    stack.subscribe("kim@example.test", "Pilates")
    settled(lambda: access_of(stack, "user_kim"), lambda a: len(a) == 1)

    sign_in(page, "admin")
    page.goto("/settings/members")
    page.get_by_label("Customer's email").fill("kim@example.test")
    page.get_by_role("button", name="Find customers").click()
    expect(page.get_by_text("2 customers have this email. Choose the member to see:")).to_be_visible()
    results = page.get_by_role("list").filter(has_text="kim@example.test").get_by_role("listitem")
    expect(results).to_have_count(2)
    expect(results.filter(has_text="Names no member of this site")).to_have_count(1)
    named = results.filter(has_text="Member user_kim, named by the customer's Stripe metadata.")
    expect(member_region(page)).to_be_hidden()
    step("two customers with the email")

    named.get_by_role("button", name="Show member").click()
    expect(member_region(page).get_by_role("heading", level=2)).to_have_text("Member user_kim")
    expect(member_region(page).get_by_role("heading", name="Pilates", exact=True)).to_be_visible()
    expect(member_region(page)).to_contain_text("Found by the customer's email kim@example.test.")
    expect(timeline(page).get_by_role("listitem").first).to_have_text(re.compile(
        r"^Pilates: Access granted on .+: subscription active %s$" % STRIPE_EVENT))
    step("the member picked")
    # The address names them: a reload shows the same member.
    page.reload()
    expect(member_region(page).get_by_role("heading", name="Pilates", exact=True)).to_be_visible()
    expect(page.get_by_label("Customer's email")).to_have_value("kim@example.test")

    page.get_by_label("Customer's email").fill("nobody-here@example.test")
    page.get_by_role("button", name="Find customers").click()
    expect(page.get_by_text("No customer of the connected Stripe account has the email nobody-here@example.test."))\
        .to_be_visible()
    expect(member_region(page)).to_be_hidden()


def test_admin_undoes_a_link_after_confirming_and_the_timeline_shows_the_unlink(page, stack, step):
    stack.ensure_connected()
    stack.dashboard("/dashboard/accounts/%s/customers" % LOCAL_ACCOUNT, email="lee@example.test")
    subscription = stack.subscribe("lee@example.test", "Climbing")["id"]
    settled(lambda: stack.admin("GET", "/connectors/stripe/unmatched").json()["unmatched"],
            lambda rows: any(row["subscription_id"] == subscription for row in rows))
    linked = stack.admin("POST", "/connectors/stripe/unmatched/%s/link" % subscription, json={"user_id": "user_lee"})
    assert linked.status_code == 200, linked.text

    sign_in(page, "admin")
    page.goto("/settings/members?user=user_lee")
    member = member_region(page)
    climbing = member.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Climbing", exact=True))
    expect(climbing).to_contain_text("Active")
    expect(climbing).to_contain_text("Theirs because an admin linked the subscription to them.")
    expect(timeline(page).get_by_role("listitem").first).to_have_text(re.compile(
        r"^Climbing: Access granted on .+: subscription active\. Linked by admin user_admin$"))
    step("a linked member")

    climbing.get_by_role("button", name="Undo link").click()
    dialog = page.get_by_role("dialog", name="Undo the link?")
    expect(dialog).to_contain_text(re.compile(
        r"user_lee loses access to Climbing now \(until .+ otherwise\)\. The subscription goes back to the "
        r"unmatched list\."))
    step("asked first")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(climbing).to_contain_text("Active")
    assert [e["access"] for e in access_of(stack, "user_lee")] == [True]

    climbing.get_by_role("button", name="Undo link").click()
    page.get_by_role("dialog", name="Undo the link?").get_by_role("button", name="Confirm").click()
    expect(member.get_by_role("status")).to_contain_text(
        "The link is undone: user_lee no longer has access to Climbing.")
    expect(climbing).to_contain_text("Expired")
    expect(climbing.get_by_role("button", name="Undo link")).to_have_count(0)
    lines = timeline(page).get_by_role("listitem")
    expect(lines).to_have_count(2)
    expect(lines.first).to_have_text(re.compile(
        r"^Climbing: Access ended on .+: subscription unlinked\. Unlinked by admin user_admin$"))
    step("undone")

    member.get_by_role("link", name="Unmatched subscribers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Connectors")
    expect(page.get_by_role("row").filter(has_text="lee@example.test")).to_contain_text("climbing")


def test_member_reads_their_products_by_name_and_their_own_history_on_their_account(page, stack, step):
    stack.ensure_connected()
    stack.customer("bea@example.test", "user_bea")
    subscription = stack.subscribe("bea@example.test", "Boxing")["id"]
    settled(lambda: history_of(stack, "user_bea"), lambda h: len(h) == 1)
    stack.dashboard("/dashboard/subscriptions/%s/cancel_at_period_end" % subscription)
    settled(lambda: history_of(stack, "user_bea"), lambda h: len(h) == 2)

    sign_in(page, "member", user_id="user_bea", email="bea@example.test")
    access = page.get_by_role("region", name="My access")
    boxing = access.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Boxing", exact=True))
    expect(boxing).to_contain_text("Canceling")
    expect(boxing).to_contain_text("the subscription does not renew")
    lines = page.get_by_role("region", name="History").get_by_role("listitem")
    expect(lines).to_have_count(2)
    # A member reads what happened and why, without Stripe's ids.
    expect(lines.nth(0)).to_have_text(re.compile(r"^Boxing: Cancellation scheduled: access until [^()]+$"))
    expect(lines.nth(1)).to_have_text(re.compile(r"^Boxing: Access granted on [^()]+: subscription active$"))
    expect(page.get_by_role("region", name="History")).not_to_contain_text("evt_")
    step("the member's own history")


def test_the_card_says_when_stripes_events_last_came_and_when_the_catch_up_last_ran(page, stack, step):
    stack.ensure_connected()
    stack.run_scheduled("catch_up")
    settled(stack.card, lambda card: card["events"]["last_caught_up_at"] and card["events"]["last_received_at"])

    sign_in(page, "admin")
    open_connectors(page)
    card = stripe_card(page)
    expect(card).to_contain_text(re.compile(r"Stripe events: last received (just now|\d+ minutes? ago)"))
    expect(card).to_contain_text(re.compile(r"Last catch-up: (just now|\d+ minutes? ago)"))
    expect(card.get_by_role("alert")).to_have_count(0)
    expect(card).not_to_contain_text("reached us only through the hourly catch-up")
    step("event health in words")


def test_a_disabled_webhook_endpoint_and_events_found_only_by_the_catch_up_show_as_warnings(page, stack, step):
    stack.ensure_connected()
    stack.dashboard("/dashboard/webhook_endpoints/%s/disable" % WEBHOOK_ENDPOINT_ID)
    try:
        stack.customer("dan@example.test", "user_dan")
        stack.subscribe("dan@example.test", "Judo")
        stack.run_scheduled("catch_up")
        settled(stack.card, lambda card: card["events"]["endpoint"] == "disabled"
                and card["events"]["missed_last_day"] >= 1)

        sign_in(page, "admin")
        open_connectors(page)
        card = stripe_card(page)
        disabled = card.get_by_role("alert")
        expect(disabled).to_contain_text(
            "Stripe has disabled the webhook endpoint: no events are being delivered.")
        expect(disabled).to_have_css("background-color", WARNING_BACKGROUND)
        missed = card.get_by_role("status").filter(has_text="reached us only through the hourly catch-up")
        expect(missed).to_contain_text(re.compile(r"^\d+ events? in the last day reached us only through the hourly "
                                                  r"catch-up\."))
        expect(missed).to_have_css("background-color", WARNING_BACKGROUND)
        step("the warnings")

        page.get_by_role("link", name="Find a member").click()
        open_member(page, "user_dan")
        expect(timeline(page).get_by_role("listitem").first).to_have_text(re.compile(
            r"^Judo: Access granted on .+: subscription active\. Found by the hourly catch-up %s$" % STRIPE_EVENT))
        step("found by the catch-up")
    finally:
        stack.dashboard("/dashboard/webhook_endpoints/%s/enable" % WEBHOOK_ENDPOINT_ID)
        stack.run_scheduled("watch_webhook_endpoint")


def test_the_member_view_and_the_account_history_fit_a_360_pixel_wide_screen(page, stack, step):
    stack.ensure_connected()
    stack.customer("ivy@example.test", "user_ivy")
    stack.subscribe("ivy@example.test", "Swimming")
    settled(lambda: history_of(stack, "user_ivy"), lambda h: len(h) == 1)
    page.set_viewport_size({"width": 360, "height": 740})
    try:
        sign_in(page, "admin")
        page.goto("/settings/members?email=ivy@example.test")
        expect(member_region(page).get_by_role("heading", name="Swimming", exact=True)).to_be_visible()
        expect(timeline(page).get_by_role("listitem")).to_have_count(1)
        step("members at 360 px")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360

        sign_in(page, "member", user_id="user_ivy", email="ivy@example.test")
        expect(page.get_by_role("region", name="History").get_by_role("listitem")).to_have_count(1)
        step("account at 360 px")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})
