"""Notifications: rows first, delivery after commit, every attempt logged, failures escalate.

A Notification row is created inside the firing's transaction; a Celery task delivers it after
commit. Delivery claims the row with a conditional UPDATE, so a redelivered task message (broker
restart, worker killed) cannot send a page twice while another attempt is under way; a sweeper
re-queues rows whose message was lost. Transient failures retry with exponential backoff; a
permanent one is recorded on the incident and moves the escalation on to the next person.
"""

from __future__ import annotations

import logging
import os
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from ..models import Incident, TimelineEntry
from ..models.escalation import (
    DistributionList,
    EscalationEvent,
    Notification,
    NotificationAttempt,
    StatusUpdate,
    WebhookEndpoint,
)
from .incident import timeline_record

log = logging.getLogger(__name__)

STUCK_SENDING_AFTER = timedelta(minutes=2)
LOST_MESSAGE_AFTER = timedelta(seconds=20)


class PermanentFailure(Exception):
    pass


class TransientFailure(Exception):
    pass


# -- creating notifications -----------------------------------------------------------------


def _queue(notification: Notification) -> None:
    def send() -> None:
        from ..tasks import send_notification

        try:
            send_notification.apply_async(args=[notification.pk], eta=notification.next_attempt_at)
        except Exception:  # noqa: BLE001 - the sweeper re-queues rows whose message never went out
            log.warning(
                "could not queue notification %s; the sweeper will", notification.pk, exc_info=True
            )

    transaction.on_commit(send, robust=True)  # the sweeper re-queues a row whose message failed


def _add(incident: Incident, **fields) -> Notification:
    notification = Notification.objects.create(incident=incident, **fields)
    _queue(notification)
    return notification


def page_user(*, event: EscalationEvent, user, now: datetime, reminder: bool = False) -> bool:
    """Page one person for an escalation. Returns whether any channel could be addressed.

    Major (Sev1/Sev2) pages go by SMS and phone at once, with an email follow-up after the
    policy's delay (the seed's escalation communication rule); others and reminders go by email.
    """
    incident = event.incident
    if incident.is_drill:
        # Drills page only their participants (drills issue #6): a page meant for someone who is
        # not taking part goes to the participants instead (one call each; each is a participant).
        from drills.services import drill_page_recipients

        recipients = drill_page_recipients(incident=incident, intended=user, reminder=reminder)
        if [r.pk for r in recipients] != [user.pk]:
            return any(
                [page_user(event=event, user=r, now=now, reminder=reminder) for r in recipients]
            )
    person = getattr(user, "person", None)
    urgent = incident.severity.major and not reminder
    subject = f"[INCIDENT] TMT System - Sev{incident.severity.level} - {incident.title}"[:300]
    body = _page_body(incident, event)
    created = 0
    if urgent and person is not None:
        if person.sms_address:
            _add(
                incident,
                event=event,
                channel=Notification.Channel.SMS,
                recipient=user,
                address=person.sms_address,
                subject=subject,
                body=_short_text(incident, event),
                next_attempt_at=now,
            )
            created += 1
        if person.phone:
            _add(
                incident,
                event=event,
                channel=Notification.Channel.PHONE,
                recipient=user,
                address=person.phone,
                subject=subject,
                body=_short_text(incident, event),
                next_attempt_at=now,
            )
            created += 1
    if user.email:
        delay = timedelta(seconds=incident.escalation_snapshot.get("email_follow_up_s", 60))
        follow_up = now + delay if created else now
        _add(
            incident,
            event=event,
            channel=Notification.Channel.EMAIL,
            recipient=user,
            address=user.email,
            subject=subject,
            body=body,
            next_attempt_at=follow_up,
        )
        created += 1
    if not created:
        timeline_record(
            incident,
            kind=TimelineEntry.Kind.NOTIFICATION,
            action=f"Cannot reach {user.get_full_name() or user.get_username()}: no phone, SMS number or email on file",
            owner_team="Escalation engine",
            at=now,
        )
    return created > 0


def notify_webhooks(*, event: EscalationEvent, now: datetime) -> None:
    """Post an escalation to the chat hooks once per event (not once per person paged)."""
    incident = event.incident
    if incident.is_drill:
        return  # drill pages stay off the team's chat webhooks (drills issue #6)
    subject = f"[INCIDENT] TMT System - Sev{incident.severity.level} - {incident.title}"[:300]
    for hook in WebhookEndpoint.objects.filter(
        active=True, max_severity_level__gte=incident.severity.level
    ):
        _add(
            incident,
            event=event,
            channel=Notification.Channel.WEBHOOK,
            address=hook.url,
            subject=subject,
            body=_page_body(incident, event),
            next_attempt_at=now,
        )


def _short_text(incident: Incident, event: EscalationEvent) -> str:
    url = settings.TMT_SITE_URL.rstrip("/") + incident.get_absolute_url()
    return f"TMT {incident.reference} Sev{incident.severity.level}: {incident.title[:80]}. {event.summary[:120]} {url}"


def _page_body(incident: Incident, event: EscalationEvent) -> str:
    url = settings.TMT_SITE_URL.rstrip("/") + incident.get_absolute_url()
    return (
        f"{event.summary}\n\n"
        f"Incident: {incident.reference}\nTitle: {incident.title}\n"
        f"Severity: {incident.severity.label}\nState: {incident.get_state_display()}\n"
        f"Detected: {incident.detected_at:%Y-%m-%d %H:%M:%S} UTC\n"
        f"Commander: {_name(incident.commander)}\n\nOpen: {url}\n"
    )


def _name(user) -> str:
    if user is None:
        return "not assigned"
    return user.get_full_name() or user.get_username()


# -- status updates -------------------------------------------------------------------------


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


def status_update_draft(*, incident: Incident, now: datetime | None = None) -> StatusDraft:
    """The seed's status update template, pre-filled from the incident."""
    from .escalation import _status_interval

    now = now or timezone.now()
    interval = _status_interval(incident)
    last_notes = list(
        incident.timeline.filter(
            kind__in=[TimelineEntry.Kind.NOTE, TimelineEntry.Kind.STATE_CHANGE]
        )
        .order_by("-occurred_at")
        .values_list("action", flat=True)[:3]
    )
    contact = incident.commander
    contact_text = _name(contact)
    if contact is not None:
        person = getattr(contact, "person", None)
        contact_text += " " + " ".join(
            x for x in [contact.email, person.phone if person else ""] if x
        )
    return StatusDraft(
        subject=f"[INCIDENT] TMT System - Sev{incident.severity.level} - {incident.title}"[:300],
        status=incident.status_word,
        severity_level=incident.severity.level,
        impact=incident.user_impact or "Being assessed",
        eta="",
        next_update_at=now + interval if interval else None,
        details="\n".join(f"- {line}" for line in reversed(last_notes)),
        contact=contact_text.strip(),
    )


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
    now: datetime | None = None,
) -> StatusUpdate:
    """Post a status update: record it, send it to the distribution list, reset the update clock."""
    from .escalation import escalation_reevaluate

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
    if next_update_at is not None and next_update_at <= now:
        errors["next_update_at"] = "The next update must be in the future."
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
        posted_by=user,
        posted_at=now,
    )
    body = status_update_text(update)
    recipients = set()
    for dist in DistributionList.objects.filter(
        max_severity_level__gte=locked.severity.level
    ).prefetch_related("webhooks"):
        recipients.update(dist.email_list)
        for hook in dist.webhooks.filter(active=True):
            _add(
                locked,
                status_update=update,
                channel=Notification.Channel.WEBHOOK,
                address=hook.url,
                subject=update.subject,
                body=body,
                next_attempt_at=now,
            )
    if locked.commander and locked.commander.email:
        recipients.add(locked.commander.email)
    for address in sorted(recipients):
        _add(
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
        action=f"Status update #{sequence} ({update.status}){' [public]' if is_public else ''}: {update.details[:500]}",
        owner=user,
        at=now,
        data={"status_update": update.pk, "recipients": len(recipients)},
    )
    escalation_reevaluate(incident=locked, now=now)
    return update


def status_update_text(update: StatusUpdate) -> str:
    next_update = (
        f"{update.next_update_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        if update.next_update_at
        else "—"
    )
    return (
        f"Subject: {update.subject}\n\n"
        f"Status: {update.status}\nSeverity: {update.severity_level}\nImpact: {update.impact}\n"
        f"ETA: {update.eta or 'unknown'}\nNext Update: {next_update}\n\n"
        f"Details:\n{update.details}\n\nContact: {update.contact}\n"
    )


# -- delivery -------------------------------------------------------------------------------


def notification_deliver(*, notification_id: int, now: datetime | None = None) -> str:
    """Try to deliver one notification; safe to call twice (the claim lets one through)."""
    now = now or timezone.now()
    claimed = Notification.objects.filter(
        Q(state=Notification.State.PENDING)
        | Q(state=Notification.State.SENDING, claimed_at__lt=now - STUCK_SENDING_AFTER),
        pk=notification_id,
        next_attempt_at__lte=now + timedelta(seconds=1),
    ).update(state=Notification.State.SENDING, claimed_at=now)
    if not claimed:
        return "not due or already handled"
    notification = Notification.objects.select_related("incident__severity", "event").get(
        pk=notification_id
    )
    if _no_longer_needed(notification):
        with transaction.atomic():
            Notification.objects.filter(pk=notification.pk).update(state=Notification.State.SKIPPED)
            NotificationAttempt.objects.create(
                notification=notification,
                attempted_at=now,
                outcome=NotificationAttempt.Outcome.SKIPPED,
                detail="not sent: the incident was acknowledged or closed meanwhile",
            )
        return "skipped: no longer needed"
    try:
        _CHANNELS[notification.channel](notification)
    except PermanentFailure as exc:
        return _record_failure(notification, str(exc), permanent=True)
    except TransientFailure as exc:
        permanent = notification.attempts + 1 >= settings.TMT_NOTIFY_MAX_ATTEMPTS
        return _record_failure(notification, str(exc), permanent=permanent)
    with transaction.atomic():
        done = timezone.now()
        Notification.objects.filter(pk=notification.pk).update(
            state=Notification.State.SENT,
            sent_at=done,
            attempts=notification.attempts + 1,
            last_error="",
        )
        NotificationAttempt.objects.create(
            notification=notification, attempted_at=done, outcome=NotificationAttempt.Outcome.SENT
        )
    return "sent"


def _no_longer_needed(notification: Notification) -> bool:
    """A page asking for acknowledgement (a follow-up email, a retry) after someone acknowledged."""
    event = notification.event
    if event is None or not event.rule.startswith("ack"):
        return False
    incident = notification.incident
    return incident.acknowledged_at is not None or not incident.is_open


def _record_failure(notification: Notification, detail: str, *, permanent: bool) -> str:
    from .escalation import escalation_advance_after_failure

    now = timezone.now()
    attempts = notification.attempts + 1
    with transaction.atomic():
        NotificationAttempt.objects.create(
            notification=notification,
            attempted_at=now,
            outcome=NotificationAttempt.Outcome.PERMANENT
            if permanent
            else NotificationAttempt.Outcome.TRANSIENT,
            detail=detail[:500],
        )
        if not permanent:
            backoff = settings.TMT_NOTIFY_BACKOFF_SECONDS * (2 ** (attempts - 1))
            retry_at = now + timedelta(seconds=backoff)
            Notification.objects.filter(pk=notification.pk).update(
                state=Notification.State.PENDING,
                attempts=attempts,
                next_attempt_at=retry_at,
                last_error=detail[:500],
            )
            notification.next_attempt_at = retry_at
            _queue(notification)
            return f"retry in {backoff}s: {detail}"
        Notification.objects.filter(pk=notification.pk).update(
            state=Notification.State.FAILED, attempts=attempts, last_error=detail[:500]
        )
        timeline_record(
            notification.incident,
            kind=TimelineEntry.Kind.NOTIFICATION,
            action=f"{notification.get_channel_display()} to {notification.address} FAILED after {attempts} attempt(s): {detail[:200]}",
            owner_team="Escalation engine",
            at=now,
            data={"notification": notification.pk},
        )
        event = notification.event
        if event is not None and notification.channel != Notification.Channel.WEBHOOK:
            undelivered = event.notifications.exclude(channel=Notification.Channel.WEBHOOK).exclude(
                state=Notification.State.FAILED
            )
            if not undelivered.exists():
                escalation_advance_after_failure(event=event, now=now)
    return f"failed: {detail}"


def notifications_requeue_lost(*, now: datetime | None = None, limit: int = 500) -> int:
    """Re-queue notifications whose task message was lost (broker restart) or whose worker died."""
    now = now or timezone.now()
    stale = Notification.objects.filter(
        Q(state=Notification.State.PENDING, next_attempt_at__lte=now - LOST_MESSAGE_AFTER)
        | Q(state=Notification.State.SENDING, claimed_at__lt=now - STUCK_SENDING_AFTER)
    ).values_list("pk", flat=True)[:limit]
    from ..tasks import send_notification

    count = 0
    for pk in stale:
        send_notification.delay(pk)
        count += 1
    return count


# -- channels -------------------------------------------------------------------------------


def _send_email(notification: Notification) -> None:
    message = EmailMessage(
        subject=notification.subject,
        body=notification.body,
        to=[notification.address],
        headers={"X-TMT-Incident": notification.incident.reference},
    )
    try:
        message.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentFailure(f"recipient refused: {exc}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientFailure(f"mail server: {exc}") from exc


_http_clients: dict[int, httpx.Client] = {}


def _http() -> httpx.Client:
    # Building a client (and its SSL context) costs 10-18 ms of CPU, more than the page itself
    # (bench/escalation_latency.py); one per process, keyed by pid so forked workers don't share.
    client = _http_clients.get(os.getpid())
    if client is None:
        client = _http_clients[os.getpid()] = httpx.Client()
    return client


def _post_json(url: str, payload: dict, headers: dict | None = None) -> None:
    try:
        response = _http().post(
            url, json=payload, headers=headers or {}, timeout=settings.TMT_NOTIFY_HTTP_TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise TransientFailure(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code in (408, 429) or response.status_code >= 500:
        raise TransientFailure(f"HTTP {response.status_code}")
    if response.status_code >= 400:
        raise PermanentFailure(f"HTTP {response.status_code}: {response.text[:200]}")


def _send_webhook(notification: Notification) -> None:
    incident = notification.incident
    url = settings.TMT_SITE_URL.rstrip("/") + incident.get_absolute_url()
    # Slack-compatible: `text` is what Slack shows; the rest is for other automations.
    payload = {
        "text": f"*{notification.subject}*\n{notification.body[:2500]}",
        "incident": {
            "id": incident.reference,
            "title": incident.title,
            "severity": incident.severity.level,
            "state": incident.state,
            "url": url,
        },
        "event": notification.event.summary if notification.event_id else None,
    }
    _post_json(notification.address, payload)


def _send_via_provider(notification: Notification) -> None:
    if not settings.TMT_SMS_PROVIDER_URL:
        raise PermanentFailure("no SMS/voice provider configured (TMT_SMS_PROVIDER_URL)")
    headers = (
        {"Authorization": f"Bearer {settings.TMT_SMS_PROVIDER_TOKEN}"}
        if settings.TMT_SMS_PROVIDER_TOKEN
        else {}
    )
    _post_json(
        settings.TMT_SMS_PROVIDER_URL,
        {
            "to": notification.address,
            "channel": "voice" if notification.channel == Notification.Channel.PHONE else "sms",
            "body": notification.body,
            "reference": f"{notification.incident.reference}/{notification.pk}",
        },
        headers,
    )


_CHANNELS = {
    Notification.Channel.EMAIL: _send_email,
    Notification.Channel.WEBHOOK: _send_webhook,
    Notification.Channel.SMS: _send_via_provider,
    Notification.Channel.PHONE: _send_via_provider,
}
