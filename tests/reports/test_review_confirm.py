"""Approving a review freezes the report for good: the page asks first."""

from __future__ import annotations

import pytest
from django.urls import reverse

from reports.models import PostIncidentReview

from .helpers import resolved_incident, submitted_review

pytestmark = pytest.mark.django_db


def test_approve_on_the_report_page_is_a_link_to_a_confirmation(client, engineer, manager):
    incident = resolved_incident(engineer)
    review = submitted_review(incident, engineer)
    client.force_login(manager)
    page = client.get(reverse("reports:report", args=[incident.reference])).content.decode()
    approve_url = reverse("reports:review_approve", args=[incident.reference, review.revision])
    assert f'href="{approve_url}" data-testid="approve"' in page

    confirm = client.get(approve_url)
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert "cannot be undone" in html and 'data-testid="approve-confirm"' in html
    review.refresh_from_db()
    assert review.state == PostIncidentReview.State.SUBMITTED  # looking is not approving

    response = client.post(approve_url, follow=True)
    assert "approved; the report is frozen" in response.content.decode()
    review.refresh_from_db()
    assert review.state == PostIncidentReview.State.APPROVED


def test_the_confirmation_is_only_for_a_review_waiting_for_approval(client, engineer, manager):
    incident = resolved_incident(engineer)
    review = submitted_review(incident, engineer)
    client.force_login(manager)
    url = reverse("reports:review_approve", args=[incident.reference, review.revision])
    client.post(url)
    response = client.get(url, follow=True)
    assert "is not waiting for approval" in response.content.decode()
    assert 'data-testid="approve-confirm"' not in response.content.decode()


def test_the_confirmation_needs_the_right_to_approve(client, engineer):
    incident = resolved_incident(engineer)
    review = submitted_review(incident, engineer)
    client.force_login(engineer)
    assert client.get(reverse("reports:review_approve", args=[incident.reference, review.revision])).status_code == 403
