from __future__ import annotations

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q

from . import services
from .models import (
    OPEN_STATES,
    TRANSITION_NAMES,
    Category,
    DetectionMethod,
    Incident,
    IncidentRole,
    SeverityLevel,
    State,
    System,
)
from .validators import happened_problem, incident_time_errors

# Dates are typed as ISO 8601 into text fields, not the browser's date pickers: Chromium draws
# <input type="date"> and "datetime-local" in the browser's own locale (mm/dd/yyyy and a 12-hour
# clock in en-US), whatever the page's lang says. The pattern helps the browser say what is
# wrong before sending; the form field still checks, with a field error, on the server.
ISO_DATETIME_PATTERN = r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?"


def _iso_attrs(placeholder: str, pattern: str, title: str, attrs: dict | None) -> dict:
    return {"placeholder": placeholder, "pattern": pattern, "title": title, "autocomplete": "off", **(attrs or {})}


class ISODateTimeInput(forms.DateTimeInput):
    input_type = "text"

    def __init__(self, attrs: dict | None = None):
        title = "Date and 24-hour time, e.g. 2026-12-06 14:05"
        attrs = _iso_attrs("YYYY-MM-DD HH:MM", ISO_DATETIME_PATTERN, title, attrs)
        super().__init__(attrs=attrs, format="%Y-%m-%d %H:%M")


class ISODateInput(forms.DateInput):
    input_type = "text"

    def __init__(self, attrs: dict | None = None):
        attrs = _iso_attrs("YYYY-MM-DD", r"\d{4}-\d{2}-\d{2}", "A date, e.g. 2026-12-06", attrs)
        super().__init__(attrs=attrs, format="%Y-%m-%d")


class ISOMonthInput(forms.DateInput):
    input_type = "text"

    def __init__(self, attrs: dict | None = None):
        super().__init__(attrs=_iso_attrs("YYYY-MM", r"\d{4}-\d{2}", "A month, e.g. 2026-12", attrs), format="%Y-%m")


class SeverityChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: SeverityLevel) -> str:
        return obj.label


class IncidentCreateForm(forms.ModelForm):
    severity = SeverityChoiceField(
        queryset=SeverityLevel.objects.all(),
        widget=forms.RadioSelect,
        empty_label=None,
        error_messages={
            "invalid_choice": "Choose one of the four severity levels.",
            "required": "Choose a severity level.",
        },
    )
    affected_systems = forms.ModelMultipleChoiceField(
        queryset=System.objects.all(), widget=forms.CheckboxSelectMultiple, required=False
    )
    started_at = forms.DateTimeField(
        label="Start time",
        required=False,
        widget=ISODateTimeInput(),
        help_text="When the problem began, if before now. Leave empty for now.",
    )

    class Meta:
        model = Incident
        fields = [
            "title",
            "severity",
            "category",
            "affected_systems",
            "detection_method",
            "financial_impact_usd",
            "user_impact",
            "description",
            "started_at",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 4}),
            "user_impact": forms.Textarea(attrs={"rows": 2}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["title"].error_messages["required"] = "Give the incident a short title."
        self.fields["detection_method"].initial = DetectionMethod.USER_REPORT
        self.fields["financial_impact_usd"].widget.attrs.update({"min": "0", "step": "0.01", "placeholder": "0.00"})
        self.suggestion: services.SeveritySuggestion | None = None

    def clean_title(self) -> str:
        title = self.cleaned_data["title"].strip()
        if not title:
            raise forms.ValidationError("Give the incident a short title.")
        return title

    def clean(self):
        cleaned = super().clean()
        for field, problem in incident_time_errors(started_at=cleaned.get("started_at"), ended_at=None).items():
            self.add_error(field, problem)
        impact = cleaned.get("financial_impact_usd")
        chosen = cleaned.get("severity")
        self.suggestion = services.severity_suggest(financial_impact_usd=impact)
        if chosen and self.suggestion and chosen.level > self.suggestion.severity.level:
            self.add_error(
                "severity",
                f"{self.suggestion.reason} Choose {self.suggestion.severity.label} or higher.",
            )
        return cleaned


class IncidentDetailsForm(forms.ModelForm):
    """The report fields and descriptive details, edited on the incident page."""

    severity = SeverityChoiceField(queryset=SeverityLevel.objects.all(), empty_label=None)
    affected_systems = forms.ModelMultipleChoiceField(
        queryset=System.objects.all(), widget=forms.CheckboxSelectMultiple, required=False
    )
    started_at = forms.DateTimeField(label="Start time", widget=ISODateTimeInput())
    ended_at = forms.DateTimeField(label="End time", required=False, widget=ISODateTimeInput())

    class Meta:
        model = Incident
        fields = [
            "title",
            "public_title",
            "severity",
            "category",
            "affected_systems",
            "detection_method",
            "financial_impact_usd",
            "user_impact",
            "description",
            "started_at",
            "ended_at",
            "primary_cause",
            "contributing_factors",
            "resolution_actions",
            "verification_steps",
            "went_well",
            "could_improve",
            "prevention_immediate",
            "prevention_long_term",
            "monitoring_improvements",
        ]
        widgets = {
            name: forms.Textarea(attrs={"rows": 3})
            for name in (
                "description",
                "user_impact",
                "primary_cause",
                "contributing_factors",
                "resolution_actions",
                "verification_steps",
                "went_well",
                "could_improve",
                "prevention_immediate",
                "prevention_long_term",
                "monitoring_improvements",
            )
        }

    def clean(self):
        cleaned = super().clean()
        times = incident_time_errors(started_at=cleaned.get("started_at"), ended_at=cleaned.get("ended_at"))
        for field, problem in times.items():
            self.add_error(field, problem)
        return cleaned


class TransitionForm(forms.Form):
    name = forms.ChoiceField(choices=[(n, n) for n in TRANSITION_NAMES])
    expected_state = forms.ChoiceField(choices=State.choices)
    reason = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class ResolveForm(forms.Form):
    """The Resolve action with its resolution actions, on the incident page."""

    resolution_actions = forms.CharField(
        label="Resolution actions",
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "What was done to resolve it"}),
        error_messages={"required": services.RESOLUTION_ACTIONS_REQUIRED},
    )
    expected_state = forms.ChoiceField(choices=State.choices, widget=forms.HiddenInput)

    def clean_resolution_actions(self) -> str:
        text = self.cleaned_data["resolution_actions"].strip()
        if not text:
            raise forms.ValidationError(services.RESOLUTION_ACTIONS_REQUIRED)
        return text


class NoteForm(forms.Form):
    text = forms.CharField(
        label="Note",
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "What happened, what was done", "data-shortcut": "n"}),
        error_messages={"required": "Write something."},
    )
    occurred_at = forms.DateTimeField(
        label="Happened at",
        required=False,
        widget=ISODateTimeInput(),
        help_text="Only if earlier than now.",
    )
    owner_team = forms.CharField(label="Team", required=False, max_length=80)

    def clean_text(self) -> str:
        text = self.cleaned_data["text"].strip()
        if not text:
            raise forms.ValidationError("Write something.")
        return text

    def clean_occurred_at(self):
        # Not before the incident began either: the service knows the incident, and says so.
        value = self.cleaned_data.get("occurred_at")
        if problem := happened_problem(value, what=services.NOTE_TIME):
            raise forms.ValidationError(problem)
        return value


class EvidenceForm(forms.Form):
    file = forms.FileField()
    description = forms.CharField(required=False, max_length=300)


class CommanderForm(forms.Form):
    commander = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("first_name", "username"),
        required=False,
        empty_label="— none —",
    )


class RoleForm(forms.Form):
    """Give an incident role to someone, or (no holder) leave it empty."""

    role = forms.ChoiceField(choices=IncidentRole.choices)
    holder = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("first_name", "username"),
        required=False,
        empty_label="— choose —",
        error_messages={"invalid_choice": "Choose a person from the list."},
    )


class IncidentFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    severity = django_filters.ModelChoiceFilter(
        field_name="severity", queryset=SeverityLevel.objects.all(), empty_label="Any severity"
    )
    state = django_filters.ChoiceFilter(
        choices=[("open", "Any open"), *State.choices], method="filter_state", empty_label="Any state"
    )
    system = django_filters.ModelChoiceFilter(
        queryset=System.objects.all(), method="filter_system", empty_label="Any system", label="System"
    )
    category = django_filters.ChoiceFilter(choices=Category.choices, empty_label="Any category")
    detected_after = django_filters.DateFilter(
        field_name="detected_at",
        lookup_expr="date__gte",
        label="From",
        widget=ISODateInput(),
    )
    detected_before = django_filters.DateFilter(
        field_name="detected_at",
        lookup_expr="date__lte",
        label="To",
        widget=ISODateInput(),
    )

    class Meta:
        model = Incident
        fields = ["q", "severity", "state", "system", "category", "detected_after", "detected_before"]

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(reference__icontains=value) | Q(title__icontains=value))

    def filter_state(self, queryset, name, value):
        if value == "open":
            return queryset.filter(state__in=OPEN_STATES)
        return queryset.filter(state=value)

    def filter_system(self, queryset, name, value):
        # EXISTS instead of a join: no duplicate rows, so no DISTINCT over the whole list.
        through = Incident.affected_systems.through
        return queryset.filter(Exists(through.objects.filter(incident_id=OuterRef("pk"), system_id=value.pk)))
