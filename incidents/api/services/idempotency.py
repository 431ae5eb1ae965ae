"""Idempotency keys for `POST /api/v1/incidents/`: a retried request opens the incident once.

A script that logs an incident and loses the answer (a timeout, a dropped connection) cannot
know whether the incident was opened; retrying without a key would open a second one and page
people twice. With `Idempotency-Key: <key>` (the IETF httpapi draft's header, as Stripe and
PagerDuty's dedup keys use it), a retry within IDEMPOTENCY_KEY_LIFETIME gets the first incident
back. The key row is inserted in the same transaction as the incident, before it: a concurrent
retry waits on the unique index until the first request commits and then finds its incident, or,
if the first failed and rolled back, opens it itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents.api.models import IdempotencyKey
from incidents.models import Incident

IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=24)


class IdempotencyKeyReusedError(Exception):
    """The key was already used, within its lifetime, for a request with another body."""

    message = "This Idempotency-Key was already used with a different request body. Use a new key for a new incident."


@dataclass(frozen=True)
class OpenedOnce:
    incident: Incident
    replayed: bool  # True: an earlier request with this key opened it


def request_hash(data: Any) -> str:
    """The body's SHA-256, independent of key order and spacing."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a body may spell a lone surrogate ("\ud800"), which plain UTF-8 refuses;
    # its field is refused after, but hashing it must not fail first.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


@transaction.atomic
def incident_open_once(
    *, user: AbstractBaseUser, key: str, body_hash: str, open_incident: Callable[[], Incident]
) -> OpenedOnce:
    """Call `open_incident` (which validates, then opens) unless this user's `key` already
    opened an incident: then return that one, without validating again.

    Raises IdempotencyKeyReusedError if the key came with another body. Whatever `open_incident`
    raises rolls the key back with it, so a refused request does not use its key up."""
    now = timezone.now()
    # An expired key is forgotten, so the client may use it again (as Stripe does after 24 h).
    IdempotencyKey.objects.filter(user=user, key=key, created_at__lt=now - IDEMPOTENCY_KEY_LIFETIME).delete()
    try:
        with transaction.atomic():
            record = IdempotencyKey.objects.create(user=user, key=key, request_hash=body_hash)
    except IntegrityError:
        record = IdempotencyKey.objects.select_related("incident").get(user=user, key=key)
        if record.request_hash != body_hash:
            raise IdempotencyKeyReusedError(IdempotencyKeyReusedError.message) from None
        return OpenedOnce(incident=record.incident, replayed=True)
    incident = open_incident()
    record.incident = incident
    record.save(update_fields=["incident"])
    return OpenedOnce(incident=incident, replayed=False)


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    """Delete the keys past their lifetime (beat runs this hourly); returns how many."""
    now = now or timezone.now()
    return IdempotencyKey.objects.filter(created_at__lt=now - IDEMPOTENCY_KEY_LIFETIME).delete()[0]
