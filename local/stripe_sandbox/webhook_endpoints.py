"""Webhook endpoints: /v1/webhook_endpoints, the endpoint the sandbox is
configured with (webhook_url and webhook_secret) and those made through the
API, each with its own secret, and an endpoint disabled as Stripe disables
one that keeps failing: nothing is sent to it until it is enabled again."""
import copy
from typing import Any, Dict, List, Optional, Sequence
from urllib.parse import urlsplit

from local.stripe_sandbox.wire import (API_VERSION, Request, Response, SandboxError, _expansions, _form_metadata,
                                       _merge_metadata, _missing, _page, _random_id, json_response)

# The id of the endpoint made from webhook_url and webhook_secret: fixed, so
# that a stack can name it (STRIPE_WEBHOOK_ENDPOINT_ID) before the sandbox runs.
WEBHOOK_ENDPOINT_ID = "we_local_sandbox"
WEBHOOK_ENDPOINT_STATUSES = ("enabled", "disabled")


def _listens(endpoint: Dict[str, Any], event: Dict[str, Any]) -> bool:
    """Whether Stripe would send the event to the endpoint: a type it
    enabled, from where it listens (a Connect endpoint hears the connected
    accounts, an account endpoint the platform's own account)."""
    if "*" not in endpoint["enabled_events"] and event["type"] not in endpoint["enabled_events"]:
        return False
    connect = endpoint["_connect"]
    return connect is None or connect == (event["account"] is not None)


def _public(endpoint: Dict[str, Any]) -> Dict[str, Any]:
    # Stripe shows the secret once, in the answer to the create.
    return {k: copy.deepcopy(v) for k, v in endpoint.items() if not k.startswith("_") and k != "secret"}


def _checked_url(value: Any) -> str:
    parts = urlsplit(value if isinstance(value, str) else "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SandboxError(400, "Invalid URL: %s. An explicit scheme (such as https) and a host must be provided."
                           % value, code="url_invalid", param="url")
    return value


def _no_expansions(params: Dict[str, Any]) -> None:
    # A webhook endpoint has no expandable field.
    paths = _expansions(params)
    if paths:
        raise SandboxError(400, "This property cannot be expanded (%s)." % paths[0], param="expand")


class WebhookEndpoints:
    """The platform's webhook endpoints."""

    def _reset_webhook_endpoints(self) -> None:
        self._webhook_endpoints: Dict[str, Dict[str, Any]] = {}
        if self.webhook_url and self.webhook_secret:
            # It hears every event, the platform's and its connected
            # accounts': the local stack has one endpoint for both.
            self._webhook_endpoints[WEBHOOK_ENDPOINT_ID] = self._new_endpoint(
                WEBHOOK_ENDPOINT_ID, self.webhook_url, self.webhook_secret, ["*"], connect=None,
                api_version=API_VERSION)

    def _new_endpoint(self, endpoint_id: str, url: str, secret: str, enabled_events: Sequence[str],
                      connect: Optional[bool], api_version: Optional[str] = None,
                      description: Optional[str] = None,
                      metadata: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        return {
            "id": endpoint_id,
            "object": "webhook_endpoint",
            "api_version": api_version,
            "application": None,
            "created": int(self.now()),
            "description": description,
            "enabled_events": list(enabled_events),
            "livemode": False,
            "metadata": dict(metadata or {}),
            "secret": secret,
            "status": "enabled",
            "url": url,
            "_connect": connect,
        }

    @property
    def webhook_endpoints(self) -> List[Dict[str, Any]]:
        """Every webhook endpoint, oldest first, without its secret."""
        with self._lock:
            return [_public(e) for e in self._webhook_endpoints.values()]

    def webhook_endpoint(self, endpoint_id: str = WEBHOOK_ENDPOINT_ID) -> Dict[str, Any]:
        with self._lock:
            return _public(self._endpoint_or_raise(endpoint_id))

    def create_webhook_endpoint(self, url: str, enabled_events: Sequence[str] = ("*",), connect: bool = False,
                                description: Optional[str] = None, metadata: Optional[Dict[str, str]] = None,
                                api_version: Optional[str] = None) -> Dict[str, Any]:
        """A new endpoint with a new secret, which signs what is sent to it;
        the answer is the only place the secret shows, as at Stripe. Without
        api_version (null) it gets events in the account's version, the pinned one."""
        with self._lock:
            endpoint = self._new_endpoint(_random_id("we_", 24), url, _random_id("whsec_", 32), enabled_events,
                                          connect=bool(connect), api_version=api_version, description=description,
                                          metadata=metadata)
            self._webhook_endpoints[endpoint["id"]] = endpoint
            created = _public(endpoint)
            created["secret"] = endpoint["secret"]
            return created

    def update_webhook_endpoint(self, endpoint_id: str, **fields: Any) -> Dict[str, Any]:
        """Changes url, enabled_events, description, metadata (merged: a
        value "" deletes its key) or status."""
        with self._lock:
            endpoint = self._endpoint_or_raise(endpoint_id)
            changed = copy.deepcopy(endpoint)
            for name, value in fields.items():
                if name == "metadata":
                    changed["metadata"] = _merge_metadata(changed["metadata"], value or {})
                elif name == "status":
                    if value not in WEBHOOK_ENDPOINT_STATUSES:
                        raise ValueError("a webhook endpoint is enabled or disabled, not %r" % (value,))
                    changed["status"] = value
                elif name == "enabled_events":
                    changed["enabled_events"] = list(value)
                elif name in ("url", "description"):
                    changed[name] = value
                else:
                    raise ValueError("a webhook endpoint's %s cannot be changed here" % name)
            endpoint.clear()
            endpoint.update(changed)
            return _public(endpoint)

    def set_webhook_endpoint_status(self, status: str, endpoint_id: str = WEBHOOK_ENDPOINT_ID) -> Dict[str, Any]:
        """Disables the endpoint as Stripe does one that keeps failing, or
        enables it again. Events recorded while it is disabled are not sent
        to it and stay undelivered (``/v1/events?delivery_success=false``
        lists them); enabled, it is sent the events recorded from then on."""
        return self.update_webhook_endpoint(endpoint_id, status=status)

    def delete_webhook_endpoint(self, endpoint_id: str) -> Dict[str, Any]:
        with self._lock:
            self._endpoint_or_raise(endpoint_id)
            del self._webhook_endpoints[endpoint_id]
            return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}

    def _endpoint_or_raise(self, endpoint_id: str) -> Dict[str, Any]:
        try:
            return self._webhook_endpoints[endpoint_id]
        except KeyError:
            raise KeyError("no webhook endpoint %s" % endpoint_id) from None

    def _endpoints_listening(self, event: Dict[str, Any]) -> Optional[List[Dict[str, Any]]]:
        """The endpoints the event is for, disabled ones included; None when
        the sandbox has no endpoint at all."""
        if not self._webhook_endpoints:
            return None
        return [e for e in self._webhook_endpoints.values() if _listens(e, event)]

    # API

    def _platform_endpoint(self, request: Request, endpoint_id: str) -> Dict[str, Any]:
        self._refuse_connected_account(request)
        endpoint = self._webhook_endpoints.get(endpoint_id)
        if endpoint is None:
            raise _missing("webhook endpoint", endpoint_id)
        return endpoint

    @staticmethod
    def _refuse_connected_account(request: Request) -> None:
        if request.stripe_account:
            raise SandboxError(400, "The sandbox keeps webhook endpoints for the platform only; a connected "
                               "account's own endpoints are not modelled. Send this request without "
                               "Stripe-Account.")

    def _api_list_webhook_endpoints(self, request: Request) -> Response:
        self._refuse_connected_account(request)
        _no_expansions(request.query)
        endpoints = [_public(e) for e in reversed(list(self._webhook_endpoints.values()))]
        return json_response(_page(endpoints, request.query, "/v1/webhook_endpoints", "webhook endpoint"))

    def _api_create_webhook_endpoint(self, request: Request) -> Response:
        self._refuse_connected_account(request)
        params = request.params
        _no_expansions(params)
        api_version = params.get("api_version")
        if api_version is not None and api_version != API_VERSION:
            raise SandboxError(400, "The sandbox renders events in %s only; leave api_version out or send that "
                               "version." % API_VERSION, param="api_version")
        created = self.create_webhook_endpoint(
            _checked_url(params["url"]), enabled_events=params["enabled_events"],
            connect=params.get("connect") == "true", description=params.get("description") or None,
            metadata=_form_metadata(params.get("metadata"), {}), api_version=api_version)
        return json_response(created)

    def _api_retrieve_webhook_endpoint(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self._platform_endpoint(request, endpoint_id)
        _no_expansions(request.query)
        return json_response(_public(endpoint))

    def _api_update_webhook_endpoint(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self._platform_endpoint(request, endpoint_id)
        params = request.params
        _no_expansions(params)
        fields: Dict[str, Any] = {}
        if "url" in params:
            fields["url"] = _checked_url(params["url"])
        if "enabled_events" in params:
            fields["enabled_events"] = params["enabled_events"]
        if "description" in params:
            fields["description"] = params["description"] or None
        if "metadata" in params:
            fields["metadata"] = _form_metadata(params["metadata"], endpoint["metadata"])
        if "disabled" in params:
            fields["status"] = "disabled" if params["disabled"] == "true" else "enabled"
        return json_response(self.update_webhook_endpoint(endpoint_id, **fields))

    def _api_delete_webhook_endpoint(self, request: Request, endpoint_id: str) -> Response:
        self._platform_endpoint(request, endpoint_id)
        return json_response(self.delete_webhook_endpoint(endpoint_id))
