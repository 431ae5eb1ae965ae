"""The RTO clocks tick in a real browser: one per affected system on the incident page and the
dashboard, counting down to the system's RTO and showing "overdue" once it has passed."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from tests.factories import DEMO_PASSWORD, open_incident

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_rto_clocks_tick_per_system_on_the_incident_page_and_dashboard(page: Page, live_server, engineer):
    # Started 6 minutes ago: the circuit breaker's 5-minute RTO has passed, the execution
    # engine's 15 minutes have not.
    incident = open_incident(
        reported_by=engineer,
        level=2,
        systems=("circuit_breaker", "execution_engine"),
        started_at=timezone.now() - timedelta(minutes=6),
    )
    page.goto(live_server.url)
    page.get_by_label("Username").fill(engineer.username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.goto(live_server.url + incident.get_absolute_url())
    breaker = page.get_by_test_id("rto-clock").filter(has_text="Circuit Breaker Agent")
    engine = page.get_by_test_id("rto-clock").filter(has_text="Execution Engine")
    expect(breaker.locator(".clock")).to_have_text(re.compile(r"^overdue by 1m \d\ds$"))
    expect(breaker.locator(".clock")).to_have_class(re.compile(r"clock-overdue"))
    clock = engine.locator(".clock")
    expect(clock).to_have_text(re.compile(r"^due in (8|9)m \d\ds$"))
    first = clock.inner_text()
    expect(clock).not_to_have_text(first, timeout=3000)  # it ticks without a reload

    page.goto(live_server.url + "/")
    rto = page.get_by_test_id("dashboard-rto")
    expect(rto).to_contain_text("Circuit Breaker Agent (5 min)")
    expect(rto.locator(".clock").first).to_have_text(re.compile(r"^overdue by"))
