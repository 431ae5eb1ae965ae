"""When the dispatcher must next look at the outbox: the earliest pending page, or the moment a
page left "sending" by a killed delivery may be taken over, whichever comes first; nothing to
wait for when neither is there."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from incidents.notifications import services as notifications
from incidents.notifications.models import Notification

pytestmark = pytest.mark.django_db


def row(state: str, *, next_attempt_at, claimed_at=None) -> Notification:
    return Notification.objects.create(
        incident=None,
        channel=Notification.Channel.EMAIL,
        address="oncall@example.com",
        subject="Page",
        body="Page",
        state=state,
        next_attempt_at=next_attempt_at,
        claimed_at=claimed_at,
    )


def test_with_nothing_pending_or_sending_there_is_nothing_to_wait_for():
    now = timezone.now()
    row(Notification.State.SENT, next_attempt_at=now - timedelta(minutes=1), claimed_at=now)
    row(Notification.State.FAILED, next_attempt_at=now - timedelta(minutes=2))
    assert notifications.notifications_next_due_at() is None


def test_the_earliest_pending_page_is_next():
    now = timezone.now()
    later, sooner = now + timedelta(minutes=5), now + timedelta(seconds=30)
    row(Notification.State.PENDING, next_attempt_at=later)
    row(Notification.State.PENDING, next_attempt_at=sooner)
    row(Notification.State.SENT, next_attempt_at=now - timedelta(hours=1))
    assert notifications.notifications_next_due_at() == sooner


def test_a_page_left_sending_is_next_when_its_takeover_comes_first(settings):
    settings.TMT_NOTIFY_TAKEOVER_SECONDS = 20
    now = timezone.now()
    first_claim, second_claim = now - timedelta(seconds=15), now - timedelta(seconds=5)
    row(Notification.State.SENDING, next_attempt_at=now, claimed_at=second_claim)
    row(Notification.State.SENDING, next_attempt_at=now, claimed_at=first_claim)
    row(Notification.State.PENDING, next_attempt_at=now + timedelta(minutes=1))
    assert notifications.notifications_next_due_at() == first_claim + timedelta(seconds=20)


def test_a_pending_page_due_before_any_takeover_is_next(settings):
    settings.TMT_NOTIFY_TAKEOVER_SECONDS = 20
    now = timezone.now()
    row(Notification.State.SENDING, next_attempt_at=now, claimed_at=now)
    row(Notification.State.PENDING, next_attempt_at=now + timedelta(seconds=3))
    assert notifications.notifications_next_due_at() == now + timedelta(seconds=3)
