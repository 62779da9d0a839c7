"""Browser tests: the app served on a real port, driven by the system's headless Chromium.

Chromium comes from the system packages (`apt-get install chromium`, done by
`make test-browser` when it can); nothing is downloaded at run time and
`playwright install` is never used. Without Chromium or the playwright
package these tests are skipped with the reason, except under CI=true,
where they fail instead.
"""
from __future__ import annotations

import os
import threading

import pytest
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="session")
def playwright_driver():
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI: {reason}")
        pytest.skip(f"SKIPPED browser tests: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture
def live_server(app):
    """The test app on 127.0.0.1:<free port>; PUBLIC_BASE_URL follows the port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.config["PUBLIC_BASE_URL"] = base
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def chromium(playwright_driver):
    """One headless Chromium for the run. Playwright gives it a fresh, temporary
    --user-data-dir of its own (it refuses the flag in `args`); every test gets
    new contexts, so no cookies or storage carry over between tests."""
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Browser:
    """Fresh browser contexts (own cookies and storage each), closed at teardown."""

    def __init__(self, chromium):
        self.chromium, self.contexts = chromium, []

    def context(self, **options):
        ctx = self.chromium.new_context(**options)
        ctx.set_default_timeout(10_000)
        self.contexts.append(ctx)
        return ctx

    def page(self, **options):
        return self.context(**options).new_page()

    def close(self):
        for ctx in self.contexts:
            ctx.close()


@pytest.fixture
def browser(chromium):
    b = Browser(chromium)
    yield b
    b.close()
