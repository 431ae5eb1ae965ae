"""Every write for reports goes through here: views, admin, tasks and the incident lifecycle call
these. Keyword-only, atomic, and each records what it did on the incident's timeline (renders of
the unapproved report excepted: a timeline entry would make the PDF it just stored stale).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe
from django_fsm import ConcurrentTransition, can_proceed

from incidents.escalation.models import Deadline
from incidents.escalation.services import deadline_schedule
from incidents.exceptions import ChangedError as BaseChangedError
from incidents.models import Incident, State, TimelineEntry
from incidents.models.incident import TRANSITION_PERMISSION
from incidents.services.incident import incident_transition, timeline_record
from incidents.validators import planned_problem

from . import selectors, tasks
from .models import (
    AGENDA_FIELDS,
    APPROVE_PERMISSION,
    REPORT_TEXT_FIELDS,
    ActionItem,
    PostIncidentReview,
    ReportPolicy,
    ReportRender,
)

log = logging.getLogger(__name__)

MAX_TEXT = 20_000  # characters per review field: a report, not an archive
# A render claimed this long ago whose worker died (acks_late redelivers it) may be claimed again.
RENDER_STUCK_AFTER = timedelta(minutes=10)
# A queued render whose message may have been lost (broker restart) is re-sent after this.
RENDER_REQUEUE_AFTER = timedelta(seconds=60)
# A transition stamped this far in the past is an import, not something happening now.
IMPORTED_AFTER = timedelta(hours=1)
# Replaced by the content's own SHA-256 when a report is frozen (see review_approve).
CONTENT_HASH_PLACEHOLDER = "0" * 64


class ReviewChangedError(BaseChangedError):
    message = "This review was changed by someone else. Reload the page to see the current version."


def _name(user) -> str:
    return user.get_full_name() or user.get_username()


# -- the incident lifecycle hook ----------------------------------------------------------------


def report_on_incident_transition(*, incident: Incident, name: str, now: datetime | None = None) -> None:
    """Called by incidents.services.incident_transition inside its transaction.

    `now` is the transition's time (past for imports); deadlines are set from the incident's
    resolution time against the real clock.
    """
    if name == "resolve":
        _schedule_review_deadlines(incident)
        # A backdated resolution (an import, the demo month) is rendered on its first download
        # instead: a batch of them would otherwise queue hundreds of renders at once.
        if now is None or timezone.now() - now < IMPORTED_AFTER:
            report_render_request(incident=incident, kinds=[], reason=ReportRender.Reason.RESOLVED)
    elif name in ("reopen", "close", "cancel"):
        _cancel_review_deadlines(incident, reason=f"incident {name}")


def _schedule_review_deadlines(incident: Incident) -> None:
    # Measured against the real clock, not the transition's time: an imported resolution from
    # last week is overdue now.
    now = timezone.now()
    due = selectors.review_due_at(incident)
    if due is None or incident.is_drill:
        return
    policy = ReportPolicy.load()
    # One rule per resolution: a reopened and re-resolved incident gets fresh reminders.
    rule = f"{selectors.REVIEW_RULE_PREFIX}{int(incident.resolved_at.timestamp())}"
    escalate_at = due + policy.review_escalate_after
    steps = [(1, due - policy.review_reminder_before), (2, due), (3, escalate_at)]
    # An incident resolved long ago (an import) gets only the latest reminder that applies.
    past = [step for step, at in steps if at <= now]
    first = past[-1] if past else 1
    for step, at in steps:
        if step >= first:
            deadline_schedule(incident, kind=Deadline.Kind.REVIEW, rule=rule, step=step, due_at=max(at, now))


def _cancel_review_deadlines(incident: Incident, *, reason: str) -> int:
    return Deadline.objects.filter(
        incident=incident,
        kind=Deadline.Kind.REVIEW,
        rule__startswith=selectors.REVIEW_RULE_PREFIX,
        fired_at=None,
        cancelled_at=None,
    ).update(cancelled_at=timezone.now(), cancel_reason=reason[:200])


# -- rendering the (unapproved) report ----------------------------------------------------------


def report_html(
    *,
    incident_id: int,
    review: PostIncidentReview | None,
    kinds: list[str],
    generated_at: datetime,
    pdf: bool,
    content_sha256: str = "",
) -> str:
    incident = selectors.report_incident(incident_id)
    context = selectors.report_context(
        incident=incident, review=review, kinds=kinds, generated_at=generated_at, content_sha256=content_sha256
    )
    context["pdf"] = pdf
    return render_to_string(selectors.REPORT_TEMPLATE, context)


def _text_review(incident_id: int) -> PostIncidentReview | None:
    """The revision whose text the live report shows: the newest one."""
    return (
        PostIncidentReview.objects.filter(incident_id=incident_id)
        .select_related("author", "submitted_by", "approved_by", "changes_requested_by")
        .defer("frozen_html")
        .order_by("-revision")
        .first()
    )


def report_render_request(
    *,
    incident: Incident,
    kinds: list[str],
    user: AbstractBaseUser | None = None,
    reason: str = ReportRender.Reason.ON_DEMAND,
) -> ReportRender:
    """Queue a PDF render of the report as it is now, unless one is stored or queued already."""
    key = selectors.report_source_key(incident_id=incident.pk, kinds=kinds)
    variant = {"incident": incident, "timeline_kinds": selectors.kinds_key(kinds)}
    existing = (
        ReportRender.objects.filter(**variant, source_key=key)
        .filter(state__in=[ReportRender.State.PENDING, ReportRender.State.RENDERING, ReportRender.State.DONE])
        .order_by("-requested_at")
        .first()
    )
    if existing is not None:
        if existing.state == ReportRender.State.PENDING:
            report_render_ensure_queued(render=existing)
        return existing
    try:
        with transaction.atomic():
            render = ReportRender.objects.create(
                **variant, source_key=key, reason=reason, requested_by=user, requested_at=timezone.now()
            )
    except IntegrityError:
        # Someone queued the same render a moment ago: join it.
        return ReportRender.objects.get(
            **variant, source_key=key, state__in=[ReportRender.State.PENDING, ReportRender.State.RENDERING]
        )
    transaction.on_commit(lambda: _send_render(render.pk))
    return render


def report_render_ensure_queued(*, render: ReportRender) -> None:
    """Re-send a render whose task message seems lost; the task's claim makes this harmless."""
    if render.state == ReportRender.State.PENDING and timezone.now() - render.requested_at > RENDER_REQUEUE_AFTER:
        transaction.on_commit(lambda: _send_render(render.pk))


def _send_render(render_id: int) -> None:
    try:
        tasks.render_report.delay(render_id)
    except Exception:  # noqa: BLE001 - the row stays pending; the next look at it re-sends
        log.warning("could not queue report render %s", render_id, exc_info=True)


def _prune_older_renders(render: ReportRender) -> None:
    """Drop the finished renders this one supersedes (same variant, requested earlier)."""
    older = list(
        ReportRender.objects.filter(
            incident_id=render.incident_id,
            timeline_kinds=render.timeline_kinds,
            state__in=[ReportRender.State.DONE, ReportRender.State.FAILED],
            requested_at__lt=render.requested_at,
        )
    )
    for old in older:
        if old.pdf:
            old.pdf.delete(save=False)
    ReportRender.objects.filter(pk__in=[old.pk for old in older]).delete()


def report_render_run(*, render_id: int) -> str:
    """Render one queued report to PDF and store it (the reports queue's task)."""
    now = timezone.now()
    claimed = ReportRender.objects.filter(
        Q(state=ReportRender.State.PENDING)
        | Q(state=ReportRender.State.RENDERING, claimed_at__lt=now - RENDER_STUCK_AFTER),
        pk=render_id,
    ).update(state=ReportRender.State.RENDERING, claimed_at=now)
    if not claimed:
        return "nothing to do"
    from .pdf import html_to_pdf  # WeasyPrint takes seconds to import: only renderers pay for it

    render = ReportRender.objects.select_related("incident").get(pk=render_id)
    kinds = render.kinds
    # The key first, then the data: a change in between makes the PDF look stale, never current.
    key = selectors.report_source_key(incident_id=render.incident_id, kinds=kinds)
    try:
        html = report_html(
            incident_id=render.incident_id,
            review=_text_review(render.incident_id),
            kinds=kinds,
            generated_at=now,
            pdf=True,
        )
        result = html_to_pdf(html)
    except Exception as exc:  # noqa: BLE001 - recorded on the row and shown on the report page
        log.exception("rendering report %s of %s failed", render_id, render.incident.reference)
        ReportRender.objects.filter(pk=render_id, claimed_at=now).update(
            state=ReportRender.State.FAILED, error=f"{type(exc).__name__}: {exc}"[:500]
        )
        return "failed"
    sha = hashlib.sha256(result.content).hexdigest()
    name = f"{render.incident.reference}-{now:%Y%m%dT%H%M%SZ}-{sha[:12]}.pdf"
    render.pdf.save(name, ContentFile(result.content), save=False)
    stored = ReportRender.objects.filter(pk=render_id, state=ReportRender.State.RENDERING, claimed_at=now).update(
        state=ReportRender.State.DONE,
        pdf=render.pdf.name,
        sha256=sha,
        size_bytes=len(result.content),
        pages=result.pages,
        render_ms=round(result.seconds * 1000),
        rendered_at=timezone.now(),
        source_key=key,
        error="",
    )
    if not stored:
        # Another worker re-claimed it meanwhile (we looked stuck) and owns the row now.
        render.pdf.delete(save=False)
        return "superseded"
    _prune_older_renders(render)
    return f"rendered {render.incident.reference}: {result.pages} pages in {result.seconds:.2f}s"


# -- the post-incident review -------------------------------------------------------------------


def _locked_review(review: PostIncidentReview) -> PostIncidentReview:
    return PostIncidentReview.objects.select_for_update(of=("self",)).select_related("incident").get(pk=review.pk)


def _record(review: PostIncidentReview, action: str, user, *, at: datetime | None = None, **data) -> None:
    timeline_record(
        review.incident,
        kind=TimelineEntry.Kind.UPDATE,
        action=action,
        owner=user,
        at=at,
        data={"review": review.pk, "revision": review.revision, **data},
    )


def _save_transition(review: PostIncidentReview) -> None:
    try:
        review.save()
    except ConcurrentTransition as exc:
        raise ReviewChangedError(ReviewChangedError.message) from exc


def review_start(*, incident: Incident, user: AbstractBaseUser, now: datetime | None = None) -> PostIncidentReview:
    """Start the post-incident review (revision 1), or a new revision of an approved one."""
    with transaction.atomic():
        if not user.has_perm("reports.add_postincidentreview"):
            raise PermissionDenied("You do not have permission to write post-incident reviews.")
        now = now or timezone.now()
        locked = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
        if locked.state not in (State.RESOLVED, State.IN_REVIEW, State.CLOSED):
            raise ValidationError("The post-incident review starts once the incident is resolved.")
        revisions = PostIncidentReview.objects.filter(incident=locked)
        open_one = revisions.filter(state__in=PostIncidentReview.OPEN_STATES).first()
        if open_one is not None:
            raise ValidationError(f"Revision {open_one.revision} is already {open_one.get_state_display().lower()}.")
        previous = revisions.order_by("-revision").first()
        number = (revisions.aggregate(n=Max("revision"))["n"] or 0) + 1
        if previous is not None:
            texts = {f: getattr(previous, f) for f in (*AGENDA_FIELDS, *REPORT_TEXT_FIELDS)}
        else:
            texts = {f: getattr(locked, f) for f in REPORT_TEXT_FIELDS}
        review = PostIncidentReview.objects.create(incident=locked, revision=number, author=user, **texts)
        action = f"Post-incident review r{number} started"
        if previous is not None:
            action += f" (revises r{previous.revision}, {previous.get_state_display().lower()})"
        _record(review, action, user, at=now)
        if locked.state == State.RESOLVED and user.has_perm(TRANSITION_PERMISSION):
            incident_transition(incident=locked, name="start_review", user=user, at=now)
        return review


def review_update(
    *, review: PostIncidentReview, user: AbstractBaseUser, expected_updated_at: str | None = None, **fields: str
) -> PostIncidentReview:
    """Change the text of a draft (or of a revision with changes requested)."""
    with transaction.atomic():
        unknown = set(fields) - set(AGENDA_FIELDS) - set(REPORT_TEXT_FIELDS)
        if unknown:
            raise ValidationError(f"Not editable: {', '.join(sorted(unknown))}")
        if not user.has_perm("reports.change_postincidentreview"):
            raise PermissionDenied("You do not have permission to edit post-incident reviews.")
        locked = _locked_review(review)
        if not locked.is_editable:
            raise ValidationError(
                f"Revision {locked.revision} is {locked.get_state_display().lower()} and cannot change"
                + ("; start a new revision." if locked.state == PostIncidentReview.State.APPROVED else ".")
            )
        if expected_updated_at and locked.updated_at.isoformat() != expected_updated_at:
            raise ReviewChangedError(ReviewChangedError.message)
        errors = {}
        changed = []
        for name, value in fields.items():
            value = (value or "").replace("\r\n", "\n").strip()
            if len(value) > MAX_TEXT:
                errors[name] = f"At most {MAX_TEXT:,} characters (this is {len(value):,})."
                continue
            if getattr(locked, name) != value:
                setattr(locked, name, value)
                changed.append(PostIncidentReview._meta.get_field(name).verbose_name)
        if errors:
            raise ValidationError(errors)
        if changed:
            locked.save()
            _record(locked, f"Post-incident review r{locked.revision} updated: {', '.join(changed)}", user)
        return locked


SUBMIT_REQUIRED = {
    "timeline_reconstruction": "Reconstruct the timeline (agenda item 1).",
    "primary_cause": "Give the primary cause.",
    "response_effectiveness": "Evaluate the response (agenda item 3).",
    "resolution_actions": "Say what was done to resolve it.",
}
PREVENTION_FIELDS = ("prevention_immediate", "prevention_long_term", "monitoring_improvements", "prevention_measures")


def review_submit(
    *, review: PostIncidentReview, user: AbstractBaseUser, now: datetime | None = None
) -> PostIncidentReview:
    with transaction.atomic():
        if not user.has_perm("reports.change_postincidentreview"):
            raise PermissionDenied("You do not have permission to submit post-incident reviews.")
        now = now or timezone.now()
        locked = _locked_review(review)
        if not can_proceed(locked.submit):
            raise ValidationError(
                f"Revision {locked.revision} is {locked.get_state_display().lower()}; only a draft can be submitted."
            )
        text = selectors.report_text(locked.incident, locked)
        have = {**text, **{f: getattr(locked, f).strip() for f in AGENDA_FIELDS}}
        errors = {f: message for f, message in SUBMIT_REQUIRED.items() if not have.get(f)}
        if not any(have.get(f) for f in PREVENTION_FIELDS):
            errors["prevention_immediate"] = "Plan at least one prevention measure (agenda item 5)."
        if errors:
            raise ValidationError(errors)
        locked.submit(by=user, at=now)
        _save_transition(locked)
        _record(locked, f"Post-incident review r{locked.revision} submitted for approval", user, at=now)
        return locked


def _reviewer_checks(locked: PostIncidentReview, user: AbstractBaseUser, verb: str) -> None:
    if not user.has_perm(APPROVE_PERMISSION):
        raise PermissionDenied(
            f"Only a manager (Incident Manager, CTO, Head of Risk Management or CEO) can {verb} a post-incident review."
        )
    if user.pk in (locked.author_id, locked.submitted_by_id):
        raise PermissionDenied(f"You wrote or submitted revision {locked.revision}; another manager must {verb} it.")
    if locked.state != PostIncidentReview.State.SUBMITTED:
        raise ValidationError(f"Revision {locked.revision} is {locked.get_state_display().lower()}, not submitted.")


def review_request_changes(
    *, review: PostIncidentReview, user: AbstractBaseUser, comments: str, now: datetime | None = None
) -> PostIncidentReview:
    with transaction.atomic():
        comments = (comments or "").strip()
        if not comments:
            raise ValidationError({"comments": "Say what needs to change."})
        if len(comments) > MAX_TEXT:
            raise ValidationError({"comments": f"At most {MAX_TEXT:,} characters."})
        now = now or timezone.now()
        locked = _locked_review(review)
        _reviewer_checks(locked, user, "review")
        locked.request_changes(comments=comments, by=user, at=now)
        _save_transition(locked)
        _record(locked, f"Changes requested on post-incident review r{locked.revision}: {comments}", user, at=now)
        return locked


def review_approve(
    *, review: PostIncidentReview, user: AbstractBaseUser, now: datetime | None = None
) -> PostIncidentReview:
    """Approve a submitted revision and freeze its report; the PDF is rendered once, after commit."""
    with transaction.atomic():
        now = now or timezone.now()
        locked = _locked_review(review)
        _reviewer_checks(locked, user, "approve")
        locked.approve(by=user, at=now)
        # Freeze: the report as approved, with its own SHA-256 in place of the placeholder (so the
        # footer can carry the content hash; the PDF file's hash is stored when it is rendered).
        fragment = report_html(
            incident_id=locked.incident_id,
            review=locked,
            kinds=[],
            generated_at=now,
            pdf=False,
            content_sha256=CONTENT_HASH_PLACEHOLDER,
        )
        digest = hashlib.sha256(fragment.encode()).hexdigest()
        locked.frozen_html = fragment.replace(CONTENT_HASH_PLACEHOLDER, digest)
        locked.content_sha256 = digest
        _save_transition(locked)
        _cancel_review_deadlines(locked.incident, reason=f"review r{locked.revision} approved")
        _record(
            locked,
            f"Post-incident review r{locked.revision} approved by {_name(user)}; "
            f"report frozen (content SHA-256 {digest})",
            user,
            at=now,
            content_sha256=digest,
        )
        review_id = locked.pk
        transaction.on_commit(lambda: _send_frozen_render(review_id))
        return locked


def review_content_verifies(review: PostIncidentReview) -> bool:
    """Whether the frozen HTML still hashes to the SHA-256 printed in its footer."""
    if not review.content_sha256:
        return False
    original = review.frozen_html.replace(review.content_sha256, CONTENT_HASH_PLACEHOLDER)
    return hashlib.sha256(original.encode()).hexdigest() == review.content_sha256


def _send_frozen_render(review_id: int) -> None:
    try:
        tasks.render_approved_review.delay(review_id)
    except Exception:  # noqa: BLE001 - the page re-sends it while the PDF is missing
        log.warning("could not queue the approved report render of review %s", review_id, exc_info=True)


def review_ensure_frozen_pdf_queued(*, review: PostIncidentReview) -> None:
    if (
        review.is_frozen
        and not review.pdf_sha256
        and review.approved_at
        and timezone.now() - review.approved_at > RENDER_REQUEUE_AFTER
    ):
        transaction.on_commit(lambda: _send_frozen_render(review.pk))


def frozen_document(review: PostIncidentReview) -> str:
    """The approved report as a standalone HTML document (the same template, wrapping the frozen part)."""
    return render_to_string(
        selectors.REPORT_TEMPLATE,
        {"pdf": True, "fragment": mark_safe(review.frozen_html), "incident": review.incident},  # noqa: S308 - our own rendered, escaped HTML
    )


def review_render_frozen_pdf(*, review_id: int) -> str:
    """Render an approved revision's frozen report once; never again after it is stored."""
    review = PostIncidentReview.objects.select_related("incident").get(pk=review_id)
    if review.pdf_sha256:
        return "already stored"
    if not review.is_frozen:
        return "not approved"
    from .pdf import html_to_pdf  # WeasyPrint takes seconds to import: only renderers pay for it

    result = html_to_pdf(frozen_document(review))
    sha = hashlib.sha256(result.content).hexdigest()
    review.pdf.save(f"{sha[:16]}.pdf", ContentFile(result.content), save=False)
    with transaction.atomic():
        stored = PostIncidentReview.objects.filter(pk=review_id, pdf_sha256="").update(
            pdf=review.pdf.name, pdf_sha256=sha, pdf_size=len(result.content), pdf_rendered_at=timezone.now()
        )
        if not stored:
            transaction.on_commit(lambda: review.pdf.storage.delete(review.pdf.name))
            return "already stored"
        timeline_record(
            review.incident,
            kind=TimelineEntry.Kind.UPDATE,
            action=f"Approved report r{review.revision} stored as PDF ({result.pages} pages, SHA-256 {sha})",
            owner_team="Reports",
            data={"review": review.pk, "pdf_sha256": sha},
        )
    return f"stored r{review.revision} of {review.incident.reference}: {result.pages} pages"


# -- action items -------------------------------------------------------------------------------


def _due_moment(day: date) -> datetime:
    """An item due on a day is due by the end of that day in the firm's time zone."""
    zone = ZoneInfo(settings.TMT_BUSINESS_TIME_ZONE)
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)


def _action_rule(item: ActionItem) -> str:
    return f"{selectors.ACTION_RULE_PREFIX}{item.pk}:{item.due_date.isoformat()}"


def _schedule_action_item(item: ActionItem) -> None:
    if item.incident_id is None or not item.is_active:
        return
    now = timezone.now()
    policy = ReportPolicy.load()
    due = _due_moment(item.due_date)
    steps = [(1, due - policy.action_item_reminder_before), (2, due), (3, due + policy.action_item_escalate_after)]
    past = [step for step, at in steps if at <= now]
    first = past[-1] if past else 1
    for step, at in steps:
        if step >= first:
            deadline_schedule(
                item.incident, kind=Deadline.Kind.REVIEW, rule=_action_rule(item), step=step, due_at=max(at, now)
            )


def _cancel_action_item(item: ActionItem, *, reason: str) -> None:
    Deadline.objects.filter(
        rule__startswith=f"{selectors.ACTION_RULE_PREFIX}{item.pk}:", fired_at=None, cancelled_at=None
    ).update(cancelled_at=timezone.now(), cancel_reason=reason[:200])


def _record_item(item: ActionItem, action: str, user, **data) -> None:
    if item.incident_id is None:
        return
    timeline_record(
        item.incident, kind=TimelineEntry.Kind.UPDATE, action=action, owner=user, data={"action_item": item.pk, **data}
    )


def _validate_item(*, title: str, kind: str, owner, due_date, now: datetime) -> dict:
    errors = {}
    if not title:
        errors["title"] = "Say what needs doing."
    elif len(title) > 200:
        errors["title"] = "At most 200 characters."
    if kind not in ActionItem.Kind.values:
        errors["kind"] = "Choose immediate, long-term or monitoring improvement."
    if owner is None or not getattr(owner, "is_active", False):
        errors["owner"] = "Choose an active user as the owner."
    if not isinstance(due_date, date):
        errors["due_date"] = "Enter a due date."
    elif problem := planned_problem(due_date, what="The due date", now=now):
        errors["due_date"] = problem
    return errors


def action_item_create(
    *,
    incident: Incident,
    user: AbstractBaseUser,
    title: str,
    kind: str,
    owner,
    due_date: date,
    description: str = "",
    now: datetime | None = None,
) -> ActionItem:
    with transaction.atomic():
        if not user.has_perm("reports.add_actionitem"):
            raise PermissionDenied("You do not have permission to add action items.")
        now = now or timezone.now()
        title = (title or "").strip()
        description = (description or "").strip()
        errors = _validate_item(title=title, kind=kind, owner=owner, due_date=due_date, now=now)
        if len(description) > MAX_TEXT:
            errors["description"] = f"At most {MAX_TEXT:,} characters."
        if errors:
            raise ValidationError(errors)
        item = ActionItem.objects.create(
            incident=incident,
            title=title,
            kind=kind,
            owner=owner,
            due_date=due_date,
            description=description,
            created_by=user,
        )
        _record_item(
            item,
            f"Action item added ({item.get_kind_display().lower()}): "
            f"{title} — owner {_name(owner)}, due {due_date:%Y-%m-%d}",
            user,
        )
        _schedule_action_item(item)
        return item


def _locked_item(item: ActionItem) -> ActionItem:
    return ActionItem.objects.select_for_update(of=("self",)).select_related("incident", "owner").get(pk=item.pk)


def _item_transition(item: ActionItem, user, name: str, **kwargs) -> ActionItem:
    locked = _locked_item(item)
    if not selectors.action_item_changeable_by(locked, user):
        raise PermissionDenied("Only the owner or a responder may update this action item.")
    method = getattr(locked, name)
    if not can_proceed(method):
        raise ValidationError(f"This action item is {locked.get_state_display().lower()}.")
    method(**kwargs)
    try:
        locked.save()
    except ConcurrentTransition as exc:
        raise ValidationError("This action item was changed by someone else; reload the page.") from exc
    return locked


def action_item_start(*, item: ActionItem, user: AbstractBaseUser) -> ActionItem:
    with transaction.atomic():
        locked = _item_transition(item, user, "start")
        _record_item(locked, f"Action item in progress: {locked.title}", user)
        return locked


def action_item_complete(
    *, item: ActionItem, user: AbstractBaseUser, note: str = "", now: datetime | None = None
) -> ActionItem:
    with transaction.atomic():
        note = (note or "").strip()
        if len(note) > MAX_TEXT:
            raise ValidationError({"note": f"At most {MAX_TEXT:,} characters."})
        locked = _item_transition(item, user, "complete", at=now or timezone.now(), note=note)
        _cancel_action_item(locked, reason="done")
        _record_item(locked, f"Action item done: {locked.title}" + (f". {note}" if note else ""), user)
        return locked


def action_item_decline(
    *, item: ActionItem, user: AbstractBaseUser, reason: str, now: datetime | None = None
) -> ActionItem:
    with transaction.atomic():
        reason = (reason or "").strip()
        if not reason:
            raise ValidationError({"reason": "Say why this will not be done."})
        if len(reason) > MAX_TEXT:
            raise ValidationError({"reason": f"At most {MAX_TEXT:,} characters."})
        locked = _item_transition(item, user, "decline", reason=reason, at=now or timezone.now())
        _cancel_action_item(locked, reason="won't do")
        _record_item(locked, f"Action item won't be done: {locked.title}. Reason: {reason}", user)
        return locked


def action_item_reschedule(
    *, item: ActionItem, user: AbstractBaseUser, due_date: date, owner=None, now: datetime | None = None
) -> ActionItem:
    """Move the due date (and optionally hand the item to someone else); reminders follow."""
    with transaction.atomic():
        now = now or timezone.now()
        locked = _locked_item(item)
        if not selectors.action_item_changeable_by(locked, user):
            raise PermissionDenied("Only the owner or a responder may update this action item.")
        if not locked.is_active:
            raise ValidationError(f"This action item is {locked.get_state_display().lower()}.")
        owner = owner or locked.owner
        errors = _validate_item(title=locked.title, kind=locked.kind, owner=owner, due_date=due_date, now=now)
        if errors:
            raise ValidationError(errors)
        if (due_date, owner.pk) == (locked.due_date, locked.owner_id):
            return locked
        _cancel_action_item(locked, reason="rescheduled")
        locked.due_date, locked.owner = due_date, owner
        locked.save(update_fields=["due_date", "owner", "updated_at"])
        _record_item(
            locked, f"Action item rescheduled: {locked.title} — owner {_name(owner)}, due {due_date:%Y-%m-%d}", user
        )
        _schedule_action_item(locked)
        return locked
