"""Test helpers for the seeded health targets that are not agents."""

from __future__ import annotations

from django.db import connection

from incidents.monitoring.models import HealthTarget


def point_trading_database_at_portal(**fields) -> None:
    """The seeded "Trading Database" target checks the portal's own (test) PostgreSQL, as the
    demo does: the CI machine has no separate trading database."""
    db = connection.settings_dict
    HealthTarget.objects.filter(name="Trading Database").update(
        host=db["HOST"] or "127.0.0.1",
        port=int(db["PORT"] or 5432),
        database=db["NAME"],
        username=db["USER"] or "postgres",
        password_env="",
        **fields,
    )
