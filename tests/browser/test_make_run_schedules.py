"""The first hour's fifth step as make run runs it, schedules on: with
Stripe's webhooks held, the clock moved past a canceled subscription's
period, and nobody running make sweep, the member's page reads the access
ended by the scheduled check, and the admin's card counts the event the
hourly catch-up brought in."""
import re

import pytest
from playwright.sync_api import expect

from browser_stack import Stack
from local.run import LOCAL_MEMBER
from test_connectors_ui import open_connectors, sign_in, stripe_card, until
from test_local_clock import entitlement, history, refresh, state_of
from tests.helpers import settled


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """make run as a person starts it: its schedules on."""
    own = Stack(tmp_path_factory.mktemp("schedules-stack") / "local-run.log",
                overrides={"LOCAL_SCHEDULES": "on"}).start()
    yield own
    own.stop()


def test_with_webhooks_held_the_schedules_end_a_lapsed_period_with_nobody_running_the_sweep(page, stack, step):
    stack.ensure_connected()
    subscription = stack.subscribe(LOCAL_MEMBER[1], "Kayak")["id"]
    settled(lambda: state_of(stack, "kayak"), lambda s: s == [("active", True)])
    stack.dashboard("/dashboard/subscriptions/%s/cancel_at_period_end" % subscription)
    settled(lambda: state_of(stack, "kayak"), lambda s: s == [("canceling", True)])

    page.goto(stack.sandbox_url + "/")
    page.get_by_role("button", name="Hold webhooks").click()
    expect(page.get_by_text("Webhooks are held.")).to_be_visible()
    try:
        page.get_by_label("Days", exact=True).fill("31")
        page.get_by_role("button", name="Advance the clock").click()
        expect(page.get_by_role("status")).to_contain_text("Fell due meanwhile: 1 cancellation")
        step("webhooks held, moved 31 days ahead")

        sign_in(page, "member")
        kayak = entitlement(page, "kayak")
        until(lambda: "recorded by the scheduled check" in history(page).first.inner_text(), lambda: refresh(page))
        expect(kayak).to_contain_text("Expired")
        expect(history(page).first).to_have_text(re.compile(
            r"^Kayak: Access ended on .+, recorded by the scheduled check( on [^()]+)?: period ended$"))
        step("ended by the schedule")

        sign_in(page, "admin")
        open_connectors(page)
        missed = stripe_card(page).get_by_role("status").filter(has_text="reached us only through the hourly catch-up")
        expect(missed).to_contain_text(re.compile(r"^\d+ events? in the last day reached us only through the hourly "))
        expect(stripe_card(page)).to_contain_text(re.compile(r"Last catch-up: (just now|\d+ minutes? ago)"))
        step("the card counts what the catch-up found")
    finally:
        stack.dashboard("/dashboard/webhooks/release")
