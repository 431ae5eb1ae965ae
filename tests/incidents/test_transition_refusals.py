"""Each refusal of a lifecycle step says why, word for word, and leaves the incident as it was;
each step taken is on the record with its label, its states and the time it happened."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from incidents import services
from incidents.hooks import hooks
from incidents.models import CONDITION_REFUSALS, Incident, PortalAction, State, TimelineEntry
from incidents.models.incident import TRANSITION_NAMES
from incidents.services import incident as incident_services
from tests.factories import contain, display_name, open_incident, resolve, system, tick_initial_assessment
from tests.races import in_another_connection

pytestmark = pytest.mark.django_db


def refusal(error_type, **kwargs) -> str:
    with pytest.raises(error_type) as refused:
        services.incident_transition(**kwargs)
    return str(refused.value) if error_type is not ValidationError else refused.value.message_dict


def state_changes(incident) -> list[tuple[str, str]]:
    return list(
        incident.timeline.filter(kind=TimelineEntry.Kind.STATE_CHANGE).order_by("id").values_list("action", "to_state")
    )


def unchanged(incident, entries: int) -> bool:
    stored = Incident.objects.get(pk=incident.pk)
    return stored.state == incident.state and incident.timeline.count() == entries


def test_an_unknown_action_is_refused_by_name(engineer):
    incident = open_incident(reported_by=engineer)
    assert refusal(services.TransitionRefusedError, incident=incident, name="explode", user=engineer) == (
        "Unknown action “explode”."
    )


def test_a_role_without_the_right_is_refused_before_the_state_is_looked_at(trainer):
    incident = open_incident()
    entries = incident.timeline.count()
    for name in ("acknowledge", "start_recovery"):
        assert refusal(PermissionDenied, incident=incident, name=name, user=trainer) == (
            "You do not have permission for this action."
        )
    assert unchanged(incident, entries)


def test_a_step_from_a_page_someone_else_moved_on_is_refused(engineer):
    incident = open_incident(reported_by=engineer)
    entries = incident.timeline.count()
    message = refusal(
        services.IncidentChangedError,
        incident=incident,
        name="acknowledge",
        user=engineer,
        expected_state=State.INVESTIGATING,
    )
    assert message == "This incident was changed by someone else. Reload the page to see its current state."
    assert unchanged(incident, entries)


def test_a_step_the_state_does_not_allow_names_both(engineer):
    incident = open_incident(reported_by=engineer)
    entries = incident.timeline.count()
    assert refusal(services.TransitionRefusedError, incident=incident, name="start_recovery", user=engineer) == (
        "“start recovery” is not possible while the incident is detected."
    )
    assert unchanged(incident, entries)


def test_containing_without_the_assessment_says_what_to_do_first_from_either_state(engineer):
    acknowledged = open_incident(reported_by=engineer)
    services.incident_transition(incident=acknowledged, name="acknowledge", user=engineer)
    entries = acknowledged.timeline.count()
    guard = "Complete the initial assessment checklist first."
    assert refusal(services.TransitionRefusedError, incident=acknowledged, name="contain", user=engineer) == guard
    assert unchanged(acknowledged, entries), "not even the investigation step it would pass through"
    services.incident_transition(incident=acknowledged, name="start_investigation", user=engineer)
    assert refusal(services.TransitionRefusedError, incident=acknowledged, name="contain", user=engineer) == guard


def test_containing_straight_from_acknowledged_records_both_steps_at_the_time_given(engineer):
    incident = open_incident(reported_by=engineer)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    tick_initial_assessment(incident, engineer)
    at = timezone.now() - timedelta(minutes=4)
    services.incident_transition(incident=incident, name="contain", user=engineer, at=at)
    stored = Incident.objects.get(pk=incident.pk)
    assert (stored.state, stored.investigating_at, stored.contained_at) == (State.CONTAINED, at, at)
    entries = incident.timeline.filter(kind=TimelineEntry.Kind.STATE_CHANGE).order_by("id")
    assert [(e.from_state, e.to_state, e.occurred_at) for e in entries][-2:] == [
        (State.ACKNOWLEDGED, State.INVESTIGATING, at),
        (State.INVESTIGATING, State.CONTAINED, at),
    ]
    assert entries.last().action == "Mark contained: Investigating → Contained"


def test_a_cancel_needs_a_reason_and_records_it_trimmed(engineer):
    incident = open_incident(reported_by=engineer)
    entries = incident.timeline.count()
    for blank in ("", "   "):
        assert refusal(ValidationError, incident=incident, name="cancel", user=engineer, reason=blank) == {
            "reason": ["Give a reason."]
        }
    assert unchanged(incident, entries)
    services.incident_transition(incident=incident, name="cancel", user=engineer, reason="  Test alert  ")
    stored = Incident.objects.get(pk=incident.pk)
    assert (stored.state, stored.cancel_reason) == (State.CANCELLED, "Test alert")
    assert state_changes(incident)[-1] == (
        "Cancel (false alarm): Detected → Cancelled. Reason: Test alert",
        State.CANCELLED,
    )


def test_an_acknowledgement_is_recorded_as_whose_and_when(engineer):
    incident = open_incident(reported_by=engineer)
    at = timezone.now() - timedelta(minutes=2)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer, at=at)
    stored = Incident.objects.get(pk=incident.pk)
    assert (stored.acknowledged_by, stored.acknowledged_at) == (engineer, at)
    entry = incident.timeline.get(to_state=State.ACKNOWLEDGED)
    assert (entry.from_state, entry.owner, entry.owner_team, entry.occurred_at) == (State.DETECTED, engineer, "", at)
    (item,) = incident.checklist_items.filter(action_key=PortalAction.ACKNOWLEDGED)
    who = display_name(engineer)
    assert (item.done_by, item.done_at, item.ticked_by_portal_when) == (engineer, at, f"{who} acknowledged")


def test_a_label_given_replaces_the_steps_own(engineer):
    incident = open_incident(reported_by=engineer)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer, label="Acknowledged by phone")
    assert state_changes(incident)[-1] == ("Acknowledged by phone: Detected → Acknowledged", State.ACKNOWLEDGED)


def test_a_reopen_takes_no_time_and_the_hooks_hear_of_each_step(engineer, monkeypatch):
    heard = []
    monkeypatch.setattr(
        hooks, "after_transition", [lambda *, incident, name, now: heard.append((incident.pk, name, now))]
    )
    incident = open_incident(reported_by=engineer, level=3)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    tick_initial_assessment(incident, engineer)
    at = timezone.now() - timedelta(minutes=1)
    services.incident_transition(incident=incident, name="contain", user=engineer, at=at)
    incident = services.incident_resolve(incident=incident, user=engineer, resolution_actions="Restarted")
    later = timezone.now()
    services.incident_transition(incident=incident, name="reopen", user=engineer, at=later)
    assert Incident.objects.get(pk=incident.pk).state == State.INVESTIGATING
    assert [(pk, name) for pk, name, _ in heard] == [
        (incident.pk, "acknowledge"),
        (incident.pk, "start_investigation"),
        (incident.pk, "contain"),
        (incident.pk, "resolve"),
        (incident.pk, "reopen"),
    ]
    assert heard[1][2] == heard[2][2] == at and heard[4][2] == later


def offered(name: str, label: str, *, blocked: str = "", needs_reason: bool = False) -> dict:
    return {
        "name": name,
        "label": label,
        "allowed": not blocked,
        "blocked_reason": blocked,
        "needs_reason": needs_reason,
    }


def test_the_page_offers_each_step_the_state_and_role_allow_and_says_why_one_is_blocked(engineer, trainer):
    incident = open_incident(reported_by=engineer)
    cancel = offered("cancel", "Cancel (false alarm)", needs_reason=True)
    assert services.incident_available_transitions(incident=incident, user=engineer) == [
        offered("acknowledge", "Acknowledge"),
        cancel,
    ]
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    # Containing straight from acknowledged passes through the investigation, and is blocked by its guard.
    assert services.incident_available_transitions(incident=incident, user=engineer) == [
        offered("start_investigation", "Start investigation"),
        offered("contain", "Mark contained", blocked="Complete the initial assessment checklist first."),
        cancel,
    ]
    tick_initial_assessment(incident, engineer)
    assert offered("contain", "Mark contained") in services.incident_available_transitions(
        incident=incident, user=engineer
    )
    assert services.incident_available_transitions(incident=incident, user=trainer) == []


def test_every_step_has_a_label_and_every_condition_says_what_it_waits_for():
    for name in TRANSITION_NAMES:
        for meta in getattr(Incident, name)._django_fsm.transitions.values():
            assert meta.custom.get("label"), name
            assert all(condition.__name__ in CONDITION_REFUSALS for condition in meta.conditions), name


def test_an_assessment_item_unticked_after_containment_blocks_recovery_saying_so(engineer):
    incident = open_incident(reported_by=engineer, level=3)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    tick_initial_assessment(incident, engineer)
    incident = services.incident_transition(incident=incident, name="contain", user=engineer)
    item = incident.checklist_items.filter(gates_containment=True).first()
    services.checklist_item_set_done(item=item, user=engineer, done=False)
    incident = Incident.objects.get(pk=incident.pk)
    guard = "Complete the initial assessment checklist first."
    assert refusal(services.TransitionRefusedError, incident=incident, name="start_recovery", user=engineer) == guard
    assert offered("start_recovery", "Start recovery", blocked=guard) in services.incident_available_transitions(
        incident=incident, user=engineer
    )


def test_an_assessment_item_unticked_before_the_resolve_says_so_not_that_actions_are_missing(engineer):
    incident = contain(open_incident(reported_by=engineer, level=3), engineer)
    incident = services.incident_update(incident=incident, user=engineer, resolution_actions="Restarted")
    item = incident.checklist_items.filter(gates_containment=True).first()
    services.checklist_item_set_done(item=item, user=engineer, done=False)
    incident = Incident.objects.get(pk=incident.pk)
    guard = "Complete the initial assessment checklist first."
    assert refusal(services.TransitionRefusedError, incident=incident, name="resolve", user=engineer) == guard
    assert offered("resolve", "Resolve", blocked=guard) in services.incident_available_transitions(
        incident=incident, user=engineer
    )
    services.checklist_item_set_done(item=item, user=engineer, done=True)
    Incident.objects.filter(pk=incident.pk).update(resolution_actions="")
    incident = Incident.objects.get(pk=incident.pk)
    assert refusal(services.TransitionRefusedError, incident=incident, name="resolve", user=engineer) == (
        "Record the resolution actions first."
    )


def test_an_item_unticked_between_the_check_and_the_step_is_refused_with_the_reason(engineer, monkeypatch):
    incident = open_incident(reported_by=engineer, level=3)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer)
    services.incident_transition(incident=incident, name="start_investigation", user=engineer)
    tick_initial_assessment(incident, engineer)
    item = incident.checklist_items.filter(gates_containment=True).first()
    entries = incident.timeline.count()
    check = incident_services._unmet_condition
    checked = []

    def check_then_someone_unticks(incident, meta):
        answer = check(incident, meta)
        if not checked:
            checked.append(answer)
            services.checklist_item_set_done(item=item, user=engineer, done=False)
        return answer

    monkeypatch.setattr(incident_services, "_unmet_condition", check_then_someone_unticks)
    assert refusal(services.TransitionRefusedError, incident=incident, name="contain", user=engineer) == (
        "Complete the initial assessment checklist first."
    )
    assert checked == [""]
    assert Incident.objects.get(pk=incident.pk).state == State.INVESTIGATING
    assert incident.timeline.count() == entries


def test_a_resolve_from_a_page_older_than_the_recovery_is_refused(engineer):
    incident = contain(open_incident(reported_by=engineer, level=3), engineer)
    seen = Incident.objects.get(pk=incident.pk)
    services.incident_transition(incident=incident, name="start_recovery", user=engineer)
    with pytest.raises(services.IncidentChangedError):
        services.incident_resolve(
            incident=seen, user=engineer, resolution_actions="Restarted", expected_state=State.CONTAINED
        )
    stored = Incident.objects.get(pk=incident.pk)
    assert (stored.state, stored.resolution_actions) == (State.RECOVERING, "")


def test_a_second_reopen_from_an_older_page_is_told_the_incident_changed(engineer):
    incident = resolve(open_incident(reported_by=engineer, level=3, alert_fingerprint="latency-high"), engineer)
    seen = Incident.objects.get(pk=incident.pk)
    services.incident_transition(incident=incident, name="reopen", user=engineer)
    with pytest.raises(services.IncidentChangedError):
        services.incident_transition(incident=seen, name="reopen", user=engineer)
    assert Incident.objects.get(pk=incident.pk).state == State.INVESTIGATING


def test_reopening_is_refused_while_a_newer_incident_covers_the_same_alert_or_system(engineer):
    def resolved(**key):
        return resolve(open_incident(reported_by=engineer, level=3, **key), engineer)

    cases = [
        ({"alert_fingerprint": "latency-high"}, "alert"),
        ({"automated_system": system("risk_management")}, "system outage"),
    ]
    for key, what in cases:
        old = resolved(**key)
        newer = open_incident(reported_by=engineer, level=3, **key)
        entries = old.timeline.count()
        assert refusal(services.TransitionRefusedError, incident=old, name="reopen", user=engineer) == (
            f"{newer.reference} is now the open incident for the same {what}; continue there (a note can link the two)."
        )
        assert unchanged(old, entries)
        services.incident_transition(incident=newer, name="cancel", user=engineer, reason="Duplicate")
        assert services.incident_transition(incident=old, name="reopen", user=engineer).state == State.INVESTIGATING
    # An incident no alert or system opened has nothing to collide with.
    by_hand = resolved()
    open_incident(reported_by=engineer, level=3)
    assert services.incident_transition(incident=by_hand, name="reopen", user=engineer).state == State.INVESTIGATING


def test_other_steps_of_an_automated_incident_are_not_held_up_by_an_older_one(engineer):
    older = open_incident(reported_by=engineer, level=3, alert_fingerprint="latency-high")
    services.incident_transition(incident=older, name="cancel", user=engineer, reason="Flapped")
    newer = open_incident(reported_by=engineer, level=3, alert_fingerprint="latency-high")
    assert services.incident_transition(incident=newer, name="acknowledge", user=engineer).state == State.ACKNOWLEDGED


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("postgres")
def test_a_reopen_racing_a_new_alerts_incident_is_refused_not_failed(engineer, monkeypatch):
    # The duplicate check passes; before the reopen is saved, the same alert opens a new incident
    # in another connection. The database's constraint refuses the reopen; the user is told why.
    old = open_incident(reported_by=engineer, level=3, alert_fingerprint="latency-high")
    services.incident_transition(incident=old, name="acknowledge", user=engineer)
    tick_initial_assessment(old, engineer)
    services.incident_transition(incident=old, name="contain", user=engineer)
    old = services.incident_resolve(incident=old, user=engineer, resolution_actions="Restarted")
    entries = old.timeline.count()
    check = incident_services._refuse_reopening_a_duplicate

    def check_then_the_alert_fires_again(incident):
        check(incident)
        in_another_connection(lambda: open_incident(reported_by=engineer, level=3, alert_fingerprint="latency-high"))

    monkeypatch.setattr(incident_services, "_refuse_reopening_a_duplicate", check_then_the_alert_fires_again)
    assert refusal(services.TransitionRefusedError, incident=old, name="reopen", user=engineer) == (
        "Another open incident now covers the same alert or system; reload."
    )
    assert Incident.objects.get(pk=old.pk).state == State.RESOLVED and old.timeline.count() == entries
