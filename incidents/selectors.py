"""Reads that are more than a filter: clocks, dashboard figures, the incident page's data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Avg, Count, F, Prefetch, Q, QuerySet
from django.utils import timezone

from incidents.escalation.models import (
    Deadline,
    EscalationEvent,
    RegulatoryCategory,
    RegulatoryObligation,
)
from incidents.models import (
    OPEN_STATES,
    Incident,
    IncidentChecklistItem,
    PhaseTarget,
    SeverityLevel,
    System,
    format_duration,
)
from incidents.notifications.models import Notification


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
            return "met" if self.done_at <= self.due_at else "missed"
        return "overdue" if timezone.now() > self.due_at else "running"

    @property
    def elapsed(self) -> timedelta:
        return (self.done_at or timezone.now()) - self.started_at


def response_clock(incident: Incident, *, holidays: set | None = None) -> Clock:
    from .services.escalation import response_due_at

    return Clock(
        label="Acknowledge",
        started_at=incident.detected_at,
        due_at=response_due_at(incident, holidays=holidays),
        done_at=incident.acknowledged_at or incident.cancelled_at,
        target_label=incident.severity.response_time_label,
    )


def response_clocks(incidents: list[Incident]) -> list[dict]:
    """Rows of {incident, clock} for a list page, with holidays loaded once for all of them."""
    from . import business_days

    holidays: set = set()
    if incidents:
        days = [i.detected_at.date() for i in incidents]
        holidays = business_days.holidays_between(min(days), max(days) + timedelta(days=1))
    return [{"incident": i, "clock": response_clock(i, holidays=holidays)} for i in incidents]


def phase_targets() -> dict[str, PhaseTarget]:
    return {target.phase: target for target in PhaseTarget.objects.all()}


def phase_clocks(incident: Incident, targets: dict[str, PhaseTarget]) -> list[Clock]:
    """The seed's four phase targets, measured on this incident."""
    ended = incident.cancelled_at
    clocks = []
    spec = [
        (PhaseTarget.Phase.DETECTION, incident.detected_at, incident.acknowledged_at),
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
    review = targets.get(PhaseTarget.Phase.REVIEW)
    if review is not None and incident.resolved_at is not None:
        clocks.append(
            Clock(
                label=review.get_phase_display(),
                started_at=incident.resolved_at,
                due_at=incident.resolved_at + review.target,
                done_at=incident.closed_at,
                target_label=format_duration(review.target),
            )
        )
    return clocks


# -- lists ----------------------------------------------------------------------------------


def incident_list_queryset() -> QuerySet[Incident]:
    return (
        Incident.objects.select_related("severity", "commander")
        .prefetch_related(Prefetch("affected_systems", queryset=System.objects.only("id", "key", "name")))
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
    """Open incidents by severity, and MTTA/MTTR over real (non-drill) incidents since `since`."""
    open_by_level = dict(
        Incident.objects.filter(state__in=OPEN_STATES)
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
    return list(
        incident_list_queryset()
        .filter(state__in=OPEN_STATES)
        .order_by("severity__level", "detected_at")[:limit]
    )



# -- escalation panel -----------------------------------------------------------------------


def escalation_panel(incident: Incident) -> dict:
    """The incident page's live escalation panel: what is pending, who it pages, what fired."""
    from .roles import HEAD_OF_RISK
    from .services.escalation import resolve_target, response_due_at, role_contact

    now = timezone.now()
    snapshot = incident.escalation_snapshot
    chain = snapshot.get("chain", [])
    triggers = {t["key"]: t for t in snapshot.get("triggers", [])}
    pending = []
    for deadline in incident.deadlines.filter(fired_at=None, cancelled_at=None).order_by("due_at"):
        who, label = None, ""
        if deadline.kind == Deadline.Kind.ACKNOWLEDGE and deadline.step <= len(chain):
            step = chain[max(deadline.step, 1) - 1]
            who, label = resolve_target(step["target"], step["role"], max(deadline.due_at, now))
            label = f"step {deadline.step}: {label}" if deadline.step else f"first page: {label}"
        elif deadline.kind == Deadline.Kind.ROLE_ESCALATION:
            _, key, *rest = deadline.rule.split(":")
            trigger = triggers.get(key)
            if trigger:
                who, label = role_contact(trigger["role"], deputy=bool(rest)), trigger["name"]
        elif deadline.kind == Deadline.Kind.STATUS_UPDATE:
            who = incident.commander
            label = "status update due" + (" (then the incident manager)" if deadline.step == 1 else " — escalated")
        elif deadline.kind == Deadline.Kind.REGULATORY:
            who = role_contact(HEAD_OF_RISK)
            label = "regulatory notification " + ("reminder" if deadline.step == 1 else "due")
        elif deadline.kind == Deadline.Kind.OUTAGE:
            label = "open 4 h: 24-hour outage notification"
        elif deadline.kind == Deadline.Kind.REVIEW:
            who, label = incident.commander, "post-incident review / action item reminder"
        pending.append({"deadline": deadline, "who": who, "label": label, "clock": Clock(
            label=label, started_at=deadline.created_at, due_at=deadline.due_at, done_at=None)})
    due = response_due_at(incident)
    raised = set(incident.obligations.values_list("category_id", flat=True))
    return {
        "incident": incident,
        "policy_name": snapshot.get("policy", ""),
        "ack_clock": Clock(
            label="Acknowledge", started_at=incident.detected_at, due_at=due,
            done_at=incident.acknowledged_at or incident.cancelled_at,
        ),
        "pending": pending,
        "fired": list(
            EscalationEvent.objects.filter(incident=incident).select_related("target_user").order_by("-fired_at")[:20]
        ),
        "failed_notifications": failed_notifications(incident),
        "obligations": list(
            RegulatoryObligation.objects.filter(incident=incident).select_related("category", "submitted_by", "signed_off_by")
        ),
        "raisable_categories": list(
            RegulatoryCategory.objects.filter(raised_automatically=False).exclude(pk__in=raised)
        ),
        "last_status_update": incident.status_updates.order_by("-sequence").first(),
        "now": now,
    }


def failed_notifications(incident: Incident, *, limit: int = 10) -> list[Notification]:
    """Pages that failed for good, newest first: someone the escalation meant to reach wasn't."""
    return list(
        Notification.objects.filter(incident=incident, state=Notification.State.FAILED)
        .select_related("recipient", "event")
        .order_by("-created_at")[:limit]
    )
