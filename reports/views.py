"""Reviews list, report page (preview, PDF, review workflow, action items), my action items, metrics."""

from __future__ import annotations

import csv
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, Subquery
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import http_date, urlencode
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from incidents.models import Incident, State, TimelineEntry

from . import selectors, services
from .forms import (
    ActionItemForm,
    ActionItemUpdateForm,
    MetricsFilterForm,
    RequestChangesForm,
    ReviewForm,
    period_label,
)
from .models import APPROVE_PERMISSION, METRICS_PERMISSION, ActionItem, PostIncidentReview

VIEW_REPORT = ["incidents.view_incident", "reports.view_postincidentreview"]
REVIEWABLE_STATES = (State.RESOLVED, State.IN_REVIEW, State.CLOSED)


def _incident(reference: str) -> Incident:
    try:
        return selectors.report_incidents().get(reference=reference)
    except Incident.DoesNotExist as exc:
        raise Http404("No such incident") from exc


def _report_url(incident: Incident, kinds: list[str] | None = None, anchor: str = "") -> str:
    url = reverse("reports:report", args=[incident.reference])
    if kinds:
        url += "?" + urlencode({"kind": kinds}, doseq=True)
    return url + anchor


def _errors(exc: ValidationError) -> str:
    return " ".join(exc.messages)


# -- the reviews list -----------------------------------------------------------------------------


@require_GET
@permission_required(VIEW_REPORT, raise_exception=True)
def reviews(request: HttpRequest) -> HttpResponse:
    rows = selectors.reviews_awaited()
    overdue = sum(1 for row in rows if row["clock"] is not None and row["clock"].status == "overdue")
    return render(request, "reports/reviews.html", {"rows": rows, "overdue_count": overdue})


# -- the report page ----------------------------------------------------------------------------


@require_GET
@permission_required(VIEW_REPORT, raise_exception=True)
def report_page(request: HttpRequest, reference: str) -> HttpResponse:
    incident = _incident(reference)
    kinds = selectors.parse_kinds(request.GET.getlist("kind"))
    reviews = selectors.reviews_of(incident)
    latest = reviews[0] if reviews else None
    frozen = latest if latest is not None and latest.is_frozen else None
    status = None
    if frozen is not None:
        services.review_ensure_frozen_pdf_queued(review=frozen)
        fragment = PostIncidentReview.objects.values_list("frozen_html", flat=True).get(pk=frozen.pk)
        preview = mark_safe(fragment)  # noqa: S308 - our template's own escaped output, frozen at approval
        action_items = list(
            ActionItem.objects.filter(incident=incident).select_related("owner").order_by("due_date", "id")
        )
    else:
        status = selectors.pdf_status(incident=incident, kinds=kinds)
        if status.in_flight is not None:
            services.report_render_ensure_queued(render=status.in_flight)
        context = selectors.report_context(incident=incident, review=latest, kinds=kinds, generated_at=timezone.now())
        preview = mark_safe(render_to_string(selectors.REPORT_TEMPLATE, {**context, "pdf": False}))  # noqa: S308 - autoescaped template output
        action_items = context["action_items"]
    user = request.user
    can_review = (
        latest is not None
        and latest.state == PostIncidentReview.State.SUBMITTED
        and user.has_perm(APPROVE_PERMISSION)
        and user.pk not in (latest.author_id, latest.submitted_by_id)
    )
    return render(
        request,
        "reports/report_page.html",
        {
            "incident": incident,
            "reviews": reviews,
            "latest": latest,
            "frozen": frozen,
            "status": status,
            "kinds": kinds,
            "kind_choices": TimelineEntry.Kind.choices,
            "preview": preview,
            "action_items": action_items,
            "action_item_form": ActionItemForm(),
            "request_changes_form": RequestChangesForm(),
            "can_start": incident.state in REVIEWABLE_STATES
            and user.has_perm("reports.add_postincidentreview")
            and (latest is None or not latest.is_open),
            "can_edit": latest is not None
            and latest.is_editable
            and user.has_perm("reports.change_postincidentreview"),
            "can_review": can_review,
            "may_approve": user.has_perm(APPROVE_PERMISSION),
            "review_deadline": selectors.review_deadline(incident),
            "review_overdue": selectors.review_overdue(incident),
            "now": timezone.now(),
        },
    )


@require_GET
@permission_required(VIEW_REPORT, raise_exception=True)
def report_pdf_status(request: HttpRequest, reference: str) -> HttpResponse:
    """The PDF panel alone, polled by htmx while a render is queued (or an approved PDF stored)."""
    incident = get_object_or_404(Incident.objects.only("pk", "reference", "state"), reference=reference)
    latest = (
        PostIncidentReview.objects.filter(incident=incident)
        .select_related("approved_by")
        .defer("frozen_html")
        .order_by("-revision")
        .first()
    )
    if latest is not None and latest.is_frozen:
        services.review_ensure_frozen_pdf_queued(review=latest)
        return render(request, "reports/_pdf_status.html", {"incident": incident, "frozen": latest})
    kinds = selectors.parse_kinds(request.GET.getlist("kind"))
    status = selectors.pdf_status(incident=incident, kinds=kinds)
    if status.in_flight is not None:
        services.report_render_ensure_queued(render=status.in_flight)
    return render(request, "reports/_pdf_status.html", {"incident": incident, "status": status, "kinds": kinds})


@require_POST
@permission_required(VIEW_REPORT, raise_exception=True)
def report_render(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident, reference=reference)
    kinds = selectors.parse_kinds(request.POST.getlist("kind"))
    services.report_render_request(incident=incident, kinds=kinds, user=request.user)
    if request.htmx:
        status = selectors.pdf_status(incident=incident, kinds=kinds)
        return render(request, "reports/_pdf_status.html", {"incident": incident, "status": status, "kinds": kinds})
    messages.info(request, "Rendering the PDF of the report as it is now; it is ready in a few seconds.")
    return redirect(_report_url(incident, kinds, "#pdf"))


def _pdf_response(file: FieldFile, *, filename: str, rendered_at, sha256: str, current: bool) -> HttpResponse:
    try:
        handle = file.open("rb")
    except (FileNotFoundError, ValueError) as exc:
        raise Http404("The stored PDF is missing; render it again.") from exc
    response = FileResponse(handle, content_type="application/pdf", as_attachment=True, filename=filename)
    # "Says when it was rendered": in the file name, these headers and on the report page.
    response["X-Report-Rendered-At"] = rendered_at.isoformat()
    response["X-Report-SHA256"] = sha256
    response["X-Report-Current"] = "yes" if current else "no"
    response["Last-Modified"] = http_date(rendered_at.timestamp())
    response["Cache-Control"] = "private, no-cache"
    return response


@require_GET
@permission_required(VIEW_REPORT, raise_exception=True)
def report_pdf(request: HttpRequest, reference: str) -> HttpResponse:
    """The stored PDF of the report, if it is current (or ?stale=1); otherwise queue a render.

    While the newest revision is approved, this is the approved, frozen PDF.
    """
    # One query answers "is the newest revision approved and frozen?" along with the incident.
    incident = get_object_or_404(
        Incident.objects.only("pk", "reference", "state").annotate(
            frozen_revision=Subquery(
                PostIncidentReview.objects.filter(incident=OuterRef("pk"))
                .order_by("-revision")
                .exclude(content_sha256="")
                .filter(state=PostIncidentReview.State.APPROVED)
                .values("revision")[:1]
            ),
            latest_revision=Subquery(
                PostIncidentReview.objects.filter(incident=OuterRef("pk")).order_by("-revision").values("revision")[:1]
            ),
        ),
        reference=reference,
    )
    if incident.frozen_revision is not None and incident.frozen_revision == incident.latest_revision:
        latest = PostIncidentReview.objects.defer("frozen_html").get(
            incident=incident, revision=incident.frozen_revision
        )
        return _frozen_pdf(request, incident, latest)
    kinds = selectors.parse_kinds(request.GET.getlist("kind"))
    status = selectors.pdf_status(incident=incident, kinds=kinds)
    done = status.done
    if done is not None and (status.current or request.GET.get("stale") == "1"):
        stamp = done.rendered_at.strftime("%Y%m%dT%H%M%SZ")
        suffix = "" if status.current else "-outdated"
        return _pdf_response(
            done.pdf,
            filename=f"{incident.reference}-report-{stamp}{suffix}.pdf",
            rendered_at=done.rendered_at,
            sha256=done.sha256,
            current=status.current,
        )
    services.report_render_request(incident=incident, kinds=kinds, user=request.user)
    when = f" The stored one, rendered {done.rendered_at:%Y-%m-%d %H:%M} UTC, is out of date." if done else ""
    messages.info(
        request, "Rendering the PDF of the report as it is now; the download link appears when it is ready." + when
    )
    return redirect(_report_url(incident, kinds, "#pdf"))


def _frozen_pdf(request: HttpRequest, incident: Incident, review: PostIncidentReview) -> HttpResponse:
    if not review.pdf_sha256:
        services.review_ensure_frozen_pdf_queued(review=review)
        messages.info(
            request, f"The approved report r{review.revision} is being stored as PDF; try again in a few seconds."
        )
        return redirect(_report_url(incident, anchor="#review"))
    return _pdf_response(
        review.pdf,
        filename=f"{incident.reference}-report-r{review.revision}-approved.pdf",
        rendered_at=review.pdf_rendered_at,
        sha256=review.pdf_sha256,
        current=True,
    )


@require_GET
@permission_required(VIEW_REPORT, raise_exception=True)
def review_pdf(request: HttpRequest, reference: str, revision: int) -> HttpResponse:
    incident = get_object_or_404(Incident.objects.only("pk", "reference", "state"), reference=reference)
    review = get_object_or_404(
        PostIncidentReview.objects.defer("frozen_html"),
        incident=incident,
        revision=revision,
        state=PostIncidentReview.State.APPROVED,
    )
    if not review.is_frozen:
        raise Http404("This revision was approved without a frozen report.")
    return _frozen_pdf(request, incident, review)


# -- the review workflow ------------------------------------------------------------------------


def _review_of(incident: Incident, revision: int) -> PostIncidentReview:
    return get_object_or_404(PostIncidentReview.objects.defer("frozen_html"), incident=incident, revision=revision)


@require_POST
@permission_required("reports.add_postincidentreview", raise_exception=True)
def review_start(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident, reference=reference)
    try:
        review = services.review_start(incident=incident, user=request.user)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
        return redirect(_report_url(incident, anchor="#review"))
    messages.success(request, f"Post-incident review r{review.revision} started.")
    return redirect("reports:review_edit", reference=incident.reference, revision=review.revision)


@permission_required("reports.change_postincidentreview", raise_exception=True)
def review_edit(request: HttpRequest, reference: str, revision: int) -> HttpResponse:
    incident = _incident(reference)
    review = _review_of(incident, revision)
    if not review.is_editable:
        messages.info(
            request, f"Revision r{review.revision} is {review.get_state_display().lower()} and can no longer change."
        )
        return redirect(_report_url(incident, anchor="#review"))
    status = 200
    if request.method == "POST":
        form = ReviewForm(request.POST)
        if form.is_valid():
            try:
                review = services.review_update(
                    review=review,
                    user=request.user,
                    expected_updated_at=form.cleaned_data["updated_at"] or None,
                    **form.texts(),
                )
                if request.POST.get("submit_for_approval"):
                    review = services.review_submit(review=review, user=request.user)
            except services.ReviewChangedError as exc:
                form.add_error(None, str(exc))
            except ValidationError as exc:
                if hasattr(exc, "error_dict"):
                    for field, errors in exc.message_dict.items():
                        form.add_error(field if field in form.fields else None, errors)
                else:
                    form.add_error(None, exc)
            else:
                submitted = review.state == PostIncidentReview.State.SUBMITTED
                messages.success(
                    request, f"Review r{review.revision} " + ("submitted for approval." if submitted else "saved.")
                )
                return redirect(_report_url(incident, anchor="#review"))
        status = 400
    else:
        form = ReviewForm.for_review(review)
    timeline = selectors.timeline_rows(
        incident, [TimelineEntry.Kind.STATE_CHANGE, TimelineEntry.Kind.ESCALATION, TimelineEntry.Kind.NOTE]
    )
    return render(
        request,
        "reports/review_form.html",
        {
            "incident": incident,
            "review": review,
            "form": form,
            "timeline": timeline[-200:],
            "review_overdue": selectors.review_overdue(incident),
        },
        status=status,
    )


@require_POST
@permission_required("reports.change_postincidentreview", raise_exception=True)
def review_submit(request: HttpRequest, reference: str, revision: int) -> HttpResponse:
    incident = get_object_or_404(Incident, reference=reference)
    review = _review_of(incident, revision)
    try:
        services.review_submit(review=review, user=request.user)
    except services.ReviewChangedError as exc:
        messages.warning(request, str(exc))
    except ValidationError as exc:
        messages.error(request, "Not submitted: " + _errors(exc) + " Edit the review to complete it.")
    else:
        messages.success(request, f"Review r{review.revision} submitted for approval.")
    return redirect(_report_url(incident, anchor="#review"))


@require_POST
@permission_required(APPROVE_PERMISSION, raise_exception=True)
def review_request_changes(request: HttpRequest, reference: str, revision: int) -> HttpResponse:
    incident = get_object_or_404(Incident, reference=reference)
    review = _review_of(incident, revision)
    form = RequestChangesForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Changes not requested: " + " ".join(e for errs in form.errors.values() for e in errs))
        return redirect(_report_url(incident, anchor="#review"))
    try:
        services.review_request_changes(review=review, user=request.user, comments=form.cleaned_data["comments"])
    except services.ReviewChangedError as exc:
        messages.warning(request, str(exc))
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(request, f"Changes requested on review r{review.revision}.")
    return redirect(_report_url(incident, anchor="#review"))


@require_http_methods(["GET", "POST"])
@permission_required(APPROVE_PERMISSION, raise_exception=True)
def review_approve(request: HttpRequest, reference: str, revision: int) -> HttpResponse:
    """GET: the confirmation step (approving freezes the report for good); POST: approve."""
    incident = get_object_or_404(Incident, reference=reference)
    review = _review_of(incident, revision)
    if request.method == "GET":
        if review.state != PostIncidentReview.State.SUBMITTED:
            messages.warning(request, f"Review r{review.revision} is not waiting for approval.")
            return redirect(_report_url(incident, anchor="#review"))
        return render(request, "reports/review_approve_confirm.html", {"incident": incident, "review": review})
    # PermissionDenied (the author approving their own review) propagates as a 403.
    try:
        review = services.review_approve(review=review, user=request.user)
    except services.ReviewChangedError as exc:
        messages.warning(request, str(exc))
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(
            request,
            f"Review r{review.revision} approved; the report is "
            f"frozen (content SHA-256 {review.content_sha256[:16]}…).",
        )
    return redirect(_report_url(incident, anchor="#review"))


# -- action items -------------------------------------------------------------------------------


@require_POST
@permission_required("reports.add_actionitem", raise_exception=True)
def action_item_add(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_object_or_404(Incident, reference=reference)
    form = ActionItemForm(request.POST)
    if form.is_valid():
        try:
            services.action_item_create(incident=incident, user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"Action item added: {form.cleaned_data['title']}")
            return redirect(_report_url(incident, anchor="#action-items-panel"))
    items = list(ActionItem.objects.filter(incident=incident).select_related("owner").order_by("due_date", "id"))
    return render(
        request,
        "reports/action_item_add.html",
        {"incident": incident, "action_item_form": form, "action_items": items},
        status=400,
    )


@require_POST
@permission_required("reports.view_actionitem", raise_exception=True)
def action_item_update(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(ActionItem.objects.select_related("incident"), pk=pk)
    form = ActionItemUpdateForm(request.POST)
    back = request.POST.get("next") or ""
    if not back.startswith("/") or back.startswith("//"):
        back = reverse("reports:my_action_items")
    if not form.is_valid():
        messages.error(request, "That update was not understood; reload the page and try again.")
        return redirect(back)
    action, note = form.cleaned_data["action"], form.cleaned_data["note"]
    try:
        if action == "start":
            services.action_item_start(item=item, user=request.user)
        elif action == "complete":
            services.action_item_complete(item=item, user=request.user, note=note)
        else:
            services.action_item_decline(item=item, user=request.user, reason=note)
    except PermissionDenied:
        raise
    except ValidationError as exc:
        messages.error(request, f"“{item.title}” not updated: {_errors(exc)}")
    else:
        item.refresh_from_db(fields=["state"])
        messages.success(request, f"“{item.title}” is now {item.get_state_display().lower()}.")
    return redirect(back)


@require_GET
@permission_required("reports.view_actionitem", raise_exception=True)
def my_action_items(request: HttpRequest) -> HttpResponse:
    items = list(selectors.my_action_items(request.user))
    today = timezone.localdate()
    return render(
        request,
        "reports/my_action_items.html",
        {
            "active": [i for i in items if i.is_active],
            "closed": [i for i in items if not i.is_active][:50],
            "today": today,
            "soon": today + timedelta(days=3),
        },
    )


# -- metrics ------------------------------------------------------------------------------------


def _metrics_period(request: HttpRequest) -> tuple[MetricsFilterForm, selectors.Period | None]:
    form = MetricsFilterForm(request.GET or None)
    default = selectors.default_period(timezone.now().date())
    if not request.GET:
        form = MetricsFilterForm(initial={"start": default.start, "end": selectors.add_months(default.end, -1)})
        return form, default
    if not form.is_valid():
        return form, None
    return form, form.period(default)


@require_GET
@permission_required(METRICS_PERMISSION, raise_exception=True)
def metrics(request: HttpRequest) -> HttpResponse:
    form, period = _metrics_period(request)
    if period is None:
        return render(request, "reports/metrics.html", {"form": form}, status=400)
    data = selectors.metrics(period)
    return render(
        request,
        "reports/metrics.html",
        {"form": form, "period_label": period_label(period), "query": request.GET.urlencode(), **data},
    )


CSV_TABLES = ("mttx", "sla", "rto", "detection")


def _csv_cell(value) -> str:
    # A cell starting with = + - @ would run as a formula in a spreadsheet (system names are
    # admin-typed): prefix it so it stays text.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@require_GET
@permission_required(METRICS_PERMISSION, raise_exception=True)
def metrics_csv(request: HttpRequest) -> HttpResponse:
    form, period = _metrics_period(request)
    table = request.GET.get("table", "mttx")
    if period is None or table not in CSV_TABLES:
        errors = (
            {f: [str(e) for e in errs] for f, errs in form.errors.items()}
            if period is None
            else {"table": [f"Choose one of: {', '.join(CSV_TABLES)}."]}
        )
        text = "\n".join(f"{field}: {' '.join(errs)}" for field, errs in errors.items())
        return HttpResponse(text + "\n", status=400, content_type="text/plain; charset=utf-8")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    last = selectors.add_months(period.end, -1)
    response["Content-Disposition"] = f'attachment; filename="tmt-{table}-{period.start:%Y-%m}-to-{last:%Y-%m}.csv"'
    writer = csv.writer(response)
    if table == "mttx":
        writer.writerow(["month", "severity", "incidents", "acknowledged", "resolved", "mtta_minutes", "mttr_minutes"])
        for r in selectors.mttx_by_month(period):
            writer.writerow(
                [
                    f"{r['month']:%Y-%m}",
                    r["level"],
                    r["incidents"],
                    r["acknowledged"],
                    r["resolved"],
                    r["mtta_min"],
                    r["mttr_min"],
                ]
            )
    elif table == "sla":
        writer.writerow(["severity", "response_time", "met", "missed", "compliance_percent"])
        for r in selectors.sla_compliance(period):
            writer.writerow([r["severity"].level, _csv_cell(r["target"]), r["met"], r["missed"], r["compliance_pct"]])
    elif table == "rto":
        writer.writerow(["system", "rto_minutes", "resolved_incidents", "rto_breaches", "worst_recovery_minutes"])
        for r in selectors.rto_breaches(period):
            worst = round(r["worst"].total_seconds() / 60, 1) if r["worst"] is not None else None
            writer.writerow(
                [
                    _csv_cell(r["system"].name),
                    round(r["system"].rto.total_seconds() / 60, 1),
                    r["incidents"],
                    r["breaches"],
                    worst,
                ]
            )
    else:
        writer.writerow(["detection_method", "incidents"])
        for r in selectors.by_detection_method(period):
            writer.writerow([_csv_cell(r["label"]), r["incidents"]])
    return response
