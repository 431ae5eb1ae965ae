"""Writes: start a runbook on an incident, record its steps in order, propose and approve
revisions (four eyes). Each is atomic; bad input raises ValidationError keyed by field and
writes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify

from incidents.models import Incident, System, TimelineEntry
from incidents.runbooks.models import (
    APPROVE_PERMISSION,
    Procedure,
    Runbook,
    RunbookRevision,
    RunbookRun,
    RunbookStep,
    StepRecord,
)
from incidents.services import timeline_record

MAX_STEPS = 50
# The knowledge base's own pages sit beside /runbooks/<key>/ (see urls.py).
RESERVED_KEYS = {"new", "propose", "run", "incident"}
MAX_TEXT = 5000


@dataclass(frozen=True)
class StepInput:
    title: str
    instructions: str = ""
    commands: str = ""
    records_restoration: bool = False
    source: str = ""


def _name(user: AbstractBaseUser) -> str:
    return user.get_full_name() or user.get_username()


def _refuse_closed(incident: Incident, field: str = "incident") -> None:
    if not incident.is_open:
        raise ValidationError({field: f"The incident is {incident.get_state_display().lower()}: runbooks are closed."})


@transaction.atomic
def runbook_run_start(*, incident: Incident, runbook: Runbook, user: AbstractBaseUser) -> RunbookRun:
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    _refuse_closed(incident)
    runbook = Runbook.objects.select_for_update(of=("self",)).select_related("current_revision").get(pk=runbook.pk)
    if runbook.current_revision is None:
        raise ValidationError({"runbook": "This runbook has no approved revision yet."})
    if RunbookRun.objects.filter(incident=incident, runbook=runbook).exists():
        raise ValidationError({"runbook": "This runbook is already running on this incident."})
    revision = runbook.current_revision
    now = timezone.now()
    run = RunbookRun.objects.create(
        incident=incident, runbook=runbook, revision=revision, started_by=user, started_at=now
    )
    timeline_record(
        incident,
        kind=TimelineEntry.Kind.CHECKLIST,
        action=(
            f"Runbook '{runbook.title}' (r{revision.number}, {revision.steps.count()} steps) started by {_name(user)}"
        ),
        owner=user,
        at=now,
        data={"runbook_run": run.pk, "runbook": runbook.pk, "revision": revision.number},
    )
    return run


@transaction.atomic
def runbook_step_record(
    *,
    run: RunbookRun,
    step: RunbookStep,
    user: AbstractBaseUser,
    outcome: str,
    reason: str = "",
    restored_system: System | None = None,
    restored_service: str = "",
) -> StepRecord:
    # The incident's lock orders a step against a concurrent cancel or resolve; the run's
    # serialises two people ticking steps of one run, so the order check holds.
    incident = Incident.objects.select_for_update().get(pk=run.incident_id)
    run = RunbookRun.objects.select_for_update(of=("self",)).select_related("runbook", "revision").get(pk=run.pk)
    _refuse_closed(incident, "step")
    reason = reason.strip()
    restored_service = restored_service.strip()
    errors: dict[str, str] = {}
    if outcome not in StepRecord.Outcome.values:
        errors["outcome"] = "Choose done or skipped."
    if step.revision_id != run.revision_id:
        errors["step"] = "This step is not part of the run's revision."
    elif StepRecord.objects.filter(run=run, step=step).exists():
        errors["step"] = f"Step {step.position} is already recorded."
    else:
        recorded = set(StepRecord.objects.filter(run=run).values_list("step__position", flat=True))
        missing = [
            p for p in run.revision.steps.values_list("position", flat=True) if p < step.position and p not in recorded
        ]
        if missing:
            errors["step"] = f"Step {missing[0]} must be done or skipped first."
    if outcome == StepRecord.Outcome.SKIPPED and not reason:
        errors["reason"] = "Say why the step is skipped."
    if len(reason) > MAX_TEXT:
        errors["reason"] = f"At most {MAX_TEXT} characters."
    if len(restored_service) > 150:
        errors["restored_service"] = "At most 150 characters."
    if (
        outcome == StepRecord.Outcome.DONE
        and step.records_restoration
        and restored_system is None
        and not restored_service
    ):
        errors["restored_service"] = "Name the system or service this step restored."
    if errors:
        raise ValidationError(errors)
    now = timezone.now()
    record = StepRecord.objects.create(
        run=run,
        step=step,
        outcome=outcome,
        reason=reason,
        restored_system=restored_system,
        restored_service=restored_service,
        by=user,
        at=now,
    )
    total = run.revision.steps.count()
    verb = "done" if outcome == StepRecord.Outcome.DONE else "skipped"
    action = f"Step {step.position}/{total} of Runbook '{run.runbook.title}' {verb} by {_name(user)}: {step.title}"
    restored = ", ".join(x for x in (restored_system.name if restored_system else "", restored_service) if x)
    if restored and outcome == StepRecord.Outcome.DONE:
        action += f" (restored: {restored})"
    if reason:
        action += f" (reason: {reason})"
    timeline_record(
        incident,
        kind=TimelineEntry.Kind.CHECKLIST,
        action=action,
        owner=user,
        at=now,
        data={
            "runbook_run": run.pk,
            "step": step.pk,
            "position": step.position,
            "outcome": outcome,
            "restored": restored,
        },
    )
    return record


def _validate_steps(steps: list[StepInput]) -> dict[str, str]:
    if not steps:
        return {"steps": "A runbook needs at least one step."}
    if len(steps) > MAX_STEPS:
        return {"steps": f"At most {MAX_STEPS} steps."}
    for number, step in enumerate(steps, start=1):
        if not step.title.strip():
            return {"steps": f"Step {number} needs a title."}
        if len(step.title) > 200:
            return {"steps": f"Step {number}'s title is longer than 200 characters."}
        if max(len(step.instructions), len(step.commands)) > MAX_TEXT:
            return {"steps": f"Step {number}'s text is longer than {MAX_TEXT} characters."}
    return {}


@transaction.atomic
def runbook_create(*, title: str, procedure: str, system: System | None, author: AbstractBaseUser) -> Runbook:
    """A new, empty runbook; its steps come with its first revision (proposed, then approved)."""
    title = title.strip()
    errors: dict[str, str] = {}
    if not title:
        errors["title"] = "Give the runbook a title."
    elif len(title) > 150:
        errors["title"] = "At most 150 characters."
    if procedure not in Procedure.values:
        errors["procedure"] = "Choose one of the recovery procedures."
    key = slugify(title)[:70]
    if title and not key:
        errors["title"] = "Use some letters or digits in the title."
    if errors:
        raise ValidationError(errors)
    if key in RESERVED_KEYS:
        key = f"{key}-runbook"
    base, n = key, 2
    while Runbook.objects.filter(key=key).exists():
        key, n = f"{base}-{n}", n + 1
    return Runbook.objects.create(key=key, title=title, procedure=procedure, system=system)


@transaction.atomic
def runbook_revision_propose(
    *,
    runbook: Runbook,
    author: AbstractBaseUser,
    summary: str,
    steps: list[StepInput],
    source_incident: Incident | None = None,
    source_review_id: int | None = None,
) -> RunbookRevision:
    summary = summary.strip()
    errors = _validate_steps(steps)
    if not summary:
        errors["summary"] = "Say what changed and why."
    elif len(summary) > MAX_TEXT:
        errors["summary"] = f"At most {MAX_TEXT} characters."
    if errors:
        raise ValidationError(errors)
    # Numbers are handed out under the runbook's lock: two proposals at once get 4 and 5.
    runbook = Runbook.objects.select_for_update().get(pk=runbook.pk)
    number = (runbook.revisions.aggregate(n=Max("number"))["n"] or 0) + 1
    revision = RunbookRevision.objects.create(
        runbook=runbook,
        number=number,
        summary=summary,
        author=author,
        source_incident=source_incident,
        source_review_id=source_review_id,
    )
    RunbookStep.objects.bulk_create(
        RunbookStep(
            revision=revision,
            position=position,
            title=step.title.strip(),
            instructions=step.instructions.strip(),
            commands=step.commands.strip("\n"),
            records_restoration=step.records_restoration,
            source=step.source.strip()[:200],
        )
        for position, step in enumerate(steps, start=1)
    )
    if source_incident is not None:
        timeline_record(
            source_incident,
            kind=TimelineEntry.Kind.UPDATE,
            action=f"Runbook change proposed from the lessons learned: '{runbook.title}' r{number} by {_name(author)}",
            owner=author,
            data={"runbook": runbook.pk, "revision": number, "review": source_review_id},
        )
    return revision


@transaction.atomic
def runbook_revision_approve(*, revision: RunbookRevision, user: AbstractBaseUser) -> RunbookRevision:
    revision = RunbookRevision.objects.select_for_update().get(pk=revision.pk)
    runbook = Runbook.objects.select_for_update(of=("self",)).select_related("current_revision")
    runbook = runbook.get(pk=revision.runbook_id)
    if not user.has_perm(APPROVE_PERMISSION):
        raise ValidationError({"revision": "Only an Incident Manager or a System Administrator approves runbooks."})
    if revision.author_id == user.pk:
        raise ValidationError({"revision": "Someone other than its author must approve a revision (four eyes)."})
    if revision.state != RunbookRevision.State.DRAFT:
        raise ValidationError({"revision": f"r{revision.number} is already approved."})
    current = runbook.current_revision
    if current is not None and current.number > revision.number:
        raise ValidationError(
            {"revision": f"r{revision.number} was proposed before the current r{current.number}: propose it again."}
        )
    now = timezone.now()
    revision.state = RunbookRevision.State.APPROVED
    revision.approved_by = user
    revision.approved_at = now
    revision.save(update_fields=["state", "approved_by", "approved_at"])
    runbook.current_revision = revision
    runbook.save(update_fields=["current_revision"])
    if revision.source_incident_id:
        timeline_record(
            revision.source_incident,
            kind=TimelineEntry.Kind.UPDATE,
            action=f"Runbook '{runbook.title}' r{revision.number} approved by {_name(user)}; it is now current",
            owner=user,
            at=now,
            data={"runbook": runbook.pk, "revision": revision.number},
        )
    return revision
