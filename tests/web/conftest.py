"""The Partner Center in a real browser: one `partnerhub up` for the package (the gateway included) and Chromium.

Fixtures:
  workspace   (package) a real `partnerhub up` subprocess on free ports with a fresh data dir, the page built
              beforehand (`./run web`, which rebuilds only when web/ changed); stopped with SIGINT at the end.
              .url (the gateway origin), .token(role, partner_id=None), .link(role, partner_id=None),
              .api(role, partner_id=None) -> httpx.Client on the gateway origin, .publish_sale(**fields),
              .env (the environment of `up`, with KAFKA_BOOTSTRAP_SERVERS and the ports), .text() (what `up` printed)
  browser     (package) Chromium driven by Playwright's sync API: Debian's /usr/bin/chromium or $PARTNERHUB_CHROMIUM,
              headless. Missing: a failure under CI=true, else a skip saying how to install it.
  page        (function) a fresh context, 1280x900, en-US, UTC, downloads accepted
  phone_page  (function) the same at 390x844, is_mobile and has_touch

The page is served with its real Content-Security-Policy (partnerhub.gateway.CONTENT_SECURITY_POLICY, no inline
script) and the browser enforces it: inject a script with page.evaluate(source), not page.add_script_tag (an inline
<script> the policy refuses). Console errors and refused requests of a page are printed when its test ends, so a
failing test shows them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from partnerhub.auth import issue_token
from partnerhub.config import Settings
from tests.e2e.conftest import ROOT, SECRET, STOP_TIMEOUT, Hub, short_dir

DEFAULT_CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Long enough for a page that polls the APIs to show an event's effect; short enough that a broken step fails fast.
DEFAULT_TIMEOUT_MS = 15_000


def build_page() -> None:
    """web/dist as web/'s sources say (`./run web` builds only when they changed since the last build)."""
    if os.environ.get("PARTNERHUB_WEB_DIR"):
        return
    done = subprocess.run([str(ROOT / "run"), "web"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          check=False)
    if done.returncode != 0:
        pytest.fail(f"building the Partner Center page failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


@dataclass
class Workspace:
    hub: Hub

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.hub.ports['gateway']}"

    @property
    def env(self) -> dict[str, str]:
        env = self.hub.env()
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.hub.bootstrap
        env["PARTNERHUB_DATA_DIR"] = str(self.hub.data_dir)
        return env

    def text(self) -> str:
        """What `partnerhub up` printed so far."""
        return self.hub.text()

    def token(self, role: str, partner_id: Any = None, sub: str | None = None) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return issue_token(Settings(jwt_secret=SECRET), role, sub, str(partner_id) if partner_id else None)

    def link(self, role: str, partner_id: Any = None) -> str:
        return f"{self.url}/#token={self.token(role, partner_id)}"

    def api(self, role: str, partner_id: Any = None) -> httpx.Client:
        """A client of the gateway origin with this role's bearer token (close it, or use it in a with)."""
        return httpx.Client(base_url=self.url, timeout=30, trust_env=False,
                            headers={"Authorization": f"Bearer {self.token(role, partner_id)}"})

    def publish_sale(self, **fields: Any) -> dict[str, Any]:
        """A sale.recorded event on sales.recorded, as `partnerhub publish-sale` sends it (currency defaults to USD,
        booked_at to now); refused up front when incentives would dead-letter it. Returns the event."""
        import argparse
        import json

        from partnerhub import cli
        from partnerhub.timeutil import isoformat, utcnow

        values = {"currency": "USD", "booked_at": isoformat(utcnow()), "event_id": None, "source": "tests-web"}
        values |= {key: str(value) if value is not None else None for key, value in fields.items()}
        event = cli.sale_recorded_event(argparse.Namespace(**values))
        refused = cli.refusal(event)
        if refused:
            raise ValueError(f"incentives would dead-letter this sale: {refused}")
        value = json.dumps(event, separators=(",", ":")).encode()
        failure: list[BaseException] = []

        def send() -> None:  # a thread of its own: the test's thread may be inside Playwright's event loop
            try:
                asyncio.run(cli._publish(self.hub.bootstrap, "sales.recorded", str(values["account_id"]), value,
                                         False))
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=send)
        thread.start()
        thread.join(60)
        if failure:
            raise failure[0]
        return event


# Package-scoped, not session-scoped: Playwright's sync API runs an event loop in this thread while it is open, so
# it must be closed before the asynchronous tests of the packages after this one (tests/webhooks) start theirs.
@pytest.fixture(scope="package")
def workspace() -> Iterator[Workspace]:
    build_page()
    path = short_dir()
    hub = Hub(path)
    try:
        hub.start()
        running = Workspace(hub)
        # `up` says it is up, then prints the rest of its banner (the sign-in links among it).
        while "Stop with Ctrl-C." not in hub.text():
            assert hub.process is not None and hub.process.poll() is None, hub.report()
            threading.Event().wait(0.1)
        yield running
        process = hub.process
        if process is not None:
            process.send_signal(signal.SIGINT)  # as Ctrl-C
            code = process.wait(STOP_TIMEOUT)
            assert code == 0, f"`partnerhub up` stopped with {code}:\n{hub.report()}"
    finally:
        hub.stop()  # whatever is left: killed, and its PostgreSQL stopped
        if not os.environ.get("PARTNERHUB_E2E_KEEP"):
            shutil.rmtree(path, ignore_errors=True)


def chromium_path() -> str | None:
    wanted = os.environ.get("PARTNERHUB_CHROMIUM") or DEFAULT_CHROMIUM
    found = shutil.which(wanted) if not Path(wanted).is_absolute() else (wanted if Path(wanted).exists() else None)
    return found


def _unavailable(reason: str) -> None:
    message = (f"{reason}. The browser tests drive Debian's Chromium: apt-get install chromium (./run test installs "
               "it when run as root), or point PARTNERHUB_CHROMIUM at a Chromium or Chrome binary")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        _unavailable(f"no Chromium at {os.environ.get('PARTNERHUB_CHROMIUM') or DEFAULT_CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the Python package playwright is not installed (./run installs the test extra)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def _page(browser: Any, viewport: dict[str, int], **options: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=viewport, locale="en-US", timezone_id="UTC", accept_downloads=True,
                                  **options)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    seen: list[str] = []
    page.on("console", lambda message: seen.append(f"console {message.type}: {message.text}")
            if message.type in {"error", "warning"} else None)
    page.on("pageerror", lambda error: seen.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: seen.append(f"request failed: {request.method} {request.url} "
                                                         f"({request.failure})"))
    try:
        yield page
    finally:
        if seen:
            print("\n".join(["browser messages:", *seen]))
        context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    yield from _page(browser, DESKTOP)


@pytest.fixture
def phone_page(browser: Any) -> Iterator[Any]:
    yield from _page(browser, PHONE, is_mobile=True, has_touch=True)
