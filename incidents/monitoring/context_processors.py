"""The trading-halt banner on every page (templates/monitoring/_halt_banner.html)."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from incidents.monitoring.halt import trading_halt_active


def trading_halt(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Lazy: one query on a page that shows the banner, none on those that do not (the admin, JSON).
    return {"trading_halt": SimpleLazyObject(trading_halt_active)}
