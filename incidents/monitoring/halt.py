"""The trading halt: what follows a verified emergency stop until trading resumes.

- A verified stop (agent.py) begins a TradingHalt; every page shows a banner while it lasts.
- While halted, `trading_halt_recheck` (a beat task every TMT_HALT_RECHECK_SECONDS, never a web
  request) asks the circuit breaker's emergency status. An agent that reports trading again
  without the resume procedure ends the halt as "unexpected" and opens ONE Sev1 incident: the
  halt row is locked and ended in the same transaction, so a second look finds nothing to alarm.
- Resuming takes four eyes: the on-call engineer requests, a Risk Manager (someone else)
  approves; the portal then calls the agent's resume endpoint and ends the halt only when the
  agent's status confirms trading. While an approved resume is in flight the re-check leaves the
  halt alone (the agent is expected to report trading then).
- Positions closed by hand (or the explicit "none open") are recorded on the halt and the
  incident's timeline.
- The portal never stops trading by itself: a trigger only puts a prompt on the incident
  (prompts.py).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents.models import DetectionMethod, SeverityLevel, System, TimelineEntry
from incidents.monitoring import agent
from incidents.monitoring.models import (
    APPROVE_RESUME_PERMISSION,
    RECORD_POSITION_PERMISSION,
    REQUEST_RESUME_PERMISSION,
    EmergencyStop,
    PositionClosure,
    ResumeRequest,
    TradingHalt,
)
from incidents.monitoring.services import health_monitor_user
from incidents.services.incident import incident_open, timeline_record

log = logging.getLogger(__name__)

MAX_NOTE_LENGTH = 1000
# An approved resume not settled after this long is settled by the re-check (the approver's
# request has two agent calls of TMT_CIRCUIT_BREAKER_TIMEOUT each; this is far beyond them).
RESUME_STALE = timedelta(seconds=60)


def _person(user: AbstractBaseUser) -> str:
    return user.get_full_name() or user.get_username()


def trading_halt_active() -> TradingHalt | None:
    return TradingHalt.objects.filter(ended_at=None).select_related("started_by", "incident").first()


def trading_halt_begin(*, stop: EmergencyStop, positions: agent.AgentAnswer | None, now: datetime) -> TradingHalt:
    """Called inside the stop's outcome transaction; a repeated stop during a halt joins it."""
    active = TradingHalt.objects.select_for_update().filter(agent_url=stop.agent_url, ended_at=None).first()
    if active is not None:
        return active
    held = []
    if positions is not None and positions.ok and isinstance(positions.body, dict):
        held = [p for p in positions.body.get("positions", []) if isinstance(p, dict)][:200]
    try:
        # Two stops verified at once: no row to lock yet, so the unique index decides; the one
        # that loses joins the other's halt instead of losing its own stop's outcome to a 500.
        with transaction.atomic():
            halt = TradingHalt.objects.create(
                emergency_stop=stop,
                incident=stop.incident,
                agent_url=stop.agent_url,
                started_at=now,
                started_by=stop.requested_by,
                reason_code=stop.reason_code,
                reason_text=stop.reason,
                agent_positions=held,
            )
    except IntegrityError:
        return TradingHalt.objects.select_for_update().get(agent_url=stop.agent_url, ended_at=None)
    open_positions = (
        "; ".join(f"{p.get('quantity')} {p.get('instrument')} at {p.get('venue')}" for p in held) or "none reported"
    )
    timeline_record(
        stop.incident,
        kind=TimelineEntry.Kind.EMERGENCY_STOP,
        action=(
            f"TRADING HALTED ({halt.get_reason_code_display()}). The portal re-checks the circuit breaker "
            f"until a four-eyes resume. Open positions reported by the agent: {open_positions}."
        ),
        owner=stop.requested_by,
        at=now,
        data={"trading_halt": halt.pk, "positions": held},
    )
    return halt


# -- the re-check ------------------------------------------------------------------------------


def trading_halt_recheck(*, now: datetime | None = None) -> str:
    """Ask the agent of each active halt whether trading is still halted. Returns a summary."""
    halts = list(TradingHalt.objects.filter(ended_at=None).values_list("pk", "agent_url"))
    if not halts:
        return "no active halt"
    results = []
    with agent.agent_client() as client:
        for pk, url in halts:
            answer = agent.agent_call(client, "GET", url + agent.STATUS_PATH)
            results.append(_recheck_record(pk, answer, now=now or timezone.now()))
    return ", ".join(results)


@transaction.atomic
def _recheck_record(halt_id: int, answer: agent.AgentAnswer, *, now: datetime) -> str:
    halt = TradingHalt.objects.select_for_update(of=("self",)).select_related("incident").filter(pk=halt_id).first()
    if halt is None or halt.ended_at is not None:
        return f"halt {halt_id} already ended"
    halt.last_checked_at = now
    halt.last_check = {**answer.as_json(), "checked_at": now.isoformat()}
    halt.save(update_fields=["last_checked_at", "last_check"])
    body = answer.body if isinstance(answer.body, dict) else {}
    halted = answer.ok and answer.status_code == 200 and body.get("trading_halted") is True
    trading = answer.ok and answer.status_code == 200 and body.get("trading_halted") is False
    resuming = halt.resume_requests.filter(state=ResumeRequest.State.RESUMING).first()
    if resuming is not None and resuming.approved_at < now - RESUME_STALE:
        # The approver's request died between the agent call and recording its outcome: the
        # agent's answer now decides it, so the procedure neither hangs nor raises a false alarm.
        return _resume_settled_by_recheck(halt, resuming, answer, trading=trading, halted=halted, now=now)
    if not trading:
        # Halted, or no clear answer: an unknown is not a resume (the health monitor pages for
        # an agent that is down).
        return f"halt {halt_id}: {'halted' if halted else agent.describe(answer)}"
    if resuming is not None:
        return f"halt {halt_id}: resuming"
    halt.ended_at = now
    halt.ending = TradingHalt.Ending.UNEXPECTED
    monitor = health_monitor_user()
    alarm = incident_open(
        title="Trading resumed without the resume procedure",
        description=(
            f"While trading was halted (since {halt.started_at:%Y-%m-%d %H:%M} UTC, {halt.incident.reference}, "
            f"{halt.get_reason_code_display()}), the circuit breaker at {halt.agent_url} reported trading "
            "again, with no approved resume. Stop trading again or verify who resumed it."
        ),
        severity=SeverityLevel.objects.get(level=1),
        reported_by=monitor,
        detection_method=DetectionMethod.HEALTH_CHECK,
        affected_systems=list(System.objects.filter(key=agent.CIRCUIT_BREAKER_SYSTEM)),
        detected_at=now,
        opened_by_team="Trading halt monitor",
    )
    halt.alarm_incident = alarm
    halt.save(update_fields=["ended_at", "ending", "alarm_incident"])
    text = (
        f"ALARM: the circuit breaker reports trading resumed without the resume procedure "
        f"(resumed_at={body.get('resumed_at')}). Sev1 {alarm.reference} opened."
    )
    for incident in (halt.incident, alarm):
        timeline_record(
            incident,
            kind=TimelineEntry.Kind.EMERGENCY_STOP,
            action=text,
            owner_team="Trading halt monitor",
            at=now,
            data={"trading_halt": halt.pk, "status_response": answer.as_json(), "alarm_incident": alarm.pk},
        )
    log.warning("trading halt %s left unexpectedly; %s opened", halt.pk, alarm.reference)
    return f"halt {halt_id}: LEFT UNEXPECTEDLY, {alarm.reference} opened"


def _resume_settled_by_recheck(
    halt: TradingHalt,
    request: ResumeRequest,
    answer: agent.AgentAnswer,
    *,
    trading: bool,
    halted: bool,
    now: datetime,
) -> str:
    if not (trading or halted):
        return f"halt {halt.pk}: resume in doubt, {agent.describe(answer)}"
    request.completed_at = now
    request.status_response = answer.as_json()
    if trading:
        request.state = ResumeRequest.State.RESUMED
        halt.ended_at, halt.ending, halt.resumed_by = now, TradingHalt.Ending.RESUMED, request.approved_by
        halt.save(update_fields=["ended_at", "ending", "resumed_by"])
        action = "TRADING RESUMED (verified by the re-check): the approved resume's outcome was not recorded in time."
    else:
        request.state = ResumeRequest.State.FAILED
        request.error = "the approved resume did not complete; the agent still reports trading halted"
        action = f"Resume NOT confirmed: {request.error}. Request it again."
    request.save(update_fields=["state", "completed_at", "status_response", "error"])
    timeline_record(
        halt.incident,
        kind=TimelineEntry.Kind.EMERGENCY_STOP,
        action=action,
        owner_team="Trading halt monitor",
        at=now,
        data={"trading_halt": halt.pk, "resume_request": request.pk, "status_response": answer.as_json()},
    )
    return f"halt {halt.pk}: resume settled ({request.state})"


# -- the four-eyes resume ---------------------------------------------------------------------


@transaction.atomic
def trading_resume_request(*, halt: TradingHalt, user: AbstractBaseUser, note: str = "") -> ResumeRequest:
    if not user.has_perm(REQUEST_RESUME_PERMISSION):
        raise PermissionDenied("Only the on-call engineer requests that trading resume.")
    note = (note or "").strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise ValidationError({"note": f"At most {MAX_NOTE_LENGTH} characters."})
    halt = TradingHalt.objects.select_for_update(of=("self",)).select_related("incident").get(pk=halt.pk)
    if halt.ended_at is not None:
        raise ValidationError({"__all__": "Trading is no longer halted."})
    if halt.resume_requests.filter(state__in=[ResumeRequest.State.PENDING, ResumeRequest.State.RESUMING]).exists():
        raise ValidationError({"__all__": "A resume is already requested; it awaits a Risk Manager's approval."})
    now = timezone.now()
    request = ResumeRequest.objects.create(halt=halt, requested_by=user, requested_at=now, note=note)
    timeline_record(
        halt.incident,
        kind=TimelineEntry.Kind.EMERGENCY_STOP,
        action=f"Resume of trading requested by {_person(user)}; awaiting a Risk Manager's approval."
        + (f" Note: {note}" if note else ""),
        owner=user,
        at=now,
        data={"trading_halt": halt.pk, "resume_request": request.pk},
    )
    return request


@transaction.atomic
def _resume_approve_record(*, request: ResumeRequest, user: AbstractBaseUser) -> ResumeRequest:
    if not user.has_perm(APPROVE_RESUME_PERMISSION):
        raise PermissionDenied("Only a Risk Manager approves resuming trading.")
    request = (
        ResumeRequest.objects.select_for_update(of=("self",))
        .select_related("halt__incident", "requested_by")
        .get(pk=request.pk)
    )
    if request.requested_by_id == user.pk:
        raise ValidationError({"__all__": "Four eyes: someone other than the requester must approve the resume."})
    if request.state != ResumeRequest.State.PENDING:
        raise ValidationError({"__all__": f"This request is {request.get_state_display().lower()}."})
    if request.halt.ended_at is not None:
        raise ValidationError({"__all__": "Trading is no longer halted."})
    now = timezone.now()
    request.state = ResumeRequest.State.RESUMING
    request.approved_by = user
    request.approved_at = now
    request.save(update_fields=["state", "approved_by", "approved_at"])
    timeline_record(
        request.halt.incident,
        kind=TimelineEntry.Kind.EMERGENCY_STOP,
        action=f"Resume approved by {_person(user)} (requested by {_person(request.requested_by)}); "
        "asking the circuit breaker to resume.",
        owner=user,
        at=now,
        data={"trading_halt": request.halt_id, "resume_request": request.pk},
    )
    return request


@transaction.atomic
def _resume_outcome_record(
    request: ResumeRequest, *, resume: agent.AgentAnswer, status: agent.AgentAnswer
) -> ResumeRequest:
    request = (
        ResumeRequest.objects.select_for_update(of=("self",))
        .select_related("halt__incident", "approved_by")
        .get(pk=request.pk)
    )
    halt = TradingHalt.objects.select_for_update().get(pk=request.halt_id)
    now = timezone.now()
    body = status.body if isinstance(status.body, dict) else {}
    verified = status.ok and status.status_code == 200 and body.get("trading_halted") is False
    request.completed_at = now
    request.agent_response = resume.as_json()
    request.status_response = status.as_json()
    if verified:
        request.state = ResumeRequest.State.RESUMED
        if halt.ended_at is None:
            halt.ended_at = now
            halt.ending = TradingHalt.Ending.RESUMED
            halt.resumed_by = request.approved_by
            halt.save(update_fields=["ended_at", "ending", "resumed_by"])
        action = (
            f"TRADING RESUMED (verified): the circuit breaker reports trading_halted=false "
            f"(resumed_at={body.get('resumed_at')}). Approved by {_person(request.approved_by)}."
        )
    else:
        request.state = ResumeRequest.State.FAILED
        request.error = (
            f"resume: {agent.describe(resume)}; status: {agent.describe(status)}"
            + (", trading_halted=true" if body.get("trading_halted") is True else "")
        )[:500]
        action = f"Resume NOT confirmed; trading is still treated as halted ({request.error}). Request it again."
    request.save(update_fields=["state", "completed_at", "agent_response", "status_response", "error"])
    timeline_record(
        request.halt.incident,
        kind=TimelineEntry.Kind.EMERGENCY_STOP,
        action=action,
        owner=request.approved_by,
        at=now,
        data={"trading_halt": halt.pk, "resume_request": request.pk, "status_response": status.as_json()},
    )
    return request


def trading_resume_approve(*, request: ResumeRequest, user: AbstractBaseUser) -> ResumeRequest:
    """The second pair of eyes; then resume through the agent and verify. Raises PermissionDenied
    for someone who may not approve, ValidationError for the requester or a closed request."""
    request = _resume_approve_record(request=request, user=user)
    base = request.halt.agent_url
    payload = {"triggered_by": f"{request.requested_by.get_username()} + {user.get_username()} (four eyes)"}
    with agent.agent_client() as client:
        resume = agent.agent_call(client, "POST", base + agent.RESUME_PATH, payload)
        status = agent.agent_call(client, "GET", base + agent.STATUS_PATH)
    return _resume_outcome_record(request, resume=resume, status=status)


# -- positions --------------------------------------------------------------------------------


@transaction.atomic
def position_closure_record(
    *,
    halt: TradingHalt,
    user: AbstractBaseUser,
    none_open: bool = False,
    instrument: str = "",
    venue: str = "",
    quantity: Decimal | str | None = None,
    closed_by: AbstractBaseUser | None = None,
    closed_at: datetime | None = None,
) -> PositionClosure:
    if not user.has_perm(RECORD_POSITION_PERMISSION):
        raise PermissionDenied("You may not record position closures.")
    now = timezone.now()
    closed_at = closed_at or now
    errors: dict[str, str] = {}
    instrument, venue = (instrument or "").strip(), (venue or "").strip()
    if closed_at > now:
        errors["closed_at"] = "A closure cannot be in the future."
    if closed_at < halt.started_at:
        errors["closed_at"] = "Before the halt began: record it on the halt it belongs to."
    amount: Decimal | None = None
    if not none_open:
        if not instrument:
            errors["instrument"] = "Name the instrument (e.g. EUR/USD)."
        elif len(instrument) > 40:
            errors["instrument"] = "At most 40 characters."
        if not venue:
            errors["venue"] = "Name the venue or broker."
        elif len(venue) > 80:
            errors["venue"] = "At most 80 characters."
        try:
            amount = Decimal(str(quantity)) if quantity not in (None, "") else None
        except InvalidOperation:
            amount = None
            errors["quantity"] = "Enter a number."
        else:
            if amount is None:
                errors["quantity"] = "Enter the quantity closed."
            elif not amount.is_finite() or amount <= 0:
                errors["quantity"] = "The quantity closed must be above zero."
            elif amount.as_tuple().exponent < -4 or abs(amount) >= Decimal(10) ** 16:
                errors["quantity"] = "At most 16 digits before and 4 after the point."
    if errors:
        raise ValidationError(errors)
    halt = TradingHalt.objects.select_related("incident").get(pk=halt.pk)
    closure = PositionClosure.objects.create(
        halt=halt,
        none_open=none_open,
        instrument="" if none_open else instrument,
        venue="" if none_open else venue,
        quantity=None if none_open else amount,
        closed_by=closed_by or user,
        closed_at=closed_at,
        recorded_by=user,
        recorded_at=now,
    )
    who = _person(closed_by or user)
    action = (
        f"Positions: none open (checked by {who})."
        if none_open
        else f"Position closed by hand: {amount} {instrument} at {venue}, closed by {who} at {closed_at:%H:%M:%S} UTC."
    )
    timeline_record(
        halt.incident,
        kind=TimelineEntry.Kind.EMERGENCY_STOP,
        action=action,
        owner=user,
        at=closed_at,
        data={"trading_halt": halt.pk, "position_closure": closure.pk},
    )
    return closure
