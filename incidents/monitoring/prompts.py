"""Prompts to stop trading: the portal never stops trading by itself. A seed trigger condition
it sees (the circuit breaker's health target down, an alert labelled as suspicious trading) puts
"consider an emergency stop" on the incident's timeline, once per trigger, and the incident page
shows it with the stop button, the reason code preselected."""

from __future__ import annotations

from incidents.models import Incident, TimelineEntry
from incidents.monitoring.models import StopReason, TradingHalt
from incidents.services.incident import timeline_record

STOP_PROMPT_KEY = "stop_prompt"


def is_suspicious_trading(labels: dict[str, str]) -> bool:
    """An alert labelled as suspicious trading: a label value "suspicious_trading" (e.g.
    category=suspicious_trading) or a label suspicious_trading=true."""
    if str(labels.get(StopReason.SUSPICIOUS_TRADING, "")).lower() in {"true", "1", "yes"}:
        return True
    return any(str(value).strip().lower() == StopReason.SUSPICIOUS_TRADING for value in labels.values())


def stop_prompt_record(*, incident: Incident, reason_code: str, why: str, owner_team: str) -> bool:
    """Put "consider an emergency stop" on the incident, once per trigger; none during a halt."""
    if TradingHalt.objects.filter(ended_at=None).exists():
        return False
    if incident.timeline.filter(**{f"data__{STOP_PROMPT_KEY}": reason_code}).exists():
        return False
    timeline_record(
        incident,
        kind=TimelineEntry.Kind.EMERGENCY_STOP,
        action=f"{why}: consider an emergency stop ({StopReason(reason_code).label}). "
        "The portal does not stop trading by itself.",
        owner_team=owner_team,
        data={STOP_PROMPT_KEY: reason_code},
    )
    return True


def stop_prompts(incident: Incident) -> list[TimelineEntry]:
    return list(incident.timeline.filter(**{f"data__{STOP_PROMPT_KEY}__isnull": False}).order_by("occurred_at"))
