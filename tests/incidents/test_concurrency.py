"""Races that only a real database shows: run on PostgreSQL with one connection per thread."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

from incidents import services
from incidents.models import Incident, State
from tests.factories import open_incident

# serialized_rollback restores the policy rows the migrations seeded, which a flush removes.
pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("postgres"),
]


def _in_own_connection(fn):
    def run(*args):
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return run


def test_fifty_concurrent_opens_get_fifty_distinct_gap_free_ids(engineer):
    barrier = threading.Barrier(50)

    @_in_own_connection
    def open_one(i):
        barrier.wait()
        return open_incident(reported_by=engineer, title=f"Concurrent {i}").reference

    with ThreadPoolExecutor(max_workers=50) as pool:
        references = list(pool.map(open_one, range(50)))

    assert len(set(references)) == 50
    numbers = sorted(int(ref.rsplit("-", 1)[1]) for ref in references)
    assert numbers == list(range(1, 51))
    assert Incident.objects.count() == 50


def test_two_users_acknowledging_at_once_one_wins(engineer, sysadmin):
    incident = open_incident(reported_by=engineer)
    barrier = threading.Barrier(2)

    @_in_own_connection
    def acknowledge(user):
        mine = Incident.objects.get(pk=incident.pk)  # each loaded the page in the same state
        barrier.wait()
        try:
            services.incident_transition(incident=mine, name="acknowledge", user=user, expected_state=State.DETECTED)
            return "won"
        except services.IncidentChangedError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(acknowledge, [engineer, sysadmin]))

    assert outcomes.count("won") == 1
    loser = next(o for o in outcomes if o != "won")
    assert "changed by someone else" in loser and "Reload" in loser
    incident.refresh_from_db()
    assert incident.state == State.ACKNOWLEDGED
    assert incident.timeline.filter(to_state=State.ACKNOWLEDGED).count() == 1
    assert connection.vendor == "postgresql"
