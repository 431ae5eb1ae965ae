"""Runbooks: the seed's recovery procedures as ordered steps, versioned, and their runs.

A runbook's content lives in revisions; a revision and its steps are never edited once written,
so a run started on revision 2 keeps showing revision 2's steps after revision 3 is approved. The
only change a revision sees is its approval (who, when), and the runbook's pointer to its current
(latest approved) revision moves with it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from incidents.models.timeline import AppendOnlyModel

VIEW_PERMISSION = "runbooks.view_runbook"
RUN_PERMISSION = "runbooks.add_runbookrun"
PROPOSE_PERMISSION = "runbooks.add_runbookrevision"
APPROVE_PERMISSION = "runbooks.approve_runbookrevision"


class Procedure(models.TextChoices):
    SYSTEM_RESTART = "system_restart", "System restart"
    DATA_RECOVERY = "data_recovery", "Data recovery"
    CONFIGURATION_FIXES = "configuration_fixes", "Configuration fixes"
    TESTING_VALIDATION = "testing_validation", "Testing and validation"
    GRADUAL_RESTORATION = "gradual_restoration", "Gradual restoration"


class Runbook(models.Model):
    key = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=150)
    procedure = models.CharField(max_length=30, choices=Procedure.choices)
    system = models.ForeignKey(
        "incidents.System",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="runbooks",
        help_text="Blank: the procedure applies to any system.",
    )
    # The latest approved revision; moved only by runbook_revision_approve.
    current_revision = models.ForeignKey(
        "RunbookRevision", on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["procedure", "title"]

    def __str__(self) -> str:
        return self.title


class RunbookRevision(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft, awaiting review"
        APPROVED = "approved", "Approved"

    runbook = models.ForeignKey(Runbook, on_delete=models.PROTECT, related_name="revisions")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.DRAFT)
    summary = models.TextField(help_text="What changed and why.")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    # Where the lesson came from. The review is kept as its id: the reports app sits above this
    # one, so a foreign key would make this app's migrations depend on it.
    source_incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, null=True, blank=True, related_name="runbook_revisions"
    )
    source_review_id = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["runbook", "number"]
        permissions = [("approve_runbookrevision", "Can approve a runbook revision (four eyes)")]
        constraints = [
            models.UniqueConstraint(fields=["runbook", "number"], name="runbook_revision_number_once"),
            models.CheckConstraint(
                condition=models.Q(state="draft", approved_at__isnull=True)
                | models.Q(state="approved", approved_at__isnull=False),
                name="runbook_revision_approved_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.runbook.title} r{self.number}"


class RunbookStep(AppendOnlyModel):
    revision = models.ForeignKey(RunbookRevision, on_delete=models.PROTECT, related_name="steps")
    position = models.PositiveSmallIntegerField()
    title = models.CharField(max_length=200)
    instructions = models.TextField(blank=True)
    commands = models.TextField(blank=True, help_text="Shown as text; the portal never runs them.")
    # Gradual restoration: marking the step done records which system or service came back.
    records_restoration = models.BooleanField(default=False)
    source = models.CharField(max_length=200, blank=True, help_text="The procedure section it comes from.")

    class Meta:
        ordering = ["revision", "position"]
        constraints = [models.UniqueConstraint(fields=["revision", "position"], name="runbook_step_position_once")]

    def __str__(self) -> str:
        return f"{self.position}. {self.title}"


class RunbookRun(models.Model):
    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="runbook_runs")
    runbook = models.ForeignKey(Runbook, on_delete=models.PROTECT, related_name="runs")
    # Frozen at start: the steps worked are this revision's, whatever is approved later.
    revision = models.ForeignKey(RunbookRevision, on_delete=models.PROTECT, related_name="runs")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["started_at", "id"]
        constraints = [models.UniqueConstraint(fields=["incident", "runbook"], name="runbook_run_once_per_incident")]

    def __str__(self) -> str:
        return f"{self.runbook.title} on {self.incident_id}"


class StepRecord(AppendOnlyModel):
    class Outcome(models.TextChoices):
        DONE = "done", "Done"
        SKIPPED = "skipped", "Skipped"

    run = models.ForeignKey(RunbookRun, on_delete=models.PROTECT, related_name="records")
    step = models.ForeignKey(RunbookStep, on_delete=models.PROTECT, related_name="records")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    reason = models.TextField(blank=True)
    restored_system = models.ForeignKey(
        "incidents.System", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    restored_service = models.CharField(max_length=150, blank=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "step__position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step"], name="runbook_step_recorded_once"),
            models.CheckConstraint(
                condition=~models.Q(outcome="skipped") | ~models.Q(reason=""), name="runbook_skip_has_reason"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.step} {self.outcome}"
