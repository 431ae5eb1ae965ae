from __future__ import annotations

from django import forms

from incidents.models import System
from incidents.runbooks.models import Procedure, StepRecord
from incidents.runbooks.services import MAX_STEPS, MAX_TEXT, StepInput


class SearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    system = forms.ModelChoiceField(
        queryset=System.objects.all(), to_field_name="key", required=False, empty_label="Any system"
    )


class StartForm(forms.Form):
    runbook = forms.IntegerField(widget=forms.HiddenInput)


class StepRecordForm(forms.Form):
    # The step is in the URL; the field carries its errors (out of order, already recorded).
    step = forms.CharField(required=False, widget=forms.HiddenInput)
    outcome = forms.ChoiceField(choices=StepRecord.Outcome.choices)
    reason = forms.CharField(required=False, max_length=MAX_TEXT, label="Why skipped")
    restored_system = forms.ModelChoiceField(
        queryset=System.objects.all(), required=False, empty_label="(system restored)"
    )
    restored_service = forms.CharField(required=False, max_length=150, label="Service restored")


class StepForm(forms.Form):
    title = forms.CharField(max_length=200, required=False)
    instructions = forms.CharField(required=False, max_length=MAX_TEXT, widget=forms.Textarea(attrs={"rows": 2}))
    commands = forms.CharField(
        required=False,
        max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 2, "class": "mono"}),
        help_text="Shown as text, never run.",
    )
    records_restoration = forms.BooleanField(required=False, label="Records what was restored")
    source = forms.CharField(required=False, max_length=200, label="Source (procedure section)")

    def step_input(self) -> StepInput | None:
        data = self.cleaned_data
        if not any(data.get(f) for f in ("title", "instructions", "commands")):
            return None  # an empty row of the form: no step
        return StepInput(
            title=data.get("title", ""),
            instructions=data.get("instructions", ""),
            commands=data.get("commands", ""),
            records_restoration=bool(data.get("records_restoration")),
            source=data.get("source", ""),
        )


StepFormSet = forms.formset_factory(StepForm, extra=2, max_num=MAX_STEPS, validate_max=True, absolute_max=MAX_STEPS + 5)


class ProposeForm(forms.Form):
    summary = forms.CharField(
        max_length=MAX_TEXT, widget=forms.Textarea(attrs={"rows": 3}), help_text="What changed and why (the lesson)."
    )


class NewRunbookForm(forms.Form):
    title = forms.CharField(max_length=150)
    procedure = forms.ChoiceField(choices=Procedure.choices)
    system = forms.ModelChoiceField(queryset=System.objects.all(), required=False, empty_label="Any system")
