"""The report page, action item pages and downloads: login, permissions, bad input, query counts."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents import services
from reports import services as report_services
from reports.models import ActionItem, ReportRender
from tests.factories import UserFactory, open_incident

from .helpers import resolve, resolved_incident, submitted_review

pytestmark = pytest.mark.django_db


def _urls(reference: str) -> list[str]:
    return [
        reverse("reports:report", args=[reference]),
        reverse("reports:pdf", args=[reference]),
        reverse("reports:pdf_status", args=[reference]),
        reverse("reports:review_edit", args=[reference, 1]),
        reverse("reports:review_pdf", args=[reference, 1]),
        reverse("reports:my_action_items"),
        reverse("reports:metrics"),
        reverse("reports:metrics_csv"),
        reverse("reports:reviews"),
    ]


def test_every_page_needs_a_login(client, engineer):
    incident = resolved_incident(engineer)
    for url in _urls(incident.reference):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


def test_pages_need_the_right_permission(client, engineer, trainer):
    incident = resolved_incident(engineer)
    client.force_login(trainer)  # trainers see incidents, not reviews or metrics
    assert client.get(reverse("reports:report", args=[incident.reference])).status_code == 403
    assert client.get(reverse("reports:pdf", args=[incident.reference])).status_code == 403
    assert client.get(reverse("reports:metrics")).status_code == 403
    assert client.get(reverse("reports:reviews")).status_code == 403
    assert client.get(reverse("reports:my_action_items")).status_code == 200
    client.force_login(engineer)
    assert client.get(reverse("reports:metrics")).status_code == 403  # metrics are for managers
    assert client.post(reverse("reports:review_approve", args=[incident.reference, 1])).status_code == 403


def test_the_report_page_shows_the_preview_and_links_from_the_incident(engineer_client, engineer):
    incident = resolved_incident(engineer, user_impact="<i>typed</i>")
    detail = engineer_client.get(incident.get_absolute_url()).content.decode()
    assert f'href="{reverse("reports:report", args=[incident.reference])}"' in detail
    page = engineer_client.get(reverse("reports:report", args=[incident.reference])).content.decode()
    assert f"Incident Report: {incident.reference}" in page
    assert "&lt;i&gt;typed&lt;/i&gt;" in page and "<i>typed</i>" not in page
    assert "Start the post-incident review" in page
    assert 'data-testid="kind-filter"' in page


def test_the_report_page_runs_a_constant_number_of_queries(manager_client, engineer, django_assert_max_num_queries):
    def queries(incident) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert manager_client.get(reverse("reports:report", args=[incident.reference])).status_code == 200
        return len(ctx.captured_queries)

    small = resolved_incident(engineer)
    big = resolved_incident(engineer)
    for inc in (small, big):
        submitted_review(inc, engineer)
    for n in range(300):
        services.timeline_add_note(incident=big, author=UserFactory() if n % 50 == 0 else engineer, text=f"note {n}")
    for n in range(5):
        report_services.action_item_create(
            incident=big,
            user=engineer,
            title=f"item {n}",
            kind=ActionItem.Kind.IMMEDIATE,
            owner=UserFactory(),
            due_date=timezone.localdate() + timedelta(days=n + 1),
        )
    assert queries(big) == queries(small)
    # The report, its review and action items, and each app's section (recovery points, the halt
    # banner on every page): a bound, so a new section's cost is a decision, not a drift.
    with django_assert_max_num_queries(28):
        manager_client.get(reverse("reports:report", args=[big.reference]))


def test_the_download_queues_a_render_when_none_is_stored(manager_client, engineer):
    incident = resolved_incident(engineer)
    ReportRender.objects.all().delete()
    response = manager_client.get(reverse("reports:pdf", args=[incident.reference]), follow=True)
    assert "Rendering the PDF of the report as it is now" in response.content.decode()
    render = ReportRender.objects.get(incident=incident)
    assert render.state == ReportRender.State.PENDING and render.reason == ReportRender.Reason.ON_DEMAND
    # Asking again joins the queued render.
    manager_client.get(reverse("reports:pdf", args=[incident.reference]))
    assert ReportRender.objects.filter(incident=incident).count() == 1
    fragment = manager_client.get(reverse("reports:pdf_status", args=[incident.reference]), HTTP_HX_REQUEST="true")
    assert 'hx-trigger="every 1s"' in fragment.content.decode()


def test_unknown_kinds_and_incidents_are_not_errors(manager_client, engineer):
    incident = resolved_incident(engineer)
    url = reverse("reports:report", args=[incident.reference])
    assert manager_client.get(url + "?kind=bogus&kind=%00").status_code == 200
    assert manager_client.get(reverse("reports:report", args=["TMT-INC-1999-01-01-001"])).status_code == 404
    assert manager_client.get(reverse("reports:review_pdf", args=[incident.reference, 7])).status_code == 404


# -- action items -------------------------------------------------------------------------------


def test_adding_an_action_item_with_bad_input_gives_field_errors(engineer_client, engineer):
    incident = resolved_incident(engineer)
    url = reverse("reports:action_item_add", args=[incident.reference])
    for data, field_error in [
        ({"title": "", "kind": "immediate", "owner": engineer.pk, "due_date": "2030-01-01"}, "This field is required."),
        ({"title": "x", "kind": "soon", "owner": engineer.pk, "due_date": "2030-01-01"}, "Select a valid choice."),
        (
            {"title": "x", "kind": "immediate", "owner": 999999, "due_date": "2030-01-01"},
            "Choose one of the listed people.",
        ),
        (
            {"title": "x", "kind": "immediate", "owner": "1; DROP", "due_date": "2030-01-01"},
            "Choose one of the listed people.",
        ),
        ({"title": "x", "kind": "immediate", "owner": engineer.pk, "due_date": "31/02/2030"}, "Enter a valid date."),
        (
            {"title": "x", "kind": "immediate", "owner": engineer.pk, "due_date": "2001-01-01"},
            "The due date cannot be in the past.",
        ),
        (
            {"title": "x" * 201, "kind": "immediate", "owner": engineer.pk, "due_date": "2030-01-01"},
            "at most 200 characters",
        ),
    ]:
        response = engineer_client.post(url, data)
        assert response.status_code == 400, data
        assert field_error in response.content.decode(), data
    assert not ActionItem.objects.exists()
    response = engineer_client.post(
        url, {"title": "Alert on lag", "kind": "monitoring", "owner": engineer.pk, "due_date": "2030-01-01"}
    )
    assert response.status_code == 302
    assert ActionItem.objects.get().title == "Alert on lag"


def test_owners_move_their_items_and_others_cannot(client, engineer, trainer):
    incident = resolved_incident(engineer)
    item = report_services.action_item_create(
        incident=incident,
        user=engineer,
        title="Runbook entry",
        kind=ActionItem.Kind.LONG_TERM,
        owner=engineer,
        due_date=timezone.localdate() + timedelta(days=3),
    )
    url = reverse("reports:action_item_update", args=[item.pk])
    client.force_login(trainer)
    assert client.post(url, {"action": "complete"}).status_code == 403
    client.force_login(engineer)
    response = client.post(url, {"action": "decline", "note": "  "}, follow=True)
    assert "Say why this will not be done." in response.content.decode()
    item.refresh_from_db()
    assert item.state == ActionItem.State.OPEN
    assert client.post(url, {"action": "explode"}).status_code == 302  # not understood, nothing done
    client.post(url, {"action": "start", "next": "https://evil.example/"})
    item.refresh_from_db()
    assert item.state == ActionItem.State.IN_PROGRESS
    response = client.post(url, {"action": "complete", "note": "Written and reviewed"})
    assert response["Location"] == reverse("reports:my_action_items")  # no open redirect
    item.refresh_from_db()
    assert item.state == ActionItem.State.DONE and item.closing_note == "Written and reviewed"


def test_my_action_items_lists_mine_with_overdue_ones_marked(client, engineer, sysadmin, django_assert_max_num_queries):
    incident = resolved_incident(engineer)
    for n in range(12):
        report_services.action_item_create(
            incident=incident,
            user=engineer,
            title=f"Mine {n}",
            kind=ActionItem.Kind.IMMEDIATE,
            owner=engineer,
            due_date=timezone.localdate() + timedelta(days=n),
        )
    report_services.action_item_create(
        incident=incident,
        user=engineer,
        title="Someone else's",
        kind=ActionItem.Kind.IMMEDIATE,
        owner=sysadmin,
        due_date=timezone.localdate() + timedelta(days=1),
    )
    overdue = ActionItem.objects.get(title="Mine 0")
    ActionItem.objects.filter(pk=overdue.pk).update(due_date=timezone.localdate() - timedelta(days=2))
    client.force_login(engineer)
    with django_assert_max_num_queries(10):
        page = client.get(reverse("reports:my_action_items")).content.decode()
    assert len(re.findall(r"<td>Mine \d+", page)) == 12 and "Someone else" not in page
    assert "(overdue)" in page
    assert page.index("Mine 0") < page.index("Mine 11")


def test_the_approved_report_page_shows_both_hashes_once_stored(manager_client, engineer, manager):
    incident = resolved_incident(engineer)
    review = report_services.review_approve(review=submitted_review(incident, engineer), user=manager)
    page = manager_client.get(reverse("reports:report", args=[incident.reference])).content.decode()
    assert review.content_sha256 in page
    assert "Storing the approved report as PDF" in page
    report_services.review_render_frozen_pdf(review_id=review.pk)
    review.refresh_from_db()
    page = manager_client.get(reverse("reports:report", args=[incident.reference])).content.decode()
    assert review.pdf_sha256 in page and "Download approved PDF (r1)" in page


def test_a_review_in_draft_elsewhere_can_be_started_by_responders_only(client, engineer, trainer):
    incident = open_incident(reported_by=engineer)
    client.force_login(trainer)
    assert client.post(reverse("reports:review_start", args=[incident.reference])).status_code == 403
    client.force_login(engineer)
    response = client.post(reverse("reports:review_start", args=[incident.reference]), follow=True)
    assert "starts once the incident is resolved" in response.content.decode()


def test_the_pdf_panel_follows_the_approved_pdf_once_frozen(manager_client, engineer, manager):
    incident = resolved_incident(engineer)
    review = report_services.review_approve(review=submitted_review(incident, engineer), user=manager)
    url = reverse("reports:pdf_status", args=[incident.reference])
    fragment = manager_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-testid="frozen-status"' in fragment and 'hx-trigger="every 1s"' in fragment
    report_services.review_render_frozen_pdf(review_id=review.pk)
    fragment = manager_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "Download approved PDF (r1)" in fragment and "hx-trigger" not in fragment


def test_a_backdated_resolution_is_rendered_on_first_download_not_at_once(engineer):
    past = timezone.now() - timedelta(days=3)
    incident = resolve(open_incident(reported_by=engineer, detected_at=past - timedelta(hours=2)), engineer, at=past)
    assert not ReportRender.objects.filter(incident=incident).exists()
    live = resolved_incident(engineer)
    assert ReportRender.objects.get(incident=live).reason == ReportRender.Reason.RESOLVED


def test_out_of_range_numbers_in_urls_are_404s_not_500s(manager_client, engineer):
    incident = resolved_incident(engineer)
    huge = 10**20
    for url in (
        reverse("reports:review_pdf", args=[incident.reference, huge]),
        reverse("reports:review_edit", args=[incident.reference, 70000]),
    ):
        assert manager_client.get(url).status_code == 404, url
    assert (
        manager_client.post(reverse("reports:action_item_update", args=[huge]), {"action": "start"}).status_code == 404
    )


def test_the_reviews_list_runs_a_constant_number_of_queries(manager_client, engineer, django_assert_max_num_queries):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert manager_client.get(reverse("reports:reviews")).status_code == 200
        return len(ctx.captured_queries)

    submitted_review(resolved_incident(engineer), engineer)
    resolved_incident(engineer)
    few = queries()
    for _ in range(4):
        submitted_review(resolved_incident(engineer), engineer)
    assert queries() == few
