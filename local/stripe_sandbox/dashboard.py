"""The pages a person sees: the Connect authorize page, the portal pages and
the dashboard at / (with the controls that move subscriptions along)."""
import html
import time
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from local.stripe_sandbox.subscriptions import DEFAULT_PERIOD_SECONDS, _period_end
from local.stripe_sandbox.wire import Request, Response, html_response, json_response, redirect, stripe_error


class Dashboard:
    """The authorize page, the portal pages and the dashboard."""

    # OAuth pages

    def _authorize_problem(self, params: Dict[str, Any]) -> Optional[str]:
        for name in ("client_id", "redirect_uri", "state", "scope"):
            if not isinstance(params.get(name, ""), str):
                return "The %s parameter must be a single value." % name
        if params.get("client_id") != self.client_id:
            return "No application matches the client_id %r." % (params.get("client_id") or "")
        redirect_uri = params.get("redirect_uri") or ""
        if not redirect_uri:
            return "The redirect_uri parameter is missing."
        if urlsplit(redirect_uri).scheme not in ("http", "https"):
            return "The redirect_uri must be an http or https URL."
        if params.get("scope", "read_write") not in ("read_write", "read_only"):
            return "Invalid scope: %r." % params.get("scope")
        return None

    def _page_authorize(self, request: Request) -> Response:
        params = request.query
        if params.get("response_type", "code") != "code":
            return _error_page("Only response_type=code is supported.")
        problem = self._authorize_problem(params)
        if problem:
            return _error_page(problem)
        stripe_user = params.get("stripe_user") if isinstance(params.get("stripe_user"), dict) else {}
        register = params.get("stripe_landing") == "register"
        accounts = [self._account_view(a) for a in self._accounts]
        new_checked = register or not accounts

        rows = []
        for index, account in enumerate(accounts):
            checked = " checked" if index == 0 and not new_checked else ""
            rows.append(
                '<label class="choice"><input type="radio" name="account_id" value="%s"%s> '
                '<span><strong>%s</strong><br><code>%s</code>%s</span></label>' % (
                    html.escape(account["id"]), checked, html.escape(_display_name(account)),
                    html.escape(account["id"]),
                    ' <em class="tag">connected</em>' if account["id"] in self._connected else ""))
        existing = ('<fieldset><legend>Use an existing test account</legend>%s</fieldset>' % "".join(rows)
                    if rows else "")
        create = (
            '<fieldset><legend>Create a new test account</legend>'
            '<label class="choice"><input type="radio" name="account_id" value="new"%s> '
            '<span>New account</span></label>'
            '<label>Display name <input name="new_display_name" value="" placeholder="Acme Fitness"></label>'
            '<label>Email <input name="new_email" type="email" value="%s"></label></fieldset>' % (
                " checked" if new_checked else "", html.escape(stripe_user.get("email") or "")))
        hidden = "".join('<input type="hidden" name="%s" value="%s">' % (html.escape(name), html.escape(value))
                         for name, value in (("client_id", self.client_id),
                                             ("redirect_uri", params["redirect_uri"]),
                                             ("state", params.get("state") or ""),
                                             ("scope", params.get("scope") or "read_write")))
        body = (
            '<h1>Connect your Stripe account</h1>'
            '<p><strong>%s</strong> (<code>%s</code>) asks for <code>%s</code> access to your account.</p>'
            '<p class="muted">You will return to %s</p>'
            '<form method="post" action="/oauth/authorize">%s%s%s'
            '<div class="actions"><button name="decision" value="approve" class="primary">Connect</button> '
            '<button name="decision" value="decline" formnovalidate>Decline</button></div></form>' % (
                html.escape(self.platform_name), html.escape(self.client_id),
                html.escape(params.get("scope") or "read_write"),
                html.escape(urlsplit(params["redirect_uri"]).netloc or params["redirect_uri"]),
                hidden, create if register else existing, existing if register else create))
        return html_response("Stripe sandbox \u2014 connect your account", body)

    def _page_authorize_decision(self, request: Request) -> Response:
        params = request.params
        problem = self._authorize_problem(params)
        if problem:
            return _error_page(problem)
        state = params.get("state") or ""
        state_pair = [("state", state)] if state else []
        if params.get("decision") != "approve":
            return redirect(_with_query(params["redirect_uri"], [
                ("error", "access_denied"), ("error_description", "The user denied your request")] + state_pair))
        account_id = params.get("account_id") or "new"
        if account_id == "new":
            name = (params.get("new_display_name") or "").strip()
            email = (params.get("new_email") or "").strip() or None
            if not name and not email:
                return _error_page("Pick an account, or give the new one a display name or email.")
            account_id = self.create_account(display_name=name or None, business_name=name or None,
                                              email=email)["id"]
        elif account_id not in self._accounts:
            return _error_page("No test account %r." % account_id)
        scope = params.get("scope") or "read_write"
        code = self.issue_code(account_id, scope=scope)
        return redirect(_with_query(params["redirect_uri"], [("scope", scope), ("code", code)] + state_pair))

    # portal pages

    def _page_portal_session(self, request: Request, session_id: str) -> Response:
        session = self._portal_sessions.get(session_id)
        if session is None:
            return _error_page("This portal session does not exist.", 404)
        scope = session["_account"]
        customer = self._customers.get(scope, {}).get(session["customer"], {})
        configuration = self._portal_configurations.get(scope, {}).get(session["configuration"], {})
        features = configuration.get("features") or {}
        items = "".join("<li>%s: <strong>%s</strong></li>" % (
            html.escape(name.replace("_", " ")), "on" if (value or {}).get("enabled") else "off")
            for name, value in sorted(features.items()) if isinstance(value, dict))
        account = self._accounts.get(scope or "", {})
        business = configuration.get("business_profile") or {}
        links = "".join('<a href="%s">%s</a> ' % (html.escape(url), label) for url, label in (
            (business.get("privacy_policy_url"), "Privacy policy"),
            (business.get("terms_of_service_url"), "Terms of service")) if url)
        back = ('<p><a class="button primary" href="%s">Return to %s</a></p>' % (
            html.escape(session["return_url"]), html.escape(urlsplit(session["return_url"]).netloc))
            if session.get("return_url") else "")
        body = ('<h1>Billing portal</h1><p>%s</p><p>Customer <strong>%s</strong> <code>%s</code></p>'
                '%s<h2>What this portal allows</h2><ul>%s</ul><p class="muted">%s</p>%s' % (
                    html.escape(_display_name(account) if account else self.platform_name),
                    html.escape(customer.get("email") or ""), html.escape(session["customer"]),
                    self._portal_subscriptions(session_id, scope, session["customer"], configuration),
                    items or "<li>nothing</li>", links, back))
        return html_response("Stripe sandbox \u2014 billing portal", body)

    def _portal_subscriptions(self, session_id: str, scope: Optional[str], customer_id: str,
                              configuration: Dict[str, Any]) -> str:
        """The customer's current subscriptions, with Stripe's cancel and
        don't-cancel buttons when the configuration allows canceling."""
        subscriptions = [s for s in reversed(list(self._subscriptions.get(scope, {}).values()))
                         if s["customer"] == customer_id and s["status"] != "canceled"]
        if not subscriptions:
            return "<h2>Current subscriptions</h2><p class=\"muted\">No current subscriptions.</p>"
        cancel = (configuration.get("features") or {}).get("subscription_cancel") or {}
        immediately = cancel.get("mode") == "immediately"
        rows = []
        for subscription in subscriptions:
            action = "/p/session/%s/subscriptions/%s/" % (session_id, subscription["id"])
            ends = subscription["cancel_at"] or (_period_end(subscription) if subscription["cancel_at_period_end"]
                                                 else None)
            when = ("Cancels %s" % _utc(ends)) if ends else ("Renews %s" % _utc(_period_end(subscription)))
            button = ""
            if cancel.get("enabled"):
                if ends:
                    button = ('<form method="post" action="%skeep"><button class="primary">Don\u2019t cancel'
                              '</button></form>' % html.escape(action))
                else:
                    button = ('<form method="post" action="%scancel"><button>Cancel%s</button></form>' % (
                        html.escape(action), " now" if immediately else " at period end"))
            rows.append("<tr><td><strong>%s</strong><br><code>%s</code></td><td>%s<br>"
                        "<span class=\"muted\">%s</span></td><td>%s</td></tr>" % (
                            html.escape(self._product_names(scope, subscription)),
                            html.escape(subscription["id"]), html.escape(subscription["status"]),
                            html.escape(when), button))
        return "<h2>Current subscriptions</h2><table>%s</table>" % "".join(rows)

    def _page_portal_subscription(self, request: Request, session_id: str, subscription_id: str,
                                  action: str) -> Response:
        session = self._portal_sessions.get(session_id)
        if session is None:
            return _error_page("This portal session does not exist.", 404)
        scope = session["_account"]
        subscription = self._subscriptions.get(scope, {}).get(subscription_id)
        if subscription is None or subscription["customer"] != session["customer"] \
                or subscription["status"] == "canceled":
            return _error_page("This customer has no current subscription %s." % subscription_id, 404)
        configuration = self._portal_configurations.get(scope, {}).get(session["configuration"], {})
        cancel = (configuration.get("features") or {}).get("subscription_cancel") or {}
        if not cancel.get("enabled"):
            return _error_page("This portal does not let customers cancel subscriptions.", 403)
        if action == "keep":
            self._update_subscription(scope, subscription_id, {"cancel_at_period_end": False, "cancel_at": None})
        elif cancel.get("mode") == "immediately":
            self._cancel_subscription(scope, subscription_id)
        else:
            self._update_subscription(scope, subscription_id, {"cancel_at_period_end": True})
        return Response(303, b"", {"Location": "/p/session/%s" % session_id})

    def _product_names(self, scope: Optional[str], subscription: Dict[str, Any]) -> str:
        products = self._products.get(scope, {})
        return ", ".join(products[i["price"]["product"]]["name"] if i["price"]["product"] in products
                         else i["price"]["product"] for i in subscription["items"]["data"])

    # dashboard

    def _page_dashboard(self, request: Request) -> Response:
        rows = []
        for account_id in self._accounts:
            account = self._account_view(account_id)
            connected = account_id in self._connected
            customers = [c for c in self._customers.get(account_id, {}).values() if not c.get("deleted")]
            rows.append(
                '<tr><td><strong>%s</strong><br><code>%s</code></td><td>%s</td><td>%d</td><td>'
                '<form method="post" action="/dashboard/accounts/%s/update">'
                '<input name="display_name" value="%s"> <button>Rename</button></form>'
                '<form method="post" action="/dashboard/accounts/%s/customers">'
                '<input name="email" type="email" placeholder="member@example.com"> <button>Add customer</button>'
                '</form>%s</td></tr>' % (
                    html.escape(_display_name(account)), html.escape(account_id),
                    "connected" if connected else "not connected", len(customers),
                    html.escape(account_id), html.escape(account["settings"]["dashboard"]["display_name"] or ""),
                    html.escape(account_id),
                    '<form method="post" action="/dashboard/accounts/%s/revoke"><button>Revoke %s</button></form>'
                    % (html.escape(account_id), html.escape(self.platform_name)) if connected else ""))
        table = ('<table><tr><th>Account</th><th>Platform access</th><th>Customers</th><th></th></tr>%s</table>'
                 % "".join(rows)) if rows else "<p>No test accounts yet: connect one from the app.</p>"
        billing = "".join(self._dashboard_billing(account_id) for account_id in self._accounts)
        body = ('<h1>Stripe sandbox</h1><p class="muted">Platform %s <code>%s</code> &middot; %d events</p>%s%s' % (
            html.escape(self.platform_name), html.escape(self.client_id), len(self._events), table, billing))
        return html_response("Stripe sandbox", body)

    def _dashboard_billing(self, account_id: str) -> str:
        """An account's products and subscriptions, with the buttons that move them."""
        products = list(self._products.get(account_id, {}).values())
        subscriptions = list(reversed(list(self._subscriptions.get(account_id, {}).values())))
        customers = self._customers.get(account_id, {})
        listed = "".join('<li><strong>%s</strong> <code>%s</code>%s</li>' % (
            html.escape(p["name"]), html.escape(p["id"]),
            "".join(' <span class="muted">%s=%s</span>' % (html.escape(k), html.escape(v))
                    for k, v in sorted(p["metadata"].items()))) for p in products)
        rows = []
        for subscription in subscriptions:
            customer = customers.get(subscription["customer"], {})
            who = "(deleted)" if customer.get("deleted") else (customer.get("email") or "")
            flags = []
            if subscription["cancel_at_period_end"]:
                flags.append("cancels at period end")
            if subscription["cancel_at"]:
                flags.append("cancels at %s" % _utc(subscription["cancel_at"]))
            if subscription["canceled_at"]:
                flags.append("canceled_at %s" % _utc(subscription["canceled_at"]))
            if subscription["ended_at"]:
                flags.append("ended %s" % _utc(subscription["ended_at"]))
            rows.append(
                '<tr><td><code>%s</code></td><td>%s<br><code>%s</code></td><td>%s</td><td><strong>%s</strong></td>'
                '<td>%s</td><td>%s</td><td>%s</td></tr>' % (
                    html.escape(subscription["id"]), html.escape(who), html.escape(subscription["customer"]),
                    html.escape(self._product_names(account_id, subscription)),
                    html.escape(subscription["status"]), html.escape(_utc(_period_end(subscription))),
                    html.escape("; ".join(flags)), _subscription_buttons(subscription)))
        table = ('<table class="wide"><tr><th>Subscription</th><th>Customer</th><th>Products</th><th>Status</th>'
                 '<th>Period ends</th><th>Cancel</th><th></th></tr>%s</table>' % "".join(rows)
                 if rows else '<p class="muted">No subscriptions.</p>')
        emails = "".join('<option value="%s">' % html.escape(c["email"]) for c in customers.values()
                         if not c.get("deleted") and c.get("email"))
        names = "".join('<option value="%s">' % html.escape(p["name"]) for p in products)
        form = (
            '<form method="post" action="/dashboard/accounts/%(account)s/subscriptions">'
            '<datalist id="customers-%(account)s">%(emails)s</datalist>'
            '<datalist id="products-%(account)s">%(names)s</datalist>'
            '<label>Customer (id or email) <input name="customer" list="customers-%(account)s" required></label>'
            '<label>Product (id, or a name to create or reuse) <input name="product" '
            'list="products-%(account)s" required></label>'
            '<label>customerhub_product_id for a new product <input name="product_metadata_id"></label>'
            '<label>Period length in seconds (default 30 days) <input name="period_seconds" type="number" min="1">'
            '</label><label class="choice"><input type="checkbox" name="cancel_at_period_end" value="true"> '
            '<span>Cancel at period end</span></label><button class="primary">Add subscription</button></form>'
            % {"account": html.escape(account_id), "emails": emails, "names": names})
        return ('<h2>Billing on %s <code>%s</code></h2><h3>Products</h3>%s<h3>Subscriptions</h3>%s%s' % (
            html.escape(_display_name(self._account_view(account_id))), html.escape(account_id),
            "<ul>%s</ul>" % listed if listed else '<p class="muted">No products.</p>', table, form))

    def _page_dashboard_revoke(self, request: Request, account_id: str) -> Response:
        if account_id not in self._accounts:
            return _error_page("No test account %r." % account_id, 404)
        self.revoke(account_id)
        return redirect("/")

    def _page_dashboard_update(self, request: Request, account_id: str) -> Response:
        if account_id not in self._accounts:
            return _error_page("No test account %r." % account_id, 404)
        self.update_account(account_id, display_name=(request.params.get("display_name") or "").strip() or None)
        return redirect("/")

    def _page_dashboard_customer(self, request: Request, account_id: str) -> Response:
        if account_id not in self._accounts:
            return _error_page("No test account %r." % account_id, 404)
        customer = self.create_customer(account_id, email=(request.params.get("email") or "").strip() or None)
        if _wants_json(request):
            return json_response(customer)
        return redirect("/")

    def _page_dashboard_subscription(self, request: Request, account_id: str) -> Response:
        """A subscription from the dashboard form, or from curl (Accept: application/json answers it)."""
        if account_id not in self._accounts:
            return _control_error(request, "No test account %r." % account_id, 404)
        params = request.params
        customers = self._customers.get(account_id, {})
        reference = str(params.get("customer") or "").strip()
        customer = customers.get(reference)
        if customer is None or customer.get("deleted"):
            matching = [c for c in customers.values()
                        if not c.get("deleted") and reference and (c.get("email") or "").lower() == reference.lower()]
            customer = matching[-1] if matching else None
        if customer is None:
            return _control_error(request, "No customer %r on %s: give the id or email of one of its customers."
                                  % (reference, account_id))
        product_reference = str(params.get("product") or "").strip()
        if not product_reference:
            return _control_error(request, "Give a product id, or a name to create or reuse a product by.")
        products = self._products.get(account_id, {})
        product = products.get(product_reference)
        if product is None and product_reference.startswith("prod_"):
            return _control_error(request, "No product %r on %s." % (product_reference, account_id))
        seconds = str(params.get("period_seconds") or "").strip()
        if seconds and not (seconds.isdigit() and int(seconds) > 0):
            return _control_error(request, "period_seconds must be a positive whole number of seconds.")
        if product is None:
            named = [p for p in products.values() if p["name"] == product_reference]
            if named:
                product = named[0]
            else:
                metadata_id = str(params.get("product_metadata_id") or "").strip()
                product = self.create_product(account_id, name=product_reference, metadata=(
                    {"customerhub_product_id": metadata_id} if metadata_id else None))
        now = int(self.clock())
        subscription = self.create_subscription(
            account_id, customer["id"], [product["id"]], period_start=now,
            period_end=now + (int(seconds) if seconds else DEFAULT_PERIOD_SECONDS),
            cancel_at_period_end=str(params.get("cancel_at_period_end") or "").lower() in ("true", "on", "1"))
        return _control_done(request, subscription)

    def _page_dashboard_subscription_action(self, request: Request, subscription_id: str, action: str) -> Response:
        found = self._find_subscription(subscription_id)
        if found is None:
            return _control_error(request, "No subscription %r." % subscription_id, 404)
        scope, subscription = found
        changes = {
            "cancel_at_period_end": {"cancel_at_period_end": True},
            "undo_cancel": {"cancel_at_period_end": False, "cancel_at": None},
            "past_due": {"status": "past_due"},
            "unpaid": {"status": "unpaid"},
            "pause": {"status": "paused"},
            "resume": {"status": "active"},
        }
        if action not in changes and action not in ("renew", "cancel_now"):
            return _control_error(request, "Unknown action %r: use one of %s." % (
                action, ", ".join(SUBSCRIPTION_ACTIONS)), 404)
        if subscription["status"] == "canceled":
            return _control_error(request, "Subscription %s is canceled." % subscription_id)
        try:
            if action == "renew":
                result = self.renew_subscription(scope, subscription_id)
            elif action == "cancel_now":
                result = self._cancel_subscription(scope, subscription_id)
            else:
                result = self._update_subscription(scope, subscription_id, changes[action])
        except ValueError as exc:
            return _control_error(request, str(exc))
        return _control_done(request, result)


# The dashboard's subscription buttons, in the order shown.
SUBSCRIPTION_ACTIONS = ("cancel_at_period_end", "undo_cancel", "renew", "past_due", "unpaid", "pause", "resume",
                        "cancel_now")


def _subscription_buttons(subscription: Dict[str, Any]) -> str:
    if subscription["status"] == "canceled":
        return ""
    cancelling = subscription["cancel_at_period_end"] or subscription["cancel_at"] is not None
    paused = subscription["status"] == "paused"
    shown = [a for a in SUBSCRIPTION_ACTIONS if not (
        (a == "cancel_at_period_end" and cancelling) or (a == "undo_cancel" and not cancelling)
        or (a == "pause" and paused) or (a == "resume" and not paused)
        or (a in ("past_due", "unpaid") and subscription["status"] == a))]
    return '<form method="post">%s</form>' % " ".join(
        '<button formaction="/dashboard/subscriptions/%s/%s">%s</button>' % (
            html.escape(subscription["id"]), action, action.replace("_", " "))
        for action in shown)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _control_done(request: Request, obj: Dict[str, Any]) -> Response:
    """A dashboard control's answer: the object for curl, else back to the dashboard."""
    if _wants_json(request):
        return json_response(obj)
    return Response(303, b"", {"Location": "/"})


def _control_error(request: Request, message: str, status: int = 400) -> Response:
    if _wants_json(request):
        return stripe_error(status, message)
    return _error_page(message, status)


def _display_name(account: Dict[str, Any]) -> str:
    return ((account.get("settings") or {}).get("dashboard", {}).get("display_name")
            or (account.get("business_profile") or {}).get("name") or account.get("email") or account["id"])


def _utc(timestamp: Optional[int]) -> str:
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _with_query(url: str, pairs: List[Tuple[str, str]]) -> str:
    """url with pairs appended to whatever query it already carries."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + pairs
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _error_page(message: str, status: int = 400) -> Response:
    return html_response("Stripe sandbox \u2014 error", "<h1>Something is wrong</h1><p>%s</p>"
                         % html.escape(message), status)
