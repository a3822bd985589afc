"""`make fuzz`: schemathesis against openapi.yaml and the local stack.

Starts `python -m local.run` on free ports (never the defaults a developer's
own `make run` may hold), connects its site to the sandbox's account the way
an admin does, runs schemathesis with the local tokens and the checks in
fuzz/hooks.py, and stops the stack. Exits with schemathesis' status.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from local.run import LOCAL_ACCOUNT, local_environment, local_tokens

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / ".fuzz"
CARD_PATH = "/connectors/stripe"
SETTINGS_PATH = "/connectors/stripe/settings"
CALLBACK_PATH = "/connectors/stripe/oauth/callback"
# The local site's portal, turned on so that members reach it.
PORTAL_ON = {"portal_enabled": True, "privacy_policy_url": "https://localfitness.test/privacy",
             "terms_of_service_url": "https://localfitness.test/terms", "allow_cancel": True}

# fuzz/schemathesis.toml fixes the examples per operation and the seed; a
# run past this deadline is stopped and fails.
DEADLINE_SECONDS = 300
STARTUP_SECONDS = 120

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "ignored_auth",
    # fuzz/hooks.py
    "error_body_is_the_contracts",
    "no_request_header_echoed",
    "cors_for_the_ui_alone",
)

# What the caller's shell may hold that would send the stack to a real Stripe
# or AWS, or to SSM for its secrets: the fuzzer talks to its own stack only.
CLEARED = ("STRIPE_SECRET_KEY", "STRIPE_CLIENT_ID", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE",
           "STRIPE_CONNECT_BASE", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN",
           "STRIPE_SECRET_KEY_PARAM", "STRIPE_WEBHOOK_SECRET_PARAM", "AUTH_JWT_SECRET_PARAM",
           "OAUTH_REDIRECT_URI")


class StackError(Exception):
    """The local stack did not start, or could not be connected."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_environment() -> dict:
    """The caller's environment on free ports, pointed at nothing outside."""
    env = {name: value for name, value in os.environ.items() if name not in CLEARED}
    ports = set()
    while len(ports) < 4:
        ports.add(free_port())
    for name, port in zip(("PORT", "LOCAL_AWS_PORT", "STRIPE_SANDBOX_PORT", "UI_PORT"), sorted(ports)):
        env[name] = str(port)
    return env


def start_stack(env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "local.run"], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        log.close()


def wait_until_answering(stack: subprocess.Popen, api_url: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if stack.poll() is not None:
            raise StackError("the local stack exited with %d" % stack.returncode)
        try:
            requests.get(api_url + "/connectors/stripe", timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.5)
    raise StackError("the local stack did not answer within %d s" % STARTUP_SECONDS)


def stop_stack(stack: subprocess.Popen) -> None:
    if stack.poll() is not None:
        return
    stack.send_signal(signal.SIGINT)
    try:
        stack.wait(timeout=15)
    except subprocess.TimeoutExpired:
        stack.kill()
        stack.wait()


def query_of(url: str) -> dict:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def connect_site(api_url: str, sandbox_url: str, admin_token: str, account_id: str = LOCAL_ACCOUNT) -> None:
    """Connect the local site the way an admin does: the connect call,
    Stripe's authorize page, the callback's bounce, the UI page's completion."""
    admin = {"Authorization": "Bearer " + admin_token}
    started = requests.post(api_url + CARD_PATH + "/connect", headers=admin, json={}, timeout=30)
    if started.status_code != 200:
        raise StackError("POST /connectors/stripe/connect answered %d" % started.status_code)
    query = query_of(started.json()["authorize_url"])
    approved = requests.post(sandbox_url + "/oauth/authorize", allow_redirects=False, timeout=30, data={
        "client_id": query["client_id"], "scope": query["scope"], "state": query["state"],
        "redirect_uri": query["redirect_uri"], "decision": "approve", "account_id": account_id})
    if approved.status_code != 302:
        raise StackError("the sandbox's authorize page answered %d" % approved.status_code)
    back = requests.get(api_url + CALLBACK_PATH + "?" + urlsplit(approved.headers["Location"]).query,
                        allow_redirects=False, timeout=30)
    if back.status_code != 302:
        raise StackError("GET %s answered %d" % (CALLBACK_PATH, back.status_code))
    page = query_of(back.headers["Location"])
    completed = requests.post(api_url + CALLBACK_PATH, headers=admin, timeout=30,
                              json={"state": page["state"], "code": page["code"]})
    if completed.status_code != 200 or completed.json().get("status") != "connected":
        raise StackError("completing the connection answered %d: %s" % (completed.status_code, completed.text))


def ready_site(api_url: str, sandbox_url: str, admin_token: str) -> None:
    """The local site connected to the sandbox's account, with its portal on."""
    admin = {"Authorization": "Bearer " + admin_token}
    card = requests.get(api_url + CARD_PATH, headers=admin, timeout=30).json()
    if card["status"] != "connected":
        connect_site(api_url, sandbox_url, admin_token)
    if card["status"] != "connected" or not card["settings"]["portal_enabled"]:
        answer = requests.put(api_url + SETTINGS_PATH, headers=admin, json=PORTAL_ON, timeout=30)
        if answer.status_code != 200:
            raise StackError("turning the portal on answered %d: %s" % (answer.status_code, answer.text))


def schemathesis_command(api_url: str) -> list:
    return [sys.executable, "-m", "schemathesis.cli", "--config-file", str(ROOT / "fuzz" / "schemathesis.toml"),
            "run", str(ROOT / "openapi.yaml"), "--url", api_url, "--checks", ",".join(CHECKS),
            "--report", "junit", "--report-dir", str(OUTPUT)]


def main() -> int:
    OUTPUT.mkdir(exist_ok=True)
    child_env = stack_environment()
    # What the stack will run with, to mint its tokens and reach its sandbox.
    env = local_environment(child_env)
    api_url = "http://127.0.0.1:%s" % env["PORT"]
    sandbox_url = env["STRIPE_API_BASE"]
    tokens = local_tokens(env, hours=1)
    log_path = OUTPUT / "stack.log"
    print("fuzz: starting the local stack on %s (log: %s)" % (api_url, log_path), flush=True)
    stack = start_stack(child_env, log_path)
    try:
        try:
            wait_until_answering(stack, api_url)
            ready_site(api_url, sandbox_url, tokens["admin"])
        except (StackError, requests.RequestException) as exc:
            print("fuzz: %s; the stack's log:\n%s" % (exc, log_path.read_text(errors="replace")[-4000:]),
                  file=sys.stderr)
            return 2
        hook_env = dict(os.environ, SCHEMATHESIS_HOOKS="fuzz.hooks", FUZZ_API_URL=api_url,
                        FUZZ_SANDBOX_URL=sandbox_url, FUZZ_ADMIN_TOKEN=tokens["admin"],
                        FUZZ_MEMBER_TOKEN=tokens["member"], FUZZ_APP_BASE_URL=env["APP_BASE_URL"],
                        FUZZ_WEBHOOK_SECRET=env["STRIPE_WEBHOOK_SECRET"])
        started = time.monotonic()
        try:
            status = subprocess.run(schemathesis_command(api_url), cwd=ROOT, env=hook_env,
                                    stdin=subprocess.DEVNULL, timeout=DEADLINE_SECONDS).returncode
        except subprocess.TimeoutExpired:
            print("fuzz: schemathesis ran past %d s and was stopped" % DEADLINE_SECONDS, file=sys.stderr)
            return 3
        print("fuzz: schemathesis took %.0f s and exited %d" % (time.monotonic() - started, status), flush=True)
        if stack.poll() is not None:
            print("fuzz: the local stack died during the run; see %s" % log_path, file=sys.stderr)
            return status or 2
        return status
    finally:
        stop_stack(stack)


if __name__ == "__main__":
    sys.exit(main())
