"""A database from before the split into apps migrates forward with nothing touched.

The demo month (every kind of row: incidents, timeline, deadlines, firings, pages and their
attempts, status updates, obligations, the roster, health samples, tokens, alerts) is written,
the schema is taken back to where it was before the split (incidents 0014, the sub-apps not
there), and then forward again, as `manage.py migrate` would do on a database deployed before.
"""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from incidents.api.models import AlertEvent, AlertIntegration, IdempotencyKey
from incidents.api.services.api_tokens import api_token_create
from incidents.escalation import services as escalation
from incidents.escalation import status_updates
from incidents.escalation.models import RegulatoryCategory
from incidents.models import OPEN_STATES, Incident
from incidents.monitoring.models import (
    DutyHeartbeat,
    EmergencyStop,
    HealthSample,
    HealthTarget,
    MaintenanceWindow,
    WorkerHeartbeat,
)
from incidents.notifications.models import (
    DistributionList,
    Notification,
    NotificationAttempt,
    WebhookEndpoint,
)
from incidents.oncall.models import OnCallOverride, OnCallRotation
from incidents.roles import ROLE_PERMISSIONS

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.usefixtures("postgres")]

BEFORE_THE_SPLIT = [("incidents", "0014_duty_heartbeats")]
SUB_APPS = ("oncall", "notifications", "escalation", "monitoring", "api")
# Every table a moved model lives in: the names they had before the split.
MOVED_TABLES = [
    "incidents_person",
    "incidents_rolecontact",
    "incidents_oncallrotation",
    "incidents_rotationmember",
    "incidents_oncalloverride",
    "incidents_webhookendpoint",
    "incidents_distributionlist",
    "incidents_distributionlist_webhooks",
    "incidents_notification",
    "incidents_notificationattempt",
    "incidents_escalationpolicy",
    "incidents_escalationstep",
    "incidents_escalationtrigger",
    "incidents_regulatorycategory",
    "incidents_regulatoryobligation",
    "incidents_deadline",
    "incidents_escalationevent",
    "incidents_statusupdate",
    "incidents_healthtarget",
    "incidents_healthsample",
    "incidents_emergencystop",
    "incidents_maintenancewindow",
    "incidents_maintenancewindow_systems",
    "incidents_dutyheartbeat",
    "incidents_workerheartbeat",
    "incidents_apitoken",
    "incidents_alertintegration",
    "incidents_alertevent",
    "incidents_idempotencykey",
]
CORE_TABLES = [
    "incidents_incident",
    "incidents_timelineentry",
    "incidents_evidenceattachment",
    "auth_group_permissions",
]


def _migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def _leaf_nodes() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


def _row_counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        counts = {}
        for table in MOVED_TABLES + CORE_TABLES:
            cursor.execute(f'SELECT count(*) FROM "{table}"')  # noqa: S608 - table names are ours
            counts[table] = cursor.fetchone()[0]
    return counts


def _triggers() -> set[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND c.relname LIKE 'incidents_%%'"
        )
        return set(cursor.fetchall())


def _group_permissions() -> dict[str, set[int]]:
    return {group.name: set(group.permissions.values_list("pk", flat=True)) for group in Group.objects.all()}


def _without_later_features() -> None:
    """The demo also shows features added after the split, whose rows a database from before it
    cannot hold: regime reports (no category; a report waiting for an earlier one has no due time
    yet) and the status page's mail to subscribers (no incident)."""
    from incidents.escalation.models import Deadline, RegulatoryClassification, RegulatoryObligation

    staged = RegulatoryObligation.objects.filter(category=None)
    rules = [f"regulatory:{pk}" for pk in staged.values_list("pk", flat=True)]
    Deadline.objects.filter(kind=Deadline.Kind.REGULATORY, rule__in=rules).delete()
    staged.delete()
    RegulatoryClassification.objects.all().delete()
    Notification.objects.filter(incident=None).delete()


def _write_every_kind_of_row() -> None:
    """The demo month, and what the processes and people add to it: firings and their pages,
    delivery attempts, a status update to a distribution list, an obligation, a cover, health
    samples, an emergency stop, a maintenance window, tokens, an alert and an idempotency key."""
    call_command("seed_demo", stdout=StringIO())
    _without_later_features()
    now = timezone.now()
    incident = Incident.objects.filter(state__in=OPEN_STATES, is_drill=False).order_by("severity__level").first()
    commander = incident.commander or incident.reported_by
    hook = WebhookEndpoint.objects.create(name="Ops chat", url="http://127.0.0.1:9/hook")
    DistributionList.objects.create(name="Stakeholders", max_severity_level=4, emails="desk@example.com").webhooks.add(
        hook
    )
    escalation.deadlines_fire_due(now=now + timedelta(days=1))
    status_updates.status_update_post(
        incident=incident,
        user=commander,
        subject="Update",
        status="Investigating",
        impact="Orders delayed",
        details="Looking at the gateway",
        contact="desk",
        now=now,
    )
    escalation.regulatory_raise(
        incident=incident,
        category_key=RegulatoryCategory.objects.filter(raised_automatically=False).first().key,
        now=now,
    )
    for notification in Notification.objects.all()[:5]:
        NotificationAttempt.objects.create(notification=notification, attempted_at=now, outcome="sent")
    rotation = OnCallRotation.objects.first()
    OnCallOverride.objects.create(
        rotation=rotation,
        user=commander,
        starts_at=now,
        ends_at=now + timedelta(hours=8),
        reason="cover",
        created_by=commander,
    )
    target = HealthTarget.objects.first()
    HealthSample.objects.create(target=target, checked_at=now, ok=True, latency_ms=4.0, status_code=200)
    EmergencyStop.objects.create(
        incident=incident,
        requested_by=commander,
        reason="drill of the stop",
        requested_at=now,
        agent_url="http://127.0.0.1:9",
    )
    MaintenanceWindow.objects.create(
        title="Gateway upgrade", starts_at=now, ends_at=now + timedelta(hours=1), created_by=commander
    ).systems.add(target.system)
    api_token_create(user=commander, name="script")
    integration = AlertIntegration.objects.first()
    AlertEvent.objects.create(
        integration=integration, fingerprint="fp", status="firing", summary="CPU", incident=incident
    )
    IdempotencyKey.objects.create(user=commander, key="retry-1", request_hash="0" * 64, incident=incident)
    DutyHeartbeat.objects.create(duty=DutyHeartbeat.Duty.ESCALATION, process="dispatcher@test", seen_at=now)
    WorkerHeartbeat.objects.create(name="worker@test", kind="worker", seen_at=now - timedelta(seconds=5))


def test_a_database_from_before_the_split_migrates_forward_untouched():
    _write_every_kind_of_row()

    _migrate(BEFORE_THE_SPLIT)
    applied = {(app, name) for app, name in MigrationExecutor(connection).loader.applied_migrations}
    assert not any(app in SUB_APPS for app, _ in applied), "the sub-apps' migrations were unapplied"
    # Before the split every model sat in the incidents app, and so did its content type.
    assert set(ContentType.objects.filter(model="notification").values_list("app_label", flat=True)) == {"incidents"}
    before_counts, before_triggers, before_permissions = _row_counts(), _triggers(), _group_permissions()
    empty = [table for table in MOVED_TABLES if not before_counts[table]]
    assert empty == [], ", ".join(empty)
    assert {"incidents_timelineentry", "incidents_notificationattempt"} <= {table for table, _ in before_triggers}

    _migrate(_leaf_nodes())

    after_counts = _row_counts()
    # A migration after the split seeds two health targets (the execution engine, the trading database).
    assert after_counts.pop("incidents_healthtarget") == before_counts.pop("incidents_healthtarget") + 2
    assert after_counts == before_counts
    assert before_triggers <= _triggers()  # every one kept (migrations after the split add their own)
    # The permission rows each role group holds are the same rows, now under the new labels.
    assert _group_permissions() == before_permissions
    assert set(ContentType.objects.filter(model="notification").values_list("app_label", flat=True)) == {
        "notifications"
    }
    assert not ContentType.objects.filter(
        app_label="incidents", model__in=["person", "deadline", "healthtarget", "apitoken"]
    ).exists()
    for role, permissions in ROLE_PERMISSIONS.items():
        held = {
            f"{app}.{codename}"
            for app, codename in Permission.objects.filter(group__name=role).values_list(
                "content_type__app_label", "codename"
            )
        }
        assert set(permissions) <= held, (role, set(permissions) - held)
