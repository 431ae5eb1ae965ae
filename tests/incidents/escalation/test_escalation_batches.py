"""Deadlines fired and pages delivered a batch at a time (bench/escalation_latency.py's numbers):
few round trips per firing, and still each firing exactly once, each notification claimed once
and each attempt logged."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from incidents.escalation import services as escalation
from incidents.escalation.models import Deadline, EscalationEvent
from incidents.notifications import services as notifications
from incidents.notifications.models import Notification, NotificationAttempt, WebhookEndpoint
from tests.factories import open_incident

pytestmark = pytest.mark.django_db
CTO_RULE = "role:cto-sev1"


def sev1_incidents_paging_the_cto(team, n: int) -> list:
    """Sev1 incidents whose only due deadline is the CTO page (a role escalation, as benched)."""
    incidents = [open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None) for _ in range(n)]
    Deadline.objects.filter(fired_at=None, cancelled_at=None).exclude(rule=CTO_RULE).update(
        cancelled_at=timezone.now(), cancel_reason="not under test"
    )
    return incidents


def test_a_batch_of_firings_takes_a_few_round_trips_each_and_writes_its_pages_at_once(team):
    WebhookEndpoint.objects.create(name="chat", url="https://chat.example/hook")
    incidents = sev1_incidents_paging_the_cto(team, 10)
    with CaptureQueriesContext(connection) as queries:
        fired = escalation.deadlines_fire_due(now=timezone.now())
    assert fired == 10
    # Per firing: savepoint, event, timeline entry, release; per batch: claim (2), contact,
    # compliance, webhooks, notifications, the pages' acknowledgement links (who may
    # acknowledge, their INSERT), the dispatcher's wake-up. Before batching it was 15 per firing.
    assert len(queries) <= 4 * fired + 11, [q["sql"][:80] for q in queries]

    rows = Notification.objects.filter(incident__in=incidents)
    assert rows.count() == 40  # SMS, phone, email follow-up and the chat hook, per incident
    # The pages are due at once; the email follow-ups wait for them.
    assert not rows.exclude(channel="email").filter(next_attempt_at__gt=timezone.now()).exists()
    follow_ups = rows.filter(channel="email")
    assert not follow_ups.filter(next_attempt_at__lte=timezone.now() + timedelta(seconds=30)).exists()
    assert set(rows.values_list("state", flat=True)) == {"pending"}
    assert sum("NOTIFY tmt_notifications" in q["sql"] for q in queries) == 1


def test_delivering_a_batch_claims_each_notification_once_and_logs_each_attempt(team, sms_provider):
    sev1_incidents_paging_the_cto(team, 5)
    escalation.deadlines_fire_due(now=timezone.now())
    pages = list(Notification.objects.filter(channel__in=["sms", "phone"]).values_list("pk", flat=True))
    assert len(pages) == 10

    assert notifications.notifications_deliver(notification_ids=pages) == "sent 10"
    again = notifications.notifications_deliver(notification_ids=pages)
    assert again == "not due or already handled 10"
    assert len(sms_provider.received) == 10
    for page in Notification.objects.filter(pk__in=pages):
        assert page.state == "sent" and page.attempts == 1 and page.sent_at is not None
        assert list(page.attempt_log.values_list("outcome", flat=True)) == ["sent"]


def test_a_batch_records_each_outcome_when_some_pages_fail(team, sms_provider):
    incidents = sev1_incidents_paging_the_cto(team, 3)
    escalation.deadlines_fire_due(now=timezone.now())
    refused = team["cto"].person.phone
    sms_provider.respond_with = lambda payload: 400 if payload["to"] == refused else 200
    pages = list(Notification.objects.filter(channel__in=["sms", "phone"]).values_list("pk", flat=True))
    assert notifications.notifications_deliver(notification_ids=pages) == "sent 3, failed 3"
    calls = Notification.objects.filter(channel="phone", incident__in=incidents)
    assert set(calls.values_list("state", flat=True)) == {"failed"}
    assert NotificationAttempt.objects.filter(outcome="permanent").count() == 3
    assert NotificationAttempt.objects.filter(outcome="sent").count() == 3


def test_a_failing_firing_is_retried_later_without_its_pages_and_the_batch_goes_on(team, monkeypatch):
    first, broken, last = sev1_incidents_paging_the_cto(team, 3)
    fire_role = escalation._HANDLERS[Deadline.Kind.ROLE_ESCALATION]

    def fails_after_paging(deadline, incident, now, batch):
        fire_role(deadline, incident, now, batch)
        if incident.pk == broken.pk:
            raise RuntimeError("boom")

    monkeypatch.setitem(escalation._HANDLERS, Deadline.Kind.ROLE_ESCALATION, fails_after_paging)
    assert escalation.deadlines_fire_due(now=timezone.now()) == 2
    assert not EscalationEvent.objects.filter(incident=broken).exists()
    assert not Notification.objects.filter(incident=broken).exists()
    retry = Deadline.objects.get(incident=broken, rule=CTO_RULE)
    assert retry.pending and retry.due_at > timezone.now() + timedelta(seconds=20)
    for incident in (first, last):
        assert Notification.objects.filter(incident=incident).count() == 3


def test_a_step_that_already_fired_pages_nobody_again_within_a_batch(team):
    first, repeated = sev1_incidents_paging_the_cto(team, 2)
    # As if another claimer fired this step already (the unique constraint is the last guard).
    EscalationEvent.objects.create(
        incident=repeated, rule=CTO_RULE, step=0, fired_at=timezone.now(), summary="fired before"
    )
    assert escalation.deadlines_fire_due(now=timezone.now()) == 1
    assert not Notification.objects.filter(incident=repeated).exists()
    assert Notification.objects.filter(incident=first).count() == 3
    assert EscalationEvent.objects.filter(incident=repeated).count() == 1
