"""The customer portal's API: /v1/billing_portal/configurations and
/v1/billing_portal/sessions (the portal's pages are in dashboard.py)."""
import copy
from typing import Any, Dict, List, Optional

from local.stripe_sandbox.wire import (Request, Response, SandboxError, _booleans, _deep_merge, _form_int, _missing,
                                       _page, _random_id, json_response)

# The reasons a portal offers when a configuration names none.
DEFAULT_CANCELLATION_REASONS = ["too_expensive", "missing_features", "switched_service", "unused", "other"]
# Lists a request may empty with "" (which _booleans reads as null).
_EMPTYABLE_LISTS = ("allowed_updates", "conditions", "default_allowed_updates", "feedback_options",
                    "interval_options", "options", "products")


def _default_features() -> Dict[str, Any]:
    """Every feature of a configuration as Stripe fills it in when the
    request leaves the feature, or part of it, out."""
    return {
        "customer_update": {"allowed_updates": [], "enabled": False},
        "invoice_history": {"enabled": False},
        "payment_method_update": {"enabled": False, "payment_method_configuration": None},
        "subscription_cancel": {
            "cancellation_reason": {"enabled": False, "options": list(DEFAULT_CANCELLATION_REASONS)},
            "enabled": False, "mode": "at_period_end", "proration_behavior": "none",
        },
        "subscription_pause": {
            "duration": {"interval_options": [{"interval": "month", "interval_count": 1}],
                         "type": "interval_options"},
            "enabled": False,
        },
        "subscription_update": {
            "billing_cycle_anchor": "unchanged", "default_allowed_updates": [], "enabled": False,
            "proration_behavior": "none", "schedule_at_period_end": {"conditions": []},
            "trial_update_behavior": "end_trial",
        },
    }


def _merge_features(features: Dict[str, Any], requested: Any) -> None:
    """The requested features merged into features, in the types Stripe
    answers with: emptied lists as [], pause intervals as integers."""
    if not isinstance(requested, dict):
        return
    for name, value in requested.items():
        current = features.get(name)
        if isinstance(current, dict) and isinstance(value, dict):
            _merge_features(current, value)
        elif name in _EMPTYABLE_LISTS and value is None:
            features[name] = []
        elif name == "interval_options" and isinstance(value, list):
            features[name] = [_interval_option(option) for option in value]
        else:
            features[name] = copy.deepcopy(value)


def _interval_option(option: Any) -> Any:
    if not isinstance(option, dict):
        return option
    count = option.get("interval_count")
    return dict(option, interval_count=1 if count is None else _form_int(count, "interval_count"))


def _configuration_view(configuration: Dict[str, Any]) -> Dict[str, Any]:
    view = copy.deepcopy(configuration)
    # An includable field: Stripe leaves it out of answers unless expanded.
    view["features"]["subscription_update"].pop("products", None)
    return view


class BillingPortal:
    """Portal configurations and sessions."""

    def portal_configurations(self, account_id: Optional[str]) -> List[Dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._portal_configurations.get(account_id, {}).values()))

    # API

    def _api_list_portal_configurations(self, request: Request) -> Response:
        params = request.query
        configurations = list(reversed(list(self._portal_configurations.get(request.stripe_account, {}).values())))
        if params.get("active") in ("true", "false"):
            configurations = [c for c in configurations if c["active"] == (params["active"] == "true")]
        page = _page(configurations, params, "/v1/billing_portal/configurations", "billing_portal.configuration")
        page["data"] = [_configuration_view(c) for c in page["data"]]
        return json_response(page)

    def _api_create_portal_configuration(self, request: Request) -> Response:
        params = _booleans(request.params)
        now = int(self.now())
        configuration: Dict[str, Any] = {
            "id": _random_id("bpc_", 24),
            "object": "billing_portal.configuration",
            "active": True,
            "application": None,
            "business_profile": {"headline": None, "privacy_policy_url": None, "terms_of_service_url": None},
            "created": now,
            "default_return_url": None,
            "features": _default_features(),
            "is_default": False,
            "livemode": False,
            "login_page": {"enabled": False, "url": None},
            "metadata": {},
            "name": None,
            "updated": now,
        }
        params.pop("expand", None)
        _merge_features(configuration["features"], params.pop("features"))
        _deep_merge(configuration, params)
        self._portal_configurations.setdefault(request.stripe_account, {})[configuration["id"]] = configuration
        return json_response(_configuration_view(configuration))

    def _portal_configuration(self, request: Request, configuration_id: str, param: str = "id") -> Dict[str, Any]:
        configuration = self._portal_configurations.get(request.stripe_account, {}).get(configuration_id)
        if configuration is None:
            raise _missing("configuration", configuration_id, param)
        return configuration

    def _api_retrieve_portal_configuration(self, request: Request, configuration_id: str) -> Response:
        return json_response(_configuration_view(self._portal_configuration(request, configuration_id)))

    def _api_update_portal_configuration(self, request: Request, configuration_id: str) -> Response:
        configuration = self._portal_configuration(request, configuration_id)
        params = _booleans(request.params)
        params.pop("expand", None)
        _merge_features(configuration["features"], params.pop("features", None))
        _deep_merge(configuration, params)
        configuration["updated"] = int(self.now())
        return json_response(_configuration_view(configuration))

    def _api_create_portal_session(self, request: Request) -> Response:
        params = request.params
        customer_id = params.get("customer")
        if not customer_id:
            raise SandboxError(400, "Missing required param: customer.", code="parameter_missing", param="customer")
        if self._customers.get(request.stripe_account, {}).get(customer_id, {"deleted": True}).get("deleted"):
            raise SandboxError(400, "No such customer: '%s'" % customer_id, code="resource_missing",
                               param="customer")
        configuration_id = params.get("configuration")
        if configuration_id:
            configuration = self._portal_configuration(request, configuration_id, "configuration")
            if not configuration["active"]:
                raise SandboxError(400, "The configuration %s is not active." % configuration_id,
                                   param="configuration")
        else:
            raise SandboxError(400, "No configuration provided and your test mode default configuration has "
                               "not been created. Provide a configuration or create your default by saving "
                               "your customer portal settings in test mode at "
                               "https://dashboard.stripe.com/test/settings/billing/portal.")
        session_id = _random_id("bps_", 24)
        session = {
            "id": session_id,
            "object": "billing_portal.session",
            "configuration": configuration_id,
            "created": int(self.now()),
            "customer": customer_id,
            "flow": None,
            "livemode": False,
            "locale": params.get("locale"),
            "on_behalf_of": None,
            "return_url": params.get("return_url") or configuration.get("default_return_url"),
            "url": "%s/p/session/%s" % (self.url, session_id),
        }
        self._portal_sessions[session_id] = dict(session, _account=request.stripe_account)
        return json_response(session)
