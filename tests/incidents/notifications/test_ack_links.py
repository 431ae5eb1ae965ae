"""The one-tap acknowledgement link each page carries: no login, once, until it expires."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone

from incidents import services
from incidents.escalation.models import Deadline
from incidents.models import State, TimelineEntry
from incidents.notifications import acks
from incidents.notifications.models import AckLink, Notification
from incidents.notifications.selectors import token_hash
from tests.factories import deliver_outbox
from tests.test_security_headers import _assert_page

pytestmark = pytest.mark.django_db


def _csrf_client() -> Client:
    # A browser with no session: CSRF is enforced as in production.
    return Client(enforce_csrf_checks=True)


def _tap(client: Client, path: str):
    """Open the link, then press the page's button (a POST with the page's CSRF token)."""
    shown = client.get(path)
    assert shown.status_code == 200, shown.content[:500]
    token = shown.context["csrf_token"]
    return client.post(path, {"csrfmiddlewaretoken": str(token)})


def _entries(incident) -> int:
    return TimelineEntry.objects.filter(incident=incident).count()


def test_sms_voice_and_email_pages_carry_the_link_and_how_to_reply(page_incident):
    paged = page_incident()
    sms, voice = paged.bodies["sms"], paged.bodies["voice"]
    assert f"Reply 4 to ack {paged.incident.reference}, ESC to escalate now. One tap: " in sms
    assert "Press 4 to acknowledge." in voice
    # Each page has its own link (bound to that page, so to its person and incident).
    assert paged.token("sms") != paged.token("voice")
    links = AckLink.objects.filter(incident=paged.incident, user=paged.user)
    assert {link.notification.channel for link in links} == {"sms", "phone", "email"}
    # The email follow-up, sent after the policy's delay, carries one too.
    deliver_outbox(now=timezone.now() + timedelta(hours=1))
    (email,) = [m for m in mail.outbox if m.to == [paged.user.email]]
    assert "Acknowledge with one tap (no login; works once, for 60 minutes):" in email.body
    assert "/ack/" in email.body


def test_the_token_is_stored_only_as_a_hash(page_incident):
    paged = page_incident()
    token = paged.token()
    link = AckLink.objects.get(key_hash=token_hash(token))
    assert link.user == paged.user and link.incident == paged.incident
    # Nowhere in the outbox or the links table: a database read cannot replay it.
    assert not Notification.objects.filter(body__contains=token).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM notifications_acklink WHERE key_hash = %s", [token])
        assert cursor.fetchone()[0] == 0


def test_one_tap_acknowledges_without_a_session_and_says_how(page_incident):
    paged = page_incident()
    client = _csrf_client()
    shown = client.get(paged.link())
    body = shown.content.decode()
    assert paged.incident.reference in body and "Circuit breaker not tripping" in body
    assert 'data-testid="ack-button"' in body and "Severity 1" in body
    done = client.post(paged.link(), {"csrfmiddlewaretoken": str(shown.context["csrf_token"])})
    assert done.status_code == 200
    assert f"{paged.incident.reference} acknowledged" in done.content.decode()
    incident = paged.incident
    incident.refresh_from_db()
    assert incident.state == State.ACKNOWLEDGED and incident.acknowledged_by == paged.user
    entry = TimelineEntry.objects.filter(incident=incident, to_state=State.ACKNOWLEDGED).get()
    assert entry.action.startswith(f"Acknowledged by {paged.user.get_full_name()} by the link in the SMS page")
    assert entry.owner == paged.user
    # Through the service: the acknowledgement chain's next steps are cancelled.
    assert not Deadline.objects.filter(
        incident=incident, kind=Deadline.Kind.ACKNOWLEDGE, fired_at=None, cancelled_at=None
    ).exists()
    assert "_auth_user_id" not in client.session  # nobody was logged in


def test_a_post_without_the_pages_csrf_token_is_refused(page_incident):
    paged = page_incident()
    response = _csrf_client().post(paged.link())
    assert response.status_code == 403
    paged.incident.refresh_from_db()
    assert paged.incident.state == State.DETECTED


def test_a_reused_link_is_refused_and_writes_nothing(page_incident):
    paged = page_incident()
    client = _csrf_client()
    assert _tap(client, paged.link()).status_code == 200
    before = _entries(paged.incident)
    again = client.post(paged.link(), {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert again.status_code == 410
    assert "This link was already used" in again.content.decode()
    assert 'data-testid="ack-button"' not in again.content.decode()
    assert _entries(paged.incident) == before


def test_a_forged_link_is_refused_shows_nothing_and_writes_nothing(page_incident):
    paged = page_incident()
    before = _entries(paged.incident)
    real = paged.token()
    for forged in (secrets.token_hex(32), real[:-1] + ("0" if real[-1] != "0" else "1"), "x", real.upper()):
        client = _csrf_client()
        shown = client.get(f"/ack/{forged}/")
        assert shown.status_code == 404
        body = shown.content.decode()
        assert "This acknowledgement link is not valid" in body
        assert paged.incident.reference not in body and 'data-testid="ack-button"' not in body
        posted = client.post(f"/ack/{forged}/", {"csrfmiddlewaretoken": str(shown.context["csrf_token"])})
        assert posted.status_code == 404
    paged.incident.refresh_from_db()
    assert paged.incident.state == State.DETECTED and _entries(paged.incident) == before


def test_an_expired_link_is_refused_and_writes_nothing(page_incident):
    paged = page_incident()
    client = _csrf_client()
    shown = client.get(paged.link())
    AckLink.objects.filter(key_hash=token_hash(paged.token())).update(expires_at=timezone.now())
    before = _entries(paged.incident)
    posted = client.post(paged.link(), {"csrfmiddlewaretoken": str(shown.context["csrf_token"])})
    assert posted.status_code == 410 and "This link expired at" in posted.content.decode()
    paged.incident.refresh_from_db()
    assert paged.incident.state == State.DETECTED and _entries(paged.incident) == before
    assert AckLink.objects.get(key_hash=token_hash(paged.token())).used_at is None


def test_the_link_works_one_second_before_it_expires_and_not_at_expiry(page_incident):
    paged = page_incident()
    sms, voice = (AckLink.objects.get(key_hash=token_hash(paged.token(c))) for c in ("sms", "voice"))
    assert sms.expires_at == sms.notification.next_attempt_at + timedelta(hours=1)
    with pytest.raises(acks.ReplyRefused) as refused:
        acks.ack_link_redeem(raw=paged.token("voice"), now=voice.expires_at)
    assert refused.value.code == "expired_link"
    paged.incident.refresh_from_db()
    assert paged.incident.state == State.DETECTED
    outcome = acks.ack_link_redeem(raw=paged.token("sms"), now=sms.expires_at - timedelta(seconds=1))
    assert outcome.code == "acknowledged"
    paged.incident.refresh_from_db()
    assert paged.incident.state == State.ACKNOWLEDGED


def test_an_already_acknowledged_incident_says_who_and_when_and_writes_nothing(page_incident, team):
    paged = page_incident()
    client = _csrf_client()
    opened = client.get(paged.link())  # opened; meanwhile the incident manager acknowledges
    services.incident_acknowledge(incident=paged.incident, user=team["im"])
    before = _entries(paged.incident)
    posted = client.post(paged.link(), {"csrfmiddlewaretoken": str(opened.context["csrf_token"])})
    assert posted.status_code == 200
    assert f"already acknowledged by {team['im'].get_full_name()} at" in posted.content.decode()
    shown = client.get(paged.link())
    body = shown.content.decode()
    assert shown.status_code == 200
    assert f"already acknowledged by {team['im'].get_full_name()} at" in body
    assert 'data-testid="ack-button"' not in body
    assert _entries(paged.incident) == before
    assert AckLink.objects.get(key_hash=token_hash(paged.token())).used_at is None


def test_a_link_for_a_cancelled_incident_is_refused(page_incident, team):
    paged = page_incident()
    services.incident_transition(incident=paged.incident, name="cancel", user=team["im"], reason="False alarm")
    before = _entries(paged.incident)
    shown = _csrf_client().get(paged.link())
    assert shown.status_code == 409 and "is cancelled: there is nothing to acknowledge" in shown.content.decode()
    with pytest.raises(acks.ReplyRefused):
        acks.ack_link_redeem(raw=paged.token())
    assert _entries(paged.incident) == before


def test_the_link_page_is_throttled_per_address(page_incident, settings):
    paged = page_incident()
    settings.TMT_ACK_LINK_THROTTLE = "3/min"
    client = Client()
    answers = [client.get(paged.link()).status_code for _ in range(3)]
    assert answers == [200, 200, 200]
    held = client.get(paged.link())
    assert held.status_code == 429 and int(held["Retry-After"]) >= 1
    assert "Too many requests" in held.content.decode()
    # Another address is not held up by this one.
    assert Client(REMOTE_ADDR="10.0.0.9").get(paged.link()).status_code == 200


def test_no_link_for_someone_whose_role_cannot_acknowledge(page_incident, team):
    team["oncall1"].groups.clear()  # still on call (the rotation pages them), but no role
    paged = page_incident()
    assert paged.user == team["oncall1"]
    assert "/ack/" not in paged.bodies["sms"] and "Reply 4" not in paged.bodies["sms"]
    assert not AckLink.objects.filter(user=paged.user).exists()


def test_the_link_page_has_a_strict_policy_and_nothing_inline(page_incident):
    paged = page_incident()
    html = _assert_page(Client(), paged.link())
    assert '<link rel="stylesheet" href="/static/css/ack.css">' in html
    _assert_page(Client(), "/ack/" + "0" * 64 + "/", status=404)


def test_a_resent_page_carries_the_same_link_with_its_first_expiry(page_incident):
    paged = page_incident()
    row = Notification.objects.select_related("incident", "ack_link").get(
        incident=paged.incident, recipient=paged.user, channel=Notification.Channel.SMS
    )
    first = AckLink.objects.get(notification=row)
    assert acks.ack_links_issue([row]) == 1  # asked again (a re-send): the same row stays
    assert paged.link() in acks.page_text(row)
    assert AckLink.objects.filter(notification=row).count() == 1
    assert AckLink.objects.get(notification=row).expires_at == first.expires_at


def test_sending_a_page_makes_no_query_for_its_link(page_incident, django_assert_num_queries):
    paged = page_incident()
    row = Notification.objects.select_related("incident__severity", "event", "ack_link").get(
        incident=paged.incident, recipient=paged.user, channel=Notification.Channel.SMS
    )
    with django_assert_num_queries(0):
        text = acks.page_text(row)
    assert paged.link() in text
