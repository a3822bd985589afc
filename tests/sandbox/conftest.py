"""What the sandbox's own tests share: its clock held still, the real
stripe-python client pointed at it, and a webhook endpoint on loopback."""
import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator

import pytest
import stripe

from local.stripe_sandbox import StripeSandbox
from tests import helpers

NOW = 1_900_000_000  # 2030-03-17


@pytest.fixture
def clock(sandbox, monkeypatch):
    """The sandbox's clock, frozen at NOW; move it with clock[0] += seconds."""
    now = [NOW]
    monkeypatch.setattr(sandbox, "clock", lambda: now[0])
    return now


def client_of(sandbox) -> stripe.StripeClient:
    return stripe.StripeClient(helpers.SECRET_KEY, client_id=helpers.CLIENT_ID,
                               base_addresses={"api": sandbox.url, "connect": sandbox.url},
                               max_network_retries=0)


@pytest.fixture
def stripe_client(sandbox):
    return client_of(sandbox)


@contextmanager
def studio_sending_to(receiver: "Receiver", webhook_secret: str, **options: Any) -> Iterator[Dict[str, Any]]:
    """A sandbox of its own sending its webhooks to `receiver`, with an
    account connected through OAuth, a member and a product, the webhooks of
    their making delivered; `options` go to the sandbox (its clock, say)."""
    with StripeSandbox(secret_key=helpers.SECRET_KEY, client_id=helpers.CLIENT_ID, webhook_url=receiver.url,
                       webhook_secret=webhook_secret, **options) as sandbox:
        client = client_of(sandbox)
        account = sandbox.create_account(display_name="Local Fitness Studio")["id"]
        client.oauth.token({"grant_type": "authorization_code", "code": sandbox.issue_code(account)})
        customer = sandbox.create_customer(account, email="member@localfitness.test")["id"]
        product = sandbox.create_product(account, name="Yoga")["id"]
        assert sandbox.wait_for_webhooks()
        yield {"sandbox": sandbox, "client": client, "account": account, "customer": customer,
               "product": product, "opts": {"stripe_account": account}, "receiver": receiver}


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
