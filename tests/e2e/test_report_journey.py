"""A manager's journey in a real browser: open a resolved incident's report, download the PDF,
request changes, and after the author's fix approve it and download the frozen PDF.

PDFs are rendered by a real Celery worker (reports queue) on Redis, as in production.
"""

from __future__ import annotations

import hashlib
import re
from io import BytesIO
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from pypdf import PdfReader

from reports.models import PostIncidentReview
from tests.factories import DEMO_PASSWORD
from tests.reports.helpers import resolved_incident, submitted_review

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("celery_worker"),
]

RENDER_TIMEOUT = 60_000  # ms: a PDF render on a busy machine


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(base_url + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name=f"Log out {username}")).to_be_visible()


def download(page: Page, tmp_path: Path, name: str) -> bytes:
    with page.expect_download() as info:
        page.get_by_test_id("download-pdf").click()
    target = tmp_path / name
    info.value.save_as(target)
    return target.read_bytes()


def text_of(pdf: bytes) -> str:
    return "\n".join(p.extract_text() for p in PdfReader(BytesIO(pdf)).pages)


def test_manager_downloads_requests_changes_and_approves(
    page: Page, browser: Browser, live_server, engineer, manager, tmp_path
):
    incident = resolved_incident(engineer, title="Market data feed stalled for 14 minutes")
    submitted_review(incident, engineer, response_effectiveness="Acknowledged quickly.")

    # The manager opens the incident and follows its Report link.
    log_in(page, live_server.url, manager.username)
    page.goto(live_server.url + incident.get_absolute_url())
    page.get_by_test_id("report-link").click()
    expect(page.get_by_test_id("report-heading")).to_have_text(f"Incident report · {incident.reference}")
    report = page.get_by_test_id("report")
    expect(report.get_by_role("heading", name="Root Cause Analysis")).to_be_visible()
    expect(report).to_contain_text("Market data consumer ran out of file descriptors.")
    expect(page.get_by_test_id("review-state")).to_contain_text("Revision r1: Submitted")

    # The review changed the report since it was rendered on resolve: render it, then download.
    status = page.get_by_test_id("pdf-status")
    render_button = status.get_by_role("button", name="Render PDF now")
    if render_button.count():
        render_button.click()
    expect(page.get_by_test_id("download-pdf")).to_be_visible(timeout=RENDER_TIMEOUT)
    expect(page.get_by_test_id("pdf-state")).to_contain_text("current")
    draft_pdf = download(page, tmp_path, "draft.pdf")
    text = text_of(draft_pdf)
    assert f"Incident Report: {incident.reference}" in text and "DRAFT, not approved" in text
    assert "Acknowledged quickly." in text

    # Changes requested, with a comment.
    page.get_by_label("What needs to change").fill("Quantify the delayed orders in the response evaluation.")
    page.get_by_role("button", name="Request changes").click()
    expect(page.get_by_role("status")).to_contain_text("Changes requested on review r1.")
    expect(page.get_by_test_id("review-state")).to_contain_text("Revision r1: Changes requested")
    expect(page.get_by_test_id("reviewer-comments")).to_contain_text("Quantify the delayed orders")
    expect(page.get_by_test_id("approve")).to_have_count(0)

    # The author fixes it and resubmits, in their own session.
    author_context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-GB", timezone_id="UTC")
    author = author_context.new_page()
    try:
        log_in(author, live_server.url, engineer.username)
        author.goto(live_server.url + f"/reports/{incident.reference}/")
        expect(author.get_by_test_id("reviewer-comments")).to_contain_text("Quantify the delayed orders")
        author.get_by_role("button", name="Edit the review").click()  # Pico: role="button"
        field = author.get_by_label("How effective was the response?")
        field.fill("Acknowledged quickly; 212 orders were delayed by up to 14 minutes.")
        author.get_by_role("button", name="Save and submit for approval").click()
        expect(author.get_by_role("status")).to_contain_text("Review r1 submitted for approval.")
        expect(author.get_by_test_id("approve")).to_have_count(0)  # the author cannot approve
    finally:
        author_context.close()

    # The manager approves the fixed revision; the report is frozen and stored once as PDF.
    page.reload()
    expect(page.get_by_test_id("review-state")).to_contain_text("Revision r1: Submitted")
    expect(page.get_by_test_id("report")).to_contain_text("212 orders were delayed")
    page.get_by_test_id("approve").click()
    expect(page.get_by_test_id("approve-confirmation")).to_contain_text("cannot be undone")
    assert PostIncidentReview.objects.get(incident=incident).state == "submitted"  # not by the first click
    page.get_by_test_id("approve-confirm").click()
    expect(page.get_by_role("status")).to_contain_text("approved; the report is frozen")
    expect(page.get_by_test_id("review-state")).to_contain_text("Revision r1: Approved")
    content_hash = page.get_by_test_id("content-sha256").inner_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", content_hash)
    expect(page.get_by_test_id("download-pdf")).to_be_visible(timeout=RENDER_TIMEOUT)
    pdf_hash = page.get_by_test_id("pdf-sha256").inner_text().strip()
    approved_pdf = download(page, tmp_path, "approved.pdf")
    assert hashlib.sha256(approved_pdf).hexdigest() == pdf_hash
    approved_text = text_of(approved_pdf)
    assert content_hash in approved_text and "212 orders were delayed" in approved_text
    review = PostIncidentReview.objects.get(incident=incident)
    assert (review.state, review.approved_by_id, review.pdf_sha256) == ("approved", manager.pk, pdf_hash)
    assert page.js_errors == []  # type: ignore[attr-defined]
