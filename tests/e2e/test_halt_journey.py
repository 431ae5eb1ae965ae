"""The trading halt in a real browser: stop, the banner on every page, a four-eyes resume by two
people in two browser contexts; then a system-state capture downloaded as evidence."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from incidents.devtools.simulator import SimulatorServer
from incidents.models import EvidenceAttachment
from incidents.monitoring.models import DiagnosticProbe, TradingHalt
from tests.browser import watch_csp_violations
from tests.conftest import _user_in
from tests.e2e.test_health_journey import log_in
from tests.factories import open_incident

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture
def breaker(settings) -> Iterator[SimulatorServer]:
    server = SimulatorServer(agent_ports={"circuit_breaker": 0}, control_port=None)
    endpoints = server.start_in_thread()
    settings.TMT_CIRCUIT_BREAKER_URL = endpoints.agent_url("circuit_breaker")
    settings.TMT_CIRCUIT_BREAKER_TIMEOUT = 2.0
    yield server
    server.stop()


def agent_halted(server: SimulatorServer) -> bool:
    url = server.endpoints.agent_url("circuit_breaker") + "/api/v1/emergency-status"
    return httpx.get(url, timeout=5).json()["trading_halted"]


def test_stop_banner_on_every_page_then_resume_by_two_people(
    page: Page, browser: Browser, live_server, engineer, breaker
):
    risk = _user_in("Risk Manager", "risk")
    log_in(page, live_server.url, engineer.username)
    page.goto(live_server.url + "/health/emergency-stop/")
    page.get_by_label("Trigger condition").select_option("circuit_breaker_malfunction")
    page.get_by_label("Reason").fill("Breaker trips on every order")
    page.get_by_label("I confirm: halt trading now").check()
    page.get_by_role("button", name="Stop trading now").click()
    expect(page.get_by_test_id("emergency-stop-outcome")).to_have_text("Trading stopped: Trading stopped (verified)")

    banner = page.get_by_test_id("halt-banner")
    halt = TradingHalt.objects.get()
    text = f"TRADING HALTED since {halt.started_at:%H:%M} by {engineer.get_full_name()}: circuit breaker malfunction"
    expect(banner).to_contain_text(text)
    page.get_by_role("navigation").get_by_role("link", name="Incidents").click()
    expect(banner).to_contain_text(text)
    page.get_by_role("navigation").get_by_role("link", name="Dashboard").click()
    expect(banner).to_contain_text(text)

    # The engineer records the closed position and asks to resume.
    banner.get_by_role("link", name=re.compile("resume")).click()
    page.get_by_label("Instrument").fill("EUR/USD")
    page.get_by_label("Venue").fill("OANDA")
    page.get_by_label("Quantity").fill("250000")
    page.get_by_role("button", name="Record closure").click()
    expect(page.get_by_test_id("closures")).to_contain_text("EUR/USD")
    page.get_by_label("Why trading can resume").fill("Firmware rolled back; positions reconciled")
    page.get_by_role("button", name="Request resume").click()
    expect(page.get_by_test_id("resume-state")).to_have_text("Awaiting approval")
    expect(page.get_by_role("button", name="Approve and resume")).to_have_count(0)

    # The risk manager, in a browser of their own, approves; the agent confirms.
    context = browser.new_context(locale="en-GB", timezone_id="UTC")
    violations = watch_csp_violations(context)
    other = context.new_page()
    try:
        log_in(other, live_server.url, risk.username)
        other.get_by_test_id("halt-banner").get_by_role("link").click()
        other.get_by_role("button", name="Approve and resume").click()
        expect(other.get_by_text("Trading resumed: the circuit breaker confirms it.")).to_be_visible()
        expect(other.get_by_test_id("halt-banner")).to_have_count(0)
        assert violations == []
    finally:
        context.close()
    assert agent_halted(breaker) is False
    page.reload()
    expect(page.get_by_test_id("halt-banner")).to_have_count(0)
    expect(page.get_by_test_id("resume-state")).to_have_text("Resumed (verified)")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_capture_state_and_download_the_evidence(page: Page, live_server, engineer, breaker):
    DiagnosticProbe.objects.all().delete()
    agent = breaker.endpoints.agent_url("circuit_breaker")
    DiagnosticProbe.objects.create(name="Circuit breaker /health", kind="http", url=agent + "/health", timeout_s=2)
    DiagnosticProbe.objects.create(name="Host", kind="host")
    incident = open_incident(reported_by=engineer)
    log_in(page, live_server.url, engineer.username)
    page.goto(live_server.url + incident.get_absolute_url())
    page.get_by_test_id("capture-state-button").click()
    expect(page.get_by_text(re.compile(r"System state captured: 2 ok, 0 failed, 0 timed out"))).to_be_visible()
    evidence = EvidenceAttachment.objects.get(incident=incident)
    with page.expect_download() as download:
        page.locator("#evidence").get_by_role("link", name=evidence.original_name).click()
    data = Path(download.value.path()).read_bytes()
    assert hashlib.sha256(data).hexdigest() == evidence.sha256
    assert page.js_errors == []  # type: ignore[attr-defined]
