"""Health targets and their samples, the emergency stop, planned maintenance, and the duty
heartbeats that show each background duty (firing, delivery, polling, rendering) is being done."""

from __future__ import annotations

import re
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


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_PORTS = {"postgres": 5432, "redis": 6379}


class HealthTarget(models.Model):
    class State(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        HEALTHY = "healthy", "Healthy"
        DEGRADED = "degraded", "Degraded"
        DOWN = "down", "Down"

    class Kind(models.TextChoices):
        HTTP = "http", "HTTP"
        POSTGRES = "postgres", "PostgreSQL (connect + SELECT 1)"
        TCP = "tcp", "TCP (connect)"
        REDIS = "redis", "Redis (PING)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.HTTP)
    url = models.CharField("URL", max_length=500, blank=True, validators=[http_url], help_text="HTTP only.")
    # Secrets never live in the database: a header's value is read from the named environment
    # variable at each check, as is a database's or Redis's password.
    headers = models.JSONField(
        default=dict,
        blank=True,
        help_text='HTTP: header name → the environment variable holding its value, e.g. {"Authorization": '
        '"TMT_ENGINE_TOKEN"}.',
    )
    expected_status = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(100), MaxValueValidator(599)],
        help_text="HTTP: the status code a healthy answer has (blank: any 2xx).",
    )
    json_path = models.CharField(
        "JSON path",
        max_length=200,
        blank=True,
        help_text='HTTP: dotted path into the JSON answer, e.g. "status" or "checks.0.state". Blank with no '
        'pattern: the answer must say {"status": "healthy"} (or ok/up/pass).',
    )
    json_expected = models.CharField(
        "expected value", max_length=200, blank=True, help_text="HTTP: what the JSON path must hold (as text)."
    )
    body_pattern = models.CharField(
        max_length=200, blank=True, help_text="HTTP: a regular expression the body must match."
    )
    host = models.CharField(max_length=253, blank=True, help_text="PostgreSQL, TCP, Redis: host name or address.")
    port = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="Blank: 5432 for PostgreSQL, 6379 for Redis.",
    )
    database = models.CharField(max_length=63, blank=True, help_text="PostgreSQL: the database name.")
    username = models.CharField(max_length=63, blank=True, help_text="PostgreSQL: the user.")
    password_env = models.CharField(
        "password environment variable",
        max_length=100,
        blank=True,
        help_text="PostgreSQL, Redis: the environment variable holding the password (never the password).",
    )
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

    @property
    def endpoint(self) -> str:
        """What is checked, as shown on the health page (never a secret)."""
        port = self.port or DEFAULT_PORTS.get(self.kind)
        if self.kind == self.Kind.POSTGRES:
            return f"postgresql://{self.username}@{self.host}:{port}/{self.database}"
        if self.kind == self.Kind.REDIS:
            return f"redis://{self.host}:{port}"
        if self.kind == self.Kind.TCP:
            return f"tcp://{self.host}:{self.port}"
        return self.url

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.timeout is not None and self.interval is not None:
            if self.timeout >= self.interval:
                errors["timeout"] = "The timeout must be shorter than the interval."
            elif self.interval < timedelta(seconds=1):
                errors["interval"] = "Poll at most once a second."
        errors.update(self.kind_errors())
        if errors:
            raise ValidationError(errors)

    def kind_errors(self) -> dict[str, str]:
        """What this kind of target needs and does not have, field by field."""
        required = {
            self.Kind.HTTP: ["url"],
            self.Kind.POSTGRES: ["host", "database", "username"],
            self.Kind.TCP: ["host", "port"],
            self.Kind.REDIS: ["host"],
        }.get(self.kind, [])
        errors = {
            name: f"Required for a {self.get_kind_display()} target." for name in required if not getattr(self, name)
        }
        if self.kind == self.Kind.HTTP:
            headers = self.headers or {}
            if not isinstance(headers, dict) or not all(
                isinstance(k, str) and k.strip() and isinstance(v, str) and ENV_NAME.match(v)
                for k, v in headers.items()
            ):
                errors["headers"] = (
                    'A JSON object of header name → environment variable name, e.g. {"Authorization": "TMT_TOKEN"}.'
                )
            if self.json_expected and not self.json_path:
                errors["json_path"] = "Give the JSON path whose value must be the expected value."
            if self.json_path and not self.json_expected:
                errors["json_expected"] = "Give the value the JSON path must hold."
            if self.body_pattern:
                try:
                    re.compile(self.body_pattern)
                except re.error as exc:
                    errors["body_pattern"] = f"Not a regular expression: {exc}."
        else:
            for name in ("url", "json_path", "json_expected", "body_pattern"):
                if getattr(self, name):
                    errors.setdefault(name, f"Only for an HTTP target; leave it blank for {self.get_kind_display()}.")
            if self.headers:
                errors["headers"] = "Only for an HTTP target."
        if self.password_env and not ENV_NAME.match(self.password_env):
            errors["password_env"] = "The name of an environment variable (letters, digits, _), not the password."  # noqa: S105 - an error message
        return errors


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


class StopReason(models.TextChoices):
    """The seed's trigger conditions for a trading emergency stop; the code is what the circuit
    breaker receives as "reason" (the seed's example sends "system_emergency")."""

    SYSTEM_EMERGENCY = "system_emergency", "System emergency"
    CIRCUIT_BREAKER_ACTIVATION = "circuit_breaker_activation", "Circuit breaker activation"
    CIRCUIT_BREAKER_MALFUNCTION = "circuit_breaker_malfunction", "Circuit breaker malfunction"
    SYSTEM_MALFUNCTION = "major_system_malfunction", "Major system malfunction"
    SUSPICIOUS_TRADING = "suspicious_trading", "Suspicious trading activity"
    REGULATORY_REQUIREMENT = "regulatory_requirement", "Regulatory requirement"
    RISK_DECISION = "risk_management_decision", "Risk management decision"


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
    # The seed's trigger condition: what the circuit breaker receives as "reason".
    reason_code = models.CharField(max_length=40, choices=StopReason.choices, default=StopReason.SYSTEM_EMERGENCY)
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


# -- the trading halt ------------------------------------------------------------------------------

# Who may do what in a halt (roles.py gives them to the seed's roles).
VIEW_HALT_PERMISSION = "monitoring.view_tradinghalt"
REQUEST_RESUME_PERMISSION = "monitoring.request_trading_resume"
APPROVE_RESUME_PERMISSION = "monitoring.approve_trading_resume"
RECORD_POSITION_PERMISSION = "monitoring.add_positionclosure"
CAPTURE_PERMISSION = "monitoring.capture_system_state"


class TradingHalt(models.Model):
    """Trading halted by a verified emergency stop, until a four-eyes resume (or the agent leaves
    the halt by itself, which is an alarm). At most one halt per circuit breaker is active."""

    class Ending(models.TextChoices):
        RESUMED = "resumed", "Resumed (four eyes, verified)"
        UNEXPECTED = "unexpected", "Left the halt without a resume procedure"

    emergency_stop = models.OneToOneField(EmergencyStop, on_delete=models.PROTECT, related_name="halt")
    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="trading_halts")
    agent_url = models.CharField(max_length=500)
    started_at = models.DateTimeField()
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason_code = models.CharField(max_length=40, choices=StopReason.choices)
    reason_text = models.TextField(blank=True)
    # What the agent reported holding when the stop was verified (GET /api/v1/positions).
    agent_positions = models.JSONField(default=list, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_check = models.JSONField(default=dict, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ending = models.CharField(max_length=12, choices=Ending.choices, blank=True)
    resumed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # The Sev1 incident opened when the agent reported trading again without a resume.
    alarm_incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent_url"], condition=Q(ended_at__isnull=True), name="one_active_halt_per_agent"
            ),
        ]
        permissions = [
            ("request_trading_resume", "Can request that trading resume after a halt"),
            ("approve_trading_resume", "Can approve a trading resume (the second pair of eyes)"),
        ]

    def __str__(self) -> str:
        return f"Trading halt {self.started_at:%Y-%m-%d %H:%M} ({self.get_reason_code_display()})"

    @property
    def active(self) -> bool:
        return self.ended_at is None


class ResumeRequest(models.Model):
    """The resume procedure: requested by one person, approved by another, then verified."""

    class State(models.TextChoices):
        PENDING = "pending", "Awaiting approval"
        RESUMING = "resuming", "Approved, resuming"
        RESUMED = "resumed", "Resumed (verified)"
        FAILED = "failed", "Resume not confirmed"
        WITHDRAWN = "withdrawn", "Withdrawn"

    halt = models.ForeignKey(TradingHalt, on_delete=models.PROTECT, related_name="resume_requests")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    note = models.TextField(blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    agent_response = models.JSONField(default=dict, blank=True)
    status_response = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            # One procedure at a time: a second request while one is open would let two
            # approvals race to call the agent.
            models.UniqueConstraint(
                fields=["halt"], condition=Q(state__in=["pending", "resuming"]), name="one_open_resume_request"
            ),
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True) | ~Q(approved_by=F("requested_by")),
                name="resume_four_eyes",
            ),
        ]

    def __str__(self) -> str:
        return f"Resume request {self.requested_at:%H:%M} ({self.get_state_display()})"


class PositionClosure(models.Model):
    """A position closed by hand during a halt (the seed's manual position closure), or the
    explicit record that none was open."""

    halt = models.ForeignKey(TradingHalt, on_delete=models.PROTECT, related_name="closures")
    none_open = models.BooleanField(default=False)
    instrument = models.CharField(max_length=40, blank=True)
    venue = models.CharField(max_length=80, blank=True)
    quantity = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    closed_at = models.DateTimeField()
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["closed_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(none_open=True, instrument="", quantity__isnull=True)
                | Q(none_open=False, quantity__gt=0) & ~Q(instrument=""),
                name="closure_is_a_position_or_none_open",
            ),
        ]

    def __str__(self) -> str:
        return "No positions open" if self.none_open else f"{self.quantity} {self.instrument} @ {self.venue}"


# -- system-state capture --------------------------------------------------------------------------

# Captures run in the web request: all probes together stay well inside a 30 s proxy timeout.
MAX_PROBE_TIMEOUT_S = 20.0
MAX_LOG_TAIL_LINES = 1000


class DiagnosticProbe(models.Model):
    """One of the seed's investigation commands, as data: what a capture runs. Never a shell
    command: each kind is a fixed piece of code with bounded output and its own timeout."""

    class Kind(models.TextChoices):
        HTTP = "http", "HTTP GET"
        POSTGRES = "postgres", "PostgreSQL: version and connections"
        TCP = "tcp", "TCP reachability"
        TLS = "tls", "TLS handshake"
        LOG_TAIL = "log_tail", "Log file tail"
        HOST = "host", "Host resources"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    order = models.PositiveSmallIntegerField(default=0)
    url = models.CharField("URL", max_length=500, blank=True, validators=[http_url], help_text="HTTP: the URL to GET.")
    headers = models.JSONField(
        default=dict,
        blank=True,
        help_text='HTTP: header name → the environment variable holding its value, e.g. {"Authorization": '
        '"TMT_BROKER_TOKEN"}. The value is never stored or captured.',
    )
    host = models.CharField(max_length=253, blank=True, help_text="PostgreSQL, TCP, TLS: host name or address.")
    port = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    database = models.CharField(max_length=63, blank=True)
    username = models.CharField(max_length=63, blank=True)
    password_env = models.CharField(
        "password environment variable", max_length=100, blank=True, help_text="PostgreSQL: never the password itself."
    )
    path = models.CharField(
        max_length=500,
        blank=True,
        help_text="Log tail: the file (inside TMT_CAPTURE_LOG_ROOTS). Host: the disk to measure.",
    )
    lines = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(MAX_LOG_TAIL_LINES)]
    )
    timeout_s = models.FloatField(
        "timeout (s)", default=5.0, validators=[MinValueValidator(0.1), MaxValueValidator(MAX_PROBE_TIMEOUT_S)]
    )

    class Meta:
        ordering = ["order", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(timeout_s__gte=0.1, timeout_s__lte=MAX_PROBE_TIMEOUT_S), name="probe_timeout_bounded"
            ),
            models.CheckConstraint(
                condition=Q(lines__gte=1, lines__lte=MAX_LOG_TAIL_LINES), name="probe_lines_bounded"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        required = {
            self.Kind.HTTP: ["url"],
            self.Kind.POSTGRES: ["host", "database", "username"],
            self.Kind.TCP: ["host", "port"],
            self.Kind.TLS: ["host", "port"],
            self.Kind.LOG_TAIL: ["path"],
        }.get(self.kind, [])
        errors = {name: "Required for this kind of probe." for name in required if not getattr(self, name)}
        if not isinstance(self.headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in (self.headers or {}).items()
        ):
            errors["headers"] = "A JSON object of header name → environment variable name."
        if errors:
            raise ValidationError(errors)


class SystemStateCapture(models.Model):
    """One run of the probes for an incident; the bundle is stored as the incident's evidence."""

    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="state_captures")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    evidence = models.ForeignKey(
        "incidents.EvidenceAttachment", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    summary = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at"]
        permissions = [("capture_system_state", "Can capture system state as evidence")]

    def __str__(self) -> str:
        return f"State capture {self.started_at:%Y-%m-%d %H:%M:%S}"
