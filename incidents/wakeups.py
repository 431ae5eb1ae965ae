"""Waking the paging dispatcher when a deadline or a page falls due sooner than it would look.

The dispatcher (incidents/monitoring/dispatcher.py) looks at the database at least once a second and sleeps
until the next due row, so a wake-up only buys precision for rows written to be due at once (a
page at open, a retry moved forward). On PostgreSQL a wake-up is a NOTIFY: sent when the writing
transaction commits, dropped if it rolls back, and repeated ones in one transaction collapse into
one. SQLite has no NOTIFY; there the dispatcher's short poll is the only wake-up.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

DEADLINES = "tmt_deadlines"
NOTIFICATIONS = "tmt_notifications"
CHANNELS = (DEADLINES, NOTIFICATIONS)

# The longest the dispatcher sleeps without looking at the database; a row due later than this
# is found by its next look, so it needs no wake-up (and its transaction skips NOTIFY's lock).
DISPATCHER_MAX_SLEEP = timedelta(seconds=1)


def wake(channel: str, *, due_at: datetime | None = None) -> None:
    """Wake the dispatchers listening on `channel` once the current transaction commits."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown wake-up channel {channel!r}")
    if due_at is not None and due_at - timezone.now() > DISPATCHER_MAX_SLEEP:
        return
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"NOTIFY {channel}")
