from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from incidents.forms import ISODateInput, ISOMonthInput
from incidents.validators import EARLIEST_YEAR, LATEST_YEAR

from .models import ActionItem, PostIncidentReview
from .selectors import Period, add_months
from .services import MAX_TEXT

# The seed's review agenda (4.1) is the form: each heading groups the fields it covers.
AGENDA = [
    ("Incident timeline reconstruction", ["timeline_reconstruction"]),
    ("Root cause analysis", ["primary_cause", "contributing_factors", "root_cause_analysis"]),
    (
        "Response effectiveness evaluation",
        ["response_effectiveness", "resolution_actions", "verification_steps", "went_well", "could_improve"],
    ),
    ("Process improvement identification", ["process_improvements"]),
    (
        "Prevention measures planning",
        ["prevention_immediate", "prevention_long_term", "monitoring_improvements", "prevention_measures"],
    ),
]
LABELS = {
    "timeline_reconstruction": "What happened when, in your words (the recorded timeline is below the form)",
    "primary_cause": "Primary cause",
    "contributing_factors": "Contributing factors",
    "root_cause_analysis": "Analysis (how the cause was established, evidence)",
    "response_effectiveness": "How effective was the response?",
    "resolution_actions": "Resolution actions",
    "verification_steps": "Verification steps",
    "went_well": "What went well",
    "could_improve": "What could improve",
    "process_improvements": "Process improvements (procedures, runbooks, training)",
    "prevention_immediate": "Immediate actions",
    "prevention_long_term": "Long-term actions",
    "monitoring_improvements": "Monitoring improvements",
    "prevention_measures": "Prevention plan (overall)",
}


class ReviewForm(forms.Form):
    updated_at = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for _, names in AGENDA:
            for name in names:
                self.fields[name] = forms.CharField(
                    label=LABELS[name],
                    required=False,
                    max_length=MAX_TEXT,
                    strip=True,
                    widget=forms.Textarea(attrs={"rows": 3}),
                )

    @classmethod
    def for_review(cls, review: PostIncidentReview) -> ReviewForm:
        initial = {name: getattr(review, name) for _, names in AGENDA for name in names}
        initial["updated_at"] = review.updated_at.isoformat()
        return cls(initial=initial)

    def agenda(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [(heading, [self[name] for name in names]) for heading, names in AGENDA]

    def texts(self) -> dict[str, str]:
        return {name: self.cleaned_data[name] for _, names in AGENDA for name in names}


class RequestChangesForm(forms.Form):
    comments = forms.CharField(
        label="What needs to change", max_length=MAX_TEXT, widget=forms.Textarea(attrs={"rows": 3})
    )


class OwnerChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return obj.get_full_name() or obj.get_username()


class ActionItemForm(forms.Form):
    title = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=ActionItem.Kind.choices)
    owner = OwnerChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("first_name", "last_name", "username"),
        error_messages={"invalid_choice": "Choose one of the listed people."},
    )
    due_date = forms.DateField(widget=ISODateInput())
    description = forms.CharField(required=False, max_length=MAX_TEXT, widget=forms.Textarea(attrs={"rows": 2}))


class ActionItemUpdateForm(forms.Form):
    ACTIONS = [("start", "Start"), ("complete", "Done"), ("decline", "Won't do")]
    action = forms.ChoiceField(choices=ACTIONS)
    note = forms.CharField(required=False, max_length=MAX_TEXT, label="Note / reason")


class MetricsFilterForm(forms.Form):
    """From and to months (inclusive), as <input type="month"> sends them: YYYY-MM."""

    MAX_MONTHS = 60
    start = forms.DateField(
        label="From month",
        input_formats=["%Y-%m"],
        required=False,
        widget=ISOMonthInput(),
    )
    end = forms.DateField(
        label="To month",
        input_formats=["%Y-%m"],
        required=False,
        widget=ISOMonthInput(),
    )

    def clean(self):
        data = super().clean()
        for name in ("start", "end"):
            # The years a search may cover (year 1 or 9999 overflowed the month arithmetic: a 500).
            if data.get(name) and not EARLIEST_YEAR <= data[name].year <= LATEST_YEAR:
                self.add_error(name, f"Choose a month between {EARLIEST_YEAR} and {LATEST_YEAR}.")
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                self.add_error("end", "The last month is before the first.")
            elif (end.year - start.year) * 12 + end.month - start.month >= self.MAX_MONTHS:
                self.add_error("end", f"Choose at most {self.MAX_MONTHS} months.")
        return data

    def period(self, default: Period) -> Period:
        start = self.cleaned_data.get("start") or default.start
        end = self.cleaned_data.get("end")
        end_exclusive = add_months(end.replace(day=1), 1) if end else default.end
        if start >= end_exclusive:
            start = add_months(end_exclusive, -1)
        return Period(start=start.replace(day=1), end=end_exclusive)


def period_label(period: Period) -> str:
    last = add_months(period.end, -1)
    return f"{period.start:%b %Y} – {last:%b %Y}" if last != period.start else f"{period.start:%b %Y}"
