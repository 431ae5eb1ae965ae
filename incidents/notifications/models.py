"""The outbox: every page, email and webhook call is a row, delivered by the paging dispatcher;
each delivery attempt is an append-only log entry.

A row may name the escalation event or status update it was sent for (foreign keys by name: a
link in the schema only; this app's code never imports the escalation app)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from incidents.models.timeline import AppendOnlyModel


class WebhookEndpoint(models.Model):
    """A chat or automation hook (Slack-compatible JSON) that receives escalations and status updates."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500)
    active = models.BooleanField(default=True)
    max_severity_level = models.PositiveSmallIntegerField(
        default=4, help_text="Only incidents at this severity level or more severe (1 = Sev1 only)."
    )

    class Meta:
        db_table = "incidents_webhookendpoint"  # the table keeps its name from before the split

    def __str__(self) -> str:
        return self.name


class DistributionList(models.Model):
    """Who receives status updates for incidents of a severity (the seed's stakeholders)."""

    name = models.CharField(max_length=100, unique=True)
    max_severity_level = models.PositiveSmallIntegerField(
        default=2, help_text="Used for incidents at this severity level or more severe."
    )
    emails = models.TextField(blank=True, help_text="One address per line.")
    webhooks = models.ManyToManyField(WebhookEndpoint, blank=True)

    class Meta:
        db_table = "incidents_distributionlist"  # the table keeps its name from before the split

    def __str__(self) -> str:
        return self.name

    @property
    def email_list(self) -> list[str]:
        return [line.strip() for line in self.emails.splitlines() if line.strip()]

    def clean(self) -> None:
        from django.core.validators import validate_email

        for address in self.email_list:
            try:
                validate_email(address)
            except ValidationError as exc:
                raise ValidationError({"emails": f"“{address}” is not an email address."}) from exc


class Notification(models.Model):
    class Channel(models.TextChoices):
        SMS = "sms", "SMS"
        PHONE = "phone", "Phone call"
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed permanently"
        SKIPPED = "skipped", "Not needed any more"

    # None for a message about no incident (a drill or certification reminder).
    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, null=True, blank=True, related_name="notifications"
    )
    event = models.ForeignKey(
        "escalation.EscalationEvent", on_delete=models.PROTECT, null=True, blank=True, related_name="notifications"
    )
    status_update = models.ForeignKey(
        "escalation.StatusUpdate", on_delete=models.PROTECT, null=True, blank=True, related_name="notifications"
    )
    channel = models.CharField(max_length=10, choices=Channel.choices)
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    address = models.CharField(max_length=500)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(help_text="Not sent before this (email follow-ups wait for the page).")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "incidents_notification"  # the table keeps its name from before the split
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "channel", "address"],
                condition=Q(event__isnull=False),
                name="notification_once_per_event_channel_address",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(state__in=["pending", "sending"]),
                name="notification_undelivered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} to {self.address}: {self.subject[:50]}"


class NotificationAttempt(AppendOnlyModel):
    class Outcome(models.TextChoices):
        SENT = "sent", "Sent"
        TRANSIENT = "transient", "Failed, will retry"
        PERMANENT = "permanent", "Failed permanently"
        SKIPPED = "skipped", "Not sent, no longer needed"

    notification = models.ForeignKey(Notification, on_delete=models.PROTECT, related_name="attempt_log")
    attempted_at = models.DateTimeField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        db_table = "incidents_notificationattempt"  # the table keeps its name from before the split
        ordering = ["attempted_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} at {self.attempted_at:%H:%M:%S}"


class AckLink(models.Model):
    """The one-tap acknowledgement link a page carries (SMS, voice, email): it stands for the
    paged person on this incident, once, until it expires, with no password and no session.

    Only a SHA-256 of the token is stored, like the calendar feed tokens: the token itself is an
    HMAC of the page's id under the SECRET_KEY (the same on a re-send after a crash), so someone
    who reads the database or a backup, the outbox's bodies included, cannot acknowledge with it.
    """

    notification = models.OneToOneField(Notification, on_delete=models.PROTECT, related_name="ack_link")
    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Acknowledgement link for {self.user} on {self.incident_id}"


class ProviderReply(AppendOnlyModel):
    """An SMS reply or voice keypress from the provider that did something (acknowledged or
    escalated). Its provider id is unique, so a replayed request inside the signature's time
    window is refused rather than escalating twice. Refused requests write nothing."""

    class Channel(models.TextChoices):
        SMS = "sms", "SMS reply"
        VOICE = "voice", "Voice keypress"

    provider_id = models.CharField(max_length=100, unique=True)
    channel = models.CharField(max_length=5, choices=Channel.choices)
    sender = models.CharField(max_length=50)
    text = models.CharField(max_length=160)
    notification = models.ForeignKey(Notification, on_delete=models.PROTECT, related_name="replies")
    outcome = models.CharField(max_length=300)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["received_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} from {self.sender}: {self.text}"
