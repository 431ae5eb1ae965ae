"""The public status page (the seed's "System Status Page"): no login, no internal details.

Shown: each system's state, the open incidents' public title, severity, status word and their
last update marked public, and planned maintenance. Never shown: internal titles, descriptions,
references, people, financial figures, the timeline, or a public update's subject and contact
(the subject carries the internal title, the contact a phone number). Drill incidents are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.decorators import login_not_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from incidents.escalation.models import StatusUpdate
from incidents.models import OPEN_STATES, Incident, System
from incidents.monitoring.models import HealthTarget, MaintenanceWindow

OPERATIONAL = "operational"
MAINTENANCE = "maintenance"
DEGRADED = "degraded"
MAJOR_OUTAGE = "major_outage"
# Worst last: a system shows the worst thing that applies to it.
RANK = {OPERATIONAL: 0, MAINTENANCE: 1, DEGRADED: 2, MAJOR_OUTAGE: 3}
LABEL = {
    OPERATIONAL: "Operational",
    MAINTENANCE: "Under maintenance",
    DEGRADED: "Degraded performance",
    MAJOR_OUTAGE: "Major outage",
}
OVERALL = {
    OPERATIONAL: "All systems operational",
    MAINTENANCE: "Planned maintenance in progress",
    DEGRADED: "Some systems are degraded",
    MAJOR_OUTAGE: "Major outage",
}
CACHE_SECONDS = 15


@dataclass
class PublicStatus:
    generated_at: datetime
    status: str
    systems: list[dict]
    incidents: list[dict]
    maintenance: list[dict]

    @property
    def status_label(self) -> str:
        return OVERALL[self.status]


def _worse(a: str, b: str) -> str:
    return a if RANK[a] >= RANK[b] else b


def public_status(*, now: datetime | None = None) -> PublicStatus:
    """Everything the page and its JSON twin show, in a constant number of queries."""
    now = now or timezone.now()
    systems = list(System.objects.order_by("tier", "rto", "name"))
    state = {s.pk: OPERATIONAL for s in systems}
    for system_id, target_state in HealthTarget.objects.filter(enabled=True).values_list("system_id", "state"):
        if target_state == HealthTarget.State.DOWN:
            state[system_id] = _worse(state[system_id], MAJOR_OUTAGE)
        elif target_state == HealthTarget.State.DEGRADED:
            state[system_id] = _worse(state[system_id], DEGRADED)

    incidents = []
    for incident in (
        Incident.objects.filter(state__in=OPEN_STATES, is_drill=False)
        .select_related("severity")
        .prefetch_related(
            "affected_systems",
            Prefetch(
                "status_updates",
                queryset=StatusUpdate.objects.filter(is_public=True).order_by("-sequence"),
                to_attr="public_updates",
            ),
        )
        .order_by("severity__level", "detected_at")
    ):
        affected = list(incident.affected_systems.all())
        for system in affected:
            level = MAJOR_OUTAGE if incident.severity.level == 1 else DEGRADED
            state[system.pk] = _worse(state.get(system.pk, OPERATIONAL), level)
        names = [s.name for s in affected]
        title = incident.public_title.strip() or (
            f"Service disruption affecting {', '.join(names)}" if names else "Service disruption"
        )
        update = incident.public_updates[0] if incident.public_updates else None
        incidents.append(
            {
                "title": title,
                "severity": {"level": incident.severity.level, "name": incident.severity.name},
                "status": incident.status_word,
                "started_at": incident.detected_at,
                "systems": names,
                "last_update": None
                if update is None
                else {
                    "posted_at": update.posted_at,
                    "status": update.status,
                    "impact": update.impact,
                    "details": update.details,
                    "eta": update.eta,
                    "next_update_at": update.next_update_at,
                },
            }
        )

    maintenance = []
    for window in MaintenanceWindow.objects.filter(ends_at__gt=now).prefetch_related("systems").order_by("starts_at"):
        covered = list(window.systems.all())
        in_progress = window.starts_at <= now
        if in_progress:
            for system in covered:
                state[system.pk] = _worse(state.get(system.pk, OPERATIONAL), MAINTENANCE)
        maintenance.append(
            {
                "title": window.title,
                "description": window.description,
                "starts_at": window.starts_at,
                "ends_at": window.ends_at,
                "in_progress": in_progress,
                "systems": [s.name for s in covered],
            }
        )

    rows = [
        {
            "key": s.key,
            "name": s.name,
            "tier": s.get_tier_display(),
            "status": state[s.pk],
            "status_label": LABEL[state[s.pk]],
        }
        for s in systems
    ]
    overall = OPERATIONAL
    for row in rows:
        overall = _worse(overall, row["status"])
    return PublicStatus(generated_at=now, status=overall, systems=rows, incidents=incidents, maintenance=maintenance)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@login_not_required
@require_GET
@cache_control(public=True, max_age=CACHE_SECONDS)
def status_page(request: HttpRequest) -> HttpResponse:
    return render(request, "status/status.html", {"status": public_status()})


@login_not_required
@require_GET
@cache_control(public=True, max_age=CACHE_SECONDS)
def status_json(request: HttpRequest) -> JsonResponse:
    status = public_status()
    return JsonResponse(
        {
            "generated_at": _iso(status.generated_at),
            "status": status.status,
            "status_label": status.status_label,
            "systems": status.systems,
            "incidents": [
                {
                    **incident,
                    "started_at": _iso(incident["started_at"]),
                    "last_update": None
                    if incident["last_update"] is None
                    else {
                        **incident["last_update"],
                        "posted_at": _iso(incident["last_update"]["posted_at"]),
                        "next_update_at": _iso(incident["last_update"]["next_update_at"]),
                    },
                }
                for incident in status.incidents
            ],
            "maintenance": [
                {**window, "starts_at": _iso(window["starts_at"]), "ends_at": _iso(window["ends_at"])}
                for window in status.maintenance
            ],
        }
    )
