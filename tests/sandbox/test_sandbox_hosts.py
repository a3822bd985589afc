"""The sandbox answers only requests addressed to localhost or 127.0.0.1: a
page of another site that points its own name at loopback (DNS rebinding)
reads nothing and does nothing, whatever path, method or key it sends."""
import html
import http.client
from urllib.parse import urlsplit

import pytest
import requests

from tests import helpers

FORGED = ["evil.example", "127.0.0.1.evil.example", "localhost.evil.example:3000", "evil.example:12111",
          "localhost.", "127.0.0.2", "[::1]", "", "localhost:port"]
KEY = {"Authorization": "Bearer " + helpers.SECRET_KEY}


def port_of(sandbox):
    return urlsplit(sandbox.url).port


@pytest.mark.parametrize("host", FORGED)
def test_an_api_request_under_another_name_is_421_in_stripes_shape_and_nothing_is_done(sandbox, host):
    answer = requests.post(sandbox.url + "/v1/customers", data={"email": "x@evil.example"},
                           headers=dict(KEY, Host=host), timeout=10)
    assert answer.status_code == 421
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and "localhost or 127.0.0.1" in error["message"]
    assert answer.headers["Connection"] == "close"
    assert sandbox.requests == [] and sandbox.customers(None) == []


def test_an_oauth_request_under_another_name_is_refused_in_the_oauth_shape(sandbox):
    account = sandbox.create_account()["id"]
    code = sandbox.issue_code(account)
    answer = requests.post(sandbox.url + "/oauth/token", data={"grant_type": "authorization_code", "code": code},
                           headers=dict(KEY, Host="localhost.evil.example"), timeout=10)
    assert answer.status_code == 421 and answer.json()["error"] == "invalid_request"
    assert not sandbox.is_connected(account)


@pytest.mark.parametrize("method, path", [
    ("GET", "/"), ("GET", "/dashboard/clock"), ("POST", "/dashboard/clock/advance"),
    ("GET", "/oauth/authorize"), ("POST", "/dashboard/webhooks/hold"), ("HEAD", "/"), ("PUT", "/")])
def test_a_page_or_control_under_another_name_is_a_short_plain_421_and_changes_nothing(sandbox, method, path):
    answer = requests.request(method, sandbox.url + path, data={"days": "31"}, timeout=10,
                              headers={"Host": "evil.example:%d" % port_of(sandbox)})
    assert answer.status_code == 421
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    if method != "HEAD":
        assert answer.text.startswith("This server answers only requests addressed to localhost or 127.0.0.1")
    assert sandbox.clock_offset == 0 and not sandbox.webhooks_held and sandbox.requests == []


def test_two_host_headers_are_refused_even_when_one_is_local(sandbox):
    connection = http.client.HTTPConnection("127.0.0.1", port_of(sandbox), timeout=10)
    connection.putrequest("GET", "/v1/customers", skip_host=True)
    connection.putheader("Host", "127.0.0.1:%d" % port_of(sandbox))
    connection.putheader("Host", "evil.example")
    connection.putheader("Authorization", KEY["Authorization"])
    connection.endheaders()
    assert connection.getresponse().status == 421
    connection.close()


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "127.0.0.1",
                                  "localhost"])
def test_the_names_of_this_machine_are_answered(sandbox, host):
    answer = requests.get(sandbox.url + "/v1/customers", timeout=10,
                          headers=dict(KEY, Host=host.format(port=port_of(sandbox))))
    assert answer.status_code == 200 and answer.json()["object"] == "list"


# A page of another site can post a form to the sandbox under loopback's own
# name (the Host check passes); the browser then says where the form was.
CROSS_SITE = ["http://evil.example", "null", "http://localhost:3000", "https://127.0.0.1:{port}",
              "http://127.0.0.1:{port}/dashboard", "http://127.0.0.1.evil.example:{port}"]


@pytest.mark.parametrize("origin", CROSS_SITE)
def test_a_form_posted_from_another_page_is_refused_and_changes_nothing(sandbox, origin):
    account = sandbox.create_account(id="acct_forms")["id"]
    requests.post(sandbox.url + "/oauth/token", data={"grant_type": "authorization_code",
                                                      "code": sandbox.issue_code(account)}, headers=KEY, timeout=10)
    assert sandbox.is_connected(account)
    sandbox.create_product(account, id="prod_yoga")
    customer = sandbox.create_customer(account, id="cus_ana")["id"]
    subscription = sandbox.create_subscription(account, customer, ["prod_yoga"], id="sub_ana")["id"]
    origin = origin.format(port=port_of(sandbox))
    host = "127.0.0.1:%d" % port_of(sandbox)
    for path, data in [("/dashboard/clock/advance", {"days": "31"}), ("/dashboard/webhooks/hold", {}),
                       ("/dashboard/subscriptions/%s/cancel_at_period_end" % subscription, {}),
                       ("/dashboard/accounts/%s/revoke" % account, {})]:
        answer = requests.post(sandbox.url + path, data=data, timeout=10, allow_redirects=False,
                               headers={"Origin": origin, "Host": host})
        assert answer.status_code == 403, (path, answer.status_code)
        assert "sent from another page than this server's own: nothing was done" in html.unescape(answer.text)
    assert sandbox.clock_offset == 0 and not sandbox.webhooks_held
    assert sandbox.subscription(account, subscription)["cancel_at_period_end"] is False
    assert sandbox.is_connected(account)


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}"])
def test_a_form_posted_from_the_sandboxs_own_page_is_carried_out(sandbox, host):
    host = host.format(port=port_of(sandbox))
    answer = requests.post(sandbox.url + "/dashboard/webhooks/hold", timeout=10, allow_redirects=False,
                           headers={"Origin": "http://" + host.upper(), "Host": host})
    assert answer.status_code in (200, 303), answer.text
    assert sandbox.webhooks_held
