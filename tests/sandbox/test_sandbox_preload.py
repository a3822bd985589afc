"""Pre-loading an account with many subscriptions, as a business had them
before it connected a platform: by the Python method and by the dashboard's
form, listed back through the real stripe-python client, and never sent as
webhooks."""
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from local.stripe_sandbox import MAX_PRELOAD, StripeSandbox
from tests.sandbox.conftest import NOW
from tests.sandbox.test_sandbox_pages import page

DAY = 24 * 3600


def connect(sandbox, client, account_id):
    client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(account_id)})


@pytest.fixture
def studio(sandbox, clock):
    return sandbox.create_account(display_name="Local Fitness Studio")["id"]


def preloaded(sandbox, account_id):
    """Each pre-loaded subscription with its customer, by the customer's number."""
    customers = {c["id"]: c for c in sandbox.customers(account_id)}
    found = {}
    for subscription in sandbox.subscriptions(account_id):
        customer = customers[subscription["customer"]]
        if customer["email"].startswith("preload-"):
            found[int(customer["email"][len("preload-"):].split("@")[0])] = (subscription, customer)
    return found


def test_a_preload_makes_the_customers_and_subscriptions_in_the_stated_shares(sandbox, studio):
    summary = sandbox.preload_subscriptions(studio, 2000)
    made = preloaded(sandbox, studio)
    assert sorted(made) == list(range(1, 2001))
    statuses = Counter(s["status"] for s, _ in made.values())
    assert statuses == {"active": 1700, "trialing": 140, "past_due": 100, "canceled": 60}
    assert summary["statuses"] == dict(statuses) and summary["subscriptions"] == 2000
    assert summary["numbers"] == [1, 2000] and summary["events"] == 0
    unmatched = [n for n, (_, c) in made.items() if not c["metadata"]]
    assert len(unmatched) == 100 == summary["unmatched"]
    for number, (subscription, customer) in made.items():
        assert customer["email"] == "preload-%04d@example.com" % number
        if number not in unmatched:
            assert customer["metadata"] == {"customerhub_user_id": "user_preload_%04d" % number}
    products = {p["id"]: p for p in sandbox.products(studio)}
    assert sorted(p["metadata"]["customerhub_product_id"] for p in products.values()) == ["pilates", "spin", "yoga"]
    per_product = Counter(s["items"]["data"][0]["price"]["product"] for s, _ in made.values())
    assert sorted(per_product.values()) == [666, 667, 667]


def test_a_preload_is_backdated_and_each_subscription_is_in_a_period_its_status_fits(sandbox, studio):
    sandbox.preload_subscriptions(studio, 500)
    for subscription, customer in preloaded(sandbox, studio).values():
        [item] = subscription["items"]["data"]
        start, end = item["current_period_start"], item["current_period_end"]
        assert subscription["created"] == subscription["start_date"] == customer["created"] <= NOW
        status = subscription["status"]
        if status == "trialing":
            assert subscription["trial_start"] == start <= NOW < end == subscription["trial_end"]
        elif status == "canceled":
            assert subscription["ended_at"] == subscription["canceled_at"] == end <= NOW
        else:
            assert subscription["created"] <= NOW - 31 * DAY and start <= NOW < end
            assert subscription["canceled_at"] is None and not subscription["cancel_at_period_end"]


def test_a_preload_records_no_events_and_sends_no_webhooks():
    received = []

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with StripeSandbox(webhook_url="http://127.0.0.1:%d/hook" % server.server_address[1],
                           webhook_secret="whsec_test") as sandbox:
            account = sandbox.create_account(display_name="Local Fitness Studio")
            sandbox.preload_subscriptions(account["id"], 300)
            assert sandbox.wait_for_webhooks()
            assert sandbox.events == [] and received == []
            # Only what past_due says: each such subscription owes its period's invoice since the period began.
            past_due = {s["id"]: s for s in sandbox.subscriptions(account["id"]) if s["status"] == "past_due"}
            invoices = sandbox.invoices(account["id"])
            assert len(past_due) == 15 and len(invoices) == 15
            for invoice in invoices:
                subscription = past_due[invoice["parent"]["subscription_details"]["subscription"]]
                assert invoice["status"] == "open"
                assert invoice["created"] == subscription["items"]["data"][0]["current_period_start"]
    finally:
        server.shutdown()


def test_the_real_client_pages_through_every_active_preloaded_subscription(sandbox, stripe_client, studio):
    sandbox.preload_subscriptions(studio, 2000)
    connect(sandbox, stripe_client, studio)
    listed = stripe_client.v1.subscriptions.list({"status": "active", "limit": 100, "expand": ["data.customer"]},
                                                 {"stripe_account": studio})
    seen = [s for s in listed.auto_paging_iter()]
    assert len(seen) == len({s.id for s in seen}) == 1700
    assert all(s.status == "active" and s.customer.email.startswith("preload-") for s in seen)
    named = {s.id: s.customer.metadata["customerhub_user_id"] for s in seen
             if "customerhub_user_id" in s.customer.metadata}
    assert named == {s["id"]: c["metadata"]["customerhub_user_id"] for s, c in preloaded(sandbox, studio).values()
                     if s["status"] == "active" and c["metadata"]}
    assert 1600 <= len(named) < 1700
    events = stripe_client.v1.events.list({}, {"stripe_account": studio}).data
    assert [e.type for e in events] == ["account.application.authorized"]


def test_a_second_preload_numbers_on_and_reuses_the_accounts_products(sandbox, studio):
    yoga = sandbox.create_product(studio, name="Yoga", metadata={"customerhub_product_id": "yoga"})
    first = sandbox.preload_subscriptions(studio, 10)
    second = sandbox.preload_subscriptions(studio, 5)
    assert second["numbers"] == [11, 15] and yoga["id"] in first["products"] == second["products"]
    assert sorted(preloaded(sandbox, studio)) == list(range(1, 16))
    assert len(sandbox.products(studio)) == 3
    assert [p["subscriptions"] for p in sandbox.preloads(studio)] == [10, 5]


@pytest.mark.parametrize("count", [0, -1, MAX_PRELOAD + 1, "5", 2.0, True])
def test_a_count_out_of_range_is_refused_and_nothing_is_made(sandbox, studio, count):
    with pytest.raises(ValueError, match="whole number from 1 to 10000"):
        sandbox.preload_subscriptions(studio, count)
    assert sandbox.subscriptions(studio) == [] and sandbox.preloads(studio) == []


# ------------------------------------------------------------------ dashboard

def test_the_dashboards_preload_form_is_labelled_per_account_and_says_no_events_are_sent(sandbox, studio):
    sandbox.create_account(display_name="Downtown Gym")
    shown = page(requests.get(sandbox.url + "/", timeout=10))
    assert shown.unlabelled() == [] and len(shown.buttons) == len(set(shown.buttons))
    for name in ("Local Fitness Studio", "Downtown Gym"):
        assert "Pre-load subscriptions on %s" % name in shown.buttons
        count = shown.control("How many subscriptions (at most 10,000) for %s" % name)
        assert (count["type"], count["value"], count["max"]) == ("number", "2000", "10000")
    assert "created before any platform was connected: no events" in shown.text


def test_the_preload_form_loads_the_account_and_says_what_it_made(sandbox, studio):
    form = next(f for f in page(requests.get(sandbox.url + "/", timeout=10)).forms
                if f["action"] == "/dashboard/accounts/%s/preload" % studio)
    answer = requests.post(sandbox.url + form["action"], data=form["fields"], allow_redirects=False, timeout=10)
    assert answer.status_code == 303 and answer.headers["Location"] == "/?done=preloaded&account=" + studio
    assert len(sandbox.subscriptions(studio)) == 2000 and sandbox.events == []
    after = page(requests.get(sandbox.url + answer.headers["Location"], timeout=10))
    assert ("Pre-loaded on Local Fitness Studio: 2,000 subscriptions (1,700 active, 140 trialing, 100 past_due, "
            "60 canceled); 100 customers name no member. Created before any platform was connected: no events."
            ) in after.text
    assert "The 50 newest of 2,000 subscriptions; the API lists them all." in after.text
    assert after.text.count('<th scope="row" data-label="Subscription">') == 50


def test_curl_gets_the_preloads_counts_as_json(sandbox, studio):
    answer = requests.post(sandbox.url + "/dashboard/accounts/%s/preload" % studio, data={"count": "40"},
                           headers={"Accept": "application/json"}, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["statuses"] == {"active": 35, "trialing": 2, "past_due": 2, "canceled": 1}
    assert answer.json()["unmatched"] == 2 and answer.json()["events"] == 0


@pytest.mark.parametrize("count", ["", "0", "10001", "abc", "-5", "2.5"])
def test_a_bad_count_on_the_form_is_refused_with_a_way_back_and_nothing_is_made(sandbox, studio, count):
    answer = requests.post(sandbox.url + "/dashboard/accounts/%s/preload" % studio, data={"count": count},
                           allow_redirects=False, timeout=10)
    assert answer.status_code == 400
    shown = page(answer)
    assert "How many subscriptions: a whole number from 1 to 10,000." in shown.text
    assert shown.link("Go to the sandbox dashboard") == "/"
    assert sandbox.subscriptions(studio) == [] and sandbox.customers(studio) == []


def test_a_preload_on_an_unknown_account_is_not_found(sandbox):
    answer = requests.post(sandbox.url + "/dashboard/accounts/acct_none/preload", data={"count": "5"},
                           headers={"Accept": "application/json"}, timeout=10)
    assert answer.status_code == 404 and "acct_none" in answer.json()["error"]["message"]
