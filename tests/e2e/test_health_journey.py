"""The health page in a real browser: the circuit breaker goes down, an engineer stops trading."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect

from incidents.devtools.simulator import SimulatorServer, agent_ports_from_base
from incidents.models import Incident, TimelineEntry
from incidents.monitoring import services as health
from incidents.monitoring.models import EmergencyStop, HealthTarget
from tests.factories import DEMO_PASSWORD
from tests.health_targets import point_trading_database_at_portal

# live_server needs transactional tests; serialized_rollback restores the seeded policy rows.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

TARGETS = {
    "circuit_breaker": "Circuit Breaker Agent",
    "market_analysis": "Market Analysis Agent",
    "risk_management": "Risk Management Agent",
    "execution_engine": "Execution Engine",
}


@pytest.fixture
def agents(settings) -> Iterator[SimulatorServer]:
    server = SimulatorServer(agent_ports=agent_ports_from_base(0), control_port=None)
    endpoints = server.start_in_thread()
    for agent, name in TARGETS.items():
        HealthTarget.objects.filter(name=name).update(
            url=endpoints.agent_url(agent) + "/health",
            interval=timedelta(seconds=1),
            timeout=timedelta(milliseconds=500),
        )
    point_trading_database_at_portal(interval=timedelta(seconds=1), timeout=timedelta(milliseconds=900))
    settings.TMT_CIRCUIT_BREAKER_URL = endpoints.agent_url("circuit_breaker")
    settings.TMT_CIRCUIT_BREAKER_TIMEOUT = 2.0
    yield server
    server.stop()


def sweep(times: int = 1) -> None:
    """What the beat task does every second (here with every target due at once)."""
    for _ in range(times):
        HealthTarget.objects.update(next_check_at=None)
        health.health_poll_due()


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(base_url)
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name=f"Log out {username}")).to_be_visible()


def test_circuit_breaker_down_on_the_health_page_then_an_engineer_stops_trading(
    page: Page, live_server, engineer, agents: SimulatorServer
):
    sweep()
    log_in(page, live_server.url, engineer.username)
    page.get_by_role("navigation").get_by_role("link", name="Health").click()
    expect(page.get_by_role("heading", name="Health", exact=True)).to_be_visible()
    breaker = page.get_by_test_id("health-target").filter(has_text="Circuit Breaker Agent")
    expect(breaker.get_by_test_id("health-state")).to_have_text("Healthy")
    expect(page.get_by_test_id("health-target")).to_have_count(len(TARGETS) + 1)  # and the trading database

    # The agent dies; three failed checks in a row (the seeded failures_before_down) make it down.
    agents.inject_fault("circuit_breaker", "down")
    sweep(3)
    # No reload: the panel refreshes itself (htmx, every 5 s). A marker on window survives a swap.
    page.evaluate("window.__noReload = true")
    expect(breaker.get_by_test_id("health-state")).to_have_text("Down", timeout=15_000)
    expect(breaker.get_by_test_id("health-error")).to_contain_text("unreachable")
    assert page.evaluate("window.__noReload") is True
    incident = Incident.objects.get(automated_system__key="circuit_breaker")
    expect(breaker.get_by_role("link", name=incident.reference)).to_be_visible()
    expect(breaker).to_contain_text("Sev1")
    market = page.get_by_test_id("health-target").filter(has_text="Market Analysis Agent")
    expect(market.get_by_test_id("health-state")).to_have_text("Healthy")

    # From the automated incident's page, the engineer triggers the emergency stop.
    breaker.get_by_role("link", name=incident.reference).click()
    expect(page.get_by_test_id("incident-reference")).to_have_text(incident.reference)
    page.get_by_test_id("emergency-stop-button").click()
    expect(page.get_by_role("heading", name="Trading emergency stop")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text(f"Linked incident: {incident.reference}")
    stop_button = page.get_by_role("button", name="Stop trading now")

    # Submitting without a reason or the confirmation sends nothing.
    stop_button.click()
    expect(page.get_by_text("Give the reason for stopping trading.")).to_be_visible()
    expect(page.get_by_text("Tick the box to confirm the emergency stop.")).to_be_visible()
    assert not EmergencyStop.objects.exists()

    # The circuit breaker is down, so the first attempt cannot succeed: the page says so.
    page.get_by_label("Reason").fill("Circuit breaker agent down; halting trading as a precaution")
    page.get_by_label("I confirm: halt trading now").check()
    stop_button.click()
    outcome = page.get_by_test_id("emergency-stop-outcome")
    expect(outcome).to_have_text(re.compile(r"Trading NOT confirmed stopped: Agent unreachable"))
    expect(page.get_by_test_id("emergency-stop-error")).to_contain_text("unreachable")

    # The agent is back: trying again stops trading, verified through its status endpoint.
    agents.clear_fault("circuit_breaker")
    page.get_by_role("link", name="Try again").click()
    page.get_by_label("Reason").fill("Circuit breaker back up; stopping trading until the cause is known")
    page.get_by_label("I confirm: halt trading now").check()
    page.get_by_role("button", name="Stop trading now").click()
    expect(outcome).to_have_text("Trading stopped: Trading stopped (verified)")
    status = httpx.get(agents.endpoints.agent_url("circuit_breaker") + "/api/v1/emergency-status", timeout=5).json()
    assert status["trading_halted"] is True
    assert status["reason"] == "system_emergency"
    assert status["details"] == "Circuit breaker back up; stopping trading until the cause is known"

    # Both attempts are on the incident's timeline, with who, the reason and the agent's answer.
    page.get_by_test_id("emergency-stop-incident").click()
    timeline = page.get_by_test_id("timeline")
    expect(timeline).to_contain_text("AGENT UNREACHABLE")
    expect(timeline).to_contain_text("TRADING STOPPED (VERIFIED)")
    expect(timeline).to_contain_text(status["stop_id"])
    # The prompt to stop (the breaker went down), two attempts (request and result each), and
    # the halt the verified one began.
    assert incident.timeline.filter(kind=TimelineEntry.Kind.EMERGENCY_STOP).count() == 6
    assert Incident.objects.count() == 1, "the stop was linked to the automated incident"
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_the_emergency_stop_button_is_not_offered_without_the_permission(page: Page, live_server, sysadmin, agents):
    sweep()
    log_in(page, live_server.url, sysadmin.username)
    page.get_by_role("navigation").get_by_role("link", name="Health").click()
    expect(page.get_by_test_id("health-target")).to_have_count(len(TARGETS) + 1)  # and the trading database
    expect(page.get_by_test_id("emergency-stop-button")).to_have_count(0)
    response = page.goto(live_server.url + "/health/emergency-stop/")
    assert response is not None and response.status == 403
