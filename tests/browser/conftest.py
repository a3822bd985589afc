"""The browser tests' world: the whole local stack as `make run` starts it
(`python -m local.run` on free ports, its UI at APP_BASE_URL), Debian's
Chromium driven by Playwright (no browser of Playwright's own), and a
screenshot of every step, kept under .browser/ when a test fails."""
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright

from local.run import LOCAL_ACCOUNT
from local.stack_runner import StackProcess

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / ".browser"
# How long a page may take to show what a step expects: the sandbox's
# webhooks and the import reach the API in the background.
EXPECT_MS = 10_000


class Stack(StackProcess):
    """The local stack (local/stack_runner.py), with what a test arranges
    without the browser: through the API and the sandbox's dashboard forms,
    as curl would."""

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.api_url + path, timeout=30,
                                headers={"Authorization": "Bearer " + self.tokens["admin"]}, **kwargs)

    def card(self) -> Dict[str, Any]:
        return self.admin("GET", "/connectors/stripe").json()

    def ensure_connected(self) -> Dict[str, Any]:
        """Connected, with the connection's import done: a subscription made
        while it runs may be taken by the import before its webhook, and be
        recorded as imported rather than as the Stripe event a test reads."""
        if self.card()["status"] != "connected":
            self.connect(LOCAL_ACCOUNT)
        deadline = time.monotonic() + 60
        while True:
            card = self.card()
            if not card["sync"] or card["sync"]["state"] != "importing":
                return card
            assert time.monotonic() < deadline, "the import did not end within 60 s: %r" % card["sync"]
            time.sleep(0.2)

    def ensure_disconnected(self) -> None:
        assert self.admin("DELETE", "/connectors/stripe").status_code == 200

    def dashboard(self, path: str, **form: Any) -> Dict[str, Any]:
        """A form post to the sandbox's dashboard, answered in JSON."""
        answer = requests.post(self.sandbox_url + path, data=form, headers={"Accept": "application/json"},
                               timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def subscribe(self, email: str, product: str, account: str = LOCAL_ACCOUNT) -> Dict[str, Any]:
        return self.dashboard("/dashboard/accounts/%s/subscriptions" % account, customer=email, product=product,
                              product_metadata_id=product.lower())

    def customer(self, email: str, user_id: Optional[str] = None, account: str = LOCAL_ACCOUNT) -> Dict[str, Any]:
        """A Stripe customer made through the sandbox's API, named as the
        member `user_id` by its metadata (none: it names no member)."""
        form = {"email": email}
        if user_id:
            form["metadata[customerhub_user_id]"] = user_id
        answer = requests.post(self.sandbox_url + "/v1/customers", data=form, timeout=30, headers={
            "Authorization": "Bearer " + self.env["STRIPE_SECRET_KEY"], "Stripe-Account": account})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def grantable_subscriptions(self, account: str = LOCAL_ACCOUNT) -> List[str]:
        """The ids of the account's subscriptions an import takes (active,
        trialing, past due), as Stripe's API lists them."""
        found, after = [], None
        while True:
            query = {"status": "all", "limit": "100", **({"starting_after": after} if after else {})}
            answer = requests.get(self.sandbox_url + "/v1/subscriptions", params=query, timeout=30, headers={
                "Authorization": "Bearer " + self.env["STRIPE_SECRET_KEY"], "Stripe-Account": account})
            assert answer.status_code == 200, answer.text
            page = answer.json()
            found += [item["id"] for item in page["data"] if item["status"] in ("active", "trialing", "past_due")]
            if not page["has_more"]:
                return found
            after = page["data"][-1]["id"]

    def run_scheduled(self, function_name: str) -> None:
        """A scheduled function once, as `make catch-up` runs it against the stack."""
        done = self.run_module("local.scheduled", function_name)
        assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    stack = Stack(tmp_path_factory.mktemp("stack") / "local-run.log").start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        message = ("The browser tests need Chromium at %s: `make test` installs Debian's chromium "
                   "(apt-get install chromium), or set CHROMIUM to one." % CHROMIUM)
        if os.environ.get("BROWSER_TESTS") == "required":
            pytest.fail(message)
        pytest.skip(message)
    expect.set_options(timeout=EXPECT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, stack) -> Page:
    """One tab for a module's tests, as one person would go from one to the next."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=stack.ui_url)
    page = context.new_page()
    page.set_default_timeout(EXPECT_MS)
    yield page
    context.close()


class Steps:
    """A screenshot after each step of a test, named after it."""

    def __init__(self, page: Page, folder: Path):
        self.page = page
        self.folder = folder
        self.count = 0

    def __call__(self, name: str) -> None:
        self.count += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        self.page.screenshot(path=str(self.folder / ("%02d-%s.png" % (self.count, safe))), full_page=True)


@pytest.fixture(scope="session", autouse=True)
def _fresh_screenshots():
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)


@pytest.fixture
def step(page, request) -> Callable[[str], None]:
    steps = Steps(page, SCREENSHOTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name))
    request.node.browser_steps = steps
    yield steps
    report = getattr(request.node, "call_report", None)
    if report is not None and report.passed:
        shutil.rmtree(steps.folder, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call":
        return
    item.call_report = report
    steps = getattr(item, "browser_steps", None)
    if steps is not None and report.failed:
        try:
            steps("failed here")
        except Exception as exc:  # the page may be what failed
            report.sections.append(("screenshots", "no final screenshot: %s" % exc))
        report.sections.append(("screenshots", "each step of this test: %s" % steps.folder))
