"""Four eyes on a review: whoever wrote it and whoever submitted it are not who approves it.

Author, submitter and approver are three different people here, so each half of the rule is
tested on its own (a test where one person writes and submits cannot tell the halves apart)."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from reports import services as report_services
from reports.models import PostIncidentReview

from .helpers import resolved_incident, user_in, written_review

pytestmark = pytest.mark.django_db

VERBS = {
    "approve": lambda review, user: report_services.review_approve(review=review, user=user),
    "request changes": lambda review, user: report_services.review_request_changes(
        review=review, user=user, comments="Quantify the impact."
    ),
}


@pytest.fixture
def people(db):
    """Three managers, each allowed to write, submit and approve reviews."""
    return {
        "author": user_in("Incident Manager", "author_im"),
        "submitter": user_in("Incident Manager", "submitter_im"),
        "approver": user_in("CTO", "approver_cto"),
    }


def _submitted_by_another(people) -> PostIncidentReview:
    incident = resolved_incident(people["author"])
    review = written_review(incident, people["author"])
    review = report_services.review_submit(review=review, user=people["submitter"])
    assert (review.author, review.submitted_by) == (people["author"], people["submitter"])
    return review


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("who", ["author", "submitter"])
def test_neither_the_author_nor_the_submitter_may_decide(people, verb, who):
    review = _submitted_by_another(people)
    with pytest.raises(PermissionDenied, match="another manager"):
        VERBS[verb](review, people[who])
    review.refresh_from_db()
    assert review.state == PostIncidentReview.State.SUBMITTED
    assert review.approved_by is None and review.changes_requested_by is None


@pytest.mark.parametrize("verb", VERBS)
def test_a_third_manager_may_decide(people, verb):
    review = _submitted_by_another(people)
    decided = VERBS[verb](review, people["approver"])
    assert decided.state in (PostIncidentReview.State.APPROVED, PostIncidentReview.State.CHANGES_REQUESTED)
