"""Deliveries to POST /webhooks/stripe from a few concurrent senders, each
signed at the moment it is sent, as Stripe signs (the sandbox's secret, a
fresh timestamp), and resent like Stripe resends when the answer is a 5xx or
none at all."""
import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import requests
import stripe

FIRST = "first"          # the event's first delivery
LATE = "late"            # a first delivery held back from phase 1 to phase 2
DUPLICATE = "duplicate"  # the same event again, soon after
STALE = "stale"          # a phase 1 event delivered again during phase 2
RETRY = "retry"          # sent again after a 5xx or no answer
DUPLICATES = (DUPLICATE, STALE)


@dataclass
class Delivery:
    event: Dict[str, Any]
    kind: str
    attempt: int = 1


@dataclass(frozen=True)
class Sent:
    event_id: str
    kind: str
    status: Optional[int]  # None: no answer (refused, reset, timed out)
    seconds: float


class Senders:
    def __init__(self, url: str, secret: str, threads: int = 8, attempts: int = 3, timeout: float = 60.0):
        self._url = url
        self._secret = secret
        self._threads = [threading.Thread(target=self._loop, name="soak-sender-%d" % i, daemon=True)
                         for i in range(threads)]
        self._attempts = attempts
        self._timeout = timeout
        self._queue: "queue.Queue[Optional[Delivery]]" = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._unfinished = 0
        self._stopping = threading.Event()
        self.sent: List[Sent] = []

    def start(self) -> "Senders":
        for thread in self._threads:
            thread.start()
        return self

    def submit(self, deliveries: List[Delivery]) -> None:
        with self._lock:
            self._unfinished += len(deliveries)
        for delivery in deliveries:
            self._queue.put(delivery)

    def deliver_now(self, event: Dict[str, Any], kind: str) -> Optional[int]:
        """Deliver from the calling thread, now, ahead of what is queued."""
        with requests.Session() as session:
            status, seconds = self._send(session, event)
        with self._lock:
            self.sent.append(Sent(event["id"], kind, status, seconds))
        return status

    def backlog(self) -> int:
        with self._lock:
            return self._unfinished

    def wait(self, timeout: float = 600.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._unfinished:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    def stop(self) -> None:
        """Stop after the deliveries in flight; what is still queued is dropped."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=self._timeout + 5)

    def _loop(self) -> None:
        session = requests.Session()
        while True:
            delivery = self._queue.get()
            if delivery is None or self._stopping.is_set():
                return
            status, seconds = self._send(session, delivery.event)
            again = (status is None or status >= 500) and delivery.attempt < self._attempts
            with self._lock:
                self.sent.append(Sent(delivery.event["id"], delivery.kind, status, seconds))
                if again:
                    # Behind what is queued, as Stripe's retry comes later.
                    self._unfinished += 1
                    self._queue.put(Delivery(delivery.event, RETRY, delivery.attempt + 1))
                self._unfinished -= 1
                if not self._unfinished:
                    self._idle.notify_all()

    def _send(self, session: requests.Session, event: Dict[str, Any]):
        payload = json.dumps(event, indent=2)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(payload, self._secret),
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
        started = time.perf_counter()
        try:
            answer = session.post(self._url, data=payload.encode("utf-8"), headers=headers, timeout=self._timeout)
            return answer.status_code, time.perf_counter() - started
        except requests.RequestException:
            session.close()
            return None, time.perf_counter() - started
