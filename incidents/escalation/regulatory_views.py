"""Regulatory reporting pages: classify an incident under a regime, draft each stage's report,
sign it off and record its submission; the view of every report still owed, across incidents."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET

from incidents.escalation import regimes, selectors
from incidents.escalation.models import RegulatoryObligation, RegulatoryRegime
from incidents.forms import ISODateTimeInput
from incidents.models import Incident

VIEW = "escalation.view_regulatoryobligation"
DECIDE = "escalation.change_regulatoryobligation"


class ClassifyForm(forms.Form):
    regime = forms.ModelChoiceField(
        queryset=RegulatoryRegime.objects.none(),
        to_field_name="key",
        error_messages={"invalid_choice": "Choose one of the listed regimes."},
    )
    reportable = forms.BooleanField(label="Major / reportable under this regime", required=False)
    criteria_met = forms.MultipleChoiceField(label="Criteria met", required=False, widget=forms.CheckboxSelectMultiple)
    aware_at = forms.DateTimeField(
        label="Became aware at", required=False, widget=ISODateTimeInput(), help_text="Blank: when it was detected."
    )
    rationale = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=5000, required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        regimes_qs = regimes.classifiable_regimes()
        self.fields["regime"].queryset = regimes_qs
        # Every regime's criteria; the service checks they belong to the chosen one.
        self.fields["criteria_met"].choices = [
            (c["key"], f"{r.name}: {c['label']}") for r in regimes_qs for c in r.criteria or []
        ]


class DraftForm(forms.Form):
    summary = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=regimes.CONTENT_MAX)
    impact = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=regimes.CONTENT_MAX)
    timeline = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), max_length=regimes.CONTENT_MAX)
    cause = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=regimes.CONTENT_MAX)
    actions = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=regimes.CONTENT_MAX)


def _add_errors(form: forms.Form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


@require_GET
@permission_required(VIEW, raise_exception=True)
def regulatory_overview(request: HttpRequest) -> HttpResponse:
    return render(request, "escalation/regulatory.html", selectors.regulatory_open_obligations())


@permission_required(VIEW, raise_exception=True)
def incident_regulatory(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident.objects.select_related("severity"), reference=reference)
    form = ClassifyForm()
    if request.method == "POST":
        if not request.user.has_perm(DECIDE):
            return HttpResponse("You may not classify incidents for regulators.", status=403)
        form = ClassifyForm(request.POST)
        if form.is_valid():
            try:
                classification = regimes.regulatory_classify(
                    incident=incident,
                    user=request.user,
                    regime=form.cleaned_data["regime"],
                    reportable=form.cleaned_data["reportable"],
                    criteria_met=form.cleaned_data["criteria_met"],
                    aware_at=form.cleaned_data["aware_at"],
                    rationale=form.cleaned_data["rationale"],
                )
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                verdict = "reportable: its reports are now owed" if classification.reportable else "not reportable"
                messages.success(request, f"Classified under {classification.regime.name}: {verdict}.")
                return redirect("incidents:incident_regulatory", reference=incident.reference)
    context = {"incident": incident, "form": form, **selectors.incident_regulatory(incident)}
    return render(request, "escalation/incident_regulatory.html", context, status=400 if form.errors else 200)


def _staged(reference: str, obligation_id: int) -> RegulatoryObligation:
    return get_object_or_404(
        RegulatoryObligation.objects.select_related(
            "incident", "incident__severity", "regime", "stage", "classification", "classification__classified_by"
        ),
        pk=obligation_id,
        incident__reference=reference,
        category=None,
    )


@permission_required(VIEW, raise_exception=True)
def obligation_report(request: HttpRequest, reference: str, obligation_id: int) -> HttpResponse:
    obligation = _staged(reference, obligation_id)
    if request.method == "POST":
        if not request.user.has_perm(DECIDE):
            return HttpResponse("You may not draft regulatory reports.", status=403)
        from_incident = "from_incident" in request.POST
        form = DraftForm(request.POST)
        if from_incident or form.is_valid():
            try:
                regimes.regulatory_draft(
                    obligation=obligation, user=request.user, content=None if from_incident else form.cleaned_data
                )
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                messages.success(request, f"{obligation.label}: draft saved.")
                return redirect("incidents:obligation_report", reference=reference, obligation_id=obligation.pk)
    else:
        initial = obligation.content or regimes.report_content_from_incident(obligation.incident)
        form = DraftForm(initial=initial)
    context = {"obligation": obligation, "incident": obligation.incident, "form": form}
    return render(request, "escalation/obligation_report.html", context, status=400 if form.errors else 200)


@require_GET
@permission_required(VIEW, raise_exception=True)
def obligation_report_json(request: HttpRequest, reference: str, obligation_id: int) -> JsonResponse:
    obligation = _staged(reference, obligation_id)
    response = JsonResponse(regimes.report_export(obligation), json_dumps_params={"indent": 2})
    name = f"{obligation.incident.reference}-{obligation.regime.key}-{obligation.stage.key}.json"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
