"""Browser tests: Debian's headless Chromium, driven by Playwright, against the local stack.

The stack is the e2e one (tests/helpers/local_stack.py) but a stack of its own, for this
folder only, so uploads here never change what tests/e2e counts. Every test leaves a
screenshot in ARTIFACTS (printed at the end of the run). The page's own
Content-Security-Policy stays on: a violation or a script error fails the test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.helpers.local_stack import running_moto, running_stack
from tests.helpers.models import REPO_ROOT

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# The flags this machine's closed network needs: no background connections, no sandbox as root.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", REPO_ROOT / "artifacts" / "browser"))
RETRAIN_THRESHOLDS = {"chest-ct": 4}  # the tests upload fewer, so only a manual job ever runs here
DESKTOP = {"width": 1200, "height": 900}

expect.set_options(timeout=30_000)  # the first image prediction loads its model


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    with (
        running_moto() as moto,
        running_stack(
            moto,
            tmp_path_factory,
            bucket="med-classifier-models-browser",
            retrain_thresholds=RETRAIN_THRESHOLDS,
        ) as running,
    ):
        yield running


@pytest.fixture(scope="package")
def browser():
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium), "
        "or set CHROMIUM to a Chromium binary"
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class PageProblems:
    """Script errors and console errors (CSP violations among them) a page produced."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("console", self._console)

    def _console(self, message):
        # A 4xx/5xx answer is logged by Chromium as a failed resource; the tests provoke some on purpose.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {message.text}")


def screenshot_path(request, suffix: str = "") -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    return ARTIFACTS / f"{name}{suffix}.png"


def _open_page(browser, request, **context_options):
    context = browser.new_context(**context_options)
    page = context.new_page()
    problems = PageProblems(page)
    saved: list[Path] = []

    def shot(suffix: str = "") -> Path:
        path = screenshot_path(request, suffix)
        page.screenshot(path=str(path), full_page=True)
        saved.append(path)
        return path

    page.shot = shot
    return context, page, problems, saved


@pytest.fixture
def page(browser, request):
    context, page, problems, saved = _open_page(browser, request, viewport=DESKTOP)
    yield page
    if not saved:  # every test leaves at least its final state
        page.shot()
    context.close()
    assert problems.errors == [], problems.errors


@pytest.fixture
def phone_page(browser, request):
    context, page, problems, saved = _open_page(
        browser, request, viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    yield page
    if not saved:
        page.shot()
    context.close()
    assert problems.errors == [], problems.errors


def pytest_terminal_summary(terminalreporter):
    shots = sorted(ARTIFACTS.glob("*.png")) if ARTIFACTS.is_dir() else []
    if shots:
        terminalreporter.write_line(f"browser screenshots: {ARTIFACTS} ({len(shots)} files)")
