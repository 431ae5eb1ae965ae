"""Test helpers for the seeded health targets that are not agents."""

from __future__ import annotations

from incidents.devtools.demo import portal_database_target
from incidents.monitoring.models import HealthTarget


def point_trading_database_at_portal(**fields) -> None:
    """The seeded "Trading Database" target checks the portal's own (test) PostgreSQL, as the
    demo does: the CI machine has no separate trading database."""
    HealthTarget.objects.filter(name="Trading Database").update(**portal_database_target(), **fields)
