"""What the public page shows, built in a fixed number of queries and cached (cache.py).

Only published incidents, their public updates and maintenance announced for the page appear;
never an internal title, severity, reference, person or timeline entry. Drill incidents cannot be
published (services.py refuses them).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db.models import Count, Prefetch, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from incidents.escalation.status_updates import status_update_draft
from incidents.models import System
from incidents.monitoring.models import HealthSample, HealthTarget
from incidents.status.models import (
    STATE_RANK,
    ComponentState,
    Maintenance,
    MaintenanceNotice,
    PublicIncident,
    PublicUpdate,
    StatusComponent,
    UptimeDay,
)

OVERALL = {
    ComponentState.OPERATIONAL: "All systems operational",
    ComponentState.MAINTENANCE: "Maintenance in progress",
    ComponentState.DEGRADED: "Degraded performance",
    ComponentState.PARTIAL_OUTAGE: "Partial outage",
    ComponentState.MAJOR_OUTAGE: "Major outage",
}
_HEALTH = {HealthTarget.State.DOWN: ComponentState.MAJOR_OUTAGE, HealthTarget.State.DEGRADED: ComponentState.DEGRADED}
_TIER_ORDER = {tier: n for n, tier in enumerate(System.Tier.values)}


def _worse(a: str, b: str) -> str:
    return a if STATE_RANK[a] >= STATE_RANK[b] else b


def history_start(now: datetime) -> datetime:
    """The oldest resolution still on the page: exactly TMT_STATUS_HISTORY_DAYS ago, inclusive."""
    return now - timedelta(days=settings.TMT_STATUS_HISTORY_DAYS)


def _updates(public: PublicIncident) -> list[dict]:
    return [
        {
            "status": u.status,
            "status_label": u.get_status_display(),
            "message": u.message,
            "published_at": u.published_at,
        }
        for u in public.updates.all()
    ]


def public_components(
    systems: list[System], components: dict[int, StatusComponent] | None = None
) -> list[tuple[str, str]]:
    """(key, public name) of the systems customers may be told about: a component hidden from the
    page is left out, and one with a public name is called by it, wherever the page, its JSON,
    feed, mails or webhooks name systems."""
    if components is None:
        components = {c.system_id: c for c in StatusComponent.objects.filter(system__in=[s.pk for s in systems])}
    shown = []
    for system in systems:
        component = components.get(system.pk)
        if component is not None and not component.visible:
            continue
        shown.append((system.key, (component.public_name if component else "") or system.name))
    return shown


def _incident(public: PublicIncident, components: dict[int, StatusComponent]) -> dict:
    named = public_components(list(public.systems.all()), components)
    return {
        "id": public.pk,
        "title": public.title,
        "impact": public.impact,
        "impact_label": public.get_impact_display(),
        "status": public.status,
        "status_label": public.get_status_display(),
        "published_at": public.published_at,
        "resolved_at": public.resolved_at,
        "components": [key for key, _ in named],
        "component_names": [name for _, name in named],
        "updates": _updates(public),
    }


def _maintenance(m: Maintenance, components: dict[int, StatusComponent]) -> dict:
    named = public_components(list(m.systems.all()), components)
    return {
        "id": m.pk,
        "title": m.title,
        "message": m.message,
        "state": m.state,
        "state_label": m.get_state_display(),
        "starts_at": m.starts_at,
        "ends_at": m.ends_at,
        "started_at": m.started_at,
        "completed_at": m.completed_at,
        "components": [key for key, _ in named],
        "component_names": [name for _, name in named],
        "notices": [
            {
                "state": n.state,
                "state_label": n.get_state_display(),
                "message": n.message,
                "published_at": n.published_at,
            }
            for n in m.notices.all()
        ],
    }


def uptime_by_system(*, systems: list[System], now: datetime, days: int) -> dict[int, dict[date, tuple[int, int]]]:
    """(ok, total) checks per system per UTC day for the last `days` days, today included.

    Finished days come from the daily rollup; days it does not hold yet (today, and any day
    since the last rollup) from one aggregate over the samples still kept."""
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    counts: dict[int, dict[date, tuple[int, int]]] = defaultdict(dict)
    for system_id, day, ok, total in UptimeDay.objects.filter(day__gte=first, day__lte=today).values_list(
        "system_id", "day", "ok", "total"
    ):
        counts[system_id][day] = (ok, total)
    rolled = {day for per_day in counts.values() for day in per_day}
    kept_from = max(first, today - timedelta(days=settings.TMT_HEALTH_SAMPLE_RETENTION_DAYS))
    missing = [kept_from + timedelta(days=n) for n in range((today - kept_from).days + 1)]
    missing = [day for day in missing if day not in rolled]
    if missing:
        since = datetime(missing[0].year, missing[0].month, missing[0].day, tzinfo=UTC)
        rows = (
            HealthSample.objects.filter(checked_at__gte=since, target__system__in=[s.pk for s in systems])
            .annotate(day=TruncDate("checked_at", tzinfo=UTC))
            .values("target__system_id", "day")
            .annotate(ok=Count("pk", filter=Q(ok=True)), total=Count("pk"))
        )
        for row in rows:
            if row["day"] in missing:
                counts[row["target__system_id"]][row["day"]] = (row["ok"], row["total"])
    return counts


def _uptime_bars(per_day: dict[date, tuple[int, int]], *, today: date, days: int) -> tuple[list[dict], float | None]:
    bars = []
    ok_all = total_all = 0
    for n in range(days - 1, -1, -1):
        day = today - timedelta(days=n)
        ok, total = per_day.get(day, (0, 0))
        ok_all, total_all = ok_all + ok, total_all + total
        percent = round(100 * ok / total, 2) if total else None
        if percent is None:
            level = "none"
        elif percent >= 99.9:
            level = "up"
        elif percent >= 99:
            level = "minor"
        elif percent >= 95:
            level = "partial"
        else:
            level = "major"
        # The hover text is written here, not by template filters: 90 bars a component made
        # the page's rendering, redone after every publish, several times slower.
        label = f"{day:%Y-%m-%d}: " + ("no data" if percent is None else f"{percent}%")
        bars.append({"date": day, "percent": percent, "level": level, "label": label})
    return bars, (round(100 * ok_all / total_all, 3) if total_all else None)


def public_status(*, now: datetime | None = None) -> dict:
    """Everything the page, its JSON, feed and banner show."""
    now = now or timezone.now()
    days = settings.TMT_STATUS_HISTORY_DAYS
    systems = list(System.objects.all())
    components = {c.system_id: c for c in StatusComponent.objects.all()}
    state = {s.pk: ComponentState.OPERATIONAL.value for s in systems}
    for system_id, target_state in HealthTarget.objects.filter(enabled=True).values_list("system_id", "state"):
        if target_state in _HEALTH and system_id in state:
            state[system_id] = _worse(state[system_id], _HEALTH[target_state])

    updates = Prefetch("updates", queryset=PublicUpdate.objects.order_by("-published_at", "-id"))
    published = list(
        PublicIncident.objects.filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=history_start(now)))
        .prefetch_related("systems", updates)
        .order_by("-published_at")
    )
    active = [p for p in published if p.resolved_at is None]
    resolved = sorted((p for p in published if p.resolved_at is not None), key=lambda p: p.resolved_at, reverse=True)
    overall = ComponentState.OPERATIONAL.value
    for public in active:
        overall = _worse(overall, public.impact)
        for system in public.systems.all():
            state[system.pk] = _worse(state[system.pk], public.impact)

    notices = Prefetch("notices", queryset=MaintenanceNotice.objects.order_by("-published_at", "-id"))
    maintenance = list(
        Maintenance.objects.filter(
            Q(state__in=[Maintenance.State.SCHEDULED, Maintenance.State.IN_PROGRESS])
            | Q(state=Maintenance.State.COMPLETED, completed_at__gte=history_start(now))
        )
        .prefetch_related("systems", notices)
        .order_by("starts_at")
    )
    for m in maintenance:
        if m.state == Maintenance.State.IN_PROGRESS:
            overall = _worse(overall, ComponentState.MAINTENANCE)
            for system in m.systems.all():
                state[system.pk] = _worse(state[system.pk], ComponentState.MAINTENANCE)

    shown = [s for s in systems if components.get(s.pk) is None or components[s.pk].visible]
    shown.sort(key=lambda s: (components[s.pk].position if s.pk in components else 0, _TIER_ORDER[s.tier], s.name))
    uptime = uptime_by_system(systems=shown, now=now, days=days)
    today = now.astimezone(UTC).date()
    groups: dict[str, list[dict]] = {}
    for system in shown:
        component = components.get(system.pk)
        if component is not None and component.manual_state:
            state[system.pk] = component.manual_state
        bars, percent = _uptime_bars(uptime.get(system.pk, {}), today=today, days=days)
        group = (component.group if component else "") or system.get_tier_display()
        groups.setdefault(group, []).append(
            {
                "key": system.key,
                "name": (component.public_name if component else "") or system.name,
                "status": state[system.pk],
                "status_label": ComponentState(state[system.pk]).label,
                "uptime_percent": percent,
                "uptime_days": bars,
            }
        )
        overall = _worse(overall, state[system.pk])
    return {
        "generated_at": now,
        "status": overall,
        "status_label": OVERALL[ComponentState(overall)],
        "groups": [{"name": name, "components": rows} for name, rows in groups.items()],
        "incidents": [_incident(p, components) for p in active],
        "maintenance": [_maintenance(m, components) for m in maintenance if m.state != Maintenance.State.COMPLETED],
        "history": [_incident(p, components) for p in resolved],
        "maintenance_history": [
            _maintenance(m, components) for m in maintenance if m.state == Maintenance.State.COMPLETED
        ],
        "history_days": days,
    }


def public_draft(*, incident) -> dict:
    """A first public title and message, from the seed's status update template: the impact,
    the ETA and the next update, never the internal details, severity or contact."""
    draft = status_update_draft(incident=incident)
    names = [name for _, name in public_components(list(incident.affected_systems.all()))]
    title = incident.public_title.strip() or (
        f"Service disruption affecting {', '.join(names)}" if names else "Service disruption"
    )
    impact = {1: ComponentState.MAJOR_OUTAGE, 2: ComponentState.PARTIAL_OUTAGE}.get(
        incident.severity.level, ComponentState.DEGRADED
    )
    status = {"Contained": "identified", "Resolved": "resolved"}.get(draft.status, "investigating")
    lines = [f"We are investigating an issue affecting {', '.join(names) or 'our services'}."]
    if incident.user_impact.strip():
        lines.append(f"Impact: {incident.user_impact.strip()}")
    if draft.next_update_at:
        lines.append(f"Next update by {draft.next_update_at.astimezone(UTC):%H:%M} UTC.")
    return {"title": title, "impact": impact.value, "status": status, "message": "\n".join(lines)}
