"""The local stack's clock: the sandbox's time moved ahead as Stripe's test
clocks move, and what falls due in between happening in order, each at its
moment with its events (renewals, trial ends, cancellations at a period's
end or at cancel_at, a failed renewal for a customer whose card declines);
its webhooks signed at the moved time, which the API accepts when it runs
on the same clock (local/clock.py) and refuses on the machine's; and the
API's access decisions and sweep at the moved time."""
import html
import json
import re

import pytest
import requests
import stripe

from app import expire_access
from chalicelib import clock, services
from local import clock as local_clock
from local.scheduled import scheduled_event
from local.stripe_sandbox.clock import MAX_ADVANCE_SECONDS, ClockRefused
from tests import helpers
from tests.api.test_connect_lifecycle import ADMIN, connect
from tests.sandbox.conftest import NOW, studio_sending_to
from tests.sandbox.test_sandbox_pages import Page

DAY = 24 * 3600
SECRET = "whsec_test_local_clock"
DECLINES_WHEN_CHARGED = "4000000000000341"


@pytest.fixture
def held(receiver):
    """A sandbox of its own whose machine clock is held at NOW, sending its
    webhooks to the receiver, with a connected account, a member and a product."""
    machine = [NOW]
    with studio_sending_to(receiver, SECRET, clock=lambda: machine[0]) as studio:
        yield dict(studio, machine=machine)


def subscribe(held, days=30, customer=None, **options):
    return held["sandbox"].create_subscription(held["account"], customer or held["customer"], [held["product"]],
                                               period_start=NOW, period_end=NOW + days * DAY, **options)["id"]


def moved(held, days):
    """The clock moved `days` ahead; the events recorded meanwhile, oldest first."""
    sandbox = held["sandbox"]
    before = len(sandbox.events)
    answer = sandbox.advance_clock(days * DAY)
    assert sandbox.wait_for_webhooks()
    return answer, sandbox.events_after(before)


def happened(answer):
    return [(item["at"], item["subscription"], item["what"]) for item in answer["happened"]]


def signed_at(header):
    return int(dict(part.split("=", 1) for part in header.split(","))["t"])


def words(page):
    """A page's text as a person reads it, without its markup."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", page.text)))


def period_of(subscription):
    [item] = subscription["items"]["data"]
    return item["current_period_start"], item["current_period_end"]


# ------------------------------------------------------------ what falls due

def test_a_period_end_renews_at_its_moment_with_its_event_and_a_paid_invoice(held):
    subscription = subscribe(held)
    answer, events = moved(held, 31)
    assert (answer["now"], answer["offset_seconds"], answer["advanced_seconds"]) == (NOW + 31 * DAY, 31 * DAY,
                                                                                    31 * DAY)
    assert happened(answer) == [(NOW + 30 * DAY, subscription, "renewed")]
    assert [(e["type"], e["created"]) for e in events] == [("customer.subscription.updated", NOW + 30 * DAY)]
    assert period_of(events[0]["data"]["object"]) == (NOW + 30 * DAY, NOW + 60 * DAY)
    newest = held["sandbox"].invoices(held["account"], subscription=subscription)[-1]
    assert (newest["created"], newest["status"], newest["billing_reason"]) == (NOW + 30 * DAY, "paid",
                                                                               "subscription_cycle")
    assert held["sandbox"].now() == NOW + 31 * DAY


def test_a_trial_ends_at_its_moment_and_the_subscription_becomes_active_and_billed(held):
    subscription = subscribe(held, days=14, status="trialing")
    answer, events = moved(held, 15)
    assert happened(answer) == [(NOW + 14 * DAY, subscription, "trial_ended")]
    [event] = events
    assert (event["type"], event["created"]) == ("customer.subscription.updated", NOW + 14 * DAY)
    assert event["data"]["object"]["status"] == "active"
    assert event["data"]["previous_attributes"]["status"] == "trialing"
    newest = held["sandbox"].invoices(held["account"], subscription=subscription)[-1]
    assert (newest["status"], newest["amount_paid"]) == ("paid", 1500)


def test_a_cancellation_at_period_end_ends_the_subscription_at_the_period_end(held):
    subscription = subscribe(held, cancel_at_period_end=True)
    answer, events = moved(held, 31)
    assert happened(answer) == [(NOW + 30 * DAY, subscription, "canceled")]
    [event] = events
    assert (event["type"], event["created"]) == ("customer.subscription.deleted", NOW + 30 * DAY)
    ended = held["sandbox"].subscription(held["account"], subscription)
    assert (ended["status"], ended["ended_at"], ended["cancel_at_period_end"]) == ("canceled", NOW + 30 * DAY, False)


def test_a_cancel_at_within_the_period_ends_the_subscription_then(held):
    subscription = subscribe(held, cancel_at=NOW + 10 * DAY)
    answer, events = moved(held, 11)
    assert happened(answer) == [(NOW + 10 * DAY, subscription, "canceled")]
    assert [(e["type"], e["created"]) for e in events] == [("customer.subscription.deleted", NOW + 10 * DAY)]


def test_a_customer_whose_card_declines_falls_past_due_at_renewal_with_invoice_payment_failed(held):
    sandbox = held["sandbox"]
    sandbox.save_card(held["account"], held["customer"], DECLINES_WHEN_CHARGED, 12, 2040, "123")
    subscription = subscribe(held)
    answer, events = moved(held, 31)
    assert happened(answer) == [(NOW + 30 * DAY, subscription, "renewal_failed")]
    assert [(e["type"], e["created"]) for e in events] == [
        ("invoice.payment_failed", NOW + 30 * DAY), ("customer.subscription.updated", NOW + 30 * DAY)]
    failed, updated = events
    assert failed["data"]["object"]["status"] == "open"
    assert failed["data"]["object"]["parent"]["subscription_details"]["subscription"] == subscription
    assert updated["data"]["object"]["status"] == "past_due"
    assert updated["data"]["previous_attributes"]["status"] == "active"
    [owed] = sandbox.invoices(held["account"], subscription=subscription, status="open")
    assert owed["id"] == failed["data"]["object"]["id"] and owed["created"] == NOW + 30 * DAY


def test_a_trial_that_ends_on_a_declining_card_leaves_the_subscription_past_due(held):
    held["sandbox"].save_card(held["account"], held["customer"], DECLINES_WHEN_CHARGED, 12, 2040, "123")
    subscription = subscribe(held, days=14, status="trialing")
    answer, events = moved(held, 15)
    assert happened(answer) == [(NOW + 14 * DAY, subscription, "trial_ended_payment_failed")]
    assert events[-1]["data"]["object"]["status"] == "past_due"


def test_what_falls_due_happens_in_order_across_subscriptions_and_again_within_one_move(held):
    sandbox = held["sandbox"]
    other = sandbox.create_customer(held["account"], email="other@localfitness.test")["id"]
    sandbox.save_card(held["account"], other, DECLINES_WHEN_CHARGED, 12, 2040, "123")
    monthly = subscribe(held)
    ending = subscribe(held, days=20, cancel_at_period_end=True)
    trial = subscribe(held, days=10, status="trialing")
    declining = subscribe(held, days=25, customer=other)
    answer, events = moved(held, 61)
    assert happened(answer) == [
        (NOW + 10 * DAY, trial, "trial_ended"), (NOW + 20 * DAY, ending, "canceled"),
        (NOW + 20 * DAY, trial, "renewed"), (NOW + 25 * DAY, declining, "renewal_failed"),
        (NOW + 30 * DAY, monthly, "renewed"), (NOW + 30 * DAY, trial, "renewed"),
        (NOW + 40 * DAY, trial, "renewed"), (NOW + 50 * DAY, declining, "renewal_failed"),
        (NOW + 50 * DAY, trial, "renewed"), (NOW + 60 * DAY, monthly, "renewed"),
        (NOW + 60 * DAY, trial, "renewed")]
    created = [e["created"] for e in events]
    assert created == sorted(created) and created[0] == NOW + 10 * DAY and created[-1] == NOW + 60 * DAY
    assert period_of(sandbox.subscription(held["account"], monthly)) == (NOW + 60 * DAY, NOW + 90 * DAY)


def test_what_was_due_before_the_move_happens_at_its_start(held):
    subscription = held["sandbox"].create_subscription(held["account"], held["customer"], [held["product"]],
                                                       period_start=NOW - 35 * DAY, period_end=NOW - 5 * DAY)["id"]
    answer, events = moved(held, 1)
    assert happened(answer) == [(NOW, subscription, "renewed")]
    assert [e["created"] for e in events] == [NOW]


@pytest.mark.parametrize("status", ["paused", "unpaid", "canceled", "incomplete"])
def test_a_subscription_stripe_would_not_charge_waits(held, status):
    subscription = subscribe(held, status=status)
    answer, events = moved(held, 31)
    assert answer["happened"] == [] and events == []
    assert held["sandbox"].subscription(held["account"], subscription)["status"] == status


def test_webhooks_are_signed_at_the_moved_time_once_the_move_is_over(held):
    subscribe(held, cancel_at_period_end=True)
    assert held["sandbox"].wait_for_webhooks()
    received = len(held["receiver"].received)
    held["machine"][0] += 5
    moved(held, 31)
    [(body, header)] = held["receiver"].received[received:]
    assert json.loads(body)["type"] == "customer.subscription.deleted"
    assert signed_at(header) == NOW + 5 + 31 * DAY
    assert stripe.WebhookSignature.verify_header(body, header, SECRET, tolerance=None)


@pytest.mark.parametrize("seconds, message", [
    (0, "forward only"), (-DAY, "forward only"), (MAX_ADVANCE_SECONDS + 1, "at most 366 days"),
    (1.5, "whole number")])
def test_a_move_backwards_of_nothing_or_too_far_is_refused_and_changes_nothing(held, seconds, message):
    subscribe(held)
    before = len(held["sandbox"].events)
    with pytest.raises(ClockRefused, match=message):
        held["sandbox"].advance_clock(seconds)
    assert held["sandbox"].clock_offset == 0 and len(held["sandbox"].events) == before


def test_a_move_that_would_renew_a_subscription_of_seconds_again_and_again_is_refused(held):
    subscription = held["sandbox"].create_subscription(held["account"], held["customer"], [held["product"]],
                                                       period_start=NOW, period_end=NOW + 20)["id"]
    before = len(held["sandbox"].events)
    with pytest.raises(ClockRefused, match="%s would renew 4320 times" % subscription):
        held["sandbox"].advance_clock(DAY)
    assert held["sandbox"].clock_offset == 0 and len(held["sandbox"].events) == before
    # A shorter move is made.
    assert [item["what"] for item in held["sandbox"].advance_clock(60)["happened"]] == ["renewed"] * 3


def test_a_reset_puts_the_clock_back_at_the_machines_time(held):
    held["sandbox"].advance_clock(DAY)
    held["sandbox"].reset()
    assert held["sandbox"].now() == NOW and held["sandbox"].clock_offset == 0


# ------------------------------------------------------------ the route and the dashboard

def test_the_route_moves_the_clock_by_days_hours_and_seconds_and_answers_the_new_time_in_json(held):
    sandbox = held["sandbox"]
    subscription = subscribe(held)
    answer = requests.post(sandbox.url + "/dashboard/clock/advance", data={"days": "30", "hours": "1.5",
                                                                          "seconds": "30"}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    seconds = 30 * DAY + 5400 + 30
    assert (body["now"], body["offset_seconds"], body["advanced_seconds"]) == (NOW + seconds, seconds, seconds)
    assert body["now_iso"] == "2030-04-16T19:17:10Z"
    assert body["happened"] == [{"at": NOW + 30 * DAY, "account": held["account"], "subscription": subscription,
                                 "what": "renewed"}]
    assert requests.get(sandbox.url + "/dashboard/clock", timeout=10).json() == {
        "object": "sandbox_clock", "now": NOW + seconds, "now_iso": "2030-04-16T19:17:10Z",
        "offset_seconds": seconds}


@pytest.mark.parametrize("form, message", [
    ({}, "at least a second"), ({"days": "-1"}, "forward only"), ({"hours": "soon"}, "must be a number"),
    ({"days": "400"}, "at most 366 days"), ({"days": "nan"}, "forward only")])
def test_the_route_refuses_what_is_not_a_move_forward_in_stripes_error_shape(held, form, message):
    answer = requests.post(held["sandbox"].url + "/dashboard/clock/advance", data=form, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error" and message in answer.json()["error"]["message"]
    assert held["sandbox"].clock_offset == 0


def test_the_dashboard_shows_the_time_and_moves_it_with_a_labelled_form_then_says_what_fell_due(held):
    sandbox = held["sandbox"]
    subscribe(held)
    subscribe(held, days=10, cancel_at_period_end=True)
    shown = Page(requests.get(sandbox.url + "/", timeout=10).text)
    assert ("h2", "Clock") in shown.headings
    assert "Sandbox time: 2030-03-17 17:46:40 UTC (this machine\u2019s clock)" in words(shown)
    form = next(f for f in shown.forms if f["action"] == "/dashboard/clock/advance")
    assert set(form["fields"]) == {"days", "hours"}
    assert shown.control("Days")["type"] == "number" and shown.control("Hours")["type"] == "number"
    assert "Advance the clock" in shown.buttons
    answer = requests.post(sandbox.url + form["action"], data={"days": "31"}, allow_redirects=False, timeout=30,
                           headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/?done=advanced"
    after = Page(requests.get(sandbox.url + answer.headers["Location"], timeout=10).text)
    assert ("The clock moved 31 days ahead, to 2030-04-17 17:46:40 UTC. Fell due meanwhile: 1 renewal, "
            "1 cancellation; their events are sent as webhooks.") in words(after)
    assert "Sandbox time: 2030-04-17 17:46:40 UTC (31 days ahead of this machine\u2019s clock)" in words(after)
    refused = requests.post(sandbox.url + form["action"], data={"days": "-3"}, allow_redirects=False, timeout=10,
                            headers={"Accept": "text/html"})
    assert refused.status_code == 400
    assert "forward only" in refused.text and "Go to the sandbox dashboard" in refused.text


# ------------------------------------------------------------ the API on the same clock

@pytest.fixture
def api_on_the_clock(client, sandbox, receiver, monkeypatch):
    """The API, on the session's sandbox's clock as the local stack runs it,
    connected to an account whose events the sandbox sends to the receiver
    (signed with the secret the API checks); the member user_ana, a
    customer with a product."""
    endpoint = sandbox.create_webhook_endpoint(receiver.url, connect=True)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", endpoint["secret"])
    services.reset()
    previous = clock.use(local_clock.following(sandbox))
    try:
        sandbox.create_account(id="acct_clock", display_name="Studio")
        connect(client, sandbox, "acct_clock")
        sandbox.create_product("acct_clock", id="prod_yoga", metadata={"customerhub_product_id": "yoga"})
        sandbox.create_customer("acct_clock", id="cus_ana", email="ana@studio.test",
                                metadata={"customerhub_user_id": "user_ana"})
        yield {"client": client, "sandbox": sandbox, "receiver": receiver, "machine": previous, "sent": [0]}
    finally:
        clock.use(previous)


def forward(world):
    """Posts what the sandbox sent since the last call to the API's webhook
    as it came (body and signature); the answers."""
    assert world["sandbox"].wait_for_webhooks()
    received = world["receiver"].received
    fresh, world["sent"][0] = received[world["sent"][0]:], len(received)
    answers = [post_webhook(world["client"], body, header) for body, header in fresh]
    helpers.QUEUED_EVENTS.drain()
    return answers


def post_webhook(client, body, header):
    return client.post("/webhooks/stripe", body=body, headers={
        "Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"})


def access_of_ana(client):
    answer = client.get("/access", headers=helpers.bearer(site="site_a", role="member", sub="user_ana"))
    assert answer.status_code == 200, answer.body
    return [(e["state"], e["access"]) for e in answer.json_body["entitlements"]]


def test_the_api_on_the_moved_clock_accepts_the_moved_webhooks_the_machines_clock_would_refuse(api_on_the_clock):
    world, client, sandbox = api_on_the_clock, api_on_the_clock["client"], api_on_the_clock["sandbox"]
    sandbox.create_subscription("acct_clock", "cus_ana", ["prod_yoga"], cancel_at_period_end=True)
    assert all(answer.status_code == 200 for answer in forward(world))
    assert access_of_ana(client) == [("canceling", True)]

    sandbox.advance_clock(31 * DAY)
    assert sandbox.wait_for_webhooks()
    [(body, header)] = world["receiver"].received[world["sent"][0]:]
    assert json.loads(body)["type"] == "customer.subscription.deleted"
    assert abs(signed_at(header) - (clock.now_seconds())) < 60
    # The machine's clock is 31 days behind the signature: outside the tolerance.
    clock.use(world["machine"])
    try:
        refused = post_webhook(client, body, header)
    finally:
        clock.use(local_clock.following(sandbox))
    assert refused.status_code == 400 and refused.json_body["error"]["code"] == "invalid_signature"
    assert [answer.status_code for answer in forward(world)] == [200]
    assert access_of_ana(client) == [("expired", False)]


def test_get_access_reads_the_moved_time_before_any_webhook_and_the_sweep_ends_the_access(api_on_the_clock):
    world, client, sandbox = api_on_the_clock, api_on_the_clock["client"], api_on_the_clock["sandbox"]
    sandbox.create_subscription("acct_clock", "cus_ana", ["prod_yoga"], cancel_at_period_end=True)
    forward(world)
    assert access_of_ana(client) == [("canceling", True)]
    # Stripe's webhooks do not come: only the clock tells the API the period is over.
    sandbox.hold_webhooks()
    sandbox.advance_clock(31 * DAY)
    assert sandbox.wait_for_webhooks()
    assert access_of_ana(client) == [("expired", False)]

    report = expire_access(scheduled_event("us-east-1"), None)
    assert report["revoked"] == 1
    history = client.get("/access/user_ana/history", headers=ADMIN).json_body["history"]
    assert history[0]["cause"]["kind"] == "sweep" and history[0]["to"]["access"] is False
