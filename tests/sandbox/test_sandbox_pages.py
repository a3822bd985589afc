"""The sandbox's pages as a person meets them: the Connect authorize page,
the billing portal (card, invoices, cancel with its confirmation and
reason), the dashboard (labels, per-row names, revoke's confirm step, the
events with their webhook deliveries) and the error pages' way back.
Driven over HTTP as a browser would: GET a page, read its form, POST it."""
import html
import re
import threading
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import pytest
import requests
import stripe

from local.stripe_sandbox import StripeSandbox
from tests import helpers
from tests.sandbox.conftest import NOW

DAY = 24 * 3600
REDIRECT_URI = "http://localhost:3000/settings/connectors/stripe/callback"
REASONS = ["too_expensive", "missing_features", "switched_service", "unused", "customer_service", "too_complex",
           "low_quality", "other"]
EVERYTHING = {
    "subscription_cancel": {"enabled": True, "mode": "at_period_end",
                            "cancellation_reason": {"enabled": True, "options": REASONS}},
    "payment_method_update": {"enabled": True},
    "invoice_history": {"enabled": True},
    "customer_update": {"enabled": False},
}


class Page(HTMLParser):
    """What a person, or a screen reader, finds on a page: headings, form
    controls with the names their labels give them, buttons and links with
    their names, and forms with their fields."""

    _CAPTURED = {"label", "button", "a", "h1", "h2", "h3", "summary", "legend", "th", "p"}

    def __init__(self, text):
        super().__init__()
        self.text = text
        self.open = []
        self.labels_for = {}
        self.controls = []
        self.buttons = []
        self.links = []
        self.headings = []
        self.column_headers = []
        self.forms = []
        self.feed(text)
        for control in self.controls:
            attrs = control["attrs"]
            control["name"] = (attrs.get("aria-label") or self.labels_for.get(attrs.get("id"))
                               or control.get("wrapped") or "").strip()

    def handle_starttag(self, tag, attrs):
        attrs = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": attrs.get("action", ""), "method": attrs.get("method", "get"),
                               "fields": {}})
        if tag in ("input", "select", "textarea"):
            if attrs.get("type") in ("hidden", "submit"):
                if attrs.get("type") == "hidden" and self.forms:
                    self.forms[-1]["fields"][attrs.get("name")] = attrs.get("value", "")
                return
            label = next((e for e in reversed(self.open) if e["tag"] == "label"), None)
            control = {"tag": tag, "attrs": attrs, "label": label}
            self.controls.append(control)
            if self.forms and attrs.get("name"):
                self.forms[-1]["fields"].setdefault(attrs["name"], attrs.get("value", ""))
            return
        if tag == "br":
            self.handle_data(" ")
        if tag in self._CAPTURED:
            self.open.append({"tag": tag, "attrs": attrs, "text": []})

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_data(self, data):
        for element in self.open:
            element["text"].append(data)

    def handle_endtag(self, tag):
        if tag not in self._CAPTURED:
            return
        for index in range(len(self.open) - 1, -1, -1):
            if self.open[index]["tag"] == tag:
                element = self.open.pop(index)
                break
        else:
            return
        text = re.sub(r"\s+", " ", "".join(element["text"])).strip()
        attrs = element["attrs"]
        if tag == "label":
            if attrs.get("for"):
                self.labels_for[attrs["for"]] = text
            for control in self.controls:
                if control["label"] is element:
                    control["wrapped"] = text
        elif tag == "button":
            self.buttons.append(attrs.get("aria-label") or text)
        elif tag == "a":
            self.links.append((attrs.get("href"), attrs.get("aria-label") or text))
        elif tag in ("h1", "h2", "h3"):
            self.headings.append((tag, text))
        elif tag == "th" and attrs.get("scope") == "col":
            self.column_headers.append(text)

    def unlabelled(self):
        return [c["attrs"] for c in self.controls if not c["name"]]

    def control(self, name):
        [found] = [c for c in self.controls if c["name"] == name]
        return found["attrs"]

    def link(self, name):
        [found] = [href for href, text in self.links if text == name]
        return found


def page(answer):
    assert "text/html" in answer.headers["Content-Type"]
    return Page(answer.text)


def get(url):
    return requests.get(url, allow_redirects=False, timeout=10)


def post(url, fields=None):
    return requests.post(url, data=fields or {}, allow_redirects=False, timeout=10)


def connect(sandbox, client, **account_fields):
    account = sandbox.create_account(**account_fields)
    client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(account["id"])})
    return account["id"]


@pytest.fixture
def gym(sandbox, stripe_client, clock):
    """A connected account with a member subscribed to Yoga."""
    account_id = connect(sandbox, stripe_client, display_name="Local Fitness Studio")
    customer = sandbox.create_customer(account_id, email="member@localfitness.test")
    product = sandbox.create_product(account_id, name="Yoga")
    subscription = sandbox.create_subscription(account_id, customer["id"], [product["id"]])
    return {"account": account_id, "customer": customer["id"], "product": product["id"],
            "subscription": subscription["id"], "opts": {"stripe_account": account_id}}


def portal(stripe_client, gym, features=None):
    configuration = stripe_client.v1.billing_portal.configurations.create(
        {"features": features or EVERYTHING}, gym["opts"])
    return stripe_client.v1.billing_portal.sessions.create(
        {"customer": gym["customer"], "configuration": configuration.id, "return_url": "http://localhost:3000/me"},
        gym["opts"])


def authorize_url(sandbox, email="owner@gym.test", **extra):
    query = {"response_type": "code", "client_id": helpers.CLIENT_ID, "redirect_uri": REDIRECT_URI,
             "state": "st-1", "scope": "read_write"}
    if email:
        query["stripe_user[email]"] = email
    query.update(extra)
    return sandbox.url + "/oauth/authorize?" + urlencode(query)


def submit(sandbox, form, **changes):
    """POST the form as a browser would, with the fields a person changed."""
    fields = dict(form["fields"])
    fields.update(changes)
    return post(sandbox.url + form["action"], {k: v for k, v in fields.items() if v is not None})


# ------------------------------------------------------------ authorize page

def test_the_prefilled_email_reads_as_the_signed_in_user_with_a_way_to_use_another(sandbox):
    sandbox.create_account(display_name="Local Fitness Studio")
    shown = page(get(authorize_url(sandbox)))
    assert "Signed in as <strong>owner@gym.test</strong>" in shown.text
    assert "<summary>Not you? Use another account</summary>" in shown.text
    assert shown.control("Email address")["value"] == "owner@gym.test"
    assert shown.unlabelled() == []


def test_without_a_prefilled_email_the_new_account_asks_for_one_and_nobody_is_signed_in(sandbox):
    shown = page(get(authorize_url(sandbox, email=None)))
    assert "Signed in as" not in shown.text
    assert shown.control("Email")["data-selects"] == "account_new"
    assert shown.unlabelled() == []


def test_typing_into_the_new_account_fields_selects_new_account(sandbox):
    sandbox.create_account(display_name="Local Fitness Studio")
    shown = page(get(authorize_url(sandbox)))
    assert shown.control("Display name")["data-selects"] == "account_new"
    assert shown.control("New account")["id"] == "account_new"
    assert 'addEventListener("input"' in shown.text


def test_a_name_posted_beside_an_existing_account_is_refused_on_the_page_and_nothing_connects(sandbox):
    account = sandbox.create_account(display_name="Local Fitness Studio")
    [form] = page(get(authorize_url(sandbox))).forms
    answer = submit(sandbox, form, decision="approve", account_id=account["id"], new_display_name="Acme Gym")
    assert answer.status_code == 400
    again = page(answer)
    assert "You selected Local Fitness Studio but also typed \u201cAcme Gym\u201d" in again.text
    assert again.control("Display name")["value"] == "Acme Gym"
    assert "checked" in again.control("Local Fitness Studio %s" % account["id"])
    assert [a["id"] for a in sandbox.accounts] == [account["id"]] and sandbox.events == []
    [form] = again.forms
    created = submit(sandbox, form, decision="approve", account_id="new", new_display_name="Acme Gym")
    assert created.status_code == 302 and "code=ac_" in created.headers["Location"]
    assert sandbox.accounts[-1]["settings"]["dashboard"]["display_name"] == "Acme Gym"


def test_a_new_account_without_a_name_or_email_is_asked_for_again(sandbox):
    [form] = page(get(authorize_url(sandbox, email=None))).forms
    answer = submit(sandbox, form, decision="approve", account_id="new")
    assert answer.status_code == 400 and "Give the new account a display name or an email" in answer.text
    assert sandbox.accounts == []


def test_another_email_makes_the_new_account_that_users(sandbox):
    [form] = page(get(authorize_url(sandbox, stripe_landing="register"))).forms
    answer = submit(sandbox, form, decision="approve", account_id="new", new_email="partner@gym.test")
    assert answer.status_code == 302
    assert sandbox.accounts[0]["email"] == "partner@gym.test"


def test_the_page_names_where_the_person_lands_when_the_redirect_uri_passes_them_on(sandbox, monkeypatch):
    bounce = "http://127.0.0.1:8000/connectors/stripe/oauth/callback"
    monkeypatch.setitem(sandbox.redirect_landings, bounce, "http://localhost:3000/settings/connectors/stripe/callback")
    shown = page(get(authorize_url(sandbox, redirect_uri=bounce)))
    said = shown.text[shown.text.index('<p class="muted">'):]
    assert said.startswith('<p class="muted">You will return to localhost:3000 (Stripe sends your browser to '
                           '127.0.0.1:8000, which passes you on).</p>')
    assert "You will return to 127.0.0.1:8000" not in shown.text


def test_a_redirect_uri_not_known_to_pass_the_person_on_is_named_as_where_stripe_sends_them(sandbox):
    shown = page(get(authorize_url(sandbox, redirect_uri="http://127.0.0.1:8000/connectors/stripe/oauth/callback")))
    assert "Stripe then sends your browser to 127.0.0.1:8000." in shown.text
    assert "You will return to" not in shown.text
    assert "Stripe then sends your browser to localhost:3000." in get(authorize_url(sandbox)).text


def test_an_authorize_error_page_offers_the_way_to_the_dashboard(sandbox):
    answer = get(sandbox.url + "/oauth/authorize?" + urlencode({"client_id": "ca_other",
                                                                 "redirect_uri": REDIRECT_URI}))
    assert answer.status_code == 400
    assert page(answer).link("Go to the sandbox dashboard") == "/"


# ------------------------------------------------------------ billing portal

def test_the_portal_offers_only_what_its_configuration_enables(sandbox, stripe_client, gym):
    nothing = page(get(portal(stripe_client, gym, {"subscription_cancel": {"enabled": False},
                                                    "payment_method_update": {"enabled": False},
                                                    "invoice_history": {"enabled": False}}).url))
    names = [name for _, name in nothing.links] + nothing.buttons
    assert not [n for n in names if "payment method" in n or "Cancel" in n]
    assert ("h2", "Invoice history") not in nothing.headings and ("h2", "Payment method") not in nothing.headings
    everything = page(get(portal(stripe_client, gym).url))
    assert ("h2", "Payment method") in everything.headings and ("h2", "Invoice history") in everything.headings
    assert everything.link("Add payment method").endswith("/payment_method")
    assert everything.link("Cancel subscription Yoga").endswith("/subscriptions/%s/cancel" % gym["subscription"])


def test_a_card_saved_in_the_portal_becomes_the_customers_default_payment_method(sandbox, stripe_client, gym):
    session = portal(stripe_client, gym)
    form_page = page(get(sandbox.url + page(get(session.url)).link("Add payment method")))
    assert form_page.unlabelled() == []
    assert form_page.control("Card number")["autocomplete"] == "cc-number"
    form = next(f for f in form_page.forms if f["action"].endswith("/payment_method"))
    answer = submit(sandbox, form, card_number="4242 4242 4242 4242", card_expiry="12 / 34", card_cvc="123",
                    card_name="Local Member", postal_code="94107")
    assert answer.status_code == 303 and answer.headers["Location"] == "/p/session/" + session.id
    customer = stripe_client.v1.customers.retrieve(gym["customer"], {}, gym["opts"])
    method_id = customer.invoice_settings.default_payment_method
    method = stripe.PaymentMethod.construct_from(sandbox.default_payment_method(gym["account"], gym["customer"]),
                                                 helpers.SECRET_KEY)
    assert method_id.startswith("pm_") and method.customer == gym["customer"] and method.type == "card"
    assert (method.card.brand, method.card.last4, method.card.exp_month, method.card.exp_year) == (
        "visa", "4242", 12, 2034)
    overview = get(session.url).text
    assert "Visa ending in 4242 is now your default payment method." in overview
    assert "Visa ending in 4242, expires 12/2034" in overview
    assert "is now your default" not in get(session.url).text


@pytest.mark.parametrize("number, expiry, cvc, status, message", [
    ("4000000000000002", "12/34", "123", 402, "Your card was declined."),
    ("4000000000009995", "12/34", "123", 402, "Your card has insufficient funds."),
    ("4000000000000069", "12/34", "123", 402, "Your card has expired."),
    ("4000000000000127", "12/34", "123", 402, "Your card&#x27;s security code is incorrect."),
    ("4111111111111111", "12/34", "123", 402, "used a non test card"),
    ("4242424242424241", "12/34", "123", 400, "Your card number is incorrect."),
    ("4242", "12/34", "123", 400, "Your card number is invalid."),
    ("4242424242424242", "02/30", "123", 400, "Your card&#x27;s expiration date is in the past."),
    ("4242424242424242", "12/29", "123", 400, "Your card&#x27;s expiration year is invalid."),
    ("4242424242424242", "13/34", "123", 400, "Your card&#x27;s expiration month is invalid."),
    ("4242424242424242", "soon", "123", 400, "Enter the expiration date as MM / YY."),
    ("4242424242424242", "12/34", "1", 400, "Your card&#x27;s security code is invalid."),
    ("378282246310005", "12/34", "123", 400, "Your card&#x27;s security code is invalid."),
])
def test_a_card_stripe_would_refuse_is_refused_on_the_form_and_changes_nothing(sandbox, stripe_client, gym, number,
                                                                                expiry, cvc, status, message):
    session = portal(stripe_client, gym)
    answer = post(session.url + "/payment_method", {"card_number": number, "card_expiry": expiry, "card_cvc": cvc})
    assert answer.status_code == status and message in answer.text
    assert 'role="alert"' in answer.text
    assert page(answer).control("Card number")["value"] == "" and page(answer).control("Security code (CVC)")[
        "value"] == ""
    assert sandbox.default_payment_method(gym["account"], gym["customer"]) is None


def test_the_card_form_is_refused_when_the_portal_does_not_offer_it(sandbox, stripe_client, gym):
    session = portal(stripe_client, gym, {"payment_method_update": {"enabled": False}})
    for answer in (get(session.url + "/payment_method"),
                   post(session.url + "/payment_method", {"card_number": "4242424242424242",
                                                          "card_expiry": "12/34", "card_cvc": "123"})):
        assert answer.status_code == 403
        assert page(answer).link("Back to billing") == "/p/session/" + session.id
    assert sandbox.default_payment_method(gym["account"], gym["customer"]) is None


def test_each_subscription_is_invoiced_when_it_starts_and_at_each_renewal(sandbox, stripe_client, gym, clock):
    pilates = sandbox.create_product(gym["account"], name="Pilates")
    second = sandbox.create_subscription(gym["account"], gym["customer"], [pilates["id"]])
    clock[0] += DAY
    sandbox.renew_subscription(gym["account"], gym["subscription"])
    invoices = sandbox.invoices(gym["account"], subscription=gym["subscription"])
    assert [i["billing_reason"] for i in invoices] == ["subscription_create", "subscription_cycle"]
    assert [i["status"] for i in invoices] == ["paid", "paid"] and [i["total"] for i in invoices] == [1500, 1500]
    first, renewal = invoices
    assert renewal["lines"]["data"][0]["period"] == {"start": NOW + 30 * DAY, "end": NOW + 60 * DAY}
    assert (renewal["period_start"], renewal["period_end"]) == (NOW, NOW + 30 * DAY)
    prefix = first["number"].split("-")[0]
    numbers = [i["number"] for i in sandbox.invoices(gym["account"], customer=gym["customer"])]
    assert numbers == ["%s-0001" % prefix, "%s-0002" % prefix, "%s-0003" % prefix]
    listed = sandbox.invoices(gym["account"], subscription=gym["subscription"])
    assert [i["id"] for i in listed] == [first["id"], renewal["id"]]
    assert listed[1]["parent"]["subscription_details"]["subscription"] == gym["subscription"]
    shown = page(get(portal(stripe_client, gym).url))
    assert ("h3", "Yoga") in shown.headings and ("h3", "Pilates") in shown.headings
    yoga = shown.text[shown.text.index("<h3>Yoga</h3>", shown.text.index("Invoice history")):]
    assert yoga.index("%s-0003" % prefix) < yoga.index("%s-0001" % prefix)
    assert "$15.00" in yoga and "Paid" in yoga and "16 Apr 2030 \u2013 16 May 2030" in yoga
    assert shown.column_headers[:5] == ["Date", "Invoice", "Amount", "Status", "Service period"]
    assert second["id"] in shown.text


def test_a_subscription_that_still_owes_its_first_payment_has_an_open_invoice(sandbox, gym):
    owing = sandbox.create_subscription(gym["account"], gym["customer"], [gym["product"]], status="past_due")
    [invoice] = sandbox.invoices(gym["account"], subscription=owing["id"])
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_remaining"]) == ("open", 0, 1500)


def test_cancel_asks_for_confirmation_and_a_reason_then_records_it_as_stripe_does(sandbox, stripe_client, gym):
    session = portal(stripe_client, gym)
    confirm = page(get(sandbox.url + page(get(session.url)).link("Cancel subscription Yoga")))
    assert confirm.unlabelled() == []
    assert [c["attrs"]["value"] for c in confirm.controls if c["attrs"].get("name") == "reason"] == REASONS
    assert confirm.control("It\u2019s too expensive")["type"] == "radio"
    assert "Cancel subscription" in confirm.buttons
    assert confirm.link("Keep subscription") == "/p/session/" + session.id
    assert sandbox.subscription(gym["account"], gym["subscription"])["cancel_at_period_end"] is False
    [form] = confirm.forms
    answer = submit(sandbox, form, reason="too_expensive")
    assert answer.status_code == 303
    sub = stripe_client.v1.subscriptions.retrieve(gym["subscription"], {}, gym["opts"])
    assert sub.cancel_at_period_end is True and sub.status == "active"
    assert sub.cancellation_details.to_dict() == {"comment": None, "feedback": "too_expensive",
                                                  "reason": "cancellation_requested"}
    event = sandbox.events[-1]
    assert event["type"] == "customer.subscription.updated"
    assert event["data"]["object"]["cancellation_details"]["feedback"] == "too_expensive"
    assert "Your Yoga subscription will end on 16 Apr 2030." in get(session.url).text


def test_without_reasons_configured_cancel_asks_none_and_records_none(sandbox, stripe_client, gym):
    session = portal(stripe_client, gym, {"subscription_cancel": {"enabled": True, "mode": "at_period_end"}})
    url = session.url + "/subscriptions/%s/cancel" % gym["subscription"]
    assert 'name="reason"' not in get(url).text
    assert post(url, {"reason": "too_expensive"}).status_code == 303
    details = sandbox.subscription(gym["account"], gym["subscription"])["cancellation_details"]
    assert details == {"comment": None, "feedback": None, "reason": "cancellation_requested"}


def test_a_reason_not_offered_is_refused_and_the_subscription_stays(sandbox, stripe_client, gym):
    features = dict(EVERYTHING, subscription_cancel={
        "enabled": True, "mode": "at_period_end", "cancellation_reason": {"enabled": True, "options": ["unused"]}})
    session = portal(stripe_client, gym, features)
    answer = post(session.url + "/subscriptions/%s/cancel" % gym["subscription"], {"reason": "too_expensive"})
    assert answer.status_code == 400 and "Pick one of the reasons listed" in answer.text
    assert [c["attrs"]["value"] for c in page(answer).controls if c["attrs"].get("name") == "reason"] == ["unused"]
    assert sandbox.subscription(gym["account"], gym["subscription"])["cancel_at_period_end"] is False


def test_an_immediate_cancel_records_the_reason_on_the_ended_subscription(sandbox, stripe_client, gym):
    features = dict(EVERYTHING, subscription_cancel=dict(EVERYTHING["subscription_cancel"], mode="immediately"))
    session = portal(stripe_client, gym, features)
    url = session.url + "/subscriptions/%s/cancel" % gym["subscription"]
    assert "Your subscription ends now" in get(url).text
    assert post(url, {"reason": "switched_service"}).status_code == 303
    event = sandbox.events[-1]
    assert event["type"] == "customer.subscription.deleted"
    assert event["data"]["object"]["cancellation_details"]["feedback"] == "switched_service"
    assert "Your Yoga subscription has been canceled." in get(session.url).text


def test_dont_cancel_keeps_the_subscription_and_clears_its_cancellation_details(sandbox, stripe_client, gym):
    session = portal(stripe_client, gym)
    post(session.url + "/subscriptions/%s/cancel" % gym["subscription"], {"reason": "unused"})
    shown = page(get(session.url))
    assert "Don\u2019t cancel Yoga" in shown.buttons
    keep = next(f for f in shown.forms if f["action"].endswith("/keep"))
    assert submit(sandbox, keep).status_code == 303
    sub = sandbox.subscription(gym["account"], gym["subscription"])
    assert sub["cancel_at_period_end"] is False
    assert sub["cancellation_details"] == {"comment": None, "feedback": None, "reason": None}
    assert "Your Yoga subscription will renew on 16 Apr 2030." in get(session.url).text


def section(shown, heading):
    """The part of a portal page under an h2, up to the next one."""
    start = shown.text.index("<h2>%s</h2>" % heading)
    end = shown.text.find("<h2>", start + 1)
    return shown.text[start:end if end > 0 else None]


def test_a_subscription_past_the_end_its_cancellation_set_is_no_longer_current_nor_active(
        sandbox, stripe_client, gym, clock):
    session = portal(stripe_client, gym)
    post(session.url + "/subscriptions/%s/cancel" % gym["subscription"], {"reason": "unused"})
    assert "Cancels 16 Apr 2030" in section(page(get(session.url)), "Current subscriptions")
    # The period is over and nothing moved the sandbox's clock past it: it is
    # still "active" at the API, and Stripe would have ended it by now.
    clock[0] = NOW + 31 * DAY
    shown = page(get(session.url))
    current = section(shown, "Current subscriptions")
    assert "No current subscriptions." in current and "Active" not in current and "Yoga" not in current
    assert not [b for b in shown.buttons if "cancel" in b.lower()]
    assert not [name for _, name in shown.links if "Cancel subscription" in name]
    assert ("h3", "Yoga (canceled)") in shown.headings
    # Nor can it be kept, or canceled again, from the portal.
    kept = post(session.url + "/subscriptions/%s/keep" % gym["subscription"])
    assert kept.status_code == 404 and "no current subscription" in kept.text
    assert sandbox.subscription(gym["account"], gym["subscription"])["cancel_at_period_end"] is True


def test_a_subscription_whose_cancel_at_has_passed_is_no_longer_current(sandbox, stripe_client, gym, clock):
    sandbox.update_subscription(gym["account"], gym["subscription"], cancel_at=NOW + 5 * DAY)
    session = portal(stripe_client, gym)
    assert "Cancels 22 Mar 2030" in section(page(get(session.url)), "Current subscriptions")
    clock[0] = NOW + 5 * DAY
    assert "No current subscriptions." in section(page(get(session.url)), "Current subscriptions")


def test_portal_error_pages_lead_back_to_the_portal_or_the_dashboard(sandbox, stripe_client, gym):
    missing = get(sandbox.url + "/p/session/bps_missing")
    assert missing.status_code == 404 and page(missing).link("Go to the sandbox dashboard") == "/"
    session = portal(stripe_client, gym)
    other = post(session.url + "/subscriptions/sub_other/cancel")
    assert other.status_code == 404 and page(other).link("Back to billing") == "/p/session/" + session.id


# ------------------------------------------------------------------ dashboard

def test_every_dashboard_control_is_labelled_and_each_button_names_its_row(sandbox, stripe_client, gym):
    connect(sandbox, stripe_client, display_name="Downtown Gym")
    shown = page(get(sandbox.url + "/"))
    assert shown.unlabelled() == []
    assert ("h1", "Stripe sandbox") in shown.headings and ("h2", "Accounts") in shown.headings
    assert "Actions" in shown.column_headers
    for name in ("Local Fitness Studio", "Downtown Gym"):
        assert "Rename %s" % name in shown.buttons and "Add customer to %s" % name in shown.buttons
        assert "Add subscription on %s" % name in shown.buttons
        assert shown.control("Display name of %s" % name)["value"] == name
        assert shown.control("New customer\u2019s email for %s" % name)["type"] == "email"
    row = "Yoga for member@localfitness.test (%s)" % gym["subscription"]
    assert "renew %s" % row in shown.buttons and "cancel now %s" % row in shown.buttons
    assert len(shown.buttons) == len(set(shown.buttons))
    revoke = shown.link("Revoke CustomerHub\u2019s access to Local Fitness Studio")
    assert revoke == "/dashboard/accounts/%s/revoke" % gym["account"]


def test_revoke_asks_for_confirmation_then_says_what_it_did(sandbox, stripe_client, gym):
    confirm = get(sandbox.url + "/dashboard/accounts/%s/revoke" % gym["account"])
    assert confirm.status_code == 200 and sandbox.is_connected(gym["account"])
    shown = page(confirm)
    assert "Revoke access" in shown.buttons and shown.link("Keep access") == "/"
    [form] = shown.forms
    answer = submit(sandbox, form)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/?done=revoked&account=%s" % gym["account"]
    assert not sandbox.is_connected(gym["account"])
    event = sandbox.events[-1]
    assert event["type"] == "account.application.deauthorized"
    after = get(sandbox.url + answer.headers["Location"]).text
    assert 'role="status"' in after and "CustomerHub no longer has access to Local Fitness Studio." in after
    assert '/dashboard/events/%s' % event["id"] in after
    again = page(get(sandbox.url + "/dashboard/accounts/%s/revoke" % gym["account"]))
    assert "There is nothing to revoke." in again.text and again.forms == []


def test_rename_and_add_customer_say_what_they_did(sandbox, gym):
    renamed = post(sandbox.url + "/dashboard/accounts/%s/update" % gym["account"], {"display_name": "Studio 2"})
    assert renamed.status_code == 303
    assert "Renamed the account to Studio 2." in get(sandbox.url + renamed.headers["Location"]).text
    added = post(sandbox.url + "/dashboard/accounts/%s/customers" % gym["account"], {"email": "new@gym.test"})
    assert "Added a customer to Studio 2." in get(sandbox.url + added.headers["Location"]).text


def test_events_without_a_webhook_endpoint_say_they_were_not_sent(sandbox, gym):
    dashboard = get(sandbox.url + "/").text
    assert '<a href="/dashboard/events">%d events</a>' % len(sandbox.events) in dashboard
    listed = page(get(sandbox.url + "/dashboard/events"))
    assert ("h1", "Events") in listed.headings
    assert listed.text.count("Not sent: no webhook endpoint") == len(sandbox.events)


class _Endpoint(BaseHTTPRequestHandler):
    """A webhook endpoint that refuses subscription updates."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(500 if b'"customer.subscription.updated"' in body else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/hook" % server.server_address[1]
    server.shutdown()


def test_the_events_list_shows_each_webhook_deliverys_result(endpoint):
    with StripeSandbox(webhook_url=endpoint, webhook_secret="whsec_test") as sandbox:
        account = sandbox.create_account(display_name="Local Fitness Studio")
        customer = sandbox.create_customer(account["id"], email="m@gym.test")
        product = sandbox.create_product(account["id"], name="Yoga")
        subscription = sandbox.create_subscription(account["id"], customer["id"], [product["id"]])
        sandbox.update_subscription(account["id"], subscription["id"], cancel_at_period_end=True)
        assert sandbox.wait_for_webhooks()
        created, updated = sandbox.events
        assert [a["status"] for a in sandbox.delivery_attempts(created["id"])] == [200]
        listed = get(sandbox.url + "/dashboard/events").text
        assert listed.index(updated["id"]) < listed.index(created["id"])
        assert "Delivered: answered 200, 1 attempt" in listed and "Failed: answered 500, 1 attempt" in listed
        detail = page(get(sandbox.url + "/dashboard/events/" + updated["id"]))
        assert ("h1", "customer.subscription.updated") in detail.headings
        assert "Failed: answered 500, 1 attempt" in detail.text and "cancel_at_period_end" in detail.text
        assert detail.link("\u2190 Events") == "/dashboard/events"


def test_a_delivery_the_endpoint_never_answered_shows_the_error():
    with StripeSandbox(webhook_url="http://127.0.0.1:9/hook", webhook_secret="whsec_test") as sandbox:
        sandbox.create_account(display_name="Local Fitness Studio")
        sandbox.update_account(sandbox.accounts[0]["id"], display_name="Renamed")
        assert sandbox.wait_for_webhooks()
        [event] = sandbox.events
        [attempt] = sandbox.delivery_attempts(event["id"])
        assert attempt["status"] is None and attempt["error"]
        assert "Failed: %s" % attempt["error"] in html.unescape(get(sandbox.url + "/dashboard/events").text)


# --------------------------------------------------------------- error pages

def test_an_unknown_page_and_a_refused_control_lead_back_to_the_dashboard(sandbox, gym):
    missing = get(sandbox.url + "/nowhere")
    assert missing.status_code == 404 and page(missing).link("Go to the sandbox dashboard") == "/"
    refused = post(sandbox.url + "/dashboard/subscriptions/sub_none/renew")
    assert refused.status_code == 404 and page(refused).link("Go to the sandbox dashboard") == "/"
    event = get(sandbox.url + "/dashboard/events/evt_none")
    assert event.status_code == 404 and page(event).link("Back to the events") == "/dashboard/events"


def test_every_page_fits_a_phone_and_starts_with_one_heading(sandbox, stripe_client, gym):
    session = portal(stripe_client, gym)
    for url in (sandbox.url + "/", authorize_url(sandbox), session.url, session.url + "/payment_method",
                session.url + "/subscriptions/%s/cancel" % gym["subscription"], sandbox.url + "/dashboard/events",
                sandbox.url + "/dashboard/accounts/%s/revoke" % gym["account"]):
        shown = page(get(url))
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in shown.text
        assert [level for level, _ in shown.headings].count("h1") == 1, url
        assert shown.unlabelled() == [], url
