"""python -m infra.register_webhook against a small stand-in of Stripe's
webhook endpoints API on loopback (the Stripe sandbox has no endpoints),
through stripe-python as in use."""
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.stripe_gateway import API_VERSION
from chalicelib.webhooks import HANDLED_EVENTS
from infra import register_webhook
from infra.project import stage_environment

URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/api/webhooks/stripe"


def listed(form, name):
    """A list param as stripe-python encodes it: name[0]=…&name[1]=…"""
    found = {int(key[len(name) + 1:-1]): values[0] for key, values in form.items()
             if key.startswith(name + "[") and key[len(name) + 1:-1].isdigit()}
    return [found[index] for index in sorted(found)]


class FakeEndpoints:
    """Stripe's /v1/webhook_endpoints: list, create, update; every request kept."""

    def __init__(self):
        self.endpoints = []
        self.requests = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, **fields):
        endpoint = {"id": "we_%d" % (len(self.endpoints) + 1), "object": "webhook_endpoint", "status": "enabled",
                    "api_version": API_VERSION, "metadata": {}, "enabled_events": ["*"], "livemode": False,
                    "created": 1, "description": None, "application": None, "secret": None}
        endpoint.update(fields)
        self.endpoints.append(endpoint)
        return endpoint

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, body, status=200):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                parts = urlsplit(self.path)
                fake.requests.append(("GET", parts.path, parse_qs(parts.query), dict(self.headers)))
                self._answer({"object": "list", "url": "/v1/webhook_endpoints", "has_more": False,
                              "data": [dict(e, secret=None) for e in fake.endpoints]})

            def do_POST(self):
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                fake.requests.append(("POST", self.path, form, dict(self.headers)))
                if self.path == "/v1/webhook_endpoints":
                    endpoint = fake.add(url=form["url"][0], api_version=form["api_version"][0],
                                        enabled_events=listed(form, "enabled_events"),
                                        metadata={"customerhub_stripe_connector":
                                                  form["metadata[customerhub_stripe_connector]"][0]},
                                        secret="whsec_new_endpoint_secret")
                    return self._answer(endpoint)
                endpoint = next(e for e in fake.endpoints if self.path == "/v1/webhook_endpoints/" + e["id"])
                endpoint["enabled_events"] = listed(form, "enabled_events")
                return self._answer(dict(endpoint, secret=None))

        return Handler


@pytest.fixture
def stripe_endpoints(monkeypatch):
    fake = FakeEndpoints()
    monkeypatch.setenv("STRIPE_API_BASE", fake.url)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_platform_key_for_tests")
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def run(*args):
    out = io.StringIO()
    assert register_webhook.main(list(args), out=out) == 0
    return out.getvalue()


def test_a_first_run_creates_a_connect_endpoint_with_the_pinned_version_and_exactly_the_handled_events(
        stripe_endpoints):
    printed = run("--stage", "dev", "--url", URL)
    method, path, form, headers = stripe_endpoints.requests[-1]
    assert (method, path) == ("POST", "/v1/webhook_endpoints")
    assert form["url"] == [URL]
    assert form["connect"] == ["true"]
    assert form["api_version"] == [API_VERSION]
    assert sorted(listed(form, "enabled_events")) == sorted(HANDLED_EVENTS)
    assert form["metadata[customerhub_stripe_connector]"] == ["dev"]
    assert headers["Stripe-Version"] == API_VERSION
    secret_parameter = stage_environment("dev")["STRIPE_WEBHOOK_SECRET_PARAM"]
    assert secret_parameter in printed
    assert "whsec_new_endpoint_secret" in printed


def test_a_second_run_updates_the_same_endpoint_and_prints_no_secret(stripe_endpoints):
    stripe_endpoints.add(url=URL, metadata={"customerhub_stripe_connector": "dev"}, enabled_events=["account.updated"])
    printed = run("--stage", "dev", "--url", URL)
    method, path, form, _ = stripe_endpoints.requests[-1]
    assert (method, path) == ("POST", "/v1/webhook_endpoints/we_1")
    assert sorted(listed(form, "enabled_events")) == sorted(HANDLED_EVENTS)
    assert form["disabled"] == ["false"]
    assert "connect" not in form and "api_version" not in form
    assert len(stripe_endpoints.endpoints) == 1
    assert "whsec_" not in printed
    assert stage_environment("dev")["STRIPE_WEBHOOK_SECRET_PARAM"] in printed


def test_an_endpoint_of_an_older_api_version_is_replaced_by_a_new_one_and_left_for_the_operator(stripe_endpoints):
    stripe_endpoints.add(url=URL, metadata={"customerhub_stripe_connector": "dev"}, api_version="2020-08-27")
    printed = run("--stage", "dev", "--url", URL)
    assert [e["api_version"] for e in stripe_endpoints.endpoints] == ["2020-08-27", API_VERSION]
    assert "Then delete we_1" in printed


def test_an_endpoint_with_the_url_made_by_someone_else_or_another_stage_is_left_alone(stripe_endpoints):
    stripe_endpoints.add(url=URL)
    stripe_endpoints.add(url=URL, metadata={"customerhub_stripe_connector": "prod"})
    printed = run("--stage", "dev", "--url", URL)
    assert [request[1] for request in stripe_endpoints.requests if request[0] == "POST"] == ["/v1/webhook_endpoints"]
    assert "Left alone: we_1" in printed and "Left alone: we_2" in printed


@pytest.mark.parametrize("url", ["http://abc.example/api/webhooks/stripe", "https://abc.example/api/other",
                                 "https://abc.example/api/webhooks/stripe?x=1"])
def test_a_url_that_is_not_the_https_webhook_route_is_refused_before_stripe_is_asked(stripe_endpoints, url):
    with pytest.raises(SystemExit):
        register_webhook.main(["--stage", "dev", "--url", url], out=io.StringIO())
    assert stripe_endpoints.requests == []


def test_an_unknown_stage_is_refused(stripe_endpoints):
    with pytest.raises(SystemExit):
        register_webhook.main(["--stage", "staging", "--url", URL], out=io.StringIO())
    assert stripe_endpoints.requests == []


def test_without_a_key_in_the_environment_the_stage_parameter_is_read(monkeypatch):
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    read = []
    key = register_webhook.platform_key(stage_environment("prod"), lambda name: read.append(name) or "sk_live_x")
    assert key == "sk_live_x"
    assert read == [stage_environment("prod")["STRIPE_SECRET_KEY_PARAM"]]
