from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition


class PostIncidentReview(ConcurrentTransitionMixin, models.Model):
    """One revision of an incident's post-incident review (the seed's review agenda)."""

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Submitted"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        APPROVED = "approved", "Approved"

    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, related_name="reviews"
    )
    revision = models.PositiveSmallIntegerField(default=1)
    state = FSMField(default=State.DRAFT, choices=State.choices, protected=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    timeline_reconstruction = models.TextField(blank=True)
    root_cause_analysis = models.TextField(blank=True)
    response_effectiveness = models.TextField(blank=True)
    process_improvements = models.TextField(blank=True)
    prevention_measures = models.TextField(blank=True)
    reviewer_comments = models.TextField(blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["incident", "-revision"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "revision"], name="review_revision_once"),
            # The author may not approve their own review.
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True) | ~Q(approved_by=models.F("author")),
                name="review_not_self_approved",
            ),
        ]
        permissions = [("approve_review", "Can approve a post-incident review")]

    def __str__(self) -> str:
        return f"Review r{self.revision} of {self.incident.reference}"

    @transition(field=state, source=[State.DRAFT, State.CHANGES_REQUESTED], target=State.SUBMITTED)
    def submit(self) -> None:
        pass

    @transition(field=state, source=State.SUBMITTED, target=State.CHANGES_REQUESTED)
    def request_changes(self, *, comments: str) -> None:
        self.reviewer_comments = comments

    @transition(field=state, source=State.SUBMITTED, target=State.APPROVED)
    def approve(self, *, by) -> None:
        self.approved_by = by


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
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_date", "id"]
        indexes = [models.Index(fields=["owner", "state", "due_date"], name="action_items_by_owner")]

    def __str__(self) -> str:
        return self.title

    @transition(field=state, source=State.OPEN, target=State.IN_PROGRESS)
    def start(self) -> None:
        pass

    @transition(field=state, source=[State.OPEN, State.IN_PROGRESS], target=State.DONE)
    def complete(self, *, at) -> None:
        self.completed_at = at

    @transition(field=state, source=[State.OPEN, State.IN_PROGRESS], target=State.WONT_DO)
    def decline(self, *, reason: str, at) -> None:
        self.closing_note = reason
        self.completed_at = at
