"""The backups page (recovery points per data class and system, recent runs), the emergency
backup action of the incident page and its polled progress fragment."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from incidents.models import Incident

from . import selectors, services
from .models import RUN_BACKUP_PERMISSION, VIEW_BACKUPS_PERMISSION, BackupRun

# How often the progress fragment asks again while a run is going.
PROGRESS_POLL_SECONDS = 2


@require_GET
@permission_required(VIEW_BACKUPS_PERMISSION, raise_exception=True)
def backups_page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "recovery/backups.html",
        {
            "classes": selectors.rpo_classes(),
            "breaches": selectors.open_breaches(),
            "runs": selectors.recent_runs(),
            "poll_seconds": PROGRESS_POLL_SECONDS,
        },
    )


def _start(request: HttpRequest, *, incident: Incident | None) -> BackupRun | None:
    try:
        run = services.backup_run_request(
            trigger=BackupRun.Trigger.INCIDENT if incident else BackupRun.Trigger.COMMAND,
            incident=incident,
            user=request.user,
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return None
    messages.success(request, f"Backup run {run.pk} queued: its progress shows below.")
    return run


@require_POST
@permission_required(RUN_BACKUP_PERMISSION, raise_exception=True)
def incident_backup_start(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident, reference=reference)
    _start(request, incident=incident)
    return redirect(f"{incident.get_absolute_url()}#backups")


@require_POST
@permission_required(RUN_BACKUP_PERMISSION, raise_exception=True)
def backup_start(request: HttpRequest) -> HttpResponse:
    _start(request, incident=None)
    return redirect("recovery:backups")


@require_GET
@permission_required(VIEW_BACKUPS_PERMISSION, raise_exception=True)
def run_progress(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(BackupRun.objects.prefetch_related("artefacts"), pk=run_id)
    return render(request, "recovery/_run_progress.html", {"run": run, "poll_seconds": PROGRESS_POLL_SECONDS})


@require_GET
@permission_required(VIEW_BACKUPS_PERMISSION, raise_exception=True)
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(
        BackupRun.objects.select_related("incident", "requested_by", "evidence").prefetch_related("artefacts"),
        pk=run_id,
    )
    return render(request, "recovery/run.html", {"run": run, "poll_seconds": PROGRESS_POLL_SECONDS})
