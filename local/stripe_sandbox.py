"""A local stand-in for Stripe that speaks its wire format.

The real stripe-python client talks to it unchanged through
``base_addresses={"api": url, "connect": url}``: form-encoded requests with
Stripe's nested keys, JSON objects with ``object`` and ``id``, Stripe's error
bodies (and the OAuth ones on ``/oauth/*``), ``Request-Id`` headers,
idempotent replays of POSTs and ``Stripe-Should-Retry`` on injected failures,
so the client's own retries and exception classes are exercised.

Tests start it in-process on a free port; the local stack runs it with
``python -m local.stripe_sandbox`` and a person uses its pages in a browser
(the Connect authorize page, a small dashboard at ``/`` and portal pages).

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
    _route("GET", r"/p/session/" + _ID, "_page_portal_session", "page"),
    _route("GET", r"/", "_page_dashboard", "page"),
    _route("POST", r"/dashboard/accounts/" + _ID + r"/revoke", "_page_dashboard_revoke", "page"),
    _route("POST", r"/dashboard/accounts/" + _ID + r"/update", "_page_dashboard_update", "page"),
    _route("POST", r"/dashboard/accounts/" + _ID + r"/customers", "_page_dashboard_customer", "page"),
]

_PLATFORM = None  # the scope key for objects that belong to the platform itself


@dataclass
class _Failure:
    method: str
    path: str
    status: int
    error: Dict[str, Any]
    remaining: int
    should_retry: Optional[bool]


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
            self._accounts: Dict[str, Dict[str, Any]] = {}
            self._connected: Dict[str, float] = {}
            self._codes: Dict[str, _Code] = {}
            self._failures: List[_Failure] = []
            self._requests: List[Dict[str, Any]] = []
            self._events: List[Dict[str, Any]] = []
            self._event_delivered: Dict[str, bool] = {}
            self._idempotent: Dict[Tuple[Optional[str], str], Tuple[str, str, Dict[str, Any], Response]] = {}
            # Objects living on an account, by scope (account id, or None for the platform).
            self._customers: Dict[Optional[str], Dict[str, Dict[str, Any]]] = {}
            self._portal_configurations: Dict[Optional[str], Dict[str, Dict[str, Any]]] = {}
            self._portal_sessions: Dict[str, Dict[str, Any]] = {}

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
                  times: int = 1, should_retry: Optional[bool] = None) -> None:
        """The next `times` requests to method + path answer `status`.

        5xx and 409 answers carry ``Stripe-Should-Retry: true`` unless
        should_retry says otherwise, so the client's retries are exercised.
        On /oauth/* keep `error["error"]` to one of Stripe's OAuth codes
        (invalid_request, invalid_grant, invalid_client, ...): stripe-python
        fails with an AttributeError on any other string."""
        with self._lock:
            self._failures.append(_Failure(method.upper(), path, status, dict(error or {}), times, should_retry))

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
            response = self._dispatch(request)
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
            error = {"type": "api_error", "message": "Sandbox failure"}
            error.update(failure.error)
            response = json_response({"error": error}, failure.status)
        retry = failure.should_retry
        if retry is None:
            retry = failure.status >= 500 or failure.status == 409
        response.headers["Stripe-Should-Retry"] = "true" if retry else "false"
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
        customers = list(reversed(list(self._customers.get(request.stripe_account, {}).values())))
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
        if customer_id not in self._customers.get(request.stripe_account, {}):
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
                '<h2>What this portal allows</h2><ul>%s</ul><p class="muted">%s</p>%s' % (
                    html.escape(_display_name(account) if account else self.platform_name),
                    html.escape(customer.get("email") or ""), html.escape(session["customer"]),
                    items or "<li>nothing</li>", links, back))
        return html_response("Stripe sandbox \u2014 billing portal", body)

    # ------------------------------------------------------------- dashboard

    def _page_dashboard(self, request: Request) -> Response:
        rows = []
        for account_id in self._accounts:
            account = self._account_view(account_id)
            connected = account_id in self._connected
            customers = self._customers.get(account_id, {})
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
        body = ('<h1>Stripe sandbox</h1><p class="muted">Platform %s <code>%s</code> &middot; %d events</p>%s' % (
            html.escape(self.platform_name), html.escape(self.client_id), len(self._events), table))
        return html_response("Stripe sandbox", body)

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
        self.create_customer(account_id, email=(request.params.get("email") or "").strip() or None)
        return redirect("/")


def _display_name(account: Dict[str, Any]) -> str:
    return ((account.get("settings") or {}).get("dashboard", {}).get("display_name")
            or (account.get("business_profile") or {}).get("name") or account.get("email") or account["id"])


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
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

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
