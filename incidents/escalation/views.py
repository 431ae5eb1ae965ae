"""The incident page's escalation panel, the status update composer, regulatory notifications."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from incidents.escalation import selectors, status_updates
from incidents.escalation import services as escalation
from incidents.escalation.models import Audience, RegulatoryCategory, RegulatoryObligation
from incidents.forms import ISODateTimeInput
from incidents.models import Incident
from incidents.models.incident import STATUS_UPDATE_WORDS
from incidents.validators import planned_problem

STATUS_CHOICES = [(s, s) for s in STATUS_UPDATE_WORDS]


class StatusUpdateForm(forms.Form):
    audience = forms.ModelChoiceField(
        queryset=Audience.objects.all(),
        to_field_name="key",
        empty_label=None,
        error_messages={"invalid_choice": "Choose one of the listed audiences."},
        help_text="Only the members of this audience's distribution lists receive it.",
    )
    subject = forms.CharField(max_length=300)
    status = forms.ChoiceField(choices=STATUS_CHOICES)
    impact = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=5000)
    eta = forms.CharField(label="ETA", max_length=120, required=False)
    next_update_at = forms.DateTimeField(label="Next update", required=False, widget=ISODateTimeInput())
    details = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), max_length=10_000)
    contact = forms.CharField(max_length=200)
    is_public = forms.BooleanField(
        label="Also publish on the public status page",
        required=False,
        help_text="Users only: the impact and details become the page's public update; subscribers are told.",
    )

    def __init__(self, *args, offer_public: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not offer_public:
            # Without the status page (or the role to publish on it) there is nothing to offer.
            del self.fields["is_public"]

    def clean_next_update_at(self):
        value = self.cleaned_data.get("next_update_at")
        if problem := planned_problem(value, what=status_updates.NEXT_UPDATE):
            raise forms.ValidationError(problem)
        return value


class ObligationRaiseForm(forms.Form):
    category = forms.ModelChoiceField(
        queryset=RegulatoryCategory.objects.filter(raised_automatically=False),
        error_messages={"invalid_choice": "Choose one of the listed notification requirements."},
    )


class ObligationSubmitForm(forms.Form):
    reference = forms.CharField(label="Regulator's reference", max_length=120)
    evidence = forms.FileField(required=False)


@require_GET
@permission_required("incidents.view_incident", raise_exception=True)
def escalation_panel(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident.objects.select_related("severity", "commander"), reference=reference)
    context = selectors.escalation_panel(incident)
    context["raise_form"] = ObligationRaiseForm()
    context["raise_form"].fields["category"].queryset = RegulatoryCategory.objects.filter(
        pk__in=[c.pk for c in context["raisable_categories"]]
    )
    return render(request, "escalation/_escalation_panel.html", context)


@permission_required("escalation.add_statusupdate", raise_exception=True)
def status_update_compose(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident.objects.select_related("severity", "commander"), reference=reference)
    audiences = list(Audience.objects.prefetch_related("distribution_lists"))
    offer_public = status_updates.public_offered_to(request.user)
    if not incident.is_open and request.method == "GET":
        messages.info(request, "This incident is no longer open; a final update can still be posted.")
    if request.method == "POST":
        form = StatusUpdateForm(request.POST, offer_public=offer_public)
        audience = None
        if form.is_valid():
            audience = form.cleaned_data["audience"]
            try:
                status_updates.status_update_post(incident=incident, user=request.user, **form.cleaned_data)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, f"Status update posted and sent to {audience.name}.")
                return redirect(incident.get_absolute_url())
    else:
        # The audience picked above the form (a plain GET link, no script) chooses the template.
        wanted = request.GET.get("audience", "internal")
        audience = next((a for a in audiences if a.key == wanted), audiences[0] if audiences else None)
        draft = status_updates.status_update_draft(incident=incident, audience=audience)
        initial = {**draft.__dict__, "audience": audience.key if audience else None}
        initial["is_public"] = status_updates.public_offered(audience)
        form = StatusUpdateForm(initial=initial, offer_public=offer_public)
    return render(
        request,
        "escalation/status_update.html",
        {
            "incident": incident,
            "form": form,
            "audiences": audiences,
            "audience": audience,
            "offer_public": offer_public and status_updates.public_offered(audience),
        },
        status=400 if form.errors else 200,
    )


@require_POST
@permission_required("escalation.add_regulatoryobligation", raise_exception=True)
def obligation_raise(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident, reference=reference)
    form = ObligationRaiseForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors.get("category", ["Choose a requirement."])))
    elif incident.is_drill:
        messages.error(request, "Drill incidents create no regulatory obligations.")
    else:
        try:
            obligation = escalation.regulatory_raise(
                incident=incident, category_key=form.cleaned_data["category"].key, user=request.user
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request, f"{obligation.label}: due {timezone.localtime(obligation.due_at):%Y-%m-%d %H:%M}."
            )
    return redirect(incident.get_absolute_url() + "#escalation")


@require_POST
@permission_required("escalation.change_regulatoryobligation", raise_exception=True)
def obligation_submit(request: HttpRequest, reference: str, obligation_id: int) -> HttpResponse:
    obligation = get_object_or_404(
        RegulatoryObligation.objects.select_related("incident", "category"),
        pk=obligation_id,
        incident__reference=reference,
    )
    form = ObligationSubmitForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            escalation.regulatory_submit(
                obligation=obligation,
                user=request.user,
                reference=form.cleaned_data["reference"],
                evidence=form.cleaned_data["evidence"],
            )
            messages.success(request, f"{obligation.label} recorded as submitted.")
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
    else:
        messages.error(request, "Give the regulator's reference to record the submission.")
    # (evidence problems come back as the ValidationError above, with the file's reason)
    return _back(obligation)


@require_POST
@permission_required("escalation.sign_off_obligation", raise_exception=True)
def obligation_sign_off(request: HttpRequest, reference: str, obligation_id: int) -> HttpResponse:
    obligation = get_object_or_404(
        RegulatoryObligation.objects.select_related("incident", "category"),
        pk=obligation_id,
        incident__reference=reference,
    )
    try:
        escalation.regulatory_sign_off(obligation=obligation, user=request.user)
        messages.success(request, f"{obligation.label} signed off.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except PermissionDenied as exc:
        # The drafter (four eyes): a message on the report page, not a bare 403.
        messages.error(request, str(exc))
    return _back(obligation)


def _back(obligation: RegulatoryObligation) -> HttpResponse:
    if obligation.category_id is None:
        return redirect(
            "incidents:obligation_report", reference=obligation.incident.reference, obligation_id=obligation.pk
        )
    return redirect(obligation.incident.get_absolute_url() + "#escalation")
