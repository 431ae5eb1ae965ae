"""Live pages in Chromium against the ASGI server: a change made anywhere shows on open pages
within 2 s without a reload, a new major incident raises a notification and counts in the tab
title, and with the event stream down the pages still update by polling."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from playwright.sync_api import Browser, BrowserContext, Page, expect

from incidents import services
from incidents.api.models import AlertIntegration
from incidents.api.services.alerts import alert_integration_issue_token
from incidents.models import Incident
from incidents.roles import ensure_role_groups
from tests.asgi_server import AsgiServer, session_cookie
from tests.browser import watch_csp_violations
from tests.e2e.conftest import LAPTOP
from tests.factories import UserFactory, open_incident

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PUSH_S = 2.0

# Records what the page asks of the Notification API (the permission is granted to the context).
HOOK_NOTIFICATIONS = """
window.__notifications = [];
window.Notification = class {
  constructor(title, options) { window.__notifications.push({ title, body: (options || {}).body }); }
  static get permission() { return "granted"; }
  static requestPermission() { return Promise.resolve("granted"); }
};
"""

COUNT_PERMISSION_REQUESTS = """
window.__permissionRequests = 0;
Notification.requestPermission = () => { window.__permissionRequests += 1; return Promise.resolve("default"); };
"""


def _user(role: str, username: str):
    ensure_role_groups()
    user = UserFactory(username=username)
    user.groups.add(Group.objects.get(name=role))
    return user


def _signed_in(context: BrowserContext, server: AsgiServer, user) -> BrowserContext:
    context.add_cookies([{"name": "sessionid", "value": session_cookie(user), "url": server.url}])
    return context


def _live(page: Page) -> None:
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "live")


def test_a_second_browser_sees_the_first_ones_note_and_acknowledgement_within_2s(
    asgi_server: AsgiServer, page: Page, browser: Browser
):
    engineer = _user("On-Call Engineer", "priya")
    manager = _user("Incident Manager", "hannah")
    incident = open_incident(reported_by=engineer, level=2, title="Risk agent rejecting orders")
    url = f"{asgi_server.url}{incident.get_absolute_url()}"
    _signed_in(page.context, asgi_server, engineer)
    other_context = browser.new_context(viewport=LAPTOP, locale="en-GB", timezone_id="UTC")
    violations = watch_csp_violations(other_context)
    try:
        other = _signed_in(other_context, asgi_server, manager).new_page()
        for p in (page, other):
            p.goto(url)
            _live(p)

        note = "Restarted the risk agent on node 2"
        page.get_by_role("textbox", name="Note").fill(note)
        page.get_by_role("button", name="Add note").click()
        started = time.monotonic()
        expect(other.get_by_test_id("timeline")).to_contain_text(note, timeout=PUSH_S * 1000)
        note_s = time.monotonic() - started

        page.get_by_role("button", name="Acknowledge", exact=True).click()
        started = time.monotonic()
        expect(other.locator("#incident-head .badge.state")).to_have_text("Acknowledged", timeout=PUSH_S * 1000)
        ack_s = time.monotonic() - started
        # The manager's buttons follow the new state too (no stale "Acknowledge" to press).
        expect(other.get_by_role("button", name="Acknowledge", exact=True)).to_have_count(0)
        print(f"note seen after {note_s:.2f} s, acknowledgement after {ack_s:.2f} s")
        assert other.url == url, "the other page was not reloaded"
        assert violations == []
    finally:
        other_context.close()
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_a_new_automated_sev1_appears_on_an_open_dashboard_with_a_notification(
    asgi_server: AsgiServer, browser: Browser
):
    engineer = _user("On-Call Engineer", "priya")
    monitoring = UserFactory(username="monitoring", is_active=False)
    integration = AlertIntegration(
        name="Generic", kind=AlertIntegration.Kind.GENERIC, reporter=monitoring, default_severity=1
    )
    token = alert_integration_issue_token(integration=integration)
    context = browser.new_context(viewport=LAPTOP, locale="en-GB", timezone_id="UTC", permissions=["notifications"])
    violations = watch_csp_violations(context)
    context.add_init_script(HOOK_NOTIFICATIONS)
    try:
        page = _signed_in(context, asgi_server, engineer).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{asgi_server.url}/")
        _live(page)
        expect(page).to_have_title("Dashboard · TMT Incident Response")

        answer = httpx.post(
            f"{asgi_server.url}/api/v1/alerts/",
            json={"source": "prometheus", "fingerprint": "cb-down", "summary": "Circuit breaker not answering"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code in (200, 201, 202), answer.text
        started = time.monotonic()
        opened = Incident.objects.get(alert_fingerprint__endswith="cb-down")
        assert opened.severity.level == 1
        expect(page.locator("#live-dashboard")).to_contain_text(opened.reference, timeout=PUSH_S * 1000)
        expect(page).to_have_title("(1) Dashboard · TMT Incident Response", timeout=PUSH_S * 1000)
        print(f"on the dashboard after {time.monotonic() - started:.2f} s")
        notifications = page.evaluate("window.__notifications")
        assert notifications == [{"title": f"Sev1 {opened.reference}", "body": opened.title}]
        assert page.locator('link[rel="icon"]').get_attribute("href").startswith("data:image/png")

        # Acknowledged elsewhere: the count goes, and no second notification for the same one.
        services.incident_acknowledge(incident=opened, user=engineer)
        expect(page).to_have_title("Dashboard · TMT Incident Response", timeout=PUSH_S * 1000)
        assert page.evaluate("window.__notifications.length") == 1
        assert violations == [] and errors == []
    finally:
        context.close()


def test_with_the_stream_down_the_list_still_updates_by_polling(asgi_server: AsgiServer, page: Page, settings):
    settings.TMT_LIVE_POLL_SECONDS = 1
    engineer = _user("On-Call Engineer", "priya")
    _signed_in(page.context, asgi_server, engineer)
    page.context.route(re.compile(r".*/live/stream/.*"), lambda route: route.abort())
    page.context.add_init_script(COUNT_PERMISSION_REQUESTS)
    page.goto(f"{asgi_server.url}/incidents/")
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "polling")
    expect(page.get_by_test_id("live-status")).to_have_text("Updates every 1 s")

    opened = open_incident(reported_by=engineer, level=3, title="Slow end-of-day report")
    expect(page.locator("#incident-table")).to_contain_text(opened.reference, timeout=3000)

    # The sound can be turned off, and stays off on the next page.
    sound = page.get_by_test_id("live-sound")
    expect(sound).to_have_text("Sound on")
    sound.click()
    expect(sound).to_have_text("Sound off")
    # Notifications are asked for once, from a click, never on load.
    ask = page.get_by_test_id("live-notify")
    expect(ask).to_be_visible()
    assert page.evaluate("window.__permissionRequests") == 0
    ask.click()
    expect(ask).to_be_hidden()
    assert page.evaluate("window.__permissionRequests") == 1
    page.reload()
    expect(page.get_by_test_id("live-sound")).to_have_text("Sound off")
    expect(page.get_by_test_id("live-notify")).to_be_hidden()
    assert page.evaluate("window.__permissionRequests") == 0

    # Signed out meanwhile (the session ended): the next poll shows the login page, not a
    # login form swapped into the table.
    Session.objects.all().delete()
    expect(page).to_have_url(re.compile(r"/accounts/login/"), timeout=5000)
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_the_health_page_shows_a_target_going_down_within_2s(asgi_server: AsgiServer, page: Page, monkeypatch):
    from django.utils import timezone

    from incidents.monitoring import poller
    from incidents.monitoring import views as monitoring_views
    from incidents.monitoring.models import HealthTarget
    from incidents.monitoring.services import health_results_apply

    # The panel's own timer out of the way: what updates it here is the push.
    monkeypatch.setattr(monitoring_views, "PANEL_REFRESH_SECONDS", 300)
    engineer = _user("On-Call Engineer", "priya")
    target = HealthTarget.objects.order_by("pk").first()
    now = timezone.now()
    health_results_apply([poller.ProbeResult(target.pk, now, True, 10.0, 200, "")])
    _signed_in(page.context, asgi_server, engineer)
    page.goto(f"{asgi_server.url}/health/")
    _live(page)
    row = page.locator(f'[data-testid="health-target"][data-target="{target.name}"] [data-testid="health-state"]')
    expect(row).to_have_text("Healthy")

    target.refresh_from_db()
    started = time.monotonic()
    for i in range(1, target.failures_before_down + 1):
        at = now + timezone.timedelta(seconds=i)
        health_results_apply([poller.ProbeResult(target.pk, at, False, 5000.0, None, "connection refused")])
    target.refresh_from_db()
    assert target.state == HealthTarget.State.DOWN
    expect(row).to_have_text("Down", timeout=PUSH_S * 1000)
    print(f"health page updated after {time.monotonic() - started:.2f} s")
    assert page.js_errors == []  # type: ignore[attr-defined]
