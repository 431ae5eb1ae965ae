"""Reads for the incident page: its trading halts, stop prompts and state captures."""

from __future__ import annotations

from typing import Any

from incidents.models import Incident
from incidents.monitoring.halt import stop_prompts
from incidents.monitoring.models import SystemStateCapture, TradingHalt


def incident_halt_context(incident: Incident) -> dict[str, Any]:
    halts = list(
        TradingHalt.objects.filter(incident=incident)
        .select_related("started_by", "resumed_by", "alarm_incident")
        .prefetch_related("closures__closed_by")
    )
    active = TradingHalt.objects.filter(ended_at=None).exists()
    return {
        "incident_halts": halts,
        # A prompt is moot while trading is already halted.
        "stop_prompts": [] if active else stop_prompts(incident),
        "state_captures": list(
            SystemStateCapture.objects.filter(incident=incident).select_related("evidence", "requested_by")[:10]
        ),
    }
