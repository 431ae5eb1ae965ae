"""Acknowledging from the page itself, in Chromium: the SMS's one-tap link opened on a phone with
no session, and an SMS reply sent through the agent simulator's pager."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from incidents.devtools.simulator import SimulatorServer
from incidents.escalation.services import deadlines_fire_due
from incidents.models import State, TimelineEntry
from incidents.notifications.models import Notification
from tests.browser import watch_csp_violations
from tests.e2e.test_health_journey import log_in
from tests.factories import deliver_outbox, make_roster, open_incident

# live_server needs transactional tests; serialized_rollback restores the seeded policy rows.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PHONE = {"width": 390, "height": 844}
SECRET = "e2e-webhook-secret"


@pytest.fixture
def pager(live_server, settings) -> Iterator[str]:
    """The simulator's pager as the SMS/voice provider, replying to the live server; its control URL."""
    settings.TMT_SITE_URL = live_server.url  # the links in pages lead to this server
    settings.TMT_SMS_PROVIDER_WEBHOOK_SECRET = SECRET
    server = SimulatorServer(agent_ports={}, control_port=0, reply_url=live_server.url, reply_secret=SECRET)
    control = server.start_in_thread().control_url
    settings.TMT_SMS_PROVIDER_URL = f"{control}/pager"
    yield control
    server.stop()


def _paged(title: str):
    """A Sev1 whose first page went out through the pager; (team, incident, its SMS row)."""
    team = make_roster()
    incident = open_incident(level=1, title=title, reported_by=team["im"])
    deadlines_fire_due()
    deliver_outbox()
    sms = Notification.objects.filter(incident=incident, channel="sms", state="sent").order_by("pk").first()
    return team, incident, sms


def test_acknowledging_from_the_sms_link_in_a_fresh_phone_browser(browser: Browser, pager):
    _, incident, sms = _paged("Circuit breaker not tripping")
    pages = httpx.get(f"{pager}/pager").json()["pages"]
    body = next(p["body"] for p in pages if p["to"] == sms.address and p["channel"] == "sms")
    link = re.search(r"https?://\S+/ack/[0-9a-f]{64}/", body).group(0)

    # A phone that has never signed in: a fresh context, no cookies, no session.
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="en-GB", timezone_id="UTC")
    violations = watch_csp_violations(context)
    phone = context.new_page()
    try:
        phone.goto(link)
        expect(phone.get_by_test_id("ack-reference")).to_have_text(incident.reference)
        expect(phone.get_by_test_id("ack-title")).to_have_text("Circuit breaker not tripping")
        expect(phone.get_by_test_id("ack-state")).to_have_text("Detected")
        button = phone.get_by_role("button", name="Acknowledge")
        expect(button).to_be_visible()
        # Nothing wider than the phone: no sideways scrolling.
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert button.bounding_box()["width"] >= 300  # a thumb-sized button
        button.tap()
        expect(phone.get_by_test_id("ack-done")).to_have_text(f"{incident.reference} acknowledged. Thank you.")
        expect(phone.get_by_role("button", name="Acknowledge")).to_have_count(0)

        # The same link again (a second tap, a forwarded SMS): refused, nothing written.
        entries = TimelineEntry.objects.filter(incident=incident).count()
        phone.goto(link)
        expect(phone.get_by_test_id("ack-refused")).to_contain_text("This link was already used")
        assert TimelineEntry.objects.filter(incident=incident).count() == entries
        assert not [c for c in context.cookies() if c["name"] == "sessionid"]
    finally:
        context.close()
    assert violations == []
    incident.refresh_from_db()
    assert incident.state == State.ACKNOWLEDGED and incident.acknowledged_by == sms.recipient
    assert TimelineEntry.objects.filter(
        incident=incident,
        action__startswith=f"Acknowledged by {sms.recipient.get_full_name()} by the link in the SMS page",
    ).exists()


def test_an_sms_reply_through_the_simulator_acknowledges(page: Page, live_server, pager):
    team, incident, sms = _paged("Market data feed stale")
    log_in(page, live_server.url, team["im"].username)
    page.goto(live_server.url + incident.get_absolute_url())
    expect(page.locator(".badge.state")).to_have_text("Detected")

    # The paged engineer texts back "4"; the simulator signs it and posts it to the portal.
    answer = httpx.post(f"{pager}/pager/reply", json={"to": sms.address, "body": "4"}, timeout=15).json()
    assert answer["status"] == 200 and answer["portal"]["result"] == "acknowledged", answer

    page.reload()
    expect(page.locator(".badge.state")).to_have_text("Acknowledged")
    name = sms.recipient.get_full_name()
    expect(page.get_by_test_id("timeline")).to_contain_text(f"Acknowledged by {name} by SMS reply")
