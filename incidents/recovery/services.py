"""Backup runs (request, execute, record) and the RPO check. Views, the command and tasks call these.

A run's artefacts are made in a local work folder under temporary names, verified there, and only
then copied into the backup storage; the stored copy is read back and must hash the same, and its
`.sha256` file is written last. An artefact row is marked verified after all of that, so a dump
cut short, a storage that filled up or a restore that failed can never show as a good backup.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from incidents.models import DetectionMethod, Incident, RecoveryPointObjective, SeverityLevel, TimelineEntry
from incidents.services.incident import evidence_attach, incident_open, timeline_record

from . import engine, selectors, tasks
from .models import BackupArtefact, BackupDatabase, BackupFolder, BackupRun, RpoBreach

log = logging.getLogger(__name__)

TEAM = "Backups"
BACKUP_USERNAME = "backup-monitor"


def backup_user():
    """The account scheduled runs and RPO incidents are recorded by (inactive: nobody logs in)."""
    user, created = get_user_model().objects.get_or_create(
        username=BACKUP_USERNAME, defaults={"first_name": "Backup", "last_name": "monitor", "is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _person(user) -> str:
    return user.get_full_name() or user.get_username()


# -- request ----------------------------------------------------------------------------------


@transaction.atomic
def backup_run_request(*, trigger: str, incident: Incident | None = None, user=None, enqueue: bool = True) -> BackupRun:
    """A run of every enabled source, queued on the `backups` queue (or run by the caller when
    enqueue is False: the command line, which must work with the broker down)."""
    databases = list(BackupDatabase.objects.filter(enabled=True).select_related("system"))
    folders = list(BackupFolder.objects.filter(enabled=True).select_related("system"))
    if not databases and not folders:
        raise ValidationError("No backup source is configured: add databases or folders under admin → Backups.")
    if incident is not None and incident.state in ("closed", "cancelled"):
        raise ValidationError("The incident is closed: start a backup from the command line instead.")
    run = BackupRun.objects.create(trigger=trigger, incident=incident, requested_by=user, step="queued")
    BackupArtefact.objects.bulk_create(
        [
            BackupArtefact(run=run, kind=BackupArtefact.Kind.DATABASE, source_name=d.name, database=d, system=d.system)
            for d in databases
        ]
        + [
            BackupArtefact(run=run, kind=BackupArtefact.Kind.FOLDER, source_name=f.name, folder=f, system=f.system)
            for f in folders
        ]
    )
    if incident is not None:
        who = _person(user) if user is not None else TEAM
        timeline_record(
            incident,
            kind=TimelineEntry.Kind.EVIDENCE,
            action=(
                f"Emergency backup requested by {who}: {_count(len(databases), 'database')}, "
                f"{_count(len(folders), 'folder')} (run {run.pk})."
            ),
            owner=user,
            owner_team="" if user else TEAM,
            data={"backup_run": run.pk, "state": run.state},
        )
    if enqueue:
        transaction.on_commit(lambda: _send(run.pk))
    return run


def _send(run_id: int) -> None:
    try:
        tasks.run_backup.delay(run_id)
    except Exception:  # noqa: BLE001 - the run stays queued and shows so; the scheduler re-sends
        log.warning("could not queue backup run %s", run_id, exc_info=True)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- execute ----------------------------------------------------------------------------------


def _progress(run: BackupRun, step: str) -> None:
    run.step = step[:300]
    run.progress_at = timezone.now()
    BackupRun.objects.filter(pk=run.pk).update(step=run.step, progress_at=run.progress_at)


def _claim(run_id: int) -> BackupRun | None:
    now = timezone.now()
    stale = now - settings.TMT_BACKUP_STALE_AFTER
    # A run left "running" by a killed worker (no progress for the stale window) is failed, not
    # resumed: its work files are gone with the process.
    BackupRun.objects.filter(pk=run_id, state=BackupRun.State.RUNNING, progress_at__lt=stale).update(
        state=BackupRun.State.FAILED, finished_at=now, error="Interrupted: the backup worker stopped mid-run."
    )
    claimed = BackupRun.objects.filter(pk=run_id, state=BackupRun.State.QUEUED).update(
        state=BackupRun.State.RUNNING, started_at=now, progress_at=now, step="starting"
    )
    if claimed != 1:
        return None
    return BackupRun.objects.select_related("incident", "requested_by").get(pk=run_id)


def backup_run_execute(*, run_id: int) -> BackupRun | None:
    """Run a queued backup: dump, archive, verify, store each artefact, then record the outcome.
    Not atomic on purpose: progress is committed as it goes, for the page that polls it."""
    run = _claim(run_id)
    if run is None:
        return None
    storage = storages["backups"]
    run.location = f"{run.started_at:%Y/%m/%d}/run-{run.pk}-{run.started_at:%H%M%S}"
    BackupRun.objects.filter(pk=run.pk).update(location=run.location)
    work = Path(settings.TMT_BACKUP_WORK_DIR) / f"run-{run.pk}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        for artefact in run.artefacts.select_related("database", "folder"):
            _execute_artefact(run, artefact, storage=storage, work=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _finish(run, storage=storage)


def _execute_artefact(run: BackupRun, artefact: BackupArtefact, *, storage, work: Path) -> None:
    artefact.state = BackupArtefact.State.RUNNING
    artefact.save(update_fields=["state"])
    stored_name = ""
    try:
        if artefact.kind == BackupArtefact.Kind.DATABASE:
            if artefact.database is None:
                raise engine.BackupError("The database connection was deleted after the run was requested.")
            made, verification, verify_s = _database(run, artefact, artefact.database, work=work)
            final = f"{run.location}/{slugify(artefact.source_name) or 'database'}.dump"
        else:
            if artefact.folder is None:
                raise engine.BackupError("The folder was deleted after the run was requested.")
            made, verification, verify_s = _folder(run, artefact, artefact.folder, work=work)
            final = f"{run.location}/{slugify(artefact.source_name) or 'folder'}.tar.gz"
        _progress(run, f"{artefact.source_name}: storing")
        store_started = time.monotonic()
        stored_name = _store(storage, final, made.path)
        _fsync(storage, stored_name)
        # Making and storing (with the flush to disk, as pg_dump -f does) is the backup's time;
        # reading the stored copy back is the verification's.
        store_s = time.monotonic() - store_started
        read_started = time.monotonic()
        with storage.open(stored_name, "rb") as stored:
            size, sha = engine.file_sha256(stored)
        if (size, sha) != (made.size_bytes, made.sha256):
            raise engine.BackupError(
                f"The stored copy differs from what was verified ({size} bytes, SHA-256 {sha[:12]}… "
                f"instead of {made.size_bytes} bytes, {made.sha256[:12]}…)."
            )
        read_s = time.monotonic() - read_started
        # The checksum file is written last: an artefact without one was never finished.
        checksum = storage.save(f"{stored_name}.sha256", ContentFile(f"{sha}  {Path(stored_name).name}\n".encode()))
        _fsync(storage, checksum)
        verification["stored_copy_sha256_matches"] = True
        artefact.state = BackupArtefact.State.VERIFIED
        artefact.storage_name = stored_name
        artefact.size_bytes = made.size_bytes
        artefact.sha256 = made.sha256
        artefact.captured_at = made.captured_at
        artefact.backup_s = round(made.seconds + store_s, 3)
        artefact.verify_s = round(verify_s + read_s, 3)
        artefact.verification = verification
        artefact.save()
    except (engine.BackupError, OSError) as exc:
        message = str(exc) if isinstance(exc, engine.BackupError) else _storage_error(exc)
        if stored_name:
            _discard(storage, stored_name)
        artefact.state = BackupArtefact.State.FAILED
        artefact.error = message
        artefact.storage_name = ""
        artefact.save(update_fields=["state", "error", "storage_name"])


def _storage_error(exc: OSError) -> str:
    return f"Cannot write to the backup location: {exc.strerror or exc}."


def _discard(storage, name: str) -> None:
    for leftover in (name, f"{name}.sha256"):
        try:
            if storage.exists(leftover):
                storage.delete(leftover)
        except OSError:
            log.warning("could not remove the partial backup %s", leftover, exc_info=True)


def _fsync(storage, name: str) -> None:
    """On a local storage, the artefact is on disk before it is called verified (pg_dump -f does
    the same for its own output); a remote storage has confirmed the upload when save returns."""
    try:
        path = storage.path(name)
    except NotImplementedError:
        return
    for target in (path, os.path.dirname(path)):
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _WorkFile(File):
    """A finished work file: FileSystemStorage moves it into place (a rename on the same file
    system) instead of copying it chunk by chunk; other storages upload it as a stream."""

    def temporary_file_path(self) -> str:
        return self.file.name


def _store(storage, name: str, path: Path) -> str:
    # The name is settled first, so a failed save removes only what it wrote, never another file.
    name = storage.get_available_name(name)
    try:
        with open(path, "rb") as handle:
            return storage.save(name, _WorkFile(handle, name=path.name))
    except OSError:
        # FileSystemStorage leaves what it had copied when the disk fills: remove it.
        _discard(storage, name)
        raise


def _database(run: BackupRun, artefact: BackupArtefact, database: BackupDatabase, *, work: Path):
    password = None
    if database.password_env:
        password = os.environ.get(database.password_env)
        if password is None:
            raise engine.BackupError(
                f"The password of {database.name} is read from the environment variable "
                f"{database.password_env}, which is not set on the backup worker."
            )
    target = engine.PgTarget(
        label=database.name,
        host=database.host,
        port=database.port,
        dbname=database.dbname,
        user=database.user,
        password=password,
    )
    _progress(run, f"{database.name}: dumping")
    with engine.exported_snapshot(target) as (conn, snapshot, captured_at):
        made = engine.dump_database(target, snapshot=snapshot, dest=work / f"{artefact.pk}.dump.partial")
        made.captured_at = captured_at
        BackupArtefact.objects.filter(pk=artefact.pk).update(size_bytes=made.size_bytes)
        _progress(run, f"{database.name}: verifying (pg_restore --list)")
        started = time.monotonic()
        verification = engine.verify_dump(
            made.path,
            source_conn=conn,
            target=target,
            progress=lambda step: _progress(run, f"{database.name}: verifying ({step})"),
        )
    return made, verification, time.monotonic() - started


def _folder(run: BackupRun, artefact: BackupArtefact, folder: BackupFolder, *, work: Path):
    _progress(run, f"{folder.name}: archiving")
    captured_at = timezone.now()
    made = engine.archive_folder(folder.name, folder.path, dest=work / f"{artefact.pk}.tar.gz.partial")
    made.captured_at = captured_at
    _progress(run, f"{folder.name}: verifying (tar -t)")
    started = time.monotonic()
    verification = engine.verify_archive(made.path)
    return made, verification, time.monotonic() - started


def _finish(run: BackupRun, *, storage) -> BackupRun:
    artefacts = list(run.artefacts.all())
    failed = [a for a in artefacts if a.state != BackupArtefact.State.VERIFIED]
    run.state = BackupRun.State.FAILED if failed else BackupRun.State.VERIFIED
    run.finished_at = timezone.now()
    run.step = "failed" if failed else "verified"
    run.error = " ".join(f"{a.source_name}: {a.error}" for a in failed)[:4000]
    manifest = json.dumps(_manifest(run, artefacts), indent=2).encode()
    try:
        storage.save(f"{run.location}/manifest.json", ContentFile(manifest))
    except OSError as exc:
        log.warning("could not store the manifest of backup run %s: %s", run.pk, exc)
    run.manifest_sha256 = hashlib.sha256(manifest).hexdigest()
    with transaction.atomic():
        # Conditional: a run the RPO check already failed as stuck (its worker seemed dead) stays
        # failed; its artefacts' own rows still say what was verified.
        finished = BackupRun.objects.filter(pk=run.pk, state=BackupRun.State.RUNNING).update(
            state=run.state,
            finished_at=run.finished_at,
            step=run.step,
            error=run.error,
            manifest_sha256=run.manifest_sha256,
        )
        if not finished:
            run.refresh_from_db()
            return run
        if run.incident_id:
            _record_on_incident(run, artefacts, failed, manifest)
    return run


def _manifest(run: BackupRun, artefacts: list[BackupArtefact]) -> dict:
    return {
        "run": run.pk,
        "state": run.state,
        "trigger": run.trigger,
        "incident": run.incident.reference if run.incident_id else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "location": run.location,
        "artefacts": [
            {
                "source": a.source_name,
                "kind": a.kind,
                "state": a.state,
                "stored_as": a.storage_name or None,
                "size_bytes": a.size_bytes,
                "sha256": a.sha256 or None,
                "captured_at": a.captured_at.isoformat() if a.captured_at else None,
                "backup_s": a.backup_s,
                "verify_s": a.verify_s,
                "verification": {k: v for k, v in a.verification.items() if k != "row_counts"},
                "row_counts": a.verification.get("row_counts"),
                "error": a.error or None,
            }
            for a in artefacts
        ],
    }


def artefact_summary(a: BackupArtefact) -> str:
    if a.state != BackupArtefact.State.VERIFIED:
        return f"{a.source_name}: FAILED — {a.error}"
    v = a.verification
    if a.kind == BackupArtefact.Kind.DATABASE:
        how = f"restored into a scratch database, {v.get('tables')} tables, {v.get('rows')} rows: counts match"
    else:
        how = f"tar -t: {v.get('entries')} entries"
    return f"{a.source_name}: {a.size_bytes / 1048576:.1f} MB, SHA-256 {a.sha256[:12]}… ({how})"


def _record_on_incident(run: BackupRun, artefacts: list[BackupArtefact], failed: list, manifest: bytes) -> None:
    took = f"{run.duration_s:.1f} s" if run.duration_s is not None else ""
    parts = "; ".join(artefact_summary(a) for a in artefacts)
    if failed:
        action = f"Emergency backup FAILED (run {run.pk}, {took}): {parts}. Nothing that failed is marked verified."
    else:
        action = f"Emergency backup verified (run {run.pk}, {took}): {parts}."
    timeline_record(
        run.incident,
        kind=TimelineEntry.Kind.EVIDENCE,
        action=action[:5000],
        owner_team=TEAM,
        data={"backup_run": run.pk, "state": run.state, "manifest_sha256": run.manifest_sha256},
    )
    # The evidence is the manifest (every artefact's size, SHA-256, location and verification),
    # not the dumps: those can be gigabytes, past the evidence limit, and copying them into media
    # in an emergency would double the disk they take. The hashes pin the stored artefacts.
    attachment = evidence_attach(
        incident=run.incident,
        uploaded=SimpleUploadedFile(f"backup-run-{run.pk}-manifest.json", manifest, content_type="application/json"),
        user=run.requested_by or backup_user(),
        description=f"Backup run {run.pk} ({run.get_state_display().lower()}): manifest of {run.location}",
    )
    run.evidence = attachment
    run.save(update_fields=["evidence"])


# -- scheduled backups -------------------------------------------------------------------------


def backup_schedule_due(*, now: datetime | None = None) -> BackupRun | None:
    """A scheduled run, unless one is already queued or running (a slow run is not doubled)."""
    now = now or timezone.now()
    busy = BackupRun.objects.filter(
        state__in=[BackupRun.State.QUEUED, BackupRun.State.RUNNING],
        created_at__gt=now - settings.TMT_BACKUP_STALE_AFTER,
    )
    if busy.exists():
        return None
    try:
        return backup_run_request(trigger=BackupRun.Trigger.SCHEDULED, enqueue=False)
    except ValidationError:
        return None


# -- RPO ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RpoOutcome:
    opened: list[str]
    cleared: list[str]


def rpo_check(*, now: datetime | None = None) -> RpoOutcome:
    """Compare each data class's RPO with the age of its systems' newest verified backups; a
    breach opens an incident (one per class while open), a recovery notes it there."""
    now = now or timezone.now()
    opened, cleared = [], []
    for status in selectors.rpo_classes(now=now):
        if status.measured and status.breached:
            if _rpo_breach_open(status, now=now):
                opened.append(status.rpo_class.name)
        elif status.measured and _rpo_breach_clear(status, now=now):
            cleared.append(status.rpo_class.name)
    return RpoOutcome(opened=opened, cleared=cleared)


def _breach_severity() -> SeverityLevel:
    return SeverityLevel.objects.get(level=settings.TMT_RPO_BREACH_SEVERITY)


@transaction.atomic
def _rpo_breach_open(status: selectors.RpoClassStatus, *, now: datetime) -> bool:
    rpo_class: RecoveryPointObjective = status.rpo_class
    if RpoBreach.objects.filter(rpo_class=rpo_class, cleared_at__isnull=True).exists():
        return False
    fingerprint = f"recovery:rpo:{rpo_class.pk}"
    incident = Incident.objects.filter(alert_fingerprint=fingerprint, state__in=selectors.OPEN_STATES).first()
    if incident is None:
        try:
            with transaction.atomic():
                incident = incident_open(
                    title=f"RPO breached: {rpo_class.name} ({status.detail})"[:200],
                    description=(
                        f"The newest verified backup of the {rpo_class.name.lower()} systems is older than "
                        f"their recovery point objective of {status.rpo_label}. {status.detail}. "
                        "Opened by the portal's RPO check."
                    ),
                    severity=_breach_severity(),
                    reported_by=backup_user(),
                    detection_method=DetectionMethod.AUTOMATED_ALERT,
                    affected_systems=status.systems,
                    opened_by_team=TEAM,
                    alert_fingerprint=fingerprint,
                )
        except IntegrityError:
            # Another checker opened it a moment ago.
            return False
    try:
        with transaction.atomic():
            RpoBreach.objects.create(rpo_class=rpo_class, detected_at=now, detail=status.detail, incident=incident)
    except IntegrityError:
        return False
    timeline_record(
        incident,
        kind=TimelineEntry.Kind.HEALTH,
        action=f"RPO breached: {rpo_class.name} allows {status.rpo_label}; {status.detail}.",
        owner_team=TEAM,
        data={"rpo_class": rpo_class.pk, "state": "breached"},
        at=now,
    )
    return True


@transaction.atomic
def _rpo_breach_clear(status: selectors.RpoClassStatus, *, now: datetime) -> bool:
    breach = RpoBreach.objects.select_for_update().filter(rpo_class=status.rpo_class, cleared_at__isnull=True).first()
    if breach is None:
        return False
    RpoBreach.objects.filter(pk=breach.pk).update(cleared_at=now)
    if breach.incident_id and breach.incident.state in selectors.OPEN_STATES:
        timeline_record(
            breach.incident,
            kind=TimelineEntry.Kind.HEALTH,
            action=f"RPO met again: {status.rpo_class.name}; {status.detail}. The incident stays open: resolve it.",
            owner_team=TEAM,
            data={"rpo_class": status.rpo_class.pk, "state": "met"},
            at=now,
        )
    return True


def backup_run_stale_fail(*, now: datetime | None = None) -> int:
    """Runs a dead worker left queued or running past the stale window are failed, visibly."""
    now = now or timezone.now()
    cutoff = now - settings.TMT_BACKUP_STALE_AFTER
    interrupted = BackupRun.objects.filter(state=BackupRun.State.RUNNING, progress_at__lt=cutoff).update(
        state=BackupRun.State.FAILED,
        finished_at=now,
        step="failed",
        error="Interrupted: the backup worker stopped mid-run.",
    )
    never_taken = BackupRun.objects.filter(state=BackupRun.State.QUEUED, created_at__lt=cutoff).update(
        state=BackupRun.State.FAILED,
        finished_at=now,
        step="failed",
        error="Never started: no worker consumes the backups queue.",
    )
    return interrupted + never_taken
