"""The trading-halt banner on every page (templates/monitoring/_halt_banner.html)."""

from __future__ import annotations

from django.http import HttpRequest

from incidents.monitoring.models import TradingHalt


def trading_halt(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # One indexed query per page (the partial unique index on active halts).
    halt = TradingHalt.objects.filter(ended_at=None).select_related("started_by").first()
    return {"trading_halt": halt} if halt is not None else {}
