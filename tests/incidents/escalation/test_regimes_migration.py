"""Obligations recorded before regimes existed move onto the default regime, on the stage of
their category's window, with their clock and due time unchanged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from incidents.escalation.models import RegulatoryObligation
from tests.factories import UserFactory, open_incident

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.usefixtures("postgres")]

BEFORE = [("escalation", "0002_regimes_audiences")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_existing_obligations_move_to_the_default_regime():
    incident = open_incident(reported_by=UserFactory(), level=2)
    raised = timezone.now() - timedelta(hours=2)
    old = _migrate(BEFORE)
    Category = old.get_model("escalation", "RegulatoryCategory")
    Obligation = old.get_model("escalation", "RegulatoryObligation")
    rows = {}
    for key in ("data-integrity", "major-security-breach"):
        category = Category.objects.get(key=key)
        rows[key] = Obligation.objects.create(
            incident_id=incident.pk, category=category, raised_at=raised, due_at=raised + timedelta(hours=24)
        ).pk
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    moved = {o.category.key: o for o in RegulatoryObligation.objects.select_related("regime", "stage", "category")}
    assert set(moved) == set(rows)
    for obligation in moved.values():
        assert obligation.regime.is_default and obligation.regime.key == "procedures"
        assert obligation.stage.key == obligation.category.window
        assert obligation.clock_started_at == raised and obligation.due_at == raised + timedelta(hours=24)
        assert obligation.status == "pending"
