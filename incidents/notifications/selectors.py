"""Reads of the outbox."""

from __future__ import annotations

import hashlib
import re

from django.db.models import Q, Value
from django.db.models.functions import Replace

from incidents.models import (
    Incident,
)
from incidents.notifications.models import AckLink, Notification
from incidents.oncall.models import Person


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


# -- acknowledging from the page --------------------------------------------------------------


def token_hash(raw: str) -> str:
    # The tokens are 256-bit HMACs, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(raw.encode()).hexdigest()


def ack_link_by_token(raw: str) -> AckLink | None:
    """The link a token stands for (None for a token the portal never issued)."""
    if not raw or len(raw) > 200:
        return None
    return (
        AckLink.objects.select_related(
            "incident__severity", "incident__commander", "incident__acknowledged_by", "user", "notification__event"
        )
        .filter(key_hash=token_hash(raw))
        .first()
    )


# What a number may be written with besides its digits and leading "+".
_NUMBER_PUNCTUATION = (" ", "-", "(", ")", ".")


def normalized_number(number: str) -> str:
    return re.sub(r"[\s\-().]", "", number)


def _without_punctuation(field: str):
    expression = field
    for mark in _NUMBER_PUNCTUATION:
        expression = Replace(expression, Value(mark), Value(""))
    return expression


def people_with_number(number: str) -> list[Person]:
    """Who has this phone or SMS number on file (written with or without spaces and dashes)."""
    wanted = normalized_number(number)
    if not wanted:
        return []
    return list(
        Person.objects.annotate(sms_n=_without_punctuation("sms_number"), phone_n=_without_punctuation("phone"))
        .filter(Q(sms_n=wanted) | Q(phone_n=wanted))
        .select_related("user")
    )


def page_answered_by(*, number: str, channel: str, reference: str = "") -> Notification | None:
    """The page a reply from `number` answers: the most recent page of `channel` (SMS for a
    reply, a call for a keypress) sent to that number, or, when the reply names an incident
    ("ACK TMT-INC-…"), the most recent one for that incident."""
    people = people_with_number(number)
    if not people:
        return None
    wanted = normalized_number(number)
    pages = (
        Notification.objects.filter(
            recipient__in=[p.user_id for p in people],
            channel=channel,
            state=Notification.State.SENT,
            incident__isnull=False,
        )
        .select_related("incident__severity", "incident__acknowledged_by", "recipient", "event")
        .order_by("-sent_at", "-pk")
    )
    if reference:
        pages = pages.filter(incident__reference__iexact=reference)
    # Few pages per person; the address written differently from the number is compared here.
    for page in pages[:50]:
        if normalized_number(page.address) == wanted:
            return page
    return None
