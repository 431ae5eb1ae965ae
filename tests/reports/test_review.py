"""The post-incident review: draft → submitted → approved, or changes requested with comments."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from incidents import services
from incidents.models import State, TimelineEntry
from reports import services as report_services
from reports.models import PostIncidentReview
from tests.factories import open_incident

from .helpers import REVIEW_TEXT, resolved_incident, submitted_review, user_in, written_review

pytestmark = pytest.mark.django_db


def _actions(incident) -> list[str]:
    return list(incident.timeline.filter(data__has_key="review").order_by("id").values_list("action", flat=True))


def test_draft_submit_request_changes_resubmit_approve(engineer, manager):
    incident = resolved_incident(engineer)
    review = report_services.review_start(incident=incident, user=engineer)
    assert review.revision == 1 and review.state == PostIncidentReview.State.DRAFT
    # The revision starts from what responders recorded on the incident.
    assert review.resolution_actions == "Restarted the market analysis agent."
    incident.refresh_from_db()
    assert incident.state == State.IN_REVIEW  # starting the review moves the incident on

    review = report_services.review_update(review=review, user=engineer, **REVIEW_TEXT)
    review = report_services.review_submit(review=review, user=engineer)
    assert review.state == PostIncidentReview.State.SUBMITTED and review.submitted_by == engineer

    review = report_services.review_request_changes(review=review, user=manager, comments="Quantify the impact.")
    assert review.state == PostIncidentReview.State.CHANGES_REQUESTED
    assert review.reviewer_comments == "Quantify the impact." and review.changes_requested_by == manager

    review = report_services.review_update(
        review=review, user=engineer, response_effectiveness="Fast; 212 orders delayed."
    )
    review = report_services.review_submit(review=review, user=engineer)
    review = report_services.review_approve(review=review, user=manager)

    assert review.state == PostIncidentReview.State.APPROVED
    assert review.approved_by == manager and review.approved_at is not None
    assert len(review.content_sha256) == 64 and review.content_sha256 in review.frozen_html
    assert report_services.review_content_verifies(review)
    actions = _actions(incident)
    assert actions[0] == "Post-incident review r1 started"
    assert "Post-incident review r1 submitted for approval" in actions
    assert "Changes requested on post-incident review r1: Quantify the impact." in actions
    assert actions[-1].startswith("Post-incident review r1 approved by")
    assert all(
        kind == TimelineEntry.Kind.UPDATE
        for kind in incident.timeline.filter(data__has_key="review").values_list("kind", flat=True)
    )


def test_a_non_manager_cannot_approve(engineer, sysadmin, client):
    incident = resolved_incident(engineer)
    review = submitted_review(incident, engineer)
    with pytest.raises(PermissionDenied):
        report_services.review_approve(review=review, user=sysadmin)
    with pytest.raises(PermissionDenied):
        report_services.review_request_changes(review=review, user=sysadmin, comments="No.")
    client.force_login(sysadmin)
    url = reverse("reports:review_approve", args=[incident.reference, review.revision])
    assert client.post(url).status_code == 403
    review.refresh_from_db()
    assert review.state == PostIncidentReview.State.SUBMITTED and review.approved_by is None
    # And the page offers them no approve button.
    page = client.get(reverse("reports:report", args=[incident.reference])).content.decode()
    assert 'data-testid="approve"' not in page


def test_the_author_cannot_approve_their_own_review_even_as_a_manager(manager, cto, client):
    incident = resolved_incident(manager)
    review = submitted_review(incident, manager)
    with pytest.raises(PermissionDenied, match="another manager"):
        report_services.review_approve(review=review, user=manager)
    client.force_login(manager)
    assert client.post(reverse("reports:review_approve", args=[incident.reference, 1])).status_code == 403
    review.refresh_from_db()
    assert review.state == PostIncidentReview.State.SUBMITTED
    # Another manager may.
    assert report_services.review_approve(review=review, user=cto).approved_by == cto


def test_every_manager_role_may_approve(engineer):
    for n, role in enumerate(["Incident Manager", "CTO", "Head of Risk Management", "CEO"]):
        incident = resolved_incident(engineer)
        review = submitted_review(incident, engineer)
        approver = user_in(role, f"approver{n}")
        assert report_services.review_approve(review=review, user=approver).state == PostIncidentReview.State.APPROVED


def test_changes_need_comments(engineer, manager, client):
    review = submitted_review(resolved_incident(engineer), engineer)
    with pytest.raises(ValidationError) as exc:
        report_services.review_request_changes(review=review, user=manager, comments="   ")
    assert exc.value.message_dict == {"comments": ["Say what needs to change."]}
    client.force_login(manager)
    url = reverse("reports:review_request_changes", args=[review.incident.reference, 1])
    response = client.post(url, {"comments": ""}, follow=True)
    assert response.status_code == 200
    assert "Changes not requested: This field is required." in response.content.decode()
    review.refresh_from_db()
    assert review.state == PostIncidentReview.State.SUBMITTED


def test_submitting_needs_every_agenda_item(engineer):
    incident = resolved_incident(engineer)
    review = report_services.review_start(incident=incident, user=engineer)
    with pytest.raises(ValidationError) as exc:
        report_services.review_submit(review=review, user=engineer)
    assert set(exc.value.message_dict) == {
        "timeline_reconstruction",
        "primary_cause",
        "response_effectiveness",
        "prevention_immediate",
    }
    review.refresh_from_db()
    assert review.state == PostIncidentReview.State.DRAFT


def test_an_approved_revision_is_frozen_and_a_change_needs_a_new_revision(engineer, manager):
    incident = resolved_incident(engineer)
    review = report_services.review_approve(review=submitted_review(incident, engineer), user=manager)
    frozen = review.frozen_html
    with pytest.raises(ValidationError, match="start a new revision"):
        report_services.review_update(review=review, user=engineer, primary_cause="Something else")
    # The incident changes later; the frozen report does not.
    services.timeline_add_note(incident=incident, author=engineer, text="Late finding: a second host was affected")
    review.refresh_from_db()
    assert review.frozen_html == frozen and "Late finding" not in frozen

    second = report_services.review_start(incident=incident, user=engineer)
    assert second.revision == 2 and second.state == PostIncidentReview.State.DRAFT
    assert second.primary_cause == REVIEW_TEXT["primary_cause"]  # carries the approved text forward
    with pytest.raises(ValidationError, match="already draft"):
        report_services.review_start(incident=incident, user=engineer)


def test_sev2_closes_only_with_an_approved_review(engineer, manager):
    incident = resolved_incident(engineer, level=2)
    review = submitted_review(incident, engineer)
    incident.refresh_from_db()
    with pytest.raises(services.TransitionRefusedError, match="approved post-incident report"):
        services.incident_transition(incident=incident, name="close", user=manager)
    report_services.review_approve(review=review, user=manager)
    incident.refresh_from_db()
    services.incident_transition(incident=incident, name="close", user=manager)
    assert incident.state == State.CLOSED
    # A closed incident can still get a new revision of its review.
    assert report_services.review_start(incident=incident, user=engineer).revision == 2


def test_a_review_starts_only_once_the_incident_is_resolved(engineer):
    incident = open_incident(reported_by=engineer)
    with pytest.raises(ValidationError, match="once the incident is resolved"):
        report_services.review_start(incident=incident, user=engineer)
    assert not PostIncidentReview.objects.exists()


def test_the_review_form_is_the_agenda_and_bad_input_gives_field_errors(engineer, engineer_client):
    incident = resolved_incident(engineer)
    engineer_client.post(reverse("reports:review_start", args=[incident.reference]))
    url = reverse("reports:review_edit", args=[incident.reference, 1])
    page = engineer_client.get(url).content.decode()
    for heading in (
        "Incident timeline reconstruction",
        "Root cause analysis",
        "Response effectiveness evaluation",
        "Process improvement identification",
        "Prevention measures planning",
    ):
        assert heading in page
    review = PostIncidentReview.objects.get()
    too_long = "x" * 20_001
    response = engineer_client.post(url, {"updated_at": review.updated_at.isoformat(), "primary_cause": too_long})
    assert response.status_code == 400
    assert "Ensure this value has at most 20000 characters" in response.content.decode()
    # Saving and submitting a half-written review: field errors, still a draft.
    response = engineer_client.post(
        url, {"updated_at": review.updated_at.isoformat(), "primary_cause": "Disk full", "submit_for_approval": "1"}
    )
    assert response.status_code == 400
    assert "Reconstruct the timeline (agenda item 1)." in response.content.decode()
    review.refresh_from_db()
    assert review.primary_cause == "Disk full" and review.state == PostIncidentReview.State.DRAFT


def test_a_stale_edit_is_refused(engineer, engineer_client):
    incident = resolved_incident(engineer)
    review = written_review(incident, engineer)
    stale = review.updated_at.isoformat()
    report_services.review_update(review=review, user=engineer, went_well="Someone else's edit")
    url = reverse("reports:review_edit", args=[incident.reference, 1])
    response = engineer_client.post(url, {"updated_at": stale, "went_well": "Mine"})
    assert response.status_code == 400
    assert "changed by someone else" in response.content.decode()
    review.refresh_from_db()
    assert review.went_well == "Someone else's edit"


def test_the_workflow_through_the_pages(engineer, manager, client):
    incident = resolved_incident(engineer)
    client.force_login(engineer)
    response = client.post(reverse("reports:review_start", args=[incident.reference]))
    edit = reverse("reports:review_edit", args=[incident.reference, 1])
    assert response.status_code == 302 and response["Location"] == edit
    review = PostIncidentReview.objects.get()
    data = {"updated_at": review.updated_at.isoformat(), **REVIEW_TEXT, "submit_for_approval": "1"}
    response = client.post(edit, data, follow=True)
    assert "Review r1 submitted for approval." in response.content.decode()
    review.refresh_from_db()
    assert review.state == PostIncidentReview.State.SUBMITTED

    client.force_login(manager)
    page = client.get(reverse("reports:report", args=[incident.reference])).content.decode()
    assert 'data-testid="approve"' in page and "Request changes" in page
    response = client.post(reverse("reports:review_approve", args=[incident.reference, 1]), follow=True)
    assert "approved; the report is frozen" in response.content.decode()
    review.refresh_from_db()
    assert review.state == PostIncidentReview.State.APPROVED
