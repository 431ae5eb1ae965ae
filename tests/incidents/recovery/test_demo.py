"""The demo's backup sources: the portal's own database, its deploy/ folder and a log folder."""

from __future__ import annotations

from incidents.devtools.demo_backups import DEMO_DATABASE, ensure_demo_backup_sources
from incidents.recovery import services
from incidents.recovery.models import BackupArtefact, BackupDatabase, BackupRun


def test_the_demo_backs_up_the_portals_own_database_verified(settings, tmp_path, postgres, backup_dirs):
    settings.VAR_DIR = tmp_path / "var"
    assert ensure_demo_backup_sources() == [DEMO_DATABASE, "Portal configuration (demo)", "Portal logs (demo)"]
    assert ensure_demo_backup_sources() == [], "seeding twice adds nothing"
    database = BackupDatabase.objects.get()
    assert database.dbname == settings.DATABASES["default"]["NAME"] and database.system.key == "database"

    run = services.backup_run_request(trigger=BackupRun.Trigger.COMMAND, enqueue=False)
    run = services.backup_run_execute(run_id=run.pk)

    assert run.state == BackupRun.State.VERIFIED, run.error
    dump = run.artefacts.get(kind=BackupArtefact.Kind.DATABASE)
    # The portal's seeded policy (committed by the migrations) came back row for row.
    assert dump.verification["row_counts"]["public.incidents_recoverypointobjective"] == 4
    assert dump.verification["tables"] > 50
