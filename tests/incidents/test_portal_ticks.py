"""Checklist items the portal ticks when it did the work itself, and only those, once."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from incidents import services
from incidents.escalation import status_updates
from incidents.models import (
    ChecklistTemplate,
    ChecklistTemplateItem,
    IncidentChecklistItem,
    PortalAction,
    TimelineEntry,
)
from tests.factories import UserFactory, certify, open_incident

pytestmark = pytest.mark.django_db

ACKNOWLEDGE = "Acknowledge alert: acknowledge monitoring alerts"
EVIDENCE = "Preserve evidence: capture logs and system state"
FORENSIC = "Preserve evidence: capture forensic data"
COMMUNICATION = "Initial communication: notify response team"
TRACKING = "Start tracking: create incident ticket"


def _name(user) -> str:
    return user.get_full_name() or user.get_username()


def _item(incident, text: str) -> IncidentChecklistItem:
    return IncidentChecklistItem.objects.get(incident=incident, text=text)


def _kinds(incident) -> list[str]:
    return list(incident.timeline.order_by("id").values_list("kind", flat=True))


def _log(name: str = "agent.log") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"2026-12-06 03:01 circuit breaker timeout\n", content_type="text/plain")


def test_the_seeds_immediate_actions_are_keyed_to_what_the_portal_does():
    keys = dict(ChecklistTemplateItem.objects.exclude(action_key="").values_list("text", "action_key").order_by("id"))
    assert keys == {
        ACKNOWLEDGE: PortalAction.ACKNOWLEDGED,
        "Safety first: initiate emergency stop if needed": PortalAction.EMERGENCY_STOP,
        EVIDENCE: PortalAction.EVIDENCE_ATTACHED,
        COMMUNICATION: PortalAction.STATUS_UPDATE_POSTED,
        TRACKING: PortalAction.INCIDENT_LOGGED,
        FORENSIC: PortalAction.EVIDENCE_ATTACHED,
    }


def test_logging_an_incident_ticks_start_tracking(engineer):
    incident = open_incident(reported_by=engineer)
    item = _item(incident, TRACKING)
    assert item.done and item.ticked_by_portal and item.done_by == engineer
    assert item.ticked_by_portal_when == f"{_name(engineer)} logged the incident"
    # The opening entry tells it: no second entry for the same moment.
    assert _kinds(incident) == [TimelineEntry.Kind.STATE_CHANGE]
    # Nothing else was done yet: every other item is still open.
    assert not IncidentChecklistItem.objects.filter(incident=incident, done_at__isnull=False).exclude(pk=item.pk)


def test_acknowledging_ticks_its_item_shown_as_ticked_by_the_portal(engineer_client, engineer):
    incident = open_incident(reported_by=engineer)
    assert not _item(incident, ACKNOWLEDGE).done
    engineer_client.post(
        reverse("incidents:transition", args=[incident.reference]),
        {"name": "acknowledge", "expected_state": "detected"},
    )
    item = _item(incident, ACKNOWLEDGE)
    incident.refresh_from_db()
    assert item.done_at == incident.acknowledged_at and item.ticked_by_portal
    assert _kinds(incident) == [TimelineEntry.Kind.STATE_CHANGE] * 2, "the acknowledgement's entry, no other"
    assert item.ticked_by_portal_when == f"{_name(engineer)} acknowledged"
    html = engineer_client.get(incident.get_absolute_url()).content.decode()
    at = timezone.localtime(item.done_at).strftime("%H:%M")
    assert escape(f"ticked by the portal when {_name(engineer)} acknowledged at {at}") in html


def test_an_item_a_person_ticked_stays_theirs(engineer, sysadmin):
    incident = open_incident(reported_by=engineer)
    services.checklist_item_set_done(item=_item(incident, ACKNOWLEDGE), user=sysadmin, done=True)
    ticked_at = _item(incident, ACKNOWLEDGE).done_at
    services.incident_acknowledge(incident=incident, user=engineer)
    item = _item(incident, ACKNOWLEDGE)
    assert (item.done_by, item.done_at, item.ticked_by_portal_when) == (sysadmin, ticked_at, "")
    assert incident.timeline.filter(kind=TimelineEntry.Kind.CHECKLIST).count() == 1  # the person's tick


def test_a_person_may_untick_what_the_portal_ticked(engineer):
    incident = open_incident(reported_by=engineer)
    item = services.checklist_item_set_done(item=_item(incident, TRACKING), user=engineer, done=False)
    assert not item.done and item.ticked_by_portal_when == "" and not item.ticked_by_portal


def test_evidence_ticks_its_items_once_however_many_files(engineer):
    incident = open_incident(reported_by=engineer, category="security")
    services.evidence_attach(incident=incident, uploaded=_log("first.log"), user=engineer)
    first = {text: _item(incident, text).done_at for text in (EVIDENCE, FORENSIC)}
    assert all(first.values())
    assert _item(incident, FORENSIC).ticked_by_portal_when == f"{_name(engineer)} attached first.log"
    services.evidence_attach(incident=incident, uploaded=_log("second.log"), user=engineer)
    assert {text: _item(incident, text).done_at for text in (EVIDENCE, FORENSIC)} == first
    assert _item(incident, FORENSIC).ticked_by_portal_when == f"{_name(engineer)} attached first.log"
    assert _kinds(incident)[1:] == [TimelineEntry.Kind.EVIDENCE] * 2, "one entry per file, none for the ticks"


def test_a_status_update_ticks_initial_communication(engineer):
    incident = open_incident(reported_by=engineer)
    draft = status_updates.status_update_draft(incident=incident)
    status_updates.status_update_post(
        incident=incident,
        user=engineer,
        subject=draft.subject,
        status=draft.status,
        impact="Signals delayed",
        details="Restarting the agent",
        contact="Incident desk",
    )
    item = _item(incident, COMMUNICATION)
    assert item.ticked_by_portal and item.ticked_by_portal_when == f"{_name(engineer)} posted status update #1"


def test_a_commander_ticks_an_item_an_admin_keyed_to_it(manager, engineer):
    template = ChecklistTemplate.objects.get(slug="immediate-actions")
    ChecklistTemplateItem.objects.create(
        template=template, order=9, text="Name an incident commander", action_key=PortalAction.COMMANDER_ASSIGNED
    )
    incident = open_incident(reported_by=manager)
    services.incident_assign_commander(incident=incident, commander=certify(engineer), user=manager)
    item = _item(incident, "Name an incident commander")
    assert item.ticked_by_portal_when == f"{_name(manager)} made {_name(engineer)} incident commander"
    opened_in_command = open_incident(reported_by=manager, commander=manager)
    assert _item(opened_in_command, "Name an incident commander").ticked_by_portal_when == (
        f"{_name(manager)} was made incident commander as the incident was logged"
    )


def test_unkeyed_items_are_never_ticked_on_a_drill_or_a_real_incident(engineer):
    template = ChecklistTemplate.objects.get(slug="immediate-actions")
    ChecklistTemplateItem.objects.create(template=template, order=9, text="Call the broker's desk")
    for is_drill in (True, False):
        incident = open_incident(reported_by=UserFactory(), is_drill=is_drill)
        services.incident_acknowledge(incident=incident, user=engineer)
        services.evidence_attach(incident=incident, uploaded=_log(), user=engineer)
        assert not _item(incident, "Call the broker's desk").done, is_drill
        assert _item(incident, ACKNOWLEDGE).ticked_by_portal, is_drill  # the keyed ones are


def test_ticking_twice_writes_nothing(engineer):
    incident = open_incident(reported_by=engineer)
    again = services.checklist_tick_for_action(
        incident=incident, action=PortalAction.INCIDENT_LOGGED, when="someone logged it again"
    )
    assert again == [] and _kinds(incident) == [TimelineEntry.Kind.STATE_CHANGE]
    assert _item(incident, TRACKING).ticked_by_portal_when == f"{_name(engineer)} logged the incident"


def test_an_incident_that_is_over_is_not_ticked(engineer):
    incident = open_incident(reported_by=engineer)
    services.incident_transition(incident=incident, name="cancel", user=engineer, reason="False alarm")
    assert services.checklist_tick_for_action(incident=incident, action=PortalAction.ACKNOWLEDGED, when="x") == []
    assert not _item(incident, ACKNOWLEDGE).done


def test_the_admin_edits_an_items_portal_key(admin_client):
    item = ChecklistTemplateItem.objects.get(text=TRACKING)
    page = admin_client.get(reverse("admin:incidents_checklisttemplateitem_change", args=[item.pk]))
    assert page.status_code == 200 and 'name="action_key"' in page.content.decode()
    answer = admin_client.post(
        reverse("admin:incidents_checklisttemplateitem_change", args=[item.pk]),
        {"template": item.template_id, "text": item.text, "order": item.order, "action_key": ""},
    )
    assert answer.status_code == 302
    item.refresh_from_db()
    assert item.action_key == ""
    assert not _item(open_incident(), TRACKING).done
