"""Outbox rows as the dispatcher sees them, for the notification tests."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from incidents.escalation.models import EscalationEvent
from incidents.notifications.models import Notification, NotificationAttempt

SUBJECT = "[SEV1] INC-1 Circuit breaker not tripping"
BODY = "Circuit breaker not tripping. Acknowledge within 15 minutes."


def claimed(channel: str, address: str, *, incident=None, event=None, attempts: int = 0, **fields) -> Notification:
    """A row as the dispatcher holds it: claimed a moment ago, `attempts` tries behind it."""
    now = timezone.now()
    row = Notification.objects.create(
        incident=incident,
        event=event,
        channel=channel,
        address=address,
        subject=fields.pop("subject", SUBJECT),
        body=fields.pop("body", BODY),
        state=fields.pop("state", Notification.State.SENDING),
        attempts=attempts,
        next_attempt_at=now - timedelta(seconds=5),
        claimed_at=now,
        **fields,
    )
    return row


def fire_event(
    incident, *, rule: str = "sev1_immediate", summary: str = "Paged the on-call engineer"
) -> EscalationEvent:
    return EscalationEvent.objects.create(
        incident=incident, rule=rule, step=0, fired_at=timezone.now(), summary=summary
    )


def attempts_of(row: Notification) -> list[tuple[str, str]]:
    return list(NotificationAttempt.objects.filter(notification=row).order_by("pk").values_list("outcome", "detail"))


def outbox_row(state: str, *, due, claimed_at=None, channel=Notification.Channel.EMAIL, incident=None) -> Notification:
    return Notification.objects.create(
        incident=incident,
        channel=channel,
        address="oncall@tmt.example",
        subject="s",
        body="b",
        state=state,
        next_attempt_at=due,
        claimed_at=claimed_at,
    )


def acknowledged_follow_up(incident) -> Notification:
    """A claimed follow-up email of an incident someone acknowledged meanwhile (as loaded at claim)."""
    row = claimed(
        Notification.Channel.EMAIL,
        "oncall@tmt.example",
        incident=incident,
        event=fire_event(incident, rule="ack_follow_up"),
    )
    row.incident.acknowledged_at = timezone.now()
    return row
