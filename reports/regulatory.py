"""A regulatory report (one stage of a regime) as PDF: the same drafted content as the JSON
export, rendered by the report renderer (which fetches nothing beyond the project's static files).
It is a page or two, so it is rendered in the request rather than queued like incident reports."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET

from incidents.escalation.models import RegulatoryObligation
from incidents.escalation.regimes import report_export


def regulatory_report_pdf_bytes(obligation: RegulatoryObligation) -> bytes:
    from .pdf import html_to_pdf  # WeasyPrint takes seconds to import: only renderers pay for it

    html = render_to_string(
        "reports/regulatory_report_pdf.html",
        {"obligation": obligation, "report": report_export(obligation), "generated_at": timezone.now()},
    )
    return html_to_pdf(html).content


@require_GET
@permission_required("escalation.view_regulatoryobligation", raise_exception=True)
def regulatory_pdf(request: HttpRequest, reference: str, obligation_id: int) -> HttpResponse:
    obligation = get_object_or_404(
        RegulatoryObligation.objects.select_related(
            "incident", "incident__severity", "regime", "stage", "classification", "classification__classified_by"
        ),
        pk=obligation_id,
        incident__reference=reference,
        category=None,
    )
    response = HttpResponse(regulatory_report_pdf_bytes(obligation), content_type="application/pdf")
    name = f"{obligation.incident.reference}-{obligation.regime.key}-{obligation.stage.key}.pdf"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "private, no-cache"
    return response
