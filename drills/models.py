"""Drills and exercises, training certifications, mentored responses and procedure versions.

The seed's "Training and Drills" section made explicit: monthly fire drills and quarterly
exercises are scheduled rows with a django-fsm lifecycle; certifications, mentoring and the
acknowledgement of procedure versions decide whether someone may take on-call or command alone
(the readiness gate in services.readiness_problems). Every default (drill kinds, their scenarios
and target times, certification kinds, the mentoring count, reminder lead times) is a seeded row
editable in the admin, never a constant in code.
"""

from __future__ import annotations

import secrets
from datetime import date, timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from incidents.api.models import TOKEN_PREFIX_LENGTH
from incidents.models import Category
from incidents.models.timeline import AppendOnlyModel

MANAGE_PERMISSION = "drills.manage_training"
OVERRIDE_PERMISSION = "drills.override_readiness"
# The programme (every drill), for the whole team.
VIEW_PERMISSION = "drills.view_drill"
# Other people's certifications and training records: trainers, and the managers who may
# override the readiness gate. Everyone sees their own.
VIEW_CERTIFICATIONS_PERMISSION = "drills.view_certification"


def parse_day_list(value: str) -> list[int]:
    """ "30,7" → [30, 7]; raises ValidationError on anything else (used by the policy's fields)."""
    days = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) <= 366:
            raise ValidationError(f"“{part}” is not a number of days between 1 and 366.")
        days.append(int(part))
    return sorted(set(days), reverse=True)


def parse_hour_list(value: str) -> list[int]:
    hours = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) <= 24 * 90:
            raise ValidationError(f"“{part}” is not a number of hours between 1 and 2160.")
        hours.append(int(part))
    return sorted(set(hours), reverse=True)


def _validate_day_list(value: str) -> None:
    parse_day_list(value)


def _validate_hour_list(value: str) -> None:
    parse_hour_list(value)


class TrainingPolicy(models.Model):
    """The training numbers the seed leaves open, as one editable row (pk 1)."""

    mentored_responses_required = models.PositiveSmallIntegerField(
        default=3,
        validators=[MaxValueValidator(50)],
        help_text="Mentored incident responses a new member needs before taking on-call or command alone.",
    )
    expiring_within_days = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(366)],
        help_text="A certification this close to expiry shows as 'expiring' on the compliance matrix.",
    )
    certification_reminder_days = models.CharField(
        max_length=60,
        default="30,7",
        validators=[_validate_day_list],
        help_text="Remind the holder this many days before a certification expires (comma-separated).",
    )
    drill_reminder_hours = models.CharField(
        max_length=60,
        default="168,24",
        validators=[_validate_hour_list],
        help_text="Remind the facilitator and participants this many hours before a drill (comma-separated).",
    )

    class Meta:
        verbose_name = "training policy"
        verbose_name_plural = "training policy"
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="training_policy_single_row")]

    def __str__(self) -> str:
        return "Training policy"

    @property
    def certification_reminder_list(self) -> list[int]:
        return parse_day_list(self.certification_reminder_days)

    @property
    def drill_reminder_list(self) -> list[int]:
        return parse_hour_list(self.drill_reminder_hours)


# -- drill kinds ------------------------------------------------------------------------------


class Cadence(models.TextChoices):
    MONTHLY = "monthly", "Monthly fire drill"
    QUARTERLY = "quarterly", "Quarterly exercise"


class DrillKind(models.Model):
    """A kind of drill from the seed, with its default scenario, objectives and target times."""

    key = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=100)
    cadence = models.CharField(max_length=10, choices=Cadence.choices)
    description = models.CharField(max_length=300, blank=True)
    default_scenario = models.TextField()
    default_objectives = models.TextField(help_text="One objective per line.")
    default_duration = models.DurationField(default=timedelta(hours=1))
    opens_incident = models.BooleanField(
        default=True, help_text="Starting the drill opens an exercise incident (flagged as a drill)."
    )
    incident_severity = models.ForeignKey(
        "incidents.SeverityLevel", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    incident_category = models.CharField(max_length=20, choices=Category.choices, default=Category.OPERATIONAL)
    incident_systems = models.ManyToManyField("incidents.System", blank=True, related_name="+")
    measures_emergency_stop = models.BooleanField(
        default=False,
        help_text="The drill sends an emergency stop to the agent simulator and measures the time to a verified stop.",
    )
    order = models.PositiveSmallIntegerField(default=0)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["cadence", "order", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def objective_list(self) -> list[str]:
        return [line.strip() for line in self.default_objectives.splitlines() if line.strip()]


class Measure(models.TextChoices):
    MANUAL = "manual", "Entered by the facilitator"
    EMERGENCY_STOP = "emergency_stop", "Measured: start to verified emergency stop"


class DrillKindTarget(models.Model):
    kind = models.ForeignKey(DrillKind, on_delete=models.CASCADE, related_name="targets")
    name = models.CharField(max_length=120)
    target = models.DurationField()
    measure = models.CharField(max_length=20, choices=Measure.choices, default=Measure.MANUAL)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["kind", "order", "id"]
        constraints = [models.UniqueConstraint(fields=["kind", "name"], name="drill_kind_target_once")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.name}"


# -- drills -----------------------------------------------------------------------------------


class DrillState(models.TextChoices):
    PLANNED = "planned", "Planned"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class DrillResult(models.TextChoices):
    MET = "met", "All objectives met"
    PARTIAL = "partial", "Objectives partly met"
    NOT_MET = "not_met", "Objectives not met"


class Drill(ConcurrentTransitionMixin, models.Model):
    kind = models.ForeignKey(DrillKind, on_delete=models.PROTECT, related_name="drills")
    title = models.CharField(max_length=200)
    scenario = models.TextField()
    objectives = models.TextField(help_text="One objective per line.")
    scheduled_start = models.DateTimeField()
    duration = models.DurationField()
    facilitator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="facilitated_drills"
    )
    state = FSMField(default=DrillState.PLANNED, choices=DrillState.choices, protected=True, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Bumped on every change calendar clients should pick up (RFC 5545 SEQUENCE).
    calendar_sequence = models.PositiveIntegerField(default=0, editable=False)

    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    incident = models.OneToOneField(
        "incidents.Incident",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="drill",
        editable=False,
        help_text="The exercise incident opened when the drill started.",
    )
    completed_at = models.DateTimeField(null=True, blank=True, editable=False)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    result = models.CharField(max_length=10, choices=DrillResult.choices, blank=True)
    outcome_summary = models.TextField("outcome", blank=True)
    went_well = models.TextField("what went well", blank=True)
    could_improve = models.TextField("what could improve", blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True, editable=False)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    cancel_reason = models.TextField(blank=True, editable=False)
    emergency_stop_verified_at = models.DateTimeField(null=True, blank=True, editable=False)
    time_to_stop = models.DurationField(
        "time to verified stop",
        null=True,
        blank=True,
        editable=False,
        help_text="From the drill's start to the agent confirming trading halted.",
    )

    class Meta:
        ordering = ["scheduled_start", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(duration__gt=timedelta(0)), name="drill_duration_positive"),
        ]
        indexes = [models.Index(fields=["scheduled_start"], name="drill_by_start")]
        permissions = [
            ("manage_training", "Can schedule drills, record certifications and publish procedures"),
            ("override_readiness", "Can override the readiness gate with a recorded justification"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.scheduled_start:%Y-%m-%d})"

    def get_absolute_url(self) -> str:
        return reverse("drills:detail", args=[self.pk])

    @property
    def reference(self) -> str:
        return f"DRILL-{self.pk:04d}"

    @property
    def scheduled_end(self):
        return self.scheduled_start + self.duration

    @property
    def objective_list(self) -> list[str]:
        return [line.strip() for line in self.objectives.splitlines() if line.strip()]

    @property
    def is_finished(self) -> bool:
        return self.state in (DrillState.COMPLETED, DrillState.CANCELLED)

    # -- transitions (pure) ------------------------------------------------------------------
    @transition(field=state, source=DrillState.PLANNED, target=DrillState.IN_PROGRESS)
    def start(self, *, by, at) -> None:
        self.started_at = at
        self.started_by = by

    @transition(field=state, source=DrillState.IN_PROGRESS, target=DrillState.COMPLETED)
    def complete(self, *, by, at, result: str) -> None:
        self.completed_at = at
        self.completed_by = by
        self.result = result

    @transition(field=state, source=[DrillState.PLANNED, DrillState.IN_PROGRESS], target=DrillState.CANCELLED)
    def cancel(self, *, by, at, reason: str) -> None:
        self.cancelled_at = at
        self.cancelled_by = by
        self.cancel_reason = reason


class ParticipantRole(models.TextChoices):
    INCIDENT_COMMANDER = "incident_commander", "Incident commander"
    ON_CALL = "on_call", "On-call engineer"
    RISK_MANAGER = "risk_manager", "Risk manager"
    SYSTEM_ADMINISTRATOR = "system_administrator", "System administrator"
    COMMUNICATIONS = "communications", "Communications"
    MENTOR = "mentor", "Mentor"
    SCRIBE = "scribe", "Scribe"
    OBSERVER = "observer", "Observer"


class DrillParticipant(models.Model):
    drill = models.ForeignKey(Drill, on_delete=models.CASCADE, related_name="participants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="drill_participations")
    role = models.CharField(
        "planned role", max_length=30, choices=ParticipantRole.choices, default=ParticipantRole.ON_CALL
    )
    attended = models.BooleanField(null=True, blank=True, help_text="Recorded when the drill is completed.")
    attended_role = models.CharField("role played", max_length=30, choices=ParticipantRole.choices, blank=True)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["drill", "id"]
        constraints = [models.UniqueConstraint(fields=["drill", "user"], name="drill_participant_once")]

    def __str__(self) -> str:
        return f"{self.user} in {self.drill_id} as {self.get_role_display()}"


class DrillTarget(models.Model):
    """A target time, copied from the kind when the drill is scheduled, with what was achieved."""

    drill = models.ForeignKey(Drill, on_delete=models.CASCADE, related_name="targets")
    name = models.CharField(max_length=120)
    target = models.DurationField()
    measure = models.CharField(max_length=20, choices=Measure.choices, default=Measure.MANUAL)
    actual = models.DurationField(null=True, blank=True)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["drill", "order", "id"]

    def __str__(self) -> str:
        return f"{self.name} ≤ {self.target}"

    @property
    def met(self) -> bool | None:
        return None if self.actual is None else self.actual <= self.target


class DrillFinding(models.Model):
    """A finding from a drill; each one becomes an action item (reports.ActionItem)."""

    drill = models.ForeignKey(Drill, on_delete=models.PROTECT, related_name="findings")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    action_item = models.OneToOneField("reports.ActionItem", on_delete=models.PROTECT, related_name="drill_finding")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["drill", "id"]

    def __str__(self) -> str:
        return self.title


class DrillStopAttempt(AppendOnlyModel):
    """One emergency stop sent to the agent simulator during an emergency-stop drill."""

    class Outcome(models.TextChoices):
        VERIFIED = "verified", "Trading halted (verified)"
        UNVERIFIED = "unverified", "Accepted but not verified"
        REFUSED = "refused", "Refused by the agent"
        UNREACHABLE = "unreachable", "Agent unreachable"
        NOT_SIMULATOR = "not_simulator", "Not the agent simulator: not sent"

    drill = models.ForeignKey(Drill, on_delete=models.PROTECT, related_name="stop_attempts")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    completed_at = models.DateTimeField()
    outcome = models.CharField(max_length=15, choices=Outcome.choices)
    agent_url = models.CharField(max_length=500)
    response = models.JSONField(default=dict, blank=True)
    status_response = models.JSONField(default=dict, blank=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["drill", "requested_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} at {self.requested_at:%H:%M:%S}"


# -- certifications ---------------------------------------------------------------------------


class CertificationKind(models.Model):
    key = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    validity_months = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(120)],
        help_text="Expires this many months after issue. Blank: does not expire.",
    )
    required_for = models.ManyToManyField(
        Group,
        blank=True,
        related_name="required_certifications",
        help_text="Members of these roles must hold it to take on-call or command (the response team).",
    )
    active = models.BooleanField(default=True)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name

    def default_expiry(self, issued_on: date) -> date | None:
        if not self.validity_months:
            return None
        return add_months(issued_on, self.validity_months)


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    # 31 January + 1 month is the last day of February, not an error.
    for candidate in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise ValueError(day)  # pragma: no cover - 28 always exists


def certification_evidence_path(instance: Certification, filename: str) -> str:
    return f"certifications/{instance.person_id}/{instance.kind.key}-{filename}"


class Certification(models.Model):
    person = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="certifications")
    kind = models.ForeignKey(CertificationKind, on_delete=models.PROTECT, related_name="records")
    issued_on = models.DateField()
    expires_on = models.DateField(null=True, blank=True)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", help_text="The trainer or assessor."
    )
    evidence = models.FileField(upload_to=certification_evidence_path, blank=True, max_length=300)
    evidence_note = models.CharField(max_length=300, blank=True, help_text="Course, certificate number, assessment.")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["person", "kind", "-issued_on"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_on__isnull=True) | Q(expires_on__gt=F("issued_on")),
                name="certification_expires_after_issue",
            ),
        ]
        indexes = [models.Index(fields=["person", "kind", "-expires_on"], name="certification_lookup")]

    def __str__(self) -> str:
        return f"{self.kind} for {self.person} ({self.issued_on:%Y-%m-%d})"

    def valid_on(self, day: date) -> bool:
        return self.issued_on <= day and (self.expires_on is None or day < self.expires_on)


# -- mentoring --------------------------------------------------------------------------------


class TrainingProfile(models.Model):
    """A response-team member's mentoring status (the count needed, or why it was waived)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="training_profile")
    joined_team_on = models.DateField(null=True, blank=True)
    mentored_responses_required = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(50)],
        help_text="Blank: the training policy's number.",
    )
    mentoring_waived_at = models.DateTimeField(null=True, blank=True)
    mentoring_waived_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    mentoring_waiver_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(mentoring_waived_at__isnull=True) | ~Q(mentoring_waiver_reason=""),
                name="mentoring_waiver_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"Training profile of {self.user}"


class MentoredResponse(AppendOnlyModel):
    class Source(models.TextChoices):
        INCIDENT = "incident", "Found on an incident's timeline"
        DRILL = "drill", "Completed drill"
        MANUAL = "manual", "Recorded by a trainer"

    mentee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="mentored_responses")
    mentor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    drill = models.ForeignKey(Drill, on_delete=models.PROTECT, null=True, blank=True, related_name="mentored_responses")
    occurred_at = models.DateTimeField()
    source = models.CharField(max_length=10, choices=Source.choices)
    notes = models.CharField(max_length=300, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["mentee", "occurred_at", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(mentee=F("mentor")), name="mentor_is_someone_else"),
            models.CheckConstraint(
                condition=Q(incident__isnull=False) | Q(drill__isnull=False), name="mentored_response_has_source"
            ),
            # One incident (real or drill) counts once per mentee, however it was found.
            models.UniqueConstraint(
                fields=["mentee", "incident"], condition=Q(incident__isnull=False), name="mentored_once_per_incident"
            ),
            models.UniqueConstraint(
                fields=["mentee", "drill"], condition=Q(drill__isnull=False), name="mentored_once_per_drill"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mentee} mentored by {self.mentor} ({self.occurred_at:%Y-%m-%d})"


# -- readiness overrides ----------------------------------------------------------------------


class Duty(models.TextChoices):
    ON_CALL = "on_call", "On-call shift"
    INCIDENT_COMMANDER = "incident_commander", "Incident commander"


class ReadinessOverride(AppendOnlyModel):
    """A manager's recorded decision to let someone take a duty despite the readiness gate."""

    person = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="readiness_overrides")
    duty = models.CharField(max_length=20, choices=Duty.choices)
    incident = models.ForeignKey(
        "incidents.Incident",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="For command of one incident only. Blank: any, within the validity window.",
    )
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    problems = models.JSONField(default=list, help_text="What the gate said when the override was granted.")
    justification = models.TextField()
    context = models.CharField(max_length=200, blank=True)
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    granted_at = models.DateTimeField()

    class Meta:
        ordering = ["-granted_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(valid_until__gt=F("valid_from")), name="override_window_positive"),
            models.CheckConstraint(condition=~Q(justification=""), name="override_has_justification"),
        ]
        indexes = [models.Index(fields=["person", "duty", "valid_until"], name="readiness_override_lookup")]

    def __str__(self) -> str:
        return f"{self.get_duty_display()} override for {self.person} until {self.valid_until:%Y-%m-%d %H:%M}"


# -- procedures -------------------------------------------------------------------------------


class ProcedureDocument(models.Model):
    """One version of the response procedures; published versions are frozen."""

    version = models.PositiveIntegerField(unique=True)
    title = models.CharField(max_length=200)
    body = models.TextField(help_text="Markdown.")
    summary_of_changes = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True, editable=False)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )

    class Meta:
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"v{self.version} {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("drills:procedure", args=[self.version])

    @property
    def is_published(self) -> bool:
        return self.published_at is not None


class ProcedureAcknowledgement(AppendOnlyModel):
    document = models.ForeignKey(ProcedureDocument, on_delete=models.PROTECT, related_name="acknowledgements")
    person = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="procedure_acknowledgements"
    )
    acknowledged_at = models.DateTimeField()

    class Meta:
        ordering = ["document", "acknowledged_at"]
        constraints = [models.UniqueConstraint(fields=["document", "person"], name="procedure_acknowledged_once")]

    def __str__(self) -> str:
        return f"{self.person} acknowledged v{self.document.version}"


# -- reminders and calendar feeds -------------------------------------------------------------


class Reminder(models.Model):
    """A reminder due at a time (before a drill, before a certification expires).

    Rows, not broker ETAs (DESIGN: time-based obligations are rows): beat claims due ones with a
    conditional UPDATE, so a reminder goes out once however many beats or workers race.
    """

    class Kind(models.TextChoices):
        DRILL = "drill", "Before a drill"
        CERTIFICATION = "certification", "Before a certification expires"

    kind = models.CharField(max_length=15, choices=Kind.choices)
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    drill = models.ForeignKey(Drill, on_delete=models.CASCADE, null=True, blank=True, related_name="reminders")
    certification = models.ForeignKey(
        Certification, on_delete=models.CASCADE, null=True, blank=True, related_name="reminders"
    )
    lead = models.DurationField(help_text="How long before the drill or the expiry.")
    due_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    channels = models.CharField(max_length=60, blank=True, help_text="Where it went (email, sms).")
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["due_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["drill", "recipient", "lead"],
                condition=Q(drill__isnull=False, cancelled_at__isnull=True),
                name="drill_reminder_once",
            ),
            models.UniqueConstraint(
                fields=["certification", "lead"],
                condition=Q(certification__isnull=False, cancelled_at__isnull=True),
                name="certification_reminder_once",
            ),
            models.CheckConstraint(
                condition=Q(drill__isnull=False) | Q(certification__isnull=False), name="reminder_has_subject"
            ),
        ]
        indexes = [
            models.Index(
                fields=["due_at"],
                condition=Q(sent_at__isnull=True, cancelled_at__isnull=True),
                name="reminder_pending_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.recipient} at {self.due_at:%Y-%m-%d %H:%M}"


def _new_token() -> str:
    # Only migration 0001 still names this (the token column's old default).
    return secrets.token_urlsafe(32)


class CalendarFeedToken(models.Model):
    """The secret in a person's iCal feed URL: calendar apps cannot log in.

    Stored as a SHA-256, like an API token: the URL is shown once, when it is made, and someone
    who reads the database (a backup, the admin) cannot subscribe to anybody's calendar.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calendar_token")
    prefix = models.CharField(max_length=TOKEN_PREFIX_LENGTH, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Calendar feed of {self.user}"
