"""The demo's backup sources: the portal's own database standing in for the trading database,
its deploy/ folder for the configuration, and a log folder under var/."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from incidents.models import System
from incidents.recovery.models import BackupDatabase, BackupFolder

DEMO_DATABASE = "Trading database (demo: the portal's own)"


def ensure_demo_backup_sources() -> list[str]:
    """Idempotent; the database only on PostgreSQL (pg_dump cannot read SQLite). Answers the
    names of the sources it created."""
    created = []
    systems = System.objects.in_bulk(field_name="key")
    db = settings.DATABASES["default"]
    if "postgresql" in db["ENGINE"]:
        _, made = BackupDatabase.objects.get_or_create(
            name=DEMO_DATABASE,
            defaults={
                "system": systems.get("database"),
                "host": db.get("HOST") or "127.0.0.1",
                "port": int(db.get("PORT") or 5432),
                "dbname": db["NAME"],
                "user": db.get("USER") or "postgres",
                # A password in DATABASE_URL is not copied here: put it in the backup worker's
                # environment and name the variable in the admin.
                "password_env": "",
            },
        )
        if made:
            created.append(DEMO_DATABASE)
    logs = Path(settings.VAR_DIR) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name, kind, path, system in [
        ("Portal configuration (demo)", BackupFolder.Kind.CONFIGURATION, settings.BASE_DIR / "deploy", "dashboard"),
        ("Portal logs (demo)", BackupFolder.Kind.LOGS, logs, "monitoring"),
    ]:
        _, made = BackupFolder.objects.get_or_create(
            name=name, defaults={"kind": kind, "path": str(path), "system": systems.get(system)}
        )
        if made:
            created.append(name)
    return created
