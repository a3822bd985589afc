"""What the sandbox's own tests share: its clock held still, the real
stripe-python client pointed at it, and a webhook endpoint on loopback."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe

from tests import helpers

NOW = 1_900_000_000  # 2030-03-17


@pytest.fixture
def clock(sandbox, monkeypatch):
    """The sandbox's clock, frozen at NOW; move it with clock[0] += seconds."""
    now = [NOW]
    monkeypatch.setattr(sandbox, "clock", lambda: now[0])
    return now


@pytest.fixture
def stripe_client(sandbox):
    return stripe.StripeClient(helpers.SECRET_KEY, client_id=helpers.CLIENT_ID,
                               base_addresses={"api": sandbox.url, "connect": sandbox.url},
                               max_network_retries=0)


class Receiver:
    """A webhook endpoint on loopback that answers 200 and keeps each raw
    body with its Stripe-Signature header."""

    def __init__(self):
        self.received = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                received.append((body, self.headers["Stripe-Signature"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/webhooks/stripe" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def ids(self):
        return [json.loads(body)["id"] for body, _ in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()
