"""`make fuzz`: schemathesis against openapi.yaml and the local stack.

Starts `python -m local.run` on free ports (never the defaults a developer's
own `make run` may hold), connects its site to the sandbox's account the way
an admin does, runs schemathesis with the local tokens and the checks in
fuzz/hooks.py, and stops the stack. Exits with schemathesis' status.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from local.stack_runner import StackError, StackProcess, connect

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / ".fuzz"
CARD_PATH = "/connectors/stripe"
SETTINGS_PATH = "/connectors/stripe/settings"
UNMATCHED_PATH = "/connectors/stripe/unmatched"
# A subscriber whose customer names no member: the link and unlink routes
# are called with their subscription, so that they reach the linking itself
# rather than only 404 for ids nobody had.
UNMATCHED_EMAIL = "fuzz-unmatched@example.test"
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

def ready_site(api_url: str, sandbox_url: str, admin_token: str, tries: int = 5) -> None:
    """The local site connected to the sandbox's account, with its portal on
    (before the run, and again after a request that undid either). A
    generated `account.application.deauthorized` still on the events queue
    may disconnect the site again between the two: then both are done again."""
    admin = {"Authorization": "Bearer " + admin_token}
    for _ in range(tries):
        card = requests.get(api_url + CARD_PATH, headers=admin, timeout=30).json()
        if card["status"] != "connected":
            card = connect(api_url, sandbox_url, admin_token)
        if card["settings"]["portal_enabled"]:
            return
        answer = requests.put(api_url + SETTINGS_PATH, headers=admin, json=PORTAL_ON, timeout=30)
        if answer.status_code == 200:
            return
        if answer.status_code != 409:
            break
        time.sleep(0.5)
    raise StackError("turning the portal on answered %d: %s" % (answer.status_code, answer.text))


def unmatched_subscription(stack: StackProcess, timeout: float = 30) -> str:
    """A subscription of a customer that names no member, made at the
    sandbox (as a site owner's Stripe dashboard would), once the connector
    lists it as unmatched."""
    stack.customer(UNMATCHED_EMAIL)
    subscription = stack.subscribe(UNMATCHED_EMAIL, "Fuzzing")["id"]
    admin = stack.headers("admin")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = requests.get(stack.api_url + UNMATCHED_PATH, headers=admin, timeout=30).json()["unmatched"]
        if any(item["subscription_id"] == subscription for item in listed):
            return subscription
        time.sleep(0.2)
    raise StackError("%s was not listed as unmatched within %.0f s" % (subscription, timeout))


def schemathesis_command(api_url: str) -> list:
    return [sys.executable, "-m", "schemathesis.cli", "--config-file", str(ROOT / "fuzz" / "schemathesis.toml"),
            "run", str(ROOT / "openapi.yaml"), "--url", api_url, "--checks", ",".join(CHECKS),
            "--report", "junit", "--report-dir", str(OUTPUT)]


def main() -> int:
    OUTPUT.mkdir(exist_ok=True)
    stack = StackProcess(OUTPUT / "stack.log")
    print("fuzz: starting the local stack on %s (log: %s)" % (stack.api_url, stack.log_path), flush=True)
    try:
        try:
            stack.start(STARTUP_SECONDS)
            ready_site(stack.api_url, stack.sandbox_url, stack.tokens["admin"])
            unmatched = unmatched_subscription(stack)
        except (StackError, requests.RequestException) as exc:
            print("fuzz: %s; the stack's log:\n%s" % (exc, stack.log_tail()), file=sys.stderr)
            return 2
        hook_env = dict(os.environ, SCHEMATHESIS_HOOKS="fuzz.hooks", FUZZ_API_URL=stack.api_url,
                        FUZZ_SANDBOX_URL=stack.sandbox_url, FUZZ_ADMIN_TOKEN=stack.tokens["admin"],
                        FUZZ_MEMBER_TOKEN=stack.tokens["member"], FUZZ_APP_BASE_URL=stack.env["APP_BASE_URL"],
                        FUZZ_WEBHOOK_SECRET=stack.env["STRIPE_WEBHOOK_SECRET"],
                        FUZZ_UNMATCHED_SUBSCRIPTION=unmatched)
        started = time.monotonic()
        try:
            status = subprocess.run(schemathesis_command(stack.api_url), cwd=ROOT, env=hook_env,
                                    stdin=subprocess.DEVNULL, timeout=DEADLINE_SECONDS).returncode
        except subprocess.TimeoutExpired:
            print("fuzz: schemathesis ran past %d s and was stopped" % DEADLINE_SECONDS, file=sys.stderr)
            return 3
        print("fuzz: schemathesis took %.0f s and exited %d" % (time.monotonic() - started, status), flush=True)
        if not stack.running():
            print("fuzz: the local stack died during the run; see %s" % stack.log_path, file=sys.stderr)
            return status or 2
        return status
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
