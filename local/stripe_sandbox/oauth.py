"""Connect: accounts, OAuth authorization codes, /oauth/token and
/oauth/deauthorize, and /v1/account(s)."""
import copy
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from local.stripe_sandbox.wire import Request, Response, SandboxError, _random_id, json_response, mask_key, oauth_error

CODE_TTL_SECONDS = 300


def _settings(display_name: Optional[str]) -> Dict[str, Any]:
    """An account's settings as Stripe shows a new Standard account's."""
    return {
        "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
        "card_payments": {"decline_on": {"avs_failure": False, "cvc_failure": False},
                          "statement_descriptor_prefix": None, "statement_descriptor_prefix_kana": None,
                          "statement_descriptor_prefix_kanji": None},
        "dashboard": {"display_name": display_name, "timezone": "Etc/UTC"},
        "payments": {"statement_descriptor": None, "statement_descriptor_kana": None,
                     "statement_descriptor_kanji": None},
        "payouts": {"debit_negative_balances": True, "schedule": {"delay_days": 2, "interval": "daily"},
                    "statement_descriptor": None},
    }


@dataclass
class _Code:
    account_id: str
    scope: str
    expires_at: float


class OAuthAndAccounts:
    """Connected accounts and the OAuth flow that connects them."""

    def create_account(self, id: Optional[str] = None, display_name: Optional[str] = None,
                       business_name: Optional[str] = None, email: Optional[str] = None,
                       livemode: bool = False, country: str = "US") -> Dict[str, Any]:
        with self._lock:
            account_id = id or _random_id("acct_", 16)
            if account_id in self._accounts:
                raise ValueError("account %s already exists" % account_id)
            self._accounts[account_id] = {
                "id": account_id,
                "object": "account",
                "type": "standard",
                "email": email,
                "country": country,
                "business_profile": {"name": business_name, "url": None},
                "settings": _settings(display_name),
                "charges_enabled": True,
                "details_submitted": True,
                "created": int(self.now()),
                "metadata": {},
                # Not part of Stripe's account object: the sandbox's own note of
                # which mode the account's tokens are for. Stripped from answers.
                "_livemode": livemode,
            }
            return self._account_view(account_id)

    def update_account(self, account_id: str, **fields: Any) -> Dict[str, Any]:
        with self._lock:
            account = self._account_or_raise(account_id)
            before = self._account_view(account_id)
            previous: Dict[str, Any] = {}
            for name, value in fields.items():
                if name == "display_name":
                    previous.setdefault("settings", {})["dashboard"] = {
                        "display_name": account["settings"]["dashboard"]["display_name"]}
                    account["settings"]["dashboard"]["display_name"] = value
                elif name == "business_name":
                    previous["business_profile"] = {"name": account["business_profile"]["name"]}
                    account["business_profile"]["name"] = value
                elif name in ("id", "object"):
                    raise ValueError("%s cannot be changed" % name)
                else:
                    previous[name] = before.get(name)
                    account[name] = value
            after = self._account_view(account_id)
            self._record_event("account.updated", account_id, after, previous_attributes=previous)
            return after

    def issue_code(self, account_id: str, scope: str = "read_write") -> str:
        with self._lock:
            self._account_or_raise(account_id)
            code = _random_id("ac_", 32)
            self._codes[code] = _Code(account_id, scope, self.now() + CODE_TTL_SECONDS)
            return code

    def revoke(self, account_id: str) -> None:
        with self._lock:
            self._account_or_raise(account_id)
            if self._connected.pop(account_id, None) is not None:
                self._record_event("account.application.deauthorized", account_id, self._application())

    def is_connected(self, account_id: str) -> bool:
        with self._lock:
            return account_id in self._connected

    @property
    def accounts(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [self._account_view(a) for a in self._accounts]

    def _account_or_raise(self, account_id: str) -> Dict[str, Any]:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise KeyError("no sandbox account %s" % account_id) from None

    def _account_view(self, account_id: str) -> Dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in self._accounts[account_id].items() if not k.startswith("_")}

    def _application(self) -> Dict[str, Any]:
        return {"id": self.client_id, "object": "application", "name": self.platform_name}

    # OAuth API

    def _oauth_token(self, request: Request) -> Response:
        params = request.params
        grant_type = params.get("grant_type")
        if grant_type != "authorization_code":
            return oauth_error(400, "unsupported_grant_type", "Unsupported grant type: %s" % (grant_type or ""))
        code = params.get("code")
        if not code:
            return oauth_error(400, "invalid_request", "No authorization code provided")
        issued = self._codes.pop(code, None)
        if issued is None or issued.expires_at < self.now() or issued.account_id not in self._accounts:
            return oauth_error(400, "invalid_grant", "Authorization code does not exist: %s" % code)
        account = self._accounts[issued.account_id]
        livemode = bool(account["_livemode"])
        mode = "live" if livemode else "test"
        already = issued.account_id in self._connected
        self._connected[issued.account_id] = self.now()
        if not already:
            self._record_event("account.application.authorized", issued.account_id, self._application(),
                               request=request)
        return json_response({
            "access_token": _random_id("sk_%s_" % mode, 32),
            "livemode": livemode,
            "refresh_token": _random_id("rt_", 32),
            "token_type": "bearer",
            "stripe_publishable_key": _random_id("pk_%s_" % mode, 32),
            "stripe_user_id": issued.account_id,
            "scope": issued.scope,
        })

    def _oauth_deauthorize(self, request: Request) -> Response:
        params = request.params
        if params.get("client_id") != self.client_id:
            return oauth_error(401, "invalid_client", "No such application: '%s'" % (params.get("client_id") or ""))
        account_id = params["stripe_user_id"]
        if self._connected.pop(account_id, None) is None:
            return oauth_error(401, "invalid_client", "This application is not connected to stripe account %s, "
                               "or that account does not exist." % account_id)
        self._record_event("account.application.deauthorized", account_id, self._application(), request=request)
        return json_response({"stripe_user_id": account_id})

    # accounts API

    def _api_current_account(self, request: Request) -> Response:
        if request.stripe_account:
            return json_response(self._account_view(request.stripe_account))
        return json_response({"id": "acct_platform", "object": "account", "type": "standard",
                              "business_profile": {"name": self.platform_name, "url": None},
                              "settings": _settings(self.platform_name),
                              "charges_enabled": True, "details_submitted": True, "country": "US",
                              "email": None, "created": 0, "metadata": {}})

    def _api_retrieve_account(self, request: Request, account_id: str) -> Response:
        if account_id not in self._connected:
            raise SandboxError(403, "The provided key '%s' does not have access to account '%s' (or that account "
                               "does not exist). Application access may have been revoked."
                               % (mask_key(self.secret_key), account_id), code="account_invalid")
        return json_response(self._account_view(account_id))
