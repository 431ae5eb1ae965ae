"""Escalation policy, durable deadlines, firings, status updates and regulatory duties.

Time-based obligations are rows (Deadline), not broker messages: the paging dispatcher claims due
rows, and a firing (EscalationEvent) is unique per (incident, rule, step), so a deadline fires at
most once however many processes race for it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from incidents.models.evidence import obligation_evidence_path


class EscalationPolicy(models.Model):
    """The chain that pages when an incident is not acknowledged within its response time."""

    name = models.CharField(max_length=100, unique=True)
    is_default = models.BooleanField(default=False)
    continue_with = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="When this chain's steps are exhausted, continue with that policy's chain.",
    )
    status_update_escalate_after = models.DurationField(
        help_text="An overdue status update goes to the incident manager this long after the commander's reminder.",
    )
    email_follow_up_after = models.DurationField(
        default=timedelta(minutes=1),
        help_text="For phone/SMS pages (major incidents): the follow-up email goes this long after.",
    )

    class Meta:
        db_table = "incidents_escalationpolicy"  # the table keeps its name from before the split
        verbose_name_plural = "escalation policies"
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_policy"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        seen = {self.pk}
        nxt = self.continue_with
        while nxt is not None:
            if nxt.pk in seen:
                raise ValidationError({"continue_with": "This would make the escalation chain loop back on itself."})
            seen.add(nxt.pk)
            nxt = nxt.continue_with


class EscalationStep(models.Model):
    class Target(models.TextChoices):
        ON_CALL = "on_call", "Whoever is on call for the role"
        ON_CALL_DEPUTY = "on_call_deputy", "The on-call deputy (next in the rotation)"
        ROLE = "role", "The role's contact (deputy if none)"

    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveSmallIntegerField()
    delay = models.DurationField(
        help_text="After the previous step (the first step: after the response time runs out)."
    )
    target = models.CharField(max_length=20, choices=Target.choices)
    role = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="+")

    class Meta:
        db_table = "incidents_escalationstep"  # the table keeps its name from before the split
        ordering = ["policy", "order"]
        constraints = [models.UniqueConstraint(fields=["policy", "order"], name="escalation_step_order_once")]

    def __str__(self) -> str:
        return f"{self.policy} step {self.order}: {self.get_target_display()} ({self.role.name})"


class EscalationTrigger(models.Model):
    """The seed's role escalations: Sev1 → CTO, prolonged Sev2 → CTO, >$5,000 → Head of Risk, ..."""

    class Condition(models.TextChoices):
        SEVERITY = "severity", "Severity at or above a level"
        OPEN_FOR = "open_for", "Still open after a time, at a severity"
        FINANCIAL_IMPACT = "financial_impact", "Financial impact above an amount"
        COMPLIANCE = "compliance", "Compliance flag raised"

    key = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    role = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="+")
    condition = models.CharField(max_length=20, choices=Condition.choices)
    severity_level = models.PositiveSmallIntegerField(null=True, blank=True)
    open_for = models.DurationField(null=True, blank=True)
    amount_usd = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0"))]
    )
    active = models.BooleanField(default=True)

    class Meta:
        db_table = "incidents_escalationtrigger"  # the table keeps its name from before the split
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        needs = {
            self.Condition.SEVERITY: ["severity_level"],
            self.Condition.OPEN_FOR: ["severity_level", "open_for"],
            self.Condition.FINANCIAL_IMPACT: ["amount_usd"],
            self.Condition.COMPLIANCE: [],
        }.get(self.condition, [])
        missing = {f: "Required for this condition." for f in needs if getattr(self, f) in (None, "")}
        if missing:
            raise ValidationError(missing)


class RegulatoryCategory(models.Model):
    """The seed's notification requirements: immediate, within 24 hours, within a business day."""

    class Window(models.TextChoices):
        IMMEDIATE = "immediate", "Immediate"
        WITHIN_24H = "within_24h", "Within 24 hours"
        BUSINESS_DAY = "business_day", "Within a business day"

    key = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    window = models.CharField(max_length=20, choices=Window.choices)
    immediate_grace = models.DurationField(
        null=True, blank=True, help_text="For 'immediate': how long 'immediate' allows (e.g. 1 hour)."
    )
    reminder_before = models.DurationField(help_text="Remind this long before the due time.")
    raise_after_open = models.DurationField(
        null=True,
        blank=True,
        help_text="Raised automatically when a major incident has been open this long (the seed's outage >4 hours).",
    )
    is_compliance = models.BooleanField(default=False, help_text="Raising it pages the Head of Risk Management.")
    raised_automatically = models.BooleanField(default=False, editable=False)

    class Meta:
        db_table = "incidents_regulatorycategory"  # the table keeps its name from before the split
        ordering = ["window", "name"]
        verbose_name_plural = "regulatory categories"

    def __str__(self) -> str:
        return f"{self.name} ({self.get_window_display().lower()})"


class RegulatoryRegime(models.Model):
    """A reporting regime as data: its stages, their clocks and the working-day rule.

    The seed's three windows are the default regime; DORA and the UK's operational incident
    reporting are seeded beside it with the texts they come from (the `citation`)."""

    key = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=160)
    authority = models.CharField(max_length=160, blank=True, help_text="Who receives the reports.")
    citation = models.TextField(help_text="The legal text the stages and clocks come from.")
    effective_from = models.DateField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    active = models.BooleanField(default=True)
    criteria = models.JSONField(
        default=list,
        blank=True,
        help_text="The classification criteria (list of {key, label}) a reportable incident is judged against.",
    )
    moves_off_non_working_days = models.BooleanField(
        default=False, help_text="A deadline falling on a weekend or holiday moves to the next working day."
    )
    moved_due_time = models.TimeField(
        null=True,
        blank=True,
        help_text="Time of day a moved deadline falls due on the next working day (blank: the same time of day).",
    )

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_regime"),
        ]

    def __str__(self) -> str:
        return self.name

    def criteria_labels(self) -> dict[str, str]:
        return {c["key"]: c["label"] for c in self.criteria or []}


class RegimeStage(models.Model):
    """One report a regime asks for, and its clock: within a duration, working days or calendar
    months of an anchor, optionally capped by a time after awareness."""

    class Anchor(models.TextChoices):
        CLASSIFICATION = "classification", "Classification as major / reportable"
        AWARENESS = "awareness", "Becoming aware of the incident"
        PREVIOUS_SUBMISSION = "previous_submission", "Submission of the previous stage"
        RESOLUTION = "resolution", "Resolution of the incident"

    regime = models.ForeignKey(RegulatoryRegime, on_delete=models.CASCADE, related_name="stages")
    order = models.PositiveSmallIntegerField()
    key = models.SlugField(max_length=60)
    name = models.CharField(max_length=120)
    anchor = models.CharField(max_length=30, choices=Anchor.choices)
    within = models.DurationField(null=True, blank=True, help_text="A fixed time after the anchor.")
    within_working_days = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Working days after the anchor's day (due at the close of business)."
    )
    within_months = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Calendar months after.")
    no_later_than_after_awareness = models.DurationField(
        null=True, blank=True, help_text="And in any case no later than this long after becoming aware."
    )
    reminder_before = models.DurationField(default=timedelta(hours=1), help_text="Remind this long before.")
    requires_sign_off = models.BooleanField(
        default=True, help_text="The Head of Risk signs the drafted report off before it is submitted."
    )
    citation = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["regime", "order"]
        constraints = [
            models.UniqueConstraint(fields=["regime", "order"], name="regime_stage_order_once"),
            models.UniqueConstraint(fields=["regime", "key"], name="regime_stage_key_once"),
        ]

    def __str__(self) -> str:
        return f"{self.regime.name}: {self.name}"

    def clean(self) -> None:
        clocks = [self.within, self.within_working_days, self.within_months]
        if sum(c is not None for c in clocks) != 1:
            raise ValidationError("Give exactly one clock: a duration, working days or calendar months.")
        if self.anchor == self.Anchor.PREVIOUS_SUBMISSION and self.order == 1:
            raise ValidationError({"anchor": "The first stage has no previous submission to start from."})


class RegulatoryClassification(models.Model):
    """When an incident was classified under a regime, by whom, and against which criteria.

    One per incident and regime: classifying again creates no second set of obligations."""

    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="classifications")
    regime = models.ForeignKey(RegulatoryRegime, on_delete=models.PROTECT, related_name="+")
    reportable = models.BooleanField(help_text="Major (DORA) / reportable (UK): the regime's reports are owed.")
    criteria_met = models.JSONField(default=list, blank=True)
    rationale = models.TextField(blank=True)
    aware_at = models.DateTimeField(help_text="When the firm became aware of the incident.")
    classified_at = models.DateTimeField()
    classified_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["incident", "regime"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "regime"], name="classification_once_per_regime"),
        ]

    def __str__(self) -> str:
        return f"{self.incident_id} under {self.regime.name}: {'reportable' if self.reportable else 'not reportable'}"


def default_regime_pk() -> int | None:
    """An obligation raised without a regime (the procedures' categories) is the default regime's."""
    return RegulatoryRegime.objects.filter(is_default=True).values_list("pk", flat=True).first()


class RegulatoryObligation(models.Model):
    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="obligations")
    # The seed's categories (default regime) name the obligation; a staged regime's rows have a
    # stage and a classification instead.
    category = models.ForeignKey(RegulatoryCategory, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    regime = models.ForeignKey(
        RegulatoryRegime, on_delete=models.PROTECT, default=default_regime_pk, related_name="obligations"
    )
    stage = models.ForeignKey(RegimeStage, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    classification = models.ForeignKey(
        RegulatoryClassification, on_delete=models.PROTECT, null=True, blank=True, related_name="obligations"
    )
    clock_started_at = models.DateTimeField(
        null=True, blank=True, help_text="The anchor the clock runs from (blank: not started yet)."
    )
    raised_at = models.DateTimeField()
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    due_at = models.DateTimeField(null=True, blank=True)
    content = models.JSONField(default=dict, blank=True, help_text="The drafted report.")
    drafted_at = models.DateTimeField(null=True, blank=True)
    drafted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    submission_reference = models.CharField(max_length=120, blank=True)
    submission_evidence = models.FileField(upload_to=obligation_evidence_path, blank=True, max_length=300)
    signed_off_at = models.DateTimeField(null=True, blank=True)
    signed_off_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        db_table = "incidents_regulatoryobligation"  # the table keeps its name from before the split
        ordering = ["due_at"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "category"], name="obligation_once_per_category"),
            models.UniqueConstraint(
                fields=["incident", "stage"], condition=Q(category__isnull=True), name="obligation_once_per_stage"
            ),
        ]
        permissions = [("sign_off_obligation", "Can sign off a regulatory notification")]

    def __str__(self) -> str:
        due = f"due {self.due_at:%Y-%m-%d %H:%M}" if self.due_at else "clock not started"
        return f"{self.label} for {self.incident_id}, {due}"

    @property
    def label(self) -> str:
        if self.category_id:
            return self.category.name
        return f"{self.regime.name}: {self.stage.name}"

    @property
    def status(self) -> str:
        if self.submitted_at:
            late = self.due_at is not None and self.submitted_at > self.due_at
            if self.signed_off_at and self.signed_off_at <= self.submitted_at:
                return "submitted late" if late else "submitted"
            if self.signed_off_at:
                return "signed off"
            return "submitted late" if late else "submitted"
        if self.signed_off_at:
            return "signed off, to submit"
        if self.due_at is None:
            return "clock not started"
        return "pending"


# An RTO deadline's rule names its system: "rto_breach:<system key>".
RTO_RULE_PREFIX = "rto_breach:"


class Deadline(models.Model):
    class Kind(models.TextChoices):
        ACKNOWLEDGE = "acknowledge", "Acknowledge (escalation chain)"
        ROLE_ESCALATION = "role_escalation", "Role escalation"
        STATUS_UPDATE = "status_update", "Status update due"
        REGULATORY = "regulatory", "Regulatory notification"
        OUTAGE = "outage", "Outage duration check"
        # Post-incident review and action-item reminders (the reports app decides whom they reach).
        REVIEW = "review", "Post-incident review / action item reminder"
        # An affected system not restored within its recovery time objective.
        RTO_BREACH = "rto_breach", "System RTO breached"

    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="deadlines")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    rule = models.CharField(max_length=80, help_text="Which rule of the frozen policy this belongs to.")
    step = models.PositiveSmallIntegerField(default=0)
    due_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "incidents_deadline"  # the table keeps its name from before the split
        ordering = ["due_at", "id"]
        constraints = [
            # At most one pending row per rule step; fired or cancelled ones stay as history.
            models.UniqueConstraint(
                fields=["incident", "rule", "step"],
                condition=Q(fired_at__isnull=True, cancelled_at__isnull=True),
                name="deadline_one_pending_per_step",
            ),
        ]
        indexes = [
            # The beat claim scans only pending rows in due order.
            models.Index(
                fields=["due_at"],
                condition=Q(fired_at__isnull=True, cancelled_at__isnull=True),
                name="deadline_pending_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rule}#{self.step} due {self.due_at:%Y-%m-%d %H:%M:%S}"

    @property
    def pending(self) -> bool:
        return self.fired_at is None and self.cancelled_at is None


class EscalationEvent(models.Model):
    """One firing of one rule step: the unique constraint makes a firing happen exactly once."""

    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="escalations")
    deadline = models.ForeignKey(Deadline, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    rule = models.CharField(max_length=80)
    step = models.PositiveSmallIntegerField(default=0)
    fired_at = models.DateTimeField()
    due_at = models.DateTimeField(null=True, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    target_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    summary = models.CharField(max_length=300)

    class Meta:
        db_table = "incidents_escalationevent"  # the table keeps its name from before the split
        ordering = ["fired_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "rule", "step"], name="escalation_fires_once"),
        ]

    def __str__(self) -> str:
        return f"{self.rule}#{self.step} at {self.fired_at:%Y-%m-%d %H:%M:%S}"


class Audience(models.Model):
    """Whom a status update is for (the seed's internal teams, stakeholders, regulators, users),
    the template the composer offers for it, and the distribution lists it reaches."""

    key = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    order = models.PositiveSmallIntegerField(default=0)
    guidance = models.TextField(blank=True, help_text="What this audience needs (shown in the composer).")
    subject_prefix = models.CharField(max_length=60, default="[INCIDENT]")
    impact_template = models.TextField(
        blank=True, help_text="Offered as the impact text; {impact}, {severity} and {title} are filled in."
    )
    details_template = models.TextField(
        blank=True, help_text="Offered above the details; {eta}, {status} and {next_update} are filled in."
    )
    suggest_public = models.BooleanField(
        default=False, help_text="Offer the public status page (in-app) for this audience."
    )
    include_commander = models.BooleanField(default=False, help_text="The incident commander receives a copy.")
    distribution_lists = models.ManyToManyField("notifications.DistributionList", blank=True, related_name="+")

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name


class StatusUpdate(models.Model):
    """A posted status update in the seed's template; posting resets the update clock."""

    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="status_updates")
    sequence = models.PositiveIntegerField()
    subject = models.CharField(max_length=300)
    status = models.CharField(max_length=30)
    severity_level = models.PositiveSmallIntegerField()
    impact = models.TextField()
    eta = models.CharField("ETA", max_length=120, blank=True)
    next_update_at = models.DateTimeField(null=True, blank=True)
    details = models.TextField()
    contact = models.CharField(max_length=200)
    is_public = models.BooleanField(default=False, help_text="Also shown on the public status page.")
    audience = models.ForeignKey(Audience, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    posted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    posted_at = models.DateTimeField()

    class Meta:
        db_table = "incidents_statusupdate"  # the table keeps its name from before the split
        ordering = ["incident", "-sequence"]
        constraints = [models.UniqueConstraint(fields=["incident", "sequence"], name="status_update_sequence_once")]

    def __str__(self) -> str:
        return self.subject
