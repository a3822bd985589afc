"""Events and webhooks: recording events, /v1/events, and delivering each
event, signed with the endpoint's secret, to every webhook endpoint that
listens for it (webhook_endpoints.py)."""
import copy
import hashlib
import hmac
import json
import re
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional

from local.stripe_sandbox.wire import (API_VERSION, Request, Response, _created_matches, _missing, _page, _random_id,
                                       json_response)

WEBHOOK_TIMEOUT_SECONDS = 5
# What a delivery attempt made while webhooks are held records.
HELD_DELIVERY_ERROR = "endpoint unreachable (webhooks held)"
# Where an event stands with each endpoint it is for. "disabled" and
# "deleted": it was not sent, as the endpoint was (no attempt is recorded,
# as at Stripe), and it stays undelivered.
DELIVERY_STATES = ("queued", "delivered", "failed", "disabled", "deleted")


def sign_payload(payload: str, secret: str, timestamp: Optional[int] = None) -> str:
    """A Stripe-Signature header value for payload, Stripe's own scheme."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = ("%d.%s" % (timestamp, payload)).encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (timestamp, digest)


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


class Events:
    """The event log and webhook delivery."""

    @property
    def events(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [self._event_view(e) for e in self._events]

    def events_after(self, count: int) -> List[Dict[str, Any]]:
        """The events recorded after the first `count`, oldest first: what
        happened since a caller last looked, without copying all of them."""
        with self._lock:
            return [self._event_view(e) for e in self._events[count:]]

    def hold_webhooks(self, held: bool = True) -> None:
        """While held, every webhook delivery fails as if the endpoint were
        down: the attempt is recorded, failed, and the event stays
        undelivered, so ``/v1/events?delivery_success=false`` lists it.
        Released, events recorded from then on are delivered again. A held
        event is never delivered later: Stripe would retry it for up to
        three days, but the sandbox does not simulate Stripe's retries, so
        only a catch-up that lists undelivered events gets it to the API."""
        with self._lock:
            self._webhooks_held = bool(held)

    @property
    def webhooks_held(self) -> bool:
        with self._lock:
            return self._webhooks_held

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

    def _event_view(self, event: Dict[str, Any]) -> Dict[str, Any]:
        view = copy.deepcopy(event)
        view["pending_webhooks"] = self._pending_webhooks(event["id"])
        return view

    def _pending_webhooks(self, event_id: str) -> int:
        """The endpoints the event has not yet reached, which is also what
        `delivery_success=false` lists. One recorded while the sandbox had no
        endpoint counts as one never sent, so a catch-up finds it."""
        states = self._event_webhooks.get(event_id)
        if states is None:
            return 1
        return sum(1 for state in states.values() if state != "delivered")

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
            "created": int(self.now()),
            "livemode": livemode,
            "account": account_id,
            "type": type,
            "data": data,
            "pending_webhooks": 1,
            "request": {"id": request.request_id if request else None,
                        "idempotency_key": request.idempotency_key if request else None},
        }
        self._events.append(event)
        endpoints = self._endpoints_listening(event)
        if endpoints is None:
            self._event_webhooks[event["id"]] = None
            return event
        states = self._event_webhooks[event["id"]] = {}
        for endpoint in endpoints:
            if endpoint["status"] == "disabled":
                states[endpoint["id"]] = "disabled"
                continue
            states[endpoint["id"]] = "queued"
            self._undelivered += 1
            self._deliveries.put((copy.deepcopy(event), endpoint["id"]))
        return event

    def _deliver_loop(self) -> None:
        while True:
            delivery = self._deliveries.get()
            if delivery is None:
                return
            event, endpoint_id = delivery
            try:
                state = self._deliver(event, endpoint_id)
                with self._lock:
                    states = self._event_webhooks.get(event["id"])
                    # A reset meanwhile forgot the event.
                    if states is not None and endpoint_id in states:
                        states[endpoint_id] = state
            finally:
                with self._delivered:
                    self._undelivered -= 1
                    self._delivered.notify_all()

    def _deliver(self, event: Dict[str, Any], endpoint_id: str) -> str:
        """Sends the event to the endpoint; its delivery state after."""
        with self._lock:
            endpoint = self._webhook_endpoints.get(endpoint_id)
            # Disabled or deleted since the event was recorded: Stripe sends
            # nothing to it, and records no attempt.
            if endpoint is None or endpoint["status"] == "disabled":
                return "deleted" if endpoint is None else "disabled"
            url, secret = endpoint["url"], endpoint["secret"]
            # Signed by the sandbox's clock, which the endpoint's shares in
            # the local stack: its tolerance compares the two.
            signed_at = int(self.now())
        if self.webhooks_held:
            print("stripe-sandbox: webhook %s for %s held: not sent" % (event["type"], event["id"]),
                  file=sys.stderr)
            self._note_delivery(event["id"], endpoint_id, error=HELD_DELIVERY_ERROR)
            return "failed"
        payload = json.dumps(event, indent=2)
        header = sign_payload(payload, secret, signed_at)
        request = urllib.request.Request(
            url, data=payload.encode("utf-8"), method="POST",
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
            self._note_delivery(event["id"], endpoint_id, error=str(exc) or type(exc).__name__)
            return "failed"
        self._note_delivery(event["id"], endpoint_id, status=status)
        if not 200 <= status < 300:
            print("stripe-sandbox: webhook %s for %s answered %d" % (event["type"], event["id"], status),
                  file=sys.stderr)
            return "failed"
        return "delivered"

    def delivery_attempts(self, event_id: str) -> List[Dict[str, Any]]:
        """Each attempt to deliver the event: when, to which endpoint, and
        the endpoint's status code or the error that kept it from answering."""
        with self._lock:
            return copy.deepcopy(self._delivery_attempts.get(event_id, []))

    def delivery_states(self, event_id: str) -> Optional[Dict[str, str]]:
        """Where the event stands with each endpoint it is for, by endpoint id
        (DELIVERY_STATES); None when the sandbox had no endpoint to send it to."""
        with self._lock:
            return copy.deepcopy(self._event_webhooks.get(event_id))

    def _note_delivery(self, event_id: str, endpoint_id: str, status: Optional[int] = None,
                       error: Optional[str] = None) -> None:
        with self._lock:
            self._delivery_attempts.setdefault(event_id, []).append(
                {"at": int(self.now()), "webhook_endpoint": endpoint_id, "status": status, "error": error})

    # API

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
