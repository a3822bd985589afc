"""The browser tests' world: the whole local stack as `make run` starts it
(`python -m local.run` on free ports, its UI at APP_BASE_URL), Debian's
Chromium driven by Playwright (no browser of Playwright's own), and a
screenshot of every step, kept under .browser/ when a test fails."""
import os
import re
import shutil
from pathlib import Path
from typing import Callable

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from browser_stack import Stack

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / ".browser"
# How long a page may take to show what a step expects: the sandbox's
# webhooks and the import reach the API in the background.
EXPECT_MS = 10_000


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
