"""Pages for drills and training. Views parse input and call services; they never write models.

Trainers (drills.manage_training) schedule and run drills and keep certifications; everyone on
the team sees the programme (drills.view_drill); everyone sees their own training record, and
managers (drills.view_certification) anyone's. Who may see or run a drill, or see a record, is
asked of drills.selectors, as the API asks it.
Bad input re-renders the form with field errors and status 400; nothing is half-saved.
"""

from __future__ import annotations

import csv
from datetime import timedelta
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required, permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from . import ical, selectors, services
from .forms import (
    AttendanceFormSet,
    CertificationForm,
    DrillCancelForm,
    DrillEditForm,
    DrillOutcomeForm,
    DrillScheduleForm,
    FindingForm,
    FindingFormSet,
    MentoredResponseForm,
    MentoringWaiverForm,
    ParticipantAddForm,
    ProcedureDraftForm,
    ReadinessOverrideForm,
    TargetFormSet,
    TrainingProfileForm,
    default_override_until,
)
from .models import (
    MANAGE_PERMISSION,
    OVERRIDE_PERMISSION,
    VIEW_PERMISSION,
    CalendarFeedToken,
    Certification,
    Drill,
    DrillKind,
    DrillParticipant,
    DrillState,
    Measure,
    MentoredResponse,
    ProcedureAcknowledgement,
    ProcedureDocument,
    ReadinessOverride,
    TrainingProfile,
)

User = get_user_model()
MIN_YEAR, MAX_YEAR = 2000, 2100


def _apply_errors(exc: ValidationError, form, *, rename: dict[str, str] | None = None) -> None:
    """Put a service's errors on the form's fields (unknown keys become non-field errors)."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    for field, errors in exc.message_dict.items():
        field = (rename or {}).get(field, field)
        form.add_error(field if field in form.fields else None, errors)


def _drill_or_404(pk: int) -> Drill:
    try:
        return selectors.drill_detail(pk)
    except Drill.DoesNotExist as exc:
        raise Http404("No such drill") from exc


def _runnable_drill(request: HttpRequest, pk: int) -> Drill:
    drill = _drill_or_404(pk)
    if not selectors.drill_runnable_by(drill, request.user):
        raise PermissionDenied("Only a trainer or the facilitator may do this.")
    return drill


# -- the programme ----------------------------------------------------------------------------


@require_GET
@permission_required(VIEW_PERMISSION, raise_exception=True)
def programme(request: HttpRequest) -> HttpResponse:
    today = timezone.localdate()
    raw = request.GET.get("year", "").strip()
    year = today.year
    if raw:
        if raw.isdigit() and MIN_YEAR <= int(raw) <= MAX_YEAR:
            year = int(raw)
        else:
            messages.warning(request, f"“{raw[:10]}” is not a year between {MIN_YEAR} and {MAX_YEAR}; showing {year}.")
    plan = selectors.programme_year(year=year, today=today)
    return render(
        request,
        "drills/programme.html",
        {
            "plan": plan,
            "year": year,
            "previous_year": year - 1 if year > MIN_YEAR else None,
            "next_year": year + 1 if year < MAX_YEAR else None,
            "can_manage": request.user.has_perm(MANAGE_PERMISSION),
            "upcoming": selectors.upcoming_drills(limit=5),
        },
    )


@permission_required(MANAGE_PERMISSION, raise_exception=True)
def drill_new(request: HttpRequest) -> HttpResponse:
    initial = {"facilitator": request.user.pk}
    kind_key = request.GET.get("kind", "")
    if kind_key:
        kind = DrillKind.objects.filter(key=kind_key, active=True).first()
        if kind is not None:
            initial.update(_kind_initial(kind))
    form = DrillScheduleForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            drill = services.drill_schedule(
                kind=data["kind"],
                scheduled_start=data["scheduled_start"],
                facilitator=data["facilitator"],
                created_by=request.user,
                title=data["title"],
                scenario=data["scenario"],
                objectives=data["objectives"],
                duration=form.duration,
                participants=list(data["participants"]),
            )
        except ValidationError as exc:
            _apply_errors(exc, form, rename={"duration": "duration_minutes"})
        else:
            messages.success(request, f"{drill.reference} scheduled: {drill.title}.")
            return redirect(drill.get_absolute_url())
    return render(request, "drills/schedule.html", {"form": form}, status=400 if form.errors else 200)


def _kind_initial(kind: DrillKind) -> dict:
    return {
        "kind": kind.pk,
        "scenario": kind.default_scenario,
        "objectives": kind.default_objectives,
        "duration_minutes": int(kind.default_duration.total_seconds() // 60),
    }


@require_GET
@permission_required(MANAGE_PERMISSION, raise_exception=True)
def kind_defaults(request: HttpRequest) -> HttpResponse:
    """htmx: the scenario, objectives and duration of the chosen kind, to edit before saving."""
    raw = request.GET.get("kind", "")
    kind = DrillKind.objects.filter(pk=int(raw), active=True).first() if raw.isdigit() else None
    form = DrillScheduleForm(initial=_kind_initial(kind) if kind else {})
    return render(request, "drills/_kind_defaults.html", {"form": form, "kind": kind})


# -- one drill --------------------------------------------------------------------------------


@require_GET
def drill_detail(request: HttpRequest, pk: int) -> HttpResponse:
    drill = _drill_or_404(pk)
    if not selectors.drill_visible_to(drill, request.user):
        raise PermissionDenied
    return _render_detail(request, drill)


def _render_detail(request: HttpRequest, drill: Drill, *, status: int = 200, **forms) -> HttpResponse:
    can_run = selectors.drill_runnable_by(drill, request.user)
    participants = list(drill.participants.all())
    is_participant = any(p.user_id == request.user.pk for p in participants)
    context = {
        "drill": drill,
        "participants": participants,
        "can_stop": drill.state == DrillState.IN_PROGRESS
        and drill.kind.measures_emergency_stop
        and (can_run or is_participant),
        "targets": list(drill.targets.all()),
        "findings": list(drill.findings.all()),
        "stop_attempts": list(drill.stop_attempts.all()),
        "can_run": can_run,
        "is_participant": is_participant,
        "participant_form": forms.get("participant_form")
        or (ParticipantAddForm() if can_run and not drill.is_finished else None),
        "cancel_form": forms.get("cancel_form") or (DrillCancelForm() if can_run and not drill.is_finished else None),
        "finding_form": forms.get("finding_form")
        or (
            FindingForm(initial={"due_date": timezone.localdate() + timedelta(days=14)})
            if can_run and drill.state in (DrillState.IN_PROGRESS, DrillState.COMPLETED)
            else None
        ),
        "states": DrillState,
    }
    return render(request, "drills/detail.html", context, status=status)


@permission_required(MANAGE_PERMISSION, raise_exception=True)
def drill_edit(request: HttpRequest, pk: int) -> HttpResponse:
    drill = _runnable_drill(request, pk)
    if drill.state != DrillState.PLANNED:
        messages.error(request, "Only a planned drill can be changed.")
        return redirect(drill.get_absolute_url())
    initial = {
        "title": drill.title,
        "scheduled_start": timezone.localtime(drill.scheduled_start),
        "duration_minutes": int(drill.duration.total_seconds() // 60),
        "facilitator": drill.facilitator_id,
        "scenario": drill.scenario,
        "objectives": drill.objectives,
    }
    form = DrillEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        changed = {
            name: data[name] for name in ("title", "scenario", "objectives", "facilitator") if name in form.changed_data
        }
        if "scheduled_start" in form.changed_data:
            changed["scheduled_start"] = data["scheduled_start"]
        if "duration_minutes" in form.changed_data:
            changed["duration"] = timedelta(minutes=data["duration_minutes"])
        try:
            services.drill_update(drill=drill, user=request.user, **changed)
        except ValidationError as exc:
            _apply_errors(exc, form, rename={"duration": "duration_minutes"})
        else:
            messages.success(request, f"{drill.reference} updated.")
            return redirect(drill.get_absolute_url())
    return render(request, "drills/edit.html", {"form": form, "drill": drill}, status=400 if form.errors else 200)


@require_POST
def participant_add(request: HttpRequest, pk: int) -> HttpResponse:
    drill = _runnable_drill(request, pk)
    form = ParticipantAddForm(request.POST)
    if form.is_valid():
        try:
            row = services.drill_participant_add(
                drill=drill, user=request.user, participant=form.cleaned_data["user"], role=form.cleaned_data["role"]
            )
        except ValidationError as exc:
            _apply_errors(exc, form)
        else:
            messages.success(
                request,
                f"{row.user.get_full_name() or row.user.get_username()} added as {row.get_role_display().lower()}.",
            )
            return redirect(drill.get_absolute_url() + "#participants")
    return _render_detail(request, _drill_or_404(pk), status=400, participant_form=form)


@require_POST
def participant_remove(request: HttpRequest, pk: int, participant_id: int) -> HttpResponse:
    drill = _runnable_drill(request, pk)
    participant = get_object_or_404(DrillParticipant, pk=participant_id, drill=drill)
    try:
        services.drill_participant_remove(drill=drill, user=request.user, participant=participant)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Participant removed.")
    return redirect(drill.get_absolute_url() + "#participants")


@require_POST
def drill_start(request: HttpRequest, pk: int) -> HttpResponse:
    drill = _runnable_drill(request, pk)
    try:
        drill = services.drill_start(drill=drill, user=request.user)
    except (ValidationError, services.ChangedError) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        if drill.incident_id:
            messages.success(
                request,
                f"{drill.reference} started. Exercise incident {drill.incident.reference} is open (marked DRILL).",
            )
        else:
            messages.success(request, f"{drill.reference} started.")
    return redirect(drill.get_absolute_url())


@require_POST
def drill_emergency_stop(request: HttpRequest, pk: int) -> HttpResponse:
    drill = _drill_or_404(pk)
    if not selectors.drill_visible_to(drill, request.user):
        raise PermissionDenied
    try:
        attempt = services.drill_emergency_stop(drill=drill, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        drill.refresh_from_db()
        if attempt.outcome == attempt.Outcome.VERIFIED and drill.time_to_stop is not None:
            messages.success(
                request, f"Emergency stop verified: {services._seconds(drill.time_to_stop)} from the drill's start."
            )
        else:
            messages.warning(request, f"Emergency stop: {attempt.get_outcome_display()}. {attempt.detail}")
    return redirect(drill.get_absolute_url() + "#emergency-stop")


@require_POST
def drill_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    drill = _runnable_drill(request, pk)
    form = DrillCancelForm(request.POST)
    if form.is_valid():
        try:
            services.drill_cancel(drill=drill, user=request.user, reason=form.cleaned_data["reason"])
        except ValidationError as exc:
            _apply_errors(exc, form)
        except services.ChangedError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"{drill.reference} cancelled.")
            return redirect(drill.get_absolute_url())
    return _render_detail(request, _drill_or_404(pk), status=400, cancel_form=form)


def _minutes_to_duration(value: Decimal | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=float(value) * 60)


def drill_complete(request: HttpRequest, pk: int) -> HttpResponse:
    drill = _runnable_drill(request, pk)
    if drill.state != DrillState.IN_PROGRESS:
        messages.error(
            request,
            "Start the drill before recording its outcome."
            if drill.state == DrillState.PLANNED
            else f"This drill is already {drill.get_state_display().lower()}.",
        )
        return redirect(drill.get_absolute_url())
    participants = list(drill.participants.all())
    targets = list(drill.targets.all())
    by_participant = {p.pk: p for p in participants}
    by_target = {t.pk: t for t in targets}
    data = request.POST if request.method == "POST" else None
    outcome = DrillOutcomeForm(data)
    attendance = AttendanceFormSet(
        data,
        prefix="attendance",
        initial=[{"participant": p.pk, "attended": True, "role": p.role} for p in participants],
    )
    target_forms = TargetFormSet(
        data,
        prefix="targets",
        initial=[
            {
                "target": t.pk,
                "actual_minutes": round(Decimal(t.actual.total_seconds()) / 60, 1) if t.actual is not None else None,
            }
            for t in targets
        ],
    )
    findings = FindingFormSet(data, prefix="findings")
    if request.method == "POST":
        valid = all([outcome.is_valid(), attendance.is_valid(), target_forms.is_valid(), findings.is_valid()])
        if valid:
            rows = [f for f in attendance.forms if f.cleaned_data]
            if {f.cleaned_data["participant"] for f in rows} != set(by_participant):
                attendance._non_form_errors = attendance.error_class(["The participant list changed; reload the page."])
                valid = False
        if valid:
            finding_rows = [(i, f) for i, f in enumerate(findings.forms) if f.cleaned_data and not f.is_blank()]
            try:
                services.drill_complete(
                    drill=drill,
                    user=request.user,
                    result=outcome.cleaned_data["result"],
                    outcome_summary=outcome.cleaned_data["outcome_summary"],
                    went_well=outcome.cleaned_data["went_well"],
                    could_improve=outcome.cleaned_data["could_improve"],
                    attendance=[
                        services.AttendanceInput(
                            participant_id=f.cleaned_data["participant"],
                            attended=f.cleaned_data["attended"],
                            role=f.cleaned_data["role"],
                        )
                        for f in rows
                    ],
                    target_actuals={
                        f.cleaned_data["target"]: _minutes_to_duration(f.cleaned_data["actual_minutes"])
                        for f in target_forms.forms
                        if f.cleaned_data and f.cleaned_data["target"] in by_target
                    },
                    findings=[
                        services.FindingInput(
                            title=f.cleaned_data["title"],
                            description=f.cleaned_data["description"],
                            owner=f.cleaned_data["owner"],
                            due_date=f.cleaned_data["due_date"],
                            kind=f.cleaned_data["kind"],
                        )
                        for _, f in finding_rows
                    ],
                )
            except ValidationError as exc:
                _complete_errors(exc, outcome, findings, target_forms, finding_rows)
            except services.ChangedError as exc:
                outcome.add_error(None, exc.message)
            else:
                count = len(finding_rows)
                messages.success(
                    request,
                    f"{drill.reference} completed"
                    + (f"; {count} finding{'s' if count != 1 else ''} recorded as action items." if count else "."),
                )
                return redirect(drill.get_absolute_url())
    rows = list(zip(attendance.forms, participants, strict=False))
    target_rows = list(zip(target_forms.forms, targets, strict=False))
    errors = any(
        [outcome.errors, attendance.total_error_count(), target_forms.total_error_count(), findings.total_error_count()]
    )
    return render(
        request,
        "drills/complete.html",
        {
            "drill": drill,
            "outcome": outcome,
            "attendance": attendance,
            "attendance_rows": rows,
            "target_forms": target_forms,
            "target_rows": target_rows,
            "findings": findings,
            "measured": Measure.EMERGENCY_STOP,
        },
        status=400 if request.method == "POST" and errors else 200,
    )


def _complete_errors(exc: ValidationError, outcome, findings, target_forms, finding_rows) -> None:
    if not hasattr(exc, "error_dict"):
        outcome.add_error(None, exc.messages)
        return
    for key, errors in exc.message_dict.items():
        if key.startswith("findings-"):
            _, index, field = key.split("-", 2)
            form = findings.forms[finding_rows[int(index)][0]]
            form.add_error(field if field in form.fields else None, errors)
        elif key.startswith("target-"):
            pk = int(key.split("-", 1)[1])
            form = next((f for f in target_forms.forms if f.cleaned_data.get("target") == pk), None)
            (form or outcome).add_error("actual_minutes" if form else None, errors)
        else:
            outcome.add_error(key if key in outcome.fields else None, errors)


@require_POST
def finding_add(request: HttpRequest, pk: int) -> HttpResponse:
    drill = _runnable_drill(request, pk)
    form = FindingForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.drill_finding_add(
                drill=drill,
                user=request.user,
                finding=services.FindingInput(
                    title=data["title"],
                    description=data["description"],
                    owner=data["owner"],
                    due_date=data["due_date"],
                    kind=data["kind"],
                ),
            )
        except ValidationError as exc:
            _apply_errors(exc, form)
        else:
            messages.success(request, "Finding recorded as an action item.")
            return redirect(drill.get_absolute_url() + "#findings")
    return _render_detail(request, _drill_or_404(pk), status=400, finding_form=form)


# -- training: one's own record ---------------------------------------------------------------


def _person_context(person, *, now) -> dict:
    readiness = selectors.readiness_of(user=person, at=now)
    records = list(
        Certification.objects.filter(person=person)
        .select_related("kind", "issued_by")
        .order_by("kind__order", "-issued_on")
    )
    return {
        "person": person,
        "records": records,
        "readiness": readiness,
        "cells": readiness.certifications,
        "mentoring": readiness.mentoring,
        "mentored": list(
            MentoredResponse.objects.filter(mentee=person)
            .select_related("mentor", "incident", "drill")
            .order_by("-occurred_at")
        ),
        "problems": readiness.problems,
        "drills": list(selectors.drills_of(person)[:50]),
        "procedure": readiness.procedure,
        "acknowledged": readiness.acknowledged,
        "profile": TrainingProfile.objects.filter(user=person).select_related("mentoring_waived_by").first(),
        "overrides": list(
            ReadinessOverride.objects.filter(person=person)
            .select_related("granted_by", "incident")
            .order_by("-granted_at")[:10]
        ),
    }


def _my_training_page(request: HttpRequest, *, issued_token: str = "") -> HttpResponse:
    context = _person_context(request.user, now=timezone.now())
    context.update(
        {
            "is_self": True,
            "token": CalendarFeedToken.objects.filter(user=request.user).first(),
            "feed_mine": "",
            "feed_programme": "",
        }
    )
    if issued_token:
        context["feed_mine"] = request.build_absolute_uri(reverse("drills:ical_feed_mine", args=[issued_token]))
        if request.user.has_perm(VIEW_PERMISSION):
            context["feed_programme"] = request.build_absolute_uri(
                reverse("drills:ical_feed_programme", args=[issued_token])
            )
    response = render(request, "drills/person.html", context)
    if issued_token:
        response["Cache-Control"] = "no-store"  # the only copy of the feed URLs: keep it out of caches
    return response


@require_GET
def my_training(request: HttpRequest) -> HttpResponse:
    return _my_training_page(request)


@require_GET
def person_record(request: HttpRequest, user_id: int) -> HttpResponse:
    """A person's training record: trainers keep it; managers read it (as the certifications API
    lets them) when deciding a readiness override."""
    if not selectors.training_record_visible_to(user_id, request.user):
        raise PermissionDenied
    person = get_object_or_404(User, pk=user_id)
    context = _person_context(person, now=timezone.now())
    profile = context["profile"]
    is_self = person.pk == request.user.pk
    context.update(
        {
            "is_self": is_self,
            # One's own record shows the calendar panel, which must know whether links exist
            # (else "Make calendar links" would silently replace working ones).
            "token": CalendarFeedToken.objects.filter(user=request.user).first() if is_self else None,
            "can_manage": request.user.has_perm(MANAGE_PERMISSION),
            "waiver_form": MentoringWaiverForm(),
            "profile_form": TrainingProfileForm(
                initial={
                    "joined_team_on": profile.joined_team_on if profile else None,
                    "mentored_responses_required": profile.mentored_responses_required if profile else None,
                }
            ),
        }
    )
    return render(request, "drills/person.html", context)


@require_POST
@permission_required(MANAGE_PERMISSION, raise_exception=True)
def mentoring_waive(request: HttpRequest, user_id: int) -> HttpResponse:
    person = get_object_or_404(User, pk=user_id)
    form = MentoringWaiverForm(request.POST)
    if form.is_valid():
        try:
            services.mentoring_waive(person=person, user=request.user, reason=form.cleaned_data["reason"])
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, "Mentoring waived.")
    else:
        messages.error(request, "Say why mentoring is not needed.")
    return redirect("drills:person", user_id=person.pk)


@require_POST
@permission_required(MANAGE_PERMISSION, raise_exception=True)
def profile_update(request: HttpRequest, user_id: int) -> HttpResponse:
    person = get_object_or_404(User, pk=user_id)
    form = TrainingProfileForm(request.POST)
    if form.is_valid():
        try:
            services.training_profile_update(
                person=person,
                user=request.user,
                mentored_responses_required=form.cleaned_data["mentored_responses_required"],
                joined_team_on=form.cleaned_data["joined_team_on"],
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, "Training profile updated.")
    else:
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
    return redirect("drills:person", user_id=person.pk)


# -- training: the trainer's dashboard --------------------------------------------------------


@require_GET
@permission_required(MANAGE_PERMISSION, raise_exception=True)
def trainer_dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    matrix = selectors.compliance_matrix(at=now)
    in_mentoring = [row for row in matrix.rows if not row.mentoring.complete]
    return render(
        request,
        "drills/dashboard.html",
        {
            "matrix": matrix,
            "in_mentoring": in_mentoring,
            "upcoming": selectors.upcoming_drills(now=now, limit=8),
            "policy": selectors.training_policy(),
            "overrides": list(
                ReadinessOverride.objects.select_related("person", "granted_by", "incident").order_by("-granted_at")[:8]
            ),
            "programme": selectors.programme_year(year=timezone.localdate().year),
        },
    )


def _csv_safe(value: object) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet: quote it (CSV injection).
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@require_GET
@permission_required(MANAGE_PERMISSION, raise_exception=True)
def matrix_csv(request: HttpRequest) -> HttpResponse:
    matrix = selectors.compliance_matrix()
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="training-compliance-{matrix.day:%Y-%m-%d}.csv"'
    writer = csv.writer(response)
    header = ["Name", "Username", "Roles"]
    for kind in matrix.kinds:
        header += [kind.name, f"{kind.name} expires"]
    version = f"v{matrix.procedure.version}" if matrix.procedure else "—"
    header += ["Mentored responses", f"Procedures {version} acknowledged", "Ready for on-call"]
    writer.writerow(header)
    for row in matrix.rows:
        line = [row.person.get_full_name(), row.person.get_username(), "; ".join(row.roles)]
        for cell in row.cells:
            line += [
                cell.label if cell.status != "n/a" else "not required",
                cell.expires_on.isoformat() if cell.expires_on else "",
            ]
        line += [row.mentoring.label, "yes" if row.acknowledged else "no", "yes" if row.ready else "no"]
        writer.writerow([_csv_safe(v) for v in line])
    return response


@permission_required(MANAGE_PERMISSION, raise_exception=True)
def certification_new(request: HttpRequest) -> HttpResponse:
    initial = {"issued_by": request.user.pk, "issued_on": timezone.localdate()}
    raw_person = request.GET.get("person", "")
    if raw_person.isdigit():
        initial["person"] = int(raw_person)
    form = CertificationForm(request.POST or None, request.FILES or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            record = services.certification_record(
                person=data["person"],
                kind=data["kind"],
                issued_on=data["issued_on"],
                expires_on=data["expires_on"],
                issued_by=data["issued_by"],
                recorded_by=request.user,
                evidence=data["evidence"],
                evidence_note=data["evidence_note"],
            )
        except ValidationError as exc:
            _apply_errors(exc, form)
        else:
            expiry = f", expires {record.expires_on:%d %b %Y}" if record.expires_on else ""
            messages.success(
                request,
                f"{record.kind.name} recorded for "
                f"{record.person.get_full_name() or record.person.get_username()}{expiry}.",
            )
            return redirect("drills:person", user_id=record.person_id)
    return render(request, "drills/certification_form.html", {"form": form}, status=400 if form.errors else 200)


@require_GET
def certification_evidence(request: HttpRequest, pk: int) -> FileResponse:
    record = get_object_or_404(Certification.objects.select_related("kind"), pk=pk)
    if not selectors.training_record_visible_to(record.person_id, request.user):
        raise PermissionDenied
    if not record.evidence:
        raise Http404("No evidence file")
    try:
        handle = record.evidence.open("rb")
    except FileNotFoundError as exc:
        raise Http404("The evidence file is missing") from exc
    name = record.evidence.name.rsplit("/", 1)[-1]
    return FileResponse(handle, as_attachment=True, filename=name)


@permission_required(MANAGE_PERMISSION, raise_exception=True)
def mentoring_new(request: HttpRequest) -> HttpResponse:
    form = MentoredResponseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            row = services.mentored_response_record(
                mentee=data["mentee"],
                mentor=data["mentor"],
                incident=data["incident"],
                recorded_by=request.user,
                notes=data["notes"],
            )
        except ValidationError as exc:
            _apply_errors(exc, form)
        else:
            messages.success(request, f"Mentored response recorded ({row.incident.reference}).")
            return redirect("drills:person", user_id=row.mentee_id)
    since = timezone.now() - timedelta(days=30)
    return render(
        request,
        "drills/mentoring_form.html",
        {"form": form, "candidates": selectors.mentoring_candidates(since=since)},
        status=400 if form.errors else 200,
    )


# -- procedures -------------------------------------------------------------------------------


@require_GET
def procedures(request: HttpRequest) -> HttpResponse:
    documents = ProcedureDocument.objects.select_related("published_by").order_by("-version")
    if not request.user.has_perm(MANAGE_PERMISSION):
        documents = documents.exclude(published_at=None)
    current = selectors.current_procedure()
    acknowledged = set(
        ProcedureAcknowledgement.objects.filter(person=request.user).values_list("document_id", flat=True)
    )
    return render(
        request,
        "drills/procedures.html",
        {
            "documents": list(documents),
            "current": current,
            "acknowledged": acknowledged,
            "can_manage": request.user.has_perm(MANAGE_PERMISSION),
        },
    )


def _document_or_404(version: int, user) -> ProcedureDocument:
    document = get_object_or_404(
        ProcedureDocument.objects.select_related("published_by", "created_by"), version=version
    )
    if document.published_at is None and not user.has_perm(MANAGE_PERMISSION):
        raise Http404("No such version")
    return document


@require_GET
def procedure_detail(request: HttpRequest, version: int) -> HttpResponse:
    document = _document_or_404(version, request.user)
    current = selectors.current_procedure()
    ack = ProcedureAcknowledgement.objects.filter(document=document, person=request.user).first()
    pending = []
    if request.user.has_perm(MANAGE_PERMISSION) and document.published_at is not None:
        done = set(ProcedureAcknowledgement.objects.filter(document=document).values_list("person_id", flat=True))
        pending = [p for p in selectors.response_team_members() if p.pk not in done]
    return render(
        request,
        "drills/procedure.html",
        {
            "document": document,
            "current": current,
            "ack": ack,
            "pending": pending,
            "can_manage": request.user.has_perm(MANAGE_PERMISSION),
        },
    )


@require_POST
def procedure_ack(request: HttpRequest, version: int) -> HttpResponse:
    document = _document_or_404(version, request.user)
    try:
        services.procedure_acknowledge(document=document, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"You acknowledged version {document.version} of the procedures.")
    return redirect(document.get_absolute_url())


@permission_required(MANAGE_PERMISSION, raise_exception=True)
def procedure_new(request: HttpRequest) -> HttpResponse:
    current = selectors.current_procedure()
    initial = {"title": current.title, "body": current.body} if current else {}
    form = ProcedureDraftForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            document = services.procedure_draft_create(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _apply_errors(exc, form)
        else:
            messages.success(request, f"Draft version {document.version} saved. Publish it when ready.")
            return redirect(document.get_absolute_url())
    return render(
        request, "drills/procedure_form.html", {"form": form, "current": current}, status=400 if form.errors else 200
    )


@require_POST
@permission_required(MANAGE_PERMISSION, raise_exception=True)
def procedure_publish(request: HttpRequest, version: int) -> HttpResponse:
    document = _document_or_404(version, request.user)
    try:
        services.procedure_publish(document=document, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request, f"Version {document.version} published: every response-team member must acknowledge it."
        )
    return redirect(document.get_absolute_url())


# -- readiness overrides ----------------------------------------------------------------------


def overrides(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not (
        user.has_perm(OVERRIDE_PERMISSION)
        or user.has_perm(MANAGE_PERMISSION)
        or user.has_perm("drills.view_readinessoverride")
    ):
        raise PermissionDenied
    can_grant = user.has_perm(OVERRIDE_PERMISSION)
    form = None
    if can_grant:
        initial = {"valid_until": default_override_until()}
        for name in ("person", "duty", "incident"):
            if request.GET.get(name):
                initial[name] = request.GET[name][:40]
        form = ReadinessOverrideForm(request.POST or None, initial=initial)
    elif request.method == "POST":
        raise PermissionDenied("Only a manager may override the readiness gate.")
    if request.method == "POST" and form is not None and form.is_valid():
        data = form.cleaned_data
        try:
            row = services.readiness_override_grant(
                person=data["person"],
                duty=data["duty"],
                justification=data["justification"],
                granted_by=user,
                valid_until=data["valid_until"],
                incident=data["incident"],
                context=f"granted in the portal by {user.get_username()}",
            )
        except ValidationError as exc:
            _apply_errors(exc, form)
        else:
            messages.success(
                request,
                f"Override recorded for {row.person.get_full_name() or row.person.get_username()} "
                f"until {timezone.localtime(row.valid_until):%d %b %Y %H:%M}.",
            )
            return redirect("drills:overrides")
    rows = list(
        ReadinessOverride.objects.select_related("person", "granted_by", "incident").order_by("-granted_at")[:50]
    )
    return render(
        request,
        "drills/overrides.html",
        {"form": form, "rows": rows, "now": timezone.now()},
        status=400 if form is not None and form.errors else 200,
    )


# -- calendar feeds ---------------------------------------------------------------------------

FEED_PAST = timedelta(days=365)


def _feed_drills(queryset):
    return (
        queryset.filter(scheduled_start__gte=timezone.now() - FEED_PAST)
        .select_related("kind", "facilitator")
        .prefetch_related("participants__user")
        .order_by("scheduled_start")[:1000]
    )


def _ical_response(body: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["Cache-Control"] = "private, max-age=300"
    return response


def _mine_ics(user) -> HttpResponse:
    drills = _feed_drills(Drill.objects.filter(Q(participants__user=user) | Q(facilitator=user)).distinct())
    hours = selectors.training_policy().drill_reminder_list
    name = f"TMT drills — {user.get_full_name() or user.get_username()}"
    return _ical_response(ical.drills_calendar(drills, name=name, reminder_hours=hours), "my-drills.ics")


def _programme_ics() -> HttpResponse:
    drills = _feed_drills(Drill.objects.all())
    return _ical_response(ical.drills_calendar(drills, name="TMT drill and exercise programme"), "drill-programme.ics")


@require_GET
def ical_mine(request: HttpRequest) -> HttpResponse:
    return _mine_ics(request.user)


@require_GET
@permission_required(VIEW_PERMISSION, raise_exception=True)
def ical_programme(request: HttpRequest) -> HttpResponse:
    return _programme_ics()


def _token_user(token: str):
    user = selectors.calendar_feed_owner(token)
    if user is None:
        raise Http404("Unknown calendar feed")
    return user


@login_not_required
@require_GET
def ical_feed_mine(request: HttpRequest, token: str) -> HttpResponse:
    # Calendar apps cannot log in: the secret token in the URL stands for the person.
    return _mine_ics(_token_user(token))


@login_not_required
@require_GET
def ical_feed_programme(request: HttpRequest, token: str) -> HttpResponse:
    if not _token_user(token).has_perm(VIEW_PERMISSION):
        raise Http404("Unknown calendar feed")
    return _programme_ics()


@require_POST
def ical_token(request: HttpRequest) -> HttpResponse:
    """Make the person's feed URLs, replacing any earlier ones (which stop working).

    The URLs are on this answer's page once (only the token's hash is stored), not behind a
    redirect: a flash message would keep the secret in the session or a cookie.
    """
    replaced = CalendarFeedToken.objects.filter(user=request.user).exists()
    _, raw = services.calendar_token_issue(user=request.user)
    if replaced:
        messages.success(request, "New calendar links made; the old ones no longer work.")
    else:
        messages.success(request, "Calendar links ready: add them to your calendar app.")
    return _my_training_page(request, issued_token=raw)
