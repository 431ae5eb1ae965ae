"""Changes are announced to the live pages once they commit, from whichever process made them,
and an announcement that cannot be written never fails the change."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction
from django.utils import timezone

from incidents import services
from incidents.escalation import services as escalation
from incidents.live.models import LiveEvent
from incidents.models import Incident, TimelineEntry
from incidents.monitoring import poller
from incidents.monitoring import services as health
from incidents.monitoring.models import HealthTarget
from tests.factories import UserFactory, make_roster, open_incident

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


class Boom(Exception):
    pass


def incident_events(incident=None) -> list[int | None]:
    events = LiveEvent.objects.filter(topic=LiveEvent.Topic.INCIDENT).order_by("id")
    if incident is not None:
        events = events.filter(incident_id=incident.pk)
    return list(events.values_list("incident_id", flat=True))


def test_a_note_is_announced_when_its_transaction_commits_not_before():
    author = UserFactory()
    incident = open_incident(reported_by=author)
    LiveEvent.objects.all().delete()
    with transaction.atomic():
        services.timeline_add_note(incident=incident, author=author, text="Failover started")
        assert incident_events() == [], "announced before the change was visible to anyone"
    assert incident_events() == [incident.pk]


def test_a_rolled_back_change_is_never_announced():
    author = UserFactory()
    incident = open_incident(reported_by=author)
    LiveEvent.objects.all().delete()
    with pytest.raises(Boom), transaction.atomic():
        services.timeline_add_note(incident=incident, author=author, text="Never happened")
        raise Boom
    assert not TimelineEntry.objects.filter(action="Never happened").exists()
    assert incident_events() == []


def test_one_announcement_per_incident_and_transaction():
    author = UserFactory()
    other = open_incident(reported_by=author, title="Other")
    incident = open_incident(reported_by=author)
    LiveEvent.objects.all().delete()
    with transaction.atomic():
        services.timeline_add_note(incident=incident, author=author, text="one")
        services.timeline_add_note(incident=other, author=author, text="two")
        services.timeline_add_note(incident=incident, author=author, text="three")
    assert incident_events() == [incident.pk, other.pk]


def test_a_savepoint_rolled_back_takes_only_its_own_announcement():
    author = UserFactory()
    kept, dropped = open_incident(reported_by=author, title="Kept"), open_incident(reported_by=author, title="Dropped")
    LiveEvent.objects.all().delete()
    with transaction.atomic():
        # Announced inside a savepoint that rolls back, then again outside it: still announced.
        with pytest.raises(Boom), transaction.atomic():
            services.timeline_add_note(incident=kept, author=author, text="first try")
            services.timeline_add_note(incident=dropped, author=author, text="rolled back")
            raise Boom
        services.timeline_add_note(incident=kept, author=author, text="second try")
    assert incident_events() == [kept.pk]


def test_an_announcement_that_cannot_be_written_never_fails_the_change(caplog):
    author = UserFactory()
    incident = open_incident(reported_by=author)
    table = LiveEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        with caplog.at_level(logging.WARNING, logger="incidents.live.publish"):
            entry = services.timeline_add_note(incident=incident, author=author, text="Written all the same")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
    assert TimelineEntry.objects.filter(pk=entry.pk, action="Written all the same").exists()
    assert "could not announce a change to the live pages" in caplog.text


def test_an_alert_from_monitoring_is_announced(client):
    from incidents.api.models import AlertIntegration
    from incidents.api.services.alerts import alert_integration_issue_token

    reporter = UserFactory(username="monitoring", is_active=False)
    integration = AlertIntegration(
        name="Generic", kind=AlertIntegration.Kind.GENERIC, reporter=reporter, default_severity=1
    )
    token = alert_integration_issue_token(integration=integration)
    LiveEvent.objects.all().delete()
    answer = client.post(
        "/api/v1/alerts/",
        {"source": "prometheus", "fingerprint": "cb-down", "severity": "critical", "summary": "CB down"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code in (200, 201, 202), answer.content
    opened = Incident.objects.get(alert_fingerprint__endswith="cb-down")
    assert incident_events() == [opened.pk]


def test_a_deadline_fired_by_the_dispatcher_is_announced():
    team = make_roster()
    incident = open_incident(reported_by=team["oncall1"], level=1)
    LiveEvent.objects.all().delete()
    assert escalation.deadlines_fire_due(now=datetime(2200, 1, 1, tzinfo=UTC)) > 0
    assert set(incident_events()) == {incident.pk}


def test_a_health_target_changing_state_is_announced_and_a_steady_one_is_not():
    target = HealthTarget.objects.order_by("pk").first()
    assert target is not None, "the seeded health targets"
    LiveEvent.objects.all().delete()
    now = timezone.now()

    def result(healthy: bool, at) -> poller.ProbeResult:
        return poller.ProbeResult(target.pk, at, healthy, 12.0, 200 if healthy else None, "" if healthy else "refused")

    health.health_results_apply([result(True, now)])  # unknown -> healthy: quiet, batched
    assert not LiveEvent.objects.filter(topic=LiveEvent.Topic.HEALTH).exists()
    target.refresh_from_db()
    for i in range(1, target.failures_before_down + 2):
        health.health_results_apply([result(False, now + timezone.timedelta(seconds=i))])
    target.refresh_from_db()
    assert target.state != HealthTarget.State.HEALTHY
    assert LiveEvent.objects.filter(topic=LiveEvent.Topic.HEALTH).exists()
