"""Every write for drills and training goes through here (views, admin, tasks call these).

Keyword-only, atomic functions named <entity>_<action>. Bad input is a ValidationError keyed
by the form field it belongs to, raised before anything is written; a missing right is
PermissionDenied. The drill lifecycle's @transition methods stay pure: these functions lock the
row, run the transition, and do the rest (the exercise incident, reminders, action items,
mentored responses).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_fsm import ConcurrentTransition, TransitionNotAllowed

from incidents import services as incident_services
from incidents.api.models import TOKEN_PREFIX_LENGTH, hash_token, new_token
from incidents.exceptions import ChangedError as BaseChangedError
from incidents.exceptions import CommanderRefused
from incidents.models import DetectionMethod, Incident, SeverityLevel, TimelineEntry
from incidents.notifications.models import Notification
from incidents.notifications.services import notification_queue
from incidents.services import evidence_validate, timeline_record
from incidents.validators import planned_problem
from reports.models import ActionItem
from reports.services import action_item_create

from . import selectors
from .models import (
    MANAGE_PERMISSION,
    OVERRIDE_PERMISSION,
    CalendarFeedToken,
    Certification,
    CertificationKind,
    Drill,
    DrillFinding,
    DrillKind,
    DrillParticipant,
    DrillResult,
    DrillState,
    DrillStopAttempt,
    DrillTarget,
    Duty,
    Measure,
    MentoredResponse,
    ParticipantRole,
    ProcedureAcknowledgement,
    ProcedureDocument,
    ReadinessOverride,
    Reminder,
    TrainingProfile,
)
from .selectors import readiness_problems  # noqa: F401 - the roster and incidents call it from here

log = logging.getLogger(__name__)
User = get_user_model()

MAX_DRILL_DURATION = timedelta(days=3)
MIN_DRILL_DURATION = timedelta(minutes=5)
MAX_OVERRIDE = timedelta(days=31)
REMINDER_STALE_CLAIM = timedelta(minutes=5)
SIMULATOR_SIGNATURE = "tmt-agent-simulator"


class ChangedError(BaseChangedError):
    message = "This drill was changed by someone else. Reload the page to see its current state."


class ReadinessRefused(CommanderRefused):
    """An assignment refused by the readiness gate; `problems` are the reasons."""


def _name(user) -> str:
    return user.get_full_name() or user.get_username()


def _require(user, permission: str, message: str) -> None:
    if not user.has_perm(permission):
        raise PermissionDenied(message)


def _merge(errors: dict[str, list[str]], field: str, message: str) -> None:
    errors.setdefault(field, []).append(message)


# -- readiness --------------------------------------------------------------------------------


OVERRIDE_HINT = "A manager may override this with a recorded justification (Training → Readiness overrides)."


def readiness_message(*, user, duty: str, problems: list[str], hint: str = OVERRIDE_HINT) -> str:
    what = {
        Duty.INCIDENT_COMMANDER: "command of this incident",
        Duty.ON_CALL: "an on-call shift",
    }.get(duty, "a response duty")
    return f"{_name(user)} cannot take {what}: " + " ".join(problems) + (f" {hint}" if hint else "")


def readiness_enforce(
    *, user, duty: str, incident: Incident | None = None, at: datetime | None = None, roles: Sequence[str] = ()
) -> None:
    """Raise ReadinessRefused if `user` may not take `duty` now (incident command, on-call).

    Drill incidents are exempt: commanding one is exactly how a new member practises.
    """
    if incident is not None and incident.is_drill:
        return
    problems = readiness_problems(user=user, at=at or timezone.now(), duty=duty, roles=roles, incident=incident)
    if problems:
        raise ReadinessRefused(readiness_message(user=user, duty=duty, problems=problems), problems)


def commander_readiness_problems(*, user, at: datetime) -> list[str]:
    return readiness_problems(user=user, at=at, duty="incident_commander")


def commander_readiness_enforce(*, user, incident: Incident) -> None:
    readiness_enforce(user=user, duty="incident_commander", incident=incident)


def readiness_problems_between(
    *, user, start: datetime, end: datetime | None, duty: str, roles: Sequence[str] = ()
) -> list[str]:
    """The gate over a window (an on-call cover): a certification must hold at both ends."""
    problems = readiness_problems(user=user, at=start, duty=duty, roles=roles)
    if end is not None and end > start:
        for problem in readiness_problems(user=user, at=end - timedelta(seconds=1), duty=duty, roles=roles):
            if problem not in problems:
                problems.append(problem + f" (by the end, {timezone.localtime(end):%d %b %Y %H:%M})")
    return problems


@transaction.atomic
def readiness_override_grant(
    *,
    person,
    duty: str,
    justification: str,
    granted_by,
    valid_from: datetime | None = None,
    valid_until: datetime,
    incident: Incident | None = None,
    context: str = "",
    now: datetime | None = None,
) -> ReadinessOverride:
    """A manager lets `person` take `duty` despite the gate, for a window, with a reason."""
    _require(granted_by, OVERRIDE_PERMISSION, "Only a manager may override the readiness gate.")
    now = now or timezone.now()
    valid_from = valid_from or now
    errors: dict[str, list[str]] = {}
    justification = (justification or "").strip()
    if duty not in Duty.values:
        _merge(errors, "duty", "Choose on-call or incident commander.")
    if not justification:
        _merge(errors, "justification", "Give the justification for the override; it is kept on record.")
    if valid_until <= valid_from:
        _merge(errors, "valid_until", "The override must end after it starts.")
    elif valid_until - valid_from > MAX_OVERRIDE:
        _merge(errors, "valid_until", f"An override lasts at most {MAX_OVERRIDE.days} days; renew it if needed.")
    if valid_until <= now:
        _merge(errors, "valid_until", "The override must end in the future.")
    if person == granted_by:
        _merge(errors, "person", "A manager cannot override the gate for themselves.")
    if errors:
        raise ValidationError(errors)
    return readiness_override_record(
        person=person,
        duty=duty,
        incident=incident,
        valid_from=valid_from,
        valid_until=valid_until,
        problems=selectors.readiness_findings(user=person, at=valid_from),
        justification=justification,
        context=context,
        granted_by=granted_by,
        now=now,
    )


def readiness_override_record(
    *,
    person,
    duty: str,
    justification: str,
    granted_by,
    valid_from: datetime,
    valid_until: datetime,
    problems: list[str],
    incident: Incident | None = None,
    context: str = "",
    now: datetime | None = None,
) -> ReadinessOverride:
    """Record an override decided on a form that already checked the manager and the reason
    (the roster admin: the override is for exactly the cover or membership being saved)."""
    _require(granted_by, OVERRIDE_PERMISSION, "Only a manager may override the readiness gate.")
    if not (justification or "").strip():
        raise ValidationError({"justification": "Give the justification for the override."})
    return ReadinessOverride.objects.create(
        person=person,
        duty=duty,
        incident=incident,
        valid_from=valid_from,
        valid_until=valid_until,
        problems=list(problems),
        justification=justification.strip(),
        context=context[:200],
        granted_by=granted_by,
        granted_at=now or timezone.now(),
    )


# -- drills: scheduling -----------------------------------------------------------------------


def _clean_schedule(
    *,
    kind: DrillKind | None,
    scheduled_start: datetime | None,
    duration: timedelta | None,
    facilitator,
    participants: Sequence,
    now: datetime,
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if kind is None or not kind.active:
        _merge(errors, "kind", "Choose one of the drill kinds.")
    if scheduled_start is None:
        _merge(errors, "scheduled_start", "Give the date and time the drill starts.")
    elif scheduled_start <= now:
        _merge(
            errors,
            "scheduled_start",
            f"A planned drill must start in the future (it is now {timezone.localtime(now):%d %b %Y %H:%M}).",
        )
    elif problem := planned_problem(scheduled_start, what="The start", now=now):
        _merge(errors, "scheduled_start", problem)
    if duration is None or duration < MIN_DRILL_DURATION:
        _merge(errors, "duration", "A drill lasts at least 5 minutes.")
    elif duration > MAX_DRILL_DURATION:
        _merge(errors, "duration", "A drill lasts at most 3 days.")
    if facilitator is None or not facilitator.is_active:
        _merge(errors, "facilitator", "Choose an active person to facilitate.")
    seen: set[int] = set()
    for user in participants:
        if user.pk in seen:
            _merge(errors, "participants", f"{_name(user)} is listed twice; each person takes part once.")
        seen.add(user.pk)
        if not user.is_active:
            _merge(errors, "participants", f"{_name(user)}'s account is disabled.")
    return errors


def _bump(drill: Drill) -> None:
    drill.calendar_sequence += 1


@transaction.atomic
def drill_schedule(
    *,
    kind: DrillKind,
    scheduled_start: datetime,
    facilitator,
    created_by,
    title: str = "",
    scenario: str = "",
    objectives: str = "",
    duration: timedelta | None = None,
    participants: Sequence = (),
    participant_role: str = ParticipantRole.ON_CALL,
    now: datetime | None = None,
) -> Drill:
    """Plan a drill: blank scenario, objectives and duration take the kind's defaults."""
    _require(created_by, MANAGE_PERMISSION, "Only a trainer may schedule drills.")
    now = now or timezone.now()
    duration = duration if duration is not None else (kind.default_duration if kind else None)
    participants = list(participants)
    errors = _clean_schedule(
        kind=kind,
        scheduled_start=scheduled_start,
        duration=duration,
        facilitator=facilitator,
        participants=participants,
        now=now,
    )
    if errors:
        raise ValidationError(errors)
    local = timezone.localtime(scheduled_start)
    drill = Drill(
        kind=kind,
        title=(title or "").strip() or f"{kind.name} — {local:%B %Y}",
        scenario=(scenario or "").strip() or kind.default_scenario,
        objectives=(objectives or "").strip() or kind.default_objectives,
        scheduled_start=scheduled_start,
        duration=duration,
        facilitator=facilitator,
        created_by=created_by,
    )
    drill.full_clean(exclude=["state"])
    drill.save()
    DrillTarget.objects.bulk_create(
        DrillTarget(drill=drill, name=t.name, target=t.target, measure=t.measure, order=t.order)
        for t in kind.targets.all()
    )
    DrillParticipant.objects.bulk_create(
        DrillParticipant(drill=drill, user=user, role=participant_role) for user in participants
    )
    _drill_reminders_schedule(drill, now=now)
    return drill


EDITABLE_DRILL_FIELDS = ("title", "scenario", "objectives", "scheduled_start", "duration", "facilitator")


@transaction.atomic
def drill_update(*, drill: Drill, user, now: datetime | None = None, **fields) -> Drill:
    """Change a planned drill (reschedule, new scenario); calendars see a new SEQUENCE."""
    now = now or timezone.now()
    unknown = set(fields) - set(EDITABLE_DRILL_FIELDS)
    if unknown:
        raise ValidationError(f"Not editable: {', '.join(sorted(unknown))}")
    locked = Drill.objects.select_for_update().get(pk=drill.pk)
    if not selectors.drill_runnable_by(locked, user):
        raise PermissionDenied("Only a trainer or the facilitator may change this drill.")
    if locked.state != DrillState.PLANNED:
        raise ValidationError(f"A drill that is {locked.get_state_display().lower()} cannot be rescheduled.")
    errors = _clean_schedule(
        kind=locked.kind,
        scheduled_start=fields.get("scheduled_start", locked.scheduled_start),
        duration=fields.get("duration", locked.duration),
        facilitator=fields.get("facilitator", locked.facilitator),
        participants=[],
        now=now,
    )
    if "scheduled_start" not in fields and locked.scheduled_start <= now:
        errors.pop("scheduled_start", None)  # only a new time must be in the future
    for name in ("title", "scenario", "objectives"):
        if name in fields and not str(fields[name]).strip():
            _merge(errors, name, "Required.")
    if errors:
        raise ValidationError(errors)
    timing_changed = False
    for name, value in fields.items():
        if isinstance(value, str):
            value = value.strip()
        if getattr(locked, name) != value:
            setattr(locked, name, value)
            timing_changed = timing_changed or name in ("scheduled_start", "duration", "facilitator")
    _bump(locked)
    locked.full_clean(exclude=["state"])
    locked.save()
    if timing_changed:
        _drill_reminders_cancel(locked, now=now)
        _drill_reminders_schedule(locked, now=now)
    drill.refresh_from_db()
    return locked


@transaction.atomic
def drill_participant_add(
    *, drill: Drill, user, participant, role: str = ParticipantRole.ON_CALL, now: datetime | None = None
) -> DrillParticipant:
    now = now or timezone.now()
    locked = Drill.objects.select_for_update().get(pk=drill.pk)
    if not selectors.drill_runnable_by(locked, user):
        raise PermissionDenied("Only a trainer or the facilitator may change the participants.")
    errors: dict[str, list[str]] = {}
    if locked.is_finished:
        raise ValidationError(f"The drill is {locked.get_state_display().lower()}; its participants are final.")
    if participant is None or not participant.is_active:
        _merge(errors, "user", "Choose an active person.")
    elif locked.participants.filter(user=participant).exists():
        _merge(errors, "user", f"{_name(participant)} is already a participant.")
    if role not in ParticipantRole.values:
        _merge(errors, "role", "Choose a role.")
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            row = DrillParticipant.objects.create(drill=locked, user=participant, role=role)
    except IntegrityError as exc:  # a concurrent add of the same person
        raise ValidationError({"user": f"{_name(participant)} is already a participant."}) from exc
    _bump(locked)
    locked.save(update_fields=["calendar_sequence", "updated_at"])
    if locked.state == DrillState.PLANNED:
        _drill_reminders_schedule(locked, now=now, recipients=[participant])
    return row


@transaction.atomic
def drill_participant_remove(*, drill: Drill, user, participant: DrillParticipant, now: datetime | None = None) -> None:
    now = now or timezone.now()
    locked = Drill.objects.select_for_update().get(pk=drill.pk)
    if not selectors.drill_runnable_by(locked, user):
        raise PermissionDenied("Only a trainer or the facilitator may change the participants.")
    if locked.state != DrillState.PLANNED:
        raise ValidationError("Participants can only be removed before the drill starts.")
    if participant.drill_id != locked.pk:
        raise ValidationError("Not a participant of this drill.")
    Reminder.objects.filter(drill=locked, recipient_id=participant.user_id, sent_at=None, cancelled_at=None).update(
        cancelled_at=now
    )
    participant.delete()
    _bump(locked)
    locked.save(update_fields=["calendar_sequence", "updated_at"])


# -- drills: running --------------------------------------------------------------------------


def _lock(drill: Drill) -> Drill:
    return Drill.objects.select_for_update().select_related("kind").get(pk=drill.pk)


def _save_transition(drill: Drill) -> None:
    try:
        drill.save()
    except ConcurrentTransition as exc:
        raise ChangedError(ChangedError.message) from exc


def _participant_summary(drill: Drill) -> str:
    rows = list(drill.participants.select_related("user").order_by("id"))
    if not rows:
        return "no participants listed"
    return ", ".join(f"{_name(p.user)} ({p.get_role_display()})" for p in rows)


@transaction.atomic
def drill_start(*, drill: Drill, user, now: datetime | None = None, open_incident: bool | None = None) -> Drill:
    """Start a drill; for kinds that want one, open an exercise incident flagged as a drill.

    The incident goes through incidents.services like any other, so the team practises in the
    real portal; is_drill keeps it out of metrics and regulatory obligations, and the paging hook
    (drill_page_recipients) sends its pages to the participants only.
    """

    now = now or timezone.now()
    locked = _lock(drill)
    if not selectors.drill_runnable_by(locked, user):
        raise PermissionDenied("Only a trainer or the facilitator may start this drill.")
    try:
        locked.start(by=user, at=now)
    except TransitionNotAllowed as exc:
        raise ValidationError(f"A drill that is {locked.get_state_display().lower()} cannot be started.") from exc
    _bump(locked)
    _save_transition(locked)
    if locked.kind.opens_incident if open_incident is None else open_incident:
        severity = locked.kind.incident_severity or SeverityLevel.objects.filter(level=2).first()
        incident = incident_services.incident_open(
            title=f"[DRILL] {locked.title}"[:200],
            severity=severity,
            reported_by=user,
            detection_method=DetectionMethod.USER_REPORT,
            description=(
                f"Exercise {locked.reference} ({locked.kind.name}), not a real incident.\n\n"
                f"Scenario: {locked.scenario}\n\nObjectives:\n" + "\n".join(f"- {o}" for o in locked.objective_list)
            ),
            category=locked.kind.incident_category,
            affected_systems=locked.kind.incident_systems.all(),
            is_drill=True,
            detected_at=now,
        )
        Drill.objects.filter(pk=locked.pk).update(incident=incident)
        locked.incident = incident
        incident_services.timeline_record(
            incident,
            kind=TimelineEntry.Kind.NOTE,
            action=(
                f"DRILL {locked.reference} started by {_name(user)}; facilitator {_name(locked.facilitator)}. "
                f"Participants: {_participant_summary(locked)}. Pages for this exercise go to the participants "
                "only; it counts towards no metric and raises no regulatory obligation."
            ),
            owner=user,
            at=now,
        )
    _drill_reminders_cancel(locked, now=now)
    drill.refresh_from_db()
    return locked


@dataclass(frozen=True)
class StopResult:
    outcome: str
    response: dict
    status_response: dict
    detail: str
    verified_at: datetime | None


def _json(response: httpx.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        return {"raw": response.text[:300]}
    return data if isinstance(data, dict) else {"raw": str(data)[:300]}


def _simulator_stop(base: str, *, reason: str, triggered_by: str) -> StopResult:
    """The seed's emergency stop against the simulator: stop, verify, then resume trading.

    The agent must identify itself as the simulator on /health first: a drill must never halt
    real trading, whatever TMT_DRILL_AGENT_URL points at.
    """
    timeout = settings.TMT_NOTIFY_HTTP_TIMEOUT
    Outcome = DrillStopAttempt.Outcome
    with httpx.Client(timeout=timeout) as client:
        try:
            health = client.get(f"{base}/health")
        except httpx.HTTPError as exc:
            return StopResult(Outcome.UNREACHABLE, {}, {}, f"/health: {type(exc).__name__}: {exc}"[:500], None)
        body = _json(health)
        if not str(body.get("version", "")).startswith(SIMULATOR_SIGNATURE):
            return StopResult(
                Outcome.NOT_SIMULATOR,
                {},
                body,
                f"{base} did not identify as the agent simulator (HTTP {health.status_code}); no stop was sent.",
                None,
            )
        payload = {"reason": reason[:500], "triggered_by": triggered_by[:200], "stop_all_trading": True}
        try:
            stop = client.post(f"{base}/api/v1/emergency-stop", json=payload)
        except httpx.HTTPError as exc:
            return StopResult(Outcome.UNREACHABLE, {}, {}, f"emergency-stop: {type(exc).__name__}: {exc}"[:500], None)
        stop_body = _json(stop)
        if stop.status_code >= 400:
            return StopResult(Outcome.REFUSED, stop_body, {}, f"HTTP {stop.status_code}: {stop_body}"[:500], None)
        try:
            status = client.get(f"{base}/api/v1/emergency-status")
        except httpx.HTTPError as exc:
            return StopResult(Outcome.UNVERIFIED, stop_body, {}, f"emergency-status: {type(exc).__name__}"[:500], None)
        status_body = _json(status)
        if status.status_code != 200 or status_body.get("trading_halted") is not True:
            return StopResult(
                Outcome.UNVERIFIED, stop_body, status_body, f"emergency-status HTTP {status.status_code}", None
            )
        verified_at = timezone.now()
        detail = "Trading halted (verified)."
        try:
            resumed = client.post(f"{base}/api/v1/resume-trading", json={"triggered_by": triggered_by[:200]})
            detail += (
                " Simulator resumed trading."
                if resumed.status_code < 400
                else f" Resume answered HTTP {resumed.status_code}."
            )
        except httpx.HTTPError as exc:
            detail += f" Could not resume the simulator: {type(exc).__name__}."
        return StopResult(Outcome.VERIFIED, stop_body, status_body, detail, verified_at)


def drill_emergency_stop(*, drill: Drill, user, now: datetime | None = None) -> DrillStopAttempt:
    """Send the emergency stop of an emergency-stop drill and measure start → verified stop.

    Not atomic as a whole on purpose: the HTTP calls happen outside any transaction (a slow agent
    must not hold a lock), then the attempt and the measurement are written in one.
    """
    drill = Drill.objects.select_related("kind").get(pk=drill.pk)
    is_participant = drill.participants.filter(user=user).exists()
    if not (selectors.drill_runnable_by(drill, user) or is_participant):
        raise PermissionDenied("Only the drill's participants, facilitator or a trainer may trigger its stop.")
    if not drill.kind.measures_emergency_stop:
        raise ValidationError("This kind of drill does not include an emergency stop.")
    if drill.state != DrillState.IN_PROGRESS:
        raise ValidationError("Start the drill first: the time to stop is measured from its start.")
    base = settings.TMT_DRILL_AGENT_URL.rstrip("/")
    if not base:
        raise ValidationError("No agent simulator is configured for drills (TMT_DRILL_AGENT_URL).")
    requested_at = now or timezone.now()
    result = _simulator_stop(base, reason=f"drill {drill.reference}: {drill.title}", triggered_by=user.get_username())
    completed_at = timezone.now()
    with transaction.atomic():
        locked = _lock(drill)
        attempt = DrillStopAttempt.objects.create(
            drill=locked,
            requested_by=user,
            requested_at=requested_at,
            completed_at=completed_at,
            outcome=result.outcome,
            agent_url=base,
            response=result.response,
            status_response=result.status_response,
            detail=result.detail,
        )
        measured = ""
        if result.verified_at is not None and locked.emergency_stop_verified_at is None and locked.started_at:
            locked.emergency_stop_verified_at = result.verified_at
            locked.time_to_stop = result.verified_at - locked.started_at
            locked.save(update_fields=["emergency_stop_verified_at", "time_to_stop", "updated_at"])
            locked.targets.filter(measure=Measure.EMERGENCY_STOP).update(actual=locked.time_to_stop)
            measured = f" Time from drill start to verified stop: {_seconds(locked.time_to_stop)}."
        if locked.incident_id:
            timeline_record(
                locked.incident,
                kind=TimelineEntry.Kind.EMERGENCY_STOP,
                action=(
                    f"DRILL emergency stop sent to the agent simulator by {_name(user)}: "
                    f"{attempt.get_outcome_display()}. {result.detail}{measured}"
                ),
                owner=user,
                at=completed_at,
                data={"drill": locked.pk, "attempt": attempt.pk, "outcome": result.outcome},
            )
    return attempt


def _seconds(value: timedelta) -> str:
    total = value.total_seconds()
    minutes, seconds = divmod(int(total), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{total:.1f} s"


# -- drills: completing -----------------------------------------------------------------------


@dataclass
class FindingInput:
    title: str
    owner: object
    due_date: date | None
    description: str = ""
    kind: str = ActionItem.Kind.IMMEDIATE


@dataclass
class AttendanceInput:
    participant_id: int
    attended: bool
    role: str = ""


def _clean_findings(findings: Sequence[FindingInput], *, today: date, prefix: str = "findings") -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for i, finding in enumerate(findings):
        # Keyed like the form's fields: "findings-0-title" in a formset, "title" alone.
        key = (f"{prefix}-{i}-{{}}" if prefix else "{}").format
        if not (finding.title or "").strip():
            _merge(errors, key("title"), "Describe the finding.")
        if finding.owner is None or not finding.owner.is_active:
            _merge(errors, key("owner"), "Choose who owns the action item.")
        if finding.due_date is None:
            _merge(errors, key("due_date"), "Give a due date.")
        elif finding.due_date < today:
            _merge(errors, key("due_date"), "The due date cannot be in the past.")
        elif problem := planned_problem(finding.due_date, what="The due date"):
            _merge(errors, key("due_date"), problem)  # beyond the planning horizon
        if finding.kind not in ActionItem.Kind.values:
            _merge(errors, key("kind"), "Choose a kind of action.")
    return errors


def _action_item_create(*, finding: FindingInput, drill: Drill, user) -> ActionItem:
    """A finding's action item, through the reports app's service (its reminders included).

    Linked to the exercise incident when the drill opened one, so it shows there too.
    """

    description = (
        f"Finding from drill {drill.reference} ({drill.kind.name}, "
        f"{timezone.localtime(drill.scheduled_start):%d %b %Y}).\n\n" + (finding.description or "").strip()
    ).strip()
    return action_item_create(
        incident=drill.incident,
        user=user,
        title=finding.title.strip()[:200],
        kind=finding.kind,
        owner=finding.owner,
        due_date=finding.due_date,
        description=description,
    )


def _finding_record(*, drill: Drill, finding: FindingInput, user) -> DrillFinding:
    item = _action_item_create(finding=finding, drill=drill, user=user)
    row = DrillFinding.objects.create(
        drill=drill,
        title=finding.title.strip()[:200],
        description=(finding.description or "").strip(),
        action_item=item,
        created_by=user,
    )
    if drill.incident_id:
        timeline_record(
            drill.incident,
            kind=TimelineEntry.Kind.NOTE,
            action=(
                f"DRILL finding → action item for {_name(finding.owner)}, due {finding.due_date:%d %b %Y}: {row.title}"
            ),
            owner=user,
        )
    return row


@transaction.atomic
def drill_complete(
    *,
    drill: Drill,
    user,
    result: str,
    outcome_summary: str = "",
    went_well: str = "",
    could_improve: str = "",
    attendance: Sequence[AttendanceInput] = (),
    target_actuals: dict[int, timedelta | None] | None = None,
    findings: Sequence[FindingInput] = (),
    now: datetime | None = None,
) -> Drill:
    """Record the outcome: attendance and roles, target times, findings as action items.

    All or nothing: one bad finding refuses the whole completion.
    """
    now = now or timezone.now()
    locked = _lock(drill)
    if not selectors.drill_runnable_by(locked, user):
        raise PermissionDenied("Only a trainer or the facilitator may complete this drill.")
    if locked.state != DrillState.IN_PROGRESS:
        raise ValidationError(
            "Start the drill before recording its outcome."
            if locked.state == DrillState.PLANNED
            else f"This drill is already {locked.get_state_display().lower()}."
        )
    errors: dict[str, list[str]] = {}
    if result not in DrillResult.values:
        _merge(errors, "result", "Say whether the objectives were met.")
    participants = {p.pk: p for p in locked.participants.all()}
    for row in attendance:
        if row.participant_id not in participants:
            _merge(errors, "__all__", "Attendance was given for someone who is not a participant.")
        elif row.role and row.role not in ParticipantRole.values:
            _merge(errors, "__all__", "Unknown role in the attendance.")
    targets = {t.pk: t for t in locked.targets.all()}
    for pk, value in (target_actuals or {}).items():
        if pk not in targets:
            _merge(errors, "__all__", "A target time that is not this drill's.")
        elif value is not None and value < timedelta(0):
            _merge(errors, f"target-{pk}", "A time cannot be negative.")
    errors.update(_clean_findings(findings, today=selectors.business_day(now)))
    if errors:
        raise ValidationError(errors)

    locked.complete(by=user, at=now, result=result)
    locked.outcome_summary = (outcome_summary or "").strip()
    locked.went_well = (went_well or "").strip()
    locked.could_improve = (could_improve or "").strip()
    _bump(locked)
    _save_transition(locked)
    for row in attendance:
        participant = participants[row.participant_id]
        participant.attended = row.attended
        participant.attended_role = (row.role or participant.role) if row.attended else ""
        participant.save(update_fields=["attended", "attended_role"])
    for pk, value in (target_actuals or {}).items():
        target = targets[pk]
        if target.measure == Measure.EMERGENCY_STOP and target.actual is not None:
            continue  # measured against the simulator, not typed in
        DrillTarget.objects.filter(pk=pk).update(actual=value)
    for finding in findings:
        _finding_record(drill=locked, finding=finding, user=user)
    _drill_mentoring_record(locked, user=user, now=now)
    _drill_reminders_cancel(locked, now=now)
    _exercise_incident_close(
        locked,
        user=user,
        reason=f"Drill {locked.reference} completed ({locked.get_result_display().lower()}): exercise over.",
        at=now,
    )
    drill.refresh_from_db()
    return locked


@transaction.atomic
def drill_finding_add(*, drill: Drill, user, finding: FindingInput, now: datetime | None = None) -> DrillFinding:
    """A finding raised after the drill (at its debrief); it becomes an action item."""
    now = now or timezone.now()
    locked = _lock(drill)
    if not selectors.drill_runnable_by(locked, user):
        raise PermissionDenied("Only a trainer or the facilitator may record findings.")
    if locked.state not in (DrillState.IN_PROGRESS, DrillState.COMPLETED):
        raise ValidationError("Findings are recorded while a drill runs or after it is completed.")
    errors = _clean_findings([finding], today=selectors.business_day(now), prefix="")
    if errors:
        raise ValidationError(errors)
    return _finding_record(drill=locked, finding=finding, user=user)


@transaction.atomic
def drill_cancel(*, drill: Drill, user, reason: str, now: datetime | None = None) -> Drill:
    now = now or timezone.now()
    locked = _lock(drill)
    if not selectors.drill_runnable_by(locked, user):
        raise PermissionDenied("Only a trainer or the facilitator may cancel this drill.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give the reason for cancelling."})
    try:
        locked.cancel(by=user, at=now, reason=reason)
    except TransitionNotAllowed as exc:
        raise ValidationError(f"A drill that is {locked.get_state_display().lower()} cannot be cancelled.") from exc
    _bump(locked)
    _save_transition(locked)
    _drill_reminders_cancel(locked, now=now)
    _exercise_incident_close(locked, user=user, reason=f"Drill {locked.reference} cancelled: {reason}", at=now)
    drill.refresh_from_db()
    return locked


def _exercise_incident_close(drill: Drill, *, user, reason: str, at: datetime) -> None:
    """The drill is over, so is its exercise incident (cancelled with the reason, on its
    timeline): left open it would sit among the real incidents as a Sev1 nobody works."""
    if drill.incident_id is None:
        return
    incident_services.incident_exercise_end(incident=drill.incident, user=user, reason=reason, at=at)


# -- drill paging (the hook in incidents.notifications.services.page_user) --------------------


def drill_page_recipients(*, incident: Incident, intended, reminder: bool = False) -> list:
    """Who a page for a drill incident goes to: the drill's participants, never anyone else.

    The intended person if they take part; otherwise every participant (they are the team being
    exercised). A drill that is over pages nobody; a drill incident logged by hand (no drill row)
    pages only whoever logged it. Reminders of follow-up work (a review, an action item from a
    finding) are not pages of the exercise: they go to whoever owns the work.
    """

    if reminder:
        return [intended]
    drill = Drill.objects.filter(incident=incident).first()
    if drill is None:
        people = [incident.reported_by]
    elif drill.is_finished:
        people = []
    else:
        people = [p.user for p in drill.participants.select_related("user__person").order_by("id") if p.user.is_active]
    if any(p.pk == intended.pk for p in people):
        return [intended]
    who = ", ".join(_name(p) for p in people) or "nobody (the drill is over)"
    timeline_record(
        incident,
        kind=TimelineEntry.Kind.NOTIFICATION,
        action=f"DRILL: {_name(intended)} is not taking part, so is not paged; paging {who} instead.",
        owner_team="Escalation engine",
    )
    return people


# -- mentoring --------------------------------------------------------------------------------


def _mentored_create(
    *, mentee, mentor, incident=None, drill=None, occurred_at, source, recorded_by=None, notes=""
) -> MentoredResponse | None:
    """Insert unless this incident or drill already counts for the mentee (None then)."""
    try:
        with transaction.atomic():
            return MentoredResponse.objects.create(
                mentee=mentee,
                mentor=mentor,
                incident=incident,
                drill=drill,
                occurred_at=occurred_at,
                source=source,
                recorded_by=recorded_by,
                notes=notes[:300],
            )
    except IntegrityError:
        return None


def _drill_mentoring_record(drill: Drill, *, user, now: datetime) -> int:
    """Attendees still in mentoring get a mentored response if a certified mentor attended."""
    policy = selectors.training_policy()
    attended = [p for p in drill.participants.select_related("user").order_by("id") if p.attended]
    rank = {ParticipantRole.MENTOR: 0, ParticipantRole.INCIDENT_COMMANDER: 1}
    candidates = sorted(attended, key=lambda p: rank.get(p.attended_role or p.role, 2))
    mentor_users = [p.user for p in candidates] + [drill.facilitator]
    count = 0
    for participant in attended:
        mentee = participant.user
        if not selectors.needs_mentoring(mentee, policy=policy):
            continue
        mentor = next((m for m in mentor_users if m.pk != mentee.pk and selectors.is_certified_mentor(m, at=now)), None)
        if mentor is None:
            continue
        created = _mentored_create(
            mentee=mentee,
            mentor=mentor,
            drill=drill,
            incident=drill.incident,
            occurred_at=drill.started_at or now,
            source=MentoredResponse.Source.DRILL,
            recorded_by=user,
            notes=f"Drill {drill.reference}",
        )
        count += created is not None
    return count


@transaction.atomic
def mentored_response_record(
    *, mentee, mentor, incident: Incident, recorded_by, notes: str = "", now: datetime | None = None
) -> MentoredResponse:
    """A trainer records that `mentee` responded to `incident` with `mentor` alongside."""
    _require(recorded_by, MANAGE_PERMISSION, "Only a trainer may record mentored responses.")
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}
    if mentee is None:
        _merge(errors, "mentee", "Choose the new team member.")
    if mentor is None:
        _merge(errors, "mentor", "Choose the mentor.")
    if incident is None:
        _merge(errors, "incident", "Give the incident ID.")
    if errors:
        raise ValidationError(errors)
    if mentee.pk == mentor.pk:
        _merge(errors, "mentor", "The mentor must be someone other than the new member.")
    at = incident.resolved_at or now
    if not selectors.is_certified_mentor(mentor, at=at):
        _merge(
            errors,
            "mentor",
            f"{_name(mentor)} was not a certified mentor then (valid certifications and mentoring complete).",
        )
    if incident.state == "cancelled":
        _merge(errors, "incident", "A cancelled incident (false alarm) does not count.")
    present = {p.pk for p in selectors.incident_participants(incident)}
    for who, field in ((mentee, "mentee"), (mentor, "mentor")):
        if who.pk not in present:
            _merge(
                errors,
                field,
                f"{_name(who)} does not appear on {incident.reference} (commander, acknowledgement or timeline).",
            )
    if MentoredResponse.objects.filter(mentee=mentee, incident=incident).exists():
        _merge(errors, "incident", f"{incident.reference} already counts for {_name(mentee)}.")
    if errors:
        raise ValidationError(errors)
    created = _mentored_create(
        mentee=mentee,
        mentor=mentor,
        incident=incident,
        occurred_at=incident.detected_at,
        source=MentoredResponse.Source.MANUAL,
        recorded_by=recorded_by,
        notes=notes.strip(),
    )
    if created is None:
        raise ValidationError({"incident": f"{incident.reference} already counts for {_name(mentee)}."})
    return created


def mentored_responses_scan(*, since: datetime | None = None, now: datetime | None = None) -> int:
    """Record mentored responses found on incidents resolved since `since` (beat, hourly).

    Idempotent: the unique (mentee, incident) makes a second scan add nothing.
    """
    now = now or timezone.now()
    since = since or now - timedelta(days=7)
    count = 0
    for incident, mentee, mentor in selectors.mentoring_candidates(since=since):
        created = _mentored_create(
            mentee=mentee,
            mentor=mentor,
            incident=incident,
            occurred_at=incident.detected_at,
            source=MentoredResponse.Source.INCIDENT,
            notes=f"{incident.reference} ({'drill' if incident.is_drill else 'real'})",
        )
        count += created is not None
    return count


@transaction.atomic
def mentoring_waive(*, person, user, reason: str, now: datetime | None = None) -> TrainingProfile:
    """An experienced responder needs no mentoring; the trainer says why."""
    _require(user, MANAGE_PERMISSION, "Only a trainer may waive mentoring.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why mentoring is not needed (e.g. experienced hire)."})
    profile, _ = TrainingProfile.objects.select_for_update().get_or_create(user=person)
    profile.mentoring_waived_at = now or timezone.now()
    profile.mentoring_waived_by = user
    profile.mentoring_waiver_reason = reason[:300]
    profile.save()
    return profile


@transaction.atomic
def training_profile_update(
    *, person, user, mentored_responses_required: int | None, joined_team_on: date | None
) -> TrainingProfile:
    _require(user, MANAGE_PERMISSION, "Only a trainer may change training profiles.")
    if mentored_responses_required is not None and not 0 <= mentored_responses_required <= 50:
        raise ValidationError({"mentored_responses_required": "Between 0 and 50."})
    profile, _ = TrainingProfile.objects.select_for_update().get_or_create(user=person)
    profile.mentored_responses_required = mentored_responses_required
    profile.joined_team_on = joined_team_on
    profile.full_clean()
    profile.save()
    return profile


# -- certifications ---------------------------------------------------------------------------


@transaction.atomic
def certification_record(
    *,
    person,
    kind: CertificationKind,
    issued_on: date,
    issued_by,
    recorded_by,
    expires_on: date | None = None,
    evidence=None,
    evidence_note: str = "",
    now: datetime | None = None,
) -> Certification:
    """Record a certification; a blank expiry takes the kind's validity (12 months, or none)."""
    _require(recorded_by, MANAGE_PERMISSION, "Only a trainer may record certifications.")
    now = now or timezone.now()
    today = selectors.business_day(now)
    errors: dict[str, list[str]] = {}
    if person is None:
        _merge(errors, "person", "Choose the person.")
    if kind is None or not kind.active:
        _merge(errors, "kind", "Choose an active certification kind.")
    if issued_by is None:
        _merge(errors, "issued_by", "Say who issued it.")
    if issued_on is None:
        _merge(errors, "issued_on", "Give the issue date.")
    elif issued_on > today:
        _merge(errors, "issued_on", "The issue date cannot be in the future.")
    elif issued_on < today - timedelta(days=366 * 20):
        _merge(errors, "issued_on", "That is more than 20 years ago; check the year.")
    given_expiry = expires_on
    # Not from a refused issue date: 9999-12-31 plus the validity overflowed (a 500).
    if expires_on is None and kind is not None and issued_on is not None and "issued_on" not in errors:
        expires_on = kind.default_expiry(issued_on)
    if expires_on is not None and issued_on is not None and expires_on <= issued_on:
        _merge(
            errors,
            "expires_on",
            f"The expiry date ({expires_on:%d %b %Y}) must be after the issue date ({issued_on:%d %b %Y}).",
        )
    elif problem := planned_problem(given_expiry, what="The expiry date", now=now, past_ok=True):
        _merge(errors, "expires_on", problem)  # a typed year (the kind's validity is the admin's)
    if evidence is not None:
        try:
            evidence_validate(evidence)
        except ValidationError as exc:
            for message in exc.message_dict.get("file", exc.messages):
                _merge(errors, "evidence", message)
    if errors:
        raise ValidationError(errors)
    record = Certification(
        person=person,
        kind=kind,
        issued_on=issued_on,
        expires_on=expires_on,
        issued_by=issued_by,
        evidence_note=(evidence_note or "").strip()[:300],
        recorded_by=recorded_by,
    )
    if evidence is not None:
        record.evidence.save(evidence.name, evidence, save=False)
    record.full_clean()
    record.save()
    # A renewal replaces the reminders of the records it outlasts; a back-dated record that
    # expires before the current one reminds nobody.
    others = Certification.objects.filter(person=person, kind=kind).exclude(pk=record.pk)
    outlasted = others if expires_on is None else others.filter(expires_on__lt=expires_on)
    Reminder.objects.filter(certification__in=outlasted, sent_at=None, cancelled_at=None).update(cancelled_at=now)
    lasts_longer = (
        others.filter(Q(expires_on=None) | Q(expires_on__gte=expires_on))
        if expires_on
        else others.filter(expires_on=None)
    )
    if not lasts_longer.exists():
        _certification_reminders_schedule(record, now=now)
    return record


# -- procedures -------------------------------------------------------------------------------


@transaction.atomic
def procedure_draft_create(*, user, title: str, body: str, summary_of_changes: str) -> ProcedureDocument:
    _require(user, MANAGE_PERMISSION, "Only a trainer may draft procedure versions.")
    errors: dict[str, list[str]] = {}
    if not (title or "").strip():
        _merge(errors, "title", "Required.")
    if not (body or "").strip():
        _merge(errors, "body", "The procedures cannot be empty.")
    if not (summary_of_changes or "").strip():
        _merge(errors, "summary_of_changes", "Say what changed, so the team knows what to read.")
    if ProcedureDocument.objects.filter(published_at=None).exists():
        _merge(errors, "__all__", "There is already an unpublished draft; publish or edit it first.")
    if errors:
        raise ValidationError(errors)
    last = ProcedureDocument.objects.select_for_update().order_by("-version").first()
    return ProcedureDocument.objects.create(
        version=(last.version + 1) if last else 1,
        title=title.strip()[:200],
        body=body.strip() + "\n",
        summary_of_changes=summary_of_changes.strip(),
        created_by=user,
    )


@transaction.atomic
def procedure_publish(*, document: ProcedureDocument, user, now: datetime | None = None) -> ProcedureDocument:
    """Publish a draft: from now on every response-team member must acknowledge it."""
    _require(user, MANAGE_PERMISSION, "Only a trainer may publish procedures.")
    locked = ProcedureDocument.objects.select_for_update().get(pk=document.pk)
    if locked.published_at is not None:
        raise ValidationError("This version is already published.")
    locked.published_at = now or timezone.now()
    locked.published_by = user
    locked.save(update_fields=["published_at", "published_by"])
    return locked


def procedure_acknowledge(
    *, document: ProcedureDocument, user, now: datetime | None = None
) -> ProcedureAcknowledgement:
    """Idempotent: acknowledging twice keeps the first time."""
    if document.published_at is None:
        raise ValidationError("A draft cannot be acknowledged.")
    try:
        with transaction.atomic():
            return ProcedureAcknowledgement.objects.create(
                document=document, person=user, acknowledged_at=now or timezone.now()
            )
    except IntegrityError:
        return ProcedureAcknowledgement.objects.get(document=document, person=user)


# -- reminders --------------------------------------------------------------------------------


def _drill_reminders_schedule(drill: Drill, *, now: datetime, recipients: Iterable | None = None) -> int:
    if recipients is None:
        recipients = [drill.facilitator, *(p.user for p in drill.participants.select_related("user"))]
    people = {u.pk: u for u in recipients}.values()
    rows = []
    for hours in selectors.training_policy().drill_reminder_list:
        lead = timedelta(hours=hours)
        due = drill.scheduled_start - lead
        if due <= now:
            continue
        rows.extend(
            Reminder(kind=Reminder.Kind.DRILL, recipient=user, drill=drill, lead=lead, due_at=due) for user in people
        )
    # ignore_conflicts: a participant added twice in a race, or re-scheduling, never doubles up.
    Reminder.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _drill_reminders_cancel(drill: Drill, *, now: datetime) -> int:
    return Reminder.objects.filter(drill=drill, sent_at=None, cancelled_at=None).update(cancelled_at=now)


def _certification_reminders_schedule(record: Certification, *, now: datetime) -> int:
    """Remind the holder each lead time before the expiry, at the business day's opening.

    A record that arrives inside a lead time (recorded late, or a short-lived certificate) is
    reminded at once for the nearest lead already passed: with 16 days left and leads of 30 and
    7 days, the holder hears now and again 7 days before, rather than only 7 days before. An
    expired record reminds nobody (the gate already says so).
    """
    if record.expires_on is None or record.expires_on <= selectors.business_day(now):
        return 0
    zone = ZoneInfo(settings.TMT_BUSINESS_TIME_ZONE)
    opens = settings.TMT_BUSINESS_DAY_OPENS or time(9)
    dues = {
        days: datetime.combine(record.expires_on - timedelta(days=days), opens, tzinfo=zone)
        for days in selectors.training_policy().certification_reminder_list
    }
    nearest_passed = min((days for days, due in dues.items() if due <= now), default=None)
    rows = [
        Reminder(
            kind=Reminder.Kind.CERTIFICATION,
            recipient=record.person,
            certification=record,
            lead=timedelta(days=days),
            due_at=max(due, now),
        )
        for days, due in dues.items()
        if due > now or days == nearest_passed
    ]
    Reminder.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _reminder_text(reminder: Reminder) -> tuple[str, str, str]:
    """(subject, body, short text for SMS)."""
    site = settings.TMT_SITE_URL.rstrip("/")
    if reminder.kind == Reminder.Kind.DRILL:
        drill = reminder.drill
        when = timezone.localtime(drill.scheduled_start)
        role = next(
            (p.get_role_display() for p in drill.participants.all() if p.user_id == reminder.recipient_id),
            "Facilitator",
        )
        subject = f"[DRILL] {drill.title} — {when:%a %d %b %H:%M %Z}"
        body = (
            f"Reminder: you take part in {drill.kind.name} drill {drill.reference} as {role}.\n\n"
            f"When: {when:%A %d %B %Y, %H:%M %Z} for {_seconds(drill.duration)}\n"
            f"Facilitator: {_name(drill.facilitator)}\n\nScenario:\n{drill.scenario}\n\n"
            f"Details: {site}{drill.get_absolute_url()}\n"
        )
        short = f"TMT drill {drill.reference} {when:%d %b %H:%M}: {drill.title[:80]} ({role})"
        return subject[:300], body, short
    record = reminder.certification
    subject = f"Your {record.kind.name} expires on {record.expires_on:%d %b %Y}"
    body = (
        f"Your {record.kind.name} (issued {record.issued_on:%d %b %Y}) expires on {record.expires_on:%d %B %Y}.\n"
        "Without it you cannot be put on call or take command of an incident. Book your renewal with a trainer.\n\n"
        f"Your training record: {site}/drills/me/\n"
    )
    return subject[:300], body, subject


def _deliver(reminder: Reminder, *, now: datetime) -> str:
    """Queue the reminder in the outbox: email always, and SMS for drill reminders when a
    provider and a number are on file. The paging dispatcher delivers them with its retries and
    idempotency keys, as it does every page."""
    if not reminder.recipient.is_active:
        Reminder.objects.filter(pk=reminder.pk).update(cancelled_at=now, claimed_at=None, last_error="account disabled")
        return "recipient disabled"
    if reminder.kind == Reminder.Kind.DRILL and reminder.drill.state != DrillState.PLANNED:
        Reminder.objects.filter(pk=reminder.pk).update(cancelled_at=now, claimed_at=None)
        return "drill no longer planned"
    if reminder.kind == Reminder.Kind.CERTIFICATION:
        expires = reminder.certification.expires_on
        renewed = (
            Certification.objects.filter(person_id=reminder.recipient_id, kind_id=reminder.certification.kind_id)
            .filter(Q(expires_on=None) | Q(expires_on__gt=expires))
            .exists()
        )
        if renewed:
            Reminder.objects.filter(pk=reminder.pk).update(cancelled_at=now, claimed_at=None)
            return "renewed"
    subject, body, short = _reminder_text(reminder)
    user = reminder.recipient
    person = getattr(user, "person", None)
    messages = []
    if user.email:
        messages.append((Notification.Channel.EMAIL, user.email, body))
    if (
        reminder.kind == Reminder.Kind.DRILL
        and person is not None
        and person.sms_address
        and settings.TMT_SMS_PROVIDER_URL
    ):
        messages.append((Notification.Channel.SMS, person.sms_address, short))
    with transaction.atomic():
        for channel, address, text in messages:
            notification_queue(
                None, channel=channel, recipient=user, address=address, subject=subject, body=text, next_attempt_at=now
            )
        Reminder.objects.filter(pk=reminder.pk).update(
            sent_at=now,
            attempts=reminder.attempts + 1,
            channels=",".join(channel for channel, _, _ in messages),
            last_error="" if messages else "no email or SMS number on file",
        )
    return "sent via " + (",".join(channel for channel, _, _ in messages) or "nothing")


def reminders_send_due(*, now: datetime | None = None, batch: int = 200) -> int:
    """Claim and send due reminders (beat, every minute). Safe to run from several workers.

    The claim is a conditional UPDATE: only one caller sees the row go from unclaimed to
    claimed; a claim older than REMINDER_STALE_CLAIM (a worker died mid-send) may be taken over.
    """
    now = now or timezone.now()
    claimable = Q(claimed_at=None) | Q(claimed_at__lt=now - REMINDER_STALE_CLAIM)
    due = list(
        Reminder.objects.filter(claimable, sent_at=None, cancelled_at=None, due_at__lte=now)
        .order_by("due_at")
        .values_list("pk", flat=True)[:batch]
    )
    sent = 0
    for pk in due:
        claimed = Reminder.objects.filter(claimable, pk=pk, sent_at=None, cancelled_at=None).update(claimed_at=now)
        if not claimed:
            continue
        reminder = Reminder.objects.select_related(
            "recipient__person", "drill__kind", "drill__facilitator", "certification__kind"
        ).get(pk=pk)
        if _deliver(reminder, now=now).startswith("sent"):
            sent += 1
    return sent


# -- calendar feeds ---------------------------------------------------------------------------


@transaction.atomic
def calendar_token_issue(*, user) -> tuple[CalendarFeedToken, str]:
    """A new secret for the person's feed URLs, replacing any earlier one (whose URLs stop working).

    Only its hash is stored: the caller shows the returned raw token once.
    """
    # Under the user's row lock: two clicks at once make one token, not an IntegrityError.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    raw = new_token()
    CalendarFeedToken.objects.filter(user=user).delete()
    token = CalendarFeedToken.objects.create(user=user, prefix=raw[:TOKEN_PREFIX_LENGTH], key_hash=hash_token(raw))
    return token, raw
