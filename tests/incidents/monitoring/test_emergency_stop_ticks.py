"""An emergency stop the circuit breaker took ticks "Safety first"; one it never got does not."""

from __future__ import annotations

from incidents.models import IncidentChecklistItem
from incidents.monitoring.models import EmergencyStop
from tests.factories import open_incident
from tests.incidents.monitoring.test_emergency_stop import post_stop

SAFETY_FIRST = "Safety first: initiate emergency stop if needed"


def _safety_first(incident) -> IncidentChecklistItem:
    return IncidentChecklistItem.objects.get(incident=incident, text=SAFETY_FIRST)


def test_a_verified_stop_ticks_safety_first_on_its_incident(breaker, engineer_client, engineer):
    incident = open_incident(reported_by=engineer, level=2, systems=("circuit_breaker",))
    post_stop(engineer_client, incident=incident.reference)
    stop = EmergencyStop.objects.get()
    assert stop.outcome == EmergencyStop.Outcome.STOPPED
    item = _safety_first(incident)
    name = engineer.get_full_name() or engineer.get_username()
    assert item.done_at == stop.completed_at and item.done_by == engineer
    assert item.ticked_by_portal_when == f"{name} sent an emergency stop: trading stopped (verified)"
    assert not incident.timeline.filter(kind="checklist").exists(), "the stop's own entries tell it"


def test_a_stop_that_opens_its_own_incident_ticks_it_too(breaker, engineer_client):
    post_stop(engineer_client)
    assert _safety_first(EmergencyStop.objects.get().incident).ticked_by_portal


def test_a_stop_the_breaker_never_got_leaves_the_item_to_people(breaker, engineer_client, engineer):
    incident = open_incident(reported_by=engineer, level=2, systems=("circuit_breaker",))
    breaker.inject_fault("circuit_breaker", "down")
    post_stop(engineer_client, incident=incident.reference)
    assert EmergencyStop.objects.get().outcome == EmergencyStop.Outcome.UNREACHABLE
    assert not _safety_first(incident).done
