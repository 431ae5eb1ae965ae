"""The readiness gate on the on-call roster's admin forms.

drills/admin.py mixes these into the roster's rotation-member and override admins: putting
someone on call whose required certification has expired (or will, during the cover), or who has
not finished mentoring, is a field error naming the reason. A manager may tick “Override
readiness” and give a justification; the override is recorded (drills.ReadinessOverride) when the
row is saved, and only then.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django import forms
from django.utils import timezone

from . import services
from .models import OVERRIDE_PERMISSION, Duty

GATE_FIELDS = ("readiness_override", "readiness_justification")
ADMIN_HINT = "A manager may tick “Override readiness” and give a justification."


class ReadinessGateForm(forms.Form):
    readiness_override = forms.BooleanField(
        required=False,
        label="Override readiness",
        help_text="Managers only: put this person on call despite the readiness gate.",
    )
    readiness_justification = forms.CharField(
        required=False,
        label="Override justification",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 28}),
    )

    # Set per request on the generated form class (see the admin mixins below).
    gate_request_user = None

    def __init__(self, *args, gate_rotation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate_rotation = gate_rotation
        self._gate_grant: dict | None = None

    def _gate_window(self, cleaned: dict, rotation) -> tuple[datetime, datetime | None] | None:
        now = timezone.now()
        if "starts_at" in self.fields:  # an override (cover or swap)
            start, end = cleaned.get("starts_at"), cleaned.get("ends_at")
            if start is None or end is None or end <= now:
                return None  # its own errors come first; a cover wholly in the past is history
            return max(start, now), end
        # A rotation member: from now, or from the rotation's first hand-over if it starts later.
        if rotation.starts_on is None or rotation.handover_time is None or not rotation.timezone:
            return None
        try:
            first = datetime.combine(rotation.starts_on, rotation.handover_time, tzinfo=ZoneInfo(rotation.timezone))
        except (KeyError, ValueError):
            return None
        return max(now, first), None

    def clean(self):
        cleaned = super().clean()
        person = cleaned.get("user")
        rotation = cleaned.get("rotation") or self.gate_rotation
        if person is None or rotation is None or getattr(rotation, "role_id", None) is None:
            return cleaned
        if self.instance.pk and not {"user", "starts_at", "ends_at", "rotation"} & set(self.changed_data):
            return cleaned  # e.g. a member's position moved: not a new assignment
        window = self._gate_window(cleaned, rotation)
        if window is None:
            return cleaned
        start, end = window
        problems = services.readiness_problems_between(
            user=person, start=start, end=end, duty=Duty.ON_CALL, roles=[rotation.role.name]
        )
        if not problems:
            return cleaned
        if not cleaned.get("readiness_override"):
            self.add_error(
                "user",
                services.readiness_message(user=person, duty=Duty.ON_CALL, problems=problems, hint=ADMIN_HINT),
            )
            return cleaned
        manager = self.gate_request_user
        justification = (cleaned.get("readiness_justification") or "").strip()
        if manager is None or not manager.has_perm(OVERRIDE_PERMISSION):
            self.add_error("readiness_override", "Only a manager may override the readiness gate.")
        elif manager.pk == person.pk:
            self.add_error("readiness_override", "A manager cannot override the gate for themselves.")
        elif not justification:
            self.add_error("readiness_justification", "Give the justification for the override; it is kept on record.")
        else:
            self._gate_grant = {
                "person": person,
                "duty": Duty.ON_CALL,
                "justification": justification,
                "granted_by": manager,
                "valid_from": start,
                "valid_until": end or start + timedelta(minutes=1),
                "problems": problems,
                "rotation": rotation,
            }
        return cleaned

    def save(self, commit: bool = True):
        instance = super().save(commit=commit)
        if self._gate_grant is not None:
            if commit:
                self._gate_record(instance)
            else:
                # The admin saves the row itself (save_model / a formset's commit=False), then
                # calls save_m2m: record the override once the row exists.
                save_m2m = self.save_m2m

                def save_m2m_and_record() -> None:
                    save_m2m()
                    self._gate_record(instance)

                self.save_m2m = save_m2m_and_record
        return instance

    def _gate_record(self, instance) -> None:
        grant, self._gate_grant = self._gate_grant, None
        rotation = grant.pop("rotation")
        services.readiness_override_record(context=f"{rotation.name}: {instance}", **grant)


def gated(form_class: type[forms.BaseForm]) -> type[forms.BaseForm]:
    if issubclass(form_class, ReadinessGateForm):
        return form_class
    return type(form_class)(f"ReadinessGated{form_class.__name__}", (ReadinessGateForm, form_class), {})


class _GateFieldsMixin:
    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        return fields + [name for name in GATE_FIELDS if name not in fields]


class ReadinessGateInlineMixin(_GateFieldsMixin):
    """For the rotation's member and override inlines."""

    def get_formset(self, request, obj=None, **kwargs):
        kwargs["form"] = gated(kwargs.get("form", self.form))
        formset = super().get_formset(request, obj, **kwargs)
        formset.form.gate_request_user = request.user  # a class made for this request

        class GatedFormSet(formset):
            def get_form_kwargs(self, index):
                form_kwargs = super().get_form_kwargs(index)
                form_kwargs["gate_rotation"] = self.instance
                return form_kwargs

        GatedFormSet.__name__ = formset.__name__
        return GatedFormSet


class ReadinessGateAdminMixin(_GateFieldsMixin):
    """For the overrides' own admin."""

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = gated(kwargs.get("form", self.form))
        form = super().get_form(request, obj, change=change, **kwargs)
        form.gate_request_user = request.user
        return form
