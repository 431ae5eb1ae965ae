"""Policy tables seeded from the procedures document and edited in the admin."""

from datetime import timedelta
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class SeverityLevel(models.Model):
    level = models.PositiveSmallIntegerField(unique=True, validators=[MinValueValidator(1), MaxValueValidator(4)])
    name = models.CharField(max_length=40)
    definition = models.TextField()
    financial_threshold_usd = models.DecimalField(
        "financial loss threshold (USD)",
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="An estimated loss at this amount suggests this level. Blank: never suggested by amount.",
    )
    threshold_inclusive = models.BooleanField(
        default=True,
        help_text="Whether a loss exactly at the threshold matches (Sev2 '$1,000-$10,000' yes; Sev1 '>$10,000' no).",
    )
    response_time = models.DurationField(
        null=True, blank=True, help_text="Acknowledge within this. Blank with 'next business day' set."
    )
    response_next_business_day = models.BooleanField(default=False)
    status_update_interval = models.DurationField(
        null=True, blank=True, help_text="Status updates due this often while open. Blank: no cadence."
    )
    examples = models.TextField(blank=True, help_text="One example per line.")
    major = models.BooleanField(
        default=False,
        help_text=(
            "The seed's 'Severity 1/2': paged by phone and SMS first, needs an approved "
            "post-incident report to close, and an outage notification once open long enough."
        ),
    )

    class Meta:
        ordering = ["level"]

    def __str__(self) -> str:
        return f"Sev{self.level} {self.name}"

    @property
    def label(self) -> str:
        return f"{self.name} (Severity {self.level})"

    @property
    def example_list(self) -> list[str]:
        return [line.strip() for line in self.examples.splitlines() if line.strip()]

    @property
    def response_time_label(self) -> str:
        if self.response_next_business_day:
            return "Next business day"
        if self.response_time is None:
            return "—"
        return format_duration(self.response_time)

    def matches_financial_impact(self, amount: Decimal) -> bool:
        if self.financial_threshold_usd is None:
            return False
        if self.threshold_inclusive:
            return amount >= self.financial_threshold_usd
        return amount > self.financial_threshold_usd


class RecoveryPointObjective(models.Model):
    """The seed's RPO classes (trading data 0 min, configuration 15 min, ...)."""

    name = models.CharField(max_length=60, unique=True)
    rpo = models.DurationField(help_text="Maximum acceptable data loss.")

    class Meta:
        ordering = ["rpo"]
        verbose_name = "recovery point objective"

    def __str__(self) -> str:
        return f"{self.name} ({format_duration(self.rpo)})"


class System(models.Model):
    class Tier(models.TextChoices):
        CRITICAL = "critical", "Critical system"
        SUPPORTING = "supporting", "Supporting system"
        INFRASTRUCTURE = "infrastructure", "Infrastructure"

    key = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=100)
    tier = models.CharField(max_length=20, choices=Tier.choices)
    rto = models.DurationField("recovery time objective")
    rpo_class = models.ForeignKey(RecoveryPointObjective, on_delete=models.PROTECT, null=True, blank=True)
    outage_severity = models.ForeignKey(
        SeverityLevel,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        help_text="Severity of an automatically opened incident when this system is down.",
    )

    class Meta:
        ordering = ["tier", "rto", "name"]

    def __str__(self) -> str:
        return self.name


class PhaseTarget(models.Model):
    """How long each response phase may take (the seed's 15-60 min, 1-24 h, 24-72 h).

    Phase 1, detection and initial response (the seed's 0-15 min), has no row: it ends with the
    acknowledgement, so its target is the severity's response time (SeverityLevel), the one rule
    the response-time SLA also follows.
    """

    class Phase(models.TextChoices):
        DETECTION = "detection", "Detection and initial response"
        CONTAINMENT = "containment", "Investigation and containment"
        RECOVERY = "recovery", "Recovery and resolution"
        REVIEW = "review", "Post-incident review"

    phase = models.CharField(max_length=20, choices=Phase.choices, unique=True)
    target = models.DurationField(help_text="Deadline measured from the phase's reference time.")
    measured_from = models.CharField(max_length=120, editable=False, blank=True)

    class Meta:
        ordering = ["target"]

    def __str__(self) -> str:
        return f"{self.get_phase_display()}: {format_duration(self.target)}"


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0 min"
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    parts = []
    if days:
        parts.append(f"{days} d")
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    return " ".join(parts) or f"{seconds} s"
