"""A local stand-in for Stripe that speaks its wire format.

The real stripe-python client talks to it unchanged through
``base_addresses={"api": url, "connect": url}``: form-encoded requests with
Stripe's nested keys, JSON objects with ``object`` and ``id``, Stripe's error
bodies (and the OAuth ones on ``/oauth/*``), ``Request-Id`` headers,
idempotent replays of POSTs, ``Stripe-Should-Retry`` (and ``Retry-After`` when
asked) on injected failures, and injected delays, so the client's own
retries, timeouts and exception classes are exercised.

Tests start it in-process on a free port; the local stack runs it with
``python -m local.stripe_sandbox`` and a person uses its pages in a browser
(the Connect authorize page, a small dashboard at ``/`` that also moves
subscriptions along, and portal pages).

Standard library only: it must never import stripe, chalice or boto3.
"""
import argparse
import copy
import hashlib
import hmac
import html
import json
import os
import queue
import re
import secrets
import string
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

API_VERSION = "2026-10-28.endive"
CODE_TTL_SECONDS = 300
WEBHOOK_TIMEOUT_SECONDS = 5
DEFAULT_PAGE_LIMIT = 10
MAX_PAGE_LIMIT = 100
DEFAULT_PERIOD_SECONDS = 30 * 24 * 3600
DEFAULT_UNIT_AMOUNT = 1500
SUBSCRIPTION_STATUSES = ("incomplete", "incomplete_expired", "trialing", "active", "past_due", "canceled",
                         "unpaid", "paused")
# What `status` may be on GET /v1/subscriptions, besides the statuses themselves.
_LIST_STATUSES = SUBSCRIPTION_STATUSES + ("all", "ended")
# Expand paths a subscription answers to ("items.data.price" is always inline).
_SUBSCRIPTION_EXPANDABLE = ("customer", "items.data.price", "items.data.price.product")

_ALNUM = string.ascii_letters + string.digits


def _random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def mask_key(key: str) -> str:
    """How Stripe quotes a key back: the prefix and last four characters."""
    if not key:
        return ""
    tail = key[-4:] if len(key) > 12 else ""
    head = re.match(r"^(?:[a-z]{2,5}_(?:test_|live_)?)?", key).group(0)
    return head + "****" + tail


# --------------------------------------------------------------------------
# Stripe's nested form encoding: a[b][c]=x, expand[0]=x, expand[]=x.

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")


def parse_nested(pairs: List[Tuple[str, str]]) -> Dict[str, Any]:
    """Nested dicts and lists from decoded form pairs; values stay strings."""
    root: Dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY_RE.match(key)
        segments = [match.group(1)] + _SEGMENT_RE.findall(match.group(2)) if match else [key]
        node = root
        for depth, segment in enumerate(segments):
            if segment == "":
                # "[]" appends; a dict keyed "0", "1", ... becomes a list below.
                segment = str(len(node))
            if depth == len(segments) - 1:
                node[segment] = value
            else:
                child = node.get(segment)
                if not isinstance(child, dict):
                    child = node[segment] = {}
                node = child
    return _lists_from_indexes(root)


def _lists_from_indexes(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    converted = {k: _lists_from_indexes(v) for k, v in value.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def parse_form(raw: str) -> Dict[str, Any]:
    return parse_nested(parse_qsl(raw, keep_blank_values=True))


def _booleans(value: Any) -> Any:
    """Form values as Stripe stores them: "true"/"false" become booleans and
    an empty string unsets (null). Metadata stays strings."""
    if isinstance(value, dict):
        return {k: (v if k == "metadata" else _booleans(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_booleans(v) for v in value]
    if value == "true":
        return True
    if value == "false":
        return False
    if value == "":
        return None
    return value


def _deep_merge(target: Dict[str, Any], updates: Dict[str, Any]) -> None:
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _with_query(url: str, pairs: List[Tuple[str, str]]) -> str:
    """url with pairs appended to whatever query it already carries."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + pairs
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def sign_payload(payload: str, secret: str, timestamp: Optional[int] = None) -> str:
    """A Stripe-Signature header value for payload, Stripe's own scheme."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = ("%d.%s" % (timestamp, payload)).encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (timestamp, digest)


# --------------------------------------------------------------------------
# Requests, responses and the route table.

@dataclass
class Request:
    method: str
    path: str
    query: Dict[str, Any]
    params: Dict[str, Any]
    headers: Dict[str, str]
    request_id: str = field(default_factory=lambda: _random_id("req_", 14))

    @property
    def stripe_account(self) -> Optional[str]:
        return self.headers.get("stripe-account") or None

    @property
    def idempotency_key(self) -> Optional[str]:
        return self.headers.get("idempotency-key") or None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: Dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj, indent=2).encode("utf-8"),
                    {"Content-Type": "application/json"})


def stripe_error(status: int, message: str, type: str = "invalid_request_error",
                 code: Optional[str] = None, param: Optional[str] = None) -> Response:
    error: Dict[str, Any] = {"type": type, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return json_response({"error": error}, status)


def oauth_error(status: int, error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def html_response(title: str, body: str, status: int = 200) -> Response:
    page = _PAGE % {"title": html.escape(title), "body": body}
    return Response(status, page.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})


def redirect(location: str) -> Response:
    return Response(302, b"", {"Location": location})


class SandboxError(Exception):
    """Raised inside a handler to answer with a Stripe error body."""

    def __init__(self, status: int, message: str, code: Optional[str] = None,
                 param: Optional[str] = None, type: str = "invalid_request_error"):
        super().__init__(message)
        self.response = stripe_error(status, message, type=type, code=code, param=param)


def _missing(kind: str, object_id: str, param: str = "id") -> SandboxError:
    return SandboxError(404, "No such %s: '%s'" % (kind, object_id), code="resource_missing", param=param)


# Who may call a route: "api" needs the secret key and honours Stripe-Account,
# "oauth" needs the secret key and answers OAuth-style errors, "page" is for a
# browser and needs nothing.
@dataclass(frozen=True)
class Route:
    method: str
    pattern: "re.Pattern[str]"
    handler: str
    kind: str


def _route(method: str, pattern: str, handler: str, kind: str) -> Route:
    return Route(method, re.compile("^" + pattern + "$"), handler, kind)


_ID = r"([A-Za-z0-9_]+)"

ROUTES: List[Route] = [
    _route("GET", r"/oauth/authorize", "_page_authorize", "page"),
    _route("POST", r"/oauth/authorize", "_page_authorize_decision", "page"),
    _route("POST", r"/oauth/token", "_oauth_token", "oauth"),
    _route("POST", r"/oauth/deauthorize", "_oauth_deauthorize", "oauth"),
    _route("GET", r"/v1/account", "_api_current_account", "api"),
    _route("GET", r"/v1/accounts/" + _ID, "_api_retrieve_account", "api"),
    _route("GET", r"/v1/events", "_api_list_events", "api"),
    _route("GET", r"/v1/events/" + _ID, "_api_retrieve_event", "api"),
    _route("GET", r"/v1/customers", "_api_list_customers", "api"),
    _route("POST", r"/v1/customers", "_api_create_customer", "api"),
    _route("GET", r"/v1/customers/" + _ID, "_api_retrieve_customer", "api"),
    _route("GET", r"/v1/billing_portal/configurations", "_api_list_portal_configurations", "api"),
    _route("POST", r"/v1/billing_portal/configurations", "_api_create_portal_configuration", "api"),
    _route("GET", r"/v1/billing_portal/configurations/" + _ID, "_api_retrieve_portal_configuration", "api"),
    _route("POST", r"/v1/billing_portal/configurations/" + _ID, "_api_update_portal_configuration", "api"),
    _route("POST", r"/v1/billing_portal/sessions", "_api_create_portal_session", "api"),
    _route("GET", r"/v1/products/" + _ID, "_api_retrieve_product", "api"),
    _route("POST", r"/v1/products", "_api_create_product", "api"),
    _route("GET", r"/v1/subscriptions", "_api_list_subscriptions", "api"),
    _route("GET", r"/v1/subscriptions/" + _ID, "_api_retrieve_subscription", "api"),
    _route("POST", r"/v1/subscriptions/" + _ID, "_api_update_subscription", "api"),
    _route("DELETE", r"/v1/subscriptions/" + _ID, "_api_cancel_subscription", "api"),
    _route("GET", r"/v1/subscription_items", "_api_list_subscription_items", "api"),
    _route("GET", r"/p/session/" + _ID, "_page_portal_session", "page"),
    _route("POST", r"/p/session/" + _ID + r"/subscriptions/" + _ID + r"/(cancel|keep)",
           "_page_portal_subscription", "page"),
    _route("GET", r"/", "_page_dashboard", "page"),
    _route("POST", r"/dashboard/accounts/" + _ID + r"/revoke", "_page_dashboard_revoke", "page"),
    _route("POST", r"/dashboard/accounts/" + _ID + r"/update", "_page_dashboard_update", "page"),
    _route("POST", r"/dashboard/accounts/" + _ID + r"/customers", "_page_dashboard_customer", "page"),
    _route("POST", r"/dashboard/accounts/" + _ID + r"/subscriptions", "_page_dashboard_subscription", "page"),
    _route("POST", r"/dashboard/subscriptions/" + _ID + r"/([a-z_]+)", "_page_dashboard_subscription_action",
           "page"),
]

# How many items a subscription embeds in an API answer.
EMBEDDED_ITEMS = 10

_PLATFORM = None  # the scope key for objects that belong to the platform itself


@dataclass
class _Failure:
    method: str
    path: str
    status: int
    error: Dict[str, Any]
    remaining: int
    should_retry: Optional[bool]
    retry_after: Optional[int]


@dataclass
class _Delay:
    method: str
    path: str
    seconds: float
    remaining: int


@dataclass
class _Code:
    account_id: str
    scope: str
    expires_at: float


class StripeSandbox:
    def __init__(self, secret_key: str = "sk_test_sandbox", client_id: str = "ca_sandbox",
                 host: str = "127.0.0.1", port: int = 0, webhook_url: Optional[str] = None,
                 webhook_secret: Optional[str] = None, platform_name: str = "CustomerHub",
                 clock: Callable[[], float] = time.time, log_requests: bool = False):
        self.secret_key = secret_key
        self.client_id = client_id
        self.host = host
        self.port = port
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.platform_name = platform_name
        # Replaceable so tests can move time past a code's expiry.
        self.clock = clock
        self.log_requests = log_requests
        self.url = ""
        self._lock = threading.RLock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._deliveries: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        self._delivery_thread: Optional[threading.Thread] = None
        self._undelivered = 0
        self._delivered = threading.Condition(self._lock)
        self.reset()

    # ---------------------------------------------------------------- running

    def start(self) -> "StripeSandbox":
        sandbox = self

        class Handler(_Handler):
            pass

        Handler.sandbox = sandbox
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = "http://%s:%d" % (self.host, self.port)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="stripe-sandbox", daemon=True)
        self._thread.start()
        self._delivery_thread = threading.Thread(target=self._deliver_loop, name="stripe-sandbox-webhooks",
                                                 daemon=True)
        self._delivery_thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._delivery_thread is not None:
            self._deliveries.put(None)
            self._delivery_thread.join(timeout=WEBHOOK_TIMEOUT_SECONDS + 1)
            self._delivery_thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the CLI's loop)."""
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def __enter__(self) -> "StripeSandbox":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            # A delayed request that outlives a reset is not carried out in the new world.
            self._generation = getattr(self, "_generation", 0) + 1
            self._accounts: Dict[str, Dict[str, Any]] = {}
            self._connected: Dict[str, float] = {}
            self._codes: Dict[str, _Code] = {}
            self._failures: List[_Failure] = []
            self._before_answer: List[Tuple[str, str, Callable[[], Any]]] = []
            self._delays: List[_Delay] = []
            self._requests: List[Dict[str, Any]] = []
            self._events: List[Dict[str, Any]] = []
            self._event_delivered: Dict[str, bool] = {}
            self._idempotent: Dict[Tuple[Optional[str], str], Tuple[str, str, Dict[str, Any], Response]] = {}
            # Objects living on an account, by scope (account id, or None for the platform).
            self._customers: Dict[Optional[str], Dict[str, Dict[str, Any]]] = {}
            self._portal_configurations: Dict[Optional[str], Dict[str, Dict[str, Any]]] = {}
            self._portal_sessions: Dict[str, Dict[str, Any]] = {}
            self._products: Dict[Optional[str], Dict[str, Dict[str, Any]]] = {}
            # One recurring price per product, made when a subscription first uses it.
            self._prices: Dict[Optional[str], Dict[str, Dict[str, Any]]] = {}
            # Stored unexpanded: customer and product as ids.
            self._subscriptions: Dict[Optional[str], Dict[str, Dict[str, Any]]] = {}

    # ----------------------------------------------------------- state helpers

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
                "settings": {"dashboard": {"display_name": display_name, "timezone": "Etc/UTC"}},
                "charges_enabled": True,
                "details_submitted": True,
                "created": int(self.clock()),
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
            self._codes[code] = _Code(account_id, scope, self.clock() + CODE_TTL_SECONDS)
            return code

    def revoke(self, account_id: str) -> None:
        with self._lock:
            self._account_or_raise(account_id)
            if self._connected.pop(account_id, None) is not None:
                self._record_event("account.application.deauthorized", account_id, self._application())

    def is_connected(self, account_id: str) -> bool:
        with self._lock:
            return account_id in self._connected

    def fail_next(self, method: str, path: str, status: int = 500, error: Optional[Dict[str, Any]] = None,
                  times: int = 1, should_retry: Optional[bool] = None,
                  retry_after: Optional[int] = None) -> None:
        """The next `times` requests to method + path answer `status`.

        5xx and 409 answers carry ``Stripe-Should-Retry: true`` unless
        should_retry says otherwise, so the client's retries are exercised;
        every other status carries ``false`` unless should_retry is True.
        A 429 is Stripe's rate limit error (code ``rate_limit``); with
        `retry_after` it also carries ``Retry-After`` (seconds).
        On /oauth/* keep `error["error"]` to one of Stripe's OAuth codes
        (invalid_request, invalid_grant, invalid_client, ...): stripe-python
        fails with an AttributeError on any other string."""
        with self._lock:
            self._failures.append(_Failure(method.upper(), path, status, dict(error or {}), times, should_retry,
                                           retry_after))

    def delay_next(self, method: str, path: str, seconds: float, times: int = 1) -> None:
        """The next `times` requests to method + path wait `seconds` before
        they are handled and answered, as a Stripe that hangs would; other
        requests go on meanwhile. A client that gave up waiting has still
        made the request: it is recorded when it arrives and carried out
        after the wait."""
        with self._lock:
            self._delays.append(_Delay(method.upper(), path, seconds, times))

    def before_answering_next(self, method: str, path: str, action: Callable[[], Any]) -> None:
        """Run `action` once, after the next request to method + path has
        taken effect and before it is answered: what happens when Stripe's
        webhook about a change reaches the API before the answer to the
        request that made it."""
        with self._lock:
            self._before_answer.append((method.upper(), path, action))

    def create_customer(self, account_id: Optional[str], email: Optional[str] = None,
                        metadata: Optional[Dict[str, str]] = None, name: Optional[str] = None,
                        id: Optional[str] = None) -> Dict[str, Any]:
        """A customer on account_id (None: on the platform itself)."""
        with self._lock:
            if account_id is not None:
                self._account_or_raise(account_id)
            customer = {
                "id": id or _random_id("cus_", 14),
                "object": "customer",
                "created": int(self.clock()),
                "email": email,
                "livemode": False,
                "metadata": dict(metadata or {}),
                "name": name,
            }
            self._customers.setdefault(account_id, {})[customer["id"]] = customer
            return copy.deepcopy(customer)

    def delete_customer(self, account_id: Optional[str], customer_id: str) -> Dict[str, Any]:
        """Deletes the customer: retrieving or expanding it gives Stripe's stub
        ``{"id", "object": "customer", "deleted": true}``. Its subscriptions stay as they are."""
        with self._lock:
            scope = self._scope(account_id)
            self._customer_or_raise(scope, customer_id)
            stub = {"id": customer_id, "object": "customer", "deleted": True}
            self._customers[scope][customer_id] = stub
            return dict(stub)

    # -------------------------------------------------- products and subscriptions

    def create_product(self, account_id: Optional[str], name: Optional[str] = None,
                       metadata: Optional[Dict[str, str]] = None, id: Optional[str] = None) -> Dict[str, Any]:
        with self._lock:
            scope = self._scope(account_id)
            product_id = id or _random_id("prod_", 14)
            if any(product_id in products for products in self._products.values()):
                raise ValueError("product %s already exists" % product_id)
            now = int(self.clock())
            product = {
                "id": product_id,
                "object": "product",
                "active": True,
                "created": now,
                "description": None,
                "livemode": self._livemode(scope),
                "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},
                "name": name or "Sandbox product",
                "updated": now,
            }
            self._products.setdefault(scope, {})[product_id] = product
            return copy.deepcopy(product)

    def update_product(self, account_id: Optional[str], product_id: str, **fields: Any) -> Dict[str, Any]:
        """Changes name, active, description or metadata (merged: a value "" deletes the key)."""
        with self._lock:
            product = self._product_or_raise(self._scope(account_id), product_id)
            changed = copy.deepcopy(product)
            for name, value in fields.items():
                if name == "metadata":
                    changed["metadata"] = _merge_metadata(changed["metadata"], value or {})
                elif name in ("name", "active", "description"):
                    changed[name] = value
                else:
                    raise ValueError("a product's %s cannot be changed here" % name)
            changed["updated"] = int(self.clock())
            product.clear()
            product.update(changed)
            return copy.deepcopy(product)

    def create_subscription(self, account_id: Optional[str], customer_id: str, products: List[str],
                            status: str = "active", period_end: Optional[int] = None,
                            period_start: Optional[int] = None, metadata: Optional[Dict[str, str]] = None,
                            cancel_at_period_end: bool = False, cancel_at: Optional[int] = None,
                            id: Optional[str] = None) -> Dict[str, Any]:
        """A subscription of customer_id to products (ids on that account), one
        item and price each, every item in the period period_start (now) to
        period_end (30 days later). Records customer.subscription.created."""
        with self._lock:
            scope = self._scope(account_id)
            customer = self._customer_or_raise(scope, customer_id)
            if customer.get("deleted"):
                raise ValueError("customer %s is deleted" % customer_id)
            if isinstance(products, str):
                products = [products]
            product_ids = list(dict.fromkeys(products))
            if not product_ids:
                raise ValueError("a subscription needs at least one product")
            for product_id in product_ids:
                self._product_or_raise(scope, product_id)
            if status not in SUBSCRIPTION_STATUSES:
                raise ValueError("unknown subscription status %r" % status)
            subscription_id = id or _random_id("sub_", 14)
            if self._find_subscription(subscription_id) is not None:
                raise ValueError("subscription %s already exists" % subscription_id)
            now = int(self.clock())
            start = now if period_start is None else int(period_start)
            end = start + DEFAULT_PERIOD_SECONDS if period_end is None else int(period_end)
            canceled = status == "canceled"
            subscription = {
                "id": subscription_id,
                "object": "subscription",
                "cancel_at": None if cancel_at is None else int(cancel_at),
                "cancel_at_period_end": bool(cancel_at_period_end) and not canceled,
                "canceled_at": now if cancel_at_period_end or canceled else None,
                "collection_method": "charge_automatically",
                "created": now,
                "currency": "usd",
                "customer": customer_id,
                "ended_at": now if canceled else None,
                "items": _item_list(subscription_id, [
                    self._new_item(scope, subscription_id, product_id, start, end) for product_id in product_ids]),
                "livemode": self._livemode(scope),
                "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},
                "start_date": start,
                "status": status,
            }
            self._subscriptions.setdefault(scope, {})[subscription_id] = subscription
            self._record_event("customer.subscription.created", scope, subscription)
            return copy.deepcopy(subscription)

    def update_subscription(self, account_id: Optional[str], subscription_id: str,
                            **changes: Any) -> Dict[str, Any]:
        """Changes status, cancel_at_period_end, cancel_at, metadata (merged:
        "" deletes a key), products (the new item set) or period_end (of every
        item). Records customer.subscription.updated with previous_attributes,
        or .paused / .resumed when the status enters or leaves paused."""
        with self._lock:
            return self._update_subscription(self._scope(account_id), subscription_id, changes)

    def renew_subscription(self, account_id: Optional[str], subscription_id: str,
                           period_end: Optional[int] = None) -> Dict[str, Any]:
        """The current period ended: every item's next period starts at the old
        end and lasts as long (or ends at period_end); past_due, unpaid and
        trialing become active. One set to cancel at that moment (by
        cancel_at_period_end or cancel_at) is canceled instead, as Stripe does."""
        with self._lock:
            scope = self._scope(account_id)
            subscription = self._subscription_or_raise(scope, subscription_id)
            if subscription["status"] in ("canceled", "incomplete_expired"):
                raise ValueError("subscription %s has ended" % subscription_id)
            old_end = _period_end(subscription)
            if subscription["cancel_at_period_end"] or (
                    subscription["cancel_at"] is not None and subscription["cancel_at"] <= old_end):
                return self._cancel_subscription(scope, subscription_id)
            if period_end is not None and int(period_end) <= old_end:
                raise ValueError("the next period must end after the current one (%d)" % old_end)
            changed = copy.deepcopy(subscription)
            for item in changed["items"]["data"]:
                start, end = item["current_period_start"], item["current_period_end"]
                item["current_period_start"] = end
                item["current_period_end"] = int(period_end) if period_end is not None else end + (end - start)
            if changed["status"] in ("past_due", "unpaid", "trialing"):
                changed["status"] = "active"
            return self._store_update(scope, subscription, changed)

    def cancel_subscription(self, account_id: Optional[str], subscription_id: str) -> Dict[str, Any]:
        """Cancels now. Records customer.subscription.deleted."""
        with self._lock:
            return self._cancel_subscription(self._scope(account_id), subscription_id)

    def forget_subscription(self, account_id: Optional[str], subscription_id: str) -> None:
        """Removes the subscription entirely (retrieving it answers 404), without an event."""
        with self._lock:
            scope = self._scope(account_id)
            self._subscription_or_raise(scope, subscription_id)
            del self._subscriptions[scope][subscription_id]

    def subscription(self, account_id: Optional[str], subscription_id: str) -> Dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._subscription_or_raise(self._scope(account_id), subscription_id))

    def subscriptions(self, account_id: Optional[str]) -> List[Dict[str, Any]]:
        """The account's subscriptions, oldest first, canceled ones included."""
        with self._lock:
            return copy.deepcopy(list(self._subscriptions.get(self._scope(account_id), {}).values()))

    def products(self, account_id: Optional[str]) -> List[Dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._products.get(self._scope(account_id), {}).values()))

    @property
    def accounts(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [self._account_view(a) for a in self._accounts]

    @property
    def requests(self) -> List[Dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._requests)

    def requests_to(self, method: str, path_prefix: str) -> List[Dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method.upper() and r["path"].startswith(path_prefix)]

    @property
    def events(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [self._event_view(e) for e in self._events]

    def events_after(self, count: int) -> List[Dict[str, Any]]:
        """The events recorded after the first `count`, oldest first: what
        happened since a caller last looked, without copying all of them."""
        with self._lock:
            return [self._event_view(e) for e in self._events[count:]]

    def portal_configurations(self, account_id: Optional[str]) -> List[Dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._portal_configurations.get(account_id, {}).values()))

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """Block until every queued webhook delivery was attempted."""
        deadline = time.monotonic() + timeout
        with self._delivered:
            while self._undelivered:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._delivered.wait(left)
            return True

    # ------------------------------------------------------------ internals

    def _account_or_raise(self, account_id: str) -> Dict[str, Any]:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise KeyError("no sandbox account %s" % account_id) from None

    def _account_view(self, account_id: str) -> Dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in self._accounts[account_id].items() if not k.startswith("_")}

    def _application(self) -> Dict[str, Any]:
        return {"id": self.client_id, "object": "application", "name": self.platform_name}

    def _scope(self, account_id: Optional[str]) -> Optional[str]:
        if account_id is not None:
            self._account_or_raise(account_id)
        return account_id

    def _livemode(self, scope: Optional[str]) -> bool:
        return bool(self._accounts.get(scope, {}).get("_livemode", False)) if scope else False

    def _customer_or_raise(self, scope: Optional[str], customer_id: str) -> Dict[str, Any]:
        try:
            return self._customers.get(scope, {})[customer_id]
        except KeyError:
            raise KeyError("no customer %s on %s" % (customer_id, scope or "the platform")) from None

    def _product_or_raise(self, scope: Optional[str], product_id: str) -> Dict[str, Any]:
        try:
            return self._products.get(scope, {})[product_id]
        except KeyError:
            raise KeyError("no product %s on %s" % (product_id, scope or "the platform")) from None

    def _subscription_or_raise(self, scope: Optional[str], subscription_id: str) -> Dict[str, Any]:
        try:
            return self._subscriptions.get(scope, {})[subscription_id]
        except KeyError:
            raise KeyError("no subscription %s on %s" % (subscription_id, scope or "the platform")) from None

    def _find_subscription(self, subscription_id: str) -> Optional[Tuple[Optional[str], Dict[str, Any]]]:
        for scope, subscriptions in self._subscriptions.items():
            if subscription_id in subscriptions:
                return scope, subscriptions[subscription_id]
        return None

    def _price_for(self, scope: Optional[str], product_id: str) -> Dict[str, Any]:
        prices = self._prices.setdefault(scope, {})
        if product_id not in prices:
            prices[product_id] = {
                "id": _random_id("price_", 14),
                "object": "price",
                "active": True,
                "billing_scheme": "per_unit",
                "created": int(self.clock()),
                "currency": "usd",
                "livemode": self._livemode(scope),
                "lookup_key": None,
                "metadata": {},
                "nickname": None,
                "product": product_id,
                "recurring": {"interval": "month", "interval_count": 1, "meter": None, "trial_period_days": None,
                              "usage_type": "licensed"},
                "tax_behavior": "unspecified",
                "type": "recurring",
                "unit_amount": DEFAULT_UNIT_AMOUNT,
                "unit_amount_decimal": str(DEFAULT_UNIT_AMOUNT),
            }
        return prices[product_id]

    def _new_item(self, scope: Optional[str], subscription_id: str, product_id: str, start: int,
                  end: int) -> Dict[str, Any]:
        return {
            "id": _random_id("si_", 14),
            "object": "subscription_item",
            "created": int(self.clock()),
            "current_period_end": end,
            "current_period_start": start,
            "metadata": {},
            "price": copy.deepcopy(self._price_for(scope, product_id)),
            "quantity": 1,
            "subscription": subscription_id,
        }

    def _update_subscription(self, scope: Optional[str], subscription_id: str, changes: Dict[str, Any],
                             request: Optional[Request] = None) -> Dict[str, Any]:
        subscription = self._subscription_or_raise(scope, subscription_id)
        order = ("status", "cancel_at_period_end", "cancel_at", "metadata", "products", "period_end")
        unknown = sorted(set(changes) - set(order))
        if unknown:
            raise ValueError("a subscription's %s cannot be changed here" % ", ".join(unknown))
        changed = copy.deepcopy(subscription)
        now = int(self.clock())
        for name in (n for n in order if n in changes):
            value = changes[name]
            if name == "status":
                if value not in SUBSCRIPTION_STATUSES:
                    raise ValueError("unknown subscription status %r" % value)
                if value == "canceled" and changed["status"] != "canceled":
                    raise ValueError("cancel a subscription with cancel_subscription")
                changed["status"] = value
            elif name == "cancel_at_period_end":
                value = bool(value)
                if value != changed["cancel_at_period_end"]:
                    changed["cancel_at_period_end"] = value
                    if changed["status"] != "canceled":
                        changed["canceled_at"] = now if value else None
            elif name == "cancel_at":
                changed["cancel_at"] = None if value is None else int(value)
            elif name == "metadata":
                changed["metadata"] = _merge_metadata(changed["metadata"], value or {})
            elif name == "products":
                product_ids = list(dict.fromkeys([value] if isinstance(value, str) else value))
                if not product_ids:
                    raise ValueError("a subscription needs at least one product")
                for product_id in product_ids:
                    self._product_or_raise(scope, product_id)
                items = changed["items"]["data"]
                kept = [item for item in items if item["price"]["product"] in product_ids]
                present = {item["price"]["product"] for item in kept}
                if items:
                    start, end = items[0]["current_period_start"], items[0]["current_period_end"]
                else:
                    start, end = now, now + DEFAULT_PERIOD_SECONDS
                added = [self._new_item(scope, subscription_id, product_id, start, end)
                         for product_id in product_ids if product_id not in present]
                changed["items"] = _item_list(subscription_id, kept + added)
            elif name == "period_end":
                for item in changed["items"]["data"]:
                    item["current_period_end"] = int(value)
        return self._store_update(scope, subscription, changed, request)

    def _store_update(self, scope: Optional[str], subscription: Dict[str, Any], changed: Dict[str, Any],
                      request: Optional[Request] = None) -> Dict[str, Any]:
        previous = _previous_attributes(subscription, changed)
        if not previous:
            return copy.deepcopy(subscription)
        was = subscription["status"]
        subscription.clear()
        subscription.update(changed)
        status = subscription["status"]
        if status == "paused" and was != "paused":
            self._record_event("customer.subscription.paused", scope, subscription, request=request)
        elif was == "paused" and status in ("active", "trialing"):
            self._record_event("customer.subscription.resumed", scope, subscription, request=request)
        else:
            self._record_event("customer.subscription.updated", scope, subscription,
                               previous_attributes=previous, request=request)
        return copy.deepcopy(subscription)

    def _cancel_subscription(self, scope: Optional[str], subscription_id: str,
                             request: Optional[Request] = None) -> Dict[str, Any]:
        subscription = self._subscription_or_raise(scope, subscription_id)
        if subscription["status"] == "canceled":
            raise ValueError("subscription %s is already canceled" % subscription_id)
        now = int(self.clock())
        subscription["status"] = "canceled"
        subscription["canceled_at"] = subscription["canceled_at"] or now
        subscription["ended_at"] = now
        subscription["cancel_at_period_end"] = False
        self._record_event("customer.subscription.deleted", scope, subscription, request=request)
        return copy.deepcopy(subscription)

    def _event_view(self, event: Dict[str, Any]) -> Dict[str, Any]:
        view = copy.deepcopy(event)
        # Until a delivery succeeded the event counts as pending, which is also
        # what `delivery_success=false` lists.
        view["pending_webhooks"] = 0 if self._event_delivered.get(event["id"]) else 1
        return view

    def _record_event(self, type: str, account_id: Optional[str], obj: Dict[str, Any],
                      previous_attributes: Optional[Dict[str, Any]] = None,
                      request: Optional[Request] = None) -> Dict[str, Any]:
        data: Dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        livemode = bool(self._accounts.get(account_id, {}).get("_livemode", False)) if account_id else False
        event = {
            "id": _random_id("evt_", 24),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(self.clock()),
            "livemode": livemode,
            "account": account_id,
            "type": type,
            "data": data,
            "pending_webhooks": 1,
            "request": {"id": request.request_id if request else None,
                        "idempotency_key": request.idempotency_key if request else None},
        }
        self._events.append(event)
        self._event_delivered[event["id"]] = False
        if self.webhook_url and self.webhook_secret:
            self._undelivered += 1
            self._deliveries.put(copy.deepcopy(event))
        return event

    def _deliver_loop(self) -> None:
        while True:
            event = self._deliveries.get()
            if event is None:
                return
            try:
                ok = self._deliver(event)
                with self._lock:
                    if ok:
                        self._event_delivered[event["id"]] = True
            finally:
                with self._delivered:
                    self._undelivered -= 1
                    self._delivered.notify_all()

    def _deliver(self, event: Dict[str, Any]) -> bool:
        payload = json.dumps(event, indent=2)
        header = sign_payload(payload, self.webhook_secret or "", int(time.time()))
        request = urllib.request.Request(
            self.webhook_url or "", data=payload.encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header,
                     "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except Exception as exc:  # a dead endpoint must not stop the sandbox
            print("stripe-sandbox: webhook %s for %s failed: %s" % (event["type"], event["id"], exc),
                  file=sys.stderr)
            return False
        if not 200 <= status < 300:
            print("stripe-sandbox: webhook %s for %s answered %d" % (event["type"], event["id"], status),
                  file=sys.stderr)
            return False
        return True

    # -------------------------------------------------------------- dispatch

    def handle(self, request: Request) -> Response:
        with self._lock:
            self._requests.append({
                "method": request.method, "path": request.path, "query": copy.deepcopy(request.query),
                "params": copy.deepcopy(request.params), "headers": dict(request.headers),
                "stripe_account": request.stripe_account,
            })
            delay = self._take_delay(request)
            generation = self._generation
        if delay:
            # Without the lock: the other requests, and the test's own calls,
            # are not held up by one that hangs.
            time.sleep(delay)
        with self._lock:
            if generation != self._generation:
                response = stripe_error(500, "The sandbox was reset while this request waited", type="api_error")
            else:
                response = self._dispatch(request)
            actions = [hook for hook in self._before_answer if hook[:2] == (request.method, request.path)]
            for hook in actions:
                self._before_answer.remove(hook)
        for _, _, action in actions:
            action()
        response.headers.setdefault("Request-Id", request.request_id)
        response.headers.setdefault("Stripe-Version", API_VERSION)
        return response

    def _dispatch(self, request: Request) -> Response:
        route, args = self._match(request)
        kind = route.kind if route else ("api" if request.path.startswith("/v1/") else "page")
        failure = self._take_failure(request)
        if failure is not None:
            return failure
        if route is None:
            if kind == "page" and not request.path.startswith("/oauth/"):
                return html_response("Not found", "<h1>Not found</h1><p>Nothing lives at %s.</p>"
                                     % html.escape(request.path), 404)
            return stripe_error(404, "Unrecognized request URL (%s: %s). Please see https://stripe.com/docs "
                                "or we can help at https://support.stripe.com/." % (request.method, request.path))
        if kind in ("api", "oauth"):
            refused = self._check_key(request, kind)
            if refused is not None:
                return refused
        if kind == "api" and request.stripe_account and request.stripe_account not in self._connected:
            return stripe_error(403, "The provided key '%s' does not have access to account '%s' (or that "
                                "account does not exist). Application access may have been revoked."
                                % (mask_key(self.secret_key), request.stripe_account), code="account_invalid")
        replay_key = None
        if request.method == "POST" and kind != "page" and request.idempotency_key:
            replay_key = (request.stripe_account, request.idempotency_key)
            stored = self._idempotent.get(replay_key)
            if stored is not None:
                method, path, params, response = stored
                if (method, path, params) != (request.method, request.path, request.params):
                    return stripe_error(400, "Keys for idempotent requests can only be used with the same "
                                        "parameters they were first used with. Try using a key other than '%s' "
                                        "if you meant to execute a different request." % request.idempotency_key,
                                        type="idempotency_error")
                replayed = Response(response.status, response.body, dict(response.headers))
                replayed.headers["Idempotent-Replayed"] = "true"
                return replayed
        try:
            response = getattr(self, route.handler)(request, *args)
        except SandboxError as exc:
            response = exc.response
        if replay_key is not None and response.status < 500:
            self._idempotent[replay_key] = (request.method, request.path, copy.deepcopy(request.params),
                                            Response(response.status, response.body, dict(response.headers)))
        return response

    def _match(self, request: Request) -> Tuple[Optional[Route], Tuple[str, ...]]:
        for route in ROUTES:
            if route.method == request.method:
                found = route.pattern.match(request.path)
                if found:
                    return route, found.groups()
        return None, ()

    def _take_delay(self, request: Request) -> float:
        for delay in self._delays:
            if delay.method == request.method and delay.path == request.path:
                delay.remaining -= 1
                if delay.remaining <= 0:
                    self._delays.remove(delay)
                return delay.seconds
        return 0.0

    def _take_failure(self, request: Request) -> Optional[Response]:
        for failure in self._failures:
            if failure.method == request.method and failure.path == request.path:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                break
        else:
            return None
        if request.path.startswith("/oauth/"):
            body: Dict[str, Any] = {"error": "invalid_request", "error_description": "Sandbox failure"}
            body.update(failure.error)
            response = json_response(body, failure.status)
        else:
            if failure.status == 429:
                error = {"type": "invalid_request_error", "code": "rate_limit",
                         "message": "Request rate limit exceeded. Learn more about rate limits here "
                                    "https://stripe.com/docs/rate-limits."}
            else:
                error = {"type": "api_error", "message": "Sandbox failure"}
            error.update(failure.error)
            response = json_response({"error": error}, failure.status)
        retry = failure.should_retry
        if retry is None:
            retry = failure.status >= 500 or failure.status == 409
        response.headers["Stripe-Should-Retry"] = "true" if retry else "false"
        if failure.retry_after is not None:
            response.headers["Retry-After"] = str(failure.retry_after)
        return response

    def _check_key(self, request: Request, kind: str) -> Optional[Response]:
        authorization = request.headers.get("authorization", "")
        scheme, _, presented = authorization.partition(" ")
        if kind == "oauth" and request.params.get("client_secret"):
            presented, scheme = request.params["client_secret"], "Bearer"
        if scheme.lower() == "bearer" and presented.strip():
            if hmac.compare_digest(presented.strip().encode(), self.secret_key.encode()):
                return None
            message = "Invalid API Key provided: %s" % mask_key(presented.strip())
        else:
            message = ("You did not provide an API key. You need to provide your API key in the "
                       "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
        if kind == "oauth":
            return oauth_error(401, "invalid_client", message)
        return stripe_error(401, message)

    # ----------------------------------------------------------- OAuth pages

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

    # ------------------------------------------------------------ OAuth API

    def _oauth_token(self, request: Request) -> Response:
        params = request.params
        grant_type = params.get("grant_type")
        if grant_type != "authorization_code":
            return oauth_error(400, "unsupported_grant_type", "Unsupported grant type: %s" % (grant_type or ""))
        code = params.get("code")
        if not code:
            return oauth_error(400, "invalid_request", "No authorization code provided")
        issued = self._codes.pop(code, None)
        if issued is None or issued.expires_at < self.clock() or issued.account_id not in self._accounts:
            return oauth_error(400, "invalid_grant", "Authorization code does not exist: %s" % code)
        account = self._accounts[issued.account_id]
        livemode = bool(account["_livemode"])
        mode = "live" if livemode else "test"
        already = issued.account_id in self._connected
        self._connected[issued.account_id] = self.clock()
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
        account_id = params.get("stripe_user_id")
        if not account_id:
            return oauth_error(400, "invalid_request", "No stripe_user_id provided")
        if self._connected.pop(account_id, None) is None:
            return oauth_error(401, "invalid_client", "This application is not connected to stripe account %s, "
                               "or that account does not exist." % account_id)
        self._record_event("account.application.deauthorized", account_id, self._application(), request=request)
        return json_response({"stripe_user_id": account_id})

    # -------------------------------------------------------------- accounts

    def _api_current_account(self, request: Request) -> Response:
        if request.stripe_account:
            return json_response(self._account_view(request.stripe_account))
        return json_response({"id": "acct_platform", "object": "account", "type": "standard",
                              "business_profile": {"name": self.platform_name, "url": None},
                              "settings": {"dashboard": {"display_name": self.platform_name,
                                                         "timezone": "Etc/UTC"}},
                              "charges_enabled": True, "details_submitted": True, "country": "US",
                              "email": None, "created": 0, "metadata": {}})

    def _api_retrieve_account(self, request: Request, account_id: str) -> Response:
        if account_id not in self._connected:
            raise SandboxError(403, "The provided key '%s' does not have access to account '%s' (or that account "
                               "does not exist). Application access may have been revoked."
                               % (mask_key(self.secret_key), account_id), code="account_invalid")
        return json_response(self._account_view(account_id))

    # ---------------------------------------------------------------- events

    def _api_list_events(self, request: Request) -> Response:
        params = request.query
        events = [self._event_view(e) for e in reversed(self._events)]
        if request.stripe_account:
            events = [e for e in events if e["account"] == request.stripe_account]
        types = params.get("types") or ([params["type"]] if params.get("type") else [])
        if types:
            patterns = [re.compile("^" + re.escape(t).replace(r"\*", ".*") + "$") for t in types]
            events = [e for e in events if any(p.match(e["type"]) for p in patterns)]
        if params.get("delivery_success") in ("true", "false"):
            wanted = params["delivery_success"] == "true"
            events = [e for e in events if (e["pending_webhooks"] == 0) == wanted]
        events = [e for e in events if _created_matches(e["created"], params.get("created"))]
        return json_response(_page(events, params, "/v1/events", "event"))

    def _api_retrieve_event(self, request: Request, event_id: str) -> Response:
        for event in self._events:
            if event["id"] == event_id and (not request.stripe_account or event["account"] == request.stripe_account):
                return json_response(self._event_view(event))
        raise _missing("event", event_id)

    # ------------------------------------------------------------- customers

    def _api_list_customers(self, request: Request) -> Response:
        params = request.query
        customers = [c for c in reversed(list(self._customers.get(request.stripe_account, {}).values()))
                     if not c.get("deleted")]
        if "email" in params:
            customers = [c for c in customers if c["email"] == params["email"]]
        customers = [c for c in customers if _created_matches(c["created"], params.get("created"))]
        return json_response(_page(copy.deepcopy(customers), params, "/v1/customers", "customer"))

    def _api_create_customer(self, request: Request) -> Response:
        params = request.params
        metadata = params.get("metadata") if isinstance(params.get("metadata"), dict) else {}
        customer = self.create_customer(request.stripe_account, email=params.get("email") or None,
                                        metadata=metadata, name=params.get("name") or None)
        return json_response(customer)

    def _api_retrieve_customer(self, request: Request, customer_id: str) -> Response:
        customer = self._customers.get(request.stripe_account, {}).get(customer_id)
        if customer is None:
            raise _missing("customer", customer_id)
        return json_response(customer)

    # ------------------------------------------------ products and subscriptions

    def _api_create_product(self, request: Request) -> Response:
        params = request.params
        _refuse_unknown(params, ("name", "metadata", "id", "description", "active", "expand"))
        name = params.get("name")
        if not name or not isinstance(name, str):
            raise SandboxError(400, "Missing required param: name.", code="parameter_missing", param="name")
        metadata = _form_metadata(params.get("metadata"), {})
        product_id = params.get("id") or None
        if product_id and any(product_id in products for products in self._products.values()):
            raise SandboxError(400, "Product already exists.", code="resource_already_exists", param="id")
        product = self.create_product(request.stripe_account, name=name, metadata=metadata, id=product_id)
        fields: Dict[str, Any] = {}
        if isinstance(params.get("description"), str):
            fields["description"] = params["description"] or None
        if "active" in params:
            fields["active"] = _form_bool(params["active"], "active")
        if fields:
            product = self.update_product(request.stripe_account, product["id"], **fields)
        return json_response(product)

    def _api_retrieve_product(self, request: Request, product_id: str) -> Response:
        product = self._products.get(request.stripe_account, {}).get(product_id)
        if product is None:
            raise _missing("product", product_id)
        return json_response(product)

    def _scoped_subscription(self, request: Request, subscription_id: str) -> Dict[str, Any]:
        subscription = self._subscriptions.get(request.stripe_account, {}).get(subscription_id)
        if subscription is None:
            raise _missing("subscription", subscription_id)
        return subscription

    def _expand_subscription(self, scope: Optional[str], subscription: Dict[str, Any], paths: List[str],
                             prefix: str = "") -> Dict[str, Any]:
        _check_expandable(paths, prefix)
        view = copy.deepcopy(subscription)
        # Like Stripe, an answer embeds the first items only; the rest are
        # listed at /v1/subscription_items.
        items = view["items"]
        items["has_more"] = len(items["data"]) > EMBEDDED_ITEMS
        items["data"] = items["data"][:EMBEDDED_ITEMS]
        if "customer" in paths:
            customer = self._customers.get(scope, {}).get(view["customer"])
            if customer is not None:
                view["customer"] = copy.deepcopy(customer)
        if "items.data.price.product" in paths:
            for item in view["items"]["data"]:
                product = self._products.get(scope, {}).get(item["price"]["product"])
                if product is not None:
                    item["price"]["product"] = copy.deepcopy(product)
        return view

    def _api_retrieve_subscription(self, request: Request, subscription_id: str) -> Response:
        subscription = self._scoped_subscription(request, subscription_id)
        return json_response(self._expand_subscription(request.stripe_account, subscription,
                                                       _expansions(request.query)))

    def _api_list_subscriptions(self, request: Request) -> Response:
        params = request.query
        paths = []
        for path in _expansions(params):
            if not path.startswith("data."):
                raise SandboxError(400, "This property cannot be expanded (%s). You may want to try expanding "
                                   "'data.%s' instead." % (path, path))
            paths.append(path[len("data."):])
        _check_expandable(paths, "data.")
        subscriptions = list(reversed(list(self._subscriptions.get(request.stripe_account, {}).values())))
        status = params.get("status")
        if status is None:
            subscriptions = [s for s in subscriptions if s["status"] != "canceled"]
        elif status not in _LIST_STATUSES:
            raise SandboxError(400, "Invalid status: must be one of %s, or %s" % (
                ", ".join(sorted(_LIST_STATUSES)[:-1]), sorted(_LIST_STATUSES)[-1]), param="status")
        elif status == "ended":
            subscriptions = [s for s in subscriptions if s["status"] in ("canceled", "incomplete_expired")]
        elif status != "all":
            subscriptions = [s for s in subscriptions if s["status"] == status]
        if params.get("customer"):
            subscriptions = [s for s in subscriptions if s["customer"] == params["customer"]]
        if params.get("price"):
            subscriptions = [s for s in subscriptions
                             if any(i["price"]["id"] == params["price"] for i in s["items"]["data"])]
        subscriptions = [s for s in subscriptions if _created_matches(s["created"], params.get("created"))]
        page = _page(subscriptions, params, "/v1/subscriptions", "subscription")
        page["data"] = [self._expand_subscription(request.stripe_account, s, paths, "data.") for s in page["data"]]
        return json_response(page)

    def _api_list_subscription_items(self, request: Request) -> Response:
        params = request.query
        _refuse_unknown(params, ("subscription", "limit", "starting_after", "ending_before", "expand"))
        if not params.get("subscription"):
            raise SandboxError(400, "Missing required param: subscription.", code="parameter_missing",
                               param="subscription")
        subscription = self._scoped_subscription(request, params["subscription"])
        paths = _expansions(params)
        for path in paths:
            if path != "data.price.product":
                raise SandboxError(400, "This property cannot be expanded (%s)." % path)
        page = _page(subscription["items"]["data"], params,
                     "/v1/subscription_items", "subscription_item")
        page["data"] = copy.deepcopy(page["data"])
        if paths:
            for item in page["data"]:
                product = self._products.get(request.stripe_account, {}).get(item["price"]["product"])
                if product is not None:
                    item["price"]["product"] = copy.deepcopy(product)
        return json_response(page)

    def _api_update_subscription(self, request: Request, subscription_id: str) -> Response:
        subscription = self._scoped_subscription(request, subscription_id)
        params = request.params
        # Accepted and without effect here: there are no invoices to prorate.
        _refuse_unknown(params, ("cancel_at_period_end", "cancel_at", "metadata", "expand", "proration_behavior",
                                 "proration_date", "cancellation_details"))
        paths = _expansions(params)
        _check_expandable(paths)
        changes: Dict[str, Any] = {}
        if "cancel_at_period_end" in params:
            changes["cancel_at_period_end"] = _form_bool(params["cancel_at_period_end"], "cancel_at_period_end")
        if "cancel_at" in params:
            value = params["cancel_at"]
            if value == "":
                changes["cancel_at"] = None
            elif value == "min_period_end":
                changes["cancel_at"] = min(i["current_period_end"] for i in subscription["items"]["data"])
            elif value == "max_period_end":
                changes["cancel_at"] = _period_end(subscription)
            else:
                changes["cancel_at"] = _form_int(value, "cancel_at")
        if "metadata" in params:
            changes["metadata"] = _form_metadata(params["metadata"], subscription["metadata"])
        if subscription["status"] == "canceled" and set(changes) - {"metadata"}:
            raise SandboxError(400, "A canceled subscription can only update its cancellation_details and "
                               "metadata.")
        updated = self._update_subscription(request.stripe_account, subscription_id, changes, request=request)
        return json_response(self._expand_subscription(request.stripe_account, updated, paths))

    def _api_cancel_subscription(self, request: Request, subscription_id: str) -> Response:
        subscription = self._scoped_subscription(request, subscription_id)
        _refuse_unknown(request.params, ("expand", "invoice_now", "prorate", "cancellation_details"))
        paths = _expansions(request.params)
        _check_expandable(paths)
        if subscription["status"] == "canceled":
            # Stripe treats a canceled subscription as gone for this call.
            raise _missing("subscription", subscription_id)
        canceled = self._cancel_subscription(request.stripe_account, subscription_id, request=request)
        return json_response(self._expand_subscription(request.stripe_account, canceled, paths))

    # -------------------------------------------------------- billing portal

    def _api_list_portal_configurations(self, request: Request) -> Response:
        params = request.query
        configurations = list(reversed(list(self._portal_configurations.get(request.stripe_account, {}).values())))
        if params.get("active") in ("true", "false"):
            configurations = [c for c in configurations if c["active"] == (params["active"] == "true")]
        return json_response(_page(copy.deepcopy(configurations), params, "/v1/billing_portal/configurations",
                                   "billing_portal.configuration"))

    def _api_create_portal_configuration(self, request: Request) -> Response:
        params = _booleans(request.params)
        if not isinstance(params.get("features"), dict):
            raise SandboxError(400, "Missing required param: features.", code="parameter_missing", param="features")
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

    # ------------------------------------------------------------- dashboard

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


def _item_list(subscription_id: str, items: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"object": "list", "data": items, "has_more": False, "total_count": len(items),
            "url": "/v1/subscription_items?subscription=%s" % subscription_id}


def _period_end(subscription: Dict[str, Any]) -> int:
    """The latest current_period_end of the subscription's items."""
    return max((item["current_period_end"] for item in subscription["items"]["data"]), default=0)


def _merge_metadata(current: Dict[str, str], updates: Dict[str, Any]) -> Dict[str, str]:
    """Stripe's metadata update: keys merge in, an empty value deletes its key."""
    merged = dict(current)
    for key, value in updates.items():
        if value is None or value == "":
            merged.pop(str(key), None)
        else:
            merged[str(key)] = str(value)
    return merged


def _previous_attributes(before: Dict[str, Any], after: Dict[str, Any]) -> Dict[str, Any]:
    """An update event's previous_attributes: the old value of each changed
    top-level field; for metadata only the changed keys (null where a key was new)."""
    previous: Dict[str, Any] = {}
    for key, value in after.items():
        old = before.get(key)
        if old == value:
            continue
        if key == "metadata":
            old = old or {}
            previous[key] = {k: old.get(k) for k in sorted(set(old) | set(value)) if old.get(k) != value.get(k)}
        else:
            previous[key] = copy.deepcopy(old)
    return previous


def _utc(timestamp: Optional[int]) -> str:
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _expansions(params: Dict[str, Any]) -> List[str]:
    """The expand paths of a request: expand[0]=a&expand[1]=b, expand[]=a or expand=a."""
    value = params.get("expand")
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise SandboxError(400, "Invalid array", param="expand")


def _check_expandable(paths: List[str], prefix: str = "") -> None:
    for path in paths:
        if path not in _SUBSCRIPTION_EXPANDABLE:
            raise SandboxError(400, "This property cannot be expanded (%s)." % (prefix + path))


def _refuse_unknown(params: Dict[str, Any], known: Tuple[str, ...]) -> None:
    for name in params:
        if name not in known:
            raise SandboxError(400, "Received unknown parameter: %s" % name, code="parameter_unknown", param=name)


def _form_bool(value: Any, param: str) -> bool:
    if value in ("true", "false"):
        return value == "true"
    raise SandboxError(400, "Invalid boolean: %s" % value, param=param)


def _form_int(value: Any, param: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    raise SandboxError(400, "Invalid integer: %s" % value, param=param)


def _form_metadata(value: Any, current: Dict[str, str]) -> Dict[str, str]:
    """The metadata param as changes for _merge_metadata: metadata="" unsets every key."""
    if value is None:
        return {}
    if value == "":
        return {key: "" for key in current}
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return value
    raise SandboxError(400, "Invalid hash", param="metadata")


def _created_matches(created: int, condition: Any) -> bool:
    if condition is None:
        return True
    if not isinstance(condition, dict):
        return str(created) == str(condition)
    checks = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b,
              "lte": lambda a, b: a <= b}
    for name, bound in condition.items():
        if name in checks and str(bound).lstrip("-").isdigit() and not checks[name](created, int(bound)):
            return False
    return True


def _page(items: List[Dict[str, Any]], params: Dict[str, Any], url: str, kind: str) -> Dict[str, Any]:
    """One page of a newest-first list, Stripe's cursor pagination."""
    try:
        limit = int(params.get("limit") or DEFAULT_PAGE_LIMIT)
    except (TypeError, ValueError):
        raise SandboxError(400, "Invalid integer: %s" % params.get("limit"), param="limit") from None
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise SandboxError(400, "This value must be between 1 and 100 (it currently is %d)." % limit,
                           param="limit")
    ids = [item["id"] for item in items]
    if params.get("starting_after"):
        if params["starting_after"] not in ids:
            raise _missing(kind, params["starting_after"], "starting_after")
        items = items[ids.index(params["starting_after"]) + 1:]
    elif params.get("ending_before"):
        if params["ending_before"] not in ids:
            raise _missing(kind, params["ending_before"], "ending_before")
        before = items[:ids.index(params["ending_before"])]
        return {"object": "list", "data": before[-limit:], "has_more": len(before) > limit, "url": url}
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}


def _error_page(message: str, status: int = 400) -> Response:
    return html_response("Stripe sandbox \u2014 error", "<h1>Something is wrong</h1><p>%s</p>"
                         % html.escape(message), status)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>%(title)s</title>
<style>
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, sans-serif; background: #f6f9fc; color: #30313d; margin: 0; }
main { max-width: 640px; margin: 40px auto; background: #fff; padding: 28px 32px; border-radius: 8px;
       box-shadow: 0 2px 8px rgba(50, 50, 93, .12); }
main:has(table.wide) { max-width: 1100px; } h3 { font-size: 15px; margin-bottom: 4px; }
.banner { background: #635bff; color: #fff; padding: 8px 16px; font-size: 13px; }
h1 { font-size: 22px; margin-top: 0; } h2 { font-size: 17px; }
fieldset { border: 1px solid #e3e8ee; border-radius: 6px; margin: 16px 0; padding: 12px 16px; }
legend { font-weight: 600; padding: 0 4px; }
label { display: block; margin: 8px 0; } label.choice { display: flex; gap: 10px; align-items: flex-start; }
input[type=text], input[type=email], input:not([type]) { padding: 6px 8px; border: 1px solid #c9d1db;
       border-radius: 4px; width: 60%%; }
button, .button { padding: 8px 16px; border-radius: 4px; border: 1px solid #c9d1db; background: #fff;
       cursor: pointer; font-size: 14px; text-decoration: none; color: inherit; }
.primary { background: #635bff; border-color: #635bff; color: #fff; }
.actions { display: flex; gap: 12px; margin-top: 20px; }
.muted { color: #6a7383; font-size: 13px; } .tag { color: #0e6245; font-size: 12px; }
table { border-collapse: collapse; width: 100%%; } td, th { text-align: left; padding: 8px 6px;
       border-bottom: 1px solid #e3e8ee; vertical-align: top; } td form { margin: 0 0 6px; }
code { font-size: 12px; color: #6a7383; }
</style></head>
<body><div class="banner">Stripe sandbox &middot; test data only</div><main>%(body)s</main></body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    sandbox: StripeSandbox
    protocol_version = "HTTP/1.1"
    server_version = "StripeSandbox/1.0"
    # Headers and body go out in two writes; with Nagle on, a keep-alive
    # client waits for its delayed ACK (~40 ms) on every request.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        query = parse_form(parts.query)
        params = parse_form(raw) if self.command == "POST" else dict(query)
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Request(self.command, parts.path or "/", query, params, headers)
        try:
            response = self.sandbox.handle(request)
        except Exception as exc:  # answer like Stripe's own outage rather than drop the connection
            print("stripe-sandbox: %s %s failed: %r" % (self.command, parts.path, exc), file=sys.stderr)
            response = stripe_error(500, "Sandbox internal error", type="api_error")
            response.headers["Request-Id"] = request.request_id
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client stopped waiting (its timeout, during a delay): as at
            # Stripe, the request was carried out and nobody hears the answer.
            self.close_connection = True

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if self.sandbox.log_requests:
            # The path only: queries carry codes and emails, and headers the key.
            sys.stderr.write("stripe-sandbox: %s %s %s\n" % (self.command, urlsplit(self.path).path, code))

    def log_message(self, format: str, *args: Any) -> None:
        if self.sandbox.log_requests:
            sys.stderr.write("stripe-sandbox: %s\n" % (format % args))


def main(argv: Optional[List[str]] = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m local.stripe_sandbox",
                                     description="A local stand-in for Stripe's API and Connect OAuth.")
    parser.add_argument("--host", default=env("STRIPE_SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("STRIPE_SANDBOX_PORT", "12111")))
    parser.add_argument("--secret-key", default=env("STRIPE_SANDBOX_SECRET_KEY", "sk_test_sandbox"))
    parser.add_argument("--client-id", default=env("STRIPE_SANDBOX_CLIENT_ID", "ca_sandbox"))
    parser.add_argument("--webhook-url", default=env("STRIPE_SANDBOX_WEBHOOK_URL"))
    parser.add_argument("--webhook-secret", default=env("STRIPE_SANDBOX_WEBHOOK_SECRET"))
    parser.add_argument("--platform-name", default=env("STRIPE_SANDBOX_PLATFORM_NAME", "CustomerHub"))
    parser.add_argument("--seed-account", action="append", default=[], metavar="DISPLAY_NAME",
                        help="create a test account with this display name (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    if bool(args.webhook_url) != bool(args.webhook_secret):
        parser.error("--webhook-url and --webhook-secret go together")

    sandbox = StripeSandbox(secret_key=args.secret_key, client_id=args.client_id, host=args.host,
                            port=args.port, webhook_url=args.webhook_url, webhook_secret=args.webhook_secret,
                            platform_name=args.platform_name, log_requests=not args.quiet)
    for name in args.seed_account:
        sandbox.create_account(display_name=name, business_name=name)
    sandbox.start()
    print("Stripe sandbox listening on %s (client_id %s%s)" % (
        sandbox.url, args.client_id, ", webhooks to %s" % args.webhook_url if args.webhook_url else ""),
        flush=True)
    try:
        sandbox.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
