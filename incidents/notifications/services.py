"""Notifications: rows first, delivered by the paging dispatcher, every attempt logged.

A Notification row is created inside the firing's transaction; the dispatcher
(incidents/monitoring/dispatcher.py) claims due rows straight from the database, so no page waits on the
message broker. A claim marks a row "sending" with SKIP LOCKED, one row per delivery thread, and
each row's outcome is recorded the moment its send returns: a dispatcher killed mid-delivery
leaves at most its in-flight rows in "sending", taken over after TMT_NOTIFY_TAKEOVER_SECONDS and
re-sent with the same idempotency key (the notification's id), which a provider drops. Transient
failures retry with exponential backoff; a permanent one is recorded on the incident and moves
the escalation on to the next person.
"""

from __future__ import annotations

import logging
import os
import smtplib
import time
from collections import Counter
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import TYPE_CHECKING

import httpx
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from incidents import wakeups
from incidents.models import Incident, TimelineEntry
from incidents.notifications.acks import ack_links_issue, page_text
from incidents.notifications.hooks import notification_hooks
from incidents.notifications.models import (
    Notification,
    NotificationAttempt,
    WebhookEndpoint,
)
from incidents.services.incident import timeline_record

if TYPE_CHECKING:  # pages name the escalation event they were sent for; no import at run time
    from incidents.escalation.models import EscalationEvent

log = logging.getLogger(__name__)


class PermanentFailure(Exception):
    pass


class TransientFailure(Exception):
    pass


# -- creating notifications -----------------------------------------------------------------


def _wake_dispatcher(due_at: datetime) -> None:
    wakeups.wake(wakeups.NOTIFICATIONS, due_at=due_at)


class NotificationBatch:
    """Notifications created by one claim batch of deadline firings, written together.

    One INSERT for the batch's rows instead of one per notification (with the claim batching in
    escalation.py, bench/escalation_latency.py measured 10.1 ms of CPU per firing fall to 2.9).
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
        """Insert the rows inside the batch's transaction; the dispatcher is woken at commit."""
        if not self.rows:
            return
        rows = Notification.objects.bulk_create(self.rows)
        self.rows, self._keys = [], set()
        ack_links_issue(rows)
        _wake_dispatcher(min(row.next_attempt_at for row in rows))


def _unique_key(notification: Notification) -> tuple:
    return (notification.event_id, notification.channel, notification.address)


def notification_queue(incident: Incident | None, *, batch: NotificationBatch | None = None, **fields) -> None:
    """Put a message in the outbox (with a batch: written with the batch's other rows)."""
    if batch is not None:
        batch.add(Notification(incident=incident, **fields))
        return
    notification = Notification.objects.create(incident=incident, **fields)
    ack_links_issue([notification])
    _wake_dispatcher(notification.next_attempt_at)


def page_user(
    *,
    event: EscalationEvent,
    user,
    now: datetime,
    email_follow_up: timedelta,
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
        # Drills page only their participants: a page meant for someone who is not taking part
        # goes to the participants instead (page_user once for each; each is a participant).
        # A reminder of the drill's follow-up work goes to whoever owns the work.
        choose = notification_hooks.drill_recipients
        recipients = choose(incident=incident, intended=user, reminder=reminder) if choose else [user]
        if [r.pk for r in recipients] != [user.pk]:
            return any(
                [
                    page_user(
                        event=event,
                        user=r,
                        now=now,
                        email_follow_up=email_follow_up,
                        reminder=reminder,
                        batch=batch,
                    )
                    for r in recipients
                ]
            )
    person = getattr(user, "person", None)
    urgent = incident.severity.major and not reminder
    subject = f"[INCIDENT] TMT System - Sev{incident.severity.level} - {incident.title}"[:300]
    summary = _page_summary(event, user)
    body = _page_body(incident, summary)
    created = 0
    if urgent and person is not None:
        for channel, address in (
            (Notification.Channel.SMS, person.sms_address),
            (Notification.Channel.PHONE, person.phone),
        ):
            if address:
                notification_queue(
                    incident,
                    batch=batch,
                    event=event,
                    channel=channel,
                    recipient=user,
                    address=address,
                    subject=subject,
                    body=_short_text(incident, summary),
                    next_attempt_at=now,
                )
                created += 1
    if user.email:
        follow_up = now + email_follow_up if created else now
        notification_queue(
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


def notify_webhooks(*, event: EscalationEvent, now: datetime, batch: NotificationBatch | None = None) -> None:
    """Post an escalation to the chat hooks once per event (not once per person paged)."""
    incident = event.incident
    if incident.is_drill:
        return  # drill pages stay off the team's chat webhooks
    subject = f"[INCIDENT] TMT System - Sev{incident.severity.level} - {incident.title}"[:300]
    hooks = batch.webhooks() if batch is not None else WebhookEndpoint.objects.filter(active=True).order_by("pk")
    for hook in hooks:
        if hook.max_severity_level < incident.severity.level:
            continue
        notification_queue(
            incident,
            batch=batch,
            event=event,
            channel=Notification.Channel.WEBHOOK,
            address=hook.url,
            subject=subject,
            body=_page_body(incident, event.summary),
            next_attempt_at=now,
        )


def _page_summary(event: EscalationEvent, user) -> str:
    """What happened, as the page to `user` says it.

    A drill's page may go to a participant in place of the person the engine chose (the real
    on-call engineer, who is not taking part): it names the participant paged, never the person
    stood in for. The engine's summaries name whoever it chose ("paging On-call engineer: …").
    """
    chosen = event.target_user
    if not event.incident.is_drill or chosen is None or chosen.pk == user.pk:
        return event.summary
    paged = f"{_name(user)} (drill participant)"
    if _name(chosen) in event.summary:
        return event.summary.replace(_name(chosen), paged)
    return f"{event.summary}: paging {paged}"


def _short_text(incident: Incident, summary: str) -> str:
    url = settings.TMT_SITE_URL.rstrip("/") + incident.get_absolute_url()
    return f"TMT {incident.reference} Sev{incident.severity.level}: {incident.title[:80]}. {summary[:120]} {url}"


def _page_body(incident: Incident, summary: str) -> str:
    url = settings.TMT_SITE_URL.rstrip("/") + incident.get_absolute_url()
    return (
        f"{summary}\n\n"
        f"Incident: {incident.reference}\nTitle: {incident.title}\n"
        f"Severity: {incident.severity.label}\nState: {incident.get_state_display()}\n"
        f"Detected: {incident.detected_at:%Y-%m-%d %H:%M:%S} UTC\n"
        f"Commander: {_name(incident.commander)}\n\nOpen: {url}\n"
    )


def _name(user) -> str:
    if user is None:
        return "not assigned"
    return user.get_full_name() or user.get_username()


# -- delivery -------------------------------------------------------------------------------


URGENT_CHANNELS = (Notification.Channel.SMS, Notification.Channel.PHONE)
# Claimed first when several rows are due: a hanging chat webhook or mail server must not hold
# the sending threads while an SMS or a call waits behind it.
# A reminder's SMS (no incident) waits its turn like an email.
_URGENT_FIRST = Case(When(channel__in=URGENT_CHANNELS, incident__isnull=False, then=Value(0)), default=Value(1))


def _takeover_after() -> timedelta:
    return timedelta(seconds=settings.TMT_NOTIFY_TAKEOVER_SECONDS)


def _claimable(now: datetime) -> Q:
    """Due and pending, or left in "sending" by a delivery that died (its process was killed)."""
    return Q(state=Notification.State.PENDING, next_attempt_at__lte=now) | Q(
        state=Notification.State.SENDING, claimed_at__lt=now - _takeover_after()
    )


def notifications_claim_due(*, limit: int, now: datetime | None = None) -> list[Notification]:
    """Claim up to `limit` due rows for delivery (the dispatcher asks for one per free thread).

    Several dispatchers may call this at once: rows another holds are skipped, and the claim is
    committed before anything is sent, so nobody else sends a row while it is ours.
    """
    now = now or timezone.now()
    due = (
        Notification.objects.filter(_claimable(now))
        .select_related("incident__severity", "event", "ack_link")
        .order_by(_URGENT_FIRST, "next_attempt_at", "pk")
    )
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            claimed = list(due.select_for_update(skip_locked=True, of=("self",))[:limit])
            Notification.objects.filter(pk__in=[row.pk for row in claimed]).update(
                state=Notification.State.SENDING, claimed_at=now
            )
    else:
        # The conditional UPDATE is the claim: only one caller sees 1 row updated.
        claimed = [
            row
            for row in due[:limit]
            if Notification.objects.filter(_claimable(now), pk=row.pk).update(
                state=Notification.State.SENDING, claimed_at=now
            )
        ]
    for row in claimed:
        row.state, row.claimed_at = Notification.State.SENDING, now
    return claimed


def notifications_next_due_at() -> datetime | None:
    """When the dispatcher must next look: the earliest pending row, or a takeover falling due."""
    pending = (
        Notification.objects.filter(state=Notification.State.PENDING)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    sending = (
        Notification.objects.filter(state=Notification.State.SENDING)
        .order_by("claimed_at")
        .values_list("claimed_at", flat=True)
        .first()
    )
    candidates = [pending, sending + _takeover_after() if sending else None]
    return min((when for when in candidates if when is not None), default=None)


def notification_send(*, notification: Notification) -> str:
    """Send one claimed row and record its outcome; what the dispatcher's threads run."""
    return _deliver([notification], now=timezone.now())[0]


def notification_deliver(*, notification_id: int, now: datetime | None = None) -> str:
    """Claim and deliver one notification if it is due; safe to call twice (one claim wins)."""
    return notifications_deliver(notification_ids=[notification_id], now=now)


def notifications_deliver(*, notification_ids: list[int], now: datetime | None = None) -> str:
    """Claim the given rows that are due and deliver them now, one after the other.

    For tests and tools that deliver chosen rows (the dispatcher claims by due time instead).
    A row another delivery holds, or one already handled, is left alone. Returns a count per
    outcome.
    """
    now = now or timezone.now()
    ids = list(dict.fromkeys(notification_ids))
    claimed = [
        row
        for row in Notification.objects.filter(pk__in=ids)
        .select_related("incident__severity", "event", "ack_link")
        .order_by("pk")
        if Notification.objects.filter(_claimable(now), pk=row.pk).update(
            state=Notification.State.SENDING, claimed_at=now
        )
    ]
    for row in claimed:
        row.state, row.claimed_at = Notification.State.SENDING, now
    outcomes = _deliver(claimed, now=now)
    counts = Counter(outcome.split(":")[0].split()[0] for outcome in outcomes)
    counts["not due or already handled"] = len(ids) - len(outcomes)
    return ", ".join(f"{what} {n}" for what, n in counts.items() if n) or "nothing"


def _deliver(claimed: list[Notification], *, now: datetime) -> list[str]:
    """Send claimed rows one after the other, recording each outcome as soon as it is known.

    Any exception from a channel is an attempt like any other (logged, retried with backoff), so
    one odd failure can neither leave rows in "sending" nor stop the rest of the rows.
    """
    outcomes: list[str] = []
    for notification in claimed:
        if _no_longer_needed(notification):
            outcomes.append(_record_skipped(notification, now))
            continue
        try:
            _CHANNELS[notification.channel](notification)
        except PermanentFailure as exc:
            outcome = _record_failure(notification, str(exc), permanent=True)
        except TransientFailure as exc:
            outcome = _record_failure(notification, str(exc), permanent=_out_of_attempts(notification))
        except Exception as exc:
            log.exception("unexpected error sending notification %s", notification.pk)
            outcome = _record_failure(
                notification,
                f"unexpected error: {type(exc).__name__}: {exc}",
                permanent=_out_of_attempts(notification),
            )
        else:
            outcome = _record_sent(notification, timezone.now())
        outcomes.append(outcome)
    return outcomes


def _out_of_attempts(notification: Notification) -> bool:
    return notification.attempts + 1 >= settings.TMT_NOTIFY_MAX_ATTEMPTS


# Waits between tries of a write that records a send (about 8 s in all, inside the takeover time).
RECORD_RETRY_PAUSES_S = (0.2, 0.5, 1.0, 2.0, 4.0)
# What a write that finds its claim gone returns: another delivery took the row over meanwhile
# (this send outlasted TMT_NOTIFY_TAKEOVER_SECONDS) and its outcome stands, not this one's.
SUPERSEDED = "superseded: taken over by another delivery"


def _recorded(write):
    """Run a write that records what already happened outside (a page sent), reconnecting.

    The send cannot be undone; if the database connection broke meanwhile (a restart, a dropped
    connection, a fail-over), losing the record would leave the row to be taken over and sent
    again. A write that did commit before the error finds its claim gone on the retry and does
    nothing, so a retry never records twice.
    """
    for pause in (*RECORD_RETRY_PAUSES_S, None):
        try:
            return write()
        except (OperationalError, InterfaceError):
            if pause is None:
                raise
            log.warning("recording a delivery failed; retrying in %s s", pause, exc_info=True)
            connection.close()
            time.sleep(pause)
    raise AssertionError("unreachable")


def _ours(notification: Notification):
    """The row, as long as this delivery still holds its claim."""
    return Notification.objects.filter(
        pk=notification.pk, state=Notification.State.SENDING, claimed_at=notification.claimed_at
    )


def _record_sent(notification: Notification, done: datetime) -> str:
    def write() -> str:
        with transaction.atomic():
            if not _ours(notification).update(
                state=Notification.State.SENT,
                sent_at=done,
                attempts=F("attempts") + 1,
                last_error="",
            ):
                return _superseded(notification)
            NotificationAttempt.objects.create(
                notification=notification, attempted_at=done, outcome=NotificationAttempt.Outcome.SENT
            )
            return "sent"

    return _recorded(write)


def _superseded(notification: Notification) -> str:
    log.warning("notification %s was taken over while this delivery sent it", notification.pk)
    return SUPERSEDED


def _record_skipped(notification: Notification, now: datetime) -> str:
    with transaction.atomic():
        if not _ours(notification).update(state=Notification.State.SKIPPED):
            return _superseded(notification)
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
    return incident is not None and (incident.acknowledged_at is not None or not incident.is_open)


def _record_failure(notification: Notification, detail: str, *, permanent: bool) -> str:
    def write() -> str:
        with transaction.atomic():
            return _write_failure(notification, detail, permanent=permanent)

    return _recorded(write)


def _write_failure(notification: Notification, detail: str, *, permanent: bool) -> str:
    now = timezone.now()
    attempts = notification.attempts + 1
    pages_a_person = notification.event_id is not None and notification.channel != (Notification.Channel.WEBHOOK)
    if permanent and pages_a_person:
        # The event's pages fail in parallel threads: without this lock each would see the other
        # still "sending", and neither would move the chain on.
        # The event's model, taken from the foreign key: this app does not import escalation.
        event_model = Notification._meta.get_field("event").related_model
        list(
            event_model.objects.select_for_update(no_key=True)
            .filter(pk=notification.event_id)
            .values_list("pk", flat=True)
        )
    if not permanent:
        backoff = settings.TMT_NOTIFY_BACKOFF_SECONDS * (2 ** (attempts - 1))
        retry_at = now + timedelta(seconds=backoff)
        if not _ours(notification).update(
            state=Notification.State.PENDING,
            attempts=attempts,
            next_attempt_at=retry_at,
            last_error=detail[:500],
        ):
            return _superseded(notification)
        _log_attempt(notification, now, detail, permanent=False)
        _wake_dispatcher(retry_at)
        return f"retry in {backoff}s: {detail}"
    if not _ours(notification).update(state=Notification.State.FAILED, attempts=attempts, last_error=detail[:500]):
        return _superseded(notification)
    _log_attempt(notification, now, detail, permanent=True)
    if notification.incident_id is not None:
        timeline_record(
            notification.incident,
            kind=TimelineEntry.Kind.NOTIFICATION,
            action=(
                f"{notification.get_channel_display()} to {notification.address} "
                f"FAILED after {attempts} attempt(s): {detail[:200]}"
            ),
            owner_team="Escalation engine",
            at=now,
            data={"notification": notification.pk, "failed": True},
        )
    # A chat webhook failing reaches nobody less: only a person's pages move the chain on.
    if pages_a_person and _event_unreachable(notification.event):
        for listener in notification_hooks.page_failed:
            listener(event=notification.event, now=now)
    return f"failed: {detail}"


def _log_attempt(notification: Notification, at: datetime, detail: str, *, permanent: bool) -> None:
    NotificationAttempt.objects.create(
        notification=notification,
        attempted_at=at,
        outcome=NotificationAttempt.Outcome.PERMANENT if permanent else NotificationAttempt.Outcome.TRANSIENT,
        detail=detail[:500],
    )


def _event_unreachable(event: EscalationEvent) -> bool:
    """Every page that could have reached the person of this event has failed for good.

    When the event paged by SMS or phone, those decide: an email follow-up sent later is not a
    page anyone is woken by, so it must not hold the chain on a person nobody reached.
    """
    pages = event.notifications.exclude(channel=Notification.Channel.WEBHOOK)
    urgent = pages.filter(channel__in=URGENT_CHANNELS)
    deciding = urgent if urgent.exists() else pages
    return not deciding.exclude(state=Notification.State.FAILED).exists()


# -- channels -------------------------------------------------------------------------------


def _send_email(notification: Notification) -> None:
    headers = {
        # The same id on a re-send after a crash, so mail systems can drop the second copy.
        "Message-ID": f"<tmt-notification-{notification.pk}@{_mail_domain()}>",
        IDEMPOTENCY_HEADER: idempotency_key(notification),
    }
    if notification.incident_id is not None:
        headers["X-TMT-Incident"] = notification.incident.reference
    for extra in notification_hooks.email_headers:
        headers.update(extra(notification))
    message = EmailMessage(
        subject=notification.subject,
        body=page_text(notification),
        to=[notification.address],
        headers=headers,
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


# Every delivery carries the notification's id under this header: a page re-sent after a crash
# (sent, but killed before it was recorded) has the same key, so the provider can drop it.
IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_key(notification: Notification) -> str:
    return f"tmt-notification-{notification.pk}"


def _mail_domain() -> str:
    """The sender address's domain ("Desk <desk@ops.example>" gives ops.example), else localhost."""
    _, at, domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")
    return domain if at and domain else "localhost"


def _post_json(url: str, payload: dict, headers: dict | None = None) -> None:
    _post(url, None, headers or {}, payload=payload)


def _post(url: str, content: bytes | None, headers: dict, *, payload: dict | None = None) -> None:
    try:
        response = _http().post(
            url, content=content, json=payload, headers=headers, timeout=settings.TMT_NOTIFY_HTTP_TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise TransientFailure(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code in (408, 429) or response.status_code >= 500:
        raise TransientFailure(f"HTTP {response.status_code}")
    if response.status_code >= 400:
        raise PermanentFailure(f"HTTP {response.status_code}: {response.text[:200]}")


def _send_webhook(notification: Notification) -> None:
    for prepare in notification_hooks.webhook_request:
        prepared = prepare(notification)
        if prepared is not None:
            content, headers = prepared
            _post(notification.address, content, {**headers, IDEMPOTENCY_HEADER: idempotency_key(notification)})
            return
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
    _post_json(notification.address, payload, {IDEMPOTENCY_HEADER: idempotency_key(notification)})


def _reference(notification: Notification) -> str:
    """How the provider's records name this message: the incident and the outbox row."""
    if notification.incident_id is None:
        return f"notification/{notification.pk}"
    return f"{notification.incident.reference}/{notification.pk}"


def _send_via_provider(notification: Notification) -> None:
    if not settings.TMT_SMS_PROVIDER_URL:
        raise PermanentFailure("no SMS/voice provider configured (TMT_SMS_PROVIDER_URL)")
    headers = {IDEMPOTENCY_HEADER: idempotency_key(notification)}
    if settings.TMT_SMS_PROVIDER_TOKEN:
        headers["Authorization"] = f"Bearer {settings.TMT_SMS_PROVIDER_TOKEN}"
    _post_json(
        settings.TMT_SMS_PROVIDER_URL,
        {
            "to": notification.address,
            "channel": "voice" if notification.channel == Notification.Channel.PHONE else "sms",
            "body": page_text(notification),
            "reference": _reference(notification),
        },
        headers,
    )


_CHANNELS = {
    Notification.Channel.EMAIL: _send_email,
    Notification.Channel.WEBHOOK: _send_webhook,
    Notification.Channel.SMS: _send_via_provider,
    Notification.Channel.PHONE: _send_via_provider,
}
