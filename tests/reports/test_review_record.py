"""What deciding on a review leaves on the record, word for word: a request for changes (who,
when, the comments and their limits, the refusals by their full text), the approved revision's
PDF stored once (its name, hash, size, time and timeline entry, never a second copy), and a
render whose task could not be queued."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, timedelta
from io import BytesIO
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone
from pypdf import PdfReader

from incidents.escalation.models import Deadline
from incidents.models import TimelineEntry
from reports import pdf as report_pdf
from reports import services as report_services
from reports import tasks
from reports.models import PostIncidentReview, ReportRender
from tests.factories import UserFactory, open_incident

from .helpers import REVIEW_TEXT, pdf_pages, pdf_text, resolved_incident, submitted_review, user_in

pytestmark = pytest.mark.django_db


def sends_of(task, monkeypatch) -> list[tuple]:
    """The arguments of each message the task would have been sent, in order (nothing is sent)."""
    sent: list[tuple] = []
    monkeypatch.setattr(task, "delay", lambda *args: sent.append(args))
    return sent


@pytest.fixture
def review(engineer):
    return submitted_review(resolved_incident(engineer, title="Order gateway rejected FIX logons"), engineer)


def test_a_request_for_changes_is_recorded_with_who_when_and_what(review, manager):
    at = timezone.now() - timedelta(minutes=3)

    changed = report_services.review_request_changes(
        review=review, user=manager, comments="  Quantify the impact.\n", now=at
    )

    assert changed.reviewer_comments == "Quantify the impact."
    assert (changed.changes_requested_by, changed.changes_requested_at) == (manager, at)
    entry = review.incident.timeline.filter(data__has_key="review").latest("id")
    assert entry.action == "Changes requested on post-incident review r1: Quantify the impact."
    assert (entry.owner, entry.occurred_at) == (manager, at)
    assert entry.data == {"review": review.pk, "revision": 1}


@pytest.mark.parametrize("length", [19_999, 20_000])
def test_comments_of_up_to_20000_characters_are_taken(review, manager, length):
    changed = report_services.review_request_changes(review=review, user=manager, comments="c" * length)
    assert changed.state == PostIncidentReview.State.CHANGES_REQUESTED


@pytest.mark.parametrize(
    ("comments", "message"),
    [("c" * 20_001, "At most 20,000 characters."), (None, "Say what needs to change.")],
    ids=["too-long", "none"],
)
def test_comments_too_long_or_missing_are_refused_and_nothing_changes(review, manager, comments, message):
    with pytest.raises(ValidationError) as refused:
        report_services.review_request_changes(review=review, user=manager, comments=comments)
    assert refused.value.message_dict == {"comments": [message]}
    review.refresh_from_db()
    assert review.state == PostIncidentReview.State.SUBMITTED and review.changes_requested_by is None


def test_the_refusals_of_a_request_for_changes_say_why_in_full(review, sysadmin, manager):
    with pytest.raises(PermissionDenied) as not_a_manager:
        report_services.review_request_changes(review=review, user=sysadmin, comments="No.")
    assert str(not_a_manager.value) == (
        "Only a manager (Incident Manager, CTO, Head of Risk Management or CEO) can review a post-incident review."
    )
    own_review = submitted_review(resolved_incident(manager), manager)
    with pytest.raises(PermissionDenied) as own:
        report_services.review_request_changes(review=own_review, user=manager, comments="No.")
    assert str(own.value) == "You wrote or submitted revision 1; another manager must review it."
    report_services.review_request_changes(review=review, user=manager, comments="Quantify the impact.")
    with pytest.raises(ValidationError) as twice:
        report_services.review_request_changes(review=review, user=user_in("CTO", "cto2"), comments="Again.")
    assert twice.value.messages == ["Revision 1 is changes requested, not submitted."]


def test_the_refusals_of_an_approval_say_why_in_full(review, sysadmin, manager):
    with pytest.raises(PermissionDenied) as not_a_manager:
        report_services.review_approve(review=review, user=sysadmin)
    assert str(not_a_manager.value) == (
        "Only a manager (Incident Manager, CTO, Head of Risk Management or CEO) can approve a post-incident review."
    )
    own_review = submitted_review(resolved_incident(manager), manager)
    with pytest.raises(PermissionDenied) as own:
        report_services.review_approve(review=own_review, user=manager)
    assert str(own.value) == "You wrote or submitted revision 1; another manager must approve it."


def test_the_frozen_report_is_the_approved_revisions_text_as_of_the_approval(review, manager):
    at = timezone.now() - timedelta(minutes=5)
    approved = report_services.review_approve(review=review, user=manager, now=at)
    frozen = approved.frozen_html
    assert frozen.startswith('<article class="report"')  # the part, not a whole document
    meta = " ".join(frozen.split())  # the template's line breaks
    assert f"Review revision r1: approved · frozen at approval {at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" in meta
    assert approved.primary_cause and approved.primary_cause in frozen


def test_a_review_not_approved_has_no_content_to_verify(review):
    assert report_services.review_content_verifies(review) is False


# -- the approved revision's PDF ----------------------------------------------------------------


@pytest.fixture
def approved(review, manager):
    return report_services.review_approve(review=review, user=manager)


def test_the_approved_revision_is_stored_as_pdf_once_with_its_hash_and_a_timeline_entry(approved):
    said = report_services.review_render_frozen_pdf(review_id=approved.pk)

    approved.refresh_from_db()
    content = approved.pdf.read()
    sha = hashlib.sha256(content).hexdigest()
    pages = pdf_pages(content)
    assert said == f"stored r1 of {approved.incident.reference}: {pages} pages"
    assert approved.pdf_sha256 == sha and approved.pdf_size == len(content)
    assert approved.pdf.name == f"reports/{approved.incident.reference}/approved-r1-{sha[:16]}.pdf"
    assert approved.approved_at <= approved.pdf_rendered_at <= timezone.now()
    # The whole document around the frozen part: the PDF template's title, the frozen hash.
    assert PdfReader(BytesIO(content)).metadata.title == f"Incident Report: {approved.incident.reference}"
    assert approved.content_sha256 in pdf_text(content).replace("\n", "")
    entry = approved.incident.timeline.filter(data__has_key="pdf_sha256").get()
    assert entry.action == f"Approved report r1 stored as PDF ({pages} pages, SHA-256 {sha})"
    assert entry.kind == TimelineEntry.Kind.UPDATE and entry.owner_team == "Reports" and entry.owner is None
    assert entry.data == {"review": approved.pk, "pdf_sha256": sha}

    assert report_services.review_render_frozen_pdf(review_id=approved.pk) == "already stored"
    assert approved.incident.timeline.filter(data__has_key="pdf_sha256").count() == 1


def test_a_revision_not_approved_is_not_rendered(review):
    assert report_services.review_render_frozen_pdf(review_id=review.pk) == "not approved"
    review.refresh_from_db()
    assert not review.pdf and review.pdf_sha256 == ""


def test_a_copy_stored_by_another_worker_meanwhile_wins_and_ours_is_removed(
    approved, engineer, manager, monkeypatch, settings, django_capture_on_commit_callbacks
):
    other = submitted_review(resolved_incident(engineer), engineer)
    other = report_services.review_approve(review=other, user=manager)
    real = report_pdf.html_to_pdf

    def stored_meanwhile(html):
        PostIncidentReview.objects.filter(pk=approved.pk).update(pdf="theirs.pdf", pdf_sha256="f" * 64)
        return real(html)

    monkeypatch.setattr(report_pdf, "html_to_pdf", stored_meanwhile)
    with django_capture_on_commit_callbacks(execute=True):
        said = report_services.review_render_frozen_pdf(review_id=approved.pk)

    assert said == "already stored"
    approved.refresh_from_db()
    assert (approved.pdf.name, approved.pdf_sha256) == ("theirs.pdf", "f" * 64)
    assert not approved.incident.timeline.filter(data__has_key="pdf_sha256").exists()
    assert list(Path(settings.MEDIA_ROOT).rglob("*.pdf")) == []  # ours, written before the check
    # Another approved revision's PDF is left alone.
    other.refresh_from_db()
    assert other.pdf_sha256 == "" and not other.pdf


# -- a render whose task could not be queued ----------------------------------------------------


class _BrokerDown(Exception):
    pass


def test_a_render_that_cannot_be_queued_stays_pending_and_says_so_in_the_log(
    engineer, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    incident = resolved_incident(engineer)
    ReportRender.objects.all().delete()

    def refuse(*args):
        raise _BrokerDown("Redis is down")

    monkeypatch.setattr(tasks.render_report, "delay", refuse)
    with caplog.at_level(logging.WARNING, logger="reports.services"), django_capture_on_commit_callbacks(execute=True):
        render = report_services.report_render_request(incident=incident, kinds=[])

    render.refresh_from_db()
    assert render.state == ReportRender.State.PENDING
    [record] = [r for r in caplog.records if r.name == "reports.services"]
    assert record.getMessage() == f"could not queue report render {render.pk}"
    assert record.exc_info[0] is _BrokerDown


def test_a_queued_render_names_its_row_in_the_task(engineer, monkeypatch, django_capture_on_commit_callbacks):
    incident = resolved_incident(engineer)
    ReportRender.objects.all().delete()
    sent = sends_of(tasks.render_report, monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        render = report_services.report_render_request(incident=incident, kinds=[])
    assert sent == [(render.pk,)]


def test_an_approved_render_that_cannot_be_queued_says_so_in_the_log(
    review, manager, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    sent = []

    def refuse(*args):
        sent.append(args)
        raise _BrokerDown("Redis is down")

    monkeypatch.setattr(tasks.render_approved_review, "delay", refuse)
    with caplog.at_level(logging.WARNING, logger="reports.services"), django_capture_on_commit_callbacks(execute=True):
        approved = report_services.review_approve(review=review, user=manager)

    assert sent == [(approved.pk,)]
    assert approved.state == PostIncidentReview.State.APPROVED
    [record] = [r for r in caplog.records if r.name == "reports.services"]
    assert record.getMessage() == f"could not queue the approved report render of review {approved.pk}"
    assert record.exc_info[0] is _BrokerDown


# -- writing the review ---------------------------------------------------------------------------


def _entries(incident) -> list[TimelineEntry]:
    return list(incident.timeline.filter(data__has_key="review").order_by("id"))


def test_each_step_of_a_review_is_recorded_as_whoever_took_it_and_when(engineer, manager):
    incident = resolved_incident(engineer)
    started_at = timezone.now() - timedelta(hours=2)
    submitted_at = started_at + timedelta(minutes=30)
    approved_at = submitted_at + timedelta(minutes=30)

    review = report_services.review_start(incident=incident, user=engineer, now=started_at)
    review = report_services.review_update(review=review, user=engineer, primary_cause="Expired certificate.")
    written = report_services.review_update(review=review, user=engineer, **REVIEW_TEXT)
    review = report_services.review_submit(review=written, user=engineer, now=submitted_at)
    review = report_services.review_approve(review=review, user=manager, now=approved_at)

    start, update, *_, submit, approve = _entries(incident)
    assert (start.action, start.owner, start.occurred_at) == ("Post-incident review r1 started", engineer, started_at)
    assert start.data == {"review": review.pk, "revision": 1}
    assert (update.action, update.owner) == ("Post-incident review r1 updated: primary cause", engineer)
    assert (submit.action, submit.owner, submit.occurred_at) == (
        "Post-incident review r1 submitted for approval",
        engineer,
        submitted_at,
    )
    assert approve.action == (
        f"Post-incident review r1 approved by {manager.get_full_name()}; "
        f"report frozen (content SHA-256 {review.content_sha256})"
    )
    assert (approve.owner, approve.occurred_at) == (manager, approved_at)
    assert approve.data == {"review": review.pk, "revision": 1, "content_sha256": review.content_sha256}
    assert (review.submitted_at, review.approved_at) == (submitted_at, approved_at)
    incident.refresh_from_db()
    assert incident.state == "in_review"
    # The review's start and the incident's move to In Review, both at the time given.
    assert incident.timeline.filter(occurred_at=started_at).count() == 2


def test_a_new_revision_says_which_one_it_revises(approved, engineer):
    review = report_services.review_start(incident=approved.incident, user=engineer)
    assert review.revision == 2 and review.primary_cause == approved.primary_cause
    assert _entries(approved.incident)[-1].action == "Post-incident review r2 started (revises r1, approved)"


def test_an_update_that_changes_nothing_records_nothing(engineer):
    draft = report_services.review_start(incident=resolved_incident(engineer), user=engineer)
    report_services.review_update(review=draft, user=engineer, primary_cause="Expired certificate.")
    before = len(_entries(draft.incident))
    report_services.review_update(review=draft, user=engineer, primary_cause="  Expired certificate.\r\n")
    assert len(_entries(draft.incident)) == before


def test_the_refusals_of_writing_a_review_say_why_in_full(review, engineer, manager):
    nobody = UserFactory(username="no_role")
    with pytest.raises(PermissionDenied) as start:
        report_services.review_start(incident=review.incident, user=nobody)
    assert str(start.value) == "You do not have permission to write post-incident reviews."
    with pytest.raises(ValidationError) as second:
        report_services.review_start(incident=review.incident, user=engineer)
    assert second.value.messages == ["Revision 1 is already submitted."]
    with pytest.raises(PermissionDenied) as edit:
        report_services.review_update(review=review, user=nobody, primary_cause="x")
    assert str(edit.value) == "You do not have permission to edit post-incident reviews."
    with pytest.raises(ValidationError) as unknown:
        report_services.review_update(review=review, user=engineer, severity="1", title="x")
    assert unknown.value.messages == ["Not editable: severity, title"]
    with pytest.raises(ValidationError) as submitted:
        report_services.review_update(review=review, user=engineer, primary_cause="x")
    assert submitted.value.messages == ["Revision 1 is submitted and cannot change."]
    approved = report_services.review_approve(review=review, user=manager)
    with pytest.raises(ValidationError) as frozen:
        report_services.review_update(review=approved, user=engineer, primary_cause="x")
    assert frozen.value.messages == ["Revision 1 is approved and cannot change; start a new revision."]


def test_a_review_cannot_start_before_the_incident_is_resolved(engineer):
    incident = open_incident(reported_by=engineer)
    with pytest.raises(ValidationError) as refused:
        report_services.review_start(incident=incident, user=engineer)
    assert refused.value.messages == ["The post-incident review starts once the incident is resolved."]
    assert not PostIncidentReview.objects.exists()


def test_approval_cancels_only_this_incidents_pending_review_reminders(review, engineer, manager):
    incident = review.incident
    elsewhere = resolved_incident(engineer)
    item = report_services.action_item_create(
        incident=incident,
        user=engineer,
        title="Runbook",
        kind="long_term",
        owner=engineer,
        due_date=timezone.localdate() + timedelta(days=5),
    )
    sent, earlier, pending = Deadline.objects.filter(incident=incident, rule__startswith="review:").order_by("step")
    fired_at = timezone.now() - timedelta(hours=1)
    Deadline.objects.filter(pk=sent.pk).update(fired_at=fired_at)
    Deadline.objects.filter(pk=earlier.pk).update(cancelled_at=fired_at, cancel_reason="incident reopen")

    untouched = [
        *Deadline.objects.filter(incident=elsewhere, rule__startswith="review:"),
        *Deadline.objects.filter(rule__startswith=f"action:{item.pk}:"),
    ]
    assert len(untouched) == 6 and all(d.cancelled_at is None for d in untouched)

    report_services.review_approve(review=review, user=manager)

    sent, earlier, pending = Deadline.objects.filter(incident=incident, rule__startswith="review:").order_by("step")
    assert (sent.fired_at, sent.cancelled_at) == (fired_at, None)
    assert earlier.cancel_reason == "incident reopen"
    assert pending.cancel_reason == "review r1 approved" and pending.cancelled_at is not None
    assert not Deadline.objects.filter(
        incident=elsewhere, rule__startswith="review:", cancelled_at__isnull=False
    ).exists()
    assert not Deadline.objects.filter(rule__startswith=f"action:{item.pk}:", cancelled_at__isnull=False).exists()


@pytest.mark.parametrize(("waited", "sent_again"), [(55, False), (65, True)])
def test_a_pending_render_is_sent_again_only_after_a_minute(
    engineer, monkeypatch, django_capture_on_commit_callbacks, waited, sent_again
):
    incident = resolved_incident(engineer)
    render = ReportRender.objects.get(incident=incident)
    ReportRender.objects.filter(pk=render.pk).update(requested_at=timezone.now() - timedelta(seconds=waited))
    render.refresh_from_db()
    sent = sends_of(tasks.render_report, monkeypatch)

    with django_capture_on_commit_callbacks(execute=True):
        report_services.report_render_ensure_queued(render=render)

    assert sent == ([(render.pk,)] if sent_again else [])


def test_a_render_already_claimed_is_not_sent_again(engineer, monkeypatch, django_capture_on_commit_callbacks):
    incident = resolved_incident(engineer)
    render = ReportRender.objects.get(incident=incident)
    long_ago = timezone.now() - timedelta(minutes=5)
    ReportRender.objects.filter(pk=render.pk).update(
        state=ReportRender.State.RENDERING, requested_at=long_ago, claimed_at=long_ago
    )
    render.refresh_from_db()
    sent = sends_of(tasks.render_report, monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        report_services.report_render_ensure_queued(render=render)
    assert sent == []


@pytest.mark.parametrize("length", [19_999, 20_000])
def test_a_review_field_of_up_to_20000_characters_is_taken(engineer, length):
    draft = report_services.review_start(incident=resolved_incident(engineer), user=engineer)
    saved = report_services.review_update(review=draft, user=engineer, primary_cause="p" * length)
    assert len(saved.primary_cause) == length


def test_each_review_field_over_20000_characters_is_refused_by_name_and_nothing_is_saved(engineer):
    draft = report_services.review_start(incident=resolved_incident(engineer), user=engineer)
    with pytest.raises(ValidationError) as refused:
        report_services.review_update(
            review=draft, user=engineer, primary_cause="p" * 20_001, contributing_factors="c" * 20_002, went_well="ok"
        )
    assert refused.value.message_dict == {
        "primary_cause": ["At most 20,000 characters (this is 20,001)."],
        "contributing_factors": ["At most 20,000 characters (this is 20,002)."],
    }
    draft.refresh_from_db()
    assert draft.primary_cause == "" and draft.went_well == ""


def test_windows_line_ends_are_kept_as_plain_ones_and_two_changes_are_listed(engineer):
    draft = report_services.review_start(incident=resolved_incident(engineer), user=engineer)
    saved = report_services.review_update(
        review=draft, user=engineer, primary_cause="Expired\r\ncertificate", went_well="Fast rollback"
    )
    assert saved.primary_cause == "Expired\ncertificate"
    assert _entries(draft.incident)[-1].action == "Post-incident review r1 updated: primary cause, what went well"
    assert _entries(draft.incident)[-1].owner == engineer


def test_submitting_is_refused_with_each_missing_item_named(engineer):
    # "What was done to resolve it" falls back to what responders recorded on the incident.
    draft = report_services.review_start(incident=resolved_incident(engineer), user=engineer)
    report_services.review_update(
        review=draft,
        user=engineer,
        resolution_actions="",
        prevention_immediate="",
        prevention_long_term="",
        monitoring_improvements="",
        prevention_measures="",
    )
    with pytest.raises(ValidationError) as refused:
        report_services.review_submit(review=draft, user=engineer)
    assert refused.value.message_dict == {
        "timeline_reconstruction": ["Reconstruct the timeline (agenda item 1)."],
        "primary_cause": ["Give the primary cause."],
        "response_effectiveness": ["Evaluate the response (agenda item 3)."],
        "prevention_immediate": ["Plan at least one prevention measure (agenda item 5)."],
    }
    draft.refresh_from_db()
    assert draft.state == PostIncidentReview.State.DRAFT


def test_submitting_twice_or_without_permission_is_refused_in_full(review, engineer):
    with pytest.raises(ValidationError) as twice:
        report_services.review_submit(review=review, user=engineer)
    assert twice.value.messages == ["Revision 1 is submitted; only a draft can be submitted."]
    with pytest.raises(PermissionDenied) as nobody:
        report_services.review_submit(review=review, user=UserFactory(username="no_role"))
    assert str(nobody.value) == "You do not have permission to submit post-incident reviews."


def test_a_render_asked_for_twice_is_one_render_and_records_who_asked(engineer, manager):
    incident = resolved_incident(engineer)
    ReportRender.objects.all().delete()
    first = report_services.report_render_request(incident=incident, kinds=["alert"], user=manager)
    again = report_services.report_render_request(incident=incident, kinds=["alert"], user=engineer)
    other_kinds = report_services.report_render_request(incident=incident, kinds=[], user=engineer)
    assert again.pk == first.pk and first.requested_by == manager
    assert other_kinds.pk != first.pk and other_kinds.requested_by == engineer
    assert ReportRender.objects.count() == 2


def test_a_render_asked_for_again_after_it_is_stored_is_the_stored_one(engineer, manager):
    incident = resolved_incident(engineer)
    ReportRender.objects.all().delete()
    stored = report_services.report_render_request(incident=incident, kinds=[], user=manager)
    report_services.report_render_run(render_id=stored.pk)
    again = report_services.report_render_request(incident=incident, kinds=[], user=engineer)
    assert again.pk == stored.pk and again.state == ReportRender.State.DONE
    assert ReportRender.objects.count() == 1


def test_a_render_left_pending_for_over_a_minute_is_sent_again_when_asked_for(
    engineer, monkeypatch, django_capture_on_commit_callbacks
):
    incident = resolved_incident(engineer)
    render = ReportRender.objects.get(incident=incident)
    ReportRender.objects.filter(pk=render.pk).update(requested_at=timezone.now() - timedelta(minutes=2))
    sent = sends_of(tasks.render_report, monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        again = report_services.report_render_request(incident=incident, kinds=[])
    assert again.pk == render.pk and sent == [(render.pk,)]


@pytest.mark.parametrize("name", ["close", "cancel", "reopen"])
def test_closing_cancelling_or_reopening_cancels_the_review_reminders_with_the_reason(engineer, manager, name):
    incident = resolved_incident(engineer)
    report_services.report_on_incident_transition(incident=incident, name=name)
    reasons = set(
        Deadline.objects.filter(incident=incident, rule__startswith="review:").values_list("cancel_reason", flat=True)
    )
    assert reasons == {f"incident {name}"}


@pytest.mark.parametrize(("waited", "sent_again"), [(55, False), (65, True)])
def test_an_approved_pdf_still_missing_is_sent_again_only_after_a_minute(
    approved, monkeypatch, django_capture_on_commit_callbacks, waited, sent_again
):
    PostIncidentReview.objects.filter(pk=approved.pk).update(approved_at=timezone.now() - timedelta(seconds=waited))
    approved.refresh_from_db()
    sent = sends_of(tasks.render_approved_review, monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        report_services.review_ensure_frozen_pdf_queued(review=approved)
    assert sent == ([(approved.pk,)] if sent_again else [])


def test_a_stored_or_unapproved_pdf_is_never_sent_again(
    approved, engineer, monkeypatch, django_capture_on_commit_callbacks
):
    long_ago = timezone.now() - timedelta(minutes=5)
    PostIncidentReview.objects.filter(pk=approved.pk).update(approved_at=long_ago, pdf_sha256="a" * 64)
    approved.refresh_from_db()
    draft = report_services.review_start(incident=resolved_incident(engineer), user=engineer)
    sent = sends_of(tasks.render_approved_review, monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        report_services.review_ensure_frozen_pdf_queued(review=approved)
        report_services.review_ensure_frozen_pdf_queued(review=draft)
    assert sent == []
