"""What changed, for the open pages: a short-lived row per change, read by every event-stream
process. Rows say which kind of page went stale and which incident, never what changed in it:
a page re-fetches its fragments through the ordinary views, which check permissions."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class LiveEvent(models.Model):
    class Topic(models.TextChoices):
        INCIDENT = "incident", "Incident"
        HEALTH = "health", "Health"

    topic = models.CharField(max_length=16, choices=Topic.choices)
    # Not a foreign key: the row is written after the incident's transaction committed and must
    # not take a lock on the incident row (nor outlive a deleted test incident).
    incident_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = "live event"

    def __str__(self) -> str:
        return f"{self.topic} {self.incident_id or ''} at {self.created_at:%H:%M:%S}"
