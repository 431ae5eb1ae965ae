"""Append-only incident history.

An entry is never edited or deleted — not by a view, the admin, a queryset, nor (on PostgreSQL)
raw SQL, which a trigger refuses. A correction is a new entry.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class AppendOnlyError(Exception):
    pass


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only")


class TimelineEntry(AppendOnlyModel):
    class Kind(models.TextChoices):
        NOTE = "note", "Note"
        STATE_CHANGE = "state_change", "State change"
        CHECKLIST = "checklist", "Checklist"
        ESCALATION = "escalation", "Escalation"
        NOTIFICATION = "notification", "Notification"
        HEALTH = "health", "Health"
        EMERGENCY_STOP = "emergency_stop", "Emergency stop"
        STATUS_UPDATE = "status_update", "Status update"
        EVIDENCE = "evidence", "Evidence"
        UPDATE = "update", "Details changed"
        ALERT = "alert", "Monitoring alert"

    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="timeline")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    action = models.TextField()
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    owner_team = models.CharField(max_length=80, blank=True, help_text="When a team or system acted.")
    occurred_at = models.DateTimeField(default=timezone.now, help_text="When it happened.")
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        verbose_name_plural = "timeline entries"
        indexes = [
            # The detail page and the report read one incident's history in time order.
            models.Index(fields=["incident", "occurred_at", "id"], name="timeline_by_incident"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M} {self.get_kind_display()}: {self.action[:60]}"

    @property
    def owner_label(self) -> str:
        if self.owner_id:
            return self.owner.get_full_name() or self.owner.get_username()
        return self.owner_team or "System"

    @property
    def backdated(self) -> bool:
        return (self.recorded_at - self.occurred_at).total_seconds() > 60
