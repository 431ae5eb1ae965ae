"""Status updates in the seed's template: drafted from the incident, posted to its distribution
lists (through the outbox), and each one resets the update clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from incidents.escalation.hooks import escalation_hooks
from incidents.escalation.models import Audience, StatusUpdate
from incidents.escalation.services import escalation_reevaluate, status_interval
from incidents.models import Incident, PortalAction, TimelineEntry
from incidents.notifications.models import (
    DistributionList,
    Notification,
)
from incidents.notifications.services import notification_queue
from incidents.services.incident import checklist_tick_for_action, timeline_record
from incidents.validators import planned_problem


@dataclass(frozen=True)
class StatusDraft:
    subject: str
    status: str
    severity_level: int
    impact: str
    eta: str
    next_update_at: datetime | None
    details: str
    contact: str


def status_update_draft(
    *, incident: Incident, audience: Audience | None = None, now: datetime | None = None
) -> StatusDraft:
    """The seed's status update template, pre-filled from the incident (and shaped for the
    audience: stakeholders get impact and timeline, users plain words)."""
    now = now or timezone.now()
    interval = status_interval(incident)
    last_notes = list(
        incident.timeline.filter(kind__in=[TimelineEntry.Kind.NOTE, TimelineEntry.Kind.STATE_CHANGE])
        .order_by("-occurred_at")
        .values_list("action", flat=True)[:3]
    )
    contact = incident.commander
    contact_text = "not assigned" if contact is None else (contact.get_full_name() or contact.get_username())
    if contact is not None:
        person = getattr(contact, "person", None)
        contact_text += " " + " ".join(x for x in [contact.email, person.phone if person else ""] if x)
    next_update_at = now + interval if interval else None
    impact = incident.user_impact or "Being assessed"
    details = "\n".join(f"- {line}" for line in reversed(last_notes))
    prefix = "[INCIDENT]"
    if audience is not None:
        prefix = audience.subject_prefix or prefix
        fill = {
            "impact": impact,
            "severity": incident.severity.level,
            "title": incident.title,
            "status": incident.status_word,
            "eta": "unknown",
            "next_update": f"{next_update_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if next_update_at else "—",
        }
        if audience.impact_template:
            impact = _fill(audience.impact_template, fill)
        if audience.suggest_public:
            # Written for customers (it may go on the public page): the internal notes stay out.
            details = ""
        if audience.details_template:
            details = _fill(audience.details_template, fill) + ("\n\n" + details if details else "")
    return StatusDraft(
        subject=f"{prefix} TMT System - Sev{incident.severity.level} - {incident.title}"[:300],
        status=incident.status_word,
        severity_level=incident.severity.level,
        impact=impact,
        eta="",
        next_update_at=next_update_at,
        details=details,
        contact=contact_text.strip(),
    )


def _fill(template: str, values: dict) -> str:
    # An admin's template naming an unknown field (or a stray brace) is shown as written rather
    # than breaking the composer.
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError, AttributeError):
        return template


NEXT_UPDATE = "The next update"


def public_offered(audience: Audience | None) -> bool:
    """Whether an update for `audience` may also be published on the public status page (an app
    above this one must have registered to publish it)."""
    return bool(audience and audience.suggest_public and escalation_hooks.publish_public)


def public_offered_to(user) -> bool:
    """Whether the composer offers `user` the public status page (their role may publish there)."""
    return any(may(user) for may in escalation_hooks.may_publish_public)


INTERNAL = "internal"


@transaction.atomic
def status_update_post(
    *,
    incident: Incident,
    user,
    subject: str,
    status: str,
    impact: str,
    details: str,
    contact: str,
    eta: str = "",
    next_update_at: datetime | None = None,
    is_public: bool = False,
    audience: Audience | None = None,
    now: datetime | None = None,
) -> StatusUpdate:
    """Post a status update: record it, send it to the distribution lists, reset the update clock.

    With an audience, exactly the members of that audience's lists receive it (lists for less
    severe incidents only are skipped, as always), and the commander when the audience says so
    (internal teams); without one (older API clients), the internal audience's lists, lists
    in no audience, and the commander."""
    now = now or timezone.now()
    errors = {}
    for field, value in {
        "subject": subject,
        "status": status,
        "impact": impact,
        "details": details,
        "contact": contact,
    }.items():
        if not value.strip():
            errors[field] = "Required."
    if problem := planned_problem(next_update_at, what=NEXT_UPDATE, now=now):
        errors["next_update_at"] = problem
    if is_public and not public_offered(audience):
        errors["is_public"] = (
            "Only an update for an audience that offers the public status page (Users) is published there."
        )
    if errors:
        raise ValidationError(errors)
    locked = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
    sequence = (locked.status_updates.aggregate(n=Max("sequence"))["n"] or 0) + 1
    update = StatusUpdate.objects.create(
        incident=locked,
        sequence=sequence,
        subject=subject.strip(),
        status=status.strip(),
        severity_level=locked.severity.level,
        impact=impact.strip(),
        eta=eta.strip(),
        next_update_at=next_update_at,
        details=details.strip(),
        contact=contact.strip(),
        is_public=is_public,
        audience=audience,
        posted_by=user,
        posted_at=now,
    )
    if is_public:
        for publish in escalation_hooks.publish_public:
            publish(update=update, user=user, now=now)
    body = status_update_text(update)
    recipients = set()
    lists = DistributionList.objects.filter(max_severity_level__gte=locked.severity.level)
    if audience is not None:
        lists = lists.filter(pk__in=audience.distribution_lists.values("pk"))
    else:
        # An update that names no audience is an internal one: it never reaches a list kept for
        # stakeholders, regulators or users (lists in no audience still get it, as before).
        memberships = Audience.distribution_lists.through.objects
        lists = lists.exclude(
            Q(pk__in=memberships.values("distributionlist_id"))
            & ~Q(pk__in=memberships.filter(audience__key=INTERNAL).values("distributionlist_id"))
        )
    for dist in lists.prefetch_related("webhooks"):
        recipients.update(dist.email_list)
        for hook in dist.webhooks.filter(active=True):
            notification_queue(
                locked,
                status_update=update,
                channel=Notification.Channel.WEBHOOK,
                address=hook.url,
                subject=update.subject,
                body=body,
                next_attempt_at=now,
            )
    if (audience is None or audience.include_commander) and locked.commander and locked.commander.email:
        recipients.add(locked.commander.email)
    for address in sorted(recipients):
        notification_queue(
            locked,
            status_update=update,
            channel=Notification.Channel.EMAIL,
            address=address,
            subject=update.subject,
            body=body,
            next_attempt_at=now,
        )
    timeline_record(
        locked,
        kind=TimelineEntry.Kind.STATUS_UPDATE,
        action=(
            f"Status update #{sequence} ({update.status})"
            f"{f' to {audience.name}' if audience else ''}{' [public]' if is_public else ''}: {update.details[:500]}"
        ),
        owner=user,
        at=now,
        data={
            "status_update": update.pk,
            "recipients": len(recipients),
            "audience": audience.key if audience else None,
        },
    )
    checklist_tick_for_action(
        incident=locked,
        action=PortalAction.STATUS_UPDATE_POSTED,
        when=f"{user.get_full_name() or user.get_username()} posted status update #{sequence}",
        by=user,
        at=now,
    )
    escalation_reevaluate(incident=locked, now=now)
    return update


def status_update_text(update: StatusUpdate) -> str:
    next_update = f"{update.next_update_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if update.next_update_at else "—"
    return (
        f"Subject: {update.subject}\n\n"
        f"Status: {update.status}\nSeverity: {update.severity_level}\nImpact: {update.impact}\n"
        f"ETA: {update.eta or 'unknown'}\nNext Update: {next_update}\n\n"
        f"Details:\n{update.details}\n\nContact: {update.contact}\n"
    )
