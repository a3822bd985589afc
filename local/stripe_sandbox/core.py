"""The sandbox's state: what it is configured with, its lock, every store
of objects (by account), and the helpers that scope an object to an account."""
import queue
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

from local.stripe_sandbox.oauth import _Code
from local.stripe_sandbox.faults import Delay, Failure
from local.stripe_sandbox.wire import Response


_PLATFORM = None  # the scope key for objects that belong to the platform itself


class SandboxCore:
    """The state every part of the sandbox shares, and its reset."""

    def __init__(self, secret_key: str = "sk_test_sandbox", client_id: str = "ca_sandbox",
                 host: str = "127.0.0.1", port: int = 0, webhook_url: Optional[str] = None,
                 webhook_secret: Optional[str] = None, platform_name: str = "CustomerHub",
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 log_requests: bool = False):
        self.secret_key = secret_key
        self.client_id = client_id
        self.host = host
        self.port = port
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.platform_name = platform_name
        # The machine's time as the sandbox sees it; replaceable so tests can
        # hold it still. The sandbox's own time, `now()`, is this plus the
        # offset its clock has been moved ahead by (clock.py).
        self.clock = clock
        # How the sandbox waits out its latency (add_latency): on `clock`'s time.
        self.sleep = sleep
        self._latency = 0.0
        self._rate_limiter = None
        self._rate_limited = 0
        self.log_requests = log_requests
        # Where a person lands after Stripe's redirect to a redirect_uri that
        # only bounces them on (the authorize page says so), by redirect_uri.
        self.redirect_landings: Dict[str, str] = {}
        self.url = ""
        self._lock = threading.RLock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._deliveries: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        self._delivery_thread: Optional[threading.Thread] = None
        self._undelivered = 0
        # Requests waiting out a delay, by the generation they arrived in.
        self._holding: Dict[int, int] = {}
        self._delivered = threading.Condition(self._lock)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            # A delayed request that outlives a reset is not carried out in the new world.
            self._generation = getattr(self, "_generation", 0) + 1
            # The clock back at the machine's time (clock.py).
            self._clock_offset = 0
            self._held_at: Optional[float] = None
            self._last_advance: Optional[Dict[str, Any]] = None
            self._accounts: Dict[str, Dict[str, Any]] = {}
            self._connected: Dict[str, float] = {}
            self._codes: Dict[str, _Code] = {}
            self._failures: List[Failure] = []
            self._before_answer: List[Tuple[str, str, Callable[[], Any]]] = []
            self._delays: List[Delay] = []
            self._requests: List[Dict[str, Any]] = []
            self._events: List[Dict[str, Any]] = []
            # Where each event stands with each endpoint it is for (events.py).
            self._event_webhooks: Dict[str, Optional[Dict[str, str]]] = {}
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
            self._invoices: Dict[Optional[str], Dict[str, Dict[str, Any]]] = {}
            # How many invoices each (scope, customer) has had: the next number.
            self._invoice_counts: Dict[Tuple[Optional[str], str], int] = {}
            self._payment_methods: Dict[Optional[str], Dict[str, Dict[str, Any]]] = {}
            # Each webhook delivery attempt's answer, by event id.
            self._delivery_attempts: Dict[str, List[Dict[str, Any]]] = {}
            # While held, every delivery fails as if the endpoint were down (events.py).
            self._webhooks_held = False
            # What each pre-load made, by account (preload.py).
            self._preloads: Dict[str, List[Dict[str, Any]]] = {}
            # The endpoint webhook_url names, enabled, and none made through the API.
            self._reset_webhook_endpoints()

    def _scope(self, account_id: Optional[str]) -> Optional[str]:
        if account_id is not None:
            self._account_or_raise(account_id)
        return account_id

    def _livemode(self, scope: Optional[str]) -> bool:
        return bool(self._accounts.get(scope, {}).get("_livemode", False)) if scope else False
