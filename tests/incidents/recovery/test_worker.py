"""The incident page's emergency backup, run by a real Celery worker consuming the backups queue."""

from __future__ import annotations

import contextlib

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connections
from django.urls import reverse

from incidents.recovery.models import BackupFolder, BackupRun
from tests.celery_fixtures import wait_for
from tests.factories import UserFactory, open_incident, system
from tmt_ir.celery import app

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_the_backups_queue_runs_an_emergency_backup_requested_on_the_incident_page(client, tmp_path, backup_dirs):
    assert settings.CELERY_TASK_ROUTES["incidents.recovery.tasks.run_backup"] == {"queue": "backups"}
    from incidents.roles import ensure_role_groups

    ensure_role_groups()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "risk.yaml").write_text("limit: 5\n")
    BackupFolder.objects.create(
        name="Risk config", kind=BackupFolder.Kind.CONFIGURATION, path=str(tmp_path / "etc"), system=system("dashboard")
    )
    user = UserFactory()
    user.groups.add(Group.objects.get(name="Risk Manager"))
    client.force_login(user)
    incident = open_incident(reported_by=user, systems=("dashboard",))
    with app.connection_for_write() as conn, contextlib.suppress(Exception):
        conn.default_channel.queue_purge("backups")

    # Only the backups queue is consumed: the run can only be done if it was routed there.
    with start_worker(app, pool="solo", queues=["backups"], perform_ping_check=False, loglevel="WARNING"):
        client.post(reverse("recovery:incident_start", args=[incident.reference]))
        run = BackupRun.objects.get()
        wait_for(
            lambda: BackupRun.objects.get(pk=run.pk).finished, timeout=30, what="the backups worker to finish the run"
        )
    connections.close_all()
    run.refresh_from_db()
    assert run.state == BackupRun.State.VERIFIED, run.error
    page = client.get(incident.get_absolute_url()).content.decode()
    assert f"backup-run-{run.pk}" in page and "Emergency backup verified" in page
    assert f"backup-run-{run.pk}-manifest.json" in page  # attached as evidence
