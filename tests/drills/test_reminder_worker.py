"""Reminders through a real Celery worker on Redis: the beat task claims each once and queues it in
the outbox, which the paging dispatcher delivers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from drills.models import Reminder
from drills.tasks import send_due_reminders
from tests.celery_fixtures import wait_for

from .conftest import schedule

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_the_beat_task_sends_a_due_drill_reminder_once(celery_worker, dispatcher, trainer_user, team):
    drill = schedule(trainer_user, participants=[team["oncall2"]], days=10)
    # Bring the 7-day reminders due now, as if a few days had passed.
    Reminder.objects.filter(drill=drill, lead=timedelta(days=7)).update(due_at=timezone.now() - timedelta(seconds=1))
    for _ in range(3):  # beat ticking while the first run is still sending
        send_due_reminders.delay()
    wait_for(
        lambda: Reminder.objects.filter(drill=drill, lead=timedelta(days=7), sent_at__isnull=False).count() == 2,
        what="both 7-day reminders sent",
    )
    send_due_reminders.delay()
    wait_for(lambda: len(mail.outbox) >= 2, what="the emails")
    recipients = sorted(m.to[0] for m in mail.outbox)
    assert len(mail.outbox) == 2  # once each, though beat ticked four times
    assert recipients == sorted([trainer_user.email, team["oncall2"].email])
    assert Reminder.objects.filter(drill=drill, lead=timedelta(days=1), sent_at__isnull=True).count() == 2
