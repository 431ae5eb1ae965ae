"""The trading halt's page (resume procedure, position closures) and the incident's state capture."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from incidents.models import Incident
from incidents.monitoring import capture, halt
from incidents.monitoring.models import (
    APPROVE_RESUME_PERMISSION,
    CAPTURE_PERMISSION,
    RECORD_POSITION_PERMISSION,
    REQUEST_RESUME_PERMISSION,
    VIEW_HALT_PERMISSION,
    ResumeRequest,
    TradingHalt,
)


class ResumeRequestForm(forms.Form):
    note = forms.CharField(
        required=False,
        max_length=halt.MAX_NOTE_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why trading can resume (cause fixed, positions reconciled).",
    )


class PositionClosureForm(forms.Form):
    instrument = forms.CharField(required=False, max_length=40)
    venue = forms.CharField(required=False, max_length=80)
    quantity = forms.CharField(required=False, max_length=30)
    closed_at = forms.DateTimeField(required=False, help_text="Blank: now (UTC).")
    none_open = forms.BooleanField(required=False, label="No positions were open")


def _form_errors(form: forms.Form, exc: ValidationError) -> None:
    for name, errors in exc.message_dict.items():
        form.add_error(name if name in form.fields else None, errors)


def _page(request: HttpRequest, trading_halt: TradingHalt, *, status: int = 200, **forms_: forms.Form) -> HttpResponse:
    context = {
        "halt": trading_halt,
        "requests": list(trading_halt.resume_requests.select_related("requested_by", "approved_by")),
        "closures": list(trading_halt.closures.select_related("closed_by", "recorded_by")),
        "resume_form": forms_.get("resume_form") or ResumeRequestForm(),
        "closure_form": forms_.get("closure_form") or PositionClosureForm(),
        "can_request": request.user.has_perm(REQUEST_RESUME_PERMISSION),
        "can_approve": request.user.has_perm(APPROVE_RESUME_PERMISSION),
        "can_record": request.user.has_perm(RECORD_POSITION_PERMISSION),
    }
    return render(request, "monitoring/trading_halt.html", context, status=status)


def _halt_or_404(halt_id: int) -> TradingHalt:
    return get_object_or_404(
        TradingHalt.objects.select_related("incident__severity", "started_by", "resumed_by", "alarm_incident"),
        pk=halt_id,
    )


@require_GET
@permission_required(VIEW_HALT_PERMISSION, raise_exception=True)
def trading_halt(request: HttpRequest, halt_id: int) -> HttpResponse:
    return _page(request, _halt_or_404(halt_id))


@require_POST
@permission_required(REQUEST_RESUME_PERMISSION, raise_exception=True)
def resume_request(request: HttpRequest, halt_id: int) -> HttpResponse:
    trading_halt = _halt_or_404(halt_id)
    form = ResumeRequestForm(request.POST)
    if form.is_valid():
        try:
            halt.trading_resume_request(halt=trading_halt, user=request.user, note=form.cleaned_data["note"])
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, "Resume requested: a Risk Manager must approve it.")
            return redirect("incidents:trading_halt", halt_id=trading_halt.pk)
    return _page(request, trading_halt, status=400, resume_form=form)


@require_POST
@permission_required(APPROVE_RESUME_PERMISSION, raise_exception=True)
def resume_approve(request: HttpRequest, request_id: int) -> HttpResponse:
    resume = get_object_or_404(ResumeRequest.objects.select_related("halt"), pk=request_id)
    try:
        # PermissionDenied (no right to approve) propagates as a 403.
        done = halt.trading_resume_approve(request=resume, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return _page(request, _halt_or_404(resume.halt_id), status=400)
    if done.state == ResumeRequest.State.RESUMED:
        messages.success(request, "Trading resumed: the circuit breaker confirms it.")
    else:
        messages.error(request, f"Resume NOT confirmed: {done.error}")
    return redirect("incidents:trading_halt", halt_id=resume.halt_id)


@require_POST
@permission_required(RECORD_POSITION_PERMISSION, raise_exception=True)
def position_closure(request: HttpRequest, halt_id: int) -> HttpResponse:
    trading_halt = _halt_or_404(halt_id)
    form = PositionClosureForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            halt.position_closure_record(
                halt=trading_halt,
                user=request.user,
                none_open=data["none_open"],
                instrument=data["instrument"],
                venue=data["venue"],
                quantity=data["quantity"],
                closed_at=data["closed_at"] or timezone.now(),
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, "Position closure recorded.")
            return redirect("incidents:trading_halt", halt_id=trading_halt.pk)
    return _page(request, trading_halt, status=400, closure_form=form)


@require_POST
@permission_required(CAPTURE_PERMISSION, raise_exception=True)
def capture_state(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident, reference=reference)
    result = capture.system_state_capture(incident=incident, user=request.user)
    counts = result.summary["counts"]
    messages.success(
        request,
        f"System state captured: {counts['ok']} ok, {counts['failed']} failed, {counts['timed_out']} timed out. "
        "The bundle is on the evidence list.",
    )
    return redirect(incident.get_absolute_url())
