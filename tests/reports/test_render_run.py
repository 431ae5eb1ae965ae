"""One render of the report to PDF, run in this process as the reports worker runs it: what it
claims, what it stores and under which name, what a failure leaves on the row, and what it
removes. (tests/reports/test_worker.py runs the same on a real worker, end to end.)"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta
from io import BytesIO
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone
from pypdf import PdfReader

from incidents import services
from reports import pdf as report_pdf
from reports import selectors
from reports import services as report_services
from reports.models import ReportRender
from tests.factories import open_incident

from .helpers import pdf_pages, pdf_text, resolved_incident, submitted_review

pytestmark = pytest.mark.django_db


@pytest.fixture
def incident(engineer):
    return resolved_incident(engineer, title="Order gateway rejected FIX logons")


def queued(incident, *, kinds=(), **fields) -> ReportRender:
    render = report_services.report_render_request(incident=incident, kinds=list(kinds))
    if fields:
        ReportRender.objects.filter(pk=render.pk).update(**fields)
        render.refresh_from_db()
    return render


def test_a_queued_render_is_stored_under_its_incident_time_and_hash(incident, engineer):
    review = submitted_review(incident, engineer)
    render = queued(incident)

    said = report_services.report_render_run(render_id=render.pk)

    render.refresh_from_db()
    content = render.pdf.read()
    sha = hashlib.sha256(content).hexdigest()
    assert render.state == ReportRender.State.DONE and render.error == ""
    assert render.sha256 == sha and render.size_bytes == len(content)
    assert render.pages == pdf_pages(content) >= 1
    assert re.fullmatch(rf"rendered {incident.reference}: {render.pages} pages in \d+\.\d\ds", said), said
    assert render.render_ms > 0 and render.claimed_at <= render.rendered_at <= timezone.now()
    assert render.source_key == selectors.report_source_key(incident_id=incident.pk, kinds=[])
    name = f"{incident.reference}-{render.claimed_at:%Y%m%dT%H%M%SZ}-{sha[:12]}.pdf"
    assert render.pdf.name.rsplit("/", 1)[-1] == name
    # The whole document (its title from the PDF template's head), as of the claim, with the review.
    assert PdfReader(BytesIO(content)).metadata.title == f"Incident Report: {incident.reference}"
    text = pdf_text(content)
    assert f"generated {render.claimed_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" in text
    assert f"Review revision r{review.revision}" in text


def test_a_render_keeps_the_source_key_of_what_it_rendered_not_of_when_it_was_asked_for(incident, engineer):
    render = queued(incident)
    asked = render.source_key
    services.timeline_add_note(incident=incident, author=engineer, text="Added while the render waited")
    report_services.report_render_run(render_id=render.pk)
    render.refresh_from_db()
    assert render.source_key == selectors.report_source_key(incident_id=incident.pk, kinds=[]) != asked
    assert "Added while the render waited" in pdf_text(render.pdf.read())


def test_the_render_time_is_kept_in_milliseconds(incident, monkeypatch):
    real = report_pdf.html_to_pdf
    monkeypatch.setattr(report_pdf, "html_to_pdf", lambda html: dataclasses.replace(real(html), seconds=2.0))
    render = queued(incident)
    said = report_services.report_render_run(render_id=render.pk)
    render.refresh_from_db()
    assert render.render_ms == 2000 and said.endswith(" in 2.00s")


def test_a_render_with_a_timeline_filter_shows_only_those_kinds(incident, engineer):
    services.timeline_add_note(incident=incident, author=engineer, text="Broker confirmed the fix")
    render = queued(incident, kinds=["alert"])
    report_services.report_render_run(render_id=render.pk)
    render.refresh_from_db()
    assert "Broker confirmed the fix" not in pdf_text(render.pdf.read())

    everything = queued(incident)
    report_services.report_render_run(render_id=everything.pk)
    everything.refresh_from_db()
    assert "Broker confirmed the fix" in pdf_text(everything.pdf.read())


@pytest.mark.parametrize("state", [ReportRender.State.DONE, ReportRender.State.FAILED])
def test_a_finished_render_is_not_rendered_again_however_long_ago_it_was_claimed(incident, state):
    long_ago = timezone.now() - timedelta(hours=1)
    render = queued(incident, state=state, claimed_at=long_ago)
    assert report_services.report_render_run(render_id=render.pk) == "nothing to do"
    render.refresh_from_db()
    assert render.state == state and not render.pdf and render.claimed_at == long_ago


@pytest.mark.parametrize(
    ("claimed_ago", "taken_over"),
    [(timedelta(minutes=9, seconds=50), False), (timedelta(minutes=10, seconds=10), True)],
)
def test_a_render_another_worker_claimed_is_taken_over_only_after_ten_minutes(incident, claimed_ago, taken_over):
    claimed_at = timezone.now() - claimed_ago
    render = queued(incident, state=ReportRender.State.RENDERING, claimed_at=claimed_at)

    said = report_services.report_render_run(render_id=render.pk)

    render.refresh_from_db()
    if taken_over:
        assert said.startswith("rendered") and render.state == ReportRender.State.DONE
        assert render.claimed_at > claimed_at
    else:
        assert said == "nothing to do"
        assert render.state == ReportRender.State.RENDERING and render.claimed_at == claimed_at


def test_only_the_render_asked_for_is_claimed(incident, engineer):
    render = queued(incident)
    other = queued(resolved_incident(engineer, title="Another one"))
    report_services.report_render_run(render_id=render.pk)
    other.refresh_from_db()
    assert other.state == ReportRender.State.PENDING and other.claimed_at is None


def test_a_failed_render_keeps_the_error_cut_to_500_characters_and_logs_it(incident, monkeypatch, caplog):
    def broken(html):
        raise ValueError("font table unreadable: " + "x" * 600)

    monkeypatch.setattr(report_pdf, "html_to_pdf", broken)
    render = queued(incident)

    with caplog.at_level(logging.ERROR, logger="reports.services"):
        said = report_services.report_render_run(render_id=render.pk)

    render.refresh_from_db()
    assert said == "failed"
    assert render.state == ReportRender.State.FAILED and not render.pdf
    assert render.error == ("ValueError: font table unreadable: " + "x" * 600)[:500]
    [record] = [r for r in caplog.records if r.name == "reports.services"]
    assert record.getMessage() == f"rendering report {render.pk} of {incident.reference} failed"
    assert record.exc_info is not None


def test_a_failure_after_another_worker_took_the_render_over_leaves_its_row_alone(incident, monkeypatch):
    render = queued(incident)
    taken_over_at = timezone.now() + timedelta(seconds=1)

    def taken_over_then_broken(html):
        ReportRender.objects.filter(pk=render.pk).update(claimed_at=taken_over_at)
        raise ValueError("too late")

    monkeypatch.setattr(report_pdf, "html_to_pdf", taken_over_then_broken)
    assert report_services.report_render_run(render_id=render.pk) == "failed"
    render.refresh_from_db()
    assert render.state == ReportRender.State.RENDERING and render.error == ""
    assert render.claimed_at == taken_over_at


def test_a_render_taken_over_while_it_ran_is_dropped_with_its_file(incident, monkeypatch, settings):
    render = queued(incident)
    taken_over_at = timezone.now() + timedelta(seconds=1)
    real = report_pdf.html_to_pdf

    def taken_over_meanwhile(html):
        ReportRender.objects.filter(pk=render.pk).update(claimed_at=taken_over_at)
        return real(html)

    monkeypatch.setattr(report_pdf, "html_to_pdf", taken_over_meanwhile)
    assert report_services.report_render_run(render_id=render.pk) == "superseded"
    render.refresh_from_db()
    assert render.state == ReportRender.State.RENDERING and render.claimed_at == taken_over_at and not render.pdf
    assert list(Path(settings.MEDIA_ROOT).rglob("*.pdf")) == []


def test_a_finished_render_removes_the_older_finished_renders_of_the_same_variant_only(incident, engineer):
    old_done = queued(incident)
    report_services.report_render_run(render_id=old_done.pk)
    old_done.refresh_from_db()
    old_file = old_done.pdf.name
    old_failed = ReportRender.objects.create(
        incident=incident,
        timeline_kinds="",
        source_key="older",
        state=ReportRender.State.FAILED,
        requested_at=old_done.requested_at - timedelta(minutes=1),
    )
    filtered = queued(incident, kinds=["alert"])
    report_services.report_render_run(render_id=filtered.pk)
    elsewhere = queued(open_incident(reported_by=engineer), state=ReportRender.State.DONE)
    older_in_progress = ReportRender.objects.create(
        incident=incident,
        timeline_kinds="",
        source_key="in progress",
        state=ReportRender.State.RENDERING,
        claimed_at=timezone.now(),
        requested_at=old_done.requested_at - timedelta(minutes=2),
    )
    # A later change to the incident makes a new render of the same variant.
    services.timeline_add_note(incident=incident, author=engineer, text="Broker confirmed the fix")
    newer = queued(incident)
    assert newer.pk != old_done.pk

    report_services.report_render_run(render_id=newer.pk)

    remaining = set(ReportRender.objects.values_list("pk", flat=True))
    assert old_done.pk not in remaining and old_failed.pk not in remaining
    assert not old_done.pdf.storage.exists(old_file)
    assert {newer.pk, filtered.pk, elsewhere.pk, older_in_progress.pk} <= remaining


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("postgres")
def test_two_people_asking_for_the_same_render_at_once_get_one_render(engineer, monkeypatch):
    incident = resolved_incident(engineer)
    ReportRender.objects.all().delete()
    key = selectors.report_source_key(incident_id=incident.pk, kinds=[])
    # What may already be there: an older render of the same report still queued (other content),
    # and a failed render of this very content. Neither is the one both requests must join.
    older = ReportRender.objects.create(
        incident=incident,
        timeline_kinds="",
        source_key="older content",
        reason="on_demand",
        requested_at=timezone.now(),
    )
    failed = ReportRender.objects.create(
        incident=incident,
        timeline_kinds="",
        source_key=key,
        reason="on_demand",
        state=ReportRender.State.FAILED,
        requested_at=timezone.now(),
    )
    # Both requests have looked for a render (and found none) before either inserts one: the
    # unique constraint refuses the second insert, whose request must join the first's render.
    both_looked = threading.Barrier(2)
    create = ReportRender.objects.create
    inserts = []

    def wait_then_create(**kwargs):
        inserts.append(1)
        both_looked.wait(timeout=20)
        return create(**kwargs)

    monkeypatch.setattr(ReportRender.objects, "create", wait_then_create)
    monkeypatch.setattr(report_services, "_send_render", lambda render_id: None)

    def ask(_):
        try:
            return report_services.report_render_request(incident=incident, kinds=[]).pk
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(ask, range(2)))

    assert len(inserts) == 2  # both tried: one of them took the constraint's refusal
    joined = ReportRender.objects.exclude(pk__in=[older.pk, failed.pk]).get()
    assert answers == [joined.pk, joined.pk]
    assert joined.source_key == key and joined.state == ReportRender.State.PENDING
