"""Reads: the knowledge base's search, a runbook's history, the incident page's runbooks."""

from __future__ import annotations

import difflib
from typing import Any

from django.db.models import Prefetch, Q, QuerySet
from django.urls import reverse

from incidents.models import Incident, System
from incidents.runbooks.models import Runbook, RunbookRevision, RunbookRun, RunbookStep, StepRecord


def runbook_search(*, q: str = "", system_key: str = "") -> QuerySet[Runbook]:
    """Runbooks whose title or current steps contain `q` (case-insensitive; trigram-indexed on
    PostgreSQL like the incident search, see migration 0002)."""
    runbooks = Runbook.objects.select_related("system", "current_revision")
    if system_key:
        runbooks = runbooks.filter(system__key=system_key)
    q = q.strip()
    if q:
        # A subquery on the steps, not a join: each column's trigram index answers its part
        # (a bitmap OR), and no DISTINCT over the joined rows is needed.
        matching_revisions = RunbookStep.objects.filter(
            Q(title__icontains=q) | Q(instructions__icontains=q) | Q(commands__icontains=q)
        ).values("revision_id")
        runbooks = runbooks.filter(Q(title__icontains=q) | Q(current_revision_id__in=matching_revisions))
    return runbooks.order_by("system__name", "procedure", "title")


def revision_steps_text(revision: RunbookRevision) -> list[str]:
    lines: list[str] = []
    for step in revision.steps.all():
        lines.append(f"{step.position}. {step.title}")
        lines.extend(f"   {line}" for line in step.instructions.splitlines())
        lines.extend(f"   $ {line}" for line in step.commands.splitlines())
    return lines


def revision_diff(revision: RunbookRevision) -> list[tuple[str, str]]:
    """The revision against the one before it, as (css class, line) pairs of a unified diff."""
    previous = (
        RunbookRevision.objects.filter(runbook_id=revision.runbook_id, number__lt=revision.number)
        .order_by("-number")
        .first()
    )
    before = revision_steps_text(previous) if previous else []
    after = revision_steps_text(revision)
    old_name = f"r{previous.number}" if previous else "(none)"
    lines = difflib.unified_diff(before, after, fromfile=old_name, tofile=f"r{revision.number}", lineterm="")
    classes = {"+": "diff-add", "-": "diff-del", "@": "diff-hunk"}
    return [(classes.get(line[:1], "") if not line.startswith(("+++", "---")) else "diff-file", line) for line in lines]


def runbook_past_incidents(runbook: Runbook) -> list[RunbookRun]:
    """The incidents this runbook was used on, newest first, with how far each run got."""
    return list(
        RunbookRun.objects.filter(runbook=runbook)
        .select_related("incident__severity", "revision", "started_by")
        .prefetch_related("records", "revision__steps")
        .order_by("-started_at")
    )


def run_steps(run: RunbookRun) -> list[dict[str, Any]]:
    """The run's frozen steps, each with its record (or None) and whether it is the next one."""
    records = {r.step_id: r for r in run.records.select_related("by", "restored_system")}
    rows: list[dict[str, Any]] = []
    next_found = False
    for step in run.revision.steps.all():
        record = records.get(step.pk)
        is_next = record is None and not next_found
        next_found = next_found or is_next
        rows.append({"step": step, "record": record, "is_next": is_next})
    return rows


def next_open_step(run: RunbookRun) -> RunbookStep | None:
    recorded = StepRecord.objects.filter(run=run).values("step_id")
    return run.revision.steps.exclude(pk__in=recorded).order_by("position").first()


def runbooks_for_incident(incident: Incident) -> list[Runbook]:
    """Runbooks with an approved revision: the incident's affected systems' first, then the
    general ones (no system), then the rest."""
    affected = set(incident.affected_systems.values_list("pk", flat=True))
    runbooks = list(Runbook.objects.filter(current_revision__isnull=False).select_related("system"))

    def rank(runbook: Runbook) -> tuple[int, str, str]:
        if runbook.system_id in affected:
            group = 0
        elif runbook.system_id is None:
            group = 1
        else:
            group = 2
        return (group, runbook.system.name if runbook.system else "", runbook.title)

    return sorted(runbooks, key=rank)


def incident_page_context(incident: Incident) -> dict[str, Any]:
    """The incident page only learns where its runbooks panel loads from (no query)."""
    return {"runbooks_panel_url": reverse("runbooks:incident_panel", args=[incident.reference])}


def incident_runbook_context(incident: Incident) -> dict[str, Any]:
    runs = list(
        RunbookRun.objects.filter(incident=incident)
        .select_related("runbook", "revision", "started_by")
        .prefetch_related(Prefetch("revision__steps", queryset=RunbookStep.objects.order_by("position")))
    )
    started = {run.runbook_id for run in runs}
    offered = [rb for rb in runbooks_for_incident(incident) if rb.pk not in started]
    affected = set(incident.affected_systems.values_list("pk", flat=True))
    return {
        "runbook_runs": [{"run": run, "steps": run_steps(run)} for run in runs],
        "runbooks_offered": offered,
        "runbooks_affected_ids": affected,
        "restore_systems": restore_systems(incident),
    }


def restore_systems(incident: Incident) -> list[System]:
    """The systems a restoration step may name: the incident's affected ones first."""
    affected = set(incident.affected_systems.values_list("pk", flat=True))
    return sorted(System.objects.all(), key=lambda s: (s.pk not in affected, s.name))
