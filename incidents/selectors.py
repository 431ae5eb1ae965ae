"""Reads that are more than a filter: clocks, dashboard figures, the incident page's data."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.db.models import Avg, Count, F, Prefetch, Q, QuerySet
from django.utils import timezone

from incidents import business_days
from incidents.hooks import hooks
from incidents.models import (
    OPEN_STATES,
    Incident,
    IncidentChecklistItem,
    IncidentRole,
    IncidentRoleAssignment,
    PhaseTarget,
    SeverityLevel,
    System,
    format_duration,
)


def done_in_time(done_at: datetime, due_at: datetime) -> bool:
    """Done at the due moment or before it is in time ("acknowledge within 15 minutes")."""
    return done_at <= due_at


def is_overdue(due_at: datetime, now: datetime) -> bool:
    """Not done when the due moment comes is overdue: the moment its deadline fires and pages
    (deadlines are claimed once due_at <= now), so a page and its warning appear together."""
    return now >= due_at


@dataclass(frozen=True)
class Clock:
    """One time obligation as shown on a page: started, due, done (or still running)."""

    label: str
    started_at: datetime
    due_at: datetime | None
    done_at: datetime | None
    target_label: str = ""

    @property
    def status(self) -> str:
        if self.due_at is None:
            return "none"
        if self.done_at is not None:
            return "met" if done_in_time(self.done_at, self.due_at) else "missed"
        return "overdue" if is_overdue(self.due_at, timezone.now()) else "running"

    @property
    def elapsed(self) -> timedelta:
        return (self.done_at or timezone.now()) - self.started_at

    @property
    def remaining(self) -> timedelta | None:
        """Time left to the due moment (negative once overdue); None when done or not due."""
        if self.done_at is not None or self.due_at is None:
            return None
        return self.due_at - timezone.now()

    @property
    def late_by(self) -> timedelta | None:
        """How long after the due moment it was done (None: done in time, or not done)."""
        if self.done_at is None or self.due_at is None or done_in_time(self.done_at, self.due_at):
            return None
        return self.done_at - self.due_at


def response_clock(incident: Incident, *, holidays: set | None = None) -> Clock:
    """The response-time SLA: acknowledged within the severity's response time (as frozen at open)."""
    return Clock(
        label="Acknowledge",
        started_at=incident.detected_at,
        due_at=hooks.response_due_at(incident, holidays=holidays) if hooks.response_due_at else None,
        done_at=incident.acknowledged_at or incident.cancelled_at,
        target_label=incident.severity.response_time_label,
    )


def rto_started_at(incident: Incident) -> datetime:
    """When an affected system's RTO starts counting: the incident's start time.

    The seed's RTO is the time to restore a system, so it runs from when the system stopped
    working (the report's Start Time, which may precede detection), not from when someone
    noticed. It stops at the report's End Time (the resolution unless edited).
    """
    return incident.started_at


def rto_clocks(incident: Incident) -> list[Clock]:
    """One clock per affected system: restored within the system's RTO, or not (yet)."""
    start = rto_started_at(incident)
    done = (incident.ended_at or incident.resolved_at or incident.cancelled_at) if not incident.is_open else None
    return [
        Clock(
            label=system.name,
            started_at=start,
            due_at=start + system.rto,
            done_at=done,
            target_label=format_duration(system.rto),
        )
        for system in sorted(incident.affected_systems.all(), key=lambda s: (s.rto, s.name))
    ]


def response_clocks(incidents: list[Incident], *, with_rto: bool = False) -> list[dict]:
    """Rows of {incident, clock} for a list page, with holidays loaded once for all of them, and
    each affected system's RTO clock where the page shows them (the dashboard)."""
    holidays: set = set()
    if incidents:
        days = [i.detected_at.date() for i in incidents]
        holidays = business_days.holidays_between(min(days), max(days) + timedelta(days=1))
    return [
        {
            "incident": i,
            "clock": response_clock(i, holidays=holidays),
            "rto_clocks": rto_clocks(i) if with_rto else [],
        }
        for i in incidents
    ]


def commander_problems(*, user, at) -> list[str]:
    """Why `user` may not command an incident now (the readiness gate's reasons), if anything."""
    return [problem for check in hooks.commander_problems for problem in check(user=user, at=at)]


def phase_targets() -> dict[str, PhaseTarget]:
    return {target.phase: target for target in PhaseTarget.objects.all()}


def phase_clocks(incident: Incident, targets: dict[str, PhaseTarget]) -> list[Clock]:
    """The seed's four phases, measured on this incident.

    Phase 1 (detection and initial response) ends with the acknowledgement, and its target is
    the severity's response time: it is the response-time clock under the phase's name, so the
    two can never disagree about the same minutes.
    """
    ended = incident.cancelled_at
    clocks = [replace(response_clock(incident), label=PhaseTarget.Phase.DETECTION.label)]
    spec = [
        (PhaseTarget.Phase.CONTAINMENT, incident.detected_at, incident.contained_at),
        (PhaseTarget.Phase.RECOVERY, incident.detected_at, incident.resolved_at),
    ]
    for phase, start, done in spec:
        target = targets.get(phase)
        if target is None:
            continue
        clocks.append(
            Clock(
                label=target.get_phase_display(),
                started_at=start,
                due_at=start + target.target,
                done_at=done or ended,
                target_label=format_duration(target.target),
            )
        )
    review = review_clock(incident, targets.get(PhaseTarget.Phase.REVIEW))
    if review is not None:
        clocks.append(review)
    return clocks


def review_clock(incident: Incident, target: PhaseTarget | None) -> Clock | None:
    """Phase 4: the post-incident review, due the review target after resolution.

    Done when the review app says so (an approved review; hooks.review_done_at), or when the
    incident was closed without one (a minor incident needs none).
    """
    if target is None or incident.resolved_at is None:
        return None
    done = hooks.review_done_at(incident) if hooks.review_done_at else None
    return Clock(
        label=target.get_phase_display(),
        started_at=incident.resolved_at,
        due_at=incident.resolved_at + target.target,
        done_at=done or incident.closed_at,
        target_label=format_duration(target.target),
    )


# -- lists ----------------------------------------------------------------------------------


def incident_list_queryset() -> QuerySet[Incident]:
    return (
        Incident.objects.select_related("severity", "commander")
        .prefetch_related(Prefetch("affected_systems", queryset=System.objects.only("id", "key", "name", "rto")))
        .defer(
            "description",
            "user_impact",
            "primary_cause",
            "contributing_factors",
            "resolution_actions",
            "verification_steps",
            "went_well",
            "could_improve",
            "prevention_immediate",
            "prevention_long_term",
            "monitoring_improvements",
            "cancel_reason",
        )
    )


def incident_detail(reference: str) -> Incident:
    return (
        Incident.objects.select_related("severity", "commander", "reported_by", "acknowledged_by")
        .prefetch_related(
            "affected_systems",
            Prefetch(
                "checklist_items",
                queryset=IncidentChecklistItem.objects.select_related("done_by").order_by(
                    "template__order", "order", "id"
                ),
            ),
            "evidence",
        )
        .get(reference=reference)
    )


@dataclass(frozen=True)
class SeverityBucket:
    severity: SeverityLevel
    open_count: int


def dashboard_summary(*, since: datetime) -> dict:
    """Open real incidents by severity, and MTTA/MTTR over real incidents since `since`.

    Drill incidents count nowhere here: a Sev1 exercise is not a Sev1 for the people watching.
    """
    open_by_level = dict(
        Incident.objects.filter(state__in=OPEN_STATES, is_drill=False)
        .values_list("severity__level")
        .annotate(n=Count("id"))
        .values_list("severity__level", "n")
    )
    buckets = [
        SeverityBucket(severity=level, open_count=open_by_level.get(level.level, 0))
        for level in SeverityLevel.objects.all()
    ]
    real = Incident.objects.filter(is_drill=False, detected_at__gte=since)
    figures = real.aggregate(
        mtta=Avg(F("acknowledged_at") - F("detected_at"), filter=Q(acknowledged_at__isnull=False)),
        mttr=Avg(F("resolved_at") - F("detected_at"), filter=Q(resolved_at__isnull=False)),
        opened=Count("id"),
        resolved=Count("id", filter=Q(resolved_at__isnull=False)),
    )
    return {"buckets": buckets, **figures}


def open_incidents(limit: int = 50) -> list[Incident]:
    """Open real incidents, most severe first (exercise incidents are listed apart)."""
    return list(
        incident_list_queryset()
        .filter(state__in=OPEN_STATES, is_drill=False)
        .order_by("severity__level", "detected_at")[:limit]
    )


def open_drill_incidents(limit: int = 10) -> list[Incident]:
    """The exercise incidents of drills under way, for a line beside the real ones."""
    # "state" too: django-fsm's ConcurrentTransitionMixin reads it as each row loads, and a
    # deferred state cost one query per drill on the dashboard.
    return list(
        Incident.objects.filter(state__in=OPEN_STATES, is_drill=True)
        .only("reference", "title", "detected_at", "state")
        .order_by("detected_at")[:limit]
    )


# -- incident roles -------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleSlot:
    """One incident role as the incident page shows it: who holds it, since when, who is on call."""

    role: str
    label: str
    holder: object | None  # a user
    since: datetime | None = None
    assigned_by: object | None = None
    on_call: object | None = None  # today's on-call person for the role, offered in one click


def incident_role_slots(incident: Incident, *, on_call: dict | None = None) -> list[RoleSlot]:
    """Every incident role in order, commander first, with its current holder (one query)."""
    on_call = on_call or {}
    current = {
        row.role: row
        for row in IncidentRoleAssignment.objects.current()
        .filter(incident=incident)
        .select_related("holder", "assigned_by")
    }
    slots = [RoleSlot(IncidentRole.COMMANDER, IncidentRole.COMMANDER.label, incident.commander)]
    for role in IncidentRole:
        if role == IncidentRole.COMMANDER:
            continue
        row = current.get(role.value)
        slots.append(
            RoleSlot(
                role.value,
                role.label,
                row.holder if row else None,
                since=row.assigned_at if row else None,
                assigned_by=row.assigned_by if row else None,
            )
        )
    return [replace(slot, on_call=on_call.get(slot.role)) for slot in slots]
