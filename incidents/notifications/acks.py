"""Acknowledging from the page itself: the one-tap link in each page, and the provider's replies.

- Each SMS, voice and email page to a person who may acknowledge carries a link
  (`/ack/<token>/`): it shows the incident's essentials and one "Acknowledge" button, and works
  once, until TMT_ACK_LINK_TTL_SECONDS after the page is due to go. The token is an HMAC of the
  page's id under the SECRET_KEY, so a re-send after a crash carries the same link, and only its
  SHA-256 is stored, made with the page's row; the token is put in the text only at sending.
- The provider posts SMS replies ("ACK" or "4": acknowledge; "ESC": escalate now) and voice
  keypresses ("4": acknowledge) to signed webhooks (signatures.py). A reply is matched to the
  person by the sender's number and to the incident by the most recent page of its kind sent to
  that number, or by the incident reference the reply names ("ACK TMT-INC-…").

Every refusal raises ReplyRefused and keeps nothing (a write made before it is rolled back with
the request's transaction); the acknowledgement itself goes
through the core's incident_acknowledge (deadlines cancelled, checklists attached, hooks told),
and the timeline says how ("Acknowledged by Marcus O'Neill by SMS reply").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac

from incidents.models import Incident
from incidents.models.incident import TRANSITION_PERMISSIONS
from incidents.notifications import selectors
from incidents.notifications.hooks import notification_hooks
from incidents.notifications.models import AckLink, Notification, ProviderReply
from incidents.services.incident import IncidentChangedError, TransitionRefusedError, incident_acknowledge

_TOKEN_SALT = "incidents.notifications.ack-link"  # noqa: S105 - an HMAC salt, not a secret
ACK_COMMANDS = {"ACK", "4"}
ESCALATE_COMMANDS = {"ESC"}
SMS_HELP = "Reply ACK or 4 to acknowledge, ESC to escalate now."
VOICE_HELP = "Press 4 to acknowledge."


class ReplyRefused(Exception):
    """A link, reply or keypress that cannot act: nothing was written. `status` is the HTTP answer."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


@dataclass(frozen=True)
class Outcome:
    code: str  # "acknowledged", "already_acknowledged" or "escalated"
    message: str
    incident: Incident


# -- the link ---------------------------------------------------------------------------------


def _token(notification: Notification) -> str:
    return salted_hmac(_TOKEN_SALT, f"notification:{notification.pk}", algorithm="sha256").hexdigest()


LINK_CHANNELS = (Notification.Channel.SMS, Notification.Channel.PHONE, Notification.Channel.EMAIL)


def _asks_for_acknowledgement(notification: Notification) -> bool:
    """A page of an escalation to a person, about an incident nobody has acknowledged yet."""
    incident = notification.incident
    return (
        notification.pk is not None
        and notification.event_id is not None
        and notification.recipient_id is not None
        and notification.channel in LINK_CHANNELS
        and incident is not None
        and incident.is_open
        and incident.acknowledged_at is None
    )


def ack_links_issue(notifications: list[Notification]) -> int:
    """Make the links of pages just written, in their transaction (one query for who may
    acknowledge, one INSERT), so that sending a page needs no database work of its own: a
    dropped connection or a slow query at that moment would delay the page. Only for people
    whose role may acknowledge. Returns how many were made."""
    wanted = [n for n in notifications if _asks_for_acknowledgement(n)]
    if not wanted:
        return 0
    # ModelBackend's rule (superuser, or the permission through a group or directly) for the
    # whole batch in one query: user.has_perm is two queries a person, in the firing's transaction.
    app_label, codename = TRANSITION_PERMISSIONS["acknowledge"].split(".")
    permission = Q(groups__permissions__codename=codename, groups__permissions__content_type__app_label=app_label)
    permission |= Q(user_permissions__codename=codename, user_permissions__content_type__app_label=app_label)
    allowed = set(
        get_user_model()
        .objects.filter(Q(is_superuser=True) | permission, pk__in={n.recipient_id for n in wanted}, is_active=True)
        .values_list("pk", flat=True)
    )
    rows = [
        AckLink(
            notification_id=n.pk,
            incident_id=n.incident_id,
            user_id=n.recipient_id,
            key_hash=selectors.token_hash(_token(n)),
            # From when the page is due to go (an email follow-up waits for the SMS and call).
            expires_at=n.next_attempt_at + timedelta(seconds=settings.TMT_ACK_LINK_TTL_SECONDS),
        )
        for n in wanted
        if n.recipient_id in allowed
    ]
    # ON CONFLICT DO NOTHING: a page's link is made once; its expiry stands.
    AckLink.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def ack_link_url(notification: Notification) -> str | None:
    """The link a page carries, from the row's own link (loaded with it: no query when the
    delivery's claim selected it), or None when it asks nobody to acknowledge."""
    try:
        link = notification.ack_link
    except AckLink.DoesNotExist:
        return None
    incident = notification.incident
    if link.used_at is not None or not incident.is_open or incident.acknowledged_at is not None:
        return None
    return settings.TMT_SITE_URL.rstrip("/") + reverse("notifications:ack_link", args=[_token(notification)])


def page_text(notification: Notification) -> str:
    """What the provider or the mail server is given: the stored body, plus the one-tap link and
    how to answer. The link is added here, at sending, so the outbox never stores a token."""
    url = ack_link_url(notification)
    if url is None:
        return notification.body
    reference = notification.incident.reference
    if notification.channel == Notification.Channel.SMS:
        return f"{notification.body} Reply 4 to ack {reference}, ESC to escalate now. One tap: {url}"
    if notification.channel == Notification.Channel.PHONE:
        return f"{notification.body} {VOICE_HELP} Or acknowledge with one tap: {url}"
    minutes = settings.TMT_ACK_LINK_TTL_SECONDS // 60
    return f"{notification.body}\nAcknowledge with one tap (no login; works once, for {minutes} minutes):\n{url}\n"


def link_channel_words(link: AckLink) -> str:
    return {
        Notification.Channel.SMS: "the SMS page",
        Notification.Channel.PHONE: "the voice page",
        Notification.Channel.EMAIL: "the email page",
    }.get(link.notification.channel, "the page")


def ack_link_problem(link: AckLink | None, *, now: datetime) -> ReplyRefused | None:
    """Why this link cannot acknowledge (None when it can, or when someone already did)."""
    if link is None:
        return ReplyRefused(
            "This acknowledgement link is not valid. Check that the whole link was opened, or log in to acknowledge.",
            status=404,
            code="invalid_link",
        )
    if link.used_at is not None:
        return ReplyRefused(
            f"This link was already used ({timezone.localtime(link.used_at):%Y-%m-%d %H:%M:%S %Z}); each works once.",
            status=410,
            code="used_link",
        )
    if now >= link.expires_at:
        return ReplyRefused(
            f"This link expired at {timezone.localtime(link.expires_at):%Y-%m-%d %H:%M:%S %Z}. Log in to acknowledge.",
            status=410,
            code="expired_link",
        )
    return None


def already_acknowledged(incident: Incident) -> str | None:
    if incident.acknowledged_at is None:
        return None
    who = incident.acknowledged_by
    name = (who.get_full_name() or who.get_username()) if who else "someone"
    return (
        f"{incident.reference} was already acknowledged by {name} at "
        f"{timezone.localtime(incident.acknowledged_at):%Y-%m-%d %H:%M:%S %Z}. Nothing was changed."
    )


@transaction.atomic
def ack_link_redeem(*, raw: str, now: datetime | None = None) -> Outcome:
    """Acknowledge for the link's person; raises ReplyRefused (nothing written) when it cannot."""
    now = now or timezone.now()
    link = selectors.ack_link_by_token(raw)
    problem = ack_link_problem(link, now=now)
    if problem is not None:
        raise problem
    incident = _locked(link.incident)
    done = already_acknowledged(incident)
    if done is not None:
        return Outcome("already_acknowledged", done, incident)
    _refuse_closed(incident)
    # Single use: only one request sees its conditional update take; a second tap, or one racing
    # it, finds used_at set and is refused. A refusal below rolls this back with the rest.
    if not AckLink.objects.filter(pk=link.pk, used_at=None, expires_at__gt=now).update(used_at=now):
        raise ReplyRefused("This link was just used; each works once.", status=410, code="used_link")
    _acknowledge(incident, link.user, via=f"by the link in {link_channel_words(link)}")
    return Outcome("acknowledged", f"{incident.reference} acknowledged. Thank you.", incident)


def _locked(incident: Incident) -> Incident:
    # Read again under the incident's lock: an acknowledgement from the page, a reply and a tap
    # arriving together see each other's result instead of racing to the transition.
    return (
        Incident.objects.select_for_update(no_key=True, of=("self",))
        .select_related("severity", "acknowledged_by")
        .get(pk=incident.pk)
    )


def closed_problem(incident: Incident) -> ReplyRefused | None:
    if incident.is_open:
        return None
    return ReplyRefused(
        f"{incident.reference} is {incident.get_state_display().lower()}: there is nothing to acknowledge.",
        status=409,
        code="incident_closed",
    )


def _refuse_closed(incident: Incident) -> None:
    problem = closed_problem(incident)
    if problem is not None:
        raise problem


def _acknowledge(incident: Incident, user, *, via: str) -> None:
    try:
        incident_acknowledge(incident=incident, user=user, via=via)
    except PermissionDenied as exc:
        raise ReplyRefused(
            "Your role cannot acknowledge incidents; ask the incident manager.", status=403, code="not_permitted"
        ) from exc
    except (TransitionRefusedError, IncidentChangedError) as exc:
        raise ReplyRefused(str(exc), status=409, code="refused") from exc


# -- replies by SMS and keypresses ------------------------------------------------------------


def _parse_sms(text: str) -> tuple[str, str]:
    """(command, reference) from a reply such as "ack", "4", "ESC TMT-INC-20261206-0003"."""
    words = text.strip().upper().split()
    if not words or len(words) > 2 or words[0] not in ACK_COMMANDS | ESCALATE_COMMANDS:
        raise ReplyRefused(f"Not understood: “{text.strip()[:40]}”. {SMS_HELP}", status=400, code="unknown_command")
    return ("ack" if words[0] in ACK_COMMANDS else "esc"), (words[1] if len(words) == 2 else "")


def provider_reply_handle(
    *,
    channel: str,
    provider_id: str,
    sender: str,
    text: str,
    reference: str = "",
    now: datetime | None = None,
) -> Outcome:
    """Act on an SMS reply (`channel` "sms", `text` the message) or a keypress ("voice", `text`
    the digits). Raises ReplyRefused, with nothing written, for anything it cannot act on."""
    now = now or timezone.now()
    if not provider_id.strip() or len(provider_id) > 100:
        raise ReplyRefused("The message has no provider id (“id”).", status=400, code="invalid")
    if channel == ProviderReply.Channel.SMS:
        command, named = _parse_sms(text)
        page_channel, via = Notification.Channel.SMS, "by SMS reply"
    else:
        if text.strip() != "4":
            raise ReplyRefused(f"Key “{text.strip()[:10]}” does nothing. {VOICE_HELP}", status=400, code="unknown_key")
        command, named = "ack", ""
        page_channel, via = Notification.Channel.PHONE, "by voice keypress"
    with transaction.atomic():
        page = _page_for(sender, page_channel, named or reference)
        if ProviderReply.objects.filter(provider_id=provider_id.strip()).exists():
            raise ReplyRefused("This message was already handled.", status=409, code="duplicate")
        incident = _locked(page.incident)
        user = page.recipient
        if command == "ack":
            done = already_acknowledged(incident)
            if done is not None:
                return Outcome("already_acknowledged", done, incident)
            _refuse_closed(incident)
            _acknowledge(incident, user, via=via)
            outcome = Outcome("acknowledged", f"{incident.reference} acknowledged. Thank you.", incident)
        else:
            outcome = _escalate(incident, user, via=via, now=now)
        _record(page, channel=channel, provider_id=provider_id, sender=sender, text=text, outcome=outcome, now=now)
        return outcome


def _page_for(sender: str, channel: str, reference: str) -> Notification:
    if not selectors.people_with_number(sender):
        raise ReplyRefused(
            f"The number {sender[:30]} belongs to nobody in the portal.", status=404, code="unknown_number"
        )
    page = selectors.page_answered_by(number=sender, channel=channel, reference=reference)
    if page is None:
        about = f" about {reference}" if reference else ""
        raise ReplyRefused(f"No page was sent to {sender[:30]}{about}.", status=404, code="no_page")
    if page.recipient is None:
        raise ReplyRefused("That page was not sent to a person.", status=404, code="no_page")
    return page


def _escalate(incident: Incident, user, *, via: str, now: datetime) -> Outcome:
    if notification_hooks.escalate_now is None:
        raise ReplyRefused("Escalating by reply is not available.", status=409, code="refused")
    if not user.has_perm(TRANSITION_PERMISSIONS["acknowledge"]):
        raise ReplyRefused(
            "Your role cannot escalate incidents; ask the incident manager.", status=403, code="not_permitted"
        )
    message = notification_hooks.escalate_now(incident=incident, user=user, via=via, now=now)
    return Outcome("escalated", message, incident)


def _record(
    page: Notification, *, channel: str, provider_id: str, sender: str, text: str, outcome: Outcome, now: datetime
) -> None:
    try:
        with transaction.atomic():
            ProviderReply.objects.create(
                provider_id=provider_id.strip(),
                channel=channel,
                sender=sender[:50],
                text=text.strip()[:160],
                notification=page,
                outcome=outcome.message[:300],
                received_at=now,
            )
    except IntegrityError as exc:
        # The same provider message again (a replay inside the signature's window, or the
        # provider retrying): refused, and what the first one did is rolled back from this one.
        raise ReplyRefused("This message was already handled.", status=409, code="duplicate") from exc
