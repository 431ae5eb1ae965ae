"""People, escalation roles and on-call rotations: who is paged, now or at any time T."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q

from incidents.models.calendar import validate_timezone

e164 = RegexValidator(
    r"^\+[1-9]\d{6,14}$",
    "Enter the number in E.164 form: + then country code and number, digits only (e.g. +442071234567).",
)


class Person(models.Model):
    """How to reach a user. Email comes from the user account."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="person")
    phone = models.CharField(max_length=16, blank=True, validators=[e164], help_text="E.164, for voice calls.")
    sms_number = models.CharField(max_length=16, blank=True, validators=[e164], help_text="E.164. Blank: use phone.")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])

    class Meta:
        db_table = "incidents_person"  # the table keeps its name from before the split
        verbose_name = "person (contact details)"
        verbose_name_plural = "people (contact details)"

    def __str__(self) -> str:
        return self.user.get_full_name() or self.user.get_username()

    @property
    def sms_address(self) -> str:
        return self.sms_number or self.phone


class RoleContact(models.Model):
    """Who answers for an escalation role (CTO, Head of Risk Management, CEO, Incident Manager)."""

    role = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="contact")
    primary = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    deputy = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )

    class Meta:
        db_table = "incidents_rolecontact"  # the table keeps its name from before the split
        ordering = ["role__name"]
        constraints = [
            models.CheckConstraint(condition=~Q(deputy=F("primary")), name="role_deputy_not_primary"),
        ]

    def __str__(self) -> str:
        return f"{self.role.name}: {self.primary}"

    def clean(self) -> None:
        if self.deputy_id and self.deputy_id == self.primary_id:
            raise ValidationError({"deputy": "The deputy must be someone other than the primary."})


class OnCallRotation(models.Model):
    class Shift(models.TextChoices):
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"

    name = models.CharField(max_length=100, unique=True)
    role = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="rotations")
    shift = models.CharField(max_length=10, choices=Shift.choices, default=Shift.WEEKLY)
    handover_time = models.TimeField(default=time(9, 0), help_text="Local time of the hand-over.")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    starts_on = models.DateField(help_text="The first member's first shift starts at the hand-over on this day.")
    active = models.BooleanField(default=True)

    class Meta:
        db_table = "incidents_oncallrotation"  # the table keeps its name from before the split
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def shift_days(self) -> int:
        return 7 if self.shift == self.Shift.WEEKLY else 1

    def shift_index_at(self, at: datetime) -> int:
        """Which shift (0, 1, 2, ...) covers `at`; counted in local days, so DST is handled."""
        local = at.astimezone(ZoneInfo(self.timezone))
        # Before today's hand-over the previous day's shift is still on.
        shifted = local - timedelta(hours=self.handover_time.hour, minutes=self.handover_time.minute)
        return (shifted.date() - self.starts_on).days // self.shift_days

    def shift_bounds(self, index: int) -> tuple[datetime, datetime]:
        tz = ZoneInfo(self.timezone)
        start_day = self.starts_on + timedelta(days=index * self.shift_days)
        end_day = start_day + timedelta(days=self.shift_days)
        return (
            datetime.combine(start_day, self.handover_time, tzinfo=tz),
            datetime.combine(end_day, self.handover_time, tzinfo=tz),
        )


class RotationMember(models.Model):
    rotation = models.ForeignKey(OnCallRotation, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        db_table = "incidents_rotationmember"  # the table keeps its name from before the split
        ordering = ["rotation", "position"]
        constraints = [
            models.UniqueConstraint(fields=["rotation", "position"], name="rotation_position_once"),
            models.UniqueConstraint(fields=["rotation", "user"], name="rotation_member_once"),
        ]

    def __str__(self) -> str:
        return f"{self.rotation}: #{self.position} {self.user}"


class OnCallOverride(models.Model):
    """A holiday cover or a swap: `user` is on call instead, between the two times."""

    rotation = models.ForeignKey(OnCallRotation, on_delete=models.CASCADE, related_name="overrides")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "incidents_oncalloverride"  # the table keeps its name from before the split
        ordering = ["rotation", "starts_at"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="override_ends_after_start"),
        ]
        indexes = [models.Index(fields=["rotation", "starts_at", "ends_at"], name="override_lookup")]

    def __str__(self) -> str:
        return f"{self.user} covers {self.rotation} {self.starts_at:%Y-%m-%d %H:%M}–{self.ends_at:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "The end must be after the start."})
