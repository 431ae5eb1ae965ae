"""Forms for drills and training. They check shape; the services check the rules and write."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from incidents.forms import ISODateInput, ISODateTimeInput
from incidents.models import Incident
from reports.models import ActionItem

from .models import (
    CertificationKind,
    DrillKind,
    DrillResult,
    Duty,
    ParticipantRole,
)

User = get_user_model()


def active_people():
    return User.objects.filter(is_active=True).order_by("first_name", "last_name", "username")


class PersonChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        full = obj.get_full_name()
        return f"{full} ({obj.get_username()})" if full else obj.get_username()


class PeopleChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj) -> str:
        full = obj.get_full_name()
        return f"{full} ({obj.get_username()})" if full else obj.get_username()


class DrillKindChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: DrillKind) -> str:
        return f"{obj.name} — {obj.get_cadence_display().lower()}"


def _minutes(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(minutes=value)


class DrillScheduleForm(forms.Form):
    kind = DrillKindChoiceField(
        queryset=DrillKind.objects.filter(active=True).order_by("cadence", "order"),
        empty_label="Choose a drill or exercise…",
        error_messages={"invalid_choice": "Choose one of the drill kinds."},
    )
    title = forms.CharField(max_length=200, required=False, help_text="Blank: the kind and month.")
    scheduled_start = forms.DateTimeField(label="Starts", widget=ISODateTimeInput())
    duration_minutes = forms.IntegerField(
        label="Duration (minutes)",
        min_value=5,
        max_value=3 * 24 * 60,
        required=False,
        help_text="Blank: the kind's default.",
    )
    facilitator = PersonChoiceField(queryset=active_people(), empty_label="Choose…")
    participants = PeopleChoiceField(
        queryset=active_people(),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="You can add people (with their roles) on the drill's page too.",
    )
    scenario = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), required=False, help_text="Blank: the kind's default scenario."
    )
    objectives = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), required=False, help_text="One per line. Blank: the kind's defaults."
    )

    def clean_participants(self):
        chosen = self.cleaned_data.get("participants")
        raw = self.data.getlist(self.add_prefix("participants")) if hasattr(self.data, "getlist") else []
        twice = {value for value in raw if raw.count(value) > 1}
        if twice:
            names = [
                str(u.get_full_name() or u.get_username())
                for u in User.objects.filter(pk__in=[v for v in twice if str(v).isdigit()])
            ]
            raise forms.ValidationError(
                f"{', '.join(sorted(names)) or 'Someone'} is listed twice; each person takes part once."
            )
        return chosen

    @property
    def duration(self) -> timedelta | None:
        return _minutes(self.cleaned_data.get("duration_minutes"))


class DrillEditForm(forms.Form):
    title = forms.CharField(max_length=200)
    scheduled_start = forms.DateTimeField(label="Starts", widget=ISODateTimeInput())
    duration_minutes = forms.IntegerField(label="Duration (minutes)", min_value=5, max_value=3 * 24 * 60)
    facilitator = PersonChoiceField(queryset=active_people())
    scenario = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}))
    objectives = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), help_text="One per line.")


class ParticipantAddForm(forms.Form):
    user = PersonChoiceField(
        label="Person",
        queryset=active_people(),
        empty_label="Choose…",
        error_messages={"invalid_choice": "Choose a person from the list."},
    )
    role = forms.ChoiceField(choices=ParticipantRole.choices, initial=ParticipantRole.ON_CALL)


class DrillCancelForm(forms.Form):
    reason = forms.CharField(max_length=500, error_messages={"required": "Give the reason for cancelling."})


class DrillOutcomeForm(forms.Form):
    result = forms.ChoiceField(
        choices=DrillResult.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Say whether the objectives were met."},
    )
    outcome_summary = forms.CharField(label="Outcome", widget=forms.Textarea(attrs={"rows": 3}), required=False)
    went_well = forms.CharField(label="What went well", widget=forms.Textarea(attrs={"rows": 3}), required=False)
    could_improve = forms.CharField(
        label="What could improve", widget=forms.Textarea(attrs={"rows": 3}), required=False
    )


class AttendanceForm(forms.Form):
    participant = forms.IntegerField(widget=forms.HiddenInput)
    attended = forms.BooleanField(required=False)
    role = forms.ChoiceField(choices=[("", "—"), *ParticipantRole.choices], required=False, label="Role played")


class TargetActualForm(forms.Form):
    target = forms.IntegerField(widget=forms.HiddenInput)
    actual_minutes = forms.DecimalField(
        label="Achieved (minutes)", min_value=0, max_value=100000, decimal_places=1, required=False
    )


class FindingForm(forms.Form):
    title = forms.CharField(label="Finding", max_length=200, required=False)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    owner = PersonChoiceField(label="Action owner", queryset=active_people(), required=False, empty_label="Choose…")
    due_date = forms.DateField(label="Due", widget=ISODateInput(), required=False)
    kind = forms.ChoiceField(label="Kind", choices=ActionItem.Kind.choices, initial=ActionItem.Kind.IMMEDIATE)

    def is_blank(self) -> bool:
        data = getattr(self, "cleaned_data", {})
        return not (data.get("title") or data.get("owner") or data.get("due_date") or data.get("description"))


AttendanceFormSet = forms.formset_factory(AttendanceForm, extra=0)
TargetFormSet = forms.formset_factory(TargetActualForm, extra=0)
FindingFormSet = forms.formset_factory(FindingForm, extra=2, max_num=20, validate_max=True)


class CertificationKindChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: CertificationKind) -> str:
        return obj.name + (f" ({obj.validity_months} months)" if obj.validity_months else "")


class CertificationForm(forms.Form):
    person = PersonChoiceField(queryset=active_people(), empty_label="Choose…")
    kind = CertificationKindChoiceField(
        label="Certification", queryset=CertificationKind.objects.filter(active=True), empty_label="Choose…"
    )
    issued_on = forms.DateField(label="Issued", widget=ISODateInput())
    expires_on = forms.DateField(
        label="Expires",
        widget=ISODateInput(),
        required=False,
        help_text="Blank: from the certification's validity (the annual one: 12 months).",
    )
    issued_by = PersonChoiceField(queryset=active_people(), help_text="The trainer or assessor.")
    evidence = forms.FileField(required=False, help_text="Certificate or assessment (PDF, image, text).")
    evidence_note = forms.CharField(
        max_length=300,
        required=False,
        label="Evidence note",
        help_text="Course, certificate number, assessment result.",
    )


class MentoredResponseForm(forms.Form):
    mentee = PersonChoiceField(label="New team member", queryset=active_people(), empty_label="Choose…")
    mentor = PersonChoiceField(queryset=active_people(), empty_label="Choose…")
    incident = forms.CharField(label="Incident ID", max_length=32, help_text="e.g. TMT-INC-2026-03-02-001")
    notes = forms.CharField(max_length=300, required=False)

    def clean_incident(self) -> Incident:
        reference = self.cleaned_data["incident"].strip().upper()
        incident = Incident.objects.filter(reference=reference).first()
        if incident is None:
            raise forms.ValidationError(f"There is no incident {reference}.")
        return incident


class MentoringWaiverForm(forms.Form):
    reason = forms.CharField(max_length=300, label="Why no mentoring is needed")


class TrainingProfileForm(forms.Form):
    joined_team_on = forms.DateField(label="Joined the response team", widget=ISODateInput(), required=False)
    mentored_responses_required = forms.IntegerField(
        label="Mentored responses required",
        min_value=0,
        max_value=50,
        required=False,
        help_text="Blank: the policy's number.",
    )


class ProcedureDraftForm(forms.Form):
    title = forms.CharField(max_length=200)
    summary_of_changes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 20}), help_text="Markdown.")


class ReadinessOverrideForm(forms.Form):
    person = PersonChoiceField(queryset=active_people(), empty_label="Choose…")
    duty = forms.ChoiceField(choices=Duty.choices)
    incident = forms.CharField(
        label="Incident ID",
        max_length=32,
        required=False,
        help_text="For command of one incident. Blank: any, within the window.",
    )
    valid_until = forms.DateTimeField(widget=ISODateTimeInput(), label="Valid until")
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))

    def clean_incident(self) -> Incident | None:
        reference = self.cleaned_data["incident"].strip().upper()
        if not reference:
            return None
        incident = Incident.objects.filter(reference=reference).first()
        if incident is None:
            raise forms.ValidationError(f"There is no incident {reference}.")
        return incident


def default_override_until():
    return (timezone.localtime() + timedelta(days=1)).replace(second=0, microsecond=0)
