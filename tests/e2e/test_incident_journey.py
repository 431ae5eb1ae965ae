"""The on-call engineer's journey in a real browser: log in, log an incident, work it, find it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from incidents.models import Incident, State
from tests.factories import DEMO_PASSWORD, open_incident

TITLE = "Market analysis agent stopped publishing signals"
REFERENCE = re.compile(r"^TMT-INC-\d{4}-\d{2}-\d{2}-\d{3}$")

# live_server needs transactional tests, whose flush would delete the policy rows the migrations
# seeded (severity levels, systems, checklist templates); serialized_rollback puts them back.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(base_url)
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name=f"Log out {username}")).to_be_visible()


def test_engineer_logs_acknowledges_notes_and_finds_an_incident(page: Page, live_server, engineer):
    # Another open incident of a lower severity, so the severity filter has something to hide.
    other = open_incident(reported_by=engineer, level=3, title="Dashboard chart shows stale data")

    log_in(page, live_server.url, engineer.username)

    # Pico styles the nav link as a button (role="button"), and that is what a screen reader hears.
    page.get_by_role("navigation").get_by_role("button", name="Log incident").click()
    expect(page.get_by_role("heading", name="Log incident")).to_be_visible()
    page.get_by_label("Title").fill(TITLE)
    impact = page.get_by_label("Estimated financial impact (USD)")
    impact.press_sequentially("2500")
    suggestion = page.get_by_test_id("severity-suggestion")
    expect(suggestion).to_be_visible()
    expect(suggestion).to_contain_text("High (Severity 2)")
    expect(suggestion).to_contain_text("$2,500.00")

    page.get_by_role("radio", name=re.compile(r"^Sev2\s+High")).check()
    page.get_by_role("checkbox", name="Market Analysis Agent").check()
    page.get_by_label("Detection method").select_option(label="Automated alert (monitoring)")
    page.get_by_role("main").get_by_role("button", name="Log incident").click()

    heading = page.get_by_test_id("incident-reference")
    expect(heading).to_have_text(REFERENCE)
    reference = heading.inner_text().strip()
    expect(page).to_have_url(re.compile(rf"/incidents/{reference}/$"))
    expect(page.get_by_role("status")).to_contain_text(f"{reference} logged")
    expect(page.get_by_text(TITLE, exact=True)).to_be_visible()
    expect(page.locator(".badge.state")).to_have_text("Detected")

    page.get_by_role("button", name="Acknowledge", exact=True).click()
    expect(page.locator(".badge.state")).to_have_text("Acknowledged")
    expect(page.get_by_role("status")).to_contain_text(f"{reference} is now acknowledged.")
    expect(page.get_by_role("button", name="Acknowledge", exact=True)).to_have_count(0)

    # A marker on window survives an htmx swap but not a page load.
    page.evaluate("window.__noReload = true")
    timeline = page.get_by_test_id("timeline")
    note = "Restarted the market analysis agent; signals flowing again at 14:05"
    page.get_by_role("textbox", name="Note").fill(note)
    page.get_by_role("button", name="Add note").click()
    expect(timeline.get_by_role("row").filter(has_text=note)).to_be_visible()
    expect(page.get_by_role("textbox", name="Note")).to_have_value("")

    item = page.get_by_test_id("checklist-item").filter(has_text="Severity level determination")
    expect(item).to_have_attribute("aria-pressed", "false")
    item.click()
    expect(item).to_have_attribute("aria-pressed", "true")
    expect(item).to_contain_text("☑")
    assert page.evaluate("window.__noReload === true"), "the note or checklist reloaded the page"

    page.get_by_role("navigation").get_by_role("link", name="Incidents", exact=True).click()
    expect(page.get_by_role("heading", name="Incidents")).to_be_visible()
    table = page.locator("#incident-table")
    expect(table.get_by_role("link", name=reference)).to_be_visible()
    expect(table).to_contain_text(TITLE)
    expect(table).to_contain_text(other.title)

    page.get_by_label("Severity").select_option(label="Sev2 High")
    expect(page).to_have_url(re.compile(r"[?&]severity=\d+"))
    expect(table).not_to_contain_text(other.title)
    expect(table.get_by_role("link", name=reference)).to_be_visible()
    expect(table).to_contain_text(TITLE)
    expect(table.locator("tbody tr")).to_have_count(1)

    incident = Incident.objects.get(reference=reference)
    assert incident.state == State.ACKNOWLEDGED
    assert incident.timeline.filter(action__contains="Restarted the market analysis agent").exists()
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_bad_form_shows_field_errors_and_creates_nothing(page: Page, live_server, engineer):
    log_in(page, live_server.url, engineer.username)
    page.goto(f"{live_server.url}/incidents/new/")

    page.get_by_label("Estimated financial impact (USD)").fill("-5")
    page.get_by_role("radio", name=re.compile(r"^Sev2\s+High")).check()
    page.get_by_role("main").get_by_role("button", name="Log incident").click()

    expect(page.get_by_role("heading", name="Log incident")).to_be_visible()
    expect(page.get_by_text("Give the incident a short title.")).to_be_visible()
    expect(page.get_by_text("Ensure this value is greater than or equal to 0")).to_be_visible()
    expect(page.get_by_label("Estimated financial impact (USD)")).to_have_attribute("aria-invalid", "true")
    assert Incident.objects.count() == 0
    assert page.js_errors == []  # type: ignore[attr-defined]
