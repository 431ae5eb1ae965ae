"""The escalation engine: arm deadlines from the incident's frozen policy, fire them exactly once.

Flow: incident services call `escalation_arm` at open and `escalation_reevaluate` when severity,
financial impact or flags change; lifecycle hooks cancel what no longer applies. The paging
dispatcher (incidents/monitoring/dispatcher.py) calls `deadlines_fire_due` when the next row falls due; it
claims due rows with SELECT ... FOR UPDATE SKIP LOCKED, and each firing inserts an
EscalationEvent whose unique (incident, rule, step) makes a second firing impossible even if two
claimers raced. The firing's notifications are rows in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from incidents import business_days, wakeups
from incidents.escalation.hooks import escalation_hooks
from incidents.escalation.models import (
    RTO_RULE_PREFIX,
    Deadline,
    EscalationEvent,
    EscalationPolicy,
    EscalationStep,
    EscalationTrigger,
    RegimeStage,
    RegulatoryCategory,
    RegulatoryObligation,
    RegulatoryRegime,
)
from incidents.escalation.regime_clock import stage_due_at
from incidents.escalation.snapshot import (
    ChainStep,
    EscalationSnapshot,
    SeverityPolicy,
    Trigger,
    snapshot_of,
)
from incidents.models import OPEN_STATES, Incident, SeverityLevel, State, TimelineEntry, format_duration
from incidents.notifications.acks import ReplyRefused, already_acknowledged
from incidents.notifications.services import NotificationBatch, notify_webhooks, page_user
from incidents.oncall.models import RoleContact
from incidents.oncall.selectors import on_call_at, role_contact
from incidents.roles import HEAD_OF_RISK, INCIDENT_MANAGER
from incidents.selectors import rto_started_at
from incidents.services.incident import evidence_validate, timeline_record

log = logging.getLogger(__name__)

ACK_RULE = "ack"
OUTAGE_RULE = "outage_4h"
OUTAGE_CATEGORY = "outage_over_4h"
RESOLVED_SECURITY_CATEGORY = "resolved_security_incident"
FIRING_RETRY = timedelta(seconds=30)


# -- the frozen policy ----------------------------------------------------------------------


def escalation_snapshot_build() -> dict:
    """Everything escalation needs, copied at open so admin edits don't rewrite it in flight."""
    default = policy = EscalationPolicy.objects.filter(is_default=True).first()
    chain: list[ChainStep] = []
    seen: set[int] = set()
    while policy is not None and policy.pk not in seen:
        seen.add(policy.pk)
        for step in policy.steps.select_related("role").order_by("order"):
            chain.append(ChainStep(delay_s=step.delay.total_seconds(), target=step.target, role=step.role.name))
        policy = policy.continue_with
    defaults = EscalationSnapshot()
    return EscalationSnapshot(
        policy=default.name if default else defaults.policy,
        chain=tuple(chain),
        status_escalate_after_s=(
            default.status_update_escalate_after.total_seconds() if default else defaults.status_escalate_after_s
        ),
        email_follow_up_s=default.email_follow_up_after.total_seconds() if default else defaults.email_follow_up_s,
        outage_after_s=_outage_after_seconds(),
        severities={str(level.level): _severity_policy_of(level) for level in SeverityLevel.objects.all()},
        triggers=tuple(
            Trigger(
                key=t.key,
                name=t.name,
                role=t.role.name,
                condition=t.condition,
                severity_level=t.severity_level,
                open_for_s=t.open_for.total_seconds() if t.open_for else None,
                amount_usd=str(t.amount_usd) if t.amount_usd is not None else None,
            )
            for t in EscalationTrigger.objects.filter(active=True).select_related("role")
        ),
    ).to_json()


def _severity_policy_of(level: SeverityLevel) -> SeverityPolicy:
    return SeverityPolicy(
        label=level.label,
        major=level.major,
        response_s=level.response_time.total_seconds() if level.response_time else None,
        next_business_day=level.response_next_business_day,
        status_interval_s=level.status_update_interval.total_seconds() if level.status_update_interval else None,
    )


def _outage_after_seconds() -> float | None:
    category = RegulatoryCategory.objects.filter(key=OUTAGE_CATEGORY).first()
    return category.raise_after_open.total_seconds() if category and category.raise_after_open else None


def _severity_policy(incident: Incident) -> SeverityPolicy:
    """The frozen policy's row for the incident's current severity (live, if none was frozen)."""
    frozen = snapshot_of(incident).severities.get(str(incident.severity.level))
    return frozen if frozen is not None else _severity_policy_of(incident.severity)


def response_due_at(incident: Incident, *, holidays: set | None = None) -> datetime | None:
    """When the frozen policy says this incident must be acknowledged.

    `holidays` (business_days.holidays_between) spares a page of incidents a query per row.
    """
    policy = _severity_policy(incident)
    if policy.next_business_day:
        return business_days.next_business_day_start(incident.detected_at, holidays=holidays)
    if policy.response_s is None:
        return None
    return incident.detected_at + timedelta(seconds=policy.response_s)


# -- arming and re-evaluation ---------------------------------------------------------------


def deadline_schedule(incident: Incident, *, kind: str, rule: str, step: int, due_at: datetime) -> Deadline | None:
    """Create the pending row for (rule, step) unless one is pending or the step already fired.

    A row due at once wakes the dispatcher when the transaction commits (incidents/wakeups.py).
    """
    if EscalationEvent.objects.filter(incident=incident, rule=rule, step=step).exists():
        return None
    if Deadline.objects.filter(incident=incident, rule=rule, step=step, fired_at=None, cancelled_at=None).exists():
        return None
    deadline = Deadline.objects.create(incident=incident, kind=kind, rule=rule, step=step, due_at=due_at)
    wakeups.wake(wakeups.DEADLINES, due_at=due_at)
    return deadline


def _cancel(
    incident: Incident,
    *,
    reason: str,
    kinds: list[str] | None = None,
    rules: list[str] | None = None,
) -> int:
    pending = Deadline.objects.filter(incident=incident, fired_at=None, cancelled_at=None)
    if kinds is not None:
        pending = pending.filter(kind__in=kinds)
    if rules is not None:
        pending = pending.filter(rule__in=rules)
    return pending.update(cancelled_at=timezone.now(), cancel_reason=reason[:200])


@dataclass(frozen=True)
class _Wanted:
    """A deadline the incident should have pending, as the frozen policy says."""

    kind: str
    rule: str
    step: int
    due_at: datetime


def _trigger_applies(trigger: Trigger, incident: Incident, *, compliance: bool) -> bool:
    condition = trigger.condition
    level = incident.severity.level
    if condition == EscalationTrigger.Condition.SEVERITY:
        return level <= trigger.severity_level
    if condition == EscalationTrigger.Condition.OPEN_FOR:
        return level == trigger.severity_level
    if condition == EscalationTrigger.Condition.FINANCIAL_IMPACT:
        amount = incident.financial_impact_usd
        return amount is not None and amount > trigger.amount
    if condition == EscalationTrigger.Condition.COMPLIANCE:
        return compliance
    return False


def _trigger_wanted(trigger: Trigger, incident: Incident, now: datetime, *, compliance: bool) -> _Wanted | None:
    if not _trigger_applies(trigger, incident, compliance=compliance):
        return None
    due = now
    if trigger.condition == EscalationTrigger.Condition.OPEN_FOR:
        due = incident.detected_at + timedelta(seconds=trigger.open_for_s)
    return _Wanted(Deadline.Kind.ROLE_ESCALATION, trigger.rule, 0, max(due, now))


def _is_compliance_category(incident: Incident) -> bool:
    return incident.category == "compliance"


def _has_compliance_flag(incident: Incident) -> bool:
    return _is_compliance_category(incident) or incident.obligations.filter(category__is_compliance=True).exists()


def _arm_triggers(incident: Incident, now: datetime) -> None:
    compliance = _has_compliance_flag(incident)
    for trigger in snapshot_of(incident).triggers:
        wanted = _trigger_wanted(trigger, incident, now, compliance=compliance)
        if wanted is not None:
            _schedule(incident, wanted)
        else:
            _cancel(incident, reason="no longer applies", rules=[trigger.rule])


def _schedule(incident: Incident, wanted: _Wanted) -> Deadline | None:
    return deadline_schedule(incident, kind=wanted.kind, rule=wanted.rule, step=wanted.step, due_at=wanted.due_at)


def _ack_step_due(incident: Incident, step: int, *, previous_at: datetime | None) -> datetime | None:
    """Step 0 pages the first target at open; step 1 when the response time runs out; step k+1
    the configured delay after step k."""
    chain = snapshot_of(incident).chain
    if step == 0:
        return incident.detected_at
    if step == 1:
        response_due = response_due_at(incident)
        return None if response_due is None else response_due + timedelta(seconds=chain[0].delay_s)
    return previous_at + timedelta(seconds=chain[step - 1].delay_s)


def _ack_chain_pending(incident: Incident) -> bool:
    return incident.acknowledged_at is None and bool(snapshot_of(incident).chain)


def _ack_chain_wanted(incident: Incident, now: datetime, *, last_fired: tuple[int, datetime] | None) -> _Wanted | None:
    """The chain's next step after the last one fired (step, fired at), if any is left."""
    step, previous_at = (0, None) if last_fired is None else (last_fired[0] + 1, last_fired[1])
    if step > len(snapshot_of(incident).chain):
        return None
    due = _ack_step_due(incident, step, previous_at=previous_at)
    return None if due is None else _Wanted(Deadline.Kind.ACKNOWLEDGE, ACK_RULE, step, max(due, now))


def _arm_ack_chain(incident: Incident, now: datetime) -> None:
    if not _ack_chain_pending(incident):
        return
    last = (
        EscalationEvent.objects.filter(incident=incident, rule=ACK_RULE)
        .order_by("-step")
        .values_list("step", "fired_at")
        .first()
    )
    wanted = _ack_chain_wanted(incident, now, last_fired=last)
    if wanted is not None:
        _schedule(incident, wanted)


def status_interval(incident: Incident) -> timedelta | None:
    return _severity_policy(incident).status_interval


def _status_update_wanted(
    incident: Incident, now: datetime, *, last_update: tuple[int, datetime] | None
) -> _Wanted | None:
    """The reminder of the current update cycle, due `interval` after the last update (sequence,
    posted at) or detection; none without a cadence at this severity, or for a drill."""
    interval = status_interval(incident)
    if interval is None or incident.is_drill:
        return None
    sequence, since = (last_update[0] + 1, last_update[1]) if last_update else (1, incident.detected_at)
    return _Wanted(Deadline.Kind.STATUS_UPDATE, f"status:{sequence}", 1, max(since + interval, now))


def _arm_status_update(incident: Incident, now: datetime) -> None:
    """Keep exactly the current update cycle's reminder pending. A reminder already fired in
    this cycle, and its escalation to the incident manager, are left alone: an unrelated edit
    must not silence them."""
    last = incident.status_updates.order_by("-sequence").values_list("sequence", "posted_at").first()
    wanted = _status_update_wanted(incident, now, last_update=last)
    stale = Deadline.objects.filter(
        incident=incident, kind=Deadline.Kind.STATUS_UPDATE, fired_at=None, cancelled_at=None
    )
    if wanted is None:
        stale.update(cancelled_at=now, cancel_reason="no status update cadence at this severity")
        return
    # An earlier cycle's rows, or this cycle's step 1 armed for another cadence, are replaced.
    stale.exclude(rule=wanted.rule).update(cancelled_at=now, cancel_reason="status update clock reset")
    future_reminder = stale.filter(rule=wanted.rule, step=1, due_at__gt=now)
    future_reminder.exclude(due_at=wanted.due_at).update(cancelled_at=now, cancel_reason="cadence changed")
    _schedule(incident, wanted)


def _outage_wanted(incident: Incident, now: datetime) -> _Wanted | None:
    after = snapshot_of(incident).outage_after_s
    if not (_severity_policy(incident).major and after and not incident.is_drill):
        return None
    return _Wanted(Deadline.Kind.OUTAGE, OUTAGE_RULE, 0, max(incident.started_at + timedelta(seconds=after), now))


def _arm_outage(incident: Incident, now: datetime) -> None:
    wanted = _outage_wanted(incident, now)
    if wanted is not None:
        _schedule(incident, wanted)
    else:
        _cancel(incident, reason="severity no longer an outage", rules=[OUTAGE_RULE])


def _rto_wanted(incident: Incident, now: datetime) -> list[_Wanted]:
    """One row per affected system, due when its RTO has passed since the incident started.

    Armed from each system's RTO as it is when the system is added (a later admin edit does
    not move a clock already running). A drill restores nothing real: no RTO page for it.
    """
    if incident.is_drill or not incident.is_open:
        return []
    start = rto_started_at(incident)
    return [
        _Wanted(Deadline.Kind.RTO_BREACH, f"{RTO_RULE_PREFIX}{system.key}", 0, max(start + system.rto, now))
        for system in incident.affected_systems.all()
    ]


def _arm_rto(incident: Incident, now: datetime) -> None:
    """Keep one pending RTO row per affected system: arm added systems, cancel removed ones,
    and move a row whose due time changed (an edited start time)."""
    wanted = {w.rule: w for w in _rto_wanted(incident, now)}
    pending = Deadline.objects.filter(
        incident=incident, kind=Deadline.Kind.RTO_BREACH, fired_at=None, cancelled_at=None
    )
    pending.exclude(rule__in=list(wanted)).update(cancelled_at=now, cancel_reason="system no longer affected")
    for row in pending.filter(rule__in=list(wanted)):
        if row.due_at != wanted[row.rule].due_at:
            Deadline.objects.filter(pk=row.pk).update(cancelled_at=now, cancel_reason="start time changed")
    fired = set(EscalationEvent.objects.filter(incident=incident, rule__in=list(wanted)).values_list("rule", flat=True))
    for rule, w in wanted.items():
        if rule not in fired:
            _schedule(incident, w)


def escalation_arm(*, incident: Incident, now: datetime | None = None) -> None:
    """Create the deadlines of an incident opened in this transaction, from the policy frozen
    into it (escalation_snapshot_build).

    A new incident has nothing pending, no step fired, no status update and no obligation, so
    its deadlines go in with one INSERT, without escalation_reevaluate's cancel and exists
    queries: 12 round trips and about a quarter of the CPU of opening an incident from an
    alert (bench/api.py). The same _wanted functions decide what is armed either way.
    """
    now = now or timezone.now()
    wanted = []
    if _ack_chain_pending(incident):
        wanted.append(_ack_chain_wanted(incident, now, last_fired=None))
    if not incident.is_drill:
        compliance = _is_compliance_category(incident)
        wanted.extend(
            _trigger_wanted(trigger, incident, now, compliance=compliance) for trigger in snapshot_of(incident).triggers
        )
    wanted.append(_outage_wanted(incident, now))
    wanted.append(_status_update_wanted(incident, now, last_update=None))
    wanted.extend(_rto_wanted(incident, now))
    rows = [
        Deadline(incident=incident, kind=w.kind, rule=w.rule, step=w.step, due_at=w.due_at)
        for w in wanted
        if w is not None
    ]
    Deadline.objects.bulk_create(rows)
    if rows:
        wakeups.wake(wakeups.DEADLINES, due_at=min(row.due_at for row in rows))


def escalation_reevaluate(*, incident: Incident, now: datetime | None = None) -> None:
    """Bring pending deadlines in line with the incident as it is now (severity, impact, flags)."""
    now = now or timezone.now()
    if not incident.is_open:
        return
    if incident.acknowledged_at is None:
        # The response time depends on severity: re-arm the chain's next step from scratch.
        _cancel(incident, reason="re-evaluated", kinds=[Deadline.Kind.ACKNOWLEDGE])
        _arm_ack_chain(incident, now)
    if not incident.is_drill:
        _arm_triggers(incident, now)
    _arm_outage(incident, now)
    _arm_status_update(incident, now)
    _arm_rto(incident, now)


def escalation_on_transition(*, incident: Incident, name: str, now: datetime | None = None) -> None:
    """Lifecycle hook, called by incident_transition inside its transaction."""
    now = now or timezone.now()
    if name == "acknowledge":
        _cancel(incident, reason="acknowledged", kinds=[Deadline.Kind.ACKNOWLEDGE])
    elif name in ("resolve", "cancel"):
        _cancel(
            incident,
            reason=f"incident {incident.get_state_display().lower()}",
            kinds=[
                Deadline.Kind.ACKNOWLEDGE,
                Deadline.Kind.ROLE_ESCALATION,
                Deadline.Kind.STATUS_UPDATE,
                Deadline.Kind.OUTAGE,
                Deadline.Kind.RTO_BREACH,
            ],
        )
        if name == "resolve" and incident.category == "security" and not incident.is_drill:
            regulatory_raise(incident=incident, category_key=RESOLVED_SECURITY_CATEGORY, now=now)
        if name == "resolve":
            _start_resolution_clocks(incident, now)
    elif name == "reopen":
        escalation_reevaluate(incident=incident, now=now)


# -- regulatory obligations -----------------------------------------------------------------


def _obligation_due(category: RegulatoryCategory, raised_at: datetime) -> datetime:
    if category.window == RegulatoryCategory.Window.IMMEDIATE:
        return raised_at + (category.immediate_grace or timedelta(hours=1))
    if category.window == RegulatoryCategory.Window.WITHIN_24H:
        return raised_at + timedelta(hours=24)
    return business_days.end_of_next_business_day(raised_at)


def _default_stage(category: RegulatoryCategory) -> tuple[RegulatoryRegime, RegimeStage | None]:
    """The seed's categories belong to the default regime, on the stage of their window."""
    regime = RegulatoryRegime.objects.get(is_default=True)
    return regime, RegimeStage.objects.filter(regime=regime, key=category.window).first()


def obligation_deadlines_schedule(
    obligation: RegulatoryObligation, *, reminder_before: timedelta, now: datetime
) -> None:
    """The reminder and the due page of an obligation whose clock has started."""
    rule = f"regulatory:{obligation.pk}"
    reminder_at = obligation.due_at - reminder_before
    if reminder_at > now:
        deadline_schedule(obligation.incident, kind=Deadline.Kind.REGULATORY, rule=rule, step=1, due_at=reminder_at)
    deadline_schedule(obligation.incident, kind=Deadline.Kind.REGULATORY, rule=rule, step=2, due_at=obligation.due_at)


def regulatory_raise(
    *, incident: Incident, category_key: str, user=None, now: datetime | None = None
) -> RegulatoryObligation | None:
    """Record that the incident needs this regulatory notification; idempotent per category."""
    with transaction.atomic():
        if incident.is_drill:
            return None
        now = now or timezone.now()
        category = RegulatoryCategory.objects.get(key=category_key)
        # The incident row lock makes a double-click (or a flag raced by the outage clock) find the
        # first obligation instead of failing on the unique constraint.
        incident = Incident.objects.select_for_update(no_key=True).select_related("severity").get(pk=incident.pk)
        if incident.state not in (State.RESOLVED, *OPEN_STATES):
            raise ValidationError("A closed or cancelled incident takes no new regulatory notifications.")
        existing = RegulatoryObligation.objects.filter(incident=incident, category=category).first()
        if existing:
            return existing
        regime, stage = _default_stage(category)
        obligation = RegulatoryObligation.objects.create(
            incident=incident,
            category=category,
            regime=regime,
            stage=stage,
            raised_at=now,
            raised_by=user,
            clock_started_at=now,
            due_at=_obligation_due(category, now),
        )
        timeline_record(
            incident,
            kind=TimelineEntry.Kind.ESCALATION,
            action=(
                f"Regulatory notification required: {category.name} "
                f"({category.get_window_display().lower()}, "
                f"due {timezone.localtime(obligation.due_at):%Y-%m-%d %H:%M %Z})"
            ),
            owner=user,
            owner_team="" if user else "Escalation engine",
            data={"obligation": obligation.pk},
        )
        obligation_deadlines_schedule(obligation, reminder_before=category.reminder_before, now=now)
        if category.is_compliance and incident.is_open:
            _arm_triggers(incident, now)
        return obligation


def obligation_clock_start(obligation: RegulatoryObligation, *, anchor_at: datetime, now: datetime) -> None:
    """Start a staged obligation's clock from its anchor (a submission, the resolution)."""
    classification = obligation.classification
    obligation.clock_started_at = anchor_at
    obligation.due_at = stage_due_at(
        obligation.stage, anchor_at=anchor_at, aware_at=classification.aware_at if classification else None
    )
    obligation.save(update_fields=["clock_started_at", "due_at"])
    timeline_record(
        obligation.incident,
        kind=TimelineEntry.Kind.ESCALATION,
        action=f"{obligation.label}: clock started, due {timezone.localtime(obligation.due_at):%Y-%m-%d %H:%M %Z}",
        owner_team="Escalation engine",
        at=now,
        data={"obligation": obligation.pk},
    )
    obligation_deadlines_schedule(obligation, reminder_before=obligation.stage.reminder_before, now=now)


def _start_resolution_clocks(incident: Incident, now: datetime) -> None:
    """Stages that run from the resolution (the UK's final report) start on the first one; a
    reopened and re-resolved incident keeps the clock it had."""
    waiting = RegulatoryObligation.objects.select_related("stage", "regime", "classification", "incident").filter(
        incident=incident, stage__anchor=RegimeStage.Anchor.RESOLUTION, clock_started_at=None, category=None
    )
    for obligation in waiting:
        obligation_clock_start(obligation, anchor_at=incident.resolved_at or now, now=now)


def _needs_sign_off_first(obligation: RegulatoryObligation) -> bool:
    return obligation.category_id is None and obligation.stage is not None and obligation.stage.requires_sign_off


def regulatory_submit(
    *,
    obligation: RegulatoryObligation,
    user,
    reference: str,
    evidence=None,
    now: datetime | None = None,
) -> RegulatoryObligation:
    """Record the submission and its reference; a staged regime's next stage starts its clock."""
    with transaction.atomic():
        if evidence is not None:
            evidence_validate(evidence)
        reference = reference.strip()
        if not reference:
            raise ValidationError({"reference": "Give the regulator's reference or submission number."})
        locked = (
            RegulatoryObligation.objects.select_for_update(of=("self",))
            .select_related("category", "regime", "stage", "classification", "incident")
            .get(pk=obligation.pk)
        )
        if locked.submitted_at:
            raise ValidationError("This notification was already submitted.")
        if locked.due_at is None:
            raise ValidationError("This report's clock has not started: submit the previous stage first.")
        if _needs_sign_off_first(locked) and not locked.signed_off_at:
            raise ValidationError("The Head of Risk Management signs the report off before it is submitted.")
        locked.submitted_at = now or timezone.now()
        locked.submitted_by = user
        locked.submission_reference = reference
        if evidence is not None:
            locked.submission_evidence.save(evidence.name, evidence, save=False)
        locked.save()
        Deadline.objects.filter(rule=f"regulatory:{locked.pk}", fired_at=None, cancelled_at=None).update(
            cancelled_at=locked.submitted_at, cancel_reason="submitted"
        )
        timeline_record(
            locked.incident,
            kind=TimelineEntry.Kind.NOTIFICATION,
            action=f"Regulatory notification submitted: {locked.label}, reference {reference} ({locked.status})",
            owner=user,
            data={"obligation": locked.pk},
        )
        if locked.classification_id:
            following = (
                RegulatoryObligation.objects.select_related("stage", "regime", "classification", "incident")
                .filter(
                    classification=locked.classification,
                    stage__order__gt=locked.stage.order,
                    stage__anchor=RegimeStage.Anchor.PREVIOUS_SUBMISSION,
                    clock_started_at=None,
                )
                .order_by("stage__order")
                .first()
            )
            if following is not None and following.stage.order == locked.stage.order + 1:
                obligation_clock_start(following, anchor_at=locked.submitted_at, now=locked.submitted_at)
        return locked


def regulatory_sign_off(*, obligation: RegulatoryObligation, user, now: datetime | None = None) -> RegulatoryObligation:
    """The Head of Risk's sign-off: after submission for the seed's categories, before it (and by
    someone other than the drafter) for a staged regime's report."""
    with transaction.atomic():
        if not user.groups.filter(name=HEAD_OF_RISK).exists():
            raise PermissionDenied("Only the Head of Risk Management signs off regulatory notifications.")
        locked = (
            RegulatoryObligation.objects.select_for_update(of=("self",))
            .select_related("category", "regime", "stage", "incident")
            .get(pk=obligation.pk)
        )
        if locked.signed_off_at:
            return locked
        if _needs_sign_off_first(locked):
            if locked.submitted_at:
                raise ValidationError("This report was submitted without sign-off; it cannot be signed off now.")
            if not locked.drafted_at:
                raise ValidationError("Draft the report before signing it off.")
            if locked.drafted_by_id == user.pk:
                # Four eyes: whoever wrote the report does not approve it.
                raise PermissionDenied("The report's drafter cannot sign it off; another Head of Risk must.")
        elif not locked.submitted_at:
            raise ValidationError("Submit the notification before signing it off.")
        locked.signed_off_at = now or timezone.now()
        locked.signed_off_by = user
        locked.save(update_fields=["signed_off_at", "signed_off_by"])
        timeline_record(
            locked.incident,
            kind=TimelineEntry.Kind.NOTIFICATION,
            action=f"Regulatory notification signed off: {locked.label}",
            owner=user,
        )
        return locked


# -- who gets paged -------------------------------------------------------------------------


def resolve_target(target: str, role: str, at: datetime):
    if target == EscalationStep.Target.ON_CALL:
        return on_call_at(role, at), f"on-call {role}"
    if target == EscalationStep.Target.ON_CALL_DEPUTY:
        return on_call_at(role, at, deputy=True), f"on-call deputy ({role})"
    return role_contact(role), role


# -- firing ---------------------------------------------------------------------------------


def deadlines_fire_due(
    *, now: datetime | None = None, batch: int = 25, budget: timedelta = timedelta(seconds=10)
) -> int:
    """Claim and fire due deadlines; several workers may run this at once without overlap.

    Small batches, each committed on its own, so a batch's pages leave within a fraction of a
    second; "due" is re-read on each batch; and a run stops after `budget` so it cannot hold a
    worker for a minute while beat's next request waits (bench/escalation_latency.py). `now`
    fixes the cutoff (tests and imports firing at a chosen time).
    """
    started = timezone.now()
    fired = 0
    while True:
        with transaction.atomic():
            claimed = _claim_due(cutoff=now if now is not None else timezone.now(), limit=batch)
            firing = _FiringBatch(claimed)
            for deadline in claimed:
                fired += _fire_one(deadline, now=timezone.now(), batch=firing)
            firing.notifications.save()
        if len(claimed) < batch or timezone.now() - started > budget:
            return fired


def _claim_due(*, cutoff: datetime, limit: int) -> list[Deadline]:
    """Mark up to `limit` due rows as fired by us and return them with their incidents.

    One locking SELECT and one UPDATE for the batch: a claim per row (a conditional UPDATE,
    then a SELECT of the row and its incident) made 2 of the 15 round trips per firing.
    """
    due = (
        Deadline.objects.filter(fired_at=None, cancelled_at=None, due_at__lte=cutoff)
        .select_related("incident__severity", "incident__commander")
        .order_by("due_at")
    )
    claimed_at = timezone.now()
    if connection.features.has_select_for_update_skip_locked:
        # Rows another claimer holds are skipped, and PostgreSQL re-checks the condition on the
        # rows it locks, so they are still pending and one UPDATE claims them all. Only the
        # deadline rows are locked, not their incidents (see incident_transition's NO KEY lock).
        claimed = list(due.select_for_update(skip_locked=True, of=("self",))[:limit])
        Deadline.objects.filter(pk__in=[deadline.pk for deadline in claimed]).update(fired_at=claimed_at)
    else:
        # The conditional UPDATE is the claim: only one caller sees 1 row updated.
        claimed = [
            deadline
            for deadline in due[:limit]
            if Deadline.objects.filter(pk=deadline.pk, fired_at=None, cancelled_at=None).update(fired_at=claimed_at)
        ]
    for deadline in claimed:
        deadline.fired_at = claimed_at
    return claimed


class _FiringBatch:
    """What the firings of one claim batch share: lookups made once, notifications written
    together (NotificationBatch). Per deadline, the role contact, its person, the compliance
    flag and the webhook list were a query each, 4 of the 15 round trips per firing that
    bench/escalation_latency.py counted."""

    def __init__(self, deadlines: list[Deadline]) -> None:
        self.notifications = NotificationBatch()
        self._incident_ids = {deadline.incident_id for deadline in deadlines}
        self._contacts: dict[str, RoleContact | None] = {}
        self._compliance: set[int] | None = None

    def contact(self, role_name: str, *, deputy: bool = False):
        """`role_contact`, read once per batch (with the people's phone numbers)."""
        if role_name not in self._contacts:
            self._contacts[role_name] = (
                RoleContact.objects.filter(role__name=role_name)
                .select_related("primary__person", "deputy__person")
                .first()
            )
        contact = self._contacts[role_name]
        if contact is None:
            return None
        return contact.deputy if deputy else contact.primary

    def has_compliance_flag(self, incident: Incident) -> bool:
        """`_has_compliance_flag`, with the batch's obligations read in one query."""
        if incident.category == "compliance":
            return True
        if self._compliance is None:
            self._compliance = set(
                RegulatoryObligation.objects.filter(
                    incident_id__in=self._incident_ids, category__is_compliance=True
                ).values_list("incident_id", flat=True)
            )
        return incident.pk in self._compliance

    def forget_obligations(self) -> None:
        """A firing raised an obligation: later firings in the batch must see it."""
        self._compliance = None


def _fire_one(deadline: Deadline, *, now: datetime, batch: _FiringBatch) -> int:
    incident = deadline.incident
    if deadline.kind not in _FIRE_WHEN_CLOSED and not incident.is_open:
        # Resolved or cancelled after this row was armed (a firing racing the resolution can
        # insert a follow-up row the resolution's cancel did not see): nothing to page.
        Deadline.objects.filter(pk=deadline.pk).update(
            fired_at=None,
            cancelled_at=now,
            cancel_reason=f"incident {incident.get_state_display().lower()}",
        )
        return 0
    mark = batch.notifications.mark()
    try:
        with transaction.atomic():
            _HANDLERS[deadline.kind](deadline, incident, now, batch)
    except DuplicateFiring:
        batch.notifications.discard_since(mark)
        log.info("deadline %s already fired for %s", deadline.pk, incident.reference)
        return 0
    except Exception as exc:
        if _connection_lost(exc):
            # The database went away (a restart, a dropped connection): the whole batch rolls
            # back, claims included, and the dispatcher tries again in a moment. Not the 30-s
            # retry below, which is for a deadline that itself cannot be fired.
            raise
        # One broken deadline must not hold up the others in the batch: put it back a little
        # later and keep going. Its error is in the log; it stays visible as pending.
        batch.notifications.discard_since(mark)
        log.exception(
            "firing deadline %s of %s failed; retrying in %s",
            deadline.pk,
            incident.reference,
            FIRING_RETRY,
        )
        Deadline.objects.filter(pk=deadline.pk).update(fired_at=None, due_at=now + FIRING_RETRY)
        return 0
    return 1


def _connection_lost(exc: Exception) -> bool:
    # A lock or statement timeout is an OperationalError too, on a connection that still works
    # (the savepoint was rolled back): that deadline is retried later like any other failure.
    if isinstance(exc, InterfaceError):
        return True
    return isinstance(exc, OperationalError) and not connection.is_usable()


class DuplicateFiring(Exception):
    """This rule step already fired for the incident (the unique constraint said so)."""


def _record_event(
    deadline: Deadline,
    incident: Incident,
    now: datetime,
    batch: _FiringBatch,
    *,
    summary: str,
    target_label: str = "",
    user=None,
) -> EscalationEvent:
    # No savepoint of its own: the firing's (in _fire_one) is rolled back with it.
    try:
        event = EscalationEvent.objects.create(
            incident=incident,
            deadline=deadline,
            rule=deadline.rule,
            step=deadline.step,
            fired_at=now,
            due_at=deadline.due_at,
            target_label=target_label[:200],
            target_user=user,
            summary=summary[:300],
        )
    except IntegrityError as exc:
        raise DuplicateFiring from exc
    # Chat hooks hear about the event once, whoever is paged for it.
    notify_webhooks(event=event, now=now, batch=batch.notifications)
    timeline_record(
        incident,
        kind=TimelineEntry.Kind.ESCALATION,
        action=summary,
        owner_team="Escalation engine",
        at=now,
        data={
            "rule": deadline.rule,
            "step": deadline.step,
            "due_at": deadline.due_at.isoformat(),
            "target": target_label,
        },
    )
    return event


def _fire_ack(deadline: Deadline, incident: Incident, now: datetime, batch: _FiringBatch) -> None:
    if incident.acknowledged_at is not None:
        return
    chain = snapshot_of(incident).chain
    target = chain[max(deadline.step, 1) - 1]
    user, label = resolve_target(target.target, target.role, now)
    who = _name(user) if user else f"nobody (no {label} configured)"
    if deadline.step == 0:
        summary = f"New {incident.severity.label} incident: paging {label}: {who}"
    else:
        summary = (
            f"Not acknowledged within the response time: step {deadline.step} of {len(chain)} pages {label}: {who}"
        )
    event = _record_event(deadline, incident, now, batch, summary=summary, target_label=label, user=user)
    reached = (
        page_user(
            event=event,
            user=user,
            now=now,
            email_follow_up=snapshot_of(incident).email_follow_up,
            batch=batch.notifications,
        )
        if user
        else False
    )
    next_step = deadline.step + 1
    if next_step <= len(chain):
        due = _ack_step_due(incident, next_step, previous_at=now)
        if due is not None:
            # Nobody reachable at this step: go straight on to the next one.
            deadline_schedule(
                incident,
                kind=Deadline.Kind.ACKNOWLEDGE,
                rule=ACK_RULE,
                step=next_step,
                due_at=max(due, now) if reached else now,
            )


def _fire_role(deadline: Deadline, incident: Incident, now: datetime, batch: _FiringBatch) -> None:
    # rule is "role:<trigger key>"; after nobody could be reached, "role:<key>:deputy" and then
    # "role:<key>:manager" (escalation_advance_after_failure).
    _, key, *fallback = deadline.rule.split(":")
    deputy = fallback == ["deputy"]
    trigger = snapshot_of(incident).trigger(key)
    if trigger is None or not _trigger_applies(trigger, incident, compliance=batch.has_compliance_flag(incident)):
        # Severity or impact was lowered while this row waited: it no longer applies.
        return
    if fallback == ["manager"]:
        role = INCIDENT_MANAGER
        user = batch.contact(role)
        whom = f"the incident manager, as the {trigger.role} could not be reached:"
    else:
        role = trigger.role
        user = batch.contact(role, deputy=deputy)
        whom = f"{role} deputy" if deputy else role
    who = _name(user) if user else f"nobody (no contact for {role} configured)"
    event = _record_event(
        deadline,
        incident,
        now,
        batch,
        summary=f"{trigger.name}: paging {whom} {who}",
        target_label=whom,
        user=user,
    )
    reached = bool(user) and page_user(
        event=event,
        user=user,
        now=now,
        email_follow_up=snapshot_of(incident).email_follow_up,
        batch=batch.notifications,
    )
    if not reached:
        # Nobody to page, or no way to reach them: go on to whoever comes next now.
        _role_fallback(incident, trigger, key, fallback, now)


def _fire_status(deadline: Deadline, incident: Incident, now: datetime, batch: _FiringBatch) -> None:
    if deadline.step == 1:
        user = incident.commander or on_call_at("On-Call Engineer", now)
        event = _record_event(
            deadline,
            incident,
            now,
            batch,
            summary=f"Status update overdue: reminder to {_name(user) if user else 'nobody'}",
            user=user,
        )
        if user:
            page_user(
                event=event,
                user=user,
                now=now,
                email_follow_up=snapshot_of(incident).email_follow_up,
                reminder=True,
                batch=batch.notifications,
            )
        after = snapshot_of(incident).status_escalate_after
        deadline_schedule(
            incident,
            kind=Deadline.Kind.STATUS_UPDATE,
            rule=deadline.rule,
            step=2,
            due_at=now + after,
        )
    else:
        user = batch.contact(INCIDENT_MANAGER)
        event = _record_event(
            deadline,
            incident,
            now,
            batch,
            summary=(
                f"Status update still overdue: escalated to the incident manager {_name(user) if user else 'nobody'}"
            ),
            user=user,
        )
        if user:
            page_user(
                event=event,
                user=user,
                now=now,
                email_follow_up=snapshot_of(incident).email_follow_up,
                reminder=True,
                batch=batch.notifications,
            )


def _fire_regulatory(deadline: Deadline, incident: Incident, now: datetime, batch: _FiringBatch) -> None:
    obligation = RegulatoryObligation.objects.select_related("category", "regime", "stage").get(
        pk=int(deadline.rule.split(":", 1)[1])
    )
    if obligation.submitted_at:
        return
    user = batch.contact(HEAD_OF_RISK)
    verb = "due soon" if deadline.step == 1 else "now due"
    event = _record_event(
        deadline,
        incident,
        now,
        batch,
        summary=(
            f"Regulatory notification {verb}: {obligation.label} (due "
            f"{timezone.localtime(obligation.due_at):%Y-%m-%d %H:%M %Z})"
        ),
        user=user,
    )
    for person in {u for u in (user, incident.commander) if u is not None}:
        page_user(
            event=event,
            user=person,
            now=now,
            email_follow_up=snapshot_of(incident).email_follow_up,
            reminder=deadline.step == 1,
            batch=batch.notifications,
        )


def _fire_outage(deadline: Deadline, incident: Incident, now: datetime, batch: _FiringBatch) -> None:
    _record_event(
        deadline,
        incident,
        now,
        batch,
        summary="Incident open for more than 4 hours: outage notification required",
    )
    regulatory_raise(incident=incident, category_key=OUTAGE_CATEGORY, now=now)
    batch.forget_obligations()


def _fire_rto(deadline: Deadline, incident: Incident, now: datetime, batch: _FiringBatch) -> None:
    key = deadline.rule.removeprefix(RTO_RULE_PREFIX)
    system = incident.affected_systems.filter(key=key).first()
    if system is None:
        # Removed from the incident while this row waited: its clock no longer runs.
        return
    user = batch.contact(INCIDENT_MANAGER)
    who = _name(user) if user else "nobody (no Incident Manager contact configured)"
    event = _record_event(
        deadline,
        incident,
        now,
        batch,
        summary=f"{system.name} not restored within its RTO of {format_duration(system.rto)}: "
        f"paging the incident manager {who}",
        target_label="incident manager",
        user=user,
    )
    if user is not None:
        page_user(
            event=event,
            user=user,
            now=now,
            email_follow_up=snapshot_of(incident).email_follow_up,
            batch=batch.notifications,
        )


def _fire_review(deadline: Deadline, incident: Incident, now: datetime, batch: _FiringBatch) -> None:
    # Post-incident review and action-item reminders. The reports app decides whether the
    # reminder still applies and whom it goes to (one person per step, so the event's webhook
    # notifications stay unique); the engine records and pages as usual.
    reminder = next(
        (
            answer
            for decide in escalation_hooks.follow_up_reminders
            if (answer := decide(deadline=deadline, incident=incident, now=now)) is not None
        ),
        None,
    )
    if reminder is None:
        return
    event = _record_event(
        deadline,
        incident,
        now,
        batch,
        summary=reminder.summary,
        target_label=reminder.label,
        user=reminder.user,
    )
    if reminder.user is not None:
        page_user(
            event=event,
            user=reminder.user,
            now=now,
            email_follow_up=snapshot_of(incident).email_follow_up,
            reminder=True,
            batch=batch.notifications,
        )


_HANDLERS = {
    Deadline.Kind.ACKNOWLEDGE: _fire_ack,
    Deadline.Kind.ROLE_ESCALATION: _fire_role,
    Deadline.Kind.STATUS_UPDATE: _fire_status,
    Deadline.Kind.REGULATORY: _fire_regulatory,
    Deadline.Kind.OUTAGE: _fire_outage,
    Deadline.Kind.REVIEW: _fire_review,
    Deadline.Kind.RTO_BREACH: _fire_rto,
}
# Duties that outlive the incident: a regulator still needs its notification, a resolved
# incident still needs its review.
_FIRE_WHEN_CLOSED = {Deadline.Kind.REGULATORY, Deadline.Kind.REVIEW}


def escalation_advance_after_failure(*, event: EscalationEvent, now: datetime | None = None) -> None:
    """Every page of an event failed for good: don't wait, move on to whoever comes next."""
    now = now or timezone.now()
    incident = event.incident
    if event.rule == ACK_RULE and incident.acknowledged_at is None and incident.is_open:
        moved = Deadline.objects.filter(
            incident=incident, rule=ACK_RULE, step=event.step + 1, fired_at=None, cancelled_at=None
        ).update(due_at=now)
        if moved:
            wakeups.wake(wakeups.DEADLINES)
    elif event.rule.startswith("role:"):
        _, key, *fallback = event.rule.split(":")
        trigger = snapshot_of(incident).trigger(key)
        if trigger is not None:
            _role_fallback(incident, trigger, key, fallback, now)


def escalation_escalate_now(*, incident: Incident, user, via: str, now: datetime | None = None) -> str:
    """A paged person asks for the next level now ("ESC" in reply to a page): the acknowledgement
    chain's next step falls due at once and the dispatcher fires it (woken at commit), as it
    would have at its time. Refused, with nothing written, when there is nobody further to page.
    The caller holds the incident's lock."""
    now = now or timezone.now()
    if not incident.is_open:
        raise ReplyRefused(
            f"{incident.reference} is {incident.get_state_display().lower()}: nothing to escalate.",
            status=409,
            code="incident_closed",
        )
    done = already_acknowledged(incident)
    if done is not None:
        raise ReplyRefused(done.replace("Nothing was changed.", "Not escalated."), status=409, code="acknowledged")
    step = (
        Deadline.objects.filter(incident=incident, rule=ACK_RULE, fired_at=None, cancelled_at=None)
        .order_by("step")
        .first()
    )
    if step is None:
        raise ReplyRefused(
            f"{incident.reference}: every escalation level has been paged already; call the incident manager.",
            status=409,
            code="nothing_to_escalate",
        )
    chain = snapshot_of(incident).chain
    target = chain[max(step.step, 1) - 1]
    paged, label = resolve_target(target.target, target.role, now)
    who = f"{label}: {_name(paged)}" if paged else label
    Deadline.objects.filter(pk=step.pk, fired_at=None, cancelled_at=None).update(due_at=now)
    wakeups.wake(wakeups.DEADLINES)
    timeline_record(
        incident,
        kind=TimelineEntry.Kind.ESCALATION,
        action=f"Escalated now by {_name(user)} {via}: step {step.step} of {len(chain)} pages {who}",
        owner=user,
        at=now,
        data={"rule": ACK_RULE, "step": step.step, "escalated_now": True},
    )
    return f"{incident.reference} escalated: paging {who} now."


def _role_fallback(incident: Incident, trigger: Trigger, key: str, fallback: list[str], now: datetime) -> None:
    """A role page nobody received: the role's deputy, then the incident manager, so that
    someone who can act is always told."""
    if not fallback and role_contact(trigger.role, deputy=True):
        _schedule_fallback(incident, f"role:{key}:deputy", now)
    elif fallback != ["manager"]:
        _schedule_fallback(incident, f"role:{key}:manager", now)


def _schedule_fallback(incident: Incident, rule: str, now: datetime) -> None:
    deadline_schedule(incident, kind=Deadline.Kind.ROLE_ESCALATION, rule=rule, step=1, due_at=now)


def _name(user) -> str:
    return user.get_full_name() or user.get_username()
