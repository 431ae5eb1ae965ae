"""Opening an incident: every detail given is kept, the refusals say why, and the record starts
with who opened it, when, and (if named) who commands it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents import services
from incidents.hooks import hooks
from incidents.models import (
    ChecklistTemplate,
    ChecklistTemplateItem,
    DetectionMethod,
    Incident,
    IncidentChecklistItem,
    PortalAction,
    State,
    TimelineEntry,
)
from tests.factories import UserFactory, certify, display_name, severity, system

pytestmark = pytest.mark.django_db


def open_with(reported_by, **kwargs) -> Incident:
    fields = {
        "title": "Risk checks timing out",
        "severity": severity(2),
        "reported_by": reported_by,
        "detection_method": DetectionMethod.USER_REPORT,
    } | kwargs
    return services.incident_open(**fields)


def test_every_detail_given_at_open_is_kept(engineer):
    started = timezone.now() - timedelta(minutes=40)
    detected = timezone.now() - timedelta(minutes=30)
    incident = open_with(
        engineer,
        description="Pre-trade risk checks take 4 s",
        category="security",
        affected_systems=[system("risk_management"), system("execution_engine")],
        financial_impact_usd=Decimal("7500.50"),
        user_impact="Orders rejected",
        started_at=started,
        detected_at=detected,
        is_drill=True,
        alert_fingerprint="risk-latency",
        automated_system=system("risk_management"),
    )
    stored = Incident.objects.get(pk=incident.pk)
    assert (stored.title, stored.description, stored.category, stored.user_impact) == (
        "Risk checks timing out",
        "Pre-trade risk checks take 4 s",
        "security",
        "Orders rejected",
    )
    assert (stored.financial_impact_usd, stored.started_at, stored.detected_at) == (
        Decimal("7500.50"),
        started,
        detected,
    )
    assert (stored.is_drill, stored.alert_fingerprint, stored.automated_system) == (
        True,
        "risk-latency",
        system("risk_management"),
    )
    assert (stored.severity.level, stored.reported_by, stored.state) == (2, engineer, State.DETECTED)
    assert {s.key for s in stored.affected_systems.all()} == {"risk_management", "execution_engine"}


def test_what_is_not_given_is_left_empty_and_the_start_is_the_detection(engineer):
    before = timezone.now()
    incident = Incident.objects.get(pk=open_with(engineer).pk)
    assert (incident.description, incident.user_impact, incident.financial_impact_usd) == ("", "", None)
    assert (incident.automated_system, incident.alert_fingerprint, incident.is_drill) == (None, "", False)
    assert before <= incident.detected_at == incident.started_at <= timezone.now()
    assert not incident.affected_systems.exists()


def test_the_opening_entry_says_who_opened_it_as_what_and_when(engineer):
    detected = timezone.now() - timedelta(minutes=5)
    incident = open_with(engineer, detected_at=detected)
    (entry,) = incident.timeline.all()
    assert (entry.kind, entry.to_state, entry.owner, entry.owner_team, entry.occurred_at) == (
        TimelineEntry.Kind.STATE_CHANGE,
        State.DETECTED,
        engineer,
        "",
        detected,
    )
    assert entry.action == f"Incident opened as {severity(2).label}: Risk checks timing out"
    (logged,) = IncidentChecklistItem.objects.filter(incident=incident, action_key=PortalAction.INCIDENT_LOGGED)
    assert (logged.done_by, logged.done_at) == (engineer, detected)
    assert logged.ticked_by_portal_when == f"{display_name(engineer)} logged the incident"


def test_an_incident_a_system_opened_is_on_the_record_as_the_team(engineer):
    incident = open_with(engineer, opened_by_team="Health monitor")
    (entry,) = incident.timeline.all()
    assert (entry.owner, entry.owner_team) == (None, "Health monitor")
    (logged,) = IncidentChecklistItem.objects.filter(incident=incident, action_key=PortalAction.INCIDENT_LOGGED)
    assert (logged.done_by, logged.ticked_by_portal_when) == (None, "Health monitor logged the incident")


def test_without_a_severity_or_a_reporter_nothing_is_opened(engineer):
    with pytest.raises(ValidationError) as refused:
        open_with(None, severity=None)
    assert refused.value.message_dict == {
        "severity": ["This field is required."],
        "reported_by": ["This field is required."],
    }
    with pytest.raises(ValidationError) as refused:
        open_with(engineer, severity=None)
    assert refused.value.message_dict == {"severity": ["This field is required."]}
    assert not Incident.objects.exists()


def test_a_start_in_the_future_is_refused_on_its_field(engineer):
    with pytest.raises(ValidationError) as refused:
        open_with(engineer, started_at=timezone.now() + timedelta(hours=1))
    assert list(refused.value.message_dict) == ["started_at"]
    assert not Incident.objects.exists()


def test_only_a_manager_opens_with_someone_else_in_command(engineer, manager):
    other = certify(UserFactory())
    with pytest.raises(PermissionDenied, match="^Only an incident manager may make someone else the commander.$"):
        open_with(engineer, commander=other)
    assert not Incident.objects.exists()
    own = open_with(engineer, commander=certify(engineer))
    assert own.commander == engineer
    theirs = open_with(manager, commander=other)
    entry = theirs.timeline.get(kind=TimelineEntry.Kind.UPDATE)
    assert (entry.action, entry.owner, entry.occurred_at) == (
        f"Incident commander: {display_name(other)}",
        manager,
        theirs.detected_at,
    )


def test_a_second_open_incident_for_the_same_system_is_left_to_the_database_to_refuse(engineer):
    # The caller opens in a savepoint and joins the open one on IntegrityError; a ValidationError
    # from a constraint check here would skip that.
    open_with(engineer, automated_system=system("risk_management"), opened_by_team="Health monitor")
    with pytest.raises(IntegrityError), transaction.atomic():
        open_with(engineer, automated_system=system("risk_management"), opened_by_team="Health monitor")


def test_the_reference_counts_per_utc_day_whatever_the_servers_zone(engineer, monkeypatch):
    # 02:00 UTC is still the day before in New York.
    with monkeypatch.context() as zone:
        zone.setenv("TZ", "America/New_York")
        time.tzset()
        try:
            first = open_with(engineer, detected_at=datetime(2026, 12, 3, 2, 0, tzinfo=UTC))
            second = open_with(engineer, detected_at=datetime(2026, 12, 3, 23, 0, tzinfo=UTC))
        finally:
            zone.undo()
            time.tzset()
    assert (first.reference, second.reference) == ("TMT-INC-2026-12-03-001", "TMT-INC-2026-12-03-002")
    assert first.reference_day == second.reference_day == datetime(2026, 12, 3).date()


def test_the_hooks_hear_of_the_open_at_its_detection_time(engineer, monkeypatch):
    heard = []
    monkeypatch.setattr(hooks, "after_open", [lambda *, incident, now: heard.append((incident.pk, now))])
    detected = timezone.now() - timedelta(minutes=1)
    incident = open_with(engineer, detected_at=detected)
    assert heard == [(incident.pk, detected)]


def test_a_commander_named_at_open_ticks_an_item_keyed_to_it_as_the_reporters(manager):
    template = ChecklistTemplate.objects.filter(attach_on_state=State.DETECTED, active=True).first()
    ChecklistTemplateItem.objects.create(
        template=template, order=99, text="Name an incident commander", action_key=PortalAction.COMMANDER_ASSIGNED
    )
    commander = certify(UserFactory())
    detected = timezone.now() - timedelta(minutes=2)
    incident = open_with(manager, commander=commander, detected_at=detected)
    (item,) = IncidentChecklistItem.objects.filter(incident=incident, action_key=PortalAction.COMMANDER_ASSIGNED)
    assert (item.done_by, item.done_at, item.ticked_by_portal_when) == (
        manager,
        detected,
        f"{display_name(commander)} was made incident commander as the incident was logged",
    )


def test_a_retired_checklist_is_not_attached_to_new_incidents(engineer):
    retired = ChecklistTemplate.objects.filter(attach_on_state=State.DETECTED, active=True).first()
    retired.active = False
    retired.save(update_fields=["active"])
    incident = open_with(engineer)
    assert incident.checklist_items.exists()
    assert not incident.checklist_items.filter(template=retired).exists()


# -- the portal's own ticks -----------------------------------------------------------------------


def test_a_portal_tick_reaches_only_this_incidents_unticked_items(engineer, manager):
    incident, other = open_with(engineer), open_with(engineer)
    items = IncidentChecklistItem.objects.filter(action_key=PortalAction.ACKNOWLEDGED)
    mine = items.get(incident=incident)
    services.checklist_item_set_done(item=mine, user=manager, done=True)
    assert services.checklist_tick_for_action(incident=incident, action=PortalAction.ACKNOWLEDGED, when="x") == []
    mine.refresh_from_db()
    assert (mine.done_by, mine.ticked_by_portal_when) == (manager, ""), "a person's tick stays theirs"
    assert items.get(incident=other).done_at is None
    at = timezone.now()
    ticked = services.checklist_tick_for_action(
        incident=other, action=PortalAction.ACKNOWLEDGED, when="  " + "w" * 301, by=engineer, at=at
    )
    assert [item.pk for item in ticked] == [items.get(incident=other).pk]
    stored = items.get(incident=other)
    assert (stored.done_by, stored.done_at, stored.ticked_by_portal_when) == (engineer, at, "w" * 300)


def test_a_person_ticking_the_item_as_the_portal_does_keeps_their_tick(engineer, manager, monkeypatch):
    incident = open_with(engineer)
    item = IncidentChecklistItem.objects.get(incident=incident, action_key=PortalAction.ACKNOWLEDGED)
    real_filter = IncidentChecklistItem.objects.filter
    looked = []

    def filter_then_a_person_ticks(*args, **kwargs):
        found = real_filter(*args, **kwargs)
        if not looked:  # the portal found the item unticked; the person's tick lands now
            looked.append(list(found))
            real_filter(pk=item.pk).update(done_at=timezone.now(), done_by=manager)
            return looked[0]
        return found

    with monkeypatch.context() as race:
        race.setattr(IncidentChecklistItem.objects, "filter", filter_then_a_person_ticks)
        ticked = services.checklist_tick_for_action(
            incident=incident, action=PortalAction.ACKNOWLEDGED, when="Ann acknowledged", by=engineer
        )
    assert ticked == []
    item.refresh_from_db()
    assert (item.done_by, item.ticked_by_portal_when) == (manager, "")


def test_an_unknown_portal_action_is_a_programming_error():
    with pytest.raises(ValueError, match="^Unknown portal action 'launch'$"):
        services.checklist_tick_for_action(incident=None, action="launch", when="x")
