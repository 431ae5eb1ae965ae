"""The seed's "Trading Emergency Stop", run from the portal.

    POST {TMT_CIRCUIT_BREAKER_URL}/api/v1/emergency-stop  {"reason", "details", "triggered_by", "stop_all_trading"}
    GET  {TMT_CIRCUIT_BREAKER_URL}/api/v1/emergency-status   (verification)
    GET  {TMT_CIRCUIT_BREAKER_URL}/api/v1/positions          (what is still open, once halted)

"reason" is the seed's trigger condition as a code (its example: "system_emergency"); the
person's own words go as "details". A verified stop begins the trading halt (halt.py).

Order of work: the request is recorded first (and a Sev1 incident opened if none is linked) and
committed, so even a crash during the call leaves a trace; the calls to the agent happen outside
any transaction (no lock is held while the network is slow); the outcome and the agent's answers
are then written to the EmergencyStop row and the incident's timeline.

Outcome: what matters in an emergency is whether trading is halted now, so the status endpoint
is asked every time, even after a failed POST (the POST may have timed out after the agent acted;
the simulator answers a repeated stop like the first). Verified halted → "stopped"; accepted but
not confirmed → "unverified"; answered without accepting → "refused"; no answer → "unreachable".
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from incidents.models import DetectionMethod, Incident, PortalAction, SeverityLevel, System, TimelineEntry
from incidents.monitoring.agent import (
    CIRCUIT_BREAKER_SYSTEM,
    POSITIONS_PATH,
    STATUS_PATH,
    STOP_PATH,
    AgentAnswer,
    agent_call,
    agent_client,
    describe,
)
from incidents.monitoring.halt import trading_halt_begin
from incidents.monitoring.models import EmergencyStop, StopReason
from incidents.services.incident import checklist_tick_for_action, incident_open, timeline_record

PERMISSION = "incidents.trigger_emergency_stop"
MAX_REASON_LENGTH = 500  # what the circuit breaker accepts
MAX_TRIGGERED_BY_LENGTH = 200


def _accepted(answer: AgentAnswer) -> bool:
    body = answer.body
    return (
        answer.ok
        and answer.status_code is not None
        and 200 <= answer.status_code < 300
        and isinstance(body, dict)
        and (body.get("status") == "stopped" or body.get("trading_halted") is True)
    )


def _halted(answer: AgentAnswer) -> bool:
    return (
        answer.ok
        and answer.status_code == 200
        and isinstance(answer.body, dict)
        and answer.body.get("trading_halted") is True
    )


def _outcome(stop: AgentAnswer, status: AgentAnswer) -> tuple[str, str]:
    """(outcome, error) from the two answers."""
    if _halted(status):
        error = "" if _accepted(stop) else f"the stop request failed ({describe(stop)}), but trading is halted"
        return EmergencyStop.Outcome.STOPPED, error
    if _accepted(stop):
        return EmergencyStop.Outcome.UNVERIFIED, f"accepted, but the status check says otherwise ({describe(status)})"
    if stop.ok:
        return EmergencyStop.Outcome.REFUSED, describe(stop)
    return EmergencyStop.Outcome.UNREACHABLE, stop.error


def _triggered_by(user: AbstractBaseUser) -> str:
    name = user.get_full_name() if hasattr(user, "get_full_name") else ""
    label = f"{user.get_username()} ({name})" if name else user.get_username()
    return label[:MAX_TRIGGERED_BY_LENGTH]


def _person(user: AbstractBaseUser) -> str:
    return user.get_full_name() or user.get_username()


def emergency_stop_validate(
    *, user: AbstractBaseUser, reason: str, reason_code: str = StopReason.SYSTEM_EMERGENCY
) -> str:
    if not user.has_perm(PERMISSION):
        raise PermissionDenied("You are not allowed to trigger the trading emergency stop.")
    if reason_code not in StopReason.values:
        raise ValidationError({"reason_code": "Choose one of the trigger conditions."})
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give the reason for stopping trading."})
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError({"reason": f"At most {MAX_REASON_LENGTH} characters (the circuit breaker's limit)."})
    return reason


def _record_request(
    *,
    user: AbstractBaseUser,
    reason: str,
    reason_code: str,
    stop_all_trading: bool,
    incident: Incident | None,
    now: datetime,
    url: str,
) -> EmergencyStop:
    with transaction.atomic():
        if incident is not None:
            incident = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
        if incident is None or not incident.is_open:
            related = (
                f" Related to {incident.reference}, which is {incident.get_state_display().lower()}."
                if incident
                else ""
            )
            incident = incident_open(
                title=f"Trading emergency stop: {reason}"[:200],
                description=f"Emergency stop triggered by {_person(user)} from the portal. Reason: {reason}.{related}",
                severity=SeverityLevel.objects.get(level=1),
                reported_by=user,
                commander=user,
                detection_method=DetectionMethod.USER_REPORT,
                affected_systems=list(System.objects.filter(key=CIRCUIT_BREAKER_SYSTEM)),
                detected_at=now,
            )
        stop = EmergencyStop.objects.create(
            incident=incident,
            requested_by=user,
            reason=reason,
            reason_code=reason_code,
            stop_all_trading=stop_all_trading,
            requested_at=now,
            agent_url=url,
        )
        scope = "all trading" if stop_all_trading else "trading (not all)"
        label = StopReason(reason_code).label
        timeline_record(
            incident,
            kind=TimelineEntry.Kind.EMERGENCY_STOP,
            action=f"Emergency stop of {scope} requested by {_person(user)} ({label}, {reason_code}). Reason: {reason}",
            owner=user,
            at=now,
            data={"emergency_stop": stop.pk, "agent_url": url, "stop_all_trading": stop_all_trading},
        )
        return stop


def _record_outcome(
    stop: EmergencyStop, *, stop_answer: AgentAnswer, status_answer: AgentAnswer, positions: AgentAnswer | None
) -> EmergencyStop:
    with transaction.atomic():
        outcome, error = _outcome(stop_answer, status_answer)
        now = timezone.now()
        EmergencyStop.objects.filter(pk=stop.pk).update(
            completed_at=now,
            outcome=outcome,
            agent_response=stop_answer.as_json(),
            status_response=status_answer.as_json(),
            error=error[:500],
        )
        stop.refresh_from_db()
        label = EmergencyStop.Outcome(outcome).label
        elapsed = (now - stop.requested_at).total_seconds()
        text = f"Emergency stop result: {label.upper()} ({elapsed:.1f} s). Agent: {describe(stop_answer)}"
        if isinstance(stop_answer.body, dict) and stop_answer.body.get("stop_id"):
            text += f", stop ID {stop_answer.body['stop_id']}"
        text += f". Status check: {describe(status_answer)}"
        if isinstance(status_answer.body, dict) and "trading_halted" in status_answer.body:
            text += f", trading_halted={str(status_answer.body['trading_halted']).lower()}"
        text += "." + (f" {error}." if error else "")
        timeline_record(
            stop.incident,
            kind=TimelineEntry.Kind.EMERGENCY_STOP,
            action=text,
            owner=stop.requested_by,
            at=now,
            data={
                "emergency_stop": stop.pk,
                "outcome": outcome,
                "agent_response": stop.agent_response,
                "status_response": stop.status_response,
            },
        )
        if outcome == EmergencyStop.Outcome.STOPPED:
            trading_halt_begin(stop=stop, positions=positions, now=now)
        if outcome in (EmergencyStop.Outcome.STOPPED, EmergencyStop.Outcome.UNVERIFIED):
            # "Safety first: initiate emergency stop" is done once the circuit breaker took the stop
            # (a refused or unanswered one leaves the item for the people to see to).
            checklist_tick_for_action(
                incident=stop.incident,
                action=PortalAction.EMERGENCY_STOP,
                when=f"{_person(stop.requested_by)} sent an emergency stop: {label.lower()}",
                by=stop.requested_by,
                at=now,
            )
        return stop


def emergency_stop_trigger(
    *,
    user: AbstractBaseUser,
    reason: str,
    reason_code: str = StopReason.SYSTEM_EMERGENCY,
    stop_all_trading: bool = True,
    incident: Incident | None = None,
    now: datetime | None = None,
) -> EmergencyStop:
    """Stop trading through the circuit breaker and verify it; never raises for the agent's faults.

    Raises PermissionDenied for users without the trading-halt permission and ValidationError
    for a missing or too long reason (before anything is written or sent).
    """
    reason = emergency_stop_validate(user=user, reason=reason, reason_code=reason_code)
    if incident is not None and incident.is_drill:
        # A drill's stop goes to the drill agent (the drills app); this one halts real trading.
        raise ValidationError(
            {
                "incident": f"{incident.reference} is a drill: a real emergency stop is not recorded on it. "
                "Clear it to open a real Sev1 incident."
            }
        )
    base = settings.TMT_CIRCUIT_BREAKER_URL.rstrip("/")
    stop = _record_request(
        user=user,
        reason=reason,
        reason_code=reason_code,
        stop_all_trading=stop_all_trading,
        incident=incident,
        now=now or timezone.now(),
        url=base,
    )
    payload = {
        "reason": reason_code,
        "details": reason,
        "triggered_by": _triggered_by(user),
        "stop_all_trading": stop_all_trading,
    }
    positions = None
    with agent_client() as client:
        stop_answer = agent_call(client, "POST", base + STOP_PATH, payload)
        status_answer = agent_call(client, "GET", base + STATUS_PATH)
        if _halted(status_answer):
            # What is still open, for the manual closure; an agent without the endpoint is fine.
            positions = agent_call(client, "GET", base + POSITIONS_PATH)
    return _record_outcome(stop, stop_answer=stop_answer, status_answer=status_answer, positions=positions)
