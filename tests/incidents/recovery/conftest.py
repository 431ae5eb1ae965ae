"""A real source database to back up, a backup location and work folder per test."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from django.core.files.storage import FileSystemStorage
from psycopg import sql

from incidents.recovery.models import BackupDatabase, BackupFolder
from tests.factories import system

SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
TRADES = 50_000


def _admin() -> psycopg.Connection:
    return psycopg.connect(**SERVER, dbname="postgres", autocommit=True)


@pytest.fixture
def source_db(postgres):
    """A small trading database: rows in a few tables, an empty one, a quoted name in a schema."""
    name = f"tmt_backup_src_{uuid.uuid4().hex[:10]}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(**SERVER, dbname=name, autocommit=True) as conn:
            conn.execute("CREATE TABLE trades (id bigserial PRIMARY KEY, symbol text NOT NULL, qty integer, note text)")
            conn.execute(
                "INSERT INTO trades (symbol, qty, note) SELECT 'EURUSD', g, md5(g::text) FROM generate_series(1, %s) g",
                [TRADES],
            )
            conn.execute(
                "CREATE TABLE empty_table (id integer);"
                'CREATE SCHEMA ops; CREATE TABLE ops."Audit Log" (at timestamptz DEFAULT now(), what text);'
                "INSERT INTO ops.\"Audit Log\" (what) VALUES ('a'), ('b'), ('c');"
            )
        yield name
    finally:
        with _admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def scratch_databases() -> list[str]:
    with _admin() as admin:
        return [
            row[0]
            for row in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'tmt\\_backup\\_verify%'")
        ]


@pytest.fixture
def backup_dirs(settings, tmp_path):
    location = tmp_path / "backups"
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}},
    }
    settings.TMT_BACKUP_WORK_DIR = tmp_path / "work"
    settings.TMT_BACKUP_SCRATCH_PREFIX = "tmt_backup_verify"
    settings.TMT_BACKUP_CONNECT_TIMEOUT = 3
    return location


@pytest.fixture
def trading_db(source_db, backup_dirs) -> BackupDatabase:
    return BackupDatabase.objects.create(
        name="Trading database",
        system=system("database"),
        host=SERVER["host"],
        port=SERVER["port"],
        dbname=source_db,
        user=SERVER["user"],
    )


@pytest.fixture
def config_folder(tmp_path, backup_dirs) -> BackupFolder:
    folder = tmp_path / "etc-tmt"
    (folder / "agents").mkdir(parents=True)
    (folder / "agents" / "circuit_breaker.yaml").write_text("max_drawdown: 0.05\n")
    (folder / "broker.yaml").write_text("venue: LMAX\n")
    return BackupFolder.objects.create(
        name="TMT configuration", kind=BackupFolder.Kind.CONFIGURATION, path=str(folder), system=system("dashboard")
    )


def stored_files(location: Path) -> list[str]:
    if not location.exists():
        return []
    return sorted(str(p.relative_to(location)) for p in location.rglob("*") if p.is_file())


class QuotaStorage(FileSystemStorage):
    """A backup location with room for `limit` bytes: a write past it fails as a full disk does."""

    limit = 64 * 1024

    def _save(self, name, content):
        path = Path(self.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with open(path, "xb") as out:
            content.seek(0)
            while chunk := content.read(8192):
                if written + len(chunk) > self.limit:
                    out.write(chunk[: self.limit - written])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                out.write(chunk)
                written += len(chunk)
        return name


@pytest.fixture
def full_location(settings, tmp_path, backup_dirs):
    """A 64 KiB backup location: a real tmpfs where this process may mount one, else a storage
    that fails the same way (OSError ENOSPC) past 64 KiB."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=False).returncode == 0
    )
    backend = "django.core.files.storage.FileSystemStorage" if mounted else f"{__name__}.QuotaStorage"
    settings.STORAGES = {**settings.STORAGES, "backups": {"BACKEND": backend, "OPTIONS": {"location": str(mount)}}}
    try:
        yield mount
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=False)
