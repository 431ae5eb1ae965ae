"""Reads of the outbox."""

from __future__ import annotations

from incidents.models import (
    Incident,
)
from incidents.notifications.models import Notification


def failed_notifications(incident: Incident, *, limit: int = 10) -> list[Notification]:
    """Pages that failed for good, newest first: someone the escalation meant to reach wasn't."""
    return list(
        Notification.objects.filter(incident=incident, state=Notification.State.FAILED)
        .select_related("recipient", "event")
        .order_by("-created_at")[:limit]
    )


def failed_pages_context(incident: Incident) -> dict:
    """The incident page's banner: pages that failed for good."""
    return {"failed_pages": failed_notifications(incident)}
