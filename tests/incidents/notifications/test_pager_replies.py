"""End to end over real HTTP: the agent simulator's pager receives the page, then answers it the
way a provider relays a reply (signed), and the portal acts on it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from incidents.devtools.simulator import SimulatorServer
from incidents.escalation.models import EscalationEvent
from incidents.escalation.services import deadlines_fire_due
from incidents.models import State, TimelineEntry
from incidents.notifications.models import Notification
from tests.celery_fixtures import wait_for
from tests.factories import deliver_outbox, make_roster, open_incident

# live_server needs transactional tests; serialized_rollback restores the seeded policy rows.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

SECRET = "pager-test-secret"


@pytest.fixture
def pager(live_server, settings) -> Iterator[tuple[SimulatorServer, str]]:
    """The simulator's pager as the SMS/voice provider, replying to this live server."""
    settings.TMT_SMS_PROVIDER_WEBHOOK_SECRET = SECRET
    server = SimulatorServer(agent_ports={}, control_port=0, reply_url=live_server.url, reply_secret=SECRET)
    endpoints = server.start_in_thread()
    settings.TMT_SMS_PROVIDER_URL = f"{endpoints.control_url}/pager"
    yield server, endpoints.control_url
    server.stop()


def _paged(level: int = 1):
    team = make_roster()
    incident = open_incident(level=level, reported_by=team["im"])
    deadlines_fire_due()
    deliver_outbox()
    # With a dispatcher running it may be the one that sends it.
    sms = wait_for(
        lambda: Notification.objects.filter(incident=incident, channel="sms", state="sent").order_by("pk").first(),
        timeout=10,
        what="the first SMS page",
    )
    return incident, sms


def test_an_sms_reply_sent_through_the_simulator_acknowledges(pager):
    _, control = pager
    incident, sms = _paged()
    pages = httpx.get(f"{control}/pager").json()["pages"]
    page = next(p for p in pages if p["to"] == sms.address and p["channel"] == "sms")
    assert f"Reply 4 to ack {incident.reference}" in page["body"] and "/ack/" in page["body"]
    answer = httpx.post(f"{control}/pager/reply", json={"to": sms.address, "body": "4"}, timeout=15)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == 200 and answer.json()["portal"]["result"] == "acknowledged"
    incident.refresh_from_db()
    assert incident.state == State.ACKNOWLEDGED and incident.acknowledged_by == sms.recipient
    assert TimelineEntry.objects.filter(
        incident=incident, action__startswith=f"Acknowledged by {sms.recipient.get_full_name()} by SMS reply"
    ).exists()
    assert httpx.get(f"{control}/pager").json()["replies"][0]["portal"]["result"] == "acknowledged"


def test_a_keypress_through_the_simulator_acknowledges(pager):
    _, control = pager
    incident, sms = _paged()
    phone = sms.recipient.person.phone
    answer = httpx.post(
        f"{control}/pager/reply", json={"from": phone, "channel": "voice", "digits": "4"}, timeout=15
    ).json()
    assert answer["status"] == 200, answer
    incident.refresh_from_db()
    assert incident.state == State.ACKNOWLEDGED


def test_a_reply_signed_with_the_wrong_secret_is_refused(pager, live_server):
    incident, sms = _paged()
    impostor = SimulatorServer(
        agent_ports={}, control_port=0, reply_url=live_server.url, reply_secret="someone-elses-secret"
    )
    control = impostor.start_in_thread().control_url
    try:
        answer = httpx.post(f"{control}/pager/reply", json={"from": sms.address, "body": "ACK"}, timeout=15).json()
    finally:
        impostor.stop()
    assert answer["status"] == 403 and answer["portal"]["error"] == "bad_signature"
    incident.refresh_from_db()
    assert incident.state == State.DETECTED


def test_the_pager_refuses_a_reply_it_cannot_send(pager):
    _, control = pager
    for bad in ({"body": "ACK"}, {"from": "+447700900001"}, {"from": "+44", "body": "4", "channel": "fax"}):
        answer = httpx.post(f"{control}/pager/reply", json=bad, timeout=15)
        assert answer.status_code == 400, bad


def test_esc_through_the_simulator_pages_the_next_level_within_seconds(pager, dispatcher):
    _, control = pager
    incident, sms = _paged(level=2)  # the dispatcher is running: it fires and delivers as well
    first = sms.recipient
    answer = httpx.post(f"{control}/pager/reply", json={"to": sms.address, "body": "ESC"}, timeout=15).json()
    assert answer["status"] == 200 and answer["portal"]["result"] == "escalated", answer
    # Step 1 fires at once (the dispatcher is woken at commit), long before its response time.
    event = wait_for(
        lambda: EscalationEvent.objects.filter(incident=incident, rule="ack", step=1).first(),
        timeout=5,
        what="step 1 to fire",
    )
    assert event.fired_at - incident.detected_at < timedelta(seconds=30)
    incident.refresh_from_db()
    assert incident.state == State.DETECTED
    entry = TimelineEntry.objects.get(incident=incident, action__startswith="Escalated now by")
    assert entry.owner == first and "by SMS reply: step 1" in entry.action
