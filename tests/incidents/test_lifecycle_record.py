"""What the record says after each step: the entries and times a reviewer reads afterwards."""

import pytest
from django.utils import timezone

from incidents import services
from incidents.models import Incident, TimelineEntry
from tests.factories import open_incident, tick_initial_assessment

pytestmark = pytest.mark.django_db


def _contained(engineer, **kwargs):
    incident = open_incident(reported_by=engineer, level=3, **kwargs)
    for name in ["acknowledge", "start_investigation"]:
        services.incident_transition(incident=incident, name=name, user=engineer)
    tick_initial_assessment(incident, engineer)
    services.incident_transition(incident=incident, name="contain", user=engineer)
    return services.incident_update(incident=incident, user=engineer, resolution_actions="Failed over to the standby")


def test_the_cancel_reason_is_on_the_timeline(engineer):
    incident = open_incident(reported_by=engineer)
    services.incident_transition(incident=incident, name="cancel", user=engineer, reason="Duplicate of a drill alert")
    last = incident.timeline.order_by("-id").first()
    assert last.kind == TimelineEntry.Kind.STATE_CHANGE and last.to_state == "cancelled"
    assert last.action.endswith("Reason: Duplicate of a drill alert")
    assert last.owner == engineer


def test_resolving_fills_the_end_time_with_the_resolution_time(engineer):
    incident = _contained(engineer)
    assert incident.ended_at is None
    services.incident_transition(incident=incident, name="resolve", user=engineer)
    incident = Incident.objects.get(pk=incident.pk)
    assert incident.resolved_at is not None and incident.ended_at == incident.resolved_at


def test_resolving_keeps_an_end_time_someone_entered(engineer):
    incident = _contained(engineer)
    ended = timezone.now()
    incident = services.incident_update(incident=incident, user=engineer, ended_at=ended)
    services.incident_transition(incident=incident, name="resolve", user=engineer)
    incident = Incident.objects.get(pk=incident.pk)
    assert incident.ended_at == ended and incident.resolved_at >= ended


def test_the_commander_named_at_open_is_on_the_timeline(engineer):
    incident = open_incident(reported_by=engineer, commander=engineer)
    entries = list(incident.timeline.order_by("id").values_list("kind", "action", "owner"))
    assert (TimelineEntry.Kind.UPDATE, f"Incident commander: {engineer.get_full_name()}", engineer.pk) in entries


def test_no_commander_entry_when_nobody_took_command(engineer):
    incident = open_incident(reported_by=engineer)
    assert not incident.timeline.filter(action__startswith="Incident commander").exists()


def test_closing_needs_the_close_permission_and_every_other_move_the_transition_one():
    # Read from each transition's own definition: what the service and the API check first.
    from incidents.models.incident import TRANSITION_NAMES, _permission_of

    needed = {name: _permission_of(name) for name in TRANSITION_NAMES}
    assert needed == {name: "incidents.transition_incident" for name in TRANSITION_NAMES} | {
        "close": "incidents.close_incident"
    }
