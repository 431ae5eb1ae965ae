"""Who may change the commander, notes, the end of an exercise's incident, a resolve in one step
and the severity suggestion: each refusal word for word, and what the record says afterwards."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from incidents import services
from incidents.hooks import hooks
from incidents.models import (
    ChecklistTemplate,
    ChecklistTemplateItem,
    Incident,
    IncidentChecklistItem,
    PortalAction,
    SeverityLevel,
    State,
    TimelineEntry,
)
from incidents.roles import CEO
from tests.factories import UserFactory, certify, contain, display_name, open_incident, resolve

pytestmark = pytest.mark.django_db


def last_entry(incident) -> TimelineEntry:
    return incident.timeline.order_by("-id").first()


def commander_item(incident) -> IncidentChecklistItem:
    """An item keyed to naming a commander, as an admin may add to a template (the seed has none)."""
    template = ChecklistTemplate.objects.filter(attach_on_state=State.DETECTED).first()
    template_item = ChecklistTemplateItem.objects.create(
        template=template, order=99, text="Name an incident commander", action_key=PortalAction.COMMANDER_ASSIGNED
    )
    return IncidentChecklistItem.objects.create(
        incident=incident,
        template=template,
        section=template.name,
        text=template_item.text,
        order=99,
        action_key=PortalAction.COMMANDER_ASSIGNED,
    )


# -- the commander --------------------------------------------------------------------------------


def test_a_manager_puts_someone_else_in_command_on_the_record(manager, engineer):
    incident = open_incident(reported_by=engineer)
    item = commander_item(incident)
    before = Incident.objects.get(pk=incident.pk).updated_at
    services.incident_assign_commander(incident=incident, commander=certify(engineer), user=manager)
    incident = Incident.objects.get(pk=incident.pk)
    assert incident.commander == engineer and incident.updated_at > before
    entry = last_entry(incident)
    assert (entry.kind, entry.action, entry.owner) == (
        TimelineEntry.Kind.UPDATE,
        f"Incident commander: {display_name(engineer)}",
        manager,
    )
    item.refresh_from_db()
    assert item.ticked_by_portal_when == f"{display_name(manager)} made {display_name(engineer)} incident commander"
    assert item.done_by == manager


def test_an_engineer_takes_command_and_steps_down(engineer):
    incident = open_incident(reported_by=engineer)
    item = commander_item(incident)
    services.incident_assign_commander(incident=incident, commander=certify(engineer), user=engineer)
    item.refresh_from_db()
    assert item.ticked_by_portal_when == f"{display_name(engineer)} took command"
    services.incident_assign_commander(incident=incident, commander=None, user=engineer)
    incident.refresh_from_db()
    assert incident.commander is None
    entry = last_entry(incident)
    assert (entry.action, entry.owner) == ("Incident commander: none", engineer)
    item.refresh_from_db()
    assert item.ticked_by_portal_when == f"{display_name(engineer)} took command", "stepping down unticks nothing"


def test_an_engineer_may_neither_put_someone_else_in_command_nor_remove_them(engineer, manager):
    incident = open_incident(reported_by=engineer)
    other = certify(UserFactory())
    refusal = "Only an incident manager may assign someone else as commander."
    with pytest.raises(PermissionDenied, match=f"^{refusal}$"):
        services.incident_assign_commander(incident=incident, commander=other, user=engineer)
    services.incident_assign_commander(incident=incident, commander=other, user=manager)
    entries = incident.timeline.count()
    with pytest.raises(PermissionDenied, match=f"^{refusal}$"):
        services.incident_assign_commander(incident=incident, commander=None, user=engineer)
    incident.refresh_from_db()
    assert incident.commander == other and incident.timeline.count() == entries


def test_someone_who_may_not_change_incidents_may_not_take_command(roles):
    ceo = certify(UserFactory())
    ceo.groups.add(Group.objects.get(name=CEO))
    incident = open_incident()
    with pytest.raises(PermissionDenied, match="^You do not have permission to change this incident.$"):
        services.incident_assign_commander(incident=incident, commander=ceo, user=ceo)
    assert Incident.objects.get(pk=incident.pk).commander is None


def test_a_closed_incidents_commander_does_not_change(manager, engineer):
    incident = open_incident(reported_by=engineer)
    services.incident_transition(incident=incident, name="cancel", user=engineer, reason="False alarm")
    entries = incident.timeline.count()
    with pytest.raises(ValidationError) as refused:
        services.incident_assign_commander(incident=incident, commander=certify(engineer), user=manager)
    assert refused.value.messages == ["Only an open incident has a commander to change."]
    assert incident.timeline.count() == entries


def test_naming_the_commander_already_in_command_records_nothing(manager, engineer):
    incident = open_incident(reported_by=engineer, commander=certify(engineer))
    entries, updated = incident.timeline.count(), Incident.objects.get(pk=incident.pk).updated_at
    services.incident_assign_commander(incident=incident, commander=engineer, user=manager)
    incident = Incident.objects.get(pk=incident.pk)
    assert incident.timeline.count() == entries and incident.updated_at == updated
    no_commander = open_incident(reported_by=engineer)
    services.incident_assign_commander(incident=no_commander, commander=None, user=manager)
    assert not no_commander.timeline.filter(action__startswith="Incident commander").exists()


def test_a_commander_a_readiness_guard_refuses_is_not_put_in_command(manager, engineer, monkeypatch):
    asked = []

    def not_ready(*, user, incident):
        asked.append((user, incident.pk))
        raise ValidationError("Certification expired.")

    monkeypatch.setattr(hooks, "commander_guards", [not_ready])
    incident = open_incident(reported_by=manager)
    with pytest.raises(ValidationError, match="Certification expired."):
        services.incident_assign_commander(incident=incident, commander=engineer, user=manager)
    assert asked == [(engineer, incident.pk)]
    assert Incident.objects.get(pk=incident.pk).commander is None
    assert not incident.timeline.filter(action__startswith="Incident commander").exists()


def test_stepping_down_asks_no_readiness_guard(engineer, monkeypatch):
    incident = open_incident(reported_by=engineer, commander=certify(engineer))
    monkeypatch.setattr(hooks, "commander_guards", [lambda **kw: pytest.fail("asked about nobody")])
    services.incident_assign_commander(incident=incident, commander=None, user=engineer)
    assert Incident.objects.get(pk=incident.pk).commander is None


# -- notes ----------------------------------------------------------------------------------------


def test_a_note_is_recorded_as_written_by_whom_and_for_which_team(engineer):
    incident = open_incident(reported_by=engineer)
    before = timezone.now()
    note = services.timeline_add_note(
        incident=incident, author=engineer, text="  Broker link flapping  ", owner_team="Network"
    )
    assert (note.kind, note.action, note.owner, note.owner_team) == (
        TimelineEntry.Kind.NOTE,
        "Broker link flapping",
        engineer,
        "Network",
    )
    assert before <= note.occurred_at <= timezone.now()
    assert (note.from_state, note.to_state, note.data) == ("", "", {}), "a note changes no state"


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_an_empty_note_is_refused_on_its_field(engineer, text):
    incident = open_incident(reported_by=engineer)
    entries = incident.timeline.count()
    with pytest.raises(ValidationError) as refused:
        services.timeline_add_note(incident=incident, author=engineer, text=text)
    assert refused.value.message_dict == {"text": ["Write something."]}
    assert incident.timeline.count() == entries


def test_a_note_dated_in_the_future_or_before_the_start_is_refused_on_its_field(engineer):
    incident = open_incident(reported_by=engineer, started_at=timezone.now() - timedelta(hours=1))
    entries = incident.timeline.count()
    for when in (timezone.now() + timedelta(minutes=10), incident.started_at - timedelta(minutes=1)):
        with pytest.raises(ValidationError) as refused:
            services.timeline_add_note(incident=incident, author=engineer, text="Saw errors", occurred_at=when)
        (message,) = refused.value.message_dict["occurred_at"]
        assert message.startswith(services.NOTE_TIME)
    assert incident.timeline.count() == entries
    at_start = services.timeline_add_note(
        incident=incident, author=engineer, text="First error", occurred_at=incident.started_at
    )
    assert (at_start.occurred_at, at_start.owner, at_start.owner_team) == (incident.started_at, engineer, "")


# -- an exercise's incident -----------------------------------------------------------------------


def test_an_open_exercise_incident_is_cancelled_with_the_reason_by_whoever_ends_the_drill(engineer, trainer):
    drill = open_incident(reported_by=engineer, level=1, is_drill=True)
    at = timezone.now() - timedelta(seconds=30)
    ended = services.incident_exercise_end(incident=drill, user=trainer, reason="  Drill over  ", at=at)
    assert ended.state == State.CANCELLED
    drill.refresh_from_db()
    assert (drill.state, drill.cancel_reason, drill.cancelled_at) == (State.CANCELLED, "Drill over", at)
    entry = last_entry(drill)
    assert entry.action == "Exercise over: Detected → Cancelled. Reason: Drill over"
    assert (entry.owner, entry.occurred_at, entry.to_state) == (trainer, at, State.CANCELLED)


def test_a_real_incident_does_not_end_with_a_drill(engineer, trainer):
    real = open_incident(reported_by=engineer, level=1)
    with pytest.raises(PermissionDenied) as refused:
        services.incident_exercise_end(incident=real, user=trainer, reason="Drill over")
    assert str(refused.value) == "Only an exercise incident ends with its drill."
    assert Incident.objects.get(pk=real.pk).state == State.DETECTED


def test_an_exercise_ended_now_is_cancelled_now(engineer, trainer):
    drill = open_incident(reported_by=engineer, level=1, is_drill=True)
    before = timezone.now()
    services.incident_exercise_end(incident=drill, user=trainer, reason="Drill over")
    drill.refresh_from_db()
    assert before <= drill.cancelled_at <= timezone.now()


def test_a_blank_reason_ends_nothing(engineer, trainer):
    drill = open_incident(reported_by=engineer, level=1, is_drill=True)
    with pytest.raises(ValidationError) as refused:
        services.incident_exercise_end(incident=drill, user=trainer, reason=" \n ")
    assert refused.value.message_dict == {"reason": ["Give a reason."]}
    drill.refresh_from_db()
    assert drill.state == State.DETECTED


def test_a_resolved_exercise_incident_stays_resolved_with_the_reason_as_a_note(engineer, trainer):
    drill = resolve(open_incident(reported_by=engineer, level=3, is_drill=True), engineer)
    at = timezone.now()
    services.incident_exercise_end(incident=drill, user=trainer, reason="Drill over", at=at)
    drill.refresh_from_db()
    assert drill.state == State.RESOLVED
    entry = last_entry(drill)
    assert (entry.kind, entry.action, entry.owner, entry.occurred_at) == (
        TimelineEntry.Kind.NOTE,
        "Drill over",
        trainer,
        at,
    )


# -- acknowledging and resolving ------------------------------------------------------------------


def test_an_acknowledgement_by_sms_says_so_on_the_record(engineer):
    incident = open_incident(reported_by=engineer)
    services.incident_acknowledge(incident=incident, user=engineer, via="by SMS reply")
    entry = incident.timeline.get(to_state=State.ACKNOWLEDGED)
    assert entry.action == f"Acknowledged by {display_name(engineer)} by SMS reply: Detected → Acknowledged"
    at_desk = open_incident(reported_by=engineer)
    services.incident_acknowledge(incident=at_desk, user=engineer)
    assert at_desk.timeline.get(to_state=State.ACKNOWLEDGED).action == "Acknowledge: Detected → Acknowledged"


def test_resolving_records_the_actions_once_and_resolves(engineer):
    incident = contain(open_incident(reported_by=engineer, level=3), engineer)
    at = timezone.now()
    resolved = services.incident_resolve(
        incident=incident,
        user=engineer,
        resolution_actions="  Restarted the agent  ",
        expected_state=State.CONTAINED,
        at=at,
    )
    assert resolved.state == State.RESOLVED
    incident = Incident.objects.get(pk=incident.pk)
    assert (incident.state, incident.resolution_actions, incident.resolved_at) == (
        State.RESOLVED,
        "Restarted the agent",
        at,
    )
    (update,) = incident.timeline.filter(kind=TimelineEntry.Kind.UPDATE, action__icontains="resolution actions")
    assert update.owner == engineer


def test_resolving_with_the_actions_already_written_adds_no_update(engineer):
    incident = contain(open_incident(reported_by=engineer, level=3), engineer)
    incident = services.incident_update(incident=incident, user=engineer, resolution_actions="Restarted the agent")
    entries = incident.timeline.count()
    services.incident_resolve(incident=incident, user=engineer, resolution_actions="Restarted the agent \n")
    incident = Incident.objects.get(pk=incident.pk)
    assert incident.state == State.RESOLVED
    assert incident.timeline.count() == entries + 1, "only the state change"


def test_a_resolve_from_a_stale_page_or_without_actions_changes_nothing(engineer):
    incident = contain(open_incident(reported_by=engineer, level=3), engineer)
    entries = incident.timeline.count()
    with pytest.raises(services.IncidentChangedError) as refused:
        services.incident_resolve(
            incident=incident, user=engineer, resolution_actions="Restarted", expected_state=State.INVESTIGATING
        )
    assert str(refused.value) == services.IncidentChangedError.message
    with pytest.raises(ValidationError) as refused:
        services.incident_resolve(incident=incident, user=engineer, resolution_actions="  ")
    assert refused.value.message_dict == {"resolution_actions": [services.RESOLUTION_ACTIONS_REQUIRED]}
    incident = Incident.objects.get(pk=incident.pk)
    assert (incident.state, incident.resolution_actions, incident.timeline.count()) == (State.CONTAINED, "", entries)


def test_resolving_needs_both_the_transition_and_the_change_right(engineer, roles):
    incident = contain(open_incident(reported_by=engineer, level=3), engineer)
    for kept in ("incidents.transition_incident", "incidents.change_incident"):
        partial = UserFactory()
        app, codename = kept.split(".")
        partial.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
        with pytest.raises(PermissionDenied, match="^You do not have permission for this action.$"):
            services.incident_resolve(incident=incident, user=partial, resolution_actions="Restarted")
    assert Incident.objects.get(pk=incident.pk).state == State.CONTAINED


# -- the severity suggestion ----------------------------------------------------------------------


def test_the_suggestion_says_why_at_each_edge():
    critical = SeverityLevel.objects.get(level=1)
    high = SeverityLevel.objects.get(level=2)
    assert not critical.threshold_inclusive and high.threshold_inclusive
    cases = {
        Decimal("10000.01"): (critical, f"Estimated impact $10,000.01 is above $10,000: {critical.label}."),
        Decimal("10000"): (high, f"Estimated impact $10,000.00 is at or above $1,000: {high.label}."),
        Decimal("1000"): (high, f"Estimated impact $1,000.00 is at or above $1,000: {high.label}."),
    }
    for amount, (level, reason) in cases.items():
        suggestion = services.severity_suggest(financial_impact_usd=amount)
        assert (suggestion.severity, suggestion.reason) == (level, reason), amount
    assert services.severity_suggest(financial_impact_usd=Decimal("999.99")) is None
    assert services.severity_suggest(financial_impact_usd=None) is None
