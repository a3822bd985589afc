"""The customer portal's API: /v1/billing_portal/configurations and
/v1/billing_portal/sessions (the portal's pages are in dashboard.py)."""
import copy
from typing import Any, Dict, List, Optional

from local.stripe_sandbox.wire import (Request, Response, SandboxError, _booleans, _deep_merge, _missing, _page,
                                       _random_id, json_response)


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
        return json_response(_page(copy.deepcopy(configurations), params, "/v1/billing_portal/configurations",
                                   "billing_portal.configuration"))

    def _api_create_portal_configuration(self, request: Request) -> Response:
        params = _booleans(request.params)
        now = int(self.clock())
        configuration: Dict[str, Any] = {
            "id": _random_id("bpc_", 24),
            "object": "billing_portal.configuration",
            "active": True,
            "application": None,
            "business_profile": {"headline": None, "privacy_policy_url": None, "terms_of_service_url": None},
            "created": now,
            "default_return_url": None,
            "features": {},
            "is_default": False,
            "livemode": False,
            "login_page": {"enabled": False, "url": None},
            "metadata": {},
            "name": None,
            "updated": now,
        }
        params.pop("expand", None)
        _deep_merge(configuration, params)
        self._portal_configurations.setdefault(request.stripe_account, {})[configuration["id"]] = configuration
        return json_response(configuration)

    def _portal_configuration(self, request: Request, configuration_id: str, param: str = "id") -> Dict[str, Any]:
        configuration = self._portal_configurations.get(request.stripe_account, {}).get(configuration_id)
        if configuration is None:
            raise _missing("configuration", configuration_id, param)
        return configuration

    def _api_retrieve_portal_configuration(self, request: Request, configuration_id: str) -> Response:
        return json_response(self._portal_configuration(request, configuration_id))

    def _api_update_portal_configuration(self, request: Request, configuration_id: str) -> Response:
        configuration = self._portal_configuration(request, configuration_id)
        params = _booleans(request.params)
        params.pop("expand", None)
        _deep_merge(configuration, params)
        configuration["updated"] = int(self.clock())
        return json_response(configuration)

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
            "created": int(self.clock()),
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
