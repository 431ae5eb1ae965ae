"""Telling someone they were given an incident role: an informational SMS and email through the
outbox (not a call, not an escalation: nothing waits for an acknowledgement of it)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from incidents.models import Incident, IncidentRole, TimelineEntry
from incidents.notifications.models import Notification
from incidents.notifications.services import notification_queue
from incidents.services.incident import timeline_record


def _name(user: AbstractBaseUser) -> str:
    return user.get_full_name() or user.get_username()


def role_assignment_page(
    *,
    incident: Incident,
    role: str,
    holder: AbstractBaseUser | None,
    previous: AbstractBaseUser | None,
    by: AbstractBaseUser,
    now: datetime,
) -> int:
    """Queue the page to the new holder of `role`; none when the role was left empty or when
    people took it themselves (they know). Returns how many messages were queued."""
    if holder is None or holder.pk == by.pk:
        return 0
    label = IncidentRole(role).label.lower()
    drill = "[DRILL] " if incident.is_drill else ""
    url = settings.TMT_SITE_URL.rstrip("/") + incident.get_absolute_url()
    subject = f"{drill}[INCIDENT] TMT {incident.reference} - you are {label}"[:300]
    short = (
        f"{drill}TMT {incident.reference} Sev{incident.severity.level}: {_name(by)} made you {label} "
        f"on “{incident.title[:80]}”. {url}"
    )
    took_over = f"You take over from {_name(previous)}.\n" if previous is not None else ""
    commander = _name(incident.commander) if incident.commander else "—"
    body = (
        f"{_name(by)} made you {label} on {incident.reference}.\n{took_over}\n"
        f"Incident: {incident.reference}\nTitle: {incident.title}\nSeverity: {incident.severity.label}\n"
        f"State: {incident.get_state_display()}\nCommander: {commander}\n\n"
        f"Open: {url}\n"
    )
    person = getattr(holder, "person", None)
    messages = []
    if person is not None and person.sms_address:
        messages.append((Notification.Channel.SMS, person.sms_address, short))
    if holder.email:
        messages.append((Notification.Channel.EMAIL, holder.email, body))
    for channel, address, text in messages:
        notification_queue(
            incident,
            channel=channel,
            recipient=holder,
            address=address,
            subject=subject,
            body=text,
            next_attempt_at=now,
        )
    if not messages:
        timeline_record(
            incident,
            kind=TimelineEntry.Kind.NOTIFICATION,
            action=f"Cannot tell {_name(holder)} they are now {label}: no SMS number or email on file",
            owner_team="Notifications",
            at=now,
        )
    return len(messages)
