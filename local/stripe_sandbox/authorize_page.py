"""The Connect authorize page (GET /oauth/authorize) and the decision it
posts: connect an existing test account, create one, or decline."""
from typing import Any, Dict, Optional
from urllib.parse import urlsplit

from local.stripe_sandbox.pages import display_name, error_page, esc, problem, with_query
from local.stripe_sandbox.wire import Request, Response, html_response, redirect

# Typing into a new account's fields selects "New account"; the server
# refuses the mix all the same when a browser runs no script.
_SELECT_ON_INPUT = """<script>
document.querySelectorAll("[data-selects]").forEach(function (field) {
  field.addEventListener("input", function () { document.getElementById(field.dataset.selects).checked = true; });
});
</script>"""


class AuthorizePage:
    """Stripe's Connect authorize page, as the sandbox plays it."""

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
            return error_page("Only response_type=code is supported.")
        problem_text = self._authorize_problem(params)
        if problem_text:
            # The redirect_uri is not known to belong to the application:
            # Stripe sends nobody there, and neither does the sandbox.
            return error_page(problem_text)
        stripe_user = params.get("stripe_user") if isinstance(params.get("stripe_user"), dict) else {}
        email = stripe_user.get("email") if isinstance(stripe_user.get("email"), str) else ""
        return self._authorize_form(params, signed_in_as=email, email=email,
                                    landing=str(params.get("stripe_landing") or "login"))

    def _page_authorize_decision(self, request: Request) -> Response:
        params = request.params
        problem_text = self._authorize_problem(params)
        if problem_text:
            return error_page(problem_text)
        state = params.get("state") or ""
        state_pair = [("state", state)] if state else []
        if params.get("decision") != "approve":
            return redirect(with_query(params["redirect_uri"], [
                ("error", "access_denied"), ("error_description", "The user denied your request")] + state_pair))
        account_id = str(params.get("account_id") or "new")
        name = str(params.get("new_display_name") or "").strip()
        email = str(params.get("new_email") or "").strip()

        def again(message: str) -> Response:
            return self._authorize_form(params, signed_in_as=str(params.get("signed_in_as") or ""), email=email,
                                        landing=str(params.get("stripe_landing") or "login"), chosen=account_id,
                                        name=name, error=message)

        if account_id == "new":
            if not name and not email:
                return again("Give the new account a display name or an email, or pick an existing account.")
            account_id = self.create_account(display_name=name or None, business_name=name or None,
                                              email=email or None)["id"]
        elif account_id not in self._accounts:
            return again("There is no test account %s: pick one from the list." % account_id)
        elif name:
            # Which did the person mean, the selected account or the one they
            # named? Connecting either could be wrong, so ask.
            return again("You selected %s but also typed \u201c%s\u201d for a new account. Choose \u201cNew "
                         "account\u201d to create \u201c%s\u201d, or clear the display name to connect %s." % (
                             display_name(self._account_view(account_id)), name, name,
                             display_name(self._account_view(account_id))))
        scope = params.get("scope") or "read_write"
        code = self.issue_code(account_id, scope=scope)
        return redirect(with_query(params["redirect_uri"], [("scope", scope), ("code", code)] + state_pair))

    def _where_you_return(self, redirect_uri: str) -> str:
        """Where the person goes after deciding: where they land when the
        redirect_uri is known to pass them on (the local stack's API bounces
        them to the UI's page), else where Stripe sends their browser."""
        sent_to = esc(urlsplit(redirect_uri).netloc or redirect_uri)
        landing = self.redirect_landings.get(redirect_uri)
        if landing:
            return "You will return to %s (Stripe sends your browser to %s, which passes you on)." % (
                esc(urlsplit(landing).netloc or landing), sent_to)
        return "Stripe then sends your browser to %s." % sent_to

    def _authorize_form(self, params: Dict[str, Any], signed_in_as: str, email: str, landing: str,
                        chosen: Optional[str] = None, name: str = "", error: Optional[str] = None) -> Response:
        accounts = [self._account_view(a) for a in self._accounts]
        register = landing == "register"
        if chosen is None or (chosen != "new" and chosen not in self._accounts):
            chosen = "new" if register or not accounts else accounts[0]["id"]

        rows = []
        for account in accounts:
            rows.append(
                '<label class="choice"><input type="radio" name="account_id" value="%s"%s> '
                '<span><strong>%s</strong><br><code>%s</code>%s</span></label>' % (
                    esc(account["id"]), " checked" if account["id"] == chosen else "",
                    esc(display_name(account)), esc(account["id"]),
                    ' <em class="tag">connected</em>' if account["id"] in self._connected else ""))
        existing = ('<fieldset><legend>Use an existing test account</legend>%s</fieldset>' % "".join(rows)
                    if rows else "")
        # With an email from the platform, the person is signed in as it and
        # the new account gets it; "Not you?" reveals the field to change it.
        new_email = "" if signed_in_as else (
            '<label for="new_email">Email</label>'
            '<input id="new_email" name="new_email" type="email" autocomplete="email" value="%s" '
            'data-selects="account_new">' % esc(email))
        create = (
            '<fieldset><legend>Create a new test account</legend>'
            '<label class="choice"><input type="radio" id="account_new" name="account_id" value="new"%s> '
            '<span>New account</span></label><div class="indented">'
            '<label for="new_display_name">Display name</label>'
            '<input id="new_display_name" name="new_display_name" value="%s" placeholder="Acme Fitness" '
            'autocomplete="organization" aria-describedby="new_hint" data-selects="account_new">%s'
            '<p class="muted" id="new_hint">Typing %s here selects \u201cNew account\u201d.</p>'
            '</div></fieldset>' % (" checked" if chosen == "new" else "", esc(name), new_email,
                                   "a name" if signed_in_as else "a name or email"))
        identity = ""
        if signed_in_as:
            identity = (
                '<div class="identity"><p>Signed in as <strong>%s</strong></p>'
                '<details%s><summary>Not you? Use another account</summary>'
                '<label for="new_email">Email address</label>'
                '<input id="new_email" name="new_email" type="email" autocomplete="email" value="%s" '
                'aria-describedby="email_hint">'
                '<p class="muted" id="email_hint">A new test account is created for this email.</p>'
                '</details></div>' % (esc(signed_in_as), " open" if email != signed_in_as else "", esc(email)))
        hidden = "".join('<input type="hidden" name="%s" value="%s">' % (esc(field), esc(value))
                         for field, value in (("client_id", self.client_id),
                                              ("redirect_uri", params["redirect_uri"]),
                                              ("state", params.get("state") or ""),
                                              ("scope", params.get("scope") or "read_write"),
                                              ("stripe_landing", landing),
                                              ("signed_in_as", signed_in_as)))
        body = (
            '<h1>Connect your Stripe account</h1>'
            '<p><strong>%s</strong> (<code>%s</code>) asks for <code>%s</code> access to your account.</p>'
            '<p class="muted">%s</p>%s'
            '<form method="post" action="/oauth/authorize">%s%s%s%s'
            '<div class="actions"><button name="decision" value="approve" class="primary">Connect</button> '
            '<button name="decision" value="decline" formnovalidate>Decline</button></div></form>%s' % (
                esc(self.platform_name), esc(self.client_id), esc(params.get("scope") or "read_write"),
                self._where_you_return(params["redirect_uri"]), problem(esc(error)) if error else "", hidden, identity,
                create if register else existing, existing if register else create, _SELECT_ON_INPUT))
        return html_response("Stripe sandbox \u2014 connect your account", body, 400 if error else 200)
