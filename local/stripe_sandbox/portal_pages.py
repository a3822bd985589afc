"""The billing portal a member meets at a session's url: their
subscriptions, the card their invoices are charged to, their invoices, and
cancelling with a confirmation (and a reason, when the configuration asks).
Only what the session's configuration enables is offered."""
import re
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import urlsplit

from local.stripe_sandbox.pages import (day, display_name, error_page, esc, money, notice, problem,
                                        product_names, see_other)
from local.stripe_sandbox.payment_methods import BRAND_NAMES, CardError
from local.stripe_sandbox.subscriptions import _period_end
from local.stripe_sandbox.wire import Request, Response, html_response

# Stripe's cancellation reasons, in its order, as its portal words them.
CANCELLATION_REASONS = {
    "too_expensive": "It\u2019s too expensive",
    "missing_features": "Some features are missing",
    "switched_service": "I\u2019m switching to a different service",
    "unused": "I don\u2019t use the service enough",
    "customer_service": "Customer service was less than expected",
    "too_complex": "Ease of use was less than expected",
    "low_quality": "Quality was less than expected",
    "other": "Other reason",
}
# The test cards the card form lists, and what each does.
_LISTED_CARDS = (("4242424242424242", "Succeeds"), ("5555555555554444", "Succeeds (Mastercard)"),
                 ("4000000000000341", "Saved; later charges fail"), ("4000000000000002", "Declined"),
                 ("4000000000009995", "Declined: insufficient funds"), ("4000000000000069", "Declined: expired"),
                 ("4000000000000127", "Declined: incorrect security code"),
                 ("4000000000000119", "Declined: processing error"))
# A subscription's status as the portal shows it to its customer.
_STATUS_WORDS = {"active": "Active", "trialing": "Trial", "past_due": "Past due", "unpaid": "Unpaid",
                 "paused": "Paused", "incomplete": "Incomplete", "incomplete_expired": "Expired"}
# Which field a card error is about.
_CARD_FIELDS = {"number": "card_number", "exp_month": "card_expiry", "exp_year": "card_expiry", "cvc": "card_cvc"}


class _Portal:
    """One open portal session: whose it is and what its configuration allows."""

    def __init__(self, session: Dict[str, Any], configuration: Dict[str, Any], customer: Dict[str, Any]):
        self.session = session
        self.id = session["id"]
        self.scope = session["_account"]
        self.customer = customer
        self.features = configuration.get("features") or {}
        self.business = configuration.get("business_profile") or {}
        self.home = "/p/session/%s" % self.id

    def enabled(self, feature: str) -> bool:
        return bool((self.features.get(feature) or {}).get("enabled"))

    @property
    def cancel(self) -> Dict[str, Any]:
        return self.features.get("subscription_cancel") or {}

    def reasons(self) -> List[str]:
        """The reasons to offer, or none when the configuration does not collect them."""
        collect = self.cancel.get("cancellation_reason") or {}
        if not collect.get("enabled"):
            return []
        options = collect.get("options")
        return [o for o in (options if isinstance(options, list) and options else CANCELLATION_REASONS)
                if o in CANCELLATION_REASONS]


class PortalPages:
    """The portal's pages and the forms they post."""

    def _open_portal(self, session_id: str) -> Union[_Portal, Response]:
        session = self._portal_sessions.get(session_id)
        if session is None:
            return error_page("This portal session does not exist.", 404)
        scope = session["_account"]
        configuration = self._portal_configurations.get(scope, {}).get(session["configuration"], {})
        customer = self._customers.get(scope, {}).get(session["customer"], {})
        return _Portal(dict(session, id=session_id), configuration, customer)

    def _portal_page(self, portal: _Portal, title: str, body: str, status: int = 200) -> Response:
        account = self._accounts.get(portal.scope or "", {})
        business = display_name(account) if account else self.platform_name
        return html_response("%s \u2014 %s" % (title, business), '<p class="eyebrow">%s</p>%s' % (esc(business), body),
                             status)

    def _page_portal_session(self, request: Request, session_id: str) -> Response:
        portal = self._open_portal(session_id)
        if isinstance(portal, Response):
            return portal
        flash = self._portal_sessions[session_id].pop("_notice", None)
        sections = [self._portal_subscriptions(portal)]
        if portal.enabled("payment_method_update"):
            sections.append(self._portal_payment_method(portal))
        if portal.enabled("invoice_history"):
            sections.append(self._portal_invoices(portal))
        listed = "".join("<li>%s: <strong>%s</strong></li>" % (
            esc(name.replace("_", " ")), "on" if (value or {}).get("enabled") else "off")
            for name, value in sorted(portal.features.items()) if isinstance(value, dict))
        links = " &middot; ".join('<a href="%s">%s</a>' % (esc(url), label) for url, label in (
            (portal.business.get("privacy_policy_url"), "Privacy policy"),
            (portal.business.get("terms_of_service_url"), "Terms of service")) if url)
        return_url = portal.session.get("return_url")
        back = ('<p><a class="button primary" href="%s">Return to %s</a></p>' % (
            esc(return_url), esc(urlsplit(return_url).netloc or return_url)) if return_url else "")
        body = ('<h1>Billing portal</h1><p>Customer <strong>%s</strong> <code>%s</code></p>%s%s'
                '<details class="muted"><summary>What this portal allows</summary><ul>%s</ul></details>'
                '<footer><p class="muted">%s</p>%s</footer>' % (
                    esc(portal.customer.get("email") or ""), esc(portal.session["customer"]),
                    notice(esc(flash)) if flash else "", "".join(sections), listed or "<li>nothing</li>",
                    links, back))
        return self._portal_page(portal, "Billing portal", body)

    def _portal_subscriptions(self, portal: _Portal) -> str:
        """The customer's current subscriptions, each with its cancel step or
        its don't-cancel button when the configuration allows canceling. One
        that has ended is not among them, as in Stripe's portal, whether it
        was canceled or is past the end its cancellation set (which Stripe
        would have ended by then, and the sandbox ends when its clock moves);
        its invoices say it was canceled."""
        now = self.now()
        subscriptions = [s for s in reversed(list(self._subscriptions.get(portal.scope, {}).values()))
                         if s["customer"] == portal.session["customer"] and not _has_ended(s, now)]
        if not subscriptions:
            return '<h2>Current subscriptions</h2><p class="muted">No current subscriptions.</p>'
        products = self._products.get(portal.scope, {})
        rows = []
        for subscription in subscriptions:
            name = product_names(products, subscription)
            ends = _ends(subscription)
            when = ("Cancels %s" % day(ends)) if ends else ("Renews %s" % day(_period_end(subscription)))
            action = ""
            if portal.enabled("subscription_cancel"):
                path = "%s/subscriptions/%s/" % (portal.home, subscription["id"])
                if ends:
                    action = ('<form method="post" action="%skeep"><button class="primary">Don\u2019t cancel'
                              '<span class="visually-hidden"> %s</span></button></form>' % (esc(path), esc(name)))
                else:
                    action = ('<a class="button" href="%scancel">Cancel subscription<span class="visually-hidden">'
                              ' %s</span></a>' % (esc(path), esc(name)))
            rows.append('<li class="card"><h3>%s</h3><p>%s &middot; %s</p><p class="muted">%s &middot; '
                        '<code>%s</code></p>%s</li>' % (
                            esc(name), esc(_price(subscription)), esc(_STATUS_WORDS.get(subscription["status"],
                                                                                   subscription["status"])), esc(when),
                            esc(subscription["id"]), action))
        return '<h2>Current subscriptions</h2><ul class="cards">%s</ul>' % "".join(rows)

    def _portal_payment_method(self, portal: _Portal) -> str:
        method = self._default_payment_method(portal.scope, portal.session["customer"])
        if method:
            shown = "<p>%s</p>" % esc(_card_words(method))
            link = "Update payment method"
        else:
            shown = '<p class="muted">No payment method on file.</p>'
            link = "Add payment method"
        return '<h2>Payment method</h2>%s<p><a class="button" href="%s/payment_method">%s</a></p>' % (
            shown, esc(portal.home), link)

    def _portal_invoices(self, portal: _Portal) -> str:
        """The customer's invoices, a list per subscription, newest first."""
        invoices = self._invoices_of(portal.scope, customer=portal.session["customer"])
        if not invoices:
            return '<h2>Invoice history</h2><p class="muted">No invoices yet.</p>'
        by_subscription: Dict[str, List[Dict[str, Any]]] = {}
        for invoice in reversed(invoices):
            details = (invoice.get("parent") or {}).get("subscription_details") or {}
            by_subscription.setdefault(details.get("subscription") or "", []).append(invoice)
        products = self._products.get(portal.scope, {})
        parts = []
        for subscription_id, listed in by_subscription.items():
            subscription = self._subscriptions.get(portal.scope, {}).get(subscription_id)
            name = product_names(products, subscription) if subscription else "Other invoices"
            ended = " (canceled)" if subscription and _has_ended(subscription, self.now()) else ""
            rows = "".join(
                '<tr><td data-label="Date">%s</td><th scope="row" data-label="Invoice">%s</th>'
                '<td data-label="Amount">%s</td><td data-label="Status">%s</td>'
                '<td data-label="Service period">%s</td></tr>' % (
                    esc(day(i["created"])), esc(i["number"]), esc(money(i["total"], i["currency"])),
                    esc(i["status"].capitalize()), esc(_service_period(i)))
                for i in listed)
            parts.append(
                '<h3>%s%s</h3><table class="stack"><thead><tr><th scope="col">Date</th><th scope="col">Invoice</th>'
                '<th scope="col">Amount</th><th scope="col">Status</th><th scope="col">Service period</th></tr>'
                '</thead><tbody>%s</tbody></table>' % (esc(name), esc(ended), rows))
        return "<h2>Invoice history</h2>%s" % "".join(parts)

    # canceling

    def _portal_current_subscription(self, portal: _Portal, subscription_id: str) -> Union[Dict[str, Any], Response]:
        subscription = self._subscriptions.get(portal.scope, {}).get(subscription_id)
        if subscription is None or subscription["customer"] != portal.session["customer"] \
                or _has_ended(subscription, self.now()):
            return error_page("This customer has no current subscription %s." % subscription_id, 404,
                              back=(portal.home, "Back to billing"))
        if not portal.enabled("subscription_cancel"):
            return error_page("This portal does not let customers cancel subscriptions.", 403,
                              back=(portal.home, "Back to billing"))
        return subscription

    def _page_portal_cancel_confirm(self, request: Request, session_id: str, subscription_id: str,
                                    error: Optional[str] = None) -> Response:
        portal = self._open_portal(session_id)
        if isinstance(portal, Response):
            return portal
        subscription = self._portal_current_subscription(portal, subscription_id)
        if isinstance(subscription, Response):
            return subscription
        name = product_names(self._products.get(portal.scope, {}), subscription)
        if portal.cancel.get("mode") == "immediately":
            outcome = "Your subscription ends now, and access to %s with it." % esc(name)
        else:
            outcome = ("Your subscription stays active until <strong>%s</strong> and does not renew after that."
                       % esc(day(_period_end(subscription))))
        reasons = ""
        if portal.reasons():
            chosen = request.params.get("reason") if error else None
            reasons = ('<fieldset><legend>Why are you canceling? <span class="muted">(optional)</span></legend>%s'
                       '</fieldset>' % "".join(
                           '<label class="choice"><input type="radio" name="reason" value="%s"%s> <span>%s</span>'
                           '</label>' % (esc(reason), " checked" if reason == chosen else "",
                                         esc(CANCELLATION_REASONS[reason]))
                           for reason in portal.reasons()))
        body = ('<h1>Cancel your %s subscription</h1>%s<p>%s</p>'
                '<form method="post" action="%s/subscriptions/%s/cancel">%s<div class="actions">'
                '<button class="danger">Cancel subscription</button> '
                '<a class="button" href="%s">Keep subscription</a></div></form>' % (
                    esc(name), problem(esc(error)) if error else "", outcome, esc(portal.home),
                    esc(subscription["id"]), reasons, esc(portal.home)))
        return self._portal_page(portal, "Cancel subscription", body, 400 if error else 200)

    def _page_portal_subscription(self, request: Request, session_id: str, subscription_id: str,
                                  action: str) -> Response:
        portal = self._open_portal(session_id)
        if isinstance(portal, Response):
            return portal
        subscription = self._portal_current_subscription(portal, subscription_id)
        if isinstance(subscription, Response):
            return subscription
        scope, name = portal.scope, product_names(self._products.get(portal.scope, {}), subscription)
        if action == "keep":
            changes: Dict[str, Any] = {"cancel_at_period_end": False, "cancel_at": None}
            if any((subscription.get("cancellation_details") or {}).values()):
                changes["cancellation_details"] = {"comment": None, "feedback": None, "reason": None}
            kept = self._update_subscription(scope, subscription_id, changes)
            said = "Your %s subscription will renew on %s." % (name, day(_period_end(kept)))
        else:
            reason = request.params.get("reason") or None
            offered = portal.reasons()
            if reason is not None and offered and reason not in offered:
                return self._page_portal_cancel_confirm(request, session_id, subscription_id,
                                                        error="Pick one of the reasons listed, or none.")
            # As Stripe records a portal cancellation: requested by the
            # customer, with the reason they gave when one was asked for.
            details = {"comment": None, "feedback": reason if offered else None, "reason": "cancellation_requested"}
            if portal.cancel.get("mode") == "immediately":
                self._cancel_subscription(scope, subscription_id, cancellation_details=details)
                said = "Your %s subscription has been canceled." % name
            else:
                self._update_subscription(scope, subscription_id,
                                          {"cancel_at_period_end": True, "cancellation_details": details})
                said = "Your %s subscription will end on %s." % (name, day(_period_end(subscription)))
        self._portal_sessions[session_id]["_notice"] = said
        return see_other(portal.home)

    # the card

    def _page_portal_payment_method(self, request: Request, session_id: str, error: Optional[CardError] = None,
                                    status: int = 200) -> Response:
        portal = self._open_portal(session_id)
        if isinstance(portal, Response):
            return portal
        if not portal.enabled("payment_method_update"):
            return error_page("This portal does not let customers update their payment method.", 403,
                              back=(portal.home, "Back to billing"))
        current = self._default_payment_method(portal.scope, portal.session["customer"])
        params = request.params if error else {}
        wrong = _CARD_FIELDS.get(error.param or "") if error else None

        def field(id: str, label: str, autocomplete: str, keep: bool, extra: str = "") -> str:
            value = esc(params.get(id) or "") if keep else ""
            invalid = ' aria-invalid="true" aria-describedby="card_error"' if wrong == id else ""
            return ('<div class="field"><label for="%s">%s</label><input id="%s" name="%s" autocomplete="%s"'
                    ' value="%s"%s%s></div>' % (id, label, id, id, autocomplete, value, invalid, extra))

        cards = "".join('<tr><td><code>%s</code></td><td>%s</td></tr>' % (
            " ".join(re.findall(".{1,4}", number)), esc(outcome)) for number, outcome in _LISTED_CARDS)
        body = (
            '<h1>%s</h1>%s%s<form method="post" action="%s/payment_method">%s<div class="row">%s%s</div>%s%s'
            '<details><summary>Test cards</summary><table><thead><tr><th scope="col">Card number</th>'
            '<th scope="col">What happens</th></tr></thead><tbody>%s</tbody></table>'
            '<p class="muted">Use any future expiration date and any three-digit security code (four digits for '
            'American Express).</p></details>'
            '<div class="actions"><button class="primary">Save card</button> '
            '<a class="button" href="%s">Go back</a></div></form>' % (
                "Update payment method" if current else "Add payment method",
                '<p>Your invoices are charged to %s.</p>' % esc(_card_words(current)) if current else "",
                '<p class="problem" role="alert" id="card_error">%s</p>' % esc(str(error)) if error else "",
                esc(portal.home),
                field("card_number", "Card number", "cc-number", False,
                      ' inputmode="numeric" placeholder="1234 1234 1234 1234" required'),
                field("card_expiry", "Expiration (MM / YY)", "cc-exp", True,
                      ' inputmode="numeric" placeholder="MM / YY" required'),
                field("card_cvc", "Security code (CVC)", "cc-csc", False,
                      ' inputmode="numeric" maxlength="4" required'),
                field("card_name", "Name on card", "cc-name", True),
                field("postal_code", "ZIP or postal code", "postal-code", True),
                cards, esc(portal.home)))
        return self._portal_page(portal, "Payment method", body, status)

    def _page_portal_save_card(self, request: Request, session_id: str) -> Response:
        portal = self._open_portal(session_id)
        if isinstance(portal, Response):
            return portal
        if not portal.enabled("payment_method_update"):
            return self._page_portal_payment_method(request, session_id)
        params = request.params
        try:
            month, year = _expiry(str(params.get("card_expiry") or ""))
            method = self.save_card(portal.scope, portal.session["customer"], str(params.get("card_number") or ""),
                                    month, year, str(params.get("card_cvc") or "").strip(),
                                    name=str(params.get("card_name") or "").strip() or None,
                                    postal_code=str(params.get("postal_code") or "").strip() or None)
        except CardError as exc:
            # A refused card is Stripe's 402; a form filled in wrong, a 400.
            declined = exc.code in ("card_declined", "expired_card", "incorrect_cvc", "processing_error")
            return self._page_portal_payment_method(request, session_id, error=exc, status=402 if declined else 400)
        except ValueError as exc:
            return error_page(str(exc), 400, back=(portal.home, "Back to billing"))
        self._portal_sessions[session_id]["_notice"] = "%s is now your default payment method." % (
            _card_words(method, expiry=False))
        return see_other(portal.home)


def _has_ended(subscription: Dict[str, Any], now: float) -> bool:
    """Canceled, or past the end its cancellation set (the sandbox ends it
    only when its clock is moved past that end)."""
    ends = _ends(subscription)
    return subscription["status"] == "canceled" or (ends is not None and ends <= now)


def _ends(subscription: Dict[str, Any]) -> Optional[int]:
    if subscription["cancel_at"]:
        return subscription["cancel_at"]
    return _period_end(subscription) if subscription["cancel_at_period_end"] else None


def _price(subscription: Dict[str, Any]) -> str:
    items = subscription["items"]["data"]
    if not items:
        return ""
    total = sum(int(i["price"].get("unit_amount") or 0) * (i.get("quantity") or 1) for i in items)
    recurring = items[0]["price"].get("recurring") or {}
    count, interval = recurring.get("interval_count") or 1, recurring.get("interval") or "month"
    every = interval if count == 1 else "%d %ss" % (count, interval)
    return "%s per %s" % (money(total, items[0]["price"].get("currency", "usd")), every)


def _service_period(invoice: Dict[str, Any]) -> str:
    periods = [line["period"] for line in invoice["lines"]["data"]]
    if not periods:
        return ""
    return "%s \u2013 %s" % (day(min(p["start"] for p in periods)), day(max(p["end"] for p in periods)))


def _card_words(method: Dict[str, Any], expiry: bool = True) -> str:
    card = method["card"]
    words = "%s ending in %s" % (BRAND_NAMES.get(card["brand"], card["brand"].title()), card["last4"])
    return words + (", expires %02d/%d" % (card["exp_month"], card["exp_year"]) if expiry else "")


def _expiry(text: str) -> Tuple[int, int]:
    """MM / YY as a person types it (MM/YY, MMYY, MM / YYYY) as (month, year)."""
    found = re.fullmatch(r"\s*([0-9]{1,2})\s*(?:/|-|\s)?\s*([0-9]{2}|[0-9]{4})\s*", text)
    if not found:
        raise CardError("invalid_expiry_month", "Enter the expiration date as MM / YY.", "exp_month")
    month, year = int(found.group(1)), int(found.group(2))
    return month, (2000 + year if year < 100 else year)
