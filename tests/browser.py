"""Debian's Chromium under Playwright, launched the way every browser test launches it, and a
watch on what a page must never do: break the Content-Security-Policy."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Runs in every document before its own scripts. It reports through a Playwright binding, which
# the page's policy cannot block (a fetch to a report endpoint would itself be subject to it).
_REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => window.__cspViolation(
  `${event.effectiveDirective} refused ${event.blockedURI || "an inline part"} ` +
  `(${event.sourceFile || document.location.href}:${event.lineNumber}) on ${document.location.pathname}`
));
"""


def launch(playwright: Playwright) -> Browser:
    if not os.access(CHROMIUM, os.X_OK):
        # A failure, not a skip: the browser tests are part of the suite (DESIGN.md, "The real parts").
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (never `playwright install`)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def watch_csp_violations(context: BrowserContext) -> list[str]:
    """Every Content-Security-Policy violation in the context's pages, as it happens (call before
    opening a page). Chromium also logs each one to the console as an error."""
    violations: list[str] = []
    context.expose_binding("__cspViolation", lambda _source, text: violations.append(text))
    context.add_init_script(_REPORT_VIOLATIONS)
    return violations
