"""A page nobody received moves the escalation on at once, and only the step that comes next:
the acknowledgement chain's next step falls due now, a role's page goes to the deputy, then to
the incident manager. Nothing moves for an acknowledged or closed incident."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from incidents import services, wakeups
from incidents.escalation import services as escalation
from incidents.escalation.models import Deadline, EscalationEvent
from incidents.oncall.models import RoleContact
from tests.factories import open_incident

pytestmark = pytest.mark.django_db


def ack_due(incident) -> dict[int, object]:
    rows = Deadline.objects.filter(incident=incident, rule="ack", fired_at=None, cancelled_at=None)
    return {row.step: row.due_at for row in rows}


def first_page(incident) -> EscalationEvent:
    escalation.deadlines_fire_due(now=incident.detected_at)
    return EscalationEvent.objects.get(incident=incident, rule="ack", step=0)


def test_the_next_step_of_the_chain_falls_due_now_and_the_dispatcher_is_woken(team, woken):
    incident = open_incident(reported_by=team["oncall2"], level=2)
    other = open_incident(reported_by=team["oncall2"], level=2)
    event = first_page(incident)
    first_page(other)
    before, others_before = ack_due(incident), ack_due(other)
    now = incident.detected_at + timedelta(minutes=1)
    woken.clear()

    escalation.escalation_advance_after_failure(event=event, now=now)

    assert before[1] == incident.detected_at + timedelta(minutes=15)
    assert ack_due(incident) == {1: now}  # the step that comes next, now
    assert ack_due(other) == others_before  # another incident's chain keeps its times
    assert wakeups.DEADLINES in woken


@pytest.mark.parametrize("then", ["fired", "cancelled"])
def test_a_step_already_fired_or_cancelled_is_not_moved(team, woken, then):
    incident = open_incident(reported_by=team["oncall2"], level=2)
    event = first_page(incident)
    step1 = Deadline.objects.get(incident=incident, rule="ack", step=1)
    setattr(step1, f"{then}_at", timezone.now())
    step1.save(update_fields=[f"{then}_at"])
    due = step1.due_at
    woken.clear()

    escalation.escalation_advance_after_failure(event=event, now=incident.detected_at + timedelta(minutes=1))

    assert Deadline.objects.get(pk=step1.pk).due_at == due
    assert wakeups.DEADLINES not in woken  # nothing moved, nothing to wake for


def test_only_the_step_after_the_failed_one_moves_not_a_later_one(team, woken):
    incident = open_incident(reported_by=team["oncall2"], level=2)
    event = first_page(incident)
    step1 = Deadline.objects.get(incident=incident, rule="ack", step=1)
    # A later step already waiting (armed while another was pending) keeps its own time.
    later = step1.due_at + timedelta(minutes=15)
    Deadline.objects.create(incident=incident, kind=Deadline.Kind.ACKNOWLEDGE, rule="ack", step=2, due_at=later)
    now = incident.detected_at + timedelta(minutes=1)

    escalation.escalation_advance_after_failure(event=event, now=now)

    assert ack_due(incident) == {1: now, 2: later}


@pytest.mark.parametrize("then", ["acknowledged", "cancelled"])
def test_nothing_moves_once_someone_acknowledged_or_the_incident_closed(team, then):
    incident = open_incident(reported_by=team["oncall2"], level=2)
    event = first_page(incident)
    if then == "acknowledged":
        services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    else:
        services.incident_transition(incident=incident, name="cancel", user=team["oncall1"], reason="False alarm")
        # Rows the cancel did not reach (armed by a transaction that committed after it): only
        # the closed state stands in the way.
        Deadline.objects.filter(incident=incident).update(cancelled_at=None)
    before = dict(Deadline.objects.filter(incident=incident).values_list("pk", "due_at"))
    event.incident.refresh_from_db()

    escalation.escalation_advance_after_failure(event=event, now=incident.detected_at + timedelta(minutes=1))

    assert dict(Deadline.objects.filter(incident=incident).values_list("pk", "due_at")) == before


def role_page(incident, rule: str) -> EscalationEvent:
    escalation.deadlines_fire_due(now=timezone.now())
    return EscalationEvent.objects.get(incident=incident, rule=rule)


def pending_role_rules(incident) -> set[str]:
    return set(
        Deadline.objects.filter(
            incident=incident, kind=Deadline.Kind.ROLE_ESCALATION, fired_at=None, cancelled_at=None
        ).values_list("rule", flat=True)
    )


def test_a_role_page_nobody_received_goes_to_the_deputy_first_due_now(team):
    RoleContact.objects.filter(role=Group.objects.get(name="CTO")).update(deputy=team["im_deputy"])
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    event = role_page(incident, "role:cto-sev1")
    now = timezone.now()

    escalation.escalation_advance_after_failure(event=event, now=now)

    row = Deadline.objects.get(incident=incident, rule="role:cto-sev1:deputy")
    assert (row.step, row.due_at, row.fired_at) == (1, now, None)
    assert "role:cto-sev1:manager" not in pending_role_rules(incident)


def test_the_deputys_failed_page_goes_to_the_incident_manager_and_the_managers_to_nobody_else(team):
    RoleContact.objects.filter(role=Group.objects.get(name="CTO")).update(deputy=team["im_deputy"])
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    escalation.escalation_advance_after_failure(event=role_page(incident, "role:cto-sev1"), now=timezone.now())
    deputy = role_page(incident, "role:cto-sev1:deputy")

    escalation.escalation_advance_after_failure(event=deputy, now=timezone.now())

    row = Deadline.objects.get(incident=incident, rule="role:cto-sev1:manager")
    assert row.step == 1
    manager = role_page(incident, "role:cto-sev1:manager")
    assert manager.target_user == team["im"]
    rules_before = set(Deadline.objects.filter(incident=incident).values_list("rule", "step"))

    escalation.escalation_advance_after_failure(event=manager, now=timezone.now())

    # The incident manager is the last one: no further row of any kind.
    assert set(Deadline.objects.filter(incident=incident).values_list("rule", "step")) == rules_before
