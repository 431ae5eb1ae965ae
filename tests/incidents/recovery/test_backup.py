"""Emergency backups with the real pg_dump, pg_restore and tar against this machine's PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from incidents.models import TimelineEntry
from incidents.recovery import services
from incidents.recovery.models import BackupArtefact, BackupDatabase, BackupRun
from tests.factories import UserFactory, open_incident, system

from .conftest import TRADES, scratch_databases, stored_files


def _run(**kwargs) -> BackupRun:
    run = services.backup_run_request(trigger=BackupRun.Trigger.COMMAND, enqueue=False, **kwargs)
    return services.backup_run_execute(run_id=run.pk)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_verified_backup_restores_with_the_same_row_counts_and_is_stored_hashed(
    trading_db, config_folder, backup_dirs
):
    user = UserFactory()
    incident = open_incident(reported_by=user, systems=("database",))
    run = _run(incident=incident, user=user)

    assert run.state == BackupRun.State.VERIFIED, run.error
    dump, archive = run.artefacts.order_by("kind")
    assert dump.kind == BackupArtefact.Kind.DATABASE and dump.state == BackupArtefact.State.VERIFIED
    assert dump.verification["row_counts"] == {"ops.Audit Log": 3, "public.empty_table": 0, "public.trades": TRADES}
    assert dump.verification["restored"] is True and dump.verification["toc_table_data"] == 3
    # The stored bytes are the bytes hashed and verified; the checksum file was written last.
    stored = backup_dirs / dump.storage_name
    assert stored.stat().st_size == dump.size_bytes and _sha256(stored) == dump.sha256
    assert (backup_dirs / f"{dump.storage_name}.sha256").read_text().split()[0] == dump.sha256
    assert archive.state == BackupArtefact.State.VERIFIED and archive.verification["entries"] >= 4
    assert _sha256(backup_dirs / archive.storage_name) == archive.sha256
    assert dump.captured_at is not None and dump.backup_s > 0 and dump.verify_s > 0
    assert scratch_databases() == [], "the scratch database is dropped after the restore"
    assert not any(Path(backup_dirs).rglob("*.partial"))

    # On the incident: the outcome on the timeline and the manifest as hashed evidence.
    entry = incident.timeline.filter(kind=TimelineEntry.Kind.EVIDENCE, data__backup_run=run.pk).last()
    assert entry.action.startswith(f"Emergency backup verified (run {run.pk}")
    assert f"3 tables, {TRADES + 3} rows: counts match" in entry.action
    evidence = run.evidence
    data = evidence.file.read()
    assert hashlib.sha256(data).hexdigest() == evidence.sha256 == run.manifest_sha256
    manifest = json.loads(data)
    assert {a["sha256"] for a in manifest["artefacts"]} == {dump.sha256, archive.sha256}
    assert manifest["artefacts"][0]["row_counts"]["public.trades"] == TRADES


def _pg_dump_that_truncates(tmp_path: Path) -> Path:
    """A pg_dump that exits 0 but delivers only 70% of the real dump (a disk or network hiccup)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pg_dump"
    script.write_text(
        "#!/bin/sh\n"
        'full=$(mktemp); /usr/bin/pg_dump "$@" > "$full" || exit $?\n'
        'head -c $(( $(stat -c %s "$full") * 7 / 10 )) "$full"; rm -f "$full"\n'
    )
    script.chmod(0o755)
    (bin_dir / "pg_restore").symlink_to("/usr/bin/pg_restore")
    return bin_dir


def test_a_truncated_dump_is_failed_not_verified_and_not_stored(settings, tmp_path, trading_db, backup_dirs):
    settings.TMT_BACKUP_PG_BIN_DIR = str(_pg_dump_that_truncates(tmp_path))
    user = UserFactory()
    incident = open_incident(reported_by=user, systems=("database",))
    run = _run(incident=incident, user=user)

    assert run.state == BackupRun.State.FAILED
    (dump,) = run.artefacts.all()
    assert dump.state == BackupArtefact.State.FAILED
    # pg_restore --list reads a dump cut short (its table of contents comes first): only the
    # restore into a scratch database finds the missing data.
    assert dump.error.startswith("The dump does not restore (pg_restore exit 1)"), dump.error
    assert "end of file" in dump.error
    assert dump.storage_name == "" and dump.sha256 == ""
    assert stored_files(backup_dirs) == [f"{run.location}/manifest.json"], "no dump is left in the backup location"
    assert scratch_databases() == []
    entry = incident.timeline.filter(data__backup_run=run.pk, data__state="failed").get()
    assert entry.action.startswith(f"Emergency backup FAILED (run {run.pk}")
    assert "Trading database: FAILED" in entry.action


def test_an_unreachable_database_fails_with_a_clear_message_and_the_rest_is_still_backed_up(
    trading_db, config_folder, backup_dirs
):
    port = _closed_port()
    BackupDatabase.objects.create(
        name="Execution DB", system=system("execution_engine"), host="127.0.0.1", port=port, dbname="x", user="postgres"
    )
    user = UserFactory()
    incident = open_incident(reported_by=user, systems=("execution_engine",))
    run = _run(incident=incident, user=user)

    assert run.state == BackupRun.State.FAILED
    states = {a.source_name: a for a in run.artefacts.all()}
    unreachable = states["Execution DB"]
    assert unreachable.state == BackupArtefact.State.FAILED
    assert unreachable.error.startswith(f"Cannot connect to Execution DB (127.0.0.1:{port}/x)")
    assert "refused" in unreachable.error.lower()
    assert states["Trading database"].state == BackupArtefact.State.VERIFIED
    assert states["TMT configuration"].state == BackupArtefact.State.VERIFIED
    entry = incident.timeline.filter(data__backup_run=run.pk, data__state="failed").get()
    assert f"Execution DB: FAILED — Cannot connect to Execution DB (127.0.0.1:{port}/x)" in entry.action


def test_a_missing_password_variable_fails_without_connecting(monkeypatch, trading_db, backup_dirs):
    monkeypatch.delenv("TMT_TEST_TRADING_DB_PASSWORD", raising=False)
    BackupDatabase.objects.filter(pk=trading_db.pk).update(password_env="TMT_TEST_TRADING_DB_PASSWORD")
    run = _run()
    (dump,) = run.artefacts.all()
    assert dump.state == BackupArtefact.State.FAILED
    assert "TMT_TEST_TRADING_DB_PASSWORD, which is not set" in dump.error


def test_a_full_backup_location_fails_and_leaves_nothing_marked_verified(trading_db, full_location):
    user = UserFactory()
    incident = open_incident(reported_by=user, systems=("database",))
    run = _run(incident=incident, user=user)

    assert run.state == BackupRun.State.FAILED
    (dump,) = run.artefacts.all()
    assert dump.state == BackupArtefact.State.FAILED
    assert dump.error == "Cannot write to the backup location: No space left on device.", dump.error
    assert not BackupArtefact.objects.filter(state=BackupArtefact.State.VERIFIED).exists()
    # The partial copy is removed, and no checksum file says it was finished.
    assert not [f for f in stored_files(full_location) if f.endswith((".dump", ".sha256"))]
    entry = incident.timeline.filter(data__backup_run=run.pk).last()
    assert "FAILED" in entry.action and "No space left on device" in entry.action


def test_the_command_backs_up_and_fails_loudly(trading_db, config_folder, capsys):
    user = UserFactory(username="priya")
    incident = open_incident(reported_by=user, systems=("database",))
    call_command("emergency_backup", incident=incident.reference, user="priya")
    out = capsys.readouterr().out
    assert "verified in" in out and "stored as" in out
    run = BackupRun.objects.get()
    assert run.trigger == BackupRun.Trigger.INCIDENT and run.incident == incident and run.requested_by == user
    assert run.state == BackupRun.State.VERIFIED

    BackupDatabase.objects.filter(pk=trading_db.pk).update(port=_closed_port())
    with pytest.raises(CommandError, match="FAILED: Trading database: Cannot connect to Trading database"):
        call_command("emergency_backup")
    with pytest.raises(CommandError, match="No incident TMT-INC-1970-01-01-001"):
        call_command("emergency_backup", incident="TMT-INC-1970-01-01-001")


def test_nothing_configured_is_refused_with_a_clear_message(db, backup_dirs):
    with pytest.raises(CommandError, match="No backup source is configured"):
        call_command("emergency_backup")
    assert not BackupRun.objects.exists()
