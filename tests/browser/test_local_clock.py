"""The local stack's clock, in Chromium: a member cancels in the billing
portal, the clock is moved past the paid period on the sandbox's page, the
portal shows the subscription ended, the sweep runs as `make sweep` runs
it, and the member's account page reads ended; and when Stripe's webhooks
do not come, the moved time alone ends the access the API shows, and the
sweep records it. On a stack of this module's own, so that the other
modules' stack keeps the machine's time."""
import re

import pytest
import requests
from playwright.sync_api import Page, expect

from browser_stack import Stack
from local.run import LOCAL_MEMBER
from test_connectors_ui import open_profile_menu, portal_on_the_local_account, sign_in, until
from tests.helpers import settled


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A local stack of this module's own (its clock moves), for `page` too."""
    own = Stack(tmp_path_factory.mktemp("clock-stack") / "local-run.log").start()
    yield own
    own.stop()


def my_access(stack) -> list:
    answer = requests.get(stack.api_url + "/access", timeout=30,
                          headers={"Authorization": "Bearer " + stack.tokens["member"]})
    assert answer.status_code == 200, answer.text
    return answer.json()["entitlements"]


def state_of(stack, product_id: str):
    return [(e["state"], e["access"]) for e in my_access(stack) if e["product_id"] == product_id]


def entitlement(page: Page, name: str):
    return page.get_by_role("region", name="My access").get_by_role("listitem").filter(
        has=page.get_by_role("heading", name=re.compile("^%s$" % name, re.IGNORECASE)))


def history(page: Page):
    return page.get_by_role("region", name="History").get_by_role("listitem")


def refresh(page: Page) -> None:
    page.get_by_role("button", name="Refresh").click()


def run_sweep(stack) -> None:
    """`make sweep`: python -m local.sweep against the running stack."""
    done = stack.run_module("local.sweep", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_member_who_canceled_reads_ended_once_the_clock_passes_the_period_and_the_sweep_runs(
        page, stack, step):
    portal_on_the_local_account(stack)
    stack.subscribe(LOCAL_MEMBER[1], "Rowing")
    sign_in(page, "member")
    rowing = entitlement(page, "rowing")
    until(lambda: rowing.count() == 1, lambda: refresh(page))
    expect(rowing).to_contain_text("Active")
    step("the member's access")

    open_profile_menu(page).get_by_role("menuitem", name="Billing").click()
    expect(page.get_by_role("heading", name="Billing portal")).to_be_visible()
    page.get_by_role("link", name="Cancel subscription Rowing").click()
    page.get_by_role("button", name="Cancel subscription").click()
    expect(page.get_by_role("status")).to_contain_text("Your Rowing subscription will end on")
    step("canceled at the period's end in the portal")
    settled(lambda: state_of(stack, "rowing"), lambda s: s == [("canceling", True)])

    page.goto(stack.sandbox_url + "/")
    clock = page.get_by_role("heading", name="Clock", exact=True)
    expect(clock).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Sandbox time: .+ \(this machine\u2019s clock\)"))).to_be_visible()
    page.get_by_label("Days", exact=True).fill("31")
    step("the sandbox's clock")
    page.get_by_role("button", name="Advance the clock").click()
    expect(page.get_by_role("status")).to_contain_text(re.compile(
        r"The clock moved 31 days ahead, to .+\. Fell due meanwhile: 1 cancellation; their events are sent as "
        r"webhooks\."))
    expect(page.get_by_text(re.compile(r"^Sandbox time: .+ \(31 days ahead of this machine\u2019s clock\)")))\
        .to_be_visible()
    step("moved 31 days ahead")

    page.goto(stack.ui_url + "/account")
    open_profile_menu(page).get_by_role("menuitem", name="Billing").click()
    expect(page.get_by_role("heading", name="Billing portal")).to_be_visible()
    expect(page.get_by_role("heading", name="Rowing (canceled)")).to_be_visible()
    expect(page.get_by_role("heading", name="Rowing", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("^Cancel subscription"))).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Don.t cancel"))).to_have_count(0)
    step("the portal shows it ended")

    run_sweep(stack)
    page.get_by_role("link", name=re.compile("^Return to")).click()
    expect(page).to_have_url(stack.ui_url + "/account")
    until(lambda: "Expired" in rowing.inner_text(), lambda: refresh(page))
    expect(rowing).to_contain_text("No access since")
    expect(history(page).first).to_have_text(re.compile(
        r"^Rowing: Access ended on [^()]+: subscription canceled$"))
    step("the member's access reads ended")


def test_without_stripes_webhooks_the_moved_time_ends_the_access_shown_and_the_sweep_records_it(page, stack, step):
    portal_on_the_local_account(stack)
    subscription = stack.subscribe(LOCAL_MEMBER[1], "Climbing")["id"]
    settled(lambda: state_of(stack, "climbing"), lambda s: s == [("active", True)])
    stack.dashboard("/dashboard/subscriptions/%s/cancel_at_period_end" % subscription)
    settled(lambda: state_of(stack, "climbing"), lambda s: s == [("canceling", True)])
    # Stripe cannot reach the API from here on: only the clock says the period is over.
    stack.dashboard("/dashboard/webhooks/hold")
    try:
        moved = requests.post(stack.sandbox_url + "/dashboard/clock/advance", data={"days": "31"}, timeout=120)
        assert moved.status_code == 200, moved.text
        assert [(item["subscription"], item["what"]) for item in moved.json()["happened"]] == [
            (subscription, "canceled")]
        assert state_of(stack, "climbing") == [("expired", False)]

        sign_in(page, "member")
        climbing = entitlement(page, "climbing")
        expect(climbing).to_contain_text("Expired")
        expect(climbing).to_contain_text("No access since")
        expect(history(page).first).to_have_text(re.compile(r"^Climbing: Cancellation scheduled: access until .+"))
        step("ended by the moved time alone")

        run_sweep(stack)
        until(lambda: "recorded by the scheduled check" in history(page).first.inner_text(), lambda: refresh(page))
        expect(history(page).first).to_have_text(re.compile(
            r"^Climbing: Access ended on .+, recorded by the scheduled check( on [^()]+)?: period ended$"))
        step("the sweep recorded the end")
    finally:
        stack.dashboard("/dashboard/webhooks/release")
