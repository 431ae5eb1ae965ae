"""The public status page's own records: components, published incidents and their public
updates, scheduled maintenance and its notices, subscribers, and the daily uptime rollup.

Nothing internal reaches the page on its own: an incident appears only once someone publishes a
PublicIncident for it, with a title and messages written for customers.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from incidents.models.timeline import AppendOnlyModel


class ComponentState(models.TextChoices):
    OPERATIONAL = "operational", "Operational"
    MAINTENANCE = "under_maintenance", "Under maintenance"
    DEGRADED = "degraded_performance", "Degraded performance"
    PARTIAL_OUTAGE = "partial_outage", "Partial outage"
    MAJOR_OUTAGE = "major_outage", "Major outage"


# Worst last: a component shows the worst thing that applies to it.
STATE_RANK = {state: rank for rank, state in enumerate(ComponentState.values)}


class StatusComponent(models.Model):
    """A system as customers see it: a public name, a group, and a state set by hand if wanted.

    A system with no component row is still shown, under its own name and tier; the row exists
    to rename, group, order, hide or pin the state of one."""

    system = models.OneToOneField("incidents.System", on_delete=models.CASCADE, related_name="status_component")
    public_name = models.CharField(max_length=100, blank=True, help_text="Blank: the system's name.")
    group = models.CharField(max_length=100, blank=True, help_text="Blank: the system's tier.")
    position = models.PositiveSmallIntegerField(default=0)
    visible = models.BooleanField(default=True)
    manual_state = models.CharField(
        max_length=24,
        choices=ComponentState.choices,
        blank=True,
        help_text="Set by hand; blank: derived from health checks, published incidents and maintenance.",
    )

    class Meta:
        ordering = ["position", "system__name"]

    def __str__(self) -> str:
        return self.public_name or self.system.name


class PublicStatus(models.TextChoices):
    """The words of a public update (Statuspage's): what customers are told, never a severity."""

    INVESTIGATING = "investigating", "Investigating"
    IDENTIFIED = "identified", "Identified"
    MONITORING = "monitoring", "Monitoring"
    RESOLVED = "resolved", "Resolved"


class PublicImpact(models.TextChoices):
    DEGRADED = ComponentState.DEGRADED.value, ComponentState.DEGRADED.label
    PARTIAL_OUTAGE = ComponentState.PARTIAL_OUTAGE.value, ComponentState.PARTIAL_OUTAGE.label
    MAJOR_OUTAGE = ComponentState.MAJOR_OUTAGE.value, ComponentState.MAJOR_OUTAGE.label


class PublicIncident(models.Model):
    """An incident as published on the status page (at most one per internal incident)."""

    incident = models.OneToOneField("incidents.Incident", on_delete=models.PROTECT, related_name="public_incident")
    title = models.CharField(max_length=200)
    impact = models.CharField(max_length=24, choices=PublicImpact.choices)
    systems = models.ManyToManyField("incidents.System", related_name="+", blank=True)
    status = models.CharField(max_length=20, choices=PublicStatus.choices, default=PublicStatus.INVESTIGATING)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    published_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-published_at"]
        permissions = [("publish_status", "Can publish incidents and their updates on the public status page")]
        indexes = [models.Index(fields=["resolved_at"], name="public_incident_resolved")]

    def __str__(self) -> str:
        return self.title


class PublicUpdate(AppendOnlyModel):
    """One message published on the page; a correction is a new update."""

    public_incident = models.ForeignKey(PublicIncident, on_delete=models.PROTECT, related_name="updates")
    status = models.CharField(max_length=20, choices=PublicStatus.choices)
    message = models.TextField()
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    published_at = models.DateTimeField()

    class Meta:
        ordering = ["-published_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_status_display()}: {self.message[:50]}"


class Maintenance(ConcurrentTransitionMixin, models.Model):
    """Scheduled maintenance with its own lifecycle; each step is a notice to subscribers."""

    class State(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    title = models.CharField(max_length=200)
    message = models.TextField()
    systems = models.ManyToManyField("incidents.System", related_name="+", blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    state = FSMField(default=State.SCHEDULED, choices=State.choices, protected=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["starts_at"]
        permissions = [("announce_maintenance", "Can announce maintenance on the public status page")]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="status_maintenance_ends_after_start"),
        ]

    def __str__(self) -> str:
        return self.title

    @transition(field=state, source=State.SCHEDULED, target=State.IN_PROGRESS)
    def start(self) -> None:
        pass

    @transition(field=state, source=State.IN_PROGRESS, target=State.COMPLETED)
    def complete(self) -> None:
        pass

    @transition(field=state, source=State.SCHEDULED, target=State.CANCELLED)
    def cancel(self) -> None:
        pass


class MaintenanceNotice(AppendOnlyModel):
    maintenance = models.ForeignKey(Maintenance, on_delete=models.PROTECT, related_name="notices")
    state = models.CharField(max_length=20, choices=Maintenance.State.choices)
    message = models.TextField()
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    published_at = models.DateTimeField()

    class Meta:
        ordering = ["-published_at", "-id"]


def _token() -> str:
    return secrets.token_urlsafe(32)


class Subscriber(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    email = models.EmailField(blank=True)
    url = models.URLField("webhook URL", max_length=500, blank=True)
    # The webhook's HMAC key: shown once when created, kept to sign every delivery.
    secret = models.CharField(max_length=100, blank=True, editable=False)
    # No components: every component.
    systems = models.ManyToManyField("incidents.System", related_name="+", blank=True)
    confirm_token = models.CharField(max_length=64, unique=True, default=_token, editable=False)
    unsubscribe_token = models.CharField(max_length=64, unique=True, default=_token, editable=False)
    created_at = models.DateTimeField()
    confirmed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    created_from = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(
                fields=["kind"],
                condition=Q(confirmed_at__isnull=False, unsubscribed_at__isnull=True),
                name="status_subscriber_active",
            )
        ]

    def __str__(self) -> str:
        return self.email or self.url

    @property
    def active(self) -> bool:
        return self.confirmed_at is not None and self.unsubscribed_at is None


class SubscriberNotice(models.Model):
    """Which subscriber an outbox row was queued for: how a webhook delivery finds its key."""

    notification = models.OneToOneField(
        "notifications.Notification", on_delete=models.CASCADE, related_name="status_notice"
    )
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="notices")

    def __str__(self) -> str:
        return f"{self.subscriber} ← notification {self.notification_id}"


class UptimeDay(models.Model):
    """One system's health checks on one UTC day, kept after the samples are pruned (90 days)."""

    system = models.ForeignKey("incidents.System", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    ok = models.PositiveIntegerField()
    total = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["system", "day"], name="status_uptime_once_per_day")]
        indexes = [models.Index(fields=["day"], name="status_uptime_by_day")]

    def __str__(self) -> str:
        return f"{self.system_id} {self.day}: {self.ok}/{self.total}"
