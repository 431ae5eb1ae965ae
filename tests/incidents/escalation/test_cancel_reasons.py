"""Why a pending page did not go out: each way a deadline is cancelled records its own reason,
which the API's deadlines list and the admin show ("acknowledged", "system no longer
affected", ...). Only that incident's rows, and only the rows the change concerns, are touched."""

from datetime import timedelta
from decimal import Decimal

import pytest

from incidents import services
from incidents.escalation import services as escalation
from incidents.escalation import status_updates
from incidents.escalation.models import Deadline, RegulatoryObligation
from incidents.models import SeverityLevel
from tests.factories import open_incident, system, tick_initial_assessment

pytestmark = pytest.mark.django_db


def reasons(incident) -> dict[tuple[str, int], str]:
    """(rule, step) of each cancelled row -> why."""
    rows = Deadline.objects.filter(incident=incident).exclude(cancelled_at=None)
    return {(d.rule, d.step): d.cancel_reason for d in rows}


def pending(incident) -> set[tuple[str, int]]:
    rows = Deadline.objects.filter(incident=incident, fired_at=None, cancelled_at=None)
    return set(rows.values_list("rule", "step"))


@pytest.fixture
def bystander(team):
    """Another open incident whose pending rows no change to the first may touch."""
    incident = open_incident(reported_by=team["oncall3"], level=1, systems=("execution_engine",))
    before = pending(incident)
    assert before
    yield incident
    assert pending(incident) == before
    assert reasons(incident) == {}


def test_acknowledging_cancels_the_chain_as_acknowledged(team, bystander):
    incident = open_incident(reported_by=team["oncall2"], level=2)
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    assert reasons(incident) == {("ack", 0): "acknowledged"}
    assert not any(rule == "ack" for rule, _ in pending(incident))


def test_a_new_impact_re_arms_the_unacknowledged_chain_as_re_evaluated(team, bystander):
    incident = open_incident(reported_by=team["oncall2"], level=2)
    services.incident_update(incident=incident, user=team["oncall2"], financial_impact_usd=Decimal("100"))
    assert reasons(incident) == {("ack", 0): "re-evaluated"}
    assert ("ack", 0) in pending(incident)


def test_a_lowered_impact_cancels_the_head_of_risk_page_as_no_longer_applying(team, bystander):
    incident = open_incident(reported_by=team["oncall2"], level=3, financial_impact_usd=Decimal("6000"))
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    services.incident_update(incident=incident, user=team["oncall2"], financial_impact_usd=Decimal("100"))
    assert reasons(incident)[("role:head-of-risk-financial", 0)] == "no longer applies"


def test_a_sev1_lowered_to_sev3_cancels_the_outage_clock_and_the_status_cadence(team, bystander):
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    services.incident_update(incident=incident, user=team["oncall2"], severity=SeverityLevel.objects.get(level=3))
    cancelled = reasons(incident)
    assert cancelled[("outage_4h", 0)] == "severity no longer an outage"
    assert cancelled[("status:1", 1)] == "no status update cadence at this severity"


def test_a_status_update_replaces_the_last_cycles_reminder_as_clock_reset(team, bystander):
    incident = open_incident(reported_by=team["oncall1"], level=2, commander=team["oncall1"])
    draft = status_updates.status_update_draft(incident=incident)
    status_updates.status_update_post(
        incident=incident,
        user=team["oncall1"],
        subject=draft.subject,
        status=draft.status,
        impact="Orders delayed",
        details="Failing over",
        contact=draft.contact,
    )
    assert reasons(incident)[("status:1", 1)] == "status update clock reset"
    assert ("status:2", 1) in pending(incident)


def test_a_raised_severity_moves_this_cycles_reminder_as_cadence_changed(team, bystander):
    incident = open_incident(reported_by=team["oncall1"], level=2, commander=team["oncall1"])
    sev2_due = Deadline.objects.get(incident=incident, rule="status:1", step=1).due_at
    services.incident_update(incident=incident, user=team["oncall1"], severity=SeverityLevel.objects.get(level=1))
    assert reasons(incident)[("status:1", 1)] == "cadence changed"
    moved = Deadline.objects.get(incident=incident, rule="status:1", step=1, cancelled_at=None)
    assert moved.due_at < sev2_due  # Sev1 asks for updates more often


def test_rto_rows_cancelled_for_a_removed_system_and_moved_for_an_earlier_start(team, bystander):
    incident = open_incident(reported_by=team["oncall1"], level=2, systems=("market_analysis", "database"))
    services.incident_update(incident=incident, user=team["oncall1"], affected_systems=[system("database")])
    assert reasons(incident)[("rto_breach:market_analysis", 0)] == "system no longer affected"
    assert ("rto_breach:database", 0) not in reasons(incident)
    services.incident_update(
        incident=incident, user=team["oncall1"], started_at=incident.started_at - timedelta(minutes=10)
    )
    assert reasons(incident)[("rto_breach:database", 0)] == "start time changed"
    assert ("rto_breach:database", 0) in pending(incident)


def test_resolving_cancels_what_is_left_as_incident_resolved(team, bystander):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    user = team["oncall1"]
    services.incident_transition(incident=incident, name="acknowledge", user=user)
    services.incident_transition(incident=incident, name="start_investigation", user=user)
    tick_initial_assessment(incident, user)
    services.incident_transition(incident=incident, name="contain", user=user)
    services.incident_update(incident=incident, user=user, resolution_actions="Restarted the engine.")
    services.incident_transition(incident=incident, name="resolve", user=user)
    cancelled = reasons(incident)
    assert cancelled[("status:1", 1)] == "incident resolved"
    assert {rule.split(":")[0] for rule, _ in pending(incident)} == {"review"}  # the review's clock runs on


def test_a_security_false_alarm_cancelled_raises_no_regulatory_notification(team, bystander):

    incident = open_incident(reported_by=team["oncall2"], level=2, category="security")
    services.incident_transition(incident=incident, name="cancel", user=team["oncall1"], reason="Pen test")
    assert reasons(incident)[("ack", 0)] == "incident cancelled"
    assert not RegulatoryObligation.objects.filter(incident=incident).exists()


def test_a_later_cancel_leaves_fired_and_already_cancelled_rows_as_they_were(team):
    incident = open_incident(reported_by=team["oncall2"], level=2)
    escalation.deadlines_fire_due(now=incident.detected_at)  # the first page fires
    first_page = Deadline.objects.get(incident=incident, rule="ack", step=0)
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    step1 = Deadline.objects.get(incident=incident, rule="ack", step=1)
    assert step1.cancel_reason == "acknowledged"

    services.incident_transition(incident=incident, name="cancel", user=team["im"], reason="False alarm")

    again = Deadline.objects.get(pk=step1.pk)
    assert (again.cancelled_at, again.cancel_reason) == (step1.cancelled_at, "acknowledged")
    first_page.refresh_from_db()
    assert first_page.fired_at is not None and first_page.cancelled_at is None and first_page.cancel_reason == ""
