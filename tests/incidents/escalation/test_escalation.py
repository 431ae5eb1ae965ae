"""The escalation rules, fired in-process at chosen times (the worker tests cover delivery)."""

from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from incidents import services
from incidents.escalation import services as escalation
from incidents.escalation import status_updates
from incidents.escalation.models import (
    Deadline,
    EscalationEvent,
    EscalationPolicy,
    EscalationStep,
    RegulatoryObligation,
)
from incidents.models import SeverityLevel
from incidents.notifications.models import Notification
from incidents.oncall.models import OnCallOverride, Person
from incidents.oncall.selectors import on_call_at
from tests.factories import open_incident, severity

pytestmark = pytest.mark.django_db


def fire_at(at):
    return escalation.deadlines_fire_due(now=at)


def events(incident):
    return list(
        EscalationEvent.objects.filter(incident=incident)
        .order_by("fired_at", "id")
        .values_list("rule", "step", "target_user__username")
    )


def test_new_sev1_pages_on_call_and_cto_at_once(team):
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=Decimal("20000"))
    fire_at(timezone.now())
    fired = events(incident)
    assert ("ack", 0, "oncall1") in fired
    assert ("role:cto-sev1", 0, "cto") in fired
    assert ("role:head-of-risk-financial", 0, "head_of_risk") in fired
    channels = set(Notification.objects.filter(event__rule="role:cto-sev1").values_list("channel", flat=True))
    assert channels == {"sms", "phone", "email"}
    email = Notification.objects.get(event__rule="role:cto-sev1", channel="email")
    sms = Notification.objects.get(event__rule="role:cto-sev1", channel="sms")
    assert email.next_attempt_at > sms.next_attempt_at  # email is the follow-up


def test_unacknowledged_sev2_walks_the_chain(team):
    incident = open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=Decimal("1500"))
    t0 = incident.detected_at
    fire_at(t0)
    fire_at(t0 + timedelta(minutes=14))
    assert [e[:2] for e in events(incident)] == [("ack", 0)]
    fire_at(t0 + timedelta(minutes=15, seconds=1))
    fire_at(t0 + timedelta(minutes=20, seconds=2))
    fire_at(t0 + timedelta(minutes=25, seconds=3))
    ack = [e for e in events(incident) if e[0] == "ack"]
    assert ack == [("ack", 0, "oncall1"), ("ack", 1, "oncall1"), ("ack", 2, "oncall2"), ("ack", 3, "im")]


def test_acknowledging_stops_paging_but_keeps_duration_clocks(team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    fire_at(incident.detected_at)
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    pending = set(
        Deadline.objects.filter(incident=incident, fired_at=None, cancelled_at=None).values_list("rule", flat=True)
    )
    assert "ack" not in pending
    assert {"role:ceo-sev1-2h", "outage_4h", "status:1"} <= pending
    fire_at(incident.detected_at + timedelta(hours=2, seconds=1))
    assert ("role:ceo-sev1-2h", 0, "ceo") in events(incident)
    assert not any(e[0] == "ack" and e[1] > 0 for e in events(incident))


def test_resolution_cancels_escalations(team):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    services.incident_transition(incident=incident, name="cancel", user=team["oncall1"], reason="false alarm")
    fire_at(incident.detected_at + timedelta(hours=5))
    assert not any(rule.startswith("role:") for rule, *_ in events(incident))


def test_raising_impact_pages_head_of_risk_once(team):
    incident = open_incident(reported_by=team["oncall1"], level=2, financial_impact_usd=Decimal("2000"))
    fire_at(timezone.now())
    assert not any(e[0] == "role:head-of-risk-financial" for e in events(incident))
    services.incident_update(incident=incident, user=team["oncall1"], financial_impact_usd=Decimal("6000"))
    fire_at(timezone.now())
    services.incident_update(incident=incident, user=team["oncall1"], financial_impact_usd=Decimal("9000"))
    fire_at(timezone.now())
    assert [e for e in events(incident) if e[0] == "role:head-of-risk-financial"] == [
        ("role:head-of-risk-financial", 0, "head_of_risk")
    ]


def test_lowered_severity_cancels_what_no_longer_applies(team):
    incident = open_incident(reported_by=team["oncall1"], level=1, financial_impact_usd=None)
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    services.incident_update(incident=incident, user=team["oncall1"], severity=severity(3))
    pending = set(
        Deadline.objects.filter(incident=incident, fired_at=None, cancelled_at=None).values_list("rule", flat=True)
    )
    assert "role:ceo-sev1-2h" not in pending and "outage_4h" not in pending


def test_raised_severity_arms_cto_and_ceo(team):
    incident = open_incident(reported_by=team["oncall1"], level=3, financial_impact_usd=None)
    services.incident_update(incident=incident, user=team["oncall1"], severity=severity(1))
    fire_at(timezone.now())
    assert ("role:cto-sev1", 0, "cto") in events(incident)
    assert Deadline.objects.filter(incident=incident, rule="role:ceo-sev1-2h", fired_at=None).exists()


def test_outage_crossing_four_hours_creates_24h_obligation(team):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    fire_at(incident.started_at + timedelta(hours=4, seconds=1))
    obligation = RegulatoryObligation.objects.get(incident=incident)
    assert obligation.category.key == "outage_over_4h"
    assert obligation.due_at - obligation.raised_at == timedelta(hours=24)


def test_status_update_overdue_reminds_commander_then_incident_manager(team):
    incident = open_incident(reported_by=team["im"], level=1, commander=team["oncall3"])
    t0 = incident.detected_at
    fire_at(t0 + timedelta(minutes=30, seconds=1))
    fire_at(t0 + timedelta(minutes=45, seconds=2))
    status = [e for e in events(incident) if e[0].startswith("status:")]
    assert status == [("status:1", 1, "oncall3"), ("status:1", 2, "im")]


def test_posting_status_update_resets_the_clock(team):
    incident = open_incident(reported_by=team["oncall1"], level=2, commander=team["oncall1"])
    draft = status_updates.status_update_draft(incident=incident)
    assert draft.subject.startswith("[INCIDENT] TMT System - Sev2 - ") and draft.status == "Investigating"
    update = status_updates.status_update_post(
        incident=incident,
        user=team["oncall1"],
        subject=draft.subject,
        status=draft.status,
        impact="Orders delayed",
        details="Failing over",
        contact=draft.contact,
    )
    pending = Deadline.objects.get(incident=incident, kind="status_update", fired_at=None, cancelled_at=None)
    assert pending.rule == "status:2"
    assert abs((pending.due_at - (update.posted_at + timedelta(hours=1))).total_seconds()) < 1
    assert incident.timeline.filter(kind="status_update").count() == 1


def test_policy_is_frozen_at_open(team):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    sev2 = SeverityLevel.objects.get(level=2)
    sev2.response_time = timedelta(hours=5)
    sev2.save()
    fire_at(incident.detected_at)
    fire_at(incident.detected_at + timedelta(minutes=15, seconds=1))
    assert ("ack", 1, "oncall1") in events(incident)


def pending(incident):
    return set(
        Deadline.objects.filter(incident=incident, fired_at=None, cancelled_at=None).values_list(
            "kind", "rule", "step", "due_at"
        )
    )


@pytest.mark.parametrize(
    "shape",
    [
        {"level": 1, "financial_impact_usd": Decimal("20000")},
        {"level": 2, "financial_impact_usd": Decimal("6000"), "category": "compliance"},
        {"level": 3, "financial_impact_usd": None},
        {"level": 4, "financial_impact_usd": None, "category": "security"},
        {"level": 1, "financial_impact_usd": None, "is_drill": True},
    ],
    ids=["sev1-impact", "sev2-compliance", "sev3", "sev4-security", "sev1-drill"],
)
def test_open_arms_exactly_what_reevaluation_keeps(team, shape):
    # Opening takes a shortcut (one INSERT, no cancel or exists queries); re-evaluating the same
    # incident at the same moment must leave the same deadlines pending.
    incident = open_incident(reported_by=team["oncall1"], **shape)
    armed = pending(incident)
    assert any(rule == "ack" for _, rule, _, _ in armed)
    escalation.escalation_reevaluate(incident=incident, now=incident.detected_at)
    assert pending(incident) == armed


def test_on_call_override_wins(team):
    # Mid-morning of the rotation's first day (hand-over at midnight UTC), whatever the clock
    # says: two hours after 22:00 would already be the next person's shift.
    now = timezone.now().astimezone(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    OnCallOverride.objects.create(
        rotation=team["rotation"],
        user=team["oncall3"],
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
    )
    assert on_call_at("On-Call Engineer", now) == team["oncall3"]
    assert on_call_at("On-Call Engineer", now + timedelta(hours=2)) == team["oncall1"]
    assert on_call_at("On-Call Engineer", now + timedelta(days=1, hours=2)) == team["oncall2"]


def test_unreachable_person_moves_on_at_once(team):
    Person.objects.filter(user=team["oncall1"]).delete()
    team["oncall1"].email = ""
    team["oncall1"].save()
    incident = open_incident(reported_by=team["oncall2"], level=2)
    fire_at(incident.detected_at)
    assert incident.timeline.filter(action__startswith="Cannot reach").exists()
    # step 1 (oncall1 again) is due now rather than at the response time
    assert Deadline.objects.get(incident=incident, rule="ack", step=1, fired_at=None).due_at <= timezone.now()


def test_drill_raises_no_regulatory_obligation(team):
    incident = open_incident(reported_by=team["oncall1"], level=1, is_drill=True, category="security")
    assert escalation.regulatory_raise(incident=incident, category_key="major-security-breach") is None
    fire_at(incident.started_at + timedelta(hours=5))
    assert not RegulatoryObligation.objects.filter(incident=incident).exists()


def test_policy_loop_and_e164_are_refused():
    first = EscalationPolicy.objects.get(is_default=True)
    second = EscalationPolicy.objects.create(
        name="Backup", continue_with=first, status_update_escalate_after=timedelta(minutes=5)
    )
    first.continue_with = second
    with pytest.raises(ValidationError, match="loop"):
        first.full_clean()
    from tests.factories import UserFactory

    with pytest.raises(ValidationError, match="E.164"):
        Person(user=UserFactory(), phone="07700 900123").full_clean()
    assert EscalationStep.objects.filter(policy=first).count() == 3


def test_deputy_is_never_the_person_on_call(team):
    now = timezone.now()
    # oncall2 (tomorrow's primary, so today's deputy) covers today: the deputy moves on.
    OnCallOverride.objects.create(
        rotation=team["rotation"],
        user=team["oncall2"],
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
    )
    assert on_call_at("On-Call Engineer", now) == team["oncall2"]
    assert on_call_at("On-Call Engineer", now, deputy=True) == team["oncall3"]


def test_regulatory_reminder_reaches_everyone_with_a_webhook_configured(team):
    from incidents.notifications.models import WebhookEndpoint

    WebhookEndpoint.objects.create(name="ops chat", url="http://127.0.0.1:9/hook")
    incident = open_incident(reported_by=team["im"], level=2, commander=team["oncall3"])
    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity")
    fire_at(obligation.due_at - timedelta(hours=3))  # the reminder, 4 h before due
    event = EscalationEvent.objects.get(incident=incident, rule=f"regulatory:{obligation.pk}", step=1)
    paged = set(Notification.objects.filter(event=event, channel="sms").values_list("recipient__username", flat=True))
    assert paged == set() or paged <= {"head_of_risk", "oncall3"}  # reminders go by email
    emailed = set(
        Notification.objects.filter(event=event, channel="email").values_list("recipient__username", flat=True)
    )
    assert emailed == {"head_of_risk", "oncall3"}
    assert Notification.objects.filter(event=event, channel="webhook").count() == 1


def test_editing_the_incident_does_not_silence_an_overdue_status_escalation(team):
    incident = open_incident(reported_by=team["im"], level=1, commander=team["oncall3"])
    t0 = incident.detected_at
    fire_at(t0 + timedelta(minutes=30, seconds=1))  # reminder to the commander
    services.incident_update(
        incident=incident, user=team["oncall3"], description="More detail", financial_impact_usd=None
    )
    fire_at(t0 + timedelta(minutes=45, seconds=2))
    assert ("status:1", 2, "im") in events(incident)


def test_follow_up_email_is_not_sent_once_acknowledged(team):
    from incidents.notifications import services as notifications

    incident = open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None)
    fire_at(incident.detected_at)
    email = Notification.objects.get(event__rule="ack", event__step=0, channel="email")
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    result = notifications.notification_deliver(notification_id=email.pk, now=email.next_attempt_at)
    email.refresh_from_db()
    assert result.startswith("skipped") and email.state == "skipped"


def test_lowered_severity_stops_the_status_update_cadence(team):
    incident = open_incident(reported_by=team["oncall1"], level=2, financial_impact_usd=None)
    services.incident_update(incident=incident, user=team["oncall1"], severity=severity(3))
    assert not Deadline.objects.filter(
        incident=incident, kind="status_update", fired_at=None, cancelled_at=None
    ).exists()


def test_no_page_for_a_resolved_incident_from_a_row_armed_before(team):
    incident = open_incident(reported_by=team["oncall1"], level=3, financial_impact_usd=None)
    stale = Deadline.objects.create(
        incident=incident, kind="status_update", rule="status:9", step=2, due_at=timezone.now()
    )
    services.incident_transition(incident=incident, name="cancel", user=team["oncall1"], reason="false alarm")
    fire_at(timezone.now())
    stale.refresh_from_db()
    assert stale.cancelled_at is not None and not EscalationEvent.objects.filter(deadline=stale).exists()


def _deliver(incident, *, channels, now=None) -> None:
    from incidents.notifications import services as notifications

    rows = Notification.objects.filter(incident=incident, channel__in=channels, state="pending")
    for row in rows:
        notifications.notification_deliver(notification_id=row.pk, now=now or row.next_attempt_at)


@pytest.mark.parametrize("email_first", [True, False], ids=["email-sent-first", "email-later"])
def test_sev1_cto_page_failing_by_sms_and_phone_pages_the_deputy(team, sms_provider, email_first):
    from django.contrib.auth.models import Group

    from incidents.oncall.models import RoleContact

    RoleContact.objects.filter(role=Group.objects.get(name="CTO")).update(deputy=team["im_deputy"])
    cto = team["cto"].person
    refused = {cto.sms_number, cto.phone}
    sms_provider.respond_with = lambda payload: 400 if payload["to"] in refused else 200
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    fire_at(timezone.now())
    if email_first:  # the follow-up went out before the pages failed: it must not hold the chain
        email = Notification.objects.get(event__rule="role:cto-sev1", channel="email")
        _deliver(incident, channels=["email"], now=email.next_attempt_at)
        assert Notification.objects.get(pk=email.pk).state == "sent"
    _deliver(incident, channels=["sms", "phone"])
    fire_at(timezone.now())
    deputy = team["im_deputy"]
    assert EscalationEvent.objects.get(incident=incident, rule="role:cto-sev1:deputy").target_user == deputy
    _deliver(incident, channels=["sms", "phone"])
    assert {p["to"] for p in sms_provider.received} >= {deputy.person.sms_number, deputy.person.phone}


def test_a_role_page_nobody_received_goes_to_the_incident_manager_when_there_is_no_deputy(team, sms_provider, client):
    cto = team["cto"].person
    refused = {cto.sms_number, cto.phone}
    sms_provider.respond_with = lambda payload: 400 if payload["to"] in refused else 200
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    fire_at(timezone.now())
    _deliver(incident, channels=["sms", "phone"])
    assert not EscalationEvent.objects.filter(incident=incident, rule__endswith=":manager").exists()
    fire_at(timezone.now())
    event = EscalationEvent.objects.get(incident=incident, rule="role:cto-sev1:manager")
    assert event.target_user == team["im"]
    assert "could not be reached" in event.summary
    assert not EscalationEvent.objects.filter(incident=incident, rule="role:cto-sev1:deputy").exists()
    # The incident page says what failed, at the top.
    client.force_login(team["oncall2"])
    html = client.get(incident.get_absolute_url()).content.decode()
    banner = html[html.index('data-testid="failed-pages"') :]
    assert "2 pages could not be delivered" in banner[:300]
    assert cto.sms_number in banner and cto.phone in banner


def test_no_failure_banner_while_every_page_is_delivered(team, sms_provider, client):
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    fire_at(timezone.now())
    _deliver(incident, channels=["sms", "phone"])
    client.force_login(team["oncall2"])
    assert b'data-testid="failed-pages"' not in client.get(incident.get_absolute_url()).content


def test_one_urgent_page_delivered_keeps_the_chain_on_that_person(team, sms_provider):
    # Just short of "every urgent page failed": the call is refused, the SMS goes through.
    refused = team["oncall1"].person.phone
    sms_provider.respond_with = lambda payload: 400 if payload["to"] == refused else 200
    incident = open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None)
    fire_at(timezone.now())
    _deliver(incident, channels=["sms", "phone"])
    fire_at(timezone.now())
    assert [e[:2] for e in events(incident)] == [("ack", 0)], "the chain moved on too early"
    step1 = Deadline.objects.get(incident=incident, rule="ack", step=1, fired_at=None)
    assert step1.due_at > timezone.now() + timedelta(minutes=10)


def test_unexpected_channel_error_is_a_logged_attempt_with_backoff_and_the_rest_go_on(
    team, sms_provider, monkeypatch, settings
):
    from incidents.notifications import services as notifications

    settings.TMT_NOTIFY_BACKOFF_SECONDS = 10
    incident = open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None)
    fire_at(timezone.now())
    real_email = notifications._CHANNELS["email"]

    def broken_email(notification):
        raise AttributeError("'NoneType' object has no attribute 'write'")

    monkeypatch.setitem(notifications._CHANNELS, "email", broken_email)
    rows = list(Notification.objects.filter(incident=incident).order_by("pk"))
    later = max(r.next_attempt_at for r in rows)
    result = notifications.notifications_deliver(notification_ids=[r.pk for r in rows], now=later)
    assert result == "sent 2, retry 1"
    email = Notification.objects.get(incident=incident, channel="email")
    assert email.state == "pending" and email.attempts == 1
    assert "unexpected error: AttributeError" in email.last_error
    assert email.next_attempt_at >= timezone.now() + timedelta(seconds=9)
    assert list(email.attempt_log.values_list("outcome", flat=True)) == ["transient"]
    assert not Notification.objects.filter(state="sending").exists()
    monkeypatch.setitem(notifications._CHANNELS, "email", real_email)


def test_a_late_outcome_never_overwrites_a_row_another_delivery_took_over(team, sms_provider, settings):
    """A send that outlasted the takeover time: the taker's outcome stands, the late one is dropped."""
    from incidents.notifications import services as notifications

    settings.TMT_NOTIFY_TAKEOVER_SECONDS = 20
    open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None)
    fire_at(timezone.now())
    (slow,) = notifications.notifications_claim_due(limit=1)
    assert slow.channel in ("sms", "phone"), "urgent pages are claimed first"
    # Just short of the takeover time, nobody else may take the row.
    almost = slow.claimed_at + timedelta(seconds=19.9)
    assert slow.pk not in [r.pk for r in notifications.notifications_claim_due(limit=10, now=almost)]
    # Just past it, another delivery takes the row over and sends it.
    (taker,) = [
        r
        for r in notifications.notifications_claim_due(limit=10, now=slow.claimed_at + timedelta(seconds=20.1))
        if r.pk == slow.pk
    ]
    assert notifications.notification_send(notification=taker) == "sent"
    # The first delivery's send now fails late: its outcome must not undo the taker's.
    late = notifications._record_failure(slow, "HTTP 503", permanent=False)
    assert late == notifications.SUPERSEDED
    row = Notification.objects.get(pk=slow.pk)
    assert row.state == "sent" and row.attempts == 1
    assert list(row.attempt_log.values_list("outcome", flat=True)) == ["sent"]
    assert notifications._record_sent(slow, timezone.now()) == notifications.SUPERSEDED
    assert row.attempt_log.count() == 1


def test_a_failed_chat_webhook_moves_no_chain_on(team, sms_provider, settings):
    from incidents.notifications import services as notifications
    from incidents.notifications.models import WebhookEndpoint

    WebhookEndpoint.objects.create(name="chat", url=sms_provider.url.replace("/send", "/hook"))
    sms_provider.respond_with = lambda payload: 404 if "incident" in payload else 200
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    fire_at(timezone.now())
    hooks = Notification.objects.filter(incident=incident, channel="webhook")
    assert hooks.exists()
    for hook in hooks:
        assert notifications.notification_deliver(notification_id=hook.pk).startswith("failed")
    fire_at(timezone.now())
    fallbacks = EscalationEvent.objects.filter(incident=incident, rule__regex=r":(deputy|manager)$")
    assert not fallbacks.exists()
    assert not EscalationEvent.objects.filter(incident=incident, rule="ack", step__gt=0).exists()
