"""A deadline that cannot be fired is put back 30 seconds and the rest of its batch fires; a
database connection lost mid-batch rolls the whole batch back, claims included, for the
dispatcher to try again, so nothing is half-sent and nothing is lost. And what the outage
deadline records when an incident has been open for four hours."""

from datetime import timedelta

import pytest
from django.db import InterfaceError, OperationalError

from incidents.escalation import services as escalation
from incidents.escalation.models import Deadline, EscalationEvent, RegulatoryObligation
from incidents.models import TimelineEntry
from incidents.notifications.models import Notification
from tests.factories import open_incident

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_due(team):
    """Two incidents whose first pages are due, the first's firing set to fail."""
    failing = open_incident(reported_by=team["oncall2"], level=2)
    healthy = open_incident(reported_by=team["oncall2"], level=2)
    return failing, healthy


def fail_firing_of(monkeypatch, incident, error: Exception):
    real = escalation._HANDLERS[Deadline.Kind.ACKNOWLEDGE]

    def handler(deadline, inc, now, batch):
        if inc.pk == incident.pk:
            raise error
        return real(deadline, inc, now, batch)

    monkeypatch.setitem(escalation._HANDLERS, Deadline.Kind.ACKNOWLEDGE, handler)


def first_page_row(incident) -> Deadline:
    return Deadline.objects.get(incident=incident, rule="ack", step=0)


def test_a_firing_that_times_out_is_put_back_30_seconds_and_the_rest_fire(two_due, monkeypatch):
    failing, healthy = two_due
    # A lock or statement timeout: the savepoint is rolled back, the connection still works.
    fail_firing_of(monkeypatch, failing, OperationalError("canceling statement due to lock timeout"))

    fired = escalation.deadlines_fire_due(now=healthy.detected_at)

    healthy_page = EscalationEvent.objects.get(incident=healthy, rule="ack", step=0)
    assert fired == len(EscalationEvent.objects.filter(incident=healthy)) >= 1
    row = first_page_row(failing)
    assert row.fired_at is None and row.cancelled_at is None
    # Put back 30 s from its firing; the clock is read per deadline, so the healthy page's time
    # is the same moment to within the batch's few milliseconds.
    retry_in = row.due_at - healthy_page.fired_at
    assert abs(retry_in - escalation.FIRING_RETRY) < timedelta(seconds=1)
    assert not EscalationEvent.objects.filter(incident=failing).exists()
    assert not Notification.objects.filter(incident=failing).exists()  # its pages were discarded


def test_a_lost_connection_rolls_the_whole_batch_back_for_the_next_run(two_due, monkeypatch):
    failing, healthy = two_due
    due = {incident.pk: first_page_row(incident).due_at for incident in two_due}
    fail_firing_of(monkeypatch, failing, InterfaceError("connection already closed"))

    with pytest.raises(InterfaceError):
        escalation.deadlines_fire_due(now=healthy.detected_at)

    for incident in two_due:
        row = first_page_row(incident)
        # Not claimed, not put back 30 s: due as it was, for the dispatcher's next run.
        assert row.fired_at is None and row.due_at == due[incident.pk]
        assert not EscalationEvent.objects.filter(incident=incident).exists()
        assert not Notification.objects.filter(incident=incident).exists()


def test_an_incident_open_four_hours_records_the_outage_and_raises_its_notice_at_that_moment(team):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    row = Deadline.objects.get(incident=incident, rule="outage_4h")

    escalation.deadlines_fire_due(now=row.due_at)

    event = EscalationEvent.objects.get(incident=incident, rule="outage_4h")
    assert event.summary == "Incident open for more than 4 hours: outage notification required"
    assert event.target_user is None and event.target_label == ""
    assert TimelineEntry.objects.filter(incident=incident, action=event.summary).count() == 1
    obligation = RegulatoryObligation.objects.get(incident=incident)
    assert obligation.raised_at == event.fired_at  # the clock starts when the engine saw it
    assert obligation.due_at == event.fired_at + timedelta(hours=24)
