"""Machine access: per-user API tokens and per-integration alert tokens, stored hashed."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models

TOKEN_PREFIX_LENGTH = 8


def hash_token(raw: str) -> str:
    # Tokens are 32 random bytes, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(raw.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class ApiToken(models.Model):
    """A user's token for scripts; shown once at creation, stored as a SHA-256."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=TOKEN_PREFIX_LENGTH, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "incidents_apitoken"  # the table keeps its name from before the split
        ordering = ["user", "-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class AlertIntegration(models.Model):
    """A monitoring source posting to /api/v1/alerts/, with how its labels map to our data."""

    class Kind(models.TextChoices):
        ALERTMANAGER = "alertmanager", "Prometheus Alertmanager"
        GRAFANA = "grafana", "Grafana alerting"
        GENERIC = "generic", "Generic JSON"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    prefix = models.CharField(max_length=TOKEN_PREFIX_LENGTH, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The account automated incidents are opened as.",
    )
    system_label = models.CharField(max_length=60, default="system", help_text="Label naming the affected system.")
    severity_label = models.CharField(max_length=60, default="severity")
    system_map = models.JSONField(
        default=dict, blank=True, help_text='Label value → system key, e.g. {"cb": "circuit_breaker"}.'
    )
    severity_map = models.JSONField(
        default=dict,
        blank=True,
        help_text='Label value → severity level, e.g. {"critical": 1, "warning": 2, "info": 3}.',
    )
    default_severity = models.PositiveSmallIntegerField(default=3)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "incidents_alertintegration"  # the table keeps its name from before the split
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertEvent(models.Model):
    """Every alert received, firing or resolved, and the incident it opened or joined."""

    integration = models.ForeignKey(AlertIntegration, on_delete=models.PROTECT, related_name="events")
    fingerprint = models.CharField(max_length=200, db_index=True)
    status = models.CharField(max_length=10, choices=[("firing", "Firing"), ("resolved", "Resolved")])
    summary = models.CharField(max_length=300)
    received_at = models.DateTimeField(auto_now_add=True)
    payload = models.JSONField(default=dict)
    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, null=True, blank=True, related_name="alert_events"
    )

    class Meta:
        db_table = "incidents_alertevent"  # the table keeps its name from before the split
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.status} {self.fingerprint}"


class IdempotencyKey(models.Model):
    """An `Idempotency-Key` a client sent with `POST /api/v1/incidents/`, and the incident it
    opened: a retried request (a timeout, a lost answer) gets that incident back instead of
    opening a second one. Per user; forgotten after IDEMPOTENCY_KEY_LIFETIME (an hourly task
    deletes the expired rows)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the request body: the same key with another body is a client bug, refused.
    request_hash = models.CharField(max_length=64)
    incident = models.ForeignKey("incidents.Incident", on_delete=models.CASCADE, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)  # expired rows are purged by age

    class Meta:
        db_table = "incidents_idempotencykey"  # the table keeps its name from before the split
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_once_per_user")]
        verbose_name = "idempotency key"

    def __str__(self) -> str:
        return self.key
