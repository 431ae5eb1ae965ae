"""Publishing changes to the open pages: one row per changed incident, written after commit.

Every process that writes (web, API, dispatcher, Celery worker) publishes the same way, through
the database they already share: nothing new has to be up for a change to reach the pages, and
on the local defaults (SQLite, the filesystem broker) it works as on PostgreSQL and Redis. The
row is written once the change has committed (a rolled-back change is never announced), and a
failure to write it is logged and swallowed: an announcement must never undo or fail a change.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction

from incidents.models import TimelineEntry

from .models import LiveEvent

log = logging.getLogger(__name__)


class _Announcement:
    """An on-commit callback; equal ones in one transaction are registered once (an incident
    opened writes several timeline entries, its pages need one refresh)."""

    def __init__(self, topic: str, incident_id: int | None) -> None:
        self.key = (topic, incident_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Announcement) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __call__(self) -> None:
        topic, incident_id = self.key
        try:
            LiveEvent.objects.create(topic=topic, incident_id=incident_id)
        except Exception:
            log.warning("could not announce a change to the live pages (%s %s)", topic, incident_id, exc_info=True)


def publish(*, topic: str, incident_id: int | None = None, using: str = DEFAULT_DB_ALIAS) -> None:
    """Announce, once the current transaction commits, that pages showing this went stale."""
    announcement = _Announcement(topic, incident_id)
    connection = transaction.get_connection(using)
    # Django keeps (savepoint ids, callback, robust) per registered callback; a savepoint rolled
    # back drops its own, so a duplicate found here is one that will still run.
    pending: list[Any] = getattr(connection, "run_on_commit", [])
    if connection.in_atomic_block and any(entry[1] == announcement for entry in pending):
        return
    transaction.on_commit(announcement, using=using)


def on_timeline_entry(*, entry: TimelineEntry) -> None:
    publish(topic=LiveEvent.Topic.INCIDENT, incident_id=entry.incident_id)


def on_health_target_saved(sender: type, created: bool, update_fields: Any = None, **kwargs: Any) -> None:
    if created or update_fields is None or "state" in update_fields:
        publish(topic=LiveEvent.Topic.HEALTH, using=kwargs.get("using") or DEFAULT_DB_ALIAS)
