"""The local stack as `make run` starts it, for those who start it for
themselves (the browser tests, `make fuzz`, `make soak`): `python -m
local.run` in a process of its own, on free loopback ports (never the
defaults a developer's own `make run` may hold), with nothing from the
caller's shell that would point it at a real Stripe or AWS; started, waited
for, and stopped as Ctrl-C stops it."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence
from urllib.parse import parse_qsl, urlsplit

import requests

from local.run import LOCAL_ACCOUNT, local_environment, local_tokens

ROOT = Path(__file__).resolve().parents[1]
# What a developer's shell may hold that would point the stack elsewhere or
# change what it is configured with: a stack of its own uses local defaults.
CLEARED = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
           "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
           "STRIPE_SECRET_KEY", "STRIPE_CLIENT_ID", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE",
           "STRIPE_CONNECT_BASE", "STRIPE_SECRET_KEY_PARAM", "STRIPE_WEBHOOK_SECRET_PARAM",
           "AUTH_JWT_SECRET", "AUTH_JWT_SECRET_PARAM", "AUTH_JWT_ISSUER", "APP_BASE_URL", "RETURN_URL_ORIGINS",
           "OAUTH_REDIRECT_URI", "ACCESS_EVENT_BUS", "CONNECTIONS_TABLE", "OAUTH_STATES_TABLE",
           "WEBHOOK_EVENTS_TABLE", "MEMBER_CUSTOMERS_TABLE", "ENTITLEMENTS_TABLE", "PORT", "LOCAL_AWS_PORT",
           "STRIPE_SANDBOX_PORT", "UI_PORT")
# Every port the stack listens on; without a sandbox (Stripe given) one fewer.
PORTS = ("PORT", "LOCAL_AWS_PORT", "STRIPE_SANDBOX_PORT", "UI_PORT")
STARTUP_SECONDS = 90
CALLBACK_PATH = "/connectors/stripe/oauth/callback"


class StackError(Exception):
    """The stack did not start, or did not do what its caller needs of it."""


def free_ports(count: int) -> List[int]:
    """Ports nothing listens on now, all different."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class StackProcess:
    """`overrides`: settings the stack is given (Stripe's keys and URLs for a
    sandbox of the caller's own, say); `ports`: the names given free ports."""

    def __init__(self, log_path: Path, overrides: Optional[Mapping[str, str]] = None,
                 ports: Sequence[str] = PORTS):
        given = {name: value for name, value in os.environ.items() if name not in CLEARED}
        given.update({name: str(port) for name, port in zip(ports, free_ports(len(ports)))})
        # A test decides when the scheduled functions run (make sweep's way),
        # unless it asks for make run's schedules.
        given["LOCAL_SCHEDULES"] = "off"
        given.update(overrides or {})
        given["PYTHONUNBUFFERED"] = "1"
        self.given = given
        # What the stack will make of it: its tokens, its URLs.
        self.env = local_environment(given)
        self.api_url = "http://127.0.0.1:%s" % self.env["PORT"]
        self.ui_url = self.env["APP_BASE_URL"]
        self.sandbox_url = self.env.get("STRIPE_API_BASE")
        self.tokens = local_tokens(self.env)
        self.log_path = Path(log_path)
        self._process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = STARTUP_SECONDS) -> "StackProcess":
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen([sys.executable, "-m", "local.run"], cwd=ROOT, env=self.given,
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise StackError("python -m local.run exited with %d (log: %s)"
                                 % (self._process.returncode, self.log_path))
            try:
                # The UI starts last: once it answers, everything does.
                if requests.get(self.ui_url + "/config.json", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.stop()
        raise StackError("The local stack did not answer within %d s (log: %s)" % (timeout, self.log_path))

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if not self.running():
            return
        # As Ctrl-C stops `make run`: the stack stops its pumps and servers.
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def run_module(self, module: str, *args: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
        """A command against this stack, as `make sweep` or `make catch-up`
        runs one against `make run`'s: `python -m <module> <args>`."""
        return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=self.given,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]

    def headers(self, role: str = "admin") -> Dict[str, str]:
        return {"Authorization": "Bearer " + self.tokens[role]}

    def connect(self, account_id: str = LOCAL_ACCOUNT) -> Dict[str, Any]:
        return connect(self.api_url, self.sandbox_url, self.tokens["admin"], account_id)

    # What a site owner does at Stripe, through the sandbox: its API with the
    # platform's key as the connected account, and its dashboard's forms.

    def stripe_headers(self, account: str = LOCAL_ACCOUNT) -> Dict[str, str]:
        return {"Authorization": "Bearer " + self.env["STRIPE_SECRET_KEY"], "Stripe-Account": account}

    def customer(self, email: str, user_id: Optional[str] = None, account: str = LOCAL_ACCOUNT) -> Dict[str, Any]:
        """A Stripe customer, named as the member `user_id` by its metadata
        (none: it names no member)."""
        form = {"email": email}
        if user_id:
            form["metadata[customerhub_user_id]"] = user_id
        answer = requests.post(self.sandbox_url + "/v1/customers", data=form, timeout=30,
                               headers=self.stripe_headers(account))
        expect_status(answer, 200, "POST /v1/customers")
        return answer.json()

    def dashboard(self, path: str, **form: Any) -> Dict[str, Any]:
        """A form post to the sandbox's dashboard, answered in JSON."""
        answer = requests.post(self.sandbox_url + path, data=form, headers={"Accept": "application/json"},
                               timeout=30)
        expect_status(answer, 200, "POST " + path)
        return answer.json()

    def subscribe(self, email: str, product: str, account: str = LOCAL_ACCOUNT) -> Dict[str, Any]:
        """A subscription to `product` (made if new) for the latest customer with `email`."""
        return self.dashboard("/dashboard/accounts/%s/subscriptions" % account, customer=email, product=product,
                              product_metadata_id=product.lower())


def connect(api_url: str, sandbox_url: str, admin_token: str, account_id: str = LOCAL_ACCOUNT) -> Dict[str, Any]:
    """Connect the local site to the sandbox's account the way an admin
    does: the connect call, Stripe's authorize page, the GET callback's
    bounce to the UI's page, and the page's POST with the admin's token;
    the card."""
    admin = {"Authorization": "Bearer " + admin_token}
    started = requests.post(api_url + "/connectors/stripe/connect", headers=admin, json={}, timeout=30)
    expect_status(started, 200, "POST /connectors/stripe/connect")
    query = dict(parse_qsl(urlsplit(started.json()["authorize_url"]).query))
    approved = requests.post(sandbox_url + "/oauth/authorize", allow_redirects=False, timeout=30, data={
        "client_id": query["client_id"], "scope": query["scope"], "state": query["state"],
        "redirect_uri": query["redirect_uri"], "decision": "approve", "account_id": account_id})
    expect_status(approved, 302, "the sandbox's authorize page")
    back = requests.get(approved.headers["Location"], allow_redirects=False, timeout=30)
    expect_status(back, 302, "GET " + CALLBACK_PATH)
    page = dict(parse_qsl(urlsplit(back.headers["Location"]).query))
    completed = requests.post(api_url + CALLBACK_PATH, headers=admin, timeout=30,
                              json={"state": page["state"], "code": page["code"]})
    expect_status(completed, 200, "POST " + CALLBACK_PATH)
    card = completed.json()
    if card.get("status") != "connected":
        raise StackError("The site is not connected after the callback: %s" % card)
    return card


def expect_status(answer: requests.Response, status: int, what: str) -> None:
    if answer.status_code != status:
        raise StackError("%s answered %d, not %d: %s" % (what, answer.status_code, status, answer.text[:500]))
