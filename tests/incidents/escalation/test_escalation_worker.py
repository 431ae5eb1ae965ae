"""Escalations fired and delivered by the paging dispatcher against PostgreSQL, in real time.

The policy is data, so each test shortens the response times and chain delays instead of
faking the clock.
"""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from incidents import services
from incidents.escalation.models import (
    EscalationEvent,
    EscalationStep,
    EscalationTrigger,
    RegulatoryObligation,
)
from incidents.models import SeverityLevel
from incidents.notifications.models import Notification
from tests.celery_fixtures import wait_for
from tests.factories import make_roster, open_incident

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("postgres", "dispatcher"),
]


@pytest.fixture
def team():
    return make_roster()


def fast_policy(*, response_s: float = 2, step_delay_s: float = 1, ceo_after_s: float | None = None) -> None:
    for level in SeverityLevel.objects.all():
        level.response_time = timedelta(seconds=response_s)
        level.response_next_business_day = False
        level.save()
    EscalationStep.objects.filter(order__gt=1).update(delay=timedelta(seconds=step_delay_s))
    if ceo_after_s is not None:
        EscalationTrigger.objects.filter(key__in=["ceo-sev1-2h", "cto-prolonged-sev2"]).update(
            open_for=timedelta(seconds=ceo_after_s)
        )


def phone_of(user) -> str:
    return user.person.sms_number


def test_sev1_pages_the_cto_by_sms_and_phone_then_email(team, sms_provider):
    incident = open_incident(reported_by=team["oncall1"], level=1, financial_impact_usd=None)
    wait_for(lambda: len(sms_provider.to(team["cto"].person.sms_number)) == 1, what="SMS to the CTO")
    wait_for(lambda: len(sms_provider.to(team["cto"].person.phone)) == 1, what="call to the CTO")
    page = sms_provider.to(team["cto"].person.sms_number)[0]
    assert page["channel"] == "sms" and incident.reference in page["body"]
    assert sms_provider.to(team["cto"].person.phone)[0]["channel"] == "voice"
    event = EscalationEvent.objects.get(incident=incident, rule="role:cto-sev1")
    assert event.target_user == team["cto"]
    email = Notification.objects.get(event=event, channel="email")
    assert email.state == "pending" and email.next_attempt_at > timezone.now()  # follow-up, later
    assert incident.timeline.filter(kind="escalation", action__contains="CTO").exists()


def test_unacknowledged_sev2_walks_the_chain(team, sms_provider):
    fast_policy(response_s=2, step_delay_s=1)
    incident = open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None)
    wait_for(
        lambda: EscalationEvent.objects.filter(incident=incident, rule="ack").count() == 4, what="all four chain steps"
    )
    steps = list(
        EscalationEvent.objects.filter(incident=incident, rule="ack")
        .order_by("step")
        .values_list("step", "target_user__username")
    )
    assert steps == [(0, "oncall1"), (1, "oncall1"), (2, "oncall2"), (3, "im")]
    wait_for(lambda: sms_provider.to(phone_of(team["im"])), what="SMS to the incident manager")
    assert len(sms_provider.to(phone_of(team["oncall1"]))) == 2  # paged at open and again


def test_acknowledged_incident_stops_paging_but_keeps_ceo_clock(team, sms_provider):
    fast_policy(response_s=2, step_delay_s=1, ceo_after_s=3)
    incident = open_incident(reported_by=team["oncall1"], level=1, financial_impact_usd=None)
    wait_for(lambda: EscalationEvent.objects.filter(incident=incident, rule="ack", step=0).exists(), what="first page")
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    wait_for(lambda: sms_provider.to(phone_of(team["ceo"])), timeout=15, what="the CEO page after 3 s")
    assert not EscalationEvent.objects.filter(incident=incident, rule="ack", step__gt=0).exists()
    assert EscalationEvent.objects.filter(incident=incident, rule="role:cto-sev1").count() == 1


def test_raising_impact_to_6000_pages_head_of_risk_once(team, sms_provider):
    incident = open_incident(reported_by=team["oncall1"], level=2, financial_impact_usd=Decimal("2000"))
    services.incident_update(incident=incident, user=team["oncall1"], financial_impact_usd=Decimal("6000"))
    wait_for(lambda: sms_provider.to(phone_of(team["head_of_risk"])), what="Head of Risk page")
    services.incident_update(incident=incident, user=team["oncall1"], financial_impact_usd=Decimal("8000"))
    wait_for(
        lambda: EscalationEvent.objects.filter(incident=incident, rule="ack", step=0).exists(), what="on-call page"
    )
    time.sleep(2)  # give a second firing every chance to happen
    assert EscalationEvent.objects.filter(incident=incident, rule="role:head-of-risk-financial").count() == 1
    assert len(sms_provider.to(phone_of(team["head_of_risk"]))) == 1


def test_outage_crossing_four_hours_creates_24h_obligation(team, sms_provider):
    started = timezone.now() - timedelta(hours=4) + timedelta(seconds=2)
    incident = open_incident(reported_by=team["oncall1"], level=2, started_at=started)
    obligation = wait_for(
        lambda: RegulatoryObligation.objects.filter(incident=incident, category__key="outage_over_4h").first(),
        what="outage obligation",
    )
    assert obligation.due_at - obligation.raised_at == timedelta(hours=24)
    assert incident.timeline.filter(action__startswith="Regulatory notification required").exists()


def test_provider_refusing_a_number_moves_on_to_the_next_step(team, sms_provider):
    fast_policy(response_s=30, step_delay_s=30)
    refused = {phone_of(team["oncall1"]), team["oncall1"].person.phone}
    sms_provider.respond_with = lambda payload: 400 if payload["to"] in refused else 200
    team["oncall1"].email = ""
    team["oncall1"].save()
    incident = open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None)
    # Every page to oncall1 fails permanently, so the chain moves on to the deputy at once
    # instead of waiting out the 30 s response time and the 30 s step delay.
    wait_for(lambda: sms_provider.to(phone_of(team["oncall2"])), timeout=15, what="the deputy's page")
    assert EscalationEvent.objects.get(incident=incident, rule="ack", step=2).target_user == team["oncall2"]
    assert incident.timeline.filter(kind="notification", action__contains="FAILED").count() >= 2


def test_transient_failures_retry_then_deliver(team, sms_provider, settings):
    settings.TMT_NOTIFY_BACKOFF_SECONDS = 1
    calls = {"n": 0}

    def flaky(payload):
        calls["n"] += 1
        return 503 if calls["n"] <= 2 else 200

    sms_provider.respond_with = flaky
    incident = open_incident(reported_by=team["oncall1"], level=2, financial_impact_usd=None)
    notification = wait_for(
        lambda: Notification.objects.filter(incident=incident, channel="sms", state="sent").first(),
        timeout=20,
        what="delivery",
    )
    outcomes = list(notification.attempt_log.values_list("outcome", flat=True))
    assert outcomes[-1] == "sent" and "transient" in outcomes
