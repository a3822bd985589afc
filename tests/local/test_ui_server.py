"""The reference UI's server in the local stack: its pages at every path the
UI has, its files and nothing beside them, where the API is, a sign-in that
mints only well-formed development tokens, nothing answered to a request
addressed to another name than localhost or 127.0.0.1, and APP_BASE_URL
and UI_PORT following each other."""
import jwt
import pytest
import requests

from local.run import LOCAL_JWT_SECRET, development_token, local_environment
from local.ui_server import PAGES, UIServer


@pytest.fixture(scope="module")
def ui():
    signing = {"AUTH_JWT_SECRET": LOCAL_JWT_SECRET}
    server = UIServer("http://127.0.0.1:8000", "http://localhost:3000", port=0,
                      mint=lambda user, role, email: development_token(signing, user, role, email)).start()
    yield server
    server.stop()


@pytest.mark.parametrize("path", PAGES + ("/settings/connectors/stripe/callback?code=ac_1&state=s_1",))
def test_every_page_of_the_ui_is_the_shell_with_a_policy_that_names_the_api(ui, path):
    answer = requests.get(ui.url + path, timeout=5, allow_redirects=False)
    assert answer.status_code == 200
    assert '<script type="module" src="/js/main.js">' in answer.text
    assert "connect-src 'self' http://127.0.0.1:8000" in answer.headers["Content-Security-Policy"]
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["Cache-Control"] == "no-store"


def test_an_unknown_path_is_the_shell_with_404_for_the_page_to_say_so(ui):
    answer = requests.get(ui.url + "/settings/billing", timeout=5)
    assert answer.status_code == 404
    assert "<main" in answer.text


@pytest.mark.parametrize("path", ["/../local/run.py", "/%2e%2e/local/run.py", "/js/../../app.py", "/README.md",
                                  "/js/", "/index.html/x"])
def test_nothing_outside_web_or_of_another_kind_is_served(ui, path):
    answer = requests.get(ui.url + path, timeout=5)
    assert answer.status_code == 404
    # The page's shell, saying "Page not found", and not the file.
    assert "<main" in answer.text and "def " not in answer.text


def test_the_scripts_are_javascript_modules_the_browser_runs(ui):
    answer = requests.get(ui.url + "/js/main.js", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_config_tells_the_page_where_the_api_and_the_app_are(ui):
    assert requests.get(ui.url + "/config.json", timeout=5).json() == {
        "apiBaseUrl": "http://127.0.0.1:8000", "appBaseUrl": "http://localhost:3000"}


def test_a_page_asked_for_under_another_host_name_moves_to_app_base_url():
    server = UIServer("http://127.0.0.1:8000", "http://localhost:%d" % 0, port=0, mint=lambda *_: "")
    server.app_base_url = "http://localhost:%d" % server.port
    server.start()
    try:
        answer = requests.get(server.url + "/account?x=1", timeout=5, allow_redirects=False)
        assert answer.status_code == 302
        assert answer.headers["Location"] == "http://localhost:%d/account?x=1" % server.port
        same = requests.get("http://localhost:%d/account" % server.port, timeout=5, allow_redirects=False)
        assert same.status_code == 200
    finally:
        server.stop()


def test_sign_in_mints_a_verified_development_token_for_the_local_site(ui):
    answer = requests.post(ui.url + "/local/sign-in", timeout=5,
                           json={"role": "member", "user_id": "user_ana", "email": "ana@example.test"})
    assert answer.status_code == 200
    claims = jwt.decode(answer.json()["token"], LOCAL_JWT_SECRET, algorithms=["HS256"], audience="stripe-connector")
    assert {k: claims[k] for k in ("sub", "site", "role", "email", "email_verified", "iss")} == {
        "sub": "user_ana", "site": "site_local", "role": "member", "email": "ana@example.test",
        "email_verified": True, "iss": "customerhub"}
    assert claims["exp"] - claims["iat"] == 12 * 3600


@pytest.mark.parametrize("body, message", [
    ({"role": "root", "user_id": "u", "email": "a@b.test"}, "role must be one of"),
    ({"role": "admin", "user_id": "", "email": "a@b.test"}, "user id"),
    ({"role": "admin", "user_id": "u" * 257, "email": "a@b.test"}, "user id"),
    ({"role": "admin", "user_id": ["u"], "email": "a@b.test"}, "user id"),
    ({"role": "admin", "user_id": "u", "email": "not-an-email"}, "email address"),
    ({"role": "admin", "user_id": "u", "email": " a@b.test"}, "email address"),
    ({"role": "admin", "user_id": "u"}, "email address"),
    (["admin"], "JSON object"),
])
def test_a_sign_in_it_cannot_vouch_for_is_refused_with_the_reason(ui, body, message):
    answer = requests.post(ui.url + "/local/sign-in", json=body, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request"
    assert message in answer.json()["error"]["message"]
    assert "token" not in answer.json()


def test_sign_in_takes_json_only_so_another_sites_form_cannot_post_it(ui):
    answer = requests.post(ui.url + "/local/sign-in", data={"role": "admin", "user_id": "u", "email": "a@b.test"},
                           timeout=5)
    assert answer.status_code == 415
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_sign_in_refuses_a_body_over_four_kib(ui):
    answer = requests.post(ui.url + "/local/sign-in", timeout=5, headers={"Content-Type": "application/json"},
                           data=b"{" + b" " * 5000 + b"}")
    assert answer.status_code == 413


FORGED_HOSTS = ["evil.example", "127.0.0.1.evil.example", "localhost.evil.example:3000", "evil.example:3000",
                "localhost.", "[::1]:3000", "", "localhost:3000 evil.example"]


@pytest.mark.parametrize("host", FORGED_HOSTS)
def test_sign_in_under_another_name_is_421_and_mints_no_token(ui, host):
    # A page whose own name points at loopback (DNS rebinding) would read the answer as its own.
    answer = requests.post(ui.url + "/local/sign-in", timeout=5, headers={"Host": host},
                           json={"role": "owner", "user_id": "user_rebound", "email": "owner@evil.example"})
    assert answer.status_code == 421
    assert answer.json() == {"error": {"code": "misdirected_request", "message": (
        "This server answers only requests addressed to localhost or 127.0.0.1, not to the name this one was "
        "sent to.")}}
    assert answer.headers["Connection"] == "close" and "token" not in answer.text


@pytest.mark.parametrize("method, path", [("GET", "/"), ("GET", "/account"), ("GET", "/config.json"),
                                          ("GET", "/js/main.js"), ("HEAD", "/settings"), ("PUT", "/")])
def test_pages_files_and_config_under_another_name_are_421(ui, method, path):
    answer = requests.request(method, ui.url + path, timeout=5, allow_redirects=False,
                              headers={"Host": "evil.example:%d" % ui.port})
    assert answer.status_code == 421
    assert "apiBaseUrl" not in answer.text and "<script" not in answer.text


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "LocalHost:{port}", "localhost"])
def test_sign_in_answers_the_names_of_this_machine(ui, host):
    answer = requests.post(ui.url + "/local/sign-in", timeout=5, headers={"Host": host.format(port=ui.port)},
                           json={"role": "member", "user_id": "user_ana", "email": "ana@example.test"})
    assert answer.status_code == 200 and answer.json()["token"]


@pytest.mark.parametrize("given, ui_port, app_base_url", [
    ({}, "3000", "http://localhost:3000"),
    ({"UI_PORT": "3520"}, "3520", "http://localhost:3520"),
    ({"APP_BASE_URL": "http://localhost:3600"}, "3600", "http://localhost:3600"),
    ({"APP_BASE_URL": "https://app.customerhub.test"}, "3000", "https://app.customerhub.test"),
    ({"UI_PORT": "3100", "APP_BASE_URL": "http://localhost:3000"}, "3100", "http://localhost:3000"),
])
def test_the_ui_port_and_app_base_url_follow_each_other_unless_both_are_given(given, ui_port, app_base_url):
    env = local_environment(given)
    assert (env["UI_PORT"], env["APP_BASE_URL"]) == (ui_port, app_base_url)
