"""Migration 0018 keys the seed's items, and the items already on incidents, ticking nothing."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from incidents.models import ChecklistTemplateItem, IncidentChecklistItem, PortalAction
from tests.factories import open_incident

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

BEFORE = [("incidents", "0017_roles_and_portal_ticks")]
AFTER = [("incidents", "0018_seed_portal_ticks")]


def _migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def test_existing_incidents_items_get_the_keys_and_an_admins_key_stays():
    incident = open_incident()
    try:
        _migrate(BEFORE)
        # As a database from before the keys: no key anywhere, nothing ticked.
        IncidentChecklistItem.objects.update(action_key="", done_at=None, done_by=None, ticked_by_portal_when="")
        # An admin already keyed one seeded item differently: that choice is kept.
        ChecklistTemplateItem.objects.filter(text__startswith="Start tracking").update(
            action_key=PortalAction.COMMANDER_ASSIGNED
        )
        _migrate(AFTER)
        keys = dict(IncidentChecklistItem.objects.filter(incident=incident).values_list("text", "action_key"))
        assert keys["Acknowledge alert: acknowledge monitoring alerts"] == PortalAction.ACKNOWLEDGED
        assert keys["Preserve evidence: capture logs and system state"] == PortalAction.EVIDENCE_ATTACHED
        assert keys["Start tracking: create incident ticket"] == PortalAction.COMMANDER_ASSIGNED
        assert keys["Severity level determination"] == ""
        assert not IncidentChecklistItem.objects.filter(done_at__isnull=False).exists(), "a migration ticks nothing"
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
