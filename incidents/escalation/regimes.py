"""Regulatory regimes as data: classifying an incident under a regime, the reports it then owes
(one obligation per stage, each with its own clock), their drafted content and its export."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from incidents.escalation.models import (
    RegimeStage,
    RegulatoryClassification,
    RegulatoryObligation,
    RegulatoryRegime,
)
from incidents.escalation.regime_clock import stage_due_at
from incidents.escalation.services import obligation_deadlines_schedule
from incidents.models import OPEN_STATES, Incident, State, TimelineEntry
from incidents.services.incident import timeline_record
from incidents.validators import happened_problem

CONTENT_FIELDS = ("summary", "impact", "timeline", "cause", "actions")
CONTENT_MAX = 20_000


def _name(user) -> str:
    return user.get_full_name() or user.get_username()


def classifiable_regimes():
    return RegulatoryRegime.objects.filter(active=True, is_default=False).prefetch_related("stages")


@transaction.atomic
def regulatory_classify(
    *,
    incident: Incident,
    regime: RegulatoryRegime,
    user,
    reportable: bool,
    criteria_met: list[str],
    aware_at: datetime | None = None,
    rationale: str = "",
    now: datetime | None = None,
) -> RegulatoryClassification:
    """Record the classification; a reportable one creates the regime's reports, once.

    A classification as not reportable may later be raised to reportable (the reports start
    then); one already reportable stays as it is, so a second click never owes a second set."""
    now = now or timezone.now()
    incident = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
    errors: dict[str, str] = {}
    if incident.is_drill:
        raise ValidationError("Drill incidents are not classified for regulators.")
    if incident.state not in (State.RESOLVED, *OPEN_STATES):
        raise ValidationError("A closed or cancelled incident is not classified any more.")
    if regime.is_default or not regime.active:
        errors["regime"] = "Choose one of the listed regimes."
    known = regime.criteria_labels()
    unknown = [c for c in criteria_met if c not in known]
    if unknown:
        errors["criteria_met"] = f"Not a criterion of {regime.name}: {', '.join(unknown)}."
    elif reportable and not criteria_met:
        errors["criteria_met"] = "Tick the criteria that make the incident reportable."
    aware_at = aware_at or incident.detected_at
    if problem := happened_problem(aware_at, what="Awareness", now=now, began=incident.started_at):
        errors["aware_at"] = problem
    if errors:
        raise ValidationError(errors)
    existing = RegulatoryClassification.objects.filter(incident=incident, regime=regime).first()
    if existing is not None and (existing.reportable or not reportable):
        raise ValidationError(
            f"Already classified under {regime.name} on {timezone.localtime(existing.classified_at):%Y-%m-%d %H:%M} "
            f"by {_name(existing.classified_by)} ({'reportable' if existing.reportable else 'not reportable'})."
        )
    classification = existing or RegulatoryClassification(incident=incident, regime=regime)
    classification.reportable = reportable
    classification.criteria_met = sorted(set(criteria_met), key=list(known).index)
    classification.rationale = rationale.strip()
    classification.aware_at = aware_at
    classification.classified_at = now
    classification.classified_by = user
    classification.save()
    criteria_text = ", ".join(known[c] for c in classification.criteria_met) or "none"
    timeline_record(
        incident,
        kind=TimelineEntry.Kind.ESCALATION,
        action=(
            f"Classified under {regime.name}: {'reportable' if reportable else 'not reportable'} "
            f"(criteria met: {criteria_text})"
        ),
        owner=user,
        at=now,
        data={"classification": classification.pk, "criteria_met": classification.criteria_met},
    )
    if reportable:
        _create_stage_obligations(classification, incident=incident, user=user, now=now)
    return classification


def _create_stage_obligations(
    classification: RegulatoryClassification, *, incident: Incident, user, now: datetime
) -> None:
    anchors = {
        RegimeStage.Anchor.CLASSIFICATION: classification.classified_at,
        RegimeStage.Anchor.AWARENESS: classification.aware_at,
        RegimeStage.Anchor.RESOLUTION: incident.resolved_at,
        RegimeStage.Anchor.PREVIOUS_SUBMISSION: None,
    }
    for stage in classification.regime.stages.order_by("order"):
        anchor_at = anchors[stage.anchor]
        obligation = RegulatoryObligation.objects.create(
            incident=incident,
            regime=classification.regime,
            stage=stage,
            classification=classification,
            raised_at=now,
            raised_by=user,
            clock_started_at=anchor_at,
            due_at=(
                None
                if anchor_at is None
                else stage_due_at(stage, anchor_at=anchor_at, aware_at=classification.aware_at)
            ),
        )
        due = (
            f"due {timezone.localtime(obligation.due_at):%Y-%m-%d %H:%M %Z}"
            if obligation.due_at
            else f"clock starts on {stage.get_anchor_display().lower()}"
        )
        timeline_record(
            incident,
            kind=TimelineEntry.Kind.ESCALATION,
            action=f"Regulatory report owed: {obligation.label} ({due})",
            owner=user,
            at=now,
            data={"obligation": obligation.pk},
        )
        if obligation.due_at:
            obligation_deadlines_schedule(obligation, reminder_before=stage.reminder_before, now=now)


def report_content_from_incident(incident: Incident) -> dict[str, str]:
    """A first draft of a report from what the incident already records."""
    entries = incident.timeline.exclude(kind=TimelineEntry.Kind.CHECKLIST).order_by("occurred_at", "id")
    lines = [f"{timezone.localtime(e.occurred_at):%Y-%m-%d %H:%M} {e.action}" for e in entries[:200]]
    systems = ", ".join(s.name for s in incident.affected_systems.all())
    impact = incident.user_impact or "Being assessed."
    if incident.financial_impact_usd is not None:
        impact += f"\nEstimated financial impact: USD {incident.financial_impact_usd:,.2f}."
    return {
        "summary": "\n".join(
            x
            for x in [
                f"{incident.reference}: {incident.title}",
                f"Severity {incident.severity.level}; {incident.get_category_display()}; state {incident.status_word}.",
                f"Affected systems: {systems}." if systems else "",
                incident.description,
            ]
            if x
        ),
        "impact": impact,
        "timeline": "\n".join(lines),
        "cause": "\n".join(x for x in [incident.primary_cause, incident.contributing_factors] if x)
        or "Under investigation.",
        "actions": "\n".join(
            x for x in [incident.resolution_actions, incident.prevention_immediate, incident.prevention_long_term] if x
        )
        or "Containment in progress.",
    }


@transaction.atomic
def regulatory_draft(
    *, obligation: RegulatoryObligation, user, content: dict[str, str] | None = None, now: datetime | None = None
) -> RegulatoryObligation:
    """Save the report's text (drafted from the incident when none is given). Changing a signed-off
    draft withdraws the sign-off: what is submitted is what was signed."""
    now = now or timezone.now()
    locked = (
        RegulatoryObligation.objects.select_for_update(of=("self",)).select_related("incident").get(pk=obligation.pk)
    )
    if locked.category_id is not None:
        raise ValidationError("The procedures' notifications are written outside the portal; record the submission.")
    if locked.submitted_at:
        raise ValidationError("This report was submitted; its text is final.")
    if content is None:
        content = report_content_from_incident(locked.incident)
    errors = {}
    cleaned = {}
    for field in CONTENT_FIELDS:
        value = str(content.get(field, "")).strip()
        if not value:
            errors[field] = "Required."
        elif len(value) > CONTENT_MAX:
            errors[field] = f"At most {CONTENT_MAX:,} characters."
        cleaned[field] = value
    if errors:
        raise ValidationError(errors)
    changed = cleaned != locked.content
    locked.content = cleaned
    locked.drafted_at = now
    locked.drafted_by = user
    fields = ["content", "drafted_at", "drafted_by"]
    if changed and locked.signed_off_at:
        locked.signed_off_at = None
        locked.signed_off_by = None
        fields += ["signed_off_at", "signed_off_by"]
    locked.save(update_fields=fields)
    timeline_record(
        locked.incident,
        kind=TimelineEntry.Kind.NOTIFICATION,
        action=f"Regulatory report drafted: {locked.label}"
        + (" (sign-off withdrawn)" if "signed_off_at" in fields else ""),
        owner=user,
        at=now,
        data={"obligation": locked.pk},
    )
    return locked


def report_export(obligation: RegulatoryObligation) -> dict:
    """The report as the JSON export (and the PDF's context): what, for whom, by when, signed by."""
    incident = obligation.incident
    classification = obligation.classification
    labels = obligation.regime.criteria_labels()

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    def who(user) -> str | None:
        return _name(user) if user else None

    return {
        "incident": {"reference": incident.reference, "title": incident.title, "severity": incident.severity.level},
        "regime": {
            "key": obligation.regime.key,
            "name": obligation.regime.name,
            "authority": obligation.regime.authority,
            "citation": obligation.regime.citation,
        },
        "stage": {
            "key": obligation.stage.key if obligation.stage else None,
            "name": obligation.stage.name if obligation.stage else obligation.label,
            "citation": obligation.stage.citation if obligation.stage else "",
        },
        "classification": None
        if classification is None
        else {
            "reportable": classification.reportable,
            "criteria_met": [{"key": c, "label": labels.get(c, c)} for c in classification.criteria_met],
            "rationale": classification.rationale,
            "aware_at": when(classification.aware_at),
            "classified_at": when(classification.classified_at),
            "classified_by": who(classification.classified_by),
        },
        "clock": {
            "started_at": when(obligation.clock_started_at),
            "due_at": when(obligation.due_at),
            "status": obligation.status,
        },
        "content": {field: obligation.content.get(field, "") for field in CONTENT_FIELDS},
        "drafted": {"at": when(obligation.drafted_at), "by": who(obligation.drafted_by)},
        "signed_off": {"at": when(obligation.signed_off_at), "by": who(obligation.signed_off_by)},
        "submission": {
            "at": when(obligation.submitted_at),
            "by": who(obligation.submitted_by),
            "reference": obligation.submission_reference or None,
        },
    }
