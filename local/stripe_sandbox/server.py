"""The HTTP side: the route table, the request handler, dispatch (API keys,
Stripe-Account, idempotent replays) and the injected failures and delays."""
import copy
import hmac
import html
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar
from urllib.parse import urlsplit

from local.hosts import CROSS_SITE_REFUSAL, REFUSAL, addressed_here, listens_on_ipv6_loopback, sent_from_here
from local.stripe_sandbox.params import check_request, load_typed_dicts
from local.stripe_sandbox.events import WEBHOOK_TIMEOUT_SECONDS
from local.stripe_sandbox.faults import Delay, Failure
from local.stripe_sandbox.wire import (API_VERSION, Request, Response, SandboxError, html_response, json_response,
                                       mask_key, oauth_error, parse_form, stripe_error)

# A method that answers the sandbox itself (Server is one of its parts).
S = TypeVar("S", bound="Server")


# Who may call a route: "api" needs the secret key and honours Stripe-Account,
# "oauth" needs the secret key, is the platform's own (no Stripe-Account) and
# answers OAuth-style errors, "page" is for a browser and needs nothing. The
# params of every api and oauth request are checked (params.py) before its
# handler runs.
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
    _route("GET", r"/v1/webhook_endpoints", "_api_list_webhook_endpoints", "api"),
    _route("POST", r"/v1/webhook_endpoints", "_api_create_webhook_endpoint", "api"),
    _route("GET", r"/v1/webhook_endpoints/" + _ID, "_api_retrieve_webhook_endpoint", "api"),
    _route("POST", r"/v1/webhook_endpoints/" + _ID, "_api_update_webhook_endpoint", "api"),
    _route("DELETE", r"/v1/webhook_endpoints/" + _ID, "_api_delete_webhook_endpoint", "api"),
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
    _route("GET", r"/v1/invoices", "_api_list_invoices", "api"),
    _route("GET", r"/v1/invoices/" + _ID, "_api_retrieve_invoice", "api"),
    _route("GET", r"/p/session/" + _ID, "_page_portal_session", "page"),
    _route("GET", r"/p/session/" + _ID + r"/subscriptions/" + _ID + r"/cancel", "_page_portal_cancel_confirm",
           "page"),
    _route("POST", r"/p/session/" + _ID + r"/subscriptions/" + _ID + r"/(cancel|keep)",
           "_page_portal_subscription", "page"),
    _route("GET", r"/p/session/" + _ID + r"/payment_method", "_page_portal_payment_method", "page"),
    _route("POST", r"/p/session/" + _ID + r"/payment_method", "_page_portal_save_card", "page"),
    _route("GET", r"/", "_page_dashboard", "page"),
    _route("GET", r"/dashboard/clock", "_page_dashboard_clock", "page"),
    _route("POST", r"/dashboard/clock/advance", "_page_dashboard_clock_advance", "page"),
    _route("GET", r"/dashboard/events", "_page_dashboard_events", "page"),
    _route("GET", r"/dashboard/events/" + _ID, "_page_dashboard_event", "page"),
    _route("GET", r"/dashboard/accounts/" + _ID + r"/revoke", "_page_dashboard_revoke_confirm", "page"),
    _route("POST", r"/dashboard/accounts/" + _ID + r"/revoke", "_page_dashboard_revoke", "page"),
    _route("POST", r"/dashboard/accounts/" + _ID + r"/update", "_page_dashboard_update", "page"),
    _route("POST", r"/dashboard/accounts/" + _ID + r"/customers", "_page_dashboard_customer", "page"),
    _route("POST", r"/dashboard/accounts/" + _ID + r"/subscriptions", "_page_dashboard_subscription", "page"),
    _route("POST", r"/dashboard/accounts/" + _ID + r"/preload", "_page_dashboard_preload", "page"),
    _route("POST", r"/dashboard/webhooks/([a-z_]+)", "_page_dashboard_webhooks", "page"),
    _route("POST", r"/dashboard/webhook_endpoints/" + _ID + r"/([a-z_]+)", "_page_dashboard_webhook_endpoint",
           "page"),
    _route("POST", r"/dashboard/subscriptions/" + _ID + r"/([a-z_]+)", "_page_dashboard_subscription_action",
           "page"),
]


# What Stripe's rate limiter allows by default: in test mode 25 requests a
# second per account, in live mode 100 (docs.stripe.com/rate-limits).
TEST_MODE_PER_SECOND = 25
LIVE_MODE_PER_SECOND = 100
RATE_LIMITED_MESSAGE = ("Request rate limit exceeded. Learn more about rate limits here "
                        "https://stripe.com/docs/rate-limits.")


class RateLimiter:
    """Stripe's rate limits over the sandbox's clock: at most `per_account`
    API requests in any second made for one account (a connected account's,
    by Stripe-Account, or the platform's own), and `in_all` for all of them
    together. A refused request is not counted against either."""

    def __init__(self, per_account: int, in_all: int):
        if per_account < 1 or in_all < 1:
            raise ValueError("A rate limit allows at least one request a second")
        self.per_account = per_account
        self.in_all = in_all
        self._arrivals: Dict[Optional[str], "deque[float]"] = {}
        self._all: "deque[float]" = deque()

    def admits(self, account: Optional[str], now: float) -> bool:
        window = self._arrivals.setdefault(account, deque())
        for arrivals in (window, self._all):
            while arrivals and arrivals[0] <= now - 1:
                arrivals.popleft()
        if len(window) >= self.per_account or len(self._all) >= self.in_all:
            return False
        window.append(now)
        self._all.append(now)
        return True


class Server:
    """Serving HTTP, dispatching requests to the handlers, and what tests inject."""

    # running

    def start(self: S) -> S:
        sandbox = self

        class Handler(_Handler):
            pass

        Handler.sandbox = sandbox
        load_typed_dicts()
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

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # what tests inject and read back

    def fail_next(self, method: str, path: str, status: int = 500, error: Optional[Dict[str, Any]] = None,
                  times: int = 1, should_retry: Optional[bool] = None,
                  retry_after: Optional[int] = None, rate_limited_reason: Optional[str] = None) -> None:
        """The next `times` requests to method + path answer `status`.

        5xx and 409 answers carry ``Stripe-Should-Retry: true`` unless
        should_retry says otherwise, so the client's retries are exercised;
        every other status carries ``false`` unless should_retry is True.
        A 429 is Stripe's rate limit error (code ``rate_limit``); with
        `retry_after` it also carries ``Retry-After`` (seconds), and with
        `rate_limited_reason` (``global-rate``, ``endpoint-concurrency``, ...)
        ``Stripe-Rate-Limited-Reason``, as the refusals of Stripe's rate
        limiter do. Without it a 429 is what Stripe answers for other
        things, such as a lock timeout (pass error={"code": "lock_timeout"}).
        On /oauth/* keep `error["error"]` to one of Stripe's OAuth codes
        (invalid_request, invalid_grant, invalid_client, ...): stripe-python
        fails with an AttributeError on any other string."""
        with self._lock:
            self._failures.append(Failure(method.upper(), path, status, dict(error or {}), times, should_retry,
                                           retry_after, rate_limited_reason))

    def delay_next(self, method: str, path: str, seconds: float, times: int = 1) -> None:
        """The next `times` requests to method + path wait `seconds` before
        they are handled and answered, as a Stripe that hangs would; other
        requests go on meanwhile. A client that gave up waiting has still
        made the request: it is recorded when it arrives and carried out
        after the wait."""
        with self._lock:
            self._delays.append(Delay(method.upper(), path, seconds, times))

    def limit_rates(self, per_account: int = TEST_MODE_PER_SECOND, in_all: int = LIVE_MODE_PER_SECOND) -> None:
        """Answer API requests beyond Stripe's rate limits (per account, and
        for all accounts together, in any second by the sandbox's clock) as
        Stripe's limiter does: 429, code ``rate_limit``, with
        ``Stripe-Rate-Limited-Reason: global-rate``. Off until called."""
        with self._lock:
            self._rate_limiter = RateLimiter(per_account, in_all)

    def add_latency(self, seconds: float) -> None:
        """Every request takes `seconds` more to answer, half on the way in
        (before it is counted and carried out), half on the way out, waited
        with the sandbox's `sleep`: the network and Stripe's own time."""
        if not seconds >= 0:
            raise ValueError("A latency is zero or more seconds")
        with self._lock:
            self._latency = seconds

    @property
    def rate_limited(self) -> int:
        """Requests answered 429 by the rate limiter so far."""
        with self._lock:
            return self._rate_limited

    @property
    def request_count(self) -> int:
        """Requests received so far (cheaper than `len(requests)`)."""
        with self._lock:
            return len(self._requests)

    def request_times(self) -> List[float]:
        """When each request was counted, by the sandbox's clock."""
        with self._lock:
            return [r["at"] for r in self._requests]

    def before_answering_next(self, method: str, path: str, action: Callable[[], Any]) -> None:
        """Run `action` once, after the next request to method + path has
        taken effect and before it is answered: what happens when Stripe's
        webhook about a change reaches the API before the answer to the
        request that made it."""
        with self._lock:
            self._before_answer.append((method.upper(), path, action))

    @property
    def requests(self) -> List[Dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._requests)

    @property
    def held_requests(self) -> int:
        """Requests that arrived and are still waiting out a `delay_next`: a
        client that has its answer while one is held gave up on it."""
        with self._lock:
            return self._holding.get(self._generation, 0)

    def requests_to(self, method: str, path_prefix: str) -> List[Dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method.upper() and r["path"].startswith(path_prefix)]

    # dispatch

    def handle(self, request: Request) -> Response:
        latency = self._latency
        if latency:
            self.sleep(latency / 2)
        with self._lock:
            self._requests.append({
                # When it arrived, by the machine's clock (not the sandbox's
                # own, which tests may hold still): how fast a client asks.
                "received_at": time.time(),
                # And by the sandbox's clock: what its rate limits count.
                "at": self.now(),
                "method": request.method, "path": request.path, "query": copy.deepcopy(request.query),
                "params": copy.deepcopy(request.params), "headers": dict(request.headers),
                "stripe_account": request.stripe_account,
            })
            delay = self._take_delay(request)
            generation = self._generation
        if delay:
            # Without the lock: the other requests, and the test's own calls,
            # are not held up by one that hangs.
            with self._lock:
                self._holding[generation] = self._holding.get(generation, 0) + 1
            try:
                time.sleep(delay)
            finally:
                with self._lock:
                    self._holding[generation] -= 1
        with self._lock:
            if generation != self._generation:
                response = stripe_error(500, "The sandbox was reset while this request waited", type="api_error")
            elif self._refused_by_rate_limit(request):
                self._rate_limited += 1
                response = stripe_error(429, RATE_LIMITED_MESSAGE, code="rate_limit")
                response.headers["Stripe-Rate-Limited-Reason"] = "global-rate"
            else:
                response = self._dispatch(request)
            actions = [hook for hook in self._before_answer if hook[:2] == (request.method, request.path)]
            for hook in actions:
                self._before_answer.remove(hook)
        for _, _, action in actions:
            action()
        response.headers.setdefault("Request-Id", request.request_id)
        response.headers.setdefault("Stripe-Version", API_VERSION)
        if latency:
            self.sleep(latency / 2)
        return response

    def _refused_by_rate_limit(self, request: Request) -> bool:
        if self._rate_limiter is None or not request.path.startswith("/v1/"):
            return False
        return not self._rate_limiter.admits(request.stripe_account, self.now())

    def _dispatch(self, request: Request) -> Response:
        route, args = self._match(request)
        kind = route.kind if route else ("api" if request.path.startswith("/v1/") else "page")
        failure = self._take_failure(request)
        if failure is not None:
            return failure
        if route is None:
            if kind == "page" and not request.path.startswith("/oauth/"):
                return html_response("Not found", "<h1>Not found</h1><p>Nothing lives at %s.</p>"
                                     '<p><a class="button primary" href="/">Go to the sandbox dashboard</a></p>'
                                     % html.escape(request.path), 404)
            return stripe_error(404, "Unrecognized request URL (%s: %s). Please see https://stripe.com/docs "
                                "or we can help at https://support.stripe.com/." % (request.method, request.path))
        if kind == "page" and request.method == "POST" and not sent_from_here(request.headers.get("origin"),
                                                                              request.headers.get("host")):
            # The dashboard moves money and time, the portal cancels, the
            # authorize page connects: none of it for another site's form.
            return html_response("Refused", "<h1>Refused</h1><p>%s</p>" % html.escape(CROSS_SITE_REFUSAL), 403)
        if kind in ("api", "oauth"):
            refused = self._check_key(request, kind)
            if refused is not None:
                return refused
        if kind == "api" and request.stripe_account and request.stripe_account not in self._connected:
            return stripe_error(403, "The provided key '%s' does not have access to account '%s' (or that "
                                "account does not exist). Application access may have been revoked."
                                % (mask_key(self.secret_key), request.stripe_account), code="account_invalid")
        if kind == "oauth" and request.stripe_account:
            # Stripe documents no answer for this; the platform alone connects
            # and disconnects accounts, so the sandbox refuses a request made
            # as a connected account, in the OAuth endpoints' own error shape.
            return oauth_error(400, "invalid_request", "The Stripe-Account header cannot be used with %s: OAuth "
                               "requests are made by the platform itself." % request.path)
        if kind in ("api", "oauth"):
            # Before the idempotency store: Stripe saves no result for a
            # request whose params failed validation.
            refused = check_request(route.handler, kind, request)
            if refused is not None:
                return refused
        replay_key = None
        if request.method == "POST" and kind != "page" and request.idempotency_key:
            replay_key = (request.stripe_account, request.idempotency_key)
            stored = self._idempotent.get(replay_key)
            if stored is not None:
                method, path, params, response = stored
                if (method, path, params) != (request.method, request.path, request.params):
                    if kind == "oauth":
                        return oauth_error(400, "invalid_request", "Keys for idempotent requests can only be "
                                           "used with the same parameters they were first used with.")
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
        if failure.rate_limited_reason is not None:
            response.headers["Stripe-Rate-Limited-Reason"] = failure.rate_limited_reason
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


class _Handler(BaseHTTPRequestHandler):
    # The StripeSandbox (sandbox.py) this server is part of.
    sandbox: Any
    protocol_version = "HTTP/1.1"
    server_version = "StripeSandbox/1.0"
    # Headers and body go out in two writes; with Nagle on, a keep-alive
    # client waits for its delayed ACK (~40 ms) on every request.
    disable_nagle_algorithm = True

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if addressed_here(self.headers.get_all("Host") or [], ipv6=listens_on_ipv6_loopback(self.sandbox.host)):
            return True
        # Another name pointed at loopback (DNS rebinding): nothing is done,
        # nothing recorded, and the body is not read.
        path = urlsplit(self.path).path
        if path.startswith("/v1/"):
            response = stripe_error(421, REFUSAL)
        elif path in ("/oauth/token", "/oauth/deauthorize"):
            response = oauth_error(421, "invalid_request", REFUSAL)
        else:
            response = Response(421, REFUSAL.encode(), {"Content-Type": "text/plain; charset=utf-8"})
        response.headers["Connection"] = "close"
        self.close_connection = True
        self._write(response)
        return False

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
        self._write(response)

    def _write(self, response: Response) -> None:
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
