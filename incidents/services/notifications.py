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
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.db.models import Case, DateTimeField, F, Max, Q, Value, When
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


# Delivery messages carry at most this many notifications, so a burst is shared between the
# notifications worker's threads instead of queueing behind one of them.
PER_DELIVERY_MESSAGE = 20
# Rows whose next attempt falls within this span of the first go in one message with the
# first's ETA (delivery accepts a row due within a second of its claim).
DELIVERY_MESSAGE_SPAN = timedelta(milliseconds=500)


class NotificationBatch:
    """Notifications created by one claim batch of deadline firings, written and queued together.

    One INSERT for the batch's rows and one delivery message per due time (the email follow-ups
    are a second, later one), instead of a row INSERT and a message per notification. With
    those, bench/escalation_latency.py measured 10.1 ms of escalation worker CPU and 8.8 ms of
    notifications worker CPU per firing (its SMS, call and email): at 83 firings/s, more than
    this 2-core machine has. Batched (with the claim batching in escalation.py): 2.9 and 2.9 ms.
    A firing that is rolled back to its savepoint drops its rows with `discard_since`.
    Active webhook endpoints are read once per batch.
    """

    def __init__(self) -> None:
        self.rows: list[Notification] = []
        self._keys: set[tuple] = set()
        self._hooks: list[WebhookEndpoint] | None = None

    def mark(self) -> int:
        return len(self.rows)

    def discard_since(self, mark: int) -> None:
        for row in self.rows[mark:]:
            self._keys.discard(_unique_key(row))
        del self.rows[mark:]

    def add(self, notification: Notification) -> None:
        # The unique (event, channel, address) constraint, checked before the batch's one INSERT
        # so a repeated address (two people sharing a phone) cannot fail the whole batch.
        key = _unique_key(notification)
        if key in self._keys:
            return
        self._keys.add(key)
        self.rows.append(notification)

    def webhooks(self) -> list[WebhookEndpoint]:
        if self._hooks is None:
            self._hooks = list(WebhookEndpoint.objects.filter(active=True).order_by("pk"))
        return self._hooks

    def save(self) -> None:
        """Insert the rows (inside the batch's transaction) and queue their delivery on commit."""
        if not self.rows:
            return
        rows = Notification.objects.bulk_create(self.rows)
        self.rows, self._keys = [], set()
        transaction.on_commit(lambda: _queue_many(rows), robust=True)


def _unique_key(notification: Notification) -> tuple:
    return (notification.event_id, notification.channel, notification.address)


def _queue_many(rows: list[Notification]) -> None:
    from ..tasks import send_notifications

    rows = sorted(rows, key=lambda row: row.next_attempt_at)
    groups: list[list[Notification]] = []
    for row in rows:
        group = groups[-1] if groups else None
        if (
            group is None
            or len(group) >= PER_DELIVERY_MESSAGE
            or row.next_attempt_at - group[0].next_attempt_at > DELIVERY_MESSAGE_SPAN
        ):
            groups.append([row])
        else:
            group.append(row)
    # The queue of single deliveries (settings' CELERY_TASK_ROUTES), so pages never wait
    # behind other work whichever name the route table gives it.
    queue = settings.CELERY_TASK_ROUTES["incidents.tasks.send_notification"]["queue"]
    now = timezone.now()
    for group in groups:
        eta = group[0].next_attempt_at
        try:
            send_notifications.apply_async(
                args=[[row.pk for row in group]], eta=eta if eta > now else None, queue=queue
            )
        except Exception:  # noqa: BLE001 - the sweeper re-queues rows whose message never went out
            log.warning(
                "could not queue %s notifications; the sweeper will", len(group), exc_info=True
            )


def _add(incident: Incident, *, batch: NotificationBatch | None = None, **fields) -> None:
    if batch is not None:
        batch.add(Notification(incident=incident, **fields))
        return
    notification = Notification.objects.create(incident=incident, **fields)
    _queue(notification)


def page_user(
    *,
    event: EscalationEvent,
    user,
    now: datetime,
    reminder: bool = False,
    batch: NotificationBatch | None = None,
) -> bool:
    """Page one person for an escalation. Returns whether any channel could be addressed.

    Major (Sev1/Sev2) pages go by SMS and phone at once, with an email follow-up after the
    policy's delay (the seed's escalation communication rule); others and reminders go by email.
    With a `batch`, the rows are written and queued with the batch's (deadline firings).
    """
    incident = event.incident
    if incident.is_drill:
        # Drills page only their participants (drills issue #6): a page meant for someone who is
        # not taking part goes to the participants instead (one call each; each is a participant).
        from drills.services import drill_page_recipients

        recipients = drill_page_recipients(incident=incident, intended=user, reminder=reminder)
        if [r.pk for r in recipients] != [user.pk]:
            return any(
                [
                    page_user(event=event, user=r, now=now, reminder=reminder, batch=batch)
                    for r in recipients
                ]
            )
    person = getattr(user, "person", None)
    urgent = incident.severity.major and not reminder
    subject = f"[INCIDENT] TMT System - Sev{incident.severity.level} - {incident.title}"[:300]
    body = _page_body(incident, event)
    created = 0
    if urgent and person is not None:
        for channel, address in (
            (Notification.Channel.SMS, person.sms_address),
            (Notification.Channel.PHONE, person.phone),
        ):
            if address:
                _add(
                    incident,
                    batch=batch,
                    event=event,
                    channel=channel,
                    recipient=user,
                    address=address,
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
            batch=batch,
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


def notify_webhooks(
    *, event: EscalationEvent, now: datetime, batch: NotificationBatch | None = None
) -> None:
    """Post an escalation to the chat hooks once per event (not once per person paged)."""
    incident = event.incident
    if incident.is_drill:
        return  # drill pages stay off the team's chat webhooks (drills issue #6)
    subject = f"[INCIDENT] TMT System - Sev{incident.severity.level} - {incident.title}"[:300]
    hooks = (
        batch.webhooks()
        if batch is not None
        else WebhookEndpoint.objects.filter(active=True).order_by("pk")
    )
    for hook in hooks:
        if hook.max_severity_level < incident.severity.level:
            continue
        _add(
            incident,
            batch=batch,
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
    outcomes = _deliver(_claim_for_delivery([notification_id], now=now), now=now)
    return outcomes[0] if outcomes else "not due or already handled"


def notifications_deliver(*, notification_ids: list[int], now: datetime | None = None) -> str:
    """Deliver a firing batch's notifications: one claim for all, each sent and logged.

    Safe to call twice like `notification_deliver`: a row another call holds, or one already
    handled, is left alone. Returns a count per outcome.
    """
    now = now or timezone.now()
    outcomes = _deliver(_claim_for_delivery(notification_ids, now=now), now=now)
    counts = Counter(outcome.split(":")[0].split()[0] for outcome in outcomes)
    counts["not due or already handled"] = len(set(notification_ids)) - len(outcomes)
    return ", ".join(f"{what} {n}" for what, n in counts.items() if n) or "nothing"


def _claim_for_delivery(notification_ids: list[int], *, now: datetime) -> list[Notification]:
    """Mark the given rows that are due and not being delivered as ours (state "sending").

    A row stuck in "sending" (its worker died) may be taken over after STUCK_SENDING_AFTER.
    """
    claimable = Q(
        Q(state=Notification.State.PENDING)
        | Q(state=Notification.State.SENDING, claimed_at__lt=now - STUCK_SENDING_AFTER),
        next_attempt_at__lte=now + timedelta(seconds=1),
    )
    loaded = Notification.objects.select_related("incident__severity", "event").order_by("pk")
    if len(notification_ids) > 1 and connection.features.has_select_for_update_skip_locked:
        # Rows another delivery holds are skipped; PostgreSQL re-checks the condition on the
        # rows it locks, so they are still claimable and one UPDATE claims them all.
        with transaction.atomic():
            claimed = list(
                loaded.filter(claimable, pk__in=notification_ids).select_for_update(
                    skip_locked=True, of=("self",)
                )
            )
            Notification.objects.filter(pk__in=[row.pk for row in claimed]).update(
                state=Notification.State.SENDING, claimed_at=now
            )
    else:
        # The conditional UPDATE is the claim: only one caller sees 1 row updated.
        mine = [
            pk
            for pk in dict.fromkeys(notification_ids)
            if Notification.objects.filter(claimable, pk=pk).update(
                state=Notification.State.SENDING, claimed_at=now
            )
        ]
        claimed = list(loaded.filter(pk__in=mine)) if mine else []
    for row in claimed:
        row.state, row.claimed_at = Notification.State.SENDING, now
    return claimed


def _deliver(claimed: list[Notification], *, now: datetime) -> list[str]:
    """Send claimed rows one after the other; each attempt is logged, the pages sent together."""
    outcomes: list[str] = []
    sent: list[tuple[Notification, datetime]] = []
    try:
        for notification in claimed:
            if _no_longer_needed(notification):
                outcomes.append(_record_skipped(notification, now))
                continue
            try:
                _CHANNELS[notification.channel](notification)
            except PermanentFailure as exc:
                outcomes.append(_record_failure(notification, str(exc), permanent=True))
            except TransientFailure as exc:
                permanent = notification.attempts + 1 >= settings.TMT_NOTIFY_MAX_ATTEMPTS
                outcomes.append(_record_failure(notification, str(exc), permanent=permanent))
            else:
                sent.append((notification, timezone.now()))
                outcomes.append("sent")
    finally:
        # Even if a later row raised: what went out is recorded, so it is not sent again.
        _record_sent(sent)
    return outcomes


def _record_sent(sent: list[tuple[Notification, datetime]]) -> None:
    if not sent:
        return
    with transaction.atomic():
        Notification.objects.filter(pk__in=[notification.pk for notification, _ in sent]).update(
            state=Notification.State.SENT,
            sent_at=Case(
                *[When(pk=notification.pk, then=Value(done)) for notification, done in sent],
                output_field=DateTimeField(),
            ),
            attempts=F("attempts") + 1,
            last_error="",
        )
        NotificationAttempt.objects.bulk_create(
            [
                NotificationAttempt(
                    notification=notification,
                    attempted_at=done,
                    outcome=NotificationAttempt.Outcome.SENT,
                )
                for notification, done in sent
            ]
        )


def _record_skipped(notification: Notification, now: datetime) -> str:
    with transaction.atomic():
        Notification.objects.filter(pk=notification.pk).update(state=Notification.State.SKIPPED)
        NotificationAttempt.objects.create(
            notification=notification,
            attempted_at=now,
            outcome=NotificationAttempt.Outcome.SKIPPED,
            detail="not sent: the incident was acknowledged or closed meanwhile",
        )
    return "skipped: no longer needed"


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
