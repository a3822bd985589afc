"""The local stack's servers under the load and the malformed requests a
real client can send: the API answers every connection of a burst, each for
its own caller, a request it cannot read with the contract's JSON, HEAD and
OPTIONS as API Gateway would, and the embedded AWS stays consistent under
concurrent requests."""
import http.client
import json
import selectors
import socket
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager

import boto3
import botocore.config
import pytest

from app import app, stripe_events
from chalicelib import models, services
from chalicelib.models import WebhookEventModel
from chalicelib.queues import EVENTS_QUEUE
from chalicelib.settings import get_settings
from local.api_server import make_server
from local.queues import QueuePump, create_event_queues
from tests.helpers import APP_BASE_URL, bearer, signed, stripe_event

NO_RETRIES = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1},
                                    max_pool_connections=64)


@contextmanager
def frequent_thread_switches():
    # Races between threads show in a few hundred requests, not in thousands.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def run_together(count, work):
    """Run work(i) for i in range(count), in threads released at once."""
    start = threading.Barrier(count)
    outcomes = [None] * count

    def run(i):
        start.wait()
        try:
            outcomes[i] = work(i)
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


@pytest.fixture
def local_aws(embedded_aws, monkeypatch):
    """The connector's tables and events queue on the embedded AWS, as `make
    run` has them."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", embedded_aws.url)
    services.reset()
    settings = get_settings()
    models.bind(settings)
    models.create_tables()
    create_event_queues(sqs_client(settings))
    return embedded_aws


def sqs_client(settings):
    return boto3.client("sqs", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url)


class LocalAPI:
    """The API as `make run` serves it, on a free port."""

    def __init__(self):
        self.server = make_server(app, "127.0.0.1", 0)
        self.address = self.server.server.server_address
        self._serving = False

    def serve(self) -> None:
        threading.Thread(target=self.server.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self._serving = True

    def stop(self) -> None:
        if self._serving:
            self.server.shutdown()
        self.server.server.server_close()


@pytest.fixture
def local_api(local_aws, sandbox):
    api = LocalAPI()
    yield api
    api.stop()


@pytest.fixture
def api(local_api):
    local_api.serve()
    return local_api.address


def connection(address):
    return http.client.HTTPConnection(*address, timeout=30)


def exchange(address, raw: bytes) -> bytes:
    """Send raw bytes, read the answer to its end: the server's close."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return answer
            answer += chunk


def parse(answer: bytes):
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("iso-8859-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


# A burst of connections

def test_a_burst_of_thirty_connections_is_queued_until_the_server_accepts_them(local_api):
    # None is accepted until the server runs: every connection must wait in
    # the listen backlog rather than be dropped or reset by the kernel.
    address = local_api.address
    selector = selectors.DefaultSelector()
    sockets = []
    for _ in range(30):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(address)
        selector.register(sock, selectors.EVENT_WRITE)
        sockets.append(sock)
    connected = set()
    deadline = time.monotonic() + 0.5
    while len(connected) < len(sockets) and time.monotonic() < deadline:
        for key, _ in selector.select(deadline - time.monotonic()):
            selector.unregister(key.fileobj)
            connected.add(key.fileobj)
    selector.close()
    try:
        assert len(connected) == 30
        local_api.serve()
        for sock in sockets:
            sock.setblocking(True)
            sock.settimeout(10)
            sock.sendall(b"GET /no/such/route HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        statuses = [int(sock.makefile("rb").readline().split()[1]) for sock in sockets]
        assert statuses == [404] * 30
    finally:
        for sock in sockets:
            sock.close()


def test_thirty_webhook_deliveries_at_once_are_all_answered_queued_and_then_recorded(api):
    events = [stripe_event("account.updated", "acct_burst%02d" % i, {"id": "acct_burst%02d" % i},
                           event_id="evt_burst_%d_%02d" % (time.time_ns(), i)) for i in range(30)]

    def deliver(i):
        payload, headers = signed(events[i])
        client = connection(api)
        client.request("POST", "/webhooks/stripe", body=payload, headers=headers)
        response = client.getresponse()
        return response.status, json.loads(response.read())

    outcomes = run_together(30, deliver)

    assert outcomes == [(200, {"received": True})] * 30
    pump = QueuePump(sqs_client(get_settings()), stripe_events, queue_name=EVENTS_QUEUE, retry_after=0)
    assert pump.drain() == {"handled": 30, "failed": 0}
    recorded = {event.event_id for event in WebhookEventModel.batch_get([e["id"] for e in events])}
    assert recorded == {e["id"] for e in events}


def test_callers_served_at_once_are_each_answered_as_themselves(api):
    # An admin's malformed body is a 400 after the role check; a member is
    # refused first with a 403. Served from another caller's request, an
    # admin would read 403 and a member, worse, would pass as an admin.
    def calls(i):
        role = "admin" if i % 2 else "member"
        client = connection(api)
        answers = Counter()
        for _ in range(40):
            client.request("POST", "/connectors/stripe/connect", body=b"{not json",
                           headers={**bearer(role=role, sub="user_%d" % i),
                                    "Content-Type": "application/json"})
            response = client.getresponse()
            answers[(role, response.status, json.loads(response.read())["error"]["code"])] += 1
        return answers

    with frequent_thread_switches():
        outcomes = run_together(30, calls)

    assert sum(outcomes, Counter()) == {("admin", 400, "invalid_request"): 600,
                                        ("member", 403, "forbidden"): 600}


# Requests http.server cannot read

UNREADABLE = [
    ("a request line over 64 KiB",
     b"GET /connectors/stripe?do-not-echo=" + b"a" * 70000 + b" HTTP/1.1\r\nHost: api\r\n\r\n",
     414, "uri_too_long"),
    ("a header line over 64 KiB",
     b"GET /connectors/stripe HTTP/1.1\r\nHost: api\r\nX-Do-Not-Echo: " + b"a" * 70000 + b"\r\n\r\n",
     431, "request_header_fields_too_large"),
    ("150 headers",
     b"GET /connectors/stripe HTTP/1.1\r\nHost: api\r\n"
     + b"".join(b"X-Do-Not-Echo-%d: yes\r\n" % i for i in range(150)) + b"\r\n",
     431, "request_header_fields_too_large"),
    ("a request line of one word", b"DO-NOT-ECHO\r\n\r\n", 400, "invalid_request"),
    ("a request line of four words",
     b"GET /connectors/stripe HTTP/1.1 do-not-echo\r\nHost: api\r\n\r\n", 400, "invalid_request"),
    ("a request line without a version", b"GET /connectors/stripe?do-not-echo\r\n\r\n",
     400, "invalid_request"),
    ("a version that is not a number", b"GET /do-not-echo HTTP/one\r\nHost: api\r\n\r\n",
     400, "invalid_request"),
    ("HTTP/2 in plain text", b"GET /do-not-echo HTTP/2.0\r\nHost: api\r\n\r\n",
     505, "http_version_not_supported"),
    ("an unknown method", b"DO-NOT-ECHO /connectors/stripe HTTP/1.1\r\nHost: api\r\n\r\n",
     405, "method_not_allowed"),
    ("a Content-Length that is not a number",
     b"POST /webhooks/stripe HTTP/1.1\r\nHost: api\r\nContent-Length: do-not-echo\r\n\r\n{}",
     400, "invalid_request"),
    ("two different Content-Lengths",
     b"POST /webhooks/stripe HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\nContent-Length: 12\r\n\r\n"
     b"{}do-not-echo", 400, "invalid_request"),
    ("a Content-Length over 10 MiB, its body not sent",
     b"POST /webhooks/stripe HTTP/1.1\r\nHost: api\r\nContent-Length: 10485761\r\n\r\n",
     413, "payload_too_large"),
]


@pytest.mark.parametrize("request_bytes,status,code",
                         [case[1:] for case in UNREADABLE], ids=[case[0] for case in UNREADABLE])
def test_a_request_that_cannot_be_read_is_answered_with_the_contract_error_and_closed(
        api, request_bytes, status, code):
    answer = exchange(api, request_bytes)
    answer_status, headers, body = parse(answer)

    assert answer_status == status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    error = json.loads(body)
    assert set(error) == {"error"} and error["error"]["code"] == code and error["error"]["message"]
    assert b"do-not-echo" not in answer.lower()


# HEAD

def test_head_answers_the_get_headers_without_a_body_on_a_kept_alive_connection(api):
    client = connection(api)
    client.request("GET", "/connectors/stripe", headers=bearer())
    get = client.getresponse()
    get_body = get.read()

    for path, status in (("/connectors/stripe", 200), ("/no/such/route", 404), ("/webhooks/stripe", 405)):
        client.request("HEAD", path, headers=bearer())
        head = client.getresponse()
        assert head.read() == b""
        assert head.status == status
        if status == 200:
            assert head.getheader("Content-Length") == str(len(get_body))
            assert head.getheader("Content-Type") == get.getheader("Content-Type")
    # The next answer on the same connection starts where it should.
    client.request("GET", "/connectors/stripe", headers=bearer())
    after = client.getresponse()
    assert after.status == 200
    assert json.loads(after.read()) == json.loads(get_body)


@pytest.mark.parametrize("method", ["TRACE", "QUERY", "PROPFIND"])
def test_any_other_method_reads_its_body_and_answers_405_with_the_routes_allow(api, method):
    client = connection(api)
    client.request(method, "/billing/portal/sessions", body=b'{"return_url": ""}',
                   headers={"Content-Type": "application/json"})
    refused = client.getresponse()
    body = json.loads(refused.read())
    # The body was read: the next request on the same connection is answered as itself.
    client.request("GET", "/connectors/stripe", headers=bearer())
    after = client.getresponse()
    after.read()

    assert refused.status == 405
    assert body["error"]["code"] == "method_not_allowed"
    assert "POST" in refused.getheader("Allow")
    assert after.status == 200


# OPTIONS

def test_a_preflight_to_the_webhook_gets_no_cors_headers(api):
    client = connection(api)
    client.request("OPTIONS", "/webhooks/stripe", headers={
        "Origin": APP_BASE_URL, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,stripe-signature"})
    response = client.getresponse()
    body = response.read()

    assert response.status == 405
    assert json.loads(body)["error"]["code"] == "method_not_allowed"
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]


def test_a_preflight_to_a_ui_route_still_allows_the_ui(api):
    client = connection(api)
    client.request("OPTIONS", "/connectors/stripe", headers={
        "Origin": APP_BASE_URL, "Access-Control-Request-Method": "DELETE"})
    response = client.getresponse()
    response.read()

    assert response.status == 204
    assert response.getheader("Access-Control-Allow-Origin") == APP_BASE_URL
    assert "DELETE" in response.getheader("Access-Control-Allow-Methods")


def test_the_callback_path_preflights_the_ui_post_and_its_get_bounce_answers_no_cors(api):
    client = connection(api)
    client.request("OPTIONS", "/connectors/stripe/oauth/callback", headers={
        "Origin": APP_BASE_URL, "Access-Control-Request-Method": "POST"})
    preflight = client.getresponse()
    preflight.read()
    client.request("GET", "/connectors/stripe/oauth/callback?code=ac_1&state=s", headers={"Origin": APP_BASE_URL})
    bounce = client.getresponse()
    bounce.read()

    assert preflight.status == 204
    assert "POST" in preflight.getheader("Access-Control-Allow-Methods")
    assert bounce.status == 302
    assert not [name for name in bounce.headers if name.lower().startswith("access-control-")]


# The OAuth callback's bounce

@pytest.mark.parametrize("query", [
    "error=access_denied&error_description=The%20user%20denied%20your%20request&state=abc",
    "error=access_denied&error_description=The+user+denied&state=abc",
    "state=b&code=ac_1&scope=read_write&state=a",
    "code=ac_%41%42&state=%7Eok",
])
def test_the_get_callback_bounces_the_query_byte_for_byte(api, query):
    client = connection(api)
    client.request("GET", "/connectors/stripe/oauth/callback?" + query)
    response = client.getresponse()
    response.read()

    assert response.status == 302
    assert response.getheader("Location") == APP_BASE_URL + "/settings/connectors/stripe/callback?" + query
    assert response.getheader("Referrer-Policy") == "no-referrer"


@pytest.mark.parametrize("sent, bounced", [
    ("code=a%20b&u=\u00fc", "code=a%20b&u=%C3%BC"),
    ("state=s&x=\u00fc&code=ac_1&x=%C3%BC", "state=s&x=%C3%BC&code=ac_1&x=%C3%BC"),
])
def test_bytes_a_url_cannot_hold_are_bounced_percent_encoded_and_the_rest_as_sent(api, sent, bounced):
    # As a client that sends raw UTF-8 in the request line: what a browser
    # would have encoded, encoded; nothing decoded, regrouped or re-encoded.
    answer = exchange(api, b"GET /connectors/stripe/oauth/callback?" + sent.encode("utf-8")
                      + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    status, headers, _ = parse(answer)

    assert status == 302
    assert headers["location"] == APP_BASE_URL + "/settings/connectors/stripe/callback?" + bounced


# The embedded AWS

def test_the_embedded_aws_keeps_concurrent_transactions_and_writes_apart(embedded_aws):
    dynamodb = boto3.client("dynamodb", endpoint_url=embedded_aws.url, region_name="us-east-1",
                            config=NO_RETRIES)
    run = "race%d" % time.time_ns()
    for table in (run + "-a", run + "-b"):
        dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    for i in range(100):
        dynamodb.put_item(TableName=run + "-b", Item={"pk": {"S": "before%d" % i}})

    def writes(worker):
        client = boto3.client("dynamodb", endpoint_url=embedded_aws.url, region_name="us-east-1",
                              config=NO_RETRIES)
        for i in range(12):
            key = {"pk": {"S": "w%d-%d" % (worker, i)}}
            if i % 2:
                client.put_item(TableName=run + "-a", Item=key)
            else:
                client.transact_write_items(TransactItems=[
                    {"Put": {"TableName": run + "-a", "Item": key,
                             "ConditionExpression": "attribute_not_exists(pk)"}},
                    {"Put": {"TableName": run + "-b", "Item": key}}])

    with frequent_thread_switches():
        outcomes = run_together(16, writes)

    assert outcomes == [None] * 16
    count = lambda table: dynamodb.scan(TableName=table, Select="COUNT")["Count"]  # noqa: E731
    assert (count(run + "-a"), count(run + "-b")) == (16 * 12, 100 + 16 * 6)
