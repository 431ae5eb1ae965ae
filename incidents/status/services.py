"""Writes behind the public status page: publishing, public updates, maintenance, subscribers.

Every write that changes what the page shows replaces the server's cached copy once it commits,
and every notice to subscribers is an outbox row written in the same transaction (delivered and
retried by the paging dispatcher, like every other message).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone
from django_fsm import TransitionNotAllowed

from incidents.models import Incident, System, TimelineEntry
from incidents.monitoring.models import HealthSample
from incidents.notifications.models import Notification
from incidents.notifications.services import NotificationBatch, PermanentFailure
from incidents.services.incident import timeline_record
from incidents.status import cache
from incidents.status.models import (
    Maintenance,
    MaintenanceNotice,
    PublicImpact,
    PublicIncident,
    PublicStatus,
    PublicUpdate,
    Subscriber,
    SubscriberNotice,
    UptimeDay,
)
from incidents.status.selectors import public_components, public_draft
from incidents.status.webhook_urls import RefusedURL, check_webhook_url
from incidents.validators import planned_problem

SIGNATURE_HEADER = "X-TMT-Signature-256"
EVENT_HEADER = "X-TMT-Event"
CONFIRM_DAYS = 7  # a confirmation link older than this no longer confirms
MAINTENANCE_LATE_START = timedelta(days=1)
SLUG = re.compile(r"[-a-zA-Z0-9_]{1,60}")


def absolute_url(name: str, *args) -> str:
    return settings.TMT_SITE_URL.rstrip("/") + reverse(name, args=args)


def _required(errors: dict, **fields: str) -> None:
    for name, value in fields.items():
        if not (value or "").strip():
            errors[name] = "Required."


def _choice(errors: dict, name: str, value: str, choices, *, exclude: Iterable[str] = ()) -> None:
    if value not in choices.values or value in exclude:
        errors[name] = f"Choose one of: {', '.join(c for c in choices.values if c not in exclude)}."


# -- publishing incidents -----------------------------------------------------------------------


@transaction.atomic
def public_incident_publish(
    *,
    incident: Incident,
    user,
    title: str,
    impact: str,
    status: str,
    message: str,
    systems: Iterable[System] | None = None,
    now: datetime | None = None,
) -> PublicIncident:
    """Put an incident on the public page with its first public update; subscribers are told."""
    now = now or timezone.now()
    errors: dict[str, str] = {}
    _required(errors, title=title, message=message)
    _choice(errors, "impact", impact, PublicImpact)
    _choice(errors, "status", status, PublicStatus, exclude=[PublicStatus.RESOLVED])
    if len(title.strip()) > 200:
        errors["title"] = "At most 200 characters."
    if incident.is_drill:
        errors["__all__"] = "A drill incident is never published."
    locked = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
    if PublicIncident.objects.filter(incident=locked).exists():
        errors["__all__"] = "This incident is already on the status page; post an update instead."
    if errors:
        raise ValidationError(errors)
    public = PublicIncident.objects.create(
        incident=locked,
        title=title.strip(),
        impact=impact,
        status=status,
        published_by=user,
        published_at=now,
    )
    public.systems.set(list(systems) if systems is not None else list(locked.affected_systems.all()))
    update = PublicUpdate.objects.create(
        public_incident=public, status=status, message=message.strip(), published_by=user, published_at=now
    )
    timeline_record(
        locked,
        kind=TimelineEntry.Kind.STATUS_UPDATE,
        action=f"Published on the public status page as “{public.title}” ({update.get_status_display()})",
        owner=user,
        at=now,
        data={"public_incident": public.pk, "public_update": update.pk},
    )
    _notify_incident(public, update, event="incident.published", now=now)
    cache.invalidate_on_commit()
    return public


@transaction.atomic
def public_incident_update(
    *, public_incident: PublicIncident, user, status: str, message: str, now: datetime | None = None
) -> PublicUpdate:
    """Publish one more public update; "resolved" moves the incident to the page's history."""
    now = now or timezone.now()
    errors: dict[str, str] = {}
    _required(errors, message=message)
    _choice(errors, "status", status, PublicStatus)
    public = PublicIncident.objects.select_for_update().get(pk=public_incident.pk)
    if public.resolved_at is not None:
        errors["__all__"] = "This incident is resolved on the status page; it takes no more updates."
    if errors:
        raise ValidationError(errors)
    update = PublicUpdate.objects.create(
        public_incident=public, status=status, message=message.strip(), published_by=user, published_at=now
    )
    public.status = status
    fields = ["status"]
    if status == PublicStatus.RESOLVED:
        public.resolved_at = now
        fields.append("resolved_at")
    public.save(update_fields=fields)
    timeline_record(
        public.incident,
        kind=TimelineEntry.Kind.STATUS_UPDATE,
        action=f"Public status page update ({update.get_status_display()}): {update.message[:300]}",
        owner=user,
        at=now,
        data={"public_incident": public.pk, "public_update": update.pk},
    )
    event = "incident.resolved" if status == PublicStatus.RESOLVED else "incident.updated"
    _notify_incident(public, update, event=event, now=now)
    cache.invalidate_on_commit()
    return update


# -- maintenance --------------------------------------------------------------------------------


@transaction.atomic
def maintenance_schedule(
    *,
    user,
    title: str,
    message: str,
    starts_at: datetime | None,
    ends_at: datetime | None,
    systems: Iterable[System] = (),
    now: datetime | None = None,
) -> Maintenance:
    now = now or timezone.now()
    errors: dict[str, str] = {}
    _required(errors, title=title, message=message)
    if len(title.strip()) > 200:
        errors["title"] = "At most 200 characters."
    if starts_at is None:
        errors["starts_at"] = "Required."
    elif starts_at < now - MAINTENANCE_LATE_START:
        # Announcing work already under way is fine; a start days back is a mistyped date.
        errors["starts_at"] = "The start is more than a day in the past; check the date."
    elif problem := planned_problem(starts_at, what="The start", now=now, past_ok=True):
        errors["starts_at"] = problem
    if ends_at is None:
        errors["ends_at"] = "Required."
    elif ends_at <= now:
        errors["ends_at"] = "The end must be in the future."
    elif problem := planned_problem(ends_at, what="The end", now=now):
        errors["ends_at"] = problem
    elif starts_at is not None and ends_at <= starts_at:
        errors["ends_at"] = "The end must be after the start."
    if errors:
        raise ValidationError(errors)
    maintenance = Maintenance.objects.create(
        title=title.strip(), message=message.strip(), starts_at=starts_at, ends_at=ends_at, created_by=user
    )
    maintenance.systems.set(list(systems))
    _maintenance_notice(maintenance, user=user, message=maintenance.message, now=now)
    return maintenance


_MAINTENANCE_STEPS = {
    "start": ("The maintenance has started.", "started_at"),
    "complete": ("The maintenance is complete; all affected systems are back in service.", "completed_at"),
    "cancel": ("This maintenance is cancelled.", None),
}


@transaction.atomic
def maintenance_advance(
    *, maintenance: Maintenance, user, step: str, message: str = "", now: datetime | None = None
) -> Maintenance:
    """Start, complete or cancel a maintenance (`step`), with a notice to subscribers."""
    now = now or timezone.now()
    if step not in _MAINTENANCE_STEPS:
        raise ValidationError({"step": f"Choose one of: {', '.join(_MAINTENANCE_STEPS)}."})
    locked = Maintenance.objects.select_for_update().get(pk=maintenance.pk)
    try:
        getattr(locked, step)()
    except TransitionNotAllowed as exc:
        raise ValidationError(f"A maintenance that is {locked.get_state_display().lower()} cannot {step}.") from exc
    default_message, stamp = _MAINTENANCE_STEPS[step]
    if stamp:
        setattr(locked, stamp, now)
    locked.save()
    _maintenance_notice(locked, user=user, message=message.strip() or default_message, now=now)
    return locked


def maintenance_advance_due(*, now: datetime | None = None) -> str:
    """Start scheduled maintenance whose start has come and complete what has run its course."""
    now = now or timezone.now()
    started = completed = 0
    for maintenance in Maintenance.objects.filter(state=Maintenance.State.SCHEDULED, starts_at__lte=now):
        try:
            maintenance_advance(maintenance=maintenance, user=maintenance.created_by, step="start", now=now)
            started += 1
        except ValidationError:
            continue  # advanced by hand meanwhile
    for maintenance in Maintenance.objects.filter(state=Maintenance.State.IN_PROGRESS, ends_at__lte=now):
        try:
            maintenance_advance(maintenance=maintenance, user=maintenance.created_by, step="complete", now=now)
            completed += 1
        except ValidationError:
            continue
    return f"started {started}, completed {completed}"


def _maintenance_notice(maintenance: Maintenance, *, user, message: str, now: datetime) -> None:
    notice = MaintenanceNotice.objects.create(
        maintenance=maintenance, state=maintenance.state, message=message, published_by=user, published_at=now
    )
    when = f"{maintenance.starts_at:%Y-%m-%d %H:%M} to {maintenance.ends_at:%Y-%m-%d %H:%M} UTC"
    subject = f"[TMT status] Maintenance {notice.get_state_display().lower()}: {maintenance.title}"
    text = f"{maintenance.title}\n{notice.get_state_display()}: {message}\n\nWindow: {when}\n"
    payload = {
        "maintenance": {
            "id": maintenance.pk,
            "title": maintenance.title,
            "state": maintenance.state,
            "starts_at": maintenance.starts_at.isoformat(),
            "ends_at": maintenance.ends_at.isoformat(),
            "components": [key for key, _ in public_components(list(maintenance.systems.all()))],
        },
        "notice": {"state": notice.state, "message": message, "published_at": now.isoformat()},
    }
    systems = list(maintenance.systems.all())
    _fan_out(f"maintenance.{maintenance.state}", subject, text, payload, systems, now=now)
    cache.invalidate_on_commit()


# -- subscribers ---------------------------------------------------------------------------------


def _check_systems(errors: dict, keys: Iterable[str]) -> list[System]:
    keys = [k for k in dict.fromkeys(keys) if k]
    # Only slugs reach the query: a NUL byte in a key is an error PostgreSQL raises, not a miss.
    found = {s.key: s for s in System.objects.filter(key__in=[k for k in keys if SLUG.fullmatch(k)])}
    unknown = [k for k in keys if k not in found]
    if unknown:
        errors["components"] = f"Unknown component: {', '.join(unknown[:5])}."
    return [found[k] for k in keys if k in found]


@transaction.atomic
def subscriber_subscribe_email(
    *, email: str, components: Iterable[str] = (), client_ip: str | None = None, now: datetime | None = None
) -> Subscriber:
    """A pending email subscription and its confirmation mail (double opt-in): nothing else is
    sent to the address until its owner follows the link."""
    now = now or timezone.now()
    errors: dict[str, str] = {}
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        errors["email"] = "Enter a valid email address."
    systems = _check_systems(errors, components)
    if errors:
        raise ValidationError(errors)
    subscriber = Subscriber.objects.create(
        kind=Subscriber.Kind.EMAIL, email=email.lower(), created_at=now, created_from=client_ip
    )
    subscriber.systems.set(systems)
    confirm = absolute_url("status_confirm", subscriber.confirm_token)
    unsubscribe = absolute_url("status_unsubscribe", subscriber.unsubscribe_token)
    what = ", ".join(name for _, name in public_components(systems)) or "all components"
    body = (
        "Someone (hopefully you) asked to receive TMT status notifications at this address "
        f"for: {what}.\n\nConfirm the subscription: {confirm}\n\n"
        f"The link is valid for {CONFIRM_DAYS} days. If you did not ask for this, ignore this mail: "
        f"nothing more will be sent.\n\nUnsubscribe: {unsubscribe}\n"
    )
    batch = NotificationBatch()
    _queue(batch, subscriber, "[TMT status] Confirm your subscription", body, now=now)
    _save(batch)
    return subscriber


def _plausible_token(token: str) -> bool:
    """The links' tokens are URL-safe text; anything else (a NUL PostgreSQL cannot take in a query)
    is no token of ours."""
    return _TOKEN_SHAPE.fullmatch(token) is not None


_TOKEN_SHAPE = re.compile(r"[-\w]{1,100}", re.ASCII)


@transaction.atomic
def subscriber_confirm(*, token: str, now: datetime | None = None) -> Subscriber:
    now = now or timezone.now()
    if not _plausible_token(token):
        raise ValidationError("This confirmation link is unknown, used up or expired; subscribe again.")
    subscriber = (
        Subscriber.objects.select_for_update()
        .filter(confirm_token=token, unsubscribed_at=None, created_at__gte=now - timedelta(days=CONFIRM_DAYS))
        .first()
    )
    if subscriber is None:
        raise ValidationError("This confirmation link is unknown, used up or expired; subscribe again.")
    if subscriber.confirmed_at is None:
        subscriber.confirmed_at = now
        subscriber.save(update_fields=["confirmed_at"])
        # The newest choice of components replaces an earlier subscription of the same address.
        Subscriber.objects.filter(
            kind=Subscriber.Kind.EMAIL, email=subscriber.email, confirmed_at__isnull=False, unsubscribed_at=None
        ).exclude(pk=subscriber.pk).update(unsubscribed_at=now)
    return subscriber


@transaction.atomic
def subscriber_unsubscribe(*, token: str, now: datetime | None = None) -> Subscriber:
    now = now or timezone.now()
    subscriber = (
        Subscriber.objects.select_for_update().filter(unsubscribe_token=token).first()
        if _plausible_token(token)
        else None
    )
    if subscriber is None:
        raise ValidationError("This unsubscribe link is unknown.")
    if subscriber.unsubscribed_at is None:
        subscriber.unsubscribed_at = now
        subscriber.save(update_fields=["unsubscribed_at"])
    return subscriber


@transaction.atomic
def subscriber_subscribe_webhook(
    *, url: str, components: Iterable[str] = (), client_ip: str | None = None, now: datetime | None = None
) -> tuple[Subscriber, str]:
    """An active webhook subscription and its signing secret (returned here, never shown again)."""
    now = now or timezone.now()
    errors: dict[str, str] = {}
    try:
        url = check_webhook_url(url or "")
    except RefusedURL as exc:
        errors["url"] = str(exc)
    systems = _check_systems(errors, components)
    if errors:
        raise ValidationError(errors)
    secret = "whsec_" + secrets.token_urlsafe(32)
    subscriber = Subscriber.objects.create(
        kind=Subscriber.Kind.WEBHOOK, url=url, secret=secret, created_at=now, confirmed_at=now, created_from=client_ip
    )
    subscriber.systems.set(systems)
    return subscriber, secret


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# -- fan-out through the outbox --------------------------------------------------------------------


def _notify_incident(public: PublicIncident, update: PublicUpdate, *, event: str, now: datetime) -> None:
    systems = list(public.systems.all())
    named = public_components(systems)
    affected = ", ".join(name for _, name in named)
    subject = f"[TMT status] {public.title}: {update.get_status_display()}"
    text = f"{public.title}\n{update.get_status_display()}: {update.message}\n" + (
        f"\nAffected: {affected}\n" if affected else ""
    )
    payload = {
        "incident": {
            "id": public.pk,
            "title": public.title,
            "status": public.status,
            "impact": public.impact,
            "published_at": public.published_at.isoformat(),
            "resolved_at": public.resolved_at.isoformat() if public.resolved_at else None,
            "components": [key for key, _ in named],
        },
        "update": {"status": update.status, "message": update.message, "published_at": now.isoformat()},
    }
    _fan_out(event, subject, text, payload, systems, now=now)


def _fan_out(event: str, subject: str, text: str, payload: dict, systems: list[System], *, now: datetime) -> None:
    """One outbox row per active subscriber who follows any of `systems` (or everything)."""
    subscribers = Subscriber.objects.filter(confirmed_at__isnull=False, unsubscribed_at=None)
    if systems:
        subscribers = subscribers.filter(Q(systems__isnull=True) | Q(systems__in=systems)).distinct()
    page = absolute_url("status")
    batch = NotificationBatch()
    for subscriber in subscribers.order_by("pk"):
        unsubscribe = absolute_url("status_unsubscribe", subscriber.unsubscribe_token)
        if subscriber.kind == Subscriber.Kind.EMAIL:
            body = f"{text}\nStatus page: {page}\n\nUnsubscribe: {unsubscribe}\n"
            _queue(batch, subscriber, subject, body, now=now)
        else:
            data = {"event": event, **payload, "page": page, "unsubscribe": unsubscribe, "sent_at": now.isoformat()}
            _queue(batch, subscriber, subject, json.dumps(data, separators=(",", ":")), now=now)
    _save(batch)


def _queue(batch: NotificationBatch, subscriber: Subscriber, subject: str, body: str, *, now: datetime) -> None:
    email = subscriber.kind == Subscriber.Kind.EMAIL
    row = Notification(
        channel=Notification.Channel.EMAIL if email else Notification.Channel.WEBHOOK,
        address=subscriber.email if email else subscriber.url,
        subject=subject[:300],
        body=body,
        next_attempt_at=now,
    )
    row._status_subscriber = subscriber  # linked once the batch has ids
    batch.rows.append(row)  # not batch.add: its (event, channel, address) key is for pages


def _save(batch: NotificationBatch) -> None:
    rows = list(batch.rows)
    batch.save()
    SubscriberNotice.objects.bulk_create(
        [SubscriberNotice(notification=row, subscriber=row._status_subscriber) for row in rows]
    )


# -- delivery hooks (registered in apps.py) -----------------------------------------------------------


def _notice_of(notification: Notification) -> SubscriberNotice | None:
    return SubscriberNotice.objects.select_related("subscriber").filter(notification_id=notification.pk).first()


def webhook_request(notification: Notification) -> tuple[bytes, dict[str, str]] | None:
    """A subscriber's webhook: the stored JSON body, signed with the subscriber's own key."""
    notice = _notice_of(notification)
    if notice is None:
        return None
    subscriber = notice.subscriber
    if not subscriber.active:
        raise PermanentFailure("the subscriber unsubscribed before delivery")
    try:
        check_webhook_url(notification.address)  # again: the name may point elsewhere by now
    except RefusedURL as exc:
        raise PermanentFailure(f"refused: {exc}") from exc
    body = notification.body.encode()
    event = json.loads(notification.body).get("event", "")
    return body, {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(subscriber.secret, body),
        EVENT_HEADER: event,
    }


def email_headers(notification: Notification) -> dict[str, str]:
    notice = _notice_of(notification)
    if notice is None or not notice.subscriber.active:
        return {}
    return {"List-Unsubscribe": f"<{absolute_url('status_unsubscribe', notice.subscriber.unsubscribe_token)}>"}


# -- uptime rollup ----------------------------------------------------------------------------------


def uptime_roll_up(*, now: datetime | None = None) -> int:
    """Count each system's checks per finished UTC day into UptimeDay, before the samples are pruned.

    Days already rolled up are left alone except yesterday (samples recorded late); one
    aggregate query for the days to do. Returns the rows written."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=settings.TMT_HEALTH_SAMPLE_RETENTION_DAYS)
    done = set(
        UptimeDay.objects.filter(day__gte=first, day__lt=today - timedelta(days=1)).values_list("day", flat=True)
    )
    todo = [first + timedelta(days=n) for n in range((today - first).days) if first + timedelta(days=n) not in done]
    if not todo:
        return 0
    rows = (
        HealthSample.objects.filter(
            checked_at__gte=_midnight(min(todo)), checked_at__lt=_midnight(today), target__system__isnull=False
        )
        .annotate(day=TruncDate("checked_at", tzinfo=UTC))
        .filter(day__in=todo)
        .values("target__system_id", "day")
        .annotate(ok=Count("pk", filter=Q(ok=True)), total=Count("pk"))
    )
    days = [UptimeDay(system_id=r["target__system_id"], day=r["day"], ok=r["ok"], total=r["total"]) for r in rows]
    UptimeDay.objects.bulk_create(
        days, update_conflicts=True, unique_fields=["system", "day"], update_fields=["ok", "total"]
    )
    return len(days)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# -- publishing from the status update composer (registered in apps.py) ------------------------------

# The internal words of a status update, as the public page says them.
_PUBLIC_STATUS_OF = {"Contained": PublicStatus.IDENTIFIED, "Resolved": PublicStatus.RESOLVED}


def may_publish(user) -> bool:
    return user.has_perm("status.publish_status")


def public_publish_status_update(*, update, user, now: datetime) -> None:
    """A status update for users, posted with "publish" ticked: the incident's first public update
    (published under the drafted public title) or its next one. Errors come back keyed
    "is_public" so the composer shows them beside the box."""
    if not may_publish(user):
        raise ValidationError({"is_public": "Publishing on the public status page needs a communications role."})
    incident = update.incident
    status = _PUBLIC_STATUS_OF.get(update.status, PublicStatus.INVESTIGATING)
    message = "\n\n".join(part for part in (update.impact.strip(), update.details.strip()) if part)
    public = PublicIncident.objects.filter(incident=incident).first()
    try:
        if public is not None:
            public_incident_update(public_incident=public, user=user, status=status, message=message, now=now)
        elif status == PublicStatus.RESOLVED:
            raise ValidationError("This incident was never on the public status page; a resolution is not published.")
        else:
            draft = public_draft(incident=incident)
            public_incident_publish(
                incident=incident,
                user=user,
                title=draft["title"],
                impact=draft["impact"],
                status=status,
                message=message,
                now=now,
            )
    except ValidationError as exc:
        raise ValidationError({"is_public": exc.messages}) from exc
