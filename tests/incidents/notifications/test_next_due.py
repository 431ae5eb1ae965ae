"""When the dispatcher must next look at the outbox: the earliest pending page, or the moment a
page left "sending" by a killed delivery may be taken over, whichever comes first; nothing to
wait for when neither is there."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from incidents.notifications import services as notifications
from incidents.notifications.models import Notification
from tests.incidents.notifications.rows import outbox_row

pytestmark = pytest.mark.django_db


def test_with_nothing_pending_or_sending_there_is_nothing_to_wait_for():
    now = timezone.now()
    outbox_row(Notification.State.SENT, due=now - timedelta(minutes=1), claimed_at=now)
    outbox_row(Notification.State.FAILED, due=now - timedelta(minutes=2))
    assert notifications.notifications_next_due_at() is None


def test_the_earliest_pending_page_is_next():
    now = timezone.now()
    later, sooner = now + timedelta(minutes=5), now + timedelta(seconds=30)
    outbox_row(Notification.State.PENDING, due=later)
    outbox_row(Notification.State.PENDING, due=sooner)
    outbox_row(Notification.State.SENT, due=now - timedelta(hours=1))
    assert notifications.notifications_next_due_at() == sooner


def test_a_page_left_sending_is_next_when_its_takeover_comes_first(settings):
    settings.TMT_NOTIFY_TAKEOVER_SECONDS = 20
    now = timezone.now()
    first_claim, second_claim = now - timedelta(seconds=15), now - timedelta(seconds=5)
    outbox_row(Notification.State.SENDING, due=now, claimed_at=second_claim)
    outbox_row(Notification.State.SENDING, due=now, claimed_at=first_claim)
    outbox_row(Notification.State.PENDING, due=now + timedelta(minutes=1))
    assert notifications.notifications_next_due_at() == first_claim + timedelta(seconds=20)


def test_a_pending_page_due_before_any_takeover_is_next(settings):
    settings.TMT_NOTIFY_TAKEOVER_SECONDS = 20
    now = timezone.now()
    outbox_row(Notification.State.SENDING, due=now, claimed_at=now)
    outbox_row(Notification.State.PENDING, due=now + timedelta(seconds=3))
    assert notifications.notifications_next_due_at() == now + timedelta(seconds=3)
