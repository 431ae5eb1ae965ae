"""What is backed up (trading databases, configuration and log folders), each backup run with its
artefacts, and the recovery-point breaches found by comparing backup ages with the RPO classes."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

RUN_BACKUP_PERMISSION = "recovery.run_backup"
VIEW_BACKUPS_PERMISSION = "recovery.view_backuprun"

env_var_name = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$", "The NAME of an environment variable (letters, digits, underscores), not a password."
)


class BackupDatabase(models.Model):
    """A PostgreSQL database dumped by every backup run. The password is never stored: only the
    name of the environment variable the backup worker reads it from."""

    name = models.CharField(max_length=100, unique=True)
    system = models.ForeignKey(
        "incidents.System",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="backup_databases",
        help_text="Its age counts towards this system's recovery point (the system's RPO class).",
    )
    host = models.CharField(max_length=255, default="127.0.0.1")
    port = models.PositiveIntegerField(default=5432, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    dbname = models.CharField("database name", max_length=63)
    user = models.CharField(max_length=63)
    password_env = models.CharField(
        "password environment variable",
        max_length=100,
        blank=True,
        validators=[env_var_name],
        help_text="Blank: no password (trust or a .pgpass file of the worker's account).",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BackupFolder(models.Model):
    class Kind(models.TextChoices):
        CONFIGURATION = "configuration", "Configuration"
        LOGS = "logs", "Logs"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    path = models.CharField(max_length=500, help_text="An absolute folder path on the backup worker's host.")
    system = models.ForeignKey(
        "incidents.System", on_delete=models.PROTECT, null=True, blank=True, related_name="backup_folders"
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BackupRun(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        VERIFIED = "verified", "Verified"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        INCIDENT = "incident", "Emergency (incident page)"
        COMMAND = "command", "Command line"
        SCHEDULED = "scheduled", "Scheduled"

    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, null=True, blank=True, related_name="backup_runs"
    )
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Progress, read by the incident page's polled fragment.
    step = models.CharField(max_length=300, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    location = models.CharField(max_length=300, blank=True, help_text="The folder in the backup storage.")
    manifest_sha256 = models.CharField("manifest SHA-256", max_length=64, blank=True)
    evidence = models.ForeignKey(
        "incidents.EvidenceAttachment", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_backup", "Can run an emergency backup")]
        indexes = [models.Index(fields=["state", "created_at"], name="backuprun_by_state")]

    def __str__(self) -> str:
        return f"Backup run {self.pk} ({self.get_state_display()})"

    @property
    def finished(self) -> bool:
        return self.state in (self.State.VERIFIED, self.State.FAILED)

    @property
    def artefact_count(self) -> int:
        return len(self.artefacts.all())

    @property
    def done_count(self) -> int:
        finished = (BackupArtefact.State.VERIFIED, BackupArtefact.State.FAILED)
        return sum(1 for a in self.artefacts.all() if a.state in finished)

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class BackupArtefact(models.Model):
    class Kind(models.TextChoices):
        DATABASE = "database", "Database dump"
        FOLDER = "folder", "Folder archive"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        VERIFIED = "verified", "Verified"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(BackupRun, on_delete=models.CASCADE, related_name="artefacts")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    source_name = models.CharField(max_length=100)
    database = models.ForeignKey(BackupDatabase, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    folder = models.ForeignKey(BackupFolder, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    system = models.ForeignKey("incidents.System", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    # When the data was captured (the dump's snapshot was taken): the recovery point.
    captured_at = models.DateTimeField(null=True, blank=True)
    storage_name = models.CharField(max_length=400, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField("SHA-256", max_length=64, blank=True)
    backup_s = models.FloatField(null=True, blank=True)
    verify_s = models.FloatField(null=True, blank=True)
    verification = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "id"]
        indexes = [
            # The RPO: the newest verified capture of each system.
            models.Index(
                fields=["system", "-captured_at"], name="artefact_verified_by_system", condition=Q(state="verified")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_name} ({self.get_state_display()})"


class RpoBreach(models.Model):
    """A data class whose systems' newest verified backup is older than its RPO. Open while
    `cleared_at` is empty; at most one open per class."""

    rpo_class = models.ForeignKey("incidents.RecoveryPointObjective", on_delete=models.PROTECT, related_name="+")
    detected_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)
    detail = models.TextField()
    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-detected_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rpo_class"], condition=Q(cleared_at__isnull=True), name="one_open_rpo_breach_per_class"
            )
        ]

    def __str__(self) -> str:
        return f"RPO breach: {self.rpo_class.name}"
