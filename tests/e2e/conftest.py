"""Browser fixtures: Playwright (sync API) driving Debian's Chromium against pytest-django's live_server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.browser import launch, watch_csp_violations

RESULTS_DIR = Path(__file__).resolve().parents[2] / "test-results"
LAPTOP = {"width": 1366, "height": 900}

# The live server answers quickly; a long wait only hides a broken page.
expect.set_options(timeout=10_000)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # Keep each phase's report on the item so the page fixture knows whether the test failed.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# The browser lives for the whole e2e package (started once, not per test) and stops when the
# package is done, so the rest of the suite runs without Playwright's event loop (see below).
@pytest.fixture(scope="package")
def playwright_instance() -> Iterator[Playwright]:
    from django.db import connections

    # Playwright's sync API keeps an asyncio event loop running in the main thread while it is
    # started. Django then sees a running loop in two ways, both false alarms here since the ORM
    # still runs synchronously in the main thread while the browser waits:
    # - it refuses ORM calls with SynchronousOnlyOperation, hence DJANGO_ALLOW_ASYNC_UNSAFE (set
    #   only while the browser runs, so the rest of the suite keeps Django's check);
    # - asgiref's thread-critical Local, which holds the connections, switches to per-context
    #   storage and hands out new connection objects. Those lack the test database's serialized
    #   contents, so serialized_rollback would silently restore nothing and every transactional
    #   test after the first would find the seeded policy rows gone. Putting the connections the
    #   test set-up made back into that storage keeps one set of connections in the main thread.
    main_thread_connections = {alias: connections[alias] for alias in connections}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        pw = sync_playwright().start()
        for alias, connection in main_thread_connections.items():
            connections[alias] = connection
        try:
            yield pw
        finally:
            pw.stop()


@pytest.fixture(scope="package")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    browser = launch(playwright_instance)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh context (no cookies shared between tests); screenshot kept on failure.

    A journey that passes fails after all if any of its pages broke the Content-Security-Policy
    (the policy is on in every mode): a refused script or style otherwise shows only as a page
    that quietly does less."""
    context = browser.new_context(viewport=LAPTOP, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(10_000)
    csp_violations = watch_csp_violations(context)
    page = context.new_page()
    # Uncaught JavaScript errors fail the test: a broken script otherwise only shows as a missing swap.
    js_errors: list[str] = []
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    page.js_errors = js_errors  # type: ignore[attr-defined]
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        RESULTS_DIR.mkdir(exist_ok=True)
        try:
            page.screenshot(path=str(RESULTS_DIR / f"{request.node.name}.png"), full_page=True)
        except Exception as exc:  # a screenshot must not mask the real failure
            print(f"could not save a failure screenshot: {exc}")
    context.close()
    if report is not None and report.passed and csp_violations:
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(csp_violations))
