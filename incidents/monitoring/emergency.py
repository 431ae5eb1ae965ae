"""The seed's "Trading Emergency Stop", run from the portal.

    POST {TMT_CIRCUIT_BREAKER_URL}/api/v1/emergency-stop  {"reason", "triggered_by", "stop_all_trading"}
    GET  {TMT_CIRCUIT_BREAKER_URL}/api/v1/emergency-status   (verification)

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

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from incidents.models import DetectionMethod, Incident, PortalAction, SeverityLevel, System, TimelineEntry
from incidents.monitoring.models import EmergencyStop
from incidents.services.incident import checklist_tick_for_action, incident_open, timeline_record

PERMISSION = "incidents.trigger_emergency_stop"
STOP_PATH = "/api/v1/emergency-stop"
STATUS_PATH = "/api/v1/emergency-status"
MAX_REASON_LENGTH = 500  # what the circuit breaker accepts
MAX_TRIGGERED_BY_LENGTH = 200
CIRCUIT_BREAKER_SYSTEM = "circuit_breaker"


@dataclass(frozen=True)
class AgentAnswer:
    ok: bool  # the call got an HTTP answer
    status_code: int | None
    body: Any
    error: str

    def as_json(self) -> dict:
        return {"http_status": self.status_code, "body": self.body, "error": self.error}


def _call(client: httpx.Client, method: str, url: str, payload: dict | None = None) -> AgentAnswer:
    try:
        response = client.request(method, url, json=payload)
    except httpx.TimeoutException:
        return AgentAnswer(False, None, None, f"timed out after {settings.TMT_CIRCUIT_BREAKER_TIMEOUT:g} s")
    except httpx.ConnectError as exc:
        cause = exc.__cause__ or exc
        return AgentAnswer(False, None, None, f"unreachable: {getattr(cause, 'strerror', None) or cause}")
    except httpx.HTTPError as exc:
        return AgentAnswer(False, None, None, f"unreachable: {type(exc).__name__}: {exc}")
    text = response.text[:2000]
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = {"raw": text}
    return AgentAnswer(True, response.status_code, body, "")


def _describe(answer: AgentAnswer) -> str:
    if not answer.ok:
        return answer.error
    body = answer.body if isinstance(answer.body, dict) else {}
    detail = body.get("detail") or body.get("error") or ("malformed response" if "raw" in body else "")
    return f"HTTP {answer.status_code}" + (f": {detail}" if detail else "")


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
        error = "" if _accepted(stop) else f"the stop request failed ({_describe(stop)}), but trading is halted"
        return EmergencyStop.Outcome.STOPPED, error
    if _accepted(stop):
        return EmergencyStop.Outcome.UNVERIFIED, f"accepted, but the status check says otherwise ({_describe(status)})"
    if stop.ok:
        return EmergencyStop.Outcome.REFUSED, _describe(stop)
    return EmergencyStop.Outcome.UNREACHABLE, stop.error


def _triggered_by(user: AbstractBaseUser) -> str:
    name = user.get_full_name() if hasattr(user, "get_full_name") else ""
    label = f"{user.get_username()} ({name})" if name else user.get_username()
    return label[:MAX_TRIGGERED_BY_LENGTH]


def _person(user: AbstractBaseUser) -> str:
    return user.get_full_name() or user.get_username()


def emergency_stop_validate(*, user: AbstractBaseUser, reason: str) -> str:
    if not user.has_perm(PERMISSION):
        raise PermissionDenied("You are not allowed to trigger the trading emergency stop.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give the reason for stopping trading."})
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError({"reason": f"At most {MAX_REASON_LENGTH} characters (the circuit breaker's limit)."})
    return reason


@transaction.atomic
def _record_request(
    *, user: AbstractBaseUser, reason: str, stop_all_trading: bool, incident: Incident | None, now: datetime, url: str
) -> EmergencyStop:
    if incident is not None:
        incident = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
    if incident is None or not incident.is_open:
        related = (
            f" Related to {incident.reference}, which is {incident.get_state_display().lower()}." if incident else ""
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
        stop_all_trading=stop_all_trading,
        requested_at=now,
        agent_url=url,
    )
    scope = "all trading" if stop_all_trading else "trading (not all)"
    timeline_record(
        incident,
        kind=TimelineEntry.Kind.EMERGENCY_STOP,
        action=f"Emergency stop of {scope} requested by {_person(user)}. Reason: {reason}",
        owner=user,
        at=now,
        data={"emergency_stop": stop.pk, "agent_url": url, "stop_all_trading": stop_all_trading},
    )
    return stop


@transaction.atomic
def _record_outcome(stop: EmergencyStop, *, stop_answer: AgentAnswer, status_answer: AgentAnswer) -> EmergencyStop:
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
    text = f"Emergency stop result: {label.upper()} ({elapsed:.1f} s). Agent: {_describe(stop_answer)}"
    if isinstance(stop_answer.body, dict) and stop_answer.body.get("stop_id"):
        text += f", stop ID {stop_answer.body['stop_id']}"
    text += f". Status check: {_describe(status_answer)}"
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
    stop_all_trading: bool = True,
    incident: Incident | None = None,
    now: datetime | None = None,
) -> EmergencyStop:
    """Stop trading through the circuit breaker and verify it; never raises for the agent's faults.

    Raises PermissionDenied for users without the trading-halt permission and ValidationError
    for a missing or too long reason (before anything is written or sent).
    """
    reason = emergency_stop_validate(user=user, reason=reason)
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
        stop_all_trading=stop_all_trading,
        incident=incident,
        now=now or timezone.now(),
        url=base,
    )
    payload = {"reason": reason, "triggered_by": _triggered_by(user), "stop_all_trading": stop_all_trading}
    timeout = settings.TMT_CIRCUIT_BREAKER_TIMEOUT
    # No keep-alive: one stop, two calls; a pooled connection must never hide a dead agent.
    with httpx.Client(
        timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0), trust_env=False, follow_redirects=False
    ) as client:
        stop_answer = _call(client, "POST", base + STOP_PATH, payload)
        status_answer = _call(client, "GET", base + STATUS_PATH)
    return _record_outcome(stop, stop_answer=stop_answer, status_answer=status_answer)
