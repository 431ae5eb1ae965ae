"""The backup tools themselves: pg_dump, pg_restore and tar run as subprocesses, their output
streamed through SHA-256 into a work file. No models here: services.py records what happens.

Every failure is a BackupError whose message is meant for the incident's timeline.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from django.conf import settings
from psycopg import sql

CHUNK = 1 << 20
# How much of a tool's stderr goes into a failure message.
STDERR_KEPT = 600
# The user tables whose rows are counted in the source and in the scratch restore.
TABLES_SQL = """
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
    ORDER BY 1, 2
"""


class BackupError(Exception):
    """A failure explained in one sentence for the timeline."""


@dataclass(frozen=True)
class PgTarget:
    label: str
    host: str
    port: int
    dbname: str
    user: str
    password: str | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"

    def env(self) -> dict[str, str]:
        # The password reaches the tools through their environment, never their command line
        # (which any local user can read in ps).
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGCONNECT_TIMEOUT"] = str(int(settings.TMT_BACKUP_CONNECT_TIMEOUT))
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def connect(self, *, dbname: str | None = None, autocommit: bool = False) -> psycopg.Connection:
        try:
            return psycopg.connect(
                host=self.host,
                port=self.port,
                dbname=dbname or self.dbname,
                user=self.user,
                password=self.password or None,
                connect_timeout=int(settings.TMT_BACKUP_CONNECT_TIMEOUT),
                autocommit=autocommit,
                application_name="tmt-backup",
            )
        except psycopg.OperationalError as exc:
            raise BackupError(
                f"Cannot connect to {self.label} ({self.host}:{self.port}/{dbname or self.dbname}): {_first_line(exc)}"
            ) from exc

    def conninfo_args(self, dbname: str | None = None) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", self.user, "-d", dbname or self.dbname]


@dataclass
class Artefact:
    path: Path
    size_bytes: int
    sha256: str
    seconds: float
    captured_at: datetime | None = None
    details: dict = field(default_factory=dict)


def tool(name: str) -> str:
    folder = settings.TMT_BACKUP_PG_BIN_DIR if name.startswith("pg_") else ""
    found = str(Path(folder) / name) if folder else shutil.which(name)
    if not found or not Path(found).exists():
        raise BackupError(f"{name} is not installed on the backup worker (looked in {folder or 'PATH'}).")
    return found


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text[-STDERR_KEPT:]


def stream_to_file(args: list[str], *, env: dict[str, str], dest: Path, what: str) -> tuple[int, str, int, str]:
    """Run a tool writing to stdout into `dest`, hashing as it goes: (size, sha256, exit code, stderr).

    One pass: the bytes are hashed while written, not read back afterwards."""
    digest = hashlib.sha256()
    size = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=env)  # noqa: S603 - fixed tools
        try:
            with open(dest, "wb") as out:
                while chunk := proc.stdout.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except OSError as exc:
            proc.kill()
            proc.wait()
            raise BackupError(f"Cannot write {what} to the work folder {dest.parent}: {exc.strerror or exc}") from exc
        finally:
            proc.stdout.close()
        try:
            code = proc.wait(timeout=settings.TMT_BACKUP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            raise BackupError(f"{what} took longer than {settings.TMT_BACKUP_TIMEOUT_SECONDS} s.") from exc
        err.seek(0)
        stderr = _tail(err.read())
    return size, digest.hexdigest(), code, stderr


def run_tool(args: list[str], *, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    try:
        done = subprocess.run(  # noqa: S603 - fixed tools, no shell
            args, env=env, capture_output=True, timeout=settings.TMT_BACKUP_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"{Path(args[0]).name} took longer than {settings.TMT_BACKUP_TIMEOUT_SECONDS} s.") from exc
    return done.returncode, done.stdout.decode("utf-8", "replace"), _tail(done.stderr)


# -- databases --------------------------------------------------------------------------------


@contextlib.contextmanager
def exported_snapshot(target: PgTarget) -> Iterator[tuple[psycopg.Connection, str, datetime]]:
    """A read-only REPEATABLE READ transaction whose snapshot pg_dump dumps (--snapshot), so the
    rows counted in it are exactly the rows in the dump, however busy the database is."""
    conn = target.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SELECT pg_export_snapshot(), now()")
            snapshot, captured_at = cur.fetchone()
        yield conn, snapshot, captured_at
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        conn.close()


def dump_database(target: PgTarget, *, snapshot: str, dest: Path) -> Artefact:
    started = time.monotonic()
    args = [tool("pg_dump"), "-Fc", f"--snapshot={snapshot}", "--no-password", *target.conninfo_args()]
    size, sha, code, stderr = stream_to_file(args, env=target.env(), dest=dest, what=f"the dump of {target.label}")
    if code != 0:
        raise BackupError(f"pg_dump of {target.label} ({target.where}) failed (exit {code}): {stderr or 'no message'}")
    if size == 0:
        raise BackupError(f"pg_dump of {target.label} wrote nothing.")
    return Artefact(path=dest, size_bytes=size, sha256=sha, seconds=time.monotonic() - started)


def count_rows(conn: psycopg.Connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    with conn.cursor() as cur:
        cur.execute(TABLES_SQL)
        tables = cur.fetchall()
        for schema, table in tables:
            cur.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
            counts[f"{schema}.{table}"] = cur.fetchone()[0]
    return counts


def list_dump(path: Path) -> int:
    """pg_restore --list: the archive's table of contents reads; answers its TABLE DATA entries."""
    code, out, err = run_tool([tool("pg_restore"), "--list", str(path)])
    if code != 0:
        raise BackupError(f"pg_restore --list cannot read the dump (exit {code}): {err or 'no message'}")
    return sum(1 for line in out.splitlines() if " TABLE DATA " in line)


def scratch_server(target: PgTarget) -> PgTarget:
    """Where verification restores: TMT_BACKUP_SCRATCH_DATABASE_URL, else the source's own server."""
    url = settings.TMT_BACKUP_SCRATCH_DATABASE
    if not url:
        return target
    return PgTarget(
        label="the scratch server",
        host=url.get("HOST") or "127.0.0.1",
        port=int(url.get("PORT") or 5432),
        dbname=url.get("NAME") or "postgres",
        user=url.get("USER") or "postgres",
        password=url.get("PASSWORD") or None,
    )


def verify_dump(
    path: Path, *, source_conn: psycopg.Connection, target: PgTarget, progress: Callable[[str], None]
) -> dict:
    """pg_restore --list, then a restore into a scratch database whose per-table row counts must
    equal the source's in the dump's snapshot. The scratch database is dropped afterwards."""
    entries = list_dump(path)
    progress("restoring into a scratch database")
    server = scratch_server(target)
    scratch = f"{settings.TMT_BACKUP_SCRATCH_PREFIX}_{uuid.uuid4().hex[:12]}"
    source_counts: dict[str, int] = {}
    source_error: list[BaseException] = []

    def count_source() -> None:
        # Counted while the restore runs: the two use different servers' CPUs, or at least
        # different processes, and the snapshot makes the count independent of timing.
        try:
            source_counts.update(count_rows(source_conn))
        except BaseException as exc:  # noqa: BLE001 - reported below
            source_error.append(exc)

    admin = server.connect(dbname=server.dbname if server is not target else "postgres", autocommit=True)
    counter = threading.Thread(target=count_source, name="backup-source-count")
    counter.start()
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        try:
            code, _, err = run_tool(
                [
                    tool("pg_restore"),
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    f"--jobs={settings.TMT_BACKUP_RESTORE_JOBS}",
                    "--no-password",
                    *server.conninfo_args(scratch),
                    str(path),
                ],
                env=server.env(),
            )
            if code != 0:
                raise BackupError(f"The dump does not restore (pg_restore exit {code}): {err or 'no message'}")
            with server.connect(dbname=scratch, autocommit=True) as restored:
                restored_counts = count_rows(restored)
        finally:
            with admin.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    finally:
        admin.close()
        counter.join()
    if source_error:
        raise BackupError(f"Cannot count the source's rows: {_first_line(source_error[0])}")
    mismatched = {
        table: {"source": source_counts.get(table), "restored": restored_counts.get(table)}
        for table in sorted(set(source_counts) | set(restored_counts))
        if source_counts.get(table) != restored_counts.get(table)
    }
    if mismatched:
        shown = ", ".join(f"{t}: {c['source']} vs {c['restored']}" for t, c in list(mismatched.items())[:5])
        raise BackupError(f"Row counts differ after a restore (source vs restored): {shown}")
    return {
        "toc_table_data": entries,
        "tables": len(source_counts),
        "rows": sum(source_counts.values()),
        "row_counts": source_counts,
        "restored": True,
    }


# -- folders ----------------------------------------------------------------------------------


def archive_folder(label: str, folder: str, *, dest: Path) -> Artefact:
    path = Path(folder)
    if not path.is_absolute() or not path.is_dir():
        raise BackupError(f"The folder of {label} ({folder}) does not exist or is not a folder.")
    started = time.monotonic()
    args = [tool("tar"), "-czf", "-", "--warning=no-file-changed", "-C", str(path.parent), path.name]
    size, sha, code, stderr = stream_to_file(args, env=dict(os.environ), dest=dest, what=f"the archive of {label}")
    # GNU tar's exit 1 is "a file changed while being read": normal for a log being written.
    if code not in (0, 1):
        raise BackupError(f"tar of {label} ({folder}) failed (exit {code}): {stderr or 'no message'}")
    return Artefact(path=dest, size_bytes=size, sha256=sha, seconds=time.monotonic() - started)


def verify_archive(path: Path) -> dict:
    """tar -t reads the whole gzip stream: a truncated or corrupt archive fails here."""
    code, out, err = run_tool([tool("tar"), "-tzf", str(path)])
    if code != 0:
        raise BackupError(f"tar -t cannot read the archive (exit {code}): {err or 'no message'}")
    entries = [line for line in out.splitlines() if line]
    if not entries:
        raise BackupError("The archive is empty.")
    return {"entries": len(entries)}


def file_sha256(opened) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := opened.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()
