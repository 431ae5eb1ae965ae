"""Rendering on a real Celery worker over Redis: on resolve, on demand, and the approved PDF."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.urls import reverse

from incidents import services
from reports import services as report_services
from reports.models import PostIncidentReview, ReportRender
from tests.celery_fixtures import wait_for
from tmt_ir.celery import app

from .helpers import pdf_text, resolved_incident, submitted_review

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("postgres", "celery_worker"),
]


def _done(incident) -> ReportRender | None:
    return (
        ReportRender.objects.filter(incident=incident, state=ReportRender.State.DONE).order_by("-rendered_at").first()
    )


def test_rendering_runs_on_the_reports_queue():
    for task in ("reports.tasks.render_report", "reports.tasks.render_approved_review"):
        assert app.amqp.router.route({}, task)["queue"].name == "reports"


def test_resolving_renders_the_report_and_the_download_serves_it_while_current(engineer, manager, client):
    incident = resolved_incident(engineer)
    render = wait_for(lambda: _done(incident), timeout=60, what="the PDF rendered on resolve")
    assert render.reason == ReportRender.Reason.RESOLVED and render.pages >= 1

    client.force_login(manager)
    url = reverse("reports:pdf", args=[incident.reference])
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    content = b"".join(response.streaming_content)
    assert hashlib.sha256(content).hexdigest() == render.sha256 == response["X-Report-SHA256"]
    assert response["X-Report-Current"] == "yes"
    assert response["X-Report-Rendered-At"] == render.rendered_at.isoformat()
    stamp = render.rendered_at.strftime("%Y%m%dT%H%M%SZ")
    assert f'filename="{incident.reference}-report-{stamp}.pdf"' in response["Content-Disposition"]
    assert incident.reference in pdf_text(content)
    page = client.get(reverse("reports:report", args=[incident.reference])).content.decode()
    assert f"Rendered {render.rendered_at:%Y-%m-%d %H:%M:%S} UTC · current" in page

    # A later note makes the stored PDF stale: the download says so and queues a fresh render.
    services.timeline_add_note(incident=incident, author=engineer, text="Broker confirmed the fix")
    stale = client.get(url + "?stale=1")  # asked for explicitly, the older PDF is served, marked
    assert stale["X-Report-Current"] == "no" and "-outdated.pdf" in stale["Content-Disposition"]
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].endswith("#pdf")
    fresh = wait_for(lambda: (r := _done(incident)) and r.pk != render.pk and r, timeout=60, what="a fresh render")
    response = client.get(url)
    assert response.status_code == 200 and response["X-Report-SHA256"] == fresh.sha256
    assert "Broker confirmed the fix" in pdf_text(b"".join(response.streaming_content))
    # The superseded render and its file are gone.
    assert not ReportRender.objects.filter(pk=render.pk).exists()
    assert not render.pdf.storage.exists(render.pdf.name)


def test_on_demand_render_with_a_timeline_filter(engineer, manager, client):
    incident = resolved_incident(engineer)
    services.timeline_add_note(incident=incident, author=engineer, text="Filtered note")
    client.force_login(manager)
    response = client.post(reverse("reports:render", args=[incident.reference]), {"kind": ["note"]})
    assert response.status_code == 302
    render = wait_for(
        lambda: ReportRender.objects.filter(incident=incident, timeline_kinds="note", state="done").first(),
        timeout=60,
        what="the filtered render",
    )
    response = client.get(reverse("reports:pdf", args=[incident.reference]) + "?kind=note")
    text = pdf_text(b"".join(response.streaming_content))
    assert response["X-Report-SHA256"] == render.sha256
    assert "Filtered note" in text and "Acknowledge: Detected → Acknowledged" not in text


def test_an_approved_reports_hash_is_stable(engineer, manager, client):
    incident = resolved_incident(engineer)
    review = report_services.review_approve(review=submitted_review(incident, engineer), user=manager)
    review = wait_for(
        lambda: PostIncidentReview.objects.filter(pk=review.pk).exclude(pdf_sha256="").first(),
        timeout=60,
        what="the approved PDF stored",
    )
    stored = review.pdf.read()
    assert hashlib.sha256(stored).hexdigest() == review.pdf_sha256

    client.force_login(manager)
    url = reverse("reports:review_pdf", args=[incident.reference, 1])
    first = b"".join(client.get(url).streaming_content)
    assert first == stored
    # The content hash is in the PDF's footer (every page) and on the page, with the file hash.
    text = pdf_text(first)
    footers = re.findall(r"content SHA-256\s+([0-9a-f]{64})", text)
    assert footers and set(footers) == {review.content_sha256}
    page = client.get(reverse("reports:report", args=[incident.reference])).content.decode()
    assert review.content_sha256 in page and review.pdf_sha256 in page

    # Later changes, renders and downloads leave the approved PDF as it is.
    services.timeline_add_note(incident=incident, author=engineer, text="A note after approval")
    services.incident_update(incident=incident, user=engineer, went_well="Rewritten afterwards")
    assert report_services.review_render_frozen_pdf(review_id=review.pk) == "already stored"
    report_services.report_render_request(incident=incident, kinds=[], user=manager)
    again = client.get(url)
    assert again["X-Report-SHA256"] == review.pdf_sha256
    assert b"".join(again.streaming_content) == first
    latest = client.get(reverse("reports:pdf", args=[incident.reference]))  # the report's PDF = the approved one
    assert b"".join(latest.streaming_content) == first
    review.refresh_from_db()
    assert report_services.review_content_verifies(review)
    assert "A note after approval" not in text
