"""The knowledge base (search, runbook, revision, proposal, approval) and the incident's runs."""

from __future__ import annotations

from django.apps import apps
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from incidents.models import VIEW_PERMISSION as INCIDENT_VIEW_PERMISSION
from incidents.models import Incident
from incidents.runbooks import selectors, services
from incidents.runbooks.forms import NewRunbookForm, ProposeForm, SearchForm, StartForm, StepFormSet, StepRecordForm
from incidents.runbooks.models import (
    APPROVE_PERMISSION,
    PROPOSE_PERMISSION,
    RUN_PERMISSION,
    VIEW_PERMISSION,
    Runbook,
    RunbookRevision,
    RunbookRun,
    RunbookStep,
)

PAGE_SIZE = 50


def _add_errors(form, exc: ValidationError, *, fallback: str | None = None) -> None:
    for name, errors in exc.message_dict.items():
        form.add_error(name if name in form.fields else fallback, errors)


def _incident_url(incident: Incident) -> str:
    return reverse("incidents:detail", args=[incident.reference]) + "#runbooks"


@require_GET
@permission_required(VIEW_PERMISSION, raise_exception=True)
def runbook_list(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET or None)
    runbooks = Runbook.objects.none()
    if not form.is_bound:
        runbooks = selectors.runbook_search()
    elif form.is_valid():
        system = form.cleaned_data["system"]
        runbooks = selectors.runbook_search(q=form.cleaned_data["q"], system_key=system.key if system else "")
    status = 400 if form.is_bound and not form.is_valid() else 200
    page = Paginator(runbooks, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "runbooks": page.object_list, "page": page, "query": query.urlencode()}
    return render(request, "runbooks/list.html", context, status=status)


@require_http_methods(["GET", "POST"])
@permission_required(PROPOSE_PERMISSION, raise_exception=True)
def runbook_new(request: HttpRequest) -> HttpResponse:
    form = NewRunbookForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                runbook = services.runbook_create(
                    title=data["title"], procedure=data["procedure"], system=data["system"], author=request.user
                )
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                messages.success(request, "Runbook created: propose its first revision (its steps).")
                return redirect("runbooks:propose", key=runbook.key)
        return render(request, "runbooks/new.html", {"form": form}, status=400)
    return render(request, "runbooks/new.html", {"form": form})


def _runbook(key: str) -> Runbook:
    return get_object_or_404(Runbook.objects.select_related("system", "current_revision"), key=key)


@require_GET
@permission_required(VIEW_PERMISSION, raise_exception=True)
def runbook_detail(request: HttpRequest, key: str) -> HttpResponse:
    runbook = _runbook(key)
    context = {
        "runbook": runbook,
        "steps": list(runbook.current_revision.steps.all()) if runbook.current_revision else [],
        "revisions": list(
            runbook.revisions.select_related("author", "approved_by", "source_incident").order_by("-number")
        ),
        "past_runs": selectors.runbook_past_incidents(runbook),
    }
    return render(request, "runbooks/detail.html", context)


def _revision_page(
    request: HttpRequest, revision: RunbookRevision, *, error: str = "", status: int = 200
) -> HttpResponse:
    context = {
        "runbook": revision.runbook,
        "revision": revision,
        "steps": list(revision.steps.all()),
        "diff": selectors.revision_diff(revision),
        "can_approve": (
            request.user.has_perm(APPROVE_PERMISSION)
            and revision.state == RunbookRevision.State.DRAFT
            and revision.author_id != request.user.pk
        ),
        "error": error,
    }
    return render(request, "runbooks/revision.html", context, status=status)


def _revision(key: str, number: int) -> RunbookRevision:
    return get_object_or_404(
        RunbookRevision.objects.select_related("runbook", "author", "approved_by", "source_incident"),
        runbook__key=key,
        number=number,
    )


@require_GET
@permission_required(VIEW_PERMISSION, raise_exception=True)
def revision_detail(request: HttpRequest, key: str, number: int) -> HttpResponse:
    return _revision_page(request, _revision(key, number))


@require_POST
@permission_required(APPROVE_PERMISSION, raise_exception=True)
def revision_approve(request: HttpRequest, key: str, number: int) -> HttpResponse:
    revision = _revision(key, number)
    try:
        services.runbook_revision_approve(revision=revision, user=request.user)
    except ValidationError as exc:
        return _revision_page(
            request, revision, error=" ".join(exc.message_dict.get("revision", exc.messages)), status=400
        )
    messages.success(request, f"r{number} approved: it is now the current revision.")
    return redirect("runbooks:detail", key=key)


def _source(request: HttpRequest) -> tuple[Incident | None, int | None, dict[str, str]]:
    """The incident and post-incident review a proposal comes from (?incident=REF&review=ID)."""
    errors: dict[str, str] = {}
    incident = None
    review_id = None
    reference = request.GET.get("incident", "").strip()
    if reference:
        # A NUL cannot be in a query PostgreSQL takes, nor in a reference.
        incident = Incident.objects.filter(reference=reference).first() if "\x00" not in reference else None
        if incident is None:
            errors["incident"] = f"No incident {reference}."
    raw_review = request.GET.get("review", "").strip()
    if raw_review:
        # The review lives in the reports app, above this one: looked up by name, not imported.
        review_model = apps.get_model("reports", "PostIncidentReview") if apps.is_installed("reports") else None
        try:
            review_id = int(raw_review)
        except ValueError:
            errors["review"] = "Not a review."
        else:
            if (
                incident is None
                or review_model is None
                or not review_model.objects.filter(pk=review_id, incident=incident).exists()
            ):
                errors["review"] = "No such post-incident review on that incident."
    return incident, review_id, errors


@require_GET
@permission_required(PROPOSE_PERMISSION, raise_exception=True)
def propose_choose(request: HttpRequest) -> HttpResponse:
    incident, review_id, errors = _source(request)
    runbooks = selectors.runbooks_for_incident(incident) if incident else list(selectors.runbook_search())
    return render(
        request,
        "runbooks/propose_choose.html",
        {
            "runbooks": runbooks,
            "incident": incident,
            "review_id": review_id,
            "errors": errors,
            "query": request.GET.urlencode(),
        },
        status=400 if errors else 200,
    )


@require_http_methods(["GET", "POST"])
@permission_required(PROPOSE_PERMISSION, raise_exception=True)
def propose(request: HttpRequest, key: str) -> HttpResponse:
    runbook = _runbook(key)
    incident, review_id, source_errors = _source(request)
    status = 400 if source_errors else 200
    if request.method == "POST" and not source_errors:
        form = ProposeForm(request.POST)
        formset = StepFormSet(request.POST, prefix="steps")
        if form.is_valid() and formset.is_valid():
            steps = [s for s in (f.step_input() for f in formset.forms) if s is not None]
            try:
                revision = services.runbook_revision_propose(
                    runbook=runbook,
                    author=request.user,
                    summary=form.cleaned_data["summary"],
                    steps=steps,
                    source_incident=incident,
                    source_review_id=review_id,
                )
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                messages.success(request, f"r{revision.number} proposed: someone else approves it.")
                return redirect("runbooks:revision", key=key, number=revision.number)
        status = 400
    else:
        base = list(runbook.current_revision.steps.all()) if runbook.current_revision else []
        initial = [
            {
                "title": s.title,
                "instructions": s.instructions,
                "commands": s.commands,
                "records_restoration": s.records_restoration,
                "source": s.source,
            }
            for s in base
        ]
        form = ProposeForm()
        formset = StepFormSet(prefix="steps", initial=initial)
    context = {
        "runbook": runbook,
        "form": form,
        "formset": formset,
        "incident": incident,
        "source_errors": source_errors,
        "query": request.GET.urlencode(),
    }
    return render(request, "runbooks/propose.html", context, status=status)


@require_GET
@permission_required((VIEW_PERMISSION, INCIDENT_VIEW_PERMISSION), raise_exception=True)
def incident_panel(request: HttpRequest, reference: str) -> HttpResponse:
    """The incident page's runbooks panel, loaded after the page (htmx)."""
    incident = get_object_or_404(Incident, reference=reference)
    context = {"incident": incident, **selectors.incident_runbook_context(incident)}
    return render(request, "runbooks/_incident_runbooks_panel.html", context)


@require_POST
@permission_required(RUN_PERMISSION, raise_exception=True)
def run_start(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident, reference=reference)
    form = StartForm(request.POST)
    error = ""
    if form.is_valid():
        runbook = Runbook.objects.filter(pk=form.cleaned_data["runbook"]).first()
        if runbook is None:
            error = "No such runbook."
        else:
            try:
                run = services.runbook_run_start(incident=incident, runbook=runbook, user=request.user)
            except ValidationError as exc:
                error = " ".join(m for ms in exc.message_dict.values() for m in ms)
            else:
                messages.success(request, f"Runbook '{runbook.title}' started.")
                return redirect(_incident_url(run.incident))
    else:
        error = "Choose a runbook."
    messages.error(request, error)
    return redirect(_incident_url(incident))


def _run(run_id: int) -> RunbookRun:
    return get_object_or_404(
        RunbookRun.objects.select_related("incident", "runbook", "revision", "started_by"), pk=run_id
    )


def _run_page(request: HttpRequest, run: RunbookRun, *, form=None, step: RunbookStep | None = None, status: int = 200):
    context = {
        "run": run,
        "incident": run.incident,
        "steps": selectors.run_steps(run),
        "form": form,
        "form_step": step,
        "restore_systems": selectors.restore_systems(run.incident),
    }
    return render(request, "runbooks/run.html", context, status=status)


@require_GET
@permission_required(VIEW_PERMISSION, raise_exception=True)
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    return _run_page(request, _run(run_id))


@require_POST
@permission_required(RUN_PERMISSION, raise_exception=True)
def step_record(request: HttpRequest, run_id: int, step_id: int) -> HttpResponse:
    run = _run(run_id)
    step = get_object_or_404(RunbookStep, pk=step_id, revision_id=run.revision_id)
    form = StepRecordForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.runbook_step_record(
                run=run,
                step=step,
                user=request.user,
                outcome=data["outcome"],
                reason=data["reason"],
                restored_system=data["restored_system"],
                restored_service=data["restored_service"],
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            return redirect(_incident_url(run.incident))
    return _run_page(request, run, form=form, step=step, status=400)
