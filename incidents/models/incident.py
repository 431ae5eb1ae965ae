"""The incident record and its lifecycle.

The @transition methods are pure: they change state and timestamps only. incident_transition
(incidents/services/incident.py) wraps them to write the timeline, attach checklists and call the
apps above through incidents/hooks.py (escalation arms or cancels deadlines, reports renders), so a
transition from the web, the admin, the API or a task behaves the same.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from incidents.hooks import hooks

from .policy import SeverityLevel, System

MAX_FINANCIAL_IMPACT_USD = Decimal("1000000000")  # $1bn: above this an estimate is a typo


class State(models.TextChoices):
    DETECTED = "detected", "Detected"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    INVESTIGATING = "investigating", "Investigating"
    CONTAINED = "contained", "Contained"
    RECOVERING = "recovering", "Recovering"
    RESOLVED = "resolved", "Resolved"
    IN_REVIEW = "in_review", "In review"
    CLOSED = "closed", "Closed"
    CANCELLED = "cancelled", "Cancelled"


OPEN_STATES = [
    State.DETECTED,
    State.ACKNOWLEDGED,
    State.INVESTIGATING,
    State.CONTAINED,
    State.RECOVERING,
]
# States the seed's status template calls Investigating / Contained / Resolved.
STATUS_WORD = {
    State.DETECTED: "Investigating",
    State.ACKNOWLEDGED: "Investigating",
    State.INVESTIGATING: "Investigating",
    State.CONTAINED: "Contained",
    State.RECOVERING: "Contained",
    State.RESOLVED: "Resolved",
    State.IN_REVIEW: "Resolved",
    State.CLOSED: "Resolved",
    State.CANCELLED: "Cancelled",
}
# What a status update may say (the seed template's "Status: [Investigating/Contained/Resolved]").
STATUS_UPDATE_WORDS = ("Investigating", "Contained", "Resolved")


class Category(models.TextChoices):
    OPERATIONAL = "operational", "Operational / trading"
    SECURITY = "security", "Security"
    COMPLIANCE = "compliance", "Compliance / regulatory"
    DATA = "data", "Data integrity"


class DetectionMethod(models.TextChoices):
    AUTOMATED_ALERT = "automated_alert", "Automated alert (monitoring)"
    USER_REPORT = "user_report", "User report"
    EXTERNAL_NOTIFICATION = "external_notification", "External notification (broker / data provider)"
    HEALTH_CHECK = "health_check", "System health check"


# Reading an incident's page, and so everything on it (timeline, status updates, escalation clocks).
VIEW_PERMISSION = "incidents.view_incident"
TRANSITION_PERMISSION = "incidents.transition_incident"
CLOSE_PERMISSION = "incidents.close_incident"


class IncidentDaySequence(models.Model):
    """Last number handed out per UTC day; the row lock makes TMT-INC-...-NNN gap-free."""

    day = models.DateField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d}: {self.last_number}"


class Incident(ConcurrentTransitionMixin, models.Model):
    reference = models.CharField("incident ID", max_length=32, unique=True, editable=False)
    reference_day = models.DateField(editable=False)
    reference_number = models.PositiveIntegerField(editable=False)

    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    severity = models.ForeignKey(SeverityLevel, on_delete=models.PROTECT, related_name="+")
    category = models.CharField(max_length=20, choices=Category.choices, default=Category.OPERATIONAL)
    detection_method = models.CharField(max_length=30, choices=DetectionMethod.choices)
    affected_systems = models.ManyToManyField(System, blank=True, related_name="incidents")
    financial_impact_usd = models.DecimalField(
        "estimated financial impact (USD)",
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(MAX_FINANCIAL_IMPACT_USD)],
    )
    user_impact = models.TextField("user / system impact", blank=True)
    is_drill = models.BooleanField(
        default=False, help_text="Exercise incident: excluded from real metrics and obligations."
    )
    public_title = models.CharField(
        max_length=200, blank=True, help_text="Shown on the public status page instead of the internal title."
    )
    # Automated detection: the system a health check opened this for, and the monitoring alert's
    # fingerprint. Each is unique among open incidents (constraints below), which is what makes
    # "at most one open automated incident per system / per alert" hold under concurrent pollers.
    automated_system = models.ForeignKey(
        System, on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    alert_fingerprint = models.CharField(max_length=200, blank=True, editable=False)

    state = FSMField(default=State.DETECTED, choices=State.choices, protected=True, db_index=True)
    reported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reported_incidents"
    )
    commander = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="commanded_incidents",
        verbose_name="incident commander",
    )

    # The report's Start/End Time: when the problem began and ended (editable, may precede
    # detection). The phase timestamps below are when the team did things (not editable).
    started_at = models.DateTimeField("start time")
    ended_at = models.DateTimeField("end time", null=True, blank=True)
    detected_at = models.DateTimeField(default=timezone.now, editable=False)
    acknowledged_at = models.DateTimeField(null=True, blank=True, editable=False)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    investigating_at = models.DateTimeField(null=True, blank=True, editable=False)
    contained_at = models.DateTimeField(null=True, blank=True, editable=False)
    recovering_at = models.DateTimeField(null=True, blank=True, editable=False)
    resolved_at = models.DateTimeField(null=True, blank=True, editable=False)
    review_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    closed_at = models.DateTimeField(null=True, blank=True, editable=False)
    cancelled_at = models.DateTimeField(null=True, blank=True, editable=False)
    cancel_reason = models.TextField(blank=True, editable=False)

    # The seed's incident report template.
    primary_cause = models.TextField(blank=True)
    contributing_factors = models.TextField(blank=True)
    resolution_actions = models.TextField(blank=True)
    verification_steps = models.TextField(blank=True)
    went_well = models.TextField("what went well", blank=True)
    could_improve = models.TextField("what could improve", blank=True)
    prevention_immediate = models.TextField("immediate prevention actions", blank=True)
    prevention_long_term = models.TextField("long-term prevention actions", blank=True)
    monitoring_improvements = models.TextField(blank=True)

    # The escalation policy as it was when the incident opened (DESIGN: freeze the policy at
    # open), so an admin edit never rewrites an escalation in flight.
    escalation_snapshot = models.JSONField(default=dict, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-detected_at"]
        constraints = [
            models.UniqueConstraint(fields=["reference_day", "reference_number"], name="incident_reference_per_day"),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=models.F("started_at")),
                name="incident_end_not_before_start",
            ),
            models.CheckConstraint(
                condition=Q(financial_impact_usd__isnull=True) | Q(financial_impact_usd__gte=0),
                name="incident_financial_impact_not_negative",
            ),
            models.UniqueConstraint(
                fields=["automated_system"],
                condition=Q(automated_system__isnull=False, state__in=OPEN_STATES),
                name="one_open_automated_incident_per_system",
            ),
            models.UniqueConstraint(
                fields=["alert_fingerprint"],
                condition=~Q(alert_fingerprint="") & Q(state__in=OPEN_STATES),
                name="one_open_incident_per_alert_fingerprint",
            ),
        ]
        indexes = [
            # The dashboard and list filter open incidents by severity, newest first.
            models.Index(fields=["state", "severity", "-detected_at"], name="incident_open_by_sev"),
            models.Index(fields=["-detected_at"], name="incident_newest"),
        ]
        permissions = [
            ("transition_incident", "Can move an incident through its phases"),
            ("close_incident", "Can close an incident after review"),
            ("assign_commander", "Can assign the incident commander"),
            ("trigger_emergency_stop", "Can trigger the trading emergency stop"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("incidents:detail", args=[self.reference])

    # -- derived figures -------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def status_word(self) -> str:
        return STATUS_WORD[State(self.state)]

    @property
    def time_to_acknowledge(self):
        return self.acknowledged_at - self.detected_at if self.acknowledged_at else None

    @property
    def time_to_resolve(self):
        return self.resolved_at - self.detected_at if self.resolved_at else None

    @property
    def duration(self):
        end = self.ended_at or self.resolved_at
        return end - self.started_at if end else None

    # -- guards (pure) ---------------------------------------------------------------------
    def initial_assessment_done(self) -> bool:
        # Iterates .all() rather than filtering so a page that prefetched the checklist (the
        # detail page) answers every guard from that one query.
        return not any(item.gates_containment and item.done_at is None for item in self.checklist_items.all())

    def has_resolution_actions(self) -> bool:
        return bool(self.resolution_actions.strip())

    def review_approved_if_required(self) -> bool:
        if not self.severity.major:
            return True
        return all(guard(incident=self) for guard in hooks.close_guards)

    # -- transitions (pure: state and timestamps only) -------------------------------------
    @transition(
        field=state,
        source=State.DETECTED,
        target=State.ACKNOWLEDGED,
        permission=TRANSITION_PERMISSION,
        custom={"label": "Acknowledge"},
    )
    def acknowledge(self, *, by=None, at: datetime | None = None) -> None:
        self.acknowledged_at = at or timezone.now()
        self.acknowledged_by = by

    @transition(
        field=state,
        source=State.ACKNOWLEDGED,
        target=State.INVESTIGATING,
        permission=TRANSITION_PERMISSION,
        custom={"label": "Start investigation"},
    )
    def start_investigation(self, *, at: datetime | None = None) -> None:
        self.investigating_at = self.investigating_at or at or timezone.now()

    @transition(
        field=state,
        source=State.INVESTIGATING,
        target=State.CONTAINED,
        conditions=[initial_assessment_done],
        permission=TRANSITION_PERMISSION,
        custom={"label": "Mark contained"},
    )
    def contain(self, *, at: datetime | None = None) -> None:
        self.contained_at = at or timezone.now()

    @transition(
        field=state,
        source=State.CONTAINED,
        target=State.RECOVERING,
        conditions=[initial_assessment_done],
        permission=TRANSITION_PERMISSION,
        custom={"label": "Start recovery"},
    )
    def start_recovery(self, *, at: datetime | None = None) -> None:
        self.recovering_at = at or timezone.now()

    @transition(
        field=state,
        source=[State.CONTAINED, State.RECOVERING],
        target=State.RESOLVED,
        conditions=[initial_assessment_done, has_resolution_actions],
        permission=TRANSITION_PERMISSION,
        custom={"label": "Resolve"},
    )
    def resolve(self, *, at: datetime | None = None) -> None:
        self.resolved_at = at or timezone.now()
        if self.ended_at is None:
            self.ended_at = self.resolved_at

    @transition(
        field=state,
        source=[State.RESOLVED, State.IN_REVIEW],
        target=State.INVESTIGATING,
        permission=TRANSITION_PERMISSION,
        custom={"label": "Reopen"},
    )
    def reopen(self) -> None:
        # The earlier resolution stays on the timeline; the clocks run again from here.
        self.resolved_at = None
        self.ended_at = None
        self.review_started_at = None

    @transition(
        field=state,
        source=State.RESOLVED,
        target=State.IN_REVIEW,
        permission=TRANSITION_PERMISSION,
        custom={"label": "Start post-incident review"},
    )
    def start_review(self, *, at: datetime | None = None) -> None:
        self.review_started_at = at or timezone.now()

    @transition(
        field=state,
        source=[State.RESOLVED, State.IN_REVIEW],
        target=State.CLOSED,
        conditions=[review_approved_if_required],
        permission=CLOSE_PERMISSION,
        custom={"label": "Close"},
    )
    def close(self, *, at: datetime | None = None) -> None:
        self.closed_at = at or timezone.now()

    @transition(
        field=state,
        source=OPEN_STATES,
        target=State.CANCELLED,
        permission=TRANSITION_PERMISSION,
        custom={"label": "Cancel (false alarm)", "needs_reason": True},
    )
    def cancel(self, *, reason: str, at: datetime | None = None) -> None:
        self.cancel_reason = reason
        self.cancelled_at = at or timezone.now()


# What a step waits for, by the condition that holds it back: the refusal and the blocked button
# say the first one unmet (an assessment item unticked after containment holds recovery and the
# resolve back as well, with the actions recorded).
CONDITION_REFUSALS = {
    "initial_assessment_done": "Complete the initial assessment checklist first.",
    "has_resolution_actions": "Record the resolution actions first.",
    "review_approved_if_required": "Severity 1 and 2 incidents need an approved post-incident report.",
}

TRANSITION_NAMES = [
    "acknowledge",
    "start_investigation",
    "contain",
    "start_recovery",
    "resolve",
    "reopen",
    "start_review",
    "close",
    "cancel",
]


def _permission_of(name: str) -> str:
    (permission,) = {t.permission for t in getattr(Incident, name)._django_fsm.transitions.values()}
    return permission


# The permission each transition needs, read from its @transition (the same from every source
# state): the service checks it first, the API before anything else, so a role without it is
# refused alike on the page and in the API, whatever state the incident is in.
TRANSITION_PERMISSIONS: dict[str, str] = {name: _permission_of(name) for name in TRANSITION_NAMES}
