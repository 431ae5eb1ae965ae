"""Incident reports (rendered PDFs), post-incident reviews, action items and their policy.

The @transition methods are pure (state and the fields that say who/when); reports/services.py
wraps them to check who may act, record the timeline, freeze approved reports and schedule
reminders.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

APPROVE_PERMISSION = "reports.approve_review"
METRICS_PERMISSION = "reports.view_metrics"

# The seed's incident report template, as fields a review revision carries (prefilled from the
# incident's fields when the revision is started). Order = the template's order.
REPORT_TEXT_FIELDS = (
    "primary_cause",
    "contributing_factors",
    "resolution_actions",
    "verification_steps",
    "went_well",
    "could_improve",
    "prevention_immediate",
    "prevention_long_term",
    "monitoring_improvements",
)
# The seed's review agenda (4.1 Post-Incident Review).
AGENDA_FIELDS = (
    "timeline_reconstruction",
    "root_cause_analysis",
    "response_effectiveness",
    "process_improvements",
    "prevention_measures",
)


def _approved_pdf_path(instance: PostIncidentReview, filename: str) -> str:
    return f"reports/{instance.incident.reference}/approved-r{instance.revision}-{filename}"


def _render_pdf_path(instance: ReportRender, filename: str) -> str:
    return f"reports/{instance.incident.reference}/renders/{filename}"


class PostIncidentReview(ConcurrentTransitionMixin, models.Model):
    """One revision of an incident's post-incident review (the seed's review agenda).

    An approved revision is frozen: its report HTML is captured at approval (content SHA-256
    printed in the PDF footer) and its PDF is rendered once, stored with its own SHA-256 and
    never rendered again. A later change needs a new revision.
    """

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Submitted"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        APPROVED = "approved", "Approved"

    OPEN_STATES = (State.DRAFT, State.SUBMITTED, State.CHANGES_REQUESTED)

    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="reviews")
    revision = models.PositiveSmallIntegerField(default=1)
    state = FSMField(default=State.DRAFT, choices=State.choices, protected=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    # The agenda.
    timeline_reconstruction = models.TextField(blank=True)
    root_cause_analysis = models.TextField(blank=True)
    response_effectiveness = models.TextField(blank=True)
    process_improvements = models.TextField(blank=True)
    prevention_measures = models.TextField(blank=True)

    # The report template's text, as this revision has it.
    primary_cause = models.TextField(blank=True)
    contributing_factors = models.TextField(blank=True)
    resolution_actions = models.TextField(blank=True)
    verification_steps = models.TextField(blank=True)
    went_well = models.TextField("what went well", blank=True)
    could_improve = models.TextField("what could improve", blank=True)
    prevention_immediate = models.TextField("immediate prevention actions", blank=True)
    prevention_long_term = models.TextField("long-term prevention actions", blank=True)
    monitoring_improvements = models.TextField(blank=True)

    reviewer_comments = models.TextField(blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    changes_requested_at = models.DateTimeField(null=True, blank=True)
    changes_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    # The frozen report (set once, at approval / by the render task).
    frozen_html = models.TextField(blank=True, editable=False)
    content_sha256 = models.CharField("content SHA-256", max_length=64, blank=True, editable=False)
    pdf = models.FileField(upload_to=_approved_pdf_path, blank=True, max_length=300, editable=False)
    pdf_sha256 = models.CharField("PDF SHA-256", max_length=64, blank=True, editable=False)
    pdf_size = models.PositiveIntegerField(null=True, blank=True, editable=False)
    pdf_rendered_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["incident", "-revision"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "revision"], name="review_revision_once"),
            # The author may not approve their own review.
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True) | ~Q(approved_by=models.F("author")),
                name="review_not_self_approved",
            ),
            # One revision in the works at a time: a second one would fork the text.
            models.UniqueConstraint(
                fields=["incident"],
                condition=Q(state__in=["draft", "submitted", "changes_requested"]),
                name="review_one_open_revision",
            ),
        ]
        permissions = [("approve_review", "Can approve a post-incident review")]

    def __str__(self) -> str:
        return f"Review r{self.revision} of {self.incident.reference}"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES

    @property
    def is_editable(self) -> bool:
        return self.state in (self.State.DRAFT, self.State.CHANGES_REQUESTED)

    @property
    def is_frozen(self) -> bool:
        return self.state == self.State.APPROVED and bool(self.content_sha256)

    @transition(field=state, source=[State.DRAFT, State.CHANGES_REQUESTED], target=State.SUBMITTED)
    def submit(self, *, by=None, at=None) -> None:
        self.submitted_by = by
        if at is not None:
            self.submitted_at = at

    @transition(
        field=state,
        source=State.SUBMITTED,
        target=State.CHANGES_REQUESTED,
        permission=APPROVE_PERMISSION,
    )
    def request_changes(self, *, comments: str, by=None, at=None) -> None:
        self.reviewer_comments = comments
        self.changes_requested_by = by
        self.changes_requested_at = at

    @transition(field=state, source=State.SUBMITTED, target=State.APPROVED, permission=APPROVE_PERMISSION)
    def approve(self, *, by, at=None) -> None:
        self.approved_by = by
        if at is not None:
            self.approved_at = at


class ActionItem(ConcurrentTransitionMixin, models.Model):
    """A follow-up from an incident (the seed's Action Items and Prevention sections)."""

    class Kind(models.TextChoices):
        IMMEDIATE = "immediate", "Immediate action"
        LONG_TERM = "long_term", "Long-term action"
        MONITORING = "monitoring", "Monitoring improvement"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        IN_PROGRESS = "in_progress", "In progress"
        DONE = "done", "Done"
        WONT_DO = "wont_do", "Won't do"

    ACTIVE_STATES = (State.OPEN, State.IN_PROGRESS)

    incident = models.ForeignKey(
        "incidents.Incident",
        on_delete=models.PROTECT,
        related_name="action_items",
        null=True,
        blank=True,
    )
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="action_items")
    due_date = models.DateField()
    state = FSMField(default=State.OPEN, choices=State.choices, protected=True)
    closing_note = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_date", "id"]
        indexes = [models.Index(fields=["owner", "state", "due_date"], name="action_items_by_owner")]
        constraints = [
            # "Won't do" needs its reason on record.
            models.CheckConstraint(
                condition=~Q(state="wont_do") | ~Q(closing_note=""), name="action_item_wont_do_has_reason"
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @transition(field=state, source=State.OPEN, target=State.IN_PROGRESS)
    def start(self) -> None:
        pass

    @transition(field=state, source=[State.OPEN, State.IN_PROGRESS], target=State.DONE)
    def complete(self, *, at, note: str = "") -> None:
        self.completed_at = at
        if note:
            self.closing_note = note

    @transition(field=state, source=[State.OPEN, State.IN_PROGRESS], target=State.WONT_DO)
    def decline(self, *, reason: str, at) -> None:
        self.closing_note = reason
        self.completed_at = at


class ReportRender(models.Model):
    """One rendering of an incident's (unapproved) report to PDF, by the reports queue.

    `source_key` fingerprints what the report was made from (incident fields, timeline, review,
    action items, systems' RTOs, the template itself); a stored PDF is current while the key
    computed now still matches, so a download never serves a PDF that misses later changes
    without saying so.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Queued"
        RENDERING = "rendering", "Rendering"
        DONE = "done", "Rendered"
        FAILED = "failed", "Failed"

    class Reason(models.TextChoices):
        RESOLVED = "resolved", "Incident resolved"
        ON_DEMAND = "on_demand", "Requested"

    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="report_renders")
    timeline_kinds = models.CharField(
        max_length=300, blank=True, help_text="Timeline entry kinds included, comma-separated; empty = all."
    )
    source_key = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    reason = models.CharField(max_length=10, choices=Reason.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    rendered_at = models.DateTimeField(null=True, blank=True)
    pdf = models.FileField(upload_to=_render_pdf_path, blank=True, max_length=300)
    sha256 = models.CharField("PDF SHA-256", max_length=64, blank=True)
    size_bytes = models.PositiveIntegerField(null=True, blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    render_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            # One queued render per report variant and content: a second request joins it.
            models.UniqueConstraint(
                fields=["incident", "timeline_kinds", "source_key"],
                condition=Q(state__in=["pending", "rendering"]),
                name="report_render_once_in_flight",
            ),
        ]
        indexes = [
            # The download and the report page look up the newest render of a variant.
            models.Index(fields=["incident", "timeline_kinds", "-requested_at"], name="report_render_latest"),
        ]
        permissions = [("view_metrics", "Can see response metrics (MTTA, MTTR, SLA, RTO) and export them")]

    def __str__(self) -> str:
        return f"{self.incident_id} report ({self.get_state_display()}, {self.requested_at:%Y-%m-%d %H:%M})"

    @property
    def kinds(self) -> list[str]:
        return [k for k in self.timeline_kinds.split(",") if k]


class ReportPolicy(models.Model):
    """Reminder timings for reviews and action items: seeded defaults, edited in the admin.

    The review itself is due the post-incident review phase target (PhaseTarget "review",
    72 h in the seed) after resolution.
    """

    review_reminder_before = models.DurationField(
        default=timedelta(hours=24), help_text="Remind the review's author this long before the review is due."
    )
    review_escalate_after = models.DurationField(
        default=timedelta(hours=24),
        help_text="A review still not approved this long after it was due goes to the incident manager.",
    )
    action_item_reminder_before = models.DurationField(
        default=timedelta(days=2), help_text="Remind an action item's owner this long before its due date ends."
    )
    action_item_escalate_after = models.DurationField(
        default=timedelta(days=3),
        help_text="An action item still open this long after its due date goes to the incident manager.",
    )

    class Meta:
        verbose_name = "report and review policy"
        verbose_name_plural = "report and review policy"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="report_policy_singleton")]

    def __str__(self) -> str:
        return "Report and review policy"

    @classmethod
    def load(cls) -> ReportPolicy:
        policy, _ = cls.objects.get_or_create(pk=1)
        return policy
