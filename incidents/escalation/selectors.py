"""Reads for the incident page's escalation panel: what is pending, whom it pages, what fired."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from incidents.escalation.models import (
    Deadline,
    EscalationEvent,
    RegulatoryCategory,
    RegulatoryClassification,
    RegulatoryObligation,
)
from incidents.escalation.services import resolve_target, response_due_at
from incidents.escalation.snapshot import snapshot_of
from incidents.models import (
    Incident,
)
from incidents.notifications.selectors import failed_notifications
from incidents.oncall.selectors import role_contact
from incidents.roles import HEAD_OF_RISK
from incidents.selectors import Clock

# A page due the moment it is armed (the first page at open, a Sev1's immediate role escalation)
# is claimed by the deadline loop within seconds; until then it reads as being sent, not as
# overdue. Still pending this long after it was armed, it is stuck, and shows as overdue.
IMMEDIATE_GRACE = timedelta(seconds=60)


def _sent_at_once(deadline: Deadline, incident: Incident, now) -> str:
    """ "at open" / "at once" for a page due when it was armed and still within the grace; ""."""
    if deadline.due_at > deadline.created_at or now - deadline.created_at > IMMEDIATE_GRACE:
        return ""
    return "at open" if deadline.due_at <= incident.detected_at + timedelta(seconds=1) else "at once"


def escalation_panel(incident: Incident) -> dict:
    """The incident page's live escalation panel: what is pending, who it pages, what fired."""
    now = timezone.now()
    snapshot = snapshot_of(incident)
    chain = snapshot.chain
    pending = []
    for deadline in incident.deadlines.filter(fired_at=None, cancelled_at=None).order_by("due_at"):
        who, label = None, ""
        if deadline.kind == Deadline.Kind.ACKNOWLEDGE and deadline.step <= len(chain):
            step = chain[max(deadline.step, 1) - 1]
            who, label = resolve_target(step.target, step.role, max(deadline.due_at, now))
            label = f"step {deadline.step}: {label}" if deadline.step else f"first page: {label}"
        elif deadline.kind == Deadline.Kind.ROLE_ESCALATION:
            _, key, *rest = deadline.rule.split(":")
            trigger = snapshot.trigger(key)
            if trigger:
                who, label = role_contact(trigger.role, deputy=bool(rest)), trigger.name
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
        pending.append(
            {
                "deadline": deadline,
                "who": who,
                "label": label,
                "clock": Clock(label=label, started_at=deadline.created_at, due_at=deadline.due_at, done_at=None),
                "sent_at_once": _sent_at_once(deadline, incident, now),
            }
        )
    due = response_due_at(incident)
    raised = set(incident.obligations.values_list("category_id", flat=True))
    return {
        "incident": incident,
        "policy_name": snapshot.policy,
        "ack_clock": Clock(
            label="Acknowledge",
            started_at=incident.detected_at,
            due_at=due,
            done_at=incident.acknowledged_at or incident.cancelled_at,
        ),
        "pending": pending,
        "fired": list(
            EscalationEvent.objects.filter(incident=incident).select_related("target_user").order_by("-fired_at")[:20]
        ),
        "failed_notifications": failed_notifications(incident),
        "obligations": list(
            RegulatoryObligation.objects.filter(incident=incident).select_related(
                "category", "regime", "stage", "submitted_by", "signed_off_by"
            )
        ),
        "raisable_categories": list(
            RegulatoryCategory.objects.filter(raised_automatically=False).exclude(pk__in=raised)
        ),
        "last_status_update": incident.status_updates.order_by("-sequence").first(),
        "now": now,
    }


def regulatory_open_obligations() -> dict[str, list[dict]]:
    """Every report still owed, across incidents: running clocks first by due time, then the
    stages whose clock waits for an earlier submission or the resolution."""
    rows = (
        RegulatoryObligation.objects.filter(submitted_at=None, incident__is_drill=False)
        .select_related("incident", "incident__severity", "category", "regime", "stage", "classification")
        .order_by("due_at", "incident_id", "stage__order")
    )
    running, waiting = [], []
    for obligation in rows:
        item = {
            "obligation": obligation,
            "clock": Clock(
                label=obligation.label,
                started_at=obligation.clock_started_at or obligation.raised_at,
                due_at=obligation.due_at,
                done_at=None,
            ),
        }
        (running if obligation.due_at else waiting).append(item)
    return {"running": running, "waiting": waiting}


def incident_regulatory(incident: Incident) -> dict:
    """An incident's classifications and the reports they owe, by regime."""
    classifications = list(
        RegulatoryClassification.objects.filter(incident=incident).select_related("regime", "classified_by")
    )
    obligations = list(
        RegulatoryObligation.objects.filter(incident=incident, category=None)
        .select_related("regime", "stage", "submitted_by", "signed_off_by", "drafted_by")
        .order_by("regime__name", "stage__order")
    )
    for c in classifications:
        labels = c.regime.criteria_labels()
        c.criteria_text = [labels.get(k, k) for k in c.criteria_met]
        c.reports = [o for o in obligations if o.classification_id == c.pk]
    return {"classifications": classifications}
