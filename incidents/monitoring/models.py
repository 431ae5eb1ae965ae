"""Health targets and their samples, the emergency stop, planned maintenance, and the duty
heartbeats that show each background duty (firing, delivery, polling, rendering) is being done."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.db.models import F, Q

# The health page and the health-targets API: the agents' and the portal's own health is for
# those who respond (roles.py's monitoring view), not for every reader of incidents.
VIEW_HEALTH_PERMISSION = "monitoring.view_healthtarget"
# Emergency stops already requested (the health page's list, a stop's own page).
VIEW_EMERGENCY_STOPS_PERMISSION = "monitoring.view_emergencystop"

http_url = URLValidator(schemes=["http", "https"], message="Enter an http:// or https:// URL.")


class HealthTarget(models.Model):
    class State(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        HEALTHY = "healthy", "Healthy"
        DEGRADED = "degraded", "Degraded"
        DOWN = "down", "Down"

    name = models.CharField(max_length=100, unique=True)
    url = models.CharField("URL", max_length=500, validators=[http_url])
    system = models.ForeignKey("incidents.System", on_delete=models.PROTECT, related_name="health_targets")
    interval = models.DurationField(default=timedelta(seconds=15))
    timeout = models.DurationField(default=timedelta(seconds=2))
    failures_before_down = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Consecutive failed checks before the target counts as down (no flapping pages).",
    )
    latency_threshold_ms = models.PositiveIntegerField(
        default=500, help_text="Slower answers count as degraded (the seed's 'execution latency >500ms')."
    )
    enabled = models.BooleanField(default=True)
    # The severity of the automated incident a slow target
    # opens (the seed's Sev2 example, "Execution latency >500ms"); never more severe than the
    # system's outage severity. Blank on a new target means Severity 2.
    degraded_severity = models.ForeignKey(
        "incidents.SeverityLevel",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Severity of the automated incident when answers are slower than the threshold.",
    )

    # Current state, maintained by the poller's service.
    state = models.CharField(max_length=10, choices=State.choices, default=State.UNKNOWN, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    consecutive_slow = models.PositiveIntegerField(default=0, editable=False)
    consecutive_ok = models.PositiveIntegerField(default=0, editable=False)
    # Fast answers in a row, so a degraded target recovers
    # only after N fast answers (hysteresis both ways); consecutive_ok counts any healthy answer.
    consecutive_fast = models.PositiveIntegerField(default=0, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_latency_ms = models.FloatField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=300, blank=True, editable=False)
    state_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    next_check_at = models.DateTimeField(null=True, blank=True, editable=False, db_index=True)

    class Meta:
        db_table = "incidents_healthtarget"  # the table keeps its name from before the split
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(timeout__lt=F("interval")), name="health_timeout_below_interval"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.timeout is not None and self.interval is not None:
            if self.timeout >= self.interval:
                raise ValidationError({"timeout": "The timeout must be shorter than the interval."})
            if self.interval < timedelta(seconds=1):
                raise ValidationError({"interval": "Poll at most once a second."})


class HealthSample(models.Model):
    """One check. Kept for the retention window (sparklines, uptime) and then pruned."""

    target = models.ForeignKey(HealthTarget, on_delete=models.CASCADE, related_name="samples")
    checked_at = models.DateTimeField()
    ok = models.BooleanField()
    latency_ms = models.FloatField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        db_table = "incidents_healthsample"  # the table keeps its name from before the split
        ordering = ["target", "-checked_at"]
        indexes = [
            models.Index(fields=["target", "-checked_at"], name="health_sample_recent"),
            # The retention prune deletes by age across all targets.
            models.Index(fields=["checked_at"], name="health_sample_by_age"),
        ]

    def __str__(self) -> str:
        return f"{self.target_id} {self.checked_at:%H:%M:%S} {'ok' if self.ok else self.error}"


class EmergencyStop(models.Model):
    """One emergency-stop request to the circuit breaker, with what the agent answered."""

    class Outcome(models.TextChoices):
        STOPPED = "stopped", "Trading stopped (verified)"
        UNVERIFIED = "unverified", "Stop accepted but not verified"
        REFUSED = "refused", "Refused by the agent"
        UNREACHABLE = "unreachable", "Agent unreachable"

    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, related_name="emergency_stops", null=True, blank=True
    )
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    stop_all_trading = models.BooleanField(default=True)
    requested_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, blank=True)
    agent_url = models.CharField(max_length=500)
    agent_response = models.JSONField(default=dict, blank=True)
    status_response = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        db_table = "incidents_emergencystop"  # the table keeps its name from before the split
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"Emergency stop {self.requested_at:%Y-%m-%d %H:%M:%S}: {self.get_outcome_display() or 'in progress'}"


class MaintenanceWindow(models.Model):
    """Planned maintenance announced on the public status page (the seed's user communication)."""

    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    systems = models.ManyToManyField("incidents.System", blank=True, related_name="maintenance_windows")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "incidents_maintenancewindow"  # the table keeps its name from before the split
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="maintenance_ends_after_start"),
        ]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "The end must be after the start."})


class DutyHeartbeat(models.Model):
    """When each process last did one of the duties that keep people paged and systems watched.

    One row per (duty, process): a duty is alive while any process did it recently, so a second
    dispatcher keeps it alive when the first dies, and the health page still shows which died.
    """

    class Duty(models.TextChoices):
        ESCALATION = "escalation", "Escalation firing"
        DELIVERY = "delivery", "Notification delivery"
        HEALTH_POLLING = "health_polling", "Health polling"
        REPORT_RENDERING = "report_rendering", "Report rendering"

    duty = models.CharField(max_length=20, choices=Duty.choices)
    process = models.CharField(max_length=200)
    seen_at = models.DateTimeField()

    class Meta:
        db_table = "incidents_dutyheartbeat"  # the table keeps its name from before the split
        ordering = ["duty", "process"]
        constraints = [
            models.UniqueConstraint(fields=["duty", "process"], name="duty_heartbeat_per_process"),
        ]

    def __str__(self) -> str:
        return f"{self.duty} by {self.process} @ {self.seen_at:%H:%M:%S}"


class WorkerHeartbeat(models.Model):
    """Last sign of life from each Celery worker and from beat (a silent beat stops escalations)."""

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=10, choices=[("worker", "Worker"), ("beat", "Beat")])
    seen_at = models.DateTimeField()

    class Meta:
        db_table = "incidents_workerheartbeat"  # the table keeps its name from before the split

    def __str__(self) -> str:
        return f"{self.kind} {self.name} @ {self.seen_at:%H:%M:%S}"
