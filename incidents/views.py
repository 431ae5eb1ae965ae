from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from . import selectors, services
from .exceptions import CommanderRefused
from .forms import (
    CommanderForm,
    EvidenceForm,
    IncidentCreateForm,
    IncidentDetailsForm,
    IncidentFilter,
    NoteForm,
    ResolveForm,
    RoleForm,
    TransitionForm,
)
from .hooks import hooks
from .models import (
    EvidenceAttachment,
    Incident,
    IncidentChecklistItem,
    IncidentRole,
    SeverityLevel,
    TimelineEntry,
)
from .models.incident import MAX_FINANCIAL_IMPACT_USD
from .roles import RISK_MANAGER

LIST_PAGE_SIZE = 25
# The page shows the latest entries; the full timeline is in the incident report. Rendering
# 300 rows cost ~25 ms of the heaviest page (bench/pages.py), 100 rows about half.
TIMELINE_PAGE_LIMIT = 100


def _incident_or_404(reference: str) -> Incident:
    try:
        return selectors.incident_detail(reference)
    except Incident.DoesNotExist as exc:
        raise Http404("No such incident") from exc


@require_GET
@permission_required("incidents.view_incident", raise_exception=True)
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    summary = selectors.dashboard_summary(since=now - timedelta(days=30))
    open_rows = selectors.response_clocks(selectors.open_incidents(), with_rto=True)
    return render(
        request,
        "incidents/dashboard.html",
        {"summary": summary, "open_rows": open_rows, "drills": selectors.open_drill_incidents(), "now": now},
    )


@require_GET
@permission_required("incidents.view_incident", raise_exception=True)
def incident_list(request: HttpRequest) -> HttpResponse:
    filterset = IncidentFilter(request.GET, queryset=selectors.incident_list_queryset())
    queryset = filterset.qs if filterset.is_valid() else selectors.incident_list_queryset().none()
    page = Paginator(queryset, LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = selectors.response_clocks(list(page.object_list))
    query = request.GET.copy()
    query.pop("page", None)
    template = "incidents/_list_table.html" if request.htmx else "incidents/list.html"
    return render(
        request,
        template,
        {"filter": filterset, "page": page, "rows": rows, "query": query.urlencode()},
    )


@permission_required("incidents.add_incident", raise_exception=True)
def incident_create(request: HttpRequest) -> HttpResponse:
    form = IncidentCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        # Whoever logs an incident commands it, unless the readiness gate says they may not yet
        # (expired certification, mentoring unfinished): then it opens without a commander.
        not_ready = selectors.commander_problems(user=request.user, at=timezone.now())
        try:
            incident = services.incident_open(
                title=data["title"],
                description=data["description"],
                severity=data["severity"],
                category=data["category"],
                affected_systems=data["affected_systems"],
                detection_method=data["detection_method"],
                financial_impact_usd=data["financial_impact_usd"],
                user_impact=data["user_impact"],
                started_at=data["started_at"],
                reported_by=request.user,
                commander=None if not_ready else request.user,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            if not_ready:
                messages.warning(
                    request,
                    f"{incident.reference} logged without a commander: you cannot command yet ({' '.join(not_ready)}).",
                )
            else:
                messages.success(request, f"{incident.reference} logged. You are its incident commander.")
            return redirect(incident.get_absolute_url())
    return render(
        request,
        "incidents/create.html",
        {"form": form, "severities": SeverityLevel.objects.all()},
        status=400 if form.errors else 200,
    )


@require_GET
@permission_required("incidents.add_incident", raise_exception=True)
def severity_suggestion(request: HttpRequest) -> HttpResponse:
    # The same field as the log form, so "1e999999999" is refused before anything formats it.
    field = IncidentCreateForm.base_fields["financial_impact_usd"]
    raw = request.GET.get("financial_impact_usd", "").strip()
    suggestion, error = None, ""
    if raw:
        try:
            amount = field.clean(raw)
        except ValidationError:
            amount = None
        if amount is None or amount < 0 or amount > MAX_FINANCIAL_IMPACT_USD:
            error = "Enter the estimated loss as a positive amount in USD."
        else:
            suggestion = services.severity_suggest(financial_impact_usd=amount)
    return render(request, "incidents/_severity_suggestion.html", {"suggestion": suggestion, "error": error})


@require_GET
@permission_required("incidents.view_incident", raise_exception=True)
def incident_detail(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _incident_or_404(reference)
    return render(request, "incidents/detail.html", _detail_context(request, incident))


def _detail_context(request: HttpRequest, incident: Incident, **extra) -> dict:
    kinds = [k for k in request.GET.getlist("kind") if k in TimelineEntry.Kind.values]
    timeline_qs = incident.timeline.select_related("owner")
    if kinds:
        timeline_qs = timeline_qs.filter(kind__in=kinds)
    timeline = list(timeline_qs.order_by("-occurred_at", "-id")[: TIMELINE_PAGE_LIMIT + 1])
    truncated = len(timeline) > TIMELINE_PAGE_LIMIT
    checklist_sections: dict[str, list[IncidentChecklistItem]] = {}
    for item in incident.checklist_items.all():
        checklist_sections.setdefault(item.section, []).append(item)
    targets = selectors.phase_targets()
    context = {
        "incident": incident,
        "timeline": timeline[:TIMELINE_PAGE_LIMIT],
        "timeline_truncated": truncated,
        "timeline_kinds": TimelineEntry.Kind.choices,
        "selected_kinds": kinds,
        "checklist_sections": checklist_sections,
        "transitions": services.incident_available_transitions(incident=incident, user=request.user),
        "response_clock": selectors.response_clock(incident),
        "phase_clocks": selectors.phase_clocks(incident, targets),
        "rto_clocks": selectors.rto_clocks(incident),
        "note_form": NoteForm(),
        "evidence_form": EvidenceForm(),
        "can_assign": request.user.has_perm("incidents.assign_commander"),
        "resolve_form": ResolveForm(
            initial={"expected_state": incident.state, "resolution_actions": incident.resolution_actions}
        ),
    }
    for extra_context in hooks.incident_page_context:
        context.update(extra_context(incident))
    context.update(_roles_context(request, incident, on_call=context.pop("role_on_call", None)))
    context.update(extra)
    return context


def _roles_context(request: HttpRequest, incident: Incident, *, on_call: dict | None) -> dict:
    """The roles panel: each role's holder and today's on-call person for it; the people to choose
    from for those who may assign (a risk liaison from the Risk Managers only)."""
    people: list = []
    if incident.is_open and request.user.has_perm("incidents.assign_commander"):
        risk_managers = Group.objects.filter(name=RISK_MANAGER, user=OuterRef("pk"))
        people = list(RoleForm.base_fields["holder"].queryset.all().annotate(is_risk_manager=Exists(risk_managers)))
    return {
        "role_slots": selectors.incident_role_slots(incident, on_call=on_call),
        "role_people": people,
        "risk_people": [p for p in people if p.is_risk_manager],
    }


@require_POST
def incident_transition(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _incident_or_404(reference)
    form = TransitionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "That action was not understood; reload the page and try again.")
        return redirect(incident.get_absolute_url())
    data = form.cleaned_data
    # PermissionDenied (a role without the right, or a forged POST) propagates as a 403.
    try:
        services.incident_transition(
            incident=incident,
            name=data["name"],
            user=request.user,
            expected_state=data["expected_state"],
            reason=data["reason"],
        )
    except services.IncidentChangedError as exc:
        messages.warning(request, str(exc))
    except services.TransitionRefusedError as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{incident.reference} is now {incident.get_state_display().lower()}.")
    return redirect(incident.get_absolute_url())


@require_POST
@permission_required("incidents.change_incident", raise_exception=True)
def incident_resolve(request: HttpRequest, reference: str) -> HttpResponse:
    """Record the resolution actions and resolve in one step."""
    incident = _incident_or_404(reference)
    form = ResolveForm(request.POST)
    if form.is_valid():
        # PermissionDenied (no right to resolve) propagates as a 403.
        try:
            services.incident_resolve(
                incident=incident,
                user=request.user,
                resolution_actions=form.cleaned_data["resolution_actions"],
                expected_state=form.cleaned_data["expected_state"],
            )
        except services.IncidentChangedError as exc:
            messages.warning(request, str(exc))
            return redirect(incident.get_absolute_url())
        except services.TransitionRefusedError as exc:
            messages.error(request, str(exc))
            return redirect(incident.get_absolute_url())
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"{incident.reference} is now resolved.")
            return redirect(incident.get_absolute_url())
    incident = _incident_or_404(reference)
    return render(request, "incidents/detail.html", _detail_context(request, incident, resolve_form=form), status=400)


@require_GET
@permission_required("incidents.view_incident", raise_exception=True)
def quick_search(request: HttpRequest) -> HttpResponse:
    """The header's search box: straight to the incident whose reference it names, else the list."""
    # A NUL cannot reach PostgreSQL in a query parameter (it would be a 500): it is dropped.
    query = request.GET.get("q", "").replace("\x00", "").strip()[:200]
    if query:
        reference = Incident.objects.filter(reference__iexact=query).values_list("reference", flat=True).first()
        if reference is not None:
            return redirect("incidents:detail", reference=reference)
    return redirect(f"{reverse('incidents:list')}?{urlencode({'q': query})}" if query else reverse("incidents:list"))


@require_POST
@permission_required("incidents.add_timelineentry", raise_exception=True)
def incident_add_note(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident, reference=reference)
    form = NoteForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            services.timeline_add_note(
                incident=incident,
                author=request.user,
                text=form.cleaned_data["text"],
                occurred_at=form.cleaned_data["occurred_at"],
                owner_team=form.cleaned_data["owner_team"],
            )
        except ValidationError as exc:  # a time before the incident began
            form.add_error(None, exc)
        else:
            form = NoteForm()
            status = 200
    if request.htmx:
        timeline = list(
            incident.timeline.select_related("owner").order_by("-occurred_at", "-id")[: TIMELINE_PAGE_LIMIT + 1]
        )
        return render(
            request,
            "incidents/_timeline_panel.html",
            {
                "incident": incident,
                "timeline": timeline[:TIMELINE_PAGE_LIMIT],
                "timeline_truncated": len(timeline) > TIMELINE_PAGE_LIMIT,
                "timeline_kinds": TimelineEntry.Kind.choices,
                "selected_kinds": [],
                "note_form": form,
            },
            status=status,
        )
    if status == 400:
        incident = _incident_or_404(reference)
        return render(request, "incidents/detail.html", _detail_context(request, incident, note_form=form), status=400)
    return redirect(incident.get_absolute_url() + "#timeline")


@require_POST
@permission_required("incidents.change_incidentchecklistitem", raise_exception=True)
def checklist_toggle(request: HttpRequest, reference: str, item_id: int) -> HttpResponse:
    item = get_object_or_404(
        IncidentChecklistItem.objects.select_related("incident"), pk=item_id, incident__reference=reference
    )
    done = request.POST.get("done") == "1"
    error = ""
    gate_was_open = item.gates_containment and item.incident.initial_assessment_done()
    try:
        item = services.checklist_item_set_done(item=item, user=request.user, done=done)
    except ValidationError as exc:
        error = " ".join(exc.messages)
        item.refresh_from_db()
    if request.htmx:
        response = render(
            request,
            "incidents/_checklist_item.html",
            {"item": item, "incident": item.incident, "error": error},
            status=400 if error else 200,
        )
        if item.gates_containment and item.incident.initial_assessment_done() != gate_was_open:
            # The assessment just completed (or stopped being complete): the page's actions
            # ("Mark contained", "Resolve") change with it, so the whole page reloads.
            response["HX-Refresh"] = "true"
        return response
    if error:
        messages.error(request, error)
    return redirect(item.incident.get_absolute_url() + "#checklist")


@permission_required("incidents.change_incident", raise_exception=True)
def incident_edit(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident.objects.select_related("severity"), reference=reference)
    form = IncidentDetailsForm(request.POST or None, instance=incident)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        severity = data.pop("severity")
        systems = data.pop("affected_systems")
        try:
            services.incident_update(
                incident=incident, user=request.user, severity=severity, affected_systems=systems, **data
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Details saved.")
            return redirect(incident.get_absolute_url())
    return render(
        request,
        "incidents/edit.html",
        {"form": form, "incident": incident},
        status=400 if form.errors else 200,
    )


def _commander_set(incident: Incident, commander, *, by) -> Incident:
    if commander is None:
        return services.incident_role_release(incident=incident, role=IncidentRole.COMMANDER, by=by)
    return services.incident_role_assign(incident=incident, role=IncidentRole.COMMANDER, holder=commander, by=by)


@require_POST
@permission_required("incidents.change_incident", raise_exception=True)
def incident_commander(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident, reference=reference)
    form = CommanderForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a person from the list.")
        return redirect(incident.get_absolute_url())
    # PermissionDenied (someone else's assignment without the right) propagates as a 403.
    # Through the roles service, as the roles panel does: the new commander is paged and must be
    # eligible, whichever form or client assigned them.
    try:
        _commander_set(incident, form.cleaned_data["commander"], by=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(incident.get_absolute_url())
    except CommanderRefused as exc:
        # Not a missing right but a missing certification: say which, on the incident page.
        messages.error(request, str(exc))
        return redirect(incident.get_absolute_url())
    messages.success(request, "Incident commander updated.")
    return redirect(incident.get_absolute_url())


@require_POST
@permission_required("incidents.change_incident", raise_exception=True)
def incident_role(request: HttpRequest, reference: str) -> HttpResponse:
    """Give a role to someone (the one-click on-call button too), take it, or leave it empty."""
    incident = get_object_or_404(Incident, reference=reference)
    form = RoleForm(request.POST)
    if form.is_valid():
        role, holder = IncidentRole(form.cleaned_data["role"]), form.cleaned_data["holder"]
        # PermissionDenied (someone else's role without the right) propagates as a 403.
        try:
            if holder is None:
                services.incident_role_release(incident=incident, role=role, by=request.user)
            else:
                services.incident_role_assign(incident=incident, role=role, holder=holder, by=request.user)
        except services.RoleTakenError as exc:
            messages.warning(request, str(exc))
            return redirect(incident.get_absolute_url() + "#roles")
        except CommanderRefused as exc:  # not ready to command: say why, by the person chosen
            form.add_error("holder", str(exc))
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            who = f"{holder.get_full_name() or holder.get_username()} is now" if holder else "Nobody is"
            messages.success(request, f"{who} {role.label.lower()}.")
            return redirect(incident.get_absolute_url() + "#roles")
    return render(
        request,
        "incidents/detail.html",
        _detail_context(request, _incident_or_404(reference), role_form=form),
        status=400,
    )


@require_POST
@permission_required("incidents.add_evidenceattachment", raise_exception=True)
def evidence_upload(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident, reference=reference)
    form = EvidenceForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            services.evidence_attach(
                incident=incident,
                uploaded=form.cleaned_data["file"],
                user=request.user,
                description=form.cleaned_data["description"],
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
    if form.errors:
        incident = _incident_or_404(reference)
        return render(
            request,
            "incidents/detail.html",
            _detail_context(request, incident, evidence_form=form),
            status=400,
        )
    messages.success(request, "Evidence stored.")
    return redirect(incident.get_absolute_url() + "#evidence")


@require_GET
@permission_required("incidents.view_evidenceattachment", raise_exception=True)
def evidence_download(request: HttpRequest, reference: str, evidence_id: int) -> FileResponse:
    attachment = get_object_or_404(EvidenceAttachment, pk=evidence_id, incident__reference=reference)
    # Always a download, never rendered inline: an uploaded HTML or SVG must not run in our origin.
    response = FileResponse(
        attachment.file.open("rb"),
        as_attachment=True,
        filename=attachment.original_name,
        content_type="application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response
