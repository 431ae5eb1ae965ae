from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents import services
from incidents.models import AppendOnlyError, Incident, State, TimelineEntry
from reports.models import PostIncidentReview
from tests.factories import UserFactory, certify, open_incident, severity, tick_initial_assessment

pytestmark = pytest.mark.django_db


def test_open_gives_dated_gap_free_reference_and_opening_entry(engineer):
    first = open_incident(reported_by=engineer)
    second = open_incident(reported_by=engineer)
    today = timezone.now().astimezone(timezone.get_fixed_timezone(0)).date()
    assert first.reference == f"TMT-INC-{today:%Y-%m-%d}-001"
    assert second.reference == f"TMT-INC-{today:%Y-%m-%d}-002"
    entry = first.timeline.get()
    assert entry.kind == TimelineEntry.Kind.STATE_CHANGE and entry.owner == engineer
    assert "opened" in entry.action


def test_open_attaches_assessment_and_immediate_action_checklists(engineer):
    incident = open_incident(reported_by=engineer)
    sections = set(incident.checklist_items.values_list("section", flat=True))
    assert sections == {"Initial assessment", "Immediate actions"}
    security = open_incident(reported_by=engineer, category="security")
    assert "Security incident: immediate actions" in set(security.checklist_items.values_list("section", flat=True))


def test_severity_is_suggested_from_financial_impact():
    assert services.severity_suggest(financial_impact_usd=Decimal("12000")).severity.level == 1
    assert services.severity_suggest(financial_impact_usd=Decimal("10000")).severity.level == 2
    assert services.severity_suggest(financial_impact_usd=Decimal("1000")).severity.level == 2
    assert services.severity_suggest(financial_impact_usd=Decimal("999.99")) is None
    reason = services.severity_suggest(financial_impact_usd=Decimal("12000")).reason
    assert "$10,000" in reason and "Critical" in reason


def test_full_lifecycle_records_every_step(engineer, manager):
    incident = open_incident(reported_by=engineer, level=3)
    for name in ["acknowledge", "start_investigation"]:
        services.incident_transition(incident=incident, name=name, user=engineer)
    tick_initial_assessment(incident, engineer)
    services.incident_transition(incident=incident, name="contain", user=engineer)
    services.incident_transition(incident=incident, name="start_recovery", user=engineer)
    assert "Recovery: system restart" in set(incident.checklist_items.values_list("section", flat=True))
    services.incident_update(incident=incident, user=engineer, resolution_actions="Restarted the agent")
    incident.refresh_from_db()
    services.incident_transition(incident=incident, name="resolve", user=engineer)
    services.incident_transition(incident=incident, name="close", user=manager)
    incident.refresh_from_db()
    assert incident.state == State.CLOSED
    assert incident.acknowledged_by == engineer
    assert incident.time_to_acknowledge is not None and incident.time_to_resolve is not None
    changes = list(incident.timeline.filter(kind="state_change").values_list("to_state", flat=True))
    assert changes == ["detected", "acknowledged", "investigating", "contained", "recovering", "resolved", "closed"]


def test_containment_needs_initial_assessment(engineer):
    incident = open_incident(reported_by=engineer)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    services.incident_transition(incident=incident, name="start_investigation", user=engineer)
    with pytest.raises(services.TransitionRefusedError, match="initial assessment"):
        services.incident_transition(incident=incident, name="contain", user=engineer)
    incident.refresh_from_db()
    assert incident.state == State.INVESTIGATING


def test_resolve_needs_resolution_actions(engineer):
    incident = open_incident(reported_by=engineer)
    for name in ["acknowledge", "start_investigation"]:
        services.incident_transition(incident=incident, name=name, user=engineer)
    tick_initial_assessment(incident, engineer)
    services.incident_transition(incident=incident, name="contain", user=engineer)
    with pytest.raises(services.TransitionRefusedError, match="resolution actions"):
        services.incident_transition(incident=incident, name="resolve", user=engineer)


def _resolved(engineer, level):
    incident = open_incident(reported_by=engineer, level=level)
    for name in ["acknowledge", "start_investigation"]:
        services.incident_transition(incident=incident, name=name, user=engineer)
    tick_initial_assessment(incident, engineer)
    services.incident_transition(incident=incident, name="contain", user=engineer)
    incident = services.incident_update(incident=incident, user=engineer, resolution_actions="Failover")
    return services.incident_transition(incident=incident, name="resolve", user=engineer)


def test_sev2_cannot_close_without_approved_review(engineer, manager):
    incident = _resolved(engineer, level=2)
    with pytest.raises(services.TransitionRefusedError, match="approved post-incident report"):
        services.incident_transition(incident=incident, name="close", user=manager)
    review = PostIncidentReview.objects.create(incident=incident, author=engineer)
    review.submit()
    review.approve(by=manager)
    review.save()
    services.incident_transition(incident=incident, name="close", user=manager)
    assert Incident.objects.get(pk=incident.pk).state == State.CLOSED


def test_engineer_may_not_close(engineer):
    incident = _resolved(engineer, level=3)
    with pytest.raises(PermissionDenied):
        services.incident_transition(incident=incident, name="close", user=engineer)
    assert Incident.objects.get(pk=incident.pk).state == State.RESOLVED


def test_user_without_role_cannot_transition(engineer):
    incident = open_incident(reported_by=engineer)
    with pytest.raises(PermissionDenied):
        services.incident_transition(incident=incident, name="acknowledge", user=UserFactory())
    assert incident.timeline.count() == 1


def test_cancel_needs_a_reason(engineer):
    incident = open_incident(reported_by=engineer)
    with pytest.raises(ValidationError):
        services.incident_transition(incident=incident, name="cancel", user=engineer, reason="  ")
    assert Incident.objects.get(pk=incident.pk).state == State.DETECTED
    services.incident_transition(incident=incident, name="cancel", user=engineer, reason="False alarm")
    incident.refresh_from_db()
    assert incident.state == State.CANCELLED and incident.cancel_reason == "False alarm"


def test_transition_not_allowed_from_state_writes_nothing(engineer):
    incident = open_incident(reported_by=engineer)
    with pytest.raises(services.TransitionRefusedError):
        services.incident_transition(incident=incident, name="resolve", user=engineer)
    assert incident.timeline.count() == 1


def test_stale_page_gets_changed_by_someone_else(engineer):
    incident = open_incident(reported_by=engineer)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    stale = Incident.objects.get(pk=incident.pk)
    with pytest.raises(services.IncidentChangedError):
        services.incident_transition(
            incident=stale, name="cancel", user=engineer, expected_state="detected", reason="x"
        )


def test_timeline_is_append_only(engineer):
    incident = open_incident(reported_by=engineer)
    entry = incident.timeline.get()
    entry.action = "rewritten"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        TimelineEntry.objects.filter(pk=entry.pk).update(action="x")


def test_backdated_note_keeps_recorded_time(engineer):
    # Backdated, but not before the incident began (a start time an hour ago).
    incident = open_incident(reported_by=engineer, started_at=timezone.now() - timedelta(hours=1))
    earlier = timezone.now() - timedelta(minutes=20)
    note = services.timeline_add_note(incident=incident, author=engineer, text="Saw errors", occurred_at=earlier)
    assert note.occurred_at == earlier
    assert note.recorded_at > earlier + timedelta(minutes=19)
    assert note.backdated


def test_checklist_tick_is_recorded_with_who(engineer):
    incident = open_incident(reported_by=engineer)
    item = incident.checklist_items.first()
    services.checklist_item_set_done(item=item, user=engineer, done=True)
    entry = incident.timeline.filter(kind="checklist").get()
    assert entry.owner == engineer and item.text in entry.action


def test_database_refuses_end_before_start_and_negative_impact(engineer):
    incident = open_incident(reported_by=engineer)
    with pytest.raises(ValidationError):
        services.incident_update(incident=incident, user=engineer, ended_at=incident.started_at - timedelta(hours=1))
    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.filter(pk=incident.pk).update(financial_impact_usd=Decimal("-1"))


def test_raising_severity_is_recorded(engineer):
    incident = open_incident(reported_by=engineer, level=3)
    services.incident_update(incident=incident, user=engineer, severity=severity(1))
    incident.refresh_from_db()
    assert incident.severity.level == 1
    assert incident.timeline.filter(action__contains="Severity changed").exists()


def test_transition_from_an_older_copy_does_not_undo_other_changes(engineer, manager):
    incident = open_incident(reported_by=engineer)
    older_copy = Incident.objects.get(pk=incident.pk)
    certify(engineer)
    services.incident_assign_commander(incident=incident, commander=engineer, user=manager)
    services.incident_transition(incident=older_copy, name="acknowledge", user=engineer)
    incident.refresh_from_db()
    assert incident.state == State.ACKNOWLEDGED and incident.commander == engineer


def test_only_an_exercise_incident_ends_with_its_drill(engineer, trainer):
    """incident_exercise_end skips the transition permission (a trainer has none): a real
    incident is refused, unchanged, whoever asks."""
    real = open_incident(reported_by=engineer, level=1)
    for user in (trainer, engineer):
        with pytest.raises(PermissionDenied):
            services.incident_exercise_end(incident=real, user=user, reason="Drill over")
    real.refresh_from_db()
    assert real.state == State.DETECTED and real.timeline.count() == 1
    drill = open_incident(reported_by=engineer, level=1, is_drill=True)
    with pytest.raises(ValidationError):
        services.incident_exercise_end(incident=drill, user=trainer, reason="  ")
    services.incident_exercise_end(incident=drill, user=trainer, reason="Drill over")
    drill.refresh_from_db()
    assert (drill.state, drill.cancel_reason) == (State.CANCELLED, "Drill over")
