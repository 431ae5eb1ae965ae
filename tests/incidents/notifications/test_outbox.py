"""The outbox holds messages about no incident too (drill and certification reminders)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.notifications import services as notifications
from incidents.notifications.models import Notification, NotificationAttempt
from tests.factories import UserFactory, open_incident

pytestmark = pytest.mark.django_db


def _queue(incident, channel, *, due_in_s: float, address: str = "+447700900001") -> Notification:
    notifications.notification_queue(
        incident,
        channel=channel,
        recipient=None,
        address=address,
        subject="s",
        body="b",
        next_attempt_at=timezone.now() + timedelta(seconds=due_in_s),
    )
    return Notification.objects.latest("pk")


def test_a_reminder_sms_waits_its_turn_while_an_incident_page_goes_first():
    incident = open_incident(level=1)
    reminder_sms = _queue(None, Notification.Channel.SMS, due_in_s=-30)
    incident_email = _queue(incident, Notification.Channel.EMAIL, due_in_s=-20, address="oncall@example.com")
    incident_sms = _queue(incident, Notification.Channel.SMS, due_in_s=-10)
    claimed = notifications.notifications_claim_due(limit=3)
    # The incident's SMS first although due last; then the rest by when each fell due.
    assert [row.pk for row in claimed] == [incident_sms.pk, reminder_sms.pk, incident_email.pk]


def test_the_attempts_list_shows_a_reminder_without_an_incident(admin_client):
    reminder = _queue(None, Notification.Channel.EMAIL, due_in_s=0, address="trainee@example.com")
    NotificationAttempt.objects.create(notification=reminder, attempted_at=timezone.now(), outcome="sent")
    for page in ("admin:notifications_notificationattempt_changelist", "admin:notifications_notification_changelist"):
        assert admin_client.get(reverse(page)).status_code == 200, page
    assert admin_client.get(reverse("admin:notifications_notification_change", args=[reminder.pk])).status_code == 200


def test_a_reminder_that_fails_for_good_writes_no_timeline_entry(settings):
    settings.TMT_SMS_PROVIDER_URL = ""  # no provider: the SMS cannot be sent, permanently
    user = UserFactory()
    notifications.notification_queue(
        None,
        channel=Notification.Channel.SMS,
        recipient=user,
        address="+447700900002",
        subject="s",
        body="b",
        next_attempt_at=timezone.now(),
    )
    (claimed,) = notifications.notifications_claim_due(limit=5)
    assert notifications.notification_send(notification=claimed).startswith("failed")
    claimed.refresh_from_db()
    assert claimed.state == Notification.State.FAILED and claimed.incident is None
