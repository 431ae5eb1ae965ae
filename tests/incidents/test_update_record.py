"""Editing an incident's details and ticking its checklist: what is refused, word for word, what
the timeline says about each change, and when the escalation rules are asked to look again."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from incidents import services
from incidents.hooks import hooks
from incidents.models import Incident, State, TimelineEntry
from tests.factories import open_incident, severity, system, tick_initial_assessment

pytestmark = pytest.mark.django_db


def updates(incident) -> list[tuple[str, int | None]]:
    return list(
        incident.timeline.filter(kind=TimelineEntry.Kind.UPDATE).order_by("id").values_list("action", "owner_id")
    )


@pytest.fixture
def reclassified(monkeypatch):
    """The incidents the escalation rules were asked to look at again."""
    asked: list[int] = []
    monkeypatch.setattr(hooks, "after_reclassify", [lambda *, incident: asked.append(incident.pk)])
    return asked


def test_each_changed_field_is_named_once_and_unchanged_ones_not_at_all(engineer, reclassified):
    incident = open_incident(reported_by=engineer, title="Agent down", description="")
    before = updates(incident)
    returned = services.incident_update(
        incident=incident, user=engineer, title="Agent down", description="No heartbeat since 03:00", user_impact="None"
    )
    assert updates(incident)[len(before) :] == [("Updated description, user / system impact", engineer.pk)]
    assert (incident.description, returned.description) == ("No heartbeat since 03:00", "No heartbeat since 03:00")
    assert Incident.objects.get(pk=incident.pk).user_impact == "None"
    assert reclassified == [], "nothing the escalation rules read changed"


def test_an_edit_that_changes_nothing_records_nothing(engineer, reclassified):
    incident = open_incident(reported_by=engineer, title="Agent down")
    entries = incident.timeline.count()
    services.incident_update(incident=incident, user=engineer, title="Agent down")
    services.incident_update(
        incident=incident, user=engineer, affected_systems=list(incident.affected_systems.all()), severity=None
    )
    services.incident_update(incident=incident, user=engineer, severity=incident.severity)
    assert incident.timeline.count() == entries and reclassified == []


def test_a_field_that_is_not_editable_is_refused_by_name(engineer):
    incident = open_incident(reported_by=engineer)
    with pytest.raises(ValidationError) as refused:
        services.incident_update(incident=incident, user=engineer, state="closed", reference="X", title="New")
    assert refused.value.messages == ["Not editable: reference, state"]
    assert Incident.objects.get(pk=incident.pk).title != "New"


@pytest.mark.parametrize(("how", "word"), [("cancel", "cancelled"), ("close", "closed")])
def test_a_finished_incident_cannot_be_edited(engineer, manager, how, word):
    incident = open_incident(reported_by=engineer, level=3)
    if how == "cancel":
        services.incident_transition(incident=incident, name="cancel", user=engineer, reason="False alarm")
    else:
        for step in ("acknowledge", "start_investigation"):
            services.incident_transition(incident=incident, name=step, user=engineer)
        tick_initial_assessment(incident, engineer)
        services.incident_transition(incident=incident, name="contain", user=engineer)
        services.incident_resolve(incident=incident, user=engineer, resolution_actions="Restarted")
        Incident.objects.filter(pk=incident.pk).update(state=State.CLOSED)
    entries = incident.timeline.count()
    with pytest.raises(ValidationError) as refused:
        services.incident_update(incident=incident, user=manager, title="Renamed")
    assert refused.value.messages == [f"A {word} incident cannot be changed; add a timeline note instead."]
    assert incident.timeline.count() == entries


def test_times_that_did_not_happen_are_refused_on_their_fields(engineer):
    incident = open_incident(reported_by=engineer, started_at=timezone.now() - timedelta(hours=2))
    entries = incident.timeline.count()
    with pytest.raises(ValidationError) as refused:
        services.incident_update(
            incident=incident, user=engineer, ended_at=incident.started_at - timedelta(minutes=1), title="Renamed"
        )
    assert refused.value.message_dict == {"ended_at": ["The end time cannot be before the start time."]}
    with pytest.raises(ValidationError) as refused:
        services.incident_update(incident=incident, user=engineer, started_at=timezone.now() + timedelta(hours=1))
    assert list(refused.value.message_dict) == ["started_at"]
    stored = Incident.objects.get(pk=incident.pk)
    assert (stored.title, stored.ended_at, incident.timeline.count()) == (incident.title, None, entries)
    services.incident_update(incident=incident, user=engineer, ended_at=incident.started_at)
    assert Incident.objects.get(pk=incident.pk).ended_at == incident.started_at


def test_a_severity_change_is_recorded_from_and_to_and_the_rules_look_again(engineer, reclassified):
    incident = open_incident(reported_by=engineer, level=3)
    low, critical = severity(3), severity(1)
    services.incident_update(incident=incident, user=engineer, severity=critical)
    (entry,) = incident.timeline.filter(action__startswith="Severity changed")
    assert (entry.action, entry.owner, entry.data) == (
        f"Severity changed from {low.label} to {critical.label}",
        engineer,
        {"severity_from": low.label, "severity_to": critical.label},
    )
    assert Incident.objects.get(pk=incident.pk).severity == critical
    assert reclassified == [incident.pk]


def test_systems_added_are_saved_recorded_and_start_the_recovery_clocks(engineer, reclassified):
    incident = open_incident(reported_by=engineer, systems=("market_analysis",))
    both = [system("market_analysis"), system("risk_management")]
    services.incident_update(incident=incident, user=engineer, affected_systems=both)
    assert set(Incident.objects.get(pk=incident.pk).affected_systems.all()) == set(both)
    assert updates(incident)[-1] == ("Updated affected systems", engineer.pk)
    assert reclassified == [incident.pk]


@pytest.mark.parametrize(
    "change",
    [
        {"financial_impact_usd": Decimal("6000")},
        {"category": "security"},
        {"started_at": "earlier"},
    ],
)
def test_what_the_escalation_rules_read_makes_them_look_again(engineer, reclassified, change):
    incident = open_incident(reported_by=engineer, started_at=timezone.now() - timedelta(hours=1))
    if change.get("started_at") == "earlier":
        change = {"started_at": incident.started_at - timedelta(minutes=30)}
    services.incident_update(incident=incident, user=engineer, **change)
    assert reclassified == [incident.pk]


# -- the checklist --------------------------------------------------------------------------------


def test_a_tick_and_an_untick_are_recorded_as_whose_and_when(engineer):
    incident = open_incident(reported_by=engineer)
    item = incident.checklist_items.order_by("order", "pk").first()
    at = timezone.now() - timedelta(minutes=3)
    done = services.checklist_item_set_done(item=item, user=engineer, done=True, at=at)
    assert (done.done_at, done.done_by, done.ticked_by_portal_when) == (at, engineer, "")
    entry = incident.timeline.filter(kind=TimelineEntry.Kind.CHECKLIST).latest("id")
    assert (entry.action, entry.owner, entry.occurred_at, entry.data) == (
        f"Done: {item.section} — {item.text}",
        engineer,
        at,
        {"checklist_item": item.pk, "done": True},
    )
    undone = services.checklist_item_set_done(item=item, user=engineer, done=False)
    assert (undone.done_at, undone.done_by) == (None, None)
    entry = incident.timeline.filter(kind=TimelineEntry.Kind.CHECKLIST).latest("id")
    assert (entry.action, entry.data) == (
        f"Un-ticked: {item.section} — {item.text}",
        {"checklist_item": item.pk, "done": False},
    )


def test_a_persons_tick_replaces_the_portals_and_a_repeated_tick_records_nothing(engineer):
    incident = open_incident(reported_by=engineer)
    item = incident.checklist_items.order_by("order", "pk").first()
    type(item).objects.filter(pk=item.pk).update(ticked_by_portal_when="the portal did it")
    before = timezone.now()
    services.checklist_item_set_done(item=item, user=engineer, done=True)
    item.refresh_from_db()
    assert item.ticked_by_portal_when == "" and before <= item.done_at <= timezone.now()
    entries = incident.timeline.count()
    again = services.checklist_item_set_done(item=item, user=engineer, done=True)
    assert again.done_at == item.done_at and incident.timeline.count() == entries


def test_a_closed_incidents_checklist_does_not_change_and_a_resolved_ones_does(engineer):
    incident = open_incident(reported_by=engineer, level=3)
    item = incident.checklist_items.exclude(section="Initial assessment").order_by("pk").first()
    services.incident_transition(incident=incident, name="cancel", user=engineer, reason="False alarm")
    with pytest.raises(ValidationError, match="^\\['The checklist of a closed incident cannot change.'\\]$"):
        services.checklist_item_set_done(item=item, user=engineer, done=True)
    item.refresh_from_db()
    assert item.done_at is None
    resolved = open_incident(reported_by=engineer, level=3)
    for step in ("acknowledge", "start_investigation"):
        services.incident_transition(incident=resolved, name=step, user=engineer)
    tick_initial_assessment(resolved, engineer)
    services.incident_transition(incident=resolved, name="contain", user=engineer)
    services.incident_resolve(incident=resolved, user=engineer, resolution_actions="Restarted")
    late = resolved.checklist_items.filter(done_at=None).first()
    assert services.checklist_item_set_done(item=late, user=engineer, done=True).done_by == engineer
