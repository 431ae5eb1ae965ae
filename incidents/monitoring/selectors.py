"""Reads for the incident page: its trading halts and stop prompts (two queries; a capture's
bundle shows in the incident's evidence list)."""

from __future__ import annotations

from typing import Any

from incidents.models import Incident
from incidents.monitoring.models import TradingHalt
from incidents.monitoring.prompts import stop_prompts


def incident_halt_context(incident: Incident) -> dict[str, Any]:
    halts = list(
        TradingHalt.objects.filter(incident=incident)
        .select_related("started_by", "resumed_by", "alarm_incident")
        .prefetch_related("closures__closed_by")
    )
    # The template hides the prompts while trading is halted (the banner's context says so).
    return {"incident_halts": halts, "stop_prompts": stop_prompts(incident)}
