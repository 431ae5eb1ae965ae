"""Reads: each system's recovery point (the age of its newest verified backup) against its RPO
class, per system and per class; an incident's backup runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Max, Value
from django.utils import timezone

from incidents.models import OPEN_STATES, Incident, RecoveryPointObjective, System
from incidents.models.policy import format_duration

from .models import BackupArtefact, BackupDatabase, BackupFolder, BackupRun, RpoBreach

__all__ = ["OPEN_STATES", "RpoClassStatus", "SystemRpo", "incident_page_context", "rpo_classes", "system_rpo_rows"]


@dataclass(frozen=True)
class SystemRpo:
    system: System
    sources: int  # enabled backup sources (databases and folders) of the system
    recovery_point: datetime | None  # the oldest of its sources' newest verified captures
    never: list[str]  # sources without any verified backup
    now: datetime

    @property
    def rpo(self) -> timedelta | None:
        return self.system.rpo_class.rpo if self.system.rpo_class_id else None

    @property
    def measured(self) -> bool:
        return self.sources > 0 and self.rpo is not None

    @property
    def age(self) -> timedelta | None:
        if self.never or self.recovery_point is None:
            return None
        return max(timedelta(0), self.now - self.recovery_point)

    @property
    def breached(self) -> bool:
        # At the RPO exactly is still within it ("at most this much data lost").
        if not self.measured:
            return False
        return self.age is None or self.age > self.rpo

    @property
    def age_label(self) -> str:
        if not self.measured:
            return "not backed up by the portal" if self.sources == 0 else "no RPO class"
        if self.age is None:
            return f"never verified ({', '.join(self.never)})" if self.never else "never verified"
        return format_duration(self.age)

    @property
    def detail(self) -> str:
        if self.age is None:
            return f"{self.system.name} has no verified backup of {', '.join(self.never) or 'its sources'}"
        return f"the newest verified backup of {self.system.name} is {format_duration(self.age)} old"


@dataclass(frozen=True)
class RpoClassStatus:
    rpo_class: RecoveryPointObjective
    rows: list[SystemRpo]

    @property
    def systems(self) -> list[System]:
        return [row.system for row in self.rows if row.measured]

    @property
    def measured(self) -> bool:
        return any(row.measured for row in self.rows)

    @property
    def breached(self) -> bool:
        return any(row.breached for row in self.rows)

    @property
    def worst(self) -> SystemRpo | None:
        measured = [row for row in self.rows if row.measured]
        if not measured:
            return None
        # Never verified first, then the oldest.
        return max(measured, key=lambda r: (r.age is None, r.age or timedelta(0)))

    @property
    def rpo_label(self) -> str:
        return format_duration(self.rpo_class.rpo)

    @property
    def detail(self) -> str:
        worst = self.worst
        return worst.detail if worst else "no system of this class is backed up by the portal"


def system_rpo_rows(*, systems: Iterable[System] | None = None, now: datetime | None = None) -> list[SystemRpo]:
    """Given systems should come with their rpo_class loaded (select_related)."""
    now = now or timezone.now()
    if systems is None:
        systems = System.objects.select_related("rpo_class")
    systems = list(systems)
    ids = [s.pk for s in systems]
    sources: dict[int, list[tuple[str, int, str]]] = {s: [] for s in ids}
    databases = BackupDatabase.objects.filter(enabled=True, system__in=ids).annotate(source_kind=Value("database"))
    folders = BackupFolder.objects.filter(enabled=True, system__in=ids).annotate(source_kind=Value("folder"))
    # One query for both kinds (the report page counts its queries).
    for kind, pk, system_id, name in databases.values_list("source_kind", "pk", "system", "name").union(
        folders.values_list("source_kind", "pk", "system", "name"), all=True
    ):
        sources[system_id].append((kind, pk, name))
    newest: dict[tuple[str, int], datetime] = {}
    # As of `now`: a report asks what could have been restored when the incident began.
    verified = BackupArtefact.objects.filter(state=BackupArtefact.State.VERIFIED, system__in=ids, captured_at__lte=now)
    for row in verified.order_by().values("database", "folder").annotate(last=Max("captured_at")):
        if row["database"]:
            newest[("database", row["database"])] = row["last"]
        if row["folder"]:
            newest[("folder", row["folder"])] = row["last"]
    rows = []
    for system in systems:
        points = [newest.get((kind, pk)) for kind, pk, _ in sources[system.pk]]
        never = [name for (kind, pk, name) in sources[system.pk] if newest.get((kind, pk)) is None]
        known = [p for p in points if p is not None]
        rows.append(
            SystemRpo(
                system=system,
                sources=len(sources[system.pk]),
                recovery_point=min(known) if known else None,
                never=never,
                now=now,
            )
        )
    return rows


def rpo_classes(*, now: datetime | None = None) -> list[RpoClassStatus]:
    rows = system_rpo_rows(now=now)
    by_class: dict[int, list[SystemRpo]] = {}
    for row in rows:
        if row.system.rpo_class_id:
            by_class.setdefault(row.system.rpo_class_id, []).append(row)
    return [RpoClassStatus(rpo_class=c, rows=by_class.get(c.pk, [])) for c in RecoveryPointObjective.objects.all()]


def open_breaches() -> list[RpoBreach]:
    return list(RpoBreach.objects.filter(cleared_at__isnull=True).select_related("rpo_class", "incident"))


def recent_runs(*, limit: int = 20) -> list[BackupRun]:
    return list(BackupRun.objects.select_related("incident", "requested_by").prefetch_related("artefacts")[:limit])


def incident_runs(incident: Incident) -> list[BackupRun]:
    return list(incident.backup_runs.select_related("requested_by").prefetch_related("artefacts"))


def incident_report_context(incident: Incident) -> dict:
    """The report's part: what a restore could have brought back when the incident began (the
    affected systems' recovery points then, against their RPO), and the backups taken during it."""
    return {
        "recovery_points": system_rpo_rows(systems=incident.affected_systems.all(), now=incident.started_at),
        "backup_runs": list(incident.backup_runs.all()),
    }


def incident_page_context(incident: Incident) -> dict:
    """The incident page's part (hooks.incident_page_context): the affected systems' recovery
    points and this incident's backup runs."""
    return {
        "recovery_rpo": system_rpo_rows(systems=incident.affected_systems.select_related("rpo_class")),
        "recovery_runs": incident_runs(incident),
    }
