"""Held webhooks: every delivery fails as if the endpoint were down, and the
event stays undelivered for a catch-up to find. The sandbox does not retry
as Stripe would over the following days: a held event is never sent, and
released, only new events are."""
import html

import pytest
import requests

from local.stripe_sandbox import HELD_DELIVERY_ERROR
from tests.sandbox.conftest import studio_sending_to
from tests.sandbox.test_sandbox_pages import page


@pytest.fixture
def studio(receiver):
    """A sandbox sending webhooks to the endpoint, with a connected account,
    a member and a product."""
    with studio_sending_to(receiver, "whsec_test") as studio:
        yield studio


def undelivered(studio, success=False):
    listed = studio["client"].v1.events.list({"delivery_success": success, "limit": 100}, studio["opts"])
    return [e.id for e in listed.data]


def test_a_held_delivery_is_attempted_fails_as_unreachable_and_stays_undelivered(studio, receiver):
    sandbox = studio["sandbox"]
    sandbox.hold_webhooks(True)
    assert sandbox.webhooks_held
    subscription = sandbox.create_subscription(studio["account"], studio["customer"], [studio["product"]])
    assert sandbox.wait_for_webhooks()
    event = sandbox.events[-1]
    assert (event["type"], event["data"]["object"]["id"]) == ("customer.subscription.created", subscription["id"])
    assert [(a["status"], a["error"]) for a in sandbox.delivery_attempts(event["id"])] == [
        (None, HELD_DELIVERY_ERROR)]
    assert event["id"] not in receiver.ids
    assert event["id"] in undelivered(studio) and event["id"] not in undelivered(studio, success=True)
    assert event["pending_webhooks"] == 1


def test_released_webhooks_deliver_new_events_and_never_the_held_ones(studio, receiver):
    sandbox = studio["sandbox"]
    sandbox.hold_webhooks(True)
    subscription = sandbox.create_subscription(studio["account"], studio["customer"], [studio["product"]])
    assert sandbox.wait_for_webhooks()
    held = sandbox.events[-1]["id"]
    sandbox.hold_webhooks(False)
    sandbox.update_subscription(studio["account"], subscription["id"], cancel_at_period_end=True)
    assert sandbox.wait_for_webhooks()
    sent = sandbox.events[-1]["id"]
    assert receiver.ids[-1] == sent and held not in receiver.ids
    assert [a["status"] for a in sandbox.delivery_attempts(sent)] == [200]
    # Stripe would try the held event again for days; the sandbox tries it once.
    assert len(sandbox.delivery_attempts(held)) == 1
    assert undelivered(studio) == [held] and sent in undelivered(studio, success=True)


def test_a_reset_sends_webhooks_again(studio):
    sandbox = studio["sandbox"]
    sandbox.hold_webhooks()
    sandbox.reset()
    assert not sandbox.webhooks_held


# ------------------------------------------------------------------ dashboard

def test_the_dashboard_holds_and_releases_webhooks_and_says_so_clearly(studio):
    sandbox = studio["sandbox"]
    shown = page(requests.get(sandbox.url + "/", timeout=10))
    assert ("h2", "Webhooks") in shown.headings and "Hold webhooks" in shown.buttons
    assert "Webhooks are held" not in shown.text
    held = requests.post(sandbox.url + "/dashboard/webhooks/hold", allow_redirects=False, timeout=10)
    assert held.status_code == 303 and held.headers["Location"] == "/?done=held" and sandbox.webhooks_held
    shown = page(requests.get(sandbox.url + held.headers["Location"], timeout=10))
    assert 'role="status">Webhooks are held: deliveries fail until you release them.' in shown.text
    assert '<p class="problem"><strong>Webhooks are held.</strong>' in shown.text
    assert "<strong>(held)</strong>" in shown.text and shown.unlabelled() == []
    assert "Release webhooks" in shown.buttons and "Hold webhooks" not in shown.buttons

    sandbox.create_subscription(studio["account"], studio["customer"], [studio["product"]])
    assert sandbox.wait_for_webhooks()
    events = html.unescape(requests.get(sandbox.url + "/dashboard/events", timeout=10).text)
    assert "and are <strong>held</strong>: every delivery fails" in events
    assert "Failed: %s, 1 attempt" % HELD_DELIVERY_ERROR in events

    released = requests.post(sandbox.url + "/dashboard/webhooks/release", allow_redirects=False, timeout=10)
    assert released.headers["Location"] == "/?done=released" and not sandbox.webhooks_held
    shown = page(requests.get(sandbox.url + released.headers["Location"], timeout=10))
    assert "Webhooks released: new events are sent again. Those held stay undelivered." in shown.text
    assert "Hold webhooks" in shown.buttons and "Webhooks are held" not in shown.text


def test_curl_holds_webhooks_with_a_json_answer_and_an_unknown_action_is_not_found(studio):
    sandbox = studio["sandbox"]
    answer = requests.post(sandbox.url + "/dashboard/webhooks/hold", headers={"Accept": "application/json"},
                           timeout=10)
    assert answer.status_code == 200 and answer.json() == {"webhooks_held": True}
    unknown = requests.post(sandbox.url + "/dashboard/webhooks/pause", allow_redirects=False, timeout=10)
    assert unknown.status_code == 404 and page(unknown).link("Go to the sandbox dashboard") == "/"
    assert sandbox.webhooks_held


def test_without_a_webhook_endpoint_the_dashboard_offers_no_hold(sandbox):
    sandbox.create_account(display_name="Local Fitness Studio")
    shown = page(requests.get(sandbox.url + "/", timeout=10))
    assert "Hold webhooks" not in shown.buttons and ("h2", "Webhooks") not in shown.headings
