"""Each affected system's RTO: a deadline per system that pages the incident manager when the
system is not restored in time, and the live clocks on the incident page and the dashboard."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from incidents import services
from incidents.escalation import services as escalation
from incidents.escalation.models import Deadline, EscalationEvent
from incidents.notifications import services as notifications
from incidents.notifications.models import Notification
from tests.factories import open_incident, system, tick_initial_assessment

pytestmark = pytest.mark.django_db


def rto_rows(incident) -> dict[str, Deadline]:
    return {
        d.rule: d for d in Deadline.objects.filter(incident=incident, kind=Deadline.Kind.RTO_BREACH, cancelled_at=None)
    }


def deliver_sms(incident) -> None:
    for row in Notification.objects.filter(incident=incident, channel="sms", event__rule__startswith="rto_breach:"):
        notifications.notification_deliver(notification_id=row.pk, now=row.next_attempt_at)


def resolve(incident, user, *, at):
    services.incident_transition(incident=incident, name="acknowledge", user=user, at=at)
    services.incident_transition(incident=incident, name="start_investigation", user=user, at=at)
    tick_initial_assessment(incident, user)
    services.incident_transition(incident=incident, name="contain", user=user, at=at)
    incident = services.incident_update(incident=incident, user=user, resolution_actions="Restarted the engine.")
    services.incident_transition(incident=incident, name="resolve", user=user, at=at)
    incident.refresh_from_db()
    return incident


def test_one_rto_deadline_per_affected_system_from_the_start_time(team):
    incident = open_incident(reported_by=team["oncall1"], level=1, systems=("circuit_breaker", "execution_engine"))
    rows = rto_rows(incident)
    assert set(rows) == {"rto_breach:circuit_breaker", "rto_breach:execution_engine"}
    assert rows["rto_breach:circuit_breaker"].due_at == incident.started_at + timedelta(minutes=5)
    assert rows["rto_breach:execution_engine"].due_at == incident.started_at + timedelta(minutes=15)


@pytest.mark.parametrize(("offset", "paged"), [(-1, False), (0, True), (1, True)])
def test_the_incident_manager_is_paged_when_the_rto_passes(team, sms_provider, offset, paged):
    """Just below the RTO nothing; at it and above it one page to the incident manager."""
    incident = open_incident(reported_by=team["oncall1"], level=2, systems=("circuit_breaker",))
    due = incident.started_at + timedelta(minutes=5)
    escalation.deadlines_fire_due(now=due + timedelta(seconds=offset))
    deliver_sms(incident)
    pages = sms_provider.to(team["im"].person.sms_number)
    assert len(pages) == (1 if paged else 0)
    event = EscalationEvent.objects.filter(incident=incident, rule="rto_breach:circuit_breaker").first()
    assert (event is not None) is paged
    if paged:
        assert event.target_user == team["im"]
        assert "Circuit Breaker Agent not restored within its RTO of 5 min" in event.summary
        # Fired once: a later pass pages nobody again.
        escalation.deadlines_fire_due(now=due + timedelta(minutes=10))
        deliver_sms(incident)
        assert len(sms_provider.to(team["im"].person.sms_number)) == 1


def test_no_page_when_the_system_is_restored_before_its_rto(team, sms_provider):
    incident = open_incident(reported_by=team["oncall1"], level=2, systems=("circuit_breaker",))
    due = incident.started_at + timedelta(minutes=5)
    resolve(incident, team["oncall1"], at=due - timedelta(seconds=1))
    row = Deadline.objects.get(incident=incident, rule="rto_breach:circuit_breaker")
    assert row.cancelled_at is not None and row.fired_at is None
    escalation.deadlines_fire_due(now=due + timedelta(minutes=1))
    deliver_sms(incident)
    assert not EscalationEvent.objects.filter(incident=incident, rule__startswith="rto_breach:").exists()
    assert sms_provider.to(team["im"].person.sms_number) == []


def test_adding_a_system_arms_its_clock_and_removing_one_cancels_it(team):
    incident = open_incident(reported_by=team["oncall1"], level=2, systems=("market_analysis",))
    services.incident_update(
        incident=incident, user=team["oncall1"], affected_systems=[system("market_analysis"), system("database")]
    )
    assert set(rto_rows(incident)) == {"rto_breach:market_analysis", "rto_breach:database"}
    services.incident_update(incident=incident, user=team["oncall1"], affected_systems=[system("database")])
    pending = {d.rule for d in Deadline.objects.filter(incident=incident, kind="rto_breach", cancelled_at=None)}
    assert pending == {"rto_breach:database"}


def test_an_earlier_start_time_moves_the_clock(team):
    incident = open_incident(reported_by=team["oncall1"], level=2, systems=("execution_engine",))
    earlier = incident.started_at - timedelta(minutes=10)
    services.incident_update(incident=incident, user=team["oncall1"], started_at=earlier)
    assert rto_rows(incident)["rto_breach:execution_engine"].due_at == earlier + timedelta(minutes=15)


def test_a_drill_arms_no_rto_page(team):
    incident = open_incident(reported_by=team["oncall1"], level=1, systems=("circuit_breaker",), is_drill=True)
    assert rto_rows(incident) == {}


def test_the_incident_page_and_dashboard_show_a_live_rto_clock_per_system(client, team):
    incident = open_incident(reported_by=team["oncall1"], level=1, systems=("circuit_breaker", "database"))
    client.force_login(team["oncall1"])
    page = client.get(incident.get_absolute_url()).content.decode()
    due = (incident.started_at + timedelta(minutes=5)).isoformat()
    assert 'data-testid="rto-clock" data-system="Circuit Breaker Agent"' in page
    assert 'data-testid="rto-clock" data-system="Database"' in page
    assert f'data-due="{due}"' in page
    dashboard = client.get(reverse("incidents:dashboard")).content.decode()
    assert "Circuit Breaker Agent (5 min)" in dashboard
    assert f'data-due="{due}"' in dashboard
