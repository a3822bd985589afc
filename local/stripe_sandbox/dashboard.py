"""The sandbox's dashboard at /: its clock (moved ahead, with what falls
due in between), its accounts (rename, add a customer,
revoke the platform as the account's owner would), their products and
subscriptions with the controls that move them along and the pre-load of
many, its webhooks (held, as if the endpoint were down, or sent), its
webhook endpoints (disabled, as Stripe disables one that keeps failing, or
enabled), and its events with each webhook delivery's result."""
import json
import math
from collections import Counter
from typing import Any, Callable, Dict, List

from local.stripe_sandbox.clock import (CANCELED, DAY, MAX_ADVANCE_SECONDS, RENEWAL_FAILED, RENEWED, TRIAL_ENDED,
                                        TRIAL_ENDED_PAYMENT_FAILED, ClockRefused)
from local.stripe_sandbox.events import HELD_DELIVERY_ERROR
from local.stripe_sandbox.invoices import _subscription_of
from local.stripe_sandbox.pages import (control_done, control_error, display_name, error_page, esc, hidden_text,
                                        notice, product_names, see_other, utc, wants_page)
from local.stripe_sandbox.preload import DEFAULT_PRELOAD, MAX_PRELOAD, preload_notice
from local.stripe_sandbox.subscriptions import DEFAULT_PERIOD_SECONDS, _period_end
from local.stripe_sandbox.wire import Request, Response, html_response, json_response, stripe_error

# The dashboard's subscription buttons, in the order shown.
SUBSCRIPTION_ACTIONS = ("cancel_at_period_end", "undo_cancel", "renew", "renew_unpaid", "payment_fails",
                        "pay_open_invoices", "past_due", "unpaid", "pause", "resume", "cancel_now")
# A button's words where its action's name says too little to a person.
_ACTION_LABELS = {"renew_unpaid": "renew unpaid (card declines)", "payment_fails": "payment fails (card declines)",
                  "pay_open_invoices": "payment succeeds (pays open invoices)"}
# Where Stripe would charge a renewal, and so where the charge can fail.
_CHARGED_AT_RENEWAL = ("active", "trialing", "past_due")
RECENT_EVENTS = 10
# An account's newest subscriptions shown with their buttons; a pre-loaded
# account's thousands are for the API to list.
SHOWN_SUBSCRIPTIONS = 50
# What fell due when the clock moved, as the notice counts it (singular, plural).
_HAPPENED_WORDS = {
    RENEWED: ("renewal", "renewals"), RENEWAL_FAILED: ("failed renewal", "failed renewals"),
    TRIAL_ENDED: ("trial ended", "trials ended"),
    TRIAL_ENDED_PAYMENT_FAILED: ("trial ended with a failed payment", "trials ended with a failed payment"),
    CANCELED: ("cancellation", "cancellations")}
# How far the clock moves, from the form or from curl: (field, seconds in one).
_ADVANCE_UNITS = (("days", DAY), ("hours", 3600), ("seconds", 1))


class Dashboard:
    """The dashboard and its controls."""

    def _page_dashboard(self, request: Request) -> Response:
        rows = []
        for account_id in self._accounts:
            account = self._account_view(account_id)
            name = display_name(account)
            connected = account_id in self._connected
            customers = [c for c in self._customers.get(account_id, {}).values() if not c.get("deleted")]
            # A label, not hidden text: a screen reader would split "CustomerHub’s" at the hidden part.
            revoke = ('<a class="button" href="/dashboard/accounts/%s/revoke" aria-label="Revoke %s\u2019s access to '
                      '%s">Revoke %s</a>' % (esc(account_id), esc(self.platform_name), esc(name),
                                             esc(self.platform_name)) if connected else "")
            rows.append(
                '<tr><th scope="row" data-label="Account"><strong>%(name)s</strong><br><code>%(id)s</code></th>'
                '<td data-label="Platform access">%(access)s</td><td data-label="Customers">%(customers)d</td>'
                '<td data-label="Actions">'
                '<form method="post" action="/dashboard/accounts/%(id)s/update" class="inline">'
                '<label for="name-%(id)s">Display name%(of)s</label><span class="with-button">'
                '<input id="name-%(id)s" name="display_name" value="%(display)s"> '
                '<button>Rename%(rename)s</button></span></form>'
                '<form method="post" action="/dashboard/accounts/%(id)s/customers" class="inline">'
                '<label for="email-%(id)s">New customer\u2019s email%(for)s</label><span class="with-button">'
                '<input id="email-%(id)s" name="email" type="email" placeholder="member@example.com"> '
                '<button>Add customer%(add)s</button></span></form>%(revoke)s</td></tr>' % {
                    "name": esc(name), "id": esc(account_id), "customers": len(customers),
                    "access": "connected" if connected else "not connected",
                    "display": esc(account["settings"]["dashboard"]["display_name"] or ""),
                    "rename": hidden_text(" " + name), "add": hidden_text(" to " + name), "revoke": revoke,
                    "of": hidden_text(" of " + name), "for": hidden_text(" for " + name)})
        table = ('<table class="stack wide"><thead><tr><th scope="col">Account</th><th scope="col">Platform access</th>'
                 '<th scope="col">Customers</th><th scope="col">Actions</th></tr></thead><tbody>%s</tbody></table>'
                 % "".join(rows)) if rows else "<p>No test accounts yet: connect one from the app.</p>"
        billing = "".join(self._dashboard_billing(account_id) for account_id in self._accounts)
        webhooks = ("webhooks to %s%s" % (self._webhook_targets(), " <strong>(held)</strong>"
                                           if self._webhooks_held else "")
                    if self._webhook_endpoints else "no webhook endpoint")
        body = ('<h1>Stripe sandbox</h1><p class="muted">Platform %s <code>%s</code> &middot; '
                '<a href="/dashboard/events">%d event%s</a> &middot; %s</p>%s%s%s<h2>Accounts</h2>%s%s%s' % (
                    esc(self.platform_name), esc(self.client_id), len(self._events),
                    "" if len(self._events) == 1 else "s", webhooks, self._dashboard_notice(request),
                    self._dashboard_clock(), self._dashboard_webhooks(), table, billing,
                    self._dashboard_recent_events()))
        return html_response("Stripe sandbox", body)

    def _dashboard_clock(self) -> str:
        """The sandbox's time, how far it is ahead of the machine's, and the
        form that moves it."""
        ahead = ("%s ahead of this machine\u2019s clock" % _duration(self._clock_offset)
                 if self._clock_offset else "this machine\u2019s clock")
        fields = "".join(
            '<div class="field"><label for="advance-%(name)s">%(label)s</label><input id="advance-%(name)s" '
            'name="%(name)s" type="number" min="0" step="any" inputmode="decimal" placeholder="%(example)s"></div>'
            % {"name": name, "label": name.capitalize(), "example": example}
            for name, example in (("days", "0"), ("hours", "0")))
        return (
            '<h2>Clock</h2><p>Sandbox time: <strong>%s</strong> (%s). In the local stack (<code>make run</code>) '
            'the API and its scheduled functions read this clock too.</p>'
            '<form method="post" action="/dashboard/clock/advance" class="inline"><div class="row">%s</div>'
            '<button class="primary">Advance the clock</button></form>'
            '<p class="muted">Moving it makes what falls due in between happen, in order and each at its moment, '
            'with its events: renewals (a trial\u2019s end is its first), cancellations at a period\u2019s end or '
            'at <code>cancel_at</code>, and for a customer whose card declines when charged (4000 0000 0000 0341, '
            'saved in the billing portal) a failed renewal: past due, with <code>invoice.payment_failed</code>. '
            'Time moves forward only.</p>' % (esc(utc(int(self.now()))), esc(ahead), fields))

    def _webhook_targets(self) -> str:
        """Where webhooks go, for a sentence: each endpoint's URL, a disabled one marked."""
        return ", ".join("<code>%s</code>%s" % (esc(e["url"]), " <strong>(disabled)</strong>"
                                                if e["status"] == "disabled" else "")
                         for e in self._webhook_endpoints.values())

    def _dashboard_webhooks(self) -> str:
        """Whether deliveries are held, and the button that holds or releases
        them; then each endpoint, and the button that disables or enables it."""
        if not self._webhook_endpoints:
            return ""
        if self._webhooks_held:
            held = ('<p class="problem"><strong>Webhooks are held.</strong> Every delivery fails as if %s were '
                    'down (\u201c%s\u201d) and its event stays undelivered, so '
                    '<code>GET /v1/events?delivery_success=false</code> lists it. Released, new events are sent '
                    'again; the held ones are not retried (the sandbox does not simulate Stripe\u2019s retries): '
                    '<code>make catch-up</code> replays them.</p><form method="post" '
                    'action="/dashboard/webhooks/release"><button class="primary">Release webhooks</button></form>'
                    % (self._webhook_targets(), esc(HELD_DELIVERY_ERROR)))
        else:
            held = ('<p>Each event is sent to %s as it happens. Holding makes every delivery fail as if the '
                    'endpoint were down, until released.</p><form method="post" action="/dashboard/webhooks/hold">'
                    '<button>Hold webhooks</button></form>' % self._webhook_targets())
        return "<h2>Webhooks</h2>%s%s" % (held, self._dashboard_webhook_endpoints())

    def _dashboard_webhook_endpoints(self) -> str:
        endpoints = list(self._webhook_endpoints.values())
        disabled = [e for e in endpoints if e["status"] == "disabled"]
        warning = ('<p class="problem"><strong>%s disabled.</strong> As Stripe does with an endpoint that keeps '
                   'failing, the sandbox sends it nothing: each event recorded meanwhile stays undelivered '
                   '(no attempt is made), so <code>GET /v1/events?delivery_success=false</code> lists it. Enabled '
                   'again, it is sent the events recorded from then on.</p>' % (
                       "Webhook endpoint %s is" % "".join("<code>%s</code>" % esc(e["url"]) for e in disabled)
                       if len(disabled) == 1 else "%d webhook endpoints are" % len(disabled))
                   if disabled else "")
        rows = "".join(
            '<tr><th scope="row" data-label="Endpoint"><code>%(url)s</code><br><code>%(id)s</code></th>'
            '<td data-label="Status">%(status)s</td><td data-label="Events">%(events)s</td>'
            '<td data-label="Actions"><form method="post" action="/dashboard/webhook_endpoints/%(id)s/%(action)s">'
            '<button%(primary)s>%(label)s endpoint%(which)s</button></form></td></tr>' % {
                "url": esc(e["url"]), "id": esc(e["id"]),
                "status": "<strong>disabled</strong>" if e["status"] == "disabled" else "enabled",
                "events": esc(", ".join(e["enabled_events"])),
                "action": "enable" if e["status"] == "disabled" else "disable",
                "primary": ' class="primary"' if e["status"] == "disabled" else "",
                "label": "Enable" if e["status"] == "disabled" else "Disable", "which": hidden_text(" " + e["url"])}
            for e in endpoints)
        return ('<h3>Webhook endpoints</h3>%s<table class="stack wide"><thead><tr><th scope="col">Endpoint</th>'
                '<th scope="col">Status</th><th scope="col">Events</th><th scope="col">Actions</th></tr></thead>'
                '<tbody>%s</tbody></table>' % (warning, rows))

    def _dashboard_notice(self, request: Request) -> str:
        """What the last control did, named in the address it sent the browser to."""
        query = request.query
        done = query.get("done")
        if done == "advanced" and self._last_advance is not None:
            return notice(_advance_words(self._last_advance, bool(self._webhook_endpoints)))
        if done == "held" and self._webhooks_held:
            return notice("Webhooks are held: deliveries fail until you release them.")
        if done == "released" and not self._webhooks_held:
            return notice("Webhooks released: new events are sent again. Those held stay undelivered.")
        endpoint_id = query.get("endpoint")
        endpoint = self._webhook_endpoints.get(endpoint_id) if isinstance(endpoint_id, str) else None
        if endpoint is not None and done == "endpoint_" + endpoint["status"]:
            return notice("Webhook endpoint <code>%s</code> %s." % (esc(endpoint["url"]), (
                "disabled: events are recorded and not sent to it" if endpoint["status"] == "disabled"
                else "enabled: new events are sent to it. Those recorded while it was disabled stay undelivered")))
        account_id = query.get("account")
        if not isinstance(account_id, str) or account_id not in self._accounts:
            return ""
        name = esc(display_name(self._account_view(account_id)))
        if done == "revoked" and account_id not in self._connected:
            events = [e for e in self._events
                      if e["account"] == account_id and e["type"] == "account.application.deauthorized"]
            sent = (' The sandbox recorded <a href="/dashboard/events/%s">account.application.deauthorized</a>: %s.'
                    % (esc(events[-1]["id"]), esc(self._delivery_words(events[-1]["id"]).lower()))
                    if events else "")
            return notice("%s no longer has access to %s.%s" % (esc(self.platform_name), name, sent))
        if done == "renamed":
            return notice("Renamed the account to %s." % name)
        if done == "customer_added":
            return notice("Added a customer to %s." % name)
        if done == "preloaded" and self._preloads.get(account_id):
            return notice("Pre-loaded on %s: %s. Created before any platform was connected: no events." % (
                name, esc(preload_notice(self._preloads[account_id][-1]))))
        return ""

    def _dashboard_billing(self, account_id: str) -> str:
        """An account's products and subscriptions, with the buttons that move them."""
        products = list(self._products.get(account_id, {}).values())
        every = self._subscriptions.get(account_id, {})
        subscriptions = [every[i] for i in list(reversed(every))[:SHOWN_SUBSCRIPTIONS]]
        customers = self._customers.get(account_id, {})
        account_name = display_name(self._account_view(account_id))
        owing = Counter(_subscription_of(invoice) for invoice in self._invoices_of(account_id, status="open"))
        listed = "".join('<li><strong>%s</strong> <code>%s</code>%s</li>' % (
            esc(p["name"]), esc(p["id"]),
            "".join(' <span class="muted">%s=%s</span>' % (esc(k), esc(v))
                    for k, v in sorted(p["metadata"].items()))) for p in products)
        rows = []
        for subscription in subscriptions:
            customer = customers.get(subscription["customer"], {})
            who = "(deleted)" if customer.get("deleted") else (customer.get("email") or "")
            names = product_names(self._products.get(account_id, {}), subscription)
            flags = []
            if subscription["cancel_at_period_end"]:
                flags.append("cancels at period end")
            if subscription["cancel_at"]:
                flags.append("cancels at %s" % utc(subscription["cancel_at"]))
            if subscription["canceled_at"]:
                flags.append("canceled_at %s" % utc(subscription["canceled_at"]))
            if subscription["ended_at"]:
                flags.append("ended %s" % utc(subscription["ended_at"]))
            feedback = (subscription.get("cancellation_details") or {}).get("feedback")
            if feedback:
                flags.append("reason: %s" % feedback)
            unpaid = owing[subscription["id"]]
            unpaid_words = "<br>%d open invoice%s" % (unpaid, "" if unpaid == 1 else "s") if unpaid else ""
            rows.append(
                '<tr><th scope="row" data-label="Subscription"><code>%s</code></th>'
                '<td data-label="Customer">%s<br><code>%s</code></td><td data-label="Products">%s</td>'
                '<td data-label="Status"><strong>%s</strong>%s</td><td data-label="Period ends">%s</td>'
                '<td data-label="Cancellation">%s</td><td data-label="Actions">%s</td></tr>' % (
                    esc(subscription["id"]), esc(who), esc(subscription["customer"]), esc(names),
                    esc(subscription["status"]), unpaid_words, esc(utc(_period_end(subscription))),
                    esc("; ".join(flags)),
                    _subscription_buttons(subscription, "%s for %s (%s)" % (names, who, subscription["id"]),
                                          bool(unpaid))))
        table = ('<table class="stack wide"><thead><tr><th scope="col">Subscription</th><th scope="col">Customer</th>'
                 '<th scope="col">Products</th><th scope="col">Status</th><th scope="col">Period ends</th>'
                 '<th scope="col">Cancellation</th><th scope="col">Actions</th></tr></thead><tbody>%s</tbody>'
                 '</table>' % "".join(rows) if rows else '<p class="muted">No subscriptions.</p>')
        if len(every) > len(subscriptions):
            table = ('<p class="muted">The %d newest of {:,} subscriptions; the API lists them all.</p>'.format(
                len(every)) % len(subscriptions)) + table
        emails = "".join('<option value="%s">' % esc(c["email"]) for c in customers.values()
                         if not c.get("deleted") and c.get("email"))
        names = "".join('<option value="%s">' % esc(p["name"]) for p in products)
        form = (
            '<h3>Add a subscription</h3>'
            '<form method="post" action="/dashboard/accounts/%(account)s/subscriptions">'
            '<datalist id="customers-%(account)s">%(emails)s</datalist>'
            '<datalist id="products-%(account)s">%(names)s</datalist>'
            '<label>Customer (id or email) <input name="customer" list="customers-%(account)s" required></label>'
            '<label>Product (id, or a name to create or reuse) <input name="product" '
            'list="products-%(account)s" required></label>'
            '<label>customerhub_product_id for a new product <input name="product_metadata_id"></label>'
            '<label>Period length in seconds (default 30 days) <input name="period_seconds" type="number" min="1">'
            '</label><label class="choice"><input type="checkbox" name="cancel_at_period_end" value="true"> '
            '<span>Cancel at period end</span></label><button class="primary">Add subscription%(on)s</button>'
            '</form>' % {"account": esc(account_id), "emails": emails, "names": names,
                         "on": hidden_text(" on " + account_name)})
        return ('<h2>Billing on %s <code>%s</code></h2><h3>Products</h3>%s<h3>Subscriptions</h3>%s%s%s' % (
            esc(account_name), esc(account_id),
            "<ul>%s</ul>" % listed if listed else '<p class="muted">No products.</p>', table, form,
            self._dashboard_preload_form(account_id, account_name)))

    def _dashboard_preload_form(self, account_id: str, account_name: str) -> str:
        done = "".join("<li>%s</li>" % esc(preload_notice(p)) for p in self._preloads.get(account_id, []))
        return (
            '<h3>Pre-load subscriptions</h3><p class="muted">Many customers at once (preload-0001@example.com '
            'on), each with a subscription to Yoga, Pilates or Spin: most active, some trialing or past_due, a few '
            'canceled. Most name a member in <code>metadata.customerhub_user_id</code> (user_preload_0001 on), '
            '5%% name nobody. Backdated up to a year, as created before any platform was connected: no events, '
            'so a connected platform finds them only by listing them (its import).</p>%(done)s'
            '<form method="post" action="/dashboard/accounts/%(account)s/preload" class="inline">'
            '<label for="preload-%(account)s">How many subscriptions (at most {:,})%(for)s</label>'
            '<span class="with-button"><input id="preload-%(account)s" name="count" type="number" min="1" '
            'max="%(max)d" value="%(default)d" required> <button>Pre-load subscriptions%(on)s</button></span>'
            '</form>'.format(MAX_PRELOAD) % {
                "account": esc(account_id), "max": MAX_PRELOAD, "default": DEFAULT_PRELOAD,
                "done": "<ul>%s</ul>" % done if done else "", "for": hidden_text(" for " + account_name),
                "on": hidden_text(" on " + account_name)})

    # events

    def _dashboard_recent_events(self) -> str:
        if not self._events:
            return '<h2>Events</h2><p class="muted">No events yet.</p>'
        recent = list(reversed(self._events[-RECENT_EVENTS:]))
        more = ('<p><a href="/dashboard/events">All %d events</a></p>' % len(self._events)
                if len(self._events) > RECENT_EVENTS else "")
        return "<h2>Recent events</h2>%s%s" % (self._events_table(recent), more)

    def _events_table(self, events: List[Dict[str, Any]]) -> str:
        rows = "".join(
            '<tr><td data-label="Created">%s</td><th scope="row" data-label="Event"><a href="/dashboard/events/%s">'
            '%s</a><br><code>%s</code></th><td data-label="Account"><code>%s</code></td>'
            '<td data-label="Object"><code>%s</code></td><td data-label="Webhook delivery">%s</td></tr>' % (
                esc(utc(e["created"])), esc(e["id"]), esc(e["type"]), esc(e["id"]), esc(e["account"] or "platform"),
                esc(e["data"]["object"].get("id") or ""), esc(self._delivery_words(e["id"])))
            for e in events)
        return ('<table class="stack wide"><thead><tr><th scope="col">Created</th><th scope="col">Event</th>'
                '<th scope="col">Account</th><th scope="col">Object</th><th scope="col">Webhook delivery</th></tr>'
                '</thead><tbody>%s</tbody></table>' % rows)

    def _delivery_words(self, event_id: str) -> str:
        """How the event's webhook delivery went, in a few words."""
        states = self._event_webhooks.get(event_id)
        if states is None:
            return "Not sent: no webhook endpoint"
        if not states:
            return "Not sent: no webhook endpoint listens for it"
        unsent = sorted({state for state in states.values() if state in ("disabled", "deleted")})
        unsent_words = "webhook endpoint %s" % " or ".join(unsent)
        attempts = self._delivery_attempts.get(event_id, [])
        if not attempts:
            if all(state in ("disabled", "deleted") for state in states.values()):
                return "Not sent: %s" % unsent_words
            return "Queued"
        last = attempts[-1]
        result = "answered %d" % last["status"] if last["status"] is not None else last["error"]
        count = "%d attempt%s" % (len(attempts), "" if len(attempts) == 1 else "s")
        if "failed" in states.values():
            words = "Failed: %s, %s" % (result, count)
        elif "queued" in states.values():
            words = "Queued: %s, %s" % (result, count)
        else:
            words = "Delivered: %s, %s" % (result, count)
        return words + ("; not sent: %s" % unsent_words if unsent else "")

    def _page_dashboard_events(self, request: Request) -> Response:
        events = list(reversed(self._events))
        after = request.query.get("starting_after")
        ids = [e["id"] for e in events]
        if isinstance(after, str) and after in ids:
            events = events[ids.index(after) + 1:]
        page, rest = events[:100], events[100:]
        older = ('<p><a href="/dashboard/events?starting_after=%s">Older events</a></p>' % esc(page[-1]["id"])
                 if rest else "")
        body = ('<p><a href="/">\u2190 Dashboard</a></p><h1>Events</h1><p class="muted">Newest first; %d in all. '
                '%s</p>%s%s' % (
                    len(self._events), "Webhooks go to %s%s." % (
                        self._webhook_targets(), " and are <strong>held</strong>: every delivery fails"
                        if self._webhooks_held else "")
                    if self._webhook_endpoints
                    else "No webhook endpoint is set: events are recorded, not sent.",
                    self._events_table(page) if page else '<p class="muted">No events.</p>', older))
        return html_response("Stripe sandbox \u2014 events", body)

    def _page_dashboard_event(self, request: Request, event_id: str) -> Response:
        event = next((e for e in self._events if e["id"] == event_id), None)
        if event is None:
            return error_page("No event %r." % event_id, 404, back=("/dashboard/events", "Back to the events"))
        attempts = "".join("<li>%s: %s</li>" % (
            esc(utc(a["at"])), esc("answered %d" % a["status"] if a["status"] is not None else a["error"]))
            for a in self._delivery_attempts.get(event_id, []))
        body = ('<p><a href="/dashboard/events">\u2190 Events</a></p><h1>%s</h1><p><code>%s</code> &middot; '
                'account <code>%s</code> &middot; %s</p><h2>Webhook delivery</h2><p>%s</p>%s'
                '<h2>Event data</h2><pre tabindex="0">%s</pre>' % (
                    esc(event["type"]), esc(event["id"]), esc(event["account"] or "platform"),
                    esc(utc(event["created"])), esc(self._delivery_words(event_id)),
                    "<ol>%s</ol>" % attempts if attempts else "",
                    esc(json.dumps(self._event_view(event), indent=2))))
        return html_response("Stripe sandbox \u2014 %s" % event["type"], body)

    # account controls

    def _page_dashboard_revoke_confirm(self, request: Request, account_id: str) -> Response:
        if account_id not in self._accounts:
            return error_page("No test account %r." % account_id, 404)
        name = esc(display_name(self._account_view(account_id)))
        platform = esc(self.platform_name)
        if account_id not in self._connected:
            body = ('<h1>%s has no access to %s</h1><p>There is nothing to revoke.</p>'
                    '<p><a class="button primary" href="/">Back to the dashboard</a></p>' % (platform, name))
            return html_response("Stripe sandbox \u2014 revoke", body)
        sent = ("sends <code>account.application.deauthorized</code> to %s" % self._webhook_targets()
                if self._webhook_endpoints
                else "records <code>account.application.deauthorized</code> (no webhook endpoint is set)")
        body = ('<h1>Revoke %s\u2019s access to %s?</h1>'
                '<p>As the account\u2019s owner would from Stripe\u2019s dashboard: %s can no longer act on '
                '<code>%s</code>, and the sandbox %s. Connecting again takes a new authorization.</p>'
                '<form method="post" action="/dashboard/accounts/%s/revoke"><div class="actions">'
                '<button class="danger">Revoke access</button> <a class="button" href="/">Keep access</a></div>'
                '</form>' % (platform, name, platform, esc(account_id), sent, esc(account_id)))
        return html_response("Stripe sandbox \u2014 revoke", body)

    def _page_dashboard_revoke(self, request: Request, account_id: str) -> Response:
        if account_id not in self._accounts:
            return error_page("No test account %r." % account_id, 404)
        self.revoke(account_id)
        return see_other("/?done=revoked&account=%s" % account_id)

    def _page_dashboard_update(self, request: Request, account_id: str) -> Response:
        if account_id not in self._accounts:
            return error_page("No test account %r." % account_id, 404)
        self.update_account(account_id, display_name=(request.params.get("display_name") or "").strip() or None)
        return see_other("/?done=renamed&account=%s" % account_id)

    def _page_dashboard_customer(self, request: Request, account_id: str) -> Response:
        if account_id not in self._accounts:
            return error_page("No test account %r." % account_id, 404)
        customer = self.create_customer(account_id, email=(request.params.get("email") or "").strip() or None)
        return control_done(request, customer, "/?done=customer_added&account=%s" % account_id)

    def _page_dashboard_preload(self, request: Request, account_id: str) -> Response:
        """Pre-loads the account (preload.py), from the form or from curl."""
        if account_id not in self._accounts:
            return control_error(request, "No test account %r." % account_id, 404)
        count = str(request.params.get("count") or "").strip()
        if not (count.isdigit() and 1 <= int(count) <= MAX_PRELOAD):
            return control_error(request, "How many subscriptions: a whole number from 1 to {:,}.".format(
                MAX_PRELOAD))
        summary = self.preload_subscriptions(account_id, int(count))
        return control_done(request, summary, "/?done=preloaded&account=%s" % account_id)

    # the clock

    def _page_dashboard_clock(self, request: Request) -> Response:
        """The sandbox's time, for the local stack's other processes to read."""
        return json_response(self.clock_view())

    def _page_dashboard_clock_advance(self, request: Request) -> Response:
        """Moves the clock (days, hours and seconds, added up), from the
        form or from curl: a browser goes back to the dashboard, anything
        else has the new time and what fell due in JSON."""
        try:
            record = self.advance_clock(_advance_seconds(request.params))
        except ClockRefused as exc:
            if wants_page(request):
                return error_page(str(exc))
            return stripe_error(400, str(exc))
        if wants_page(request):
            return see_other("/?done=advanced")
        return json_response(record)

    def _page_dashboard_webhooks(self, request: Request, action: str) -> Response:
        if action not in ("hold", "release"):
            return control_error(request, "Unknown action %r: use hold or release." % action, 404)
        self.hold_webhooks(action == "hold")
        return control_done(request, {"webhooks_held": self._webhooks_held},
                            "/?done=%s" % ("held" if action == "hold" else "released"))

    def _page_dashboard_webhook_endpoint(self, request: Request, endpoint_id: str, action: str) -> Response:
        """Disables or enables the endpoint, from its button or from curl (Accept: application/json)."""
        if action not in ("disable", "enable"):
            return control_error(request, "Unknown action %r: use disable or enable." % action, 404)
        if endpoint_id not in self._webhook_endpoints:
            return control_error(request, "No webhook endpoint %r." % endpoint_id, 404)
        status = "disabled" if action == "disable" else "enabled"
        endpoint = self.set_webhook_endpoint_status(status, endpoint_id)
        return control_done(request, endpoint, "/?done=endpoint_%s&endpoint=%s" % (status, endpoint_id))

    # subscription controls

    def _page_dashboard_subscription(self, request: Request, account_id: str) -> Response:
        """A subscription from the dashboard form, or from curl (Accept: application/json answers it)."""
        if account_id not in self._accounts:
            return control_error(request, "No test account %r." % account_id, 404)
        params = request.params
        customers = self._customers.get(account_id, {})
        reference = str(params.get("customer") or "").strip()
        customer = customers.get(reference)
        if customer is None or customer.get("deleted"):
            matching = [c for c in customers.values()
                        if not c.get("deleted") and reference and (c.get("email") or "").lower() == reference.lower()]
            customer = matching[-1] if matching else None
        if customer is None:
            return control_error(request, "No customer %r on %s: give the id or email of one of its customers."
                                 % (reference, account_id))
        product_reference = str(params.get("product") or "").strip()
        if not product_reference:
            return control_error(request, "Give a product id, or a name to create or reuse a product by.")
        products = self._products.get(account_id, {})
        product = products.get(product_reference)
        if product is None and product_reference.startswith("prod_"):
            return control_error(request, "No product %r on %s." % (product_reference, account_id))
        seconds = str(params.get("period_seconds") or "").strip()
        if seconds and not (seconds.isdigit() and int(seconds) > 0):
            return control_error(request, "period_seconds must be a positive whole number of seconds.")
        if product is None:
            named = [p for p in products.values() if p["name"] == product_reference]
            if named:
                product = named[0]
            else:
                metadata_id = str(params.get("product_metadata_id") or "").strip()
                product = self.create_product(account_id, name=product_reference, metadata=(
                    {"customerhub_product_id": metadata_id} if metadata_id else None))
        now = int(self.now())
        subscription = self.create_subscription(
            account_id, customer["id"], [product["id"]], period_start=now,
            period_end=now + (int(seconds) if seconds else DEFAULT_PERIOD_SECONDS),
            cancel_at_period_end=str(params.get("cancel_at_period_end") or "").lower() in ("true", "on", "1"))
        return control_done(request, subscription)

    def _page_dashboard_subscription_action(self, request: Request, subscription_id: str, action: str) -> Response:
        found = self._find_subscription(subscription_id)
        if found is None:
            return control_error(request, "No subscription %r." % subscription_id, 404)
        scope, subscription = found
        changes = {
            "cancel_at_period_end": {"cancel_at_period_end": True},
            "undo_cancel": {"cancel_at_period_end": False, "cancel_at": None},
            "past_due": {"status": "past_due"},
            "unpaid": {"status": "unpaid"},
            "pause": {"status": "paused"},
            "resume": {"status": "active"},
        }
        calls: Dict[str, Callable[[], Dict[str, Any]]] = {
            "renew": lambda: self.renew_subscription(scope, subscription_id),
            "renew_unpaid": lambda: self.renew_subscription(scope, subscription_id, paid=False),
            "payment_fails": lambda: self.fail_payment(scope, subscription_id),
            "pay_open_invoices": lambda: self.pay_open_invoices(scope, subscription_id),
            "cancel_now": lambda: self._cancel_subscription(scope, subscription_id),
        }
        if action not in changes and action not in calls:
            return control_error(request, "Unknown action %r: use one of %s." % (
                action, ", ".join(SUBSCRIPTION_ACTIONS)), 404)
        if subscription["status"] == "canceled":
            return control_error(request, "Subscription %s is canceled." % subscription_id)
        try:
            if action in calls:
                result = calls[action]()
            else:
                result = self._update_subscription(scope, subscription_id, changes[action])
        except ValueError as exc:
            return control_error(request, str(exc))
        return control_done(request, result)


def _subscription_buttons(subscription: Dict[str, Any], which: str, owing: bool) -> str:
    """The row's buttons, those that apply to it; each names the subscription
    it acts on for a screen reader, which hears a button's name without its
    row. `owing`: the subscription has open invoices to pay."""
    status = subscription["status"]
    if status == "canceled":
        return ""
    cancelling = subscription["cancel_at_period_end"] or subscription["cancel_at"] is not None
    paused = status == "paused"
    shown = [a for a in SUBSCRIPTION_ACTIONS if not (
        (a == "cancel_at_period_end" and cancelling) or (a == "undo_cancel" and not cancelling)
        or (a == "pause" and paused) or (a == "resume" and not paused)
        or (a in ("past_due", "unpaid") and status == a)
        or (a == "renew_unpaid" and status not in _CHARGED_AT_RENEWAL)
        or (a == "payment_fails" and status != "active") or (a == "pay_open_invoices" and not owing))]
    return '<form method="post" class="buttons">%s</form>' % " ".join(
        '<button formaction="/dashboard/subscriptions/%s/%s">%s%s</button>' % (
            esc(subscription["id"]), action, esc(_ACTION_LABELS.get(action, action.replace("_", " "))),
            hidden_text(" " + which))
        for action in shown)


def _advance_seconds(params: Dict[str, Any]) -> int:
    """How far to move the clock: days, hours and seconds (each left out, a
    number of 0 or more), added up to a whole number of seconds."""
    total = 0.0
    for name, unit in _ADVANCE_UNITS:
        given = params.get(name)
        text = given.strip() if isinstance(given, str) else ""
        if given is not None and not isinstance(given, str):
            raise ClockRefused("Give %s once, as a number." % name)
        if not text:
            continue
        try:
            amount = float(text)
        except ValueError:
            raise ClockRefused("%s must be a number, not %r." % (name.capitalize(), text)) from None
        if not math.isfinite(amount) or amount < 0:
            raise ClockRefused("%s must be a number of 0 or more: the clock moves forward only." % name.capitalize())
        total += amount * unit
    if total < 1:
        raise ClockRefused("Give how far to move the clock: days, hours or seconds, together at least a second.")
    # Past the longest move, advance_clock says how far it goes.
    return int(round(min(total, MAX_ADVANCE_SECONDS + 1)))


def _duration(seconds: int) -> str:
    """31 days, 1 day 2 hours, 45 minutes, 20 seconds: for a person."""
    parts = []
    for unit, size in (("day", DAY), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append("%d %s%s" % (count, unit, "" if count == 1 else "s"))
    return " ".join(parts[:2]) or "0 seconds"


def _advance_words(record: Dict[str, Any], sending: bool) -> str:
    """The notice after a move: how far, to when, and what fell due."""
    counts = Counter(item["what"] for item in record["happened"])
    happened = ", ".join("%d %s" % (counts[what], words[0] if counts[what] == 1 else words[1])
                         for what, words in _HAPPENED_WORDS.items() if counts[what])
    return "The clock moved %s ahead, to %s. %s" % (
        esc(_duration(record["advanced_seconds"])), esc(utc(record["now"])),
        ("Fell due meanwhile: %s%s" % (esc(happened), "; their events are sent as webhooks." if sending else "."))
        if happened else "Nothing fell due meanwhile.")
