"""Every write to an incident goes through here: views, admin, API and tasks call these.

Each function is keyword-only, atomic, and records what it did on the append-only timeline.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_fsm import ConcurrentTransition, TransitionNotAllowed

from incidents.exceptions import ChangedError
from incidents.hooks import hooks
from incidents.validators import happened_problem, incident_time_errors

from ..models import (
    CONDITION_REFUSALS,
    OPEN_STATES,
    TRANSITION_NAMES,
    TRANSITION_PERMISSIONS,
    ChecklistTemplateItem,
    EvidenceAttachment,
    Incident,
    IncidentChecklistItem,
    PortalAction,
    SeverityLevel,
    State,
    System,
    TimelineEntry,
)

# Incident rows are locked FOR NO KEY UPDATE (no_key=True): it still serialises writers of the
# incident, but does not block the KEY SHARE lock that inserting a row referencing the incident
# (a timeline entry, a notification) takes. A plain FOR UPDATE here deadlocked with a worker
# firing a deadline of the same incident.

# Every field a lifecycle transition may change (see the @transition methods on Incident).
LIFECYCLE_FIELDS = [
    "state",
    "acknowledged_at",
    "acknowledged_by",
    "investigating_at",
    "contained_at",
    "recovering_at",
    "resolved_at",
    "ended_at",
    "review_started_at",
    "closed_at",
    "cancelled_at",
    "cancel_reason",
    "updated_at",
]

# Fields full_clean must not touch: the services set them, and django-fsm protects `state`.
_SET_BY_SERVICES = ["reference", "reference_day", "reference_number", "state"]
_PASSED_AS_OBJECTS = ["severity", "reported_by", "commander", "automated_system"]


class IncidentChangedError(ChangedError):
    """Someone else moved the incident since the user loaded it."""

    message = "This incident was changed by someone else. Reload the page to see its current state."


class TransitionRefusedError(Exception):
    pass


# -- severity -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeveritySuggestion:
    severity: SeverityLevel
    reason: str


def severity_suggest(*, financial_impact_usd: Decimal | None) -> SeveritySuggestion | None:
    """The most severe level whose financial band the estimate falls in, and why."""
    if financial_impact_usd is None:
        return None
    for level in SeverityLevel.objects.exclude(financial_threshold_usd=None).order_by("level"):
        if level.matches_financial_impact(financial_impact_usd):
            word = "at or above" if level.threshold_inclusive else "above"
            return SeveritySuggestion(
                severity=level,
                reason=(
                    f"Estimated impact ${financial_impact_usd:,.2f} is {word} "
                    f"${level.financial_threshold_usd:,.0f}: {level.label}."
                ),
            )
    return None


# -- open -----------------------------------------------------------------------------------


def _next_reference(day) -> tuple[int, str]:
    # One row per UTC day, incremented in this transaction: concurrent openers queue on the
    # row lock, and a rolled-back open rolls its number back too, so numbers are gap-free.
    table = "incidents_incidentdaysequence"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (day, last_number) VALUES (%s, 1) "  # noqa: S608 - fixed name
            f"ON CONFLICT (day) DO UPDATE SET last_number = {table}.last_number + 1 "
            "RETURNING last_number",
            [day],
        )
        number = cursor.fetchone()[0]
    return number, f"TMT-INC-{day:%Y-%m-%d}-{number:03d}"


def incident_open(
    *,
    title: str,
    severity: SeverityLevel,
    reported_by: AbstractBaseUser,
    detection_method: str,
    description: str = "",
    category: str = "operational",
    affected_systems: Iterable[System] = (),
    financial_impact_usd: Decimal | None = None,
    user_impact: str = "",
    started_at: datetime | None = None,
    commander: AbstractBaseUser | None = None,
    is_drill: bool = False,
    opened_by_team: str = "",
    detected_at: datetime | None = None,
    automated_system: System | None = None,
    alert_fingerprint: str = "",
) -> Incident:
    """Open an incident. detected_at is for importing past incidents (and the demo month).

    automated_system / alert_fingerprint: the key of a health check's or an alert's automated
    incident, unique among open incidents. Another open one with the key makes the INSERT fail
    with IntegrityError (after waiting for a concurrent opener's commit): callers open in a
    savepoint and join the other incident."""
    with transaction.atomic():
        # Required here: full_clean below does not look the passed-in objects up again.
        missing = {
            name: "This field is required."
            for name, value in [("severity", severity), ("reported_by", reported_by)]
            if value is None
        }
        if missing:
            raise ValidationError(missing)
        times = incident_time_errors(started_at=started_at, ended_at=None)
        if times:
            raise ValidationError(times)
        if (
            commander is not None
            and commander != reported_by
            and not reported_by.has_perm("incidents.assign_commander")
        ):
            raise PermissionDenied("Only an incident manager may make someone else the commander.")
        now = detected_at or timezone.now()
        incident = Incident(
            title=title,
            description=description,
            severity=severity,
            category=category,
            detection_method=detection_method,
            financial_impact_usd=financial_impact_usd,
            user_impact=user_impact,
            started_at=started_at or now,
            detected_at=now,
            reported_by=reported_by,
            commander=commander,
            is_drill=is_drill,
            escalation_snapshot=_snapshot_at_open(),  # the policy, frozen at open
            automated_system=automated_system,
            alert_fingerprint=alert_fingerprint,
        )
        # Constraint checks skipped here: the table's constraints concern what an open does not set
        # (the end time), what the day counter makes unique, or the automated keys, whose conflicts
        # the caller handles; the impact's floor is a field validator. Evaluating them
        # was 6 ms of the 35 ms an open costs (profiled for bench/api.py); PostgreSQL still enforces
        # them. The related rows are skipped too: they come as loaded objects, and each check was a
        # query of its own.
        incident.full_clean(exclude=[*_SET_BY_SERVICES, *_PASSED_AS_OBJECTS], validate_constraints=False)
        # Numbered as late as it can be: the day's counter row stays locked until commit.
        incident.reference_day = now.astimezone(UTC).date()
        incident.reference_number, incident.reference = _next_reference(incident.reference_day)
        incident.save()
        systems = list(affected_systems)
        if systems:
            incident.affected_systems.add(*systems)
        timeline_record(
            incident,
            kind=TimelineEntry.Kind.STATE_CHANGE,
            action=f"Incident opened as {severity.label}: {title}",
            owner=None if opened_by_team else reported_by,
            owner_team=opened_by_team,
            to_state=State.DETECTED,
            at=now,
        )
        if commander is not None:
            timeline_record(
                incident,
                kind=TimelineEntry.Kind.UPDATE,
                action=f"Incident commander: {_person(commander)}",
                owner=reported_by,
                at=now,
            )
        # The only items a new incident has are these: no need to ask for ones with a key.
        keys = {item.action_key for item in _attach_checklists(incident, state=State.DETECTED, new_incident=True)}
        if PortalAction.INCIDENT_LOGGED in keys:
            checklist_tick_for_action(
                incident=incident,
                action=PortalAction.INCIDENT_LOGGED,
                when=f"{opened_by_team or _person(reported_by)} logged the incident",
                by=None if opened_by_team else reported_by,
                at=now,
            )
        if commander is not None and PortalAction.COMMANDER_ASSIGNED in keys:
            checklist_tick_for_action(
                incident=incident,
                action=PortalAction.COMMANDER_ASSIGNED,
                when=f"{_person(commander)} was made incident commander as the incident was logged",
                by=reported_by,
                at=now,
            )
        for listener in hooks.after_open:
            listener(incident=incident, now=now)
        return incident


def _snapshot_at_open() -> dict:
    snapshot: dict = {}
    for part in hooks.snapshot_parts:
        snapshot.update(part())
    return snapshot


# -- lifecycle ------------------------------------------------------------------------------


# Transitions a user may run from a state the fsm does not list as their source, by passing
# through another one first, each step recorded as usual: "Mark contained" straight from
# acknowledged (the responder contained it while investigating) starts the investigation at the
# same moment. The final step's guards still apply, checked from the state passed through.
PASS_THROUGH: dict[tuple[str, str], tuple[str, str]] = {
    ("contain", State.ACKNOWLEDGED): ("start_investigation", State.INVESTIGATING),
}


def _unmet_condition(incident: Incident, meta) -> str:
    """What the first condition of a transition that does not hold waits for ("" when all hold)."""
    for condition in meta.conditions:
        if not condition(incident):
            return CONDITION_REFUSALS[condition.__name__]
    return ""


def incident_available_transitions(*, incident: Incident, user) -> list[dict]:
    """Transitions this user may run now, with why a blocked one is blocked."""
    result = []
    for name in TRANSITION_NAMES:
        method = getattr(incident, name)
        via = PASS_THROUGH.get((name, incident.state))
        meta = method._django_fsm.get_transition(via[1] if via else incident.state)
        if meta is None or not meta.has_perm(incident, user):
            continue
        blocked_reason = _unmet_condition(incident, meta)
        result.append(
            {
                "name": name,
                "label": meta.custom.get("label", name),
                "allowed": not blocked_reason,
                "blocked_reason": blocked_reason,
                "needs_reason": meta.custom.get("needs_reason", False),
            }
        )
    return result


def incident_transition(
    *,
    incident: Incident,
    name: str,
    user: AbstractBaseUser,
    expected_state: str | None = None,
    reason: str = "",
    at: datetime | None = None,
    label: str | None = None,
) -> Incident:
    """Run one lifecycle transition for a user, record it, and attach the next checklists.

    expected_state is the state the user saw; if it no longer holds, somebody else won.
    label: the timeline's words for it, instead of the transition's own.
    """
    with transaction.atomic():
        if name not in TRANSITION_NAMES:
            raise TransitionRefusedError(f"Unknown action “{name}”.")
        # The transition's own permission, first: a role without it is refused whatever the state
        # (as the API refuses it before looking at the incident). Not django_fsm.has_transition_perm:
        # that one also evaluates the guards, which would report a blocked guard as a missing permission.
        if not user.has_perm(TRANSITION_PERMISSIONS[name]):
            raise PermissionDenied("You do not have permission for this action.")
        if expected_state is not None and incident.state != expected_state:
            raise IncidentChangedError(IncidentChangedError.message)
        method = getattr(incident, name)
        if via := PASS_THROUGH.get((name, incident.state)):
            if unmet := _unmet_condition(incident, method._django_fsm.get_transition(via[1])):
                raise TransitionRefusedError(unmet)
            incident_transition(incident=incident, name=via[0], user=user, at=at)
        meta = method._django_fsm.get_transition(incident.state)
        if meta is None:
            raise TransitionRefusedError(
                f"“{name.replace('_', ' ')}” is not possible "
                f"while the incident is {incident.get_state_display().lower()}."
            )
        if unmet := _unmet_condition(incident, meta):
            raise TransitionRefusedError(unmet)
        if name == "reopen":
            _refuse_reopening_a_duplicate(incident)
        kwargs: dict = {}
        if meta.custom.get("needs_reason"):
            reason = reason.strip()
            if not reason:
                raise ValidationError({"reason": "Give a reason."})
            kwargs["reason"] = reason
        if name == "acknowledge":
            kwargs["by"] = user
        if at is not None and name != "reopen":
            kwargs["at"] = at
        return _transition_run(
            incident,
            name=name,
            kwargs=kwargs,
            user=user,
            label=label or meta.custom.get("label", name),
            reason=reason,
            at=at,
        )


def _transition_run(
    incident: Incident, *, name: str, kwargs: dict, user, label: str, reason: str, at: datetime | None
) -> Incident:
    """Run a transition that was checked, record it, attach the next checklists, tell the hooks."""
    source = incident.state
    try:
        getattr(incident, name)(**kwargs)
        # Only what transitions change: a full save from an object loaded earlier would write
        # back stale values of other fields (say, a commander someone changed meanwhile).
        incident.save(update_fields=LIFECYCLE_FIELDS)
    except TransitionNotAllowed as exc:
        # A condition that held a moment ago stopped holding meanwhile (an item unticked in between).
        meta = getattr(incident, name)._django_fsm.get_transition(source)
        raise TransitionRefusedError(_unmet_condition(incident, meta) or str(exc)) from exc
    except ConcurrentTransition as exc:
        raise IncidentChangedError(IncidentChangedError.message) from exc
    except IntegrityError as exc:
        # A reopen racing a new alert or outage for the same source (see incident_transition).
        raise TransitionRefusedError("Another open incident now covers the same alert or system; reload.") from exc
    action = f"{label}: {State(source).label} → {State(incident.state).label}"
    if reason:
        action += f". Reason: {reason}"
    timeline_record(
        incident,
        kind=TimelineEntry.Kind.STATE_CHANGE,
        action=action,
        owner=user,
        from_state=source,
        to_state=incident.state,
        at=at,
    )
    _attach_checklists(incident, state=incident.state)
    if name == "acknowledge":
        checklist_tick_for_action(
            incident=incident,
            action=PortalAction.ACKNOWLEDGED,
            when=f"{_person(user)} acknowledged",
            by=user,
            at=incident.acknowledged_at,
        )
    for listener in hooks.after_transition:
        listener(incident=incident, name=name, now=at)
    return incident


def _refuse_reopening_a_duplicate(incident: Incident) -> None:
    """An automated incident (an alert's, a system's) is the one open incident for its alert or
    system; once it is resolved, a new alert or outage opens another. Reopening the old one then
    would make two, which the unique constraints refuse: say so, and where to work instead."""
    duplicates = Incident.objects.filter(state__in=OPEN_STATES).exclude(pk=incident.pk)
    if incident.alert_fingerprint:
        other = duplicates.filter(alert_fingerprint=incident.alert_fingerprint).first()
    elif incident.automated_system_id:
        other = duplicates.filter(automated_system_id=incident.automated_system_id).first()
    else:
        return
    if other is not None:
        raise TransitionRefusedError(
            f"{other.reference} is now the open incident for the same "
            f"{'alert' if incident.alert_fingerprint else 'system outage'}; continue there (a note can link the two)."
        )


RESOLUTION_ACTIONS_REQUIRED = "Describe what was done to resolve the incident."


def incident_resolve(
    *,
    incident: Incident,
    user: AbstractBaseUser,
    resolution_actions: str,
    expected_state: str | None = None,
    at: datetime | None = None,
) -> Incident:
    """Record the resolution actions and resolve in one step (the incident page's Resolve form,
    so resolving does not start with a hunt through the full edit form). All or nothing: a
    refused resolve leaves the actions unrecorded too."""
    with transaction.atomic():
        if not (user.has_perm(TRANSITION_PERMISSIONS["resolve"]) and user.has_perm("incidents.change_incident")):
            raise PermissionDenied("You do not have permission for this action.")
        if expected_state is not None and incident.state != expected_state:
            raise IncidentChangedError(IncidentChangedError.message)
        text = resolution_actions.strip()
        if not text:
            raise ValidationError({"resolution_actions": RESOLUTION_ACTIONS_REQUIRED})
        if text != incident.resolution_actions.strip():
            incident = incident_update(incident=incident, user=user, resolution_actions=text)
        return incident_transition(incident=incident, name="resolve", user=user, expected_state=expected_state, at=at)


def incident_acknowledge(*, incident: Incident, user: AbstractBaseUser, via: str = "") -> Incident:
    """`via`: how, when not on the incident page ("by SMS reply"); the timeline says so, since a
    reviewer asks whether the responder was at a desk or answering a phone at 3 a.m."""
    label = f"Acknowledged by {_person(user)} {via}" if via else None
    return incident_transition(incident=incident, name="acknowledge", user=user, label=label)


def incident_exercise_end(
    *, incident: Incident, user: AbstractBaseUser, reason: str, at: datetime | None = None
) -> Incident:
    """End a drill's incident with its exercise: it leaves the open incidents and pages nobody.

    Still open: cancelled with the reason, the one way out of every open state that claims no
    phase the team did not reach (a resolve would need an assessment and resolution actions that
    an exercise stopped halfway never had; how far the team got stays on the timeline, the
    outcome is the drill's). Already resolved or later: left as the team took it, with the
    reason as a note. Whoever ends the drill ends its incident, with or without the responders'
    transition permission (a trainer has none; the drills app checked they run the drill), which
    is why a real incident is refused here and needs incident_transition.
    """
    with transaction.atomic():
        reason = reason.strip()
        if not reason:
            raise ValidationError({"reason": "Give a reason."})
        locked = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
        if not locked.is_drill:
            raise PermissionDenied("Only an exercise incident ends with its drill.")
        if locked.is_open:
            kwargs: dict = {"reason": reason} | ({"at": at} if at is not None else {})
            return _transition_run(
                locked, name="cancel", kwargs=kwargs, user=user, label="Exercise over", reason=reason, at=at
            )
        timeline_record(locked, kind=TimelineEntry.Kind.NOTE, action=reason, owner=user, at=at)
        return locked


# -- details --------------------------------------------------------------------------------

EDITABLE_FIELDS = (
    "title",
    "public_title",
    "description",
    "category",
    "detection_method",
    "financial_impact_usd",
    "user_impact",
    "started_at",
    "ended_at",
    "primary_cause",
    "contributing_factors",
    "resolution_actions",
    "verification_steps",
    "went_well",
    "could_improve",
    "prevention_immediate",
    "prevention_long_term",
    "monitoring_improvements",
)


def incident_update(
    *,
    incident: Incident,
    user: AbstractBaseUser,
    severity: SeverityLevel | None = None,
    affected_systems: Iterable[System] | None = None,
    **fields,
) -> Incident:
    """Change descriptive fields; each change is recorded on the timeline."""
    with transaction.atomic():
        unknown = set(fields) - set(EDITABLE_FIELDS)
        if unknown:
            raise ValidationError(f"Not editable: {', '.join(sorted(unknown))}")
        locked = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
        if locked.state in (State.CLOSED, State.CANCELLED):
            raise ValidationError(
                f"A {locked.get_state_display().lower()} incident cannot be changed; add a timeline note instead."
            )
        changes = []
        for name, value in fields.items():
            old = getattr(locked, name)
            if old != value:
                setattr(locked, name, value)
                changes.append(Incident._meta.get_field(name).verbose_name)
        times = incident_time_errors(started_at=locked.started_at, ended_at=locked.ended_at)
        if times:
            raise ValidationError(times)
        severity_changed = severity is not None and severity.pk != locked.severity_id
        if severity_changed:
            old_label = locked.severity.label
            locked.severity = severity
            timeline_record(
                locked,
                kind=TimelineEntry.Kind.UPDATE,
                action=f"Severity changed from {old_label} to {severity.label}",
                owner=user,
                data={"severity_from": old_label, "severity_to": severity.label},
            )
        locked.full_clean(exclude=_SET_BY_SERVICES)
        locked.save()
        if affected_systems is not None:
            new = set(affected_systems)
            old_set = set(locked.affected_systems.all())
            if new != old_set:
                locked.affected_systems.set(new)
                changes.append("affected systems")
        if changes:
            timeline_record(
                locked,
                kind=TimelineEntry.Kind.UPDATE,
                action="Updated " + ", ".join(changes),
                owner=user,
            )
        rto_changed = "affected systems" in changes or "started_at" in fields
        if severity_changed or "financial_impact_usd" in fields or "category" in fields or rto_changed:
            # A raised severity or impact arms new escalations; a lowered one cancels pending ones.
            # An added system (or an earlier start time) starts or moves an RTO clock.
            for listener in hooks.after_reclassify:
                listener(incident=locked)
        incident.refresh_from_db()
        return locked


def incident_assign_commander(
    *, incident: Incident, commander: AbstractBaseUser | None, user: AbstractBaseUser
) -> Incident:
    with transaction.atomic():
        locked = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
        if not locked.is_open:
            raise ValidationError("Only an open incident has a commander to change.")
        if not user.has_perm("incidents.change_incident"):
            raise PermissionDenied("You do not have permission to change this incident.")
        taking_command = commander == user
        stepping_down = commander is None and locked.commander_id == user.pk
        if not (user.has_perm("incidents.assign_commander") or taking_command or stepping_down):
            raise PermissionDenied("Only an incident manager may assign someone else as commander.")
        if locked.commander_id == (commander.pk if commander else None):
            return locked
        if commander is not None:
            # The readiness gate (the drills app's): refuses, with the reason, a commander who is not
            # ready (a required certification expired, mentoring unfinished, procedures unread).
            for guard in hooks.commander_guards:
                guard(user=commander, incident=locked)
        locked.commander = commander
        locked.save(update_fields=["commander", "updated_at"])
        timeline_record(
            locked,
            kind=TimelineEntry.Kind.UPDATE,
            action=f"Incident commander: {_person(commander) if commander else 'none'}",
            owner=user,
        )
        if commander is not None:
            checklist_tick_for_action(
                incident=locked,
                action=PortalAction.COMMANDER_ASSIGNED,
                when=(
                    f"{_person(user)} took command"
                    if commander == user
                    else f"{_person(user)} made {_person(commander)} incident commander"
                ),
                by=user,
            )
        return locked


# -- timeline -------------------------------------------------------------------------------


NOTE_TIME = "The note's time"


def timeline_add_note(
    *,
    incident: Incident,
    author: AbstractBaseUser,
    text: str,
    occurred_at: datetime | None = None,
    owner_team: str = "",
) -> TimelineEntry:
    with transaction.atomic():
        text = text.strip()
        if not text:
            raise ValidationError({"text": "Write something."})
        now = timezone.now()
        if problem := happened_problem(occurred_at, what=NOTE_TIME, now=now, began=incident.started_at):
            raise ValidationError({"occurred_at": problem})
        return timeline_record(
            incident,
            kind=TimelineEntry.Kind.NOTE,
            action=text,
            owner=author,
            owner_team=owner_team,
            at=occurred_at or now,
        )


# -- checklists -----------------------------------------------------------------------------


def _attach_checklists(incident: Incident, *, state: str, new_incident: bool = False) -> list[IncidentChecklistItem]:
    """Copy the active templates for this state onto the incident, each template once (a
    reopened incident keeps the lists it has); a new incident has none to look up."""
    items = ChecklistTemplateItem.objects.filter(
        template__active=True, template__attach_on_state=state, template__category__in=["", incident.category]
    ).select_related("template")
    if not new_incident:
        items = items.exclude(template__in=incident.checklist_items.values("template_id"))
    return IncidentChecklistItem.objects.bulk_create(
        IncidentChecklistItem(
            incident=incident,
            template=item.template,
            section=item.template.name,
            text=item.text,
            order=item.order,
            gates_containment=item.template.gates_containment,
            action_key=item.action_key,
        )
        for item in items
    )


def checklist_item_set_done(
    *, item: IncidentChecklistItem, user: AbstractBaseUser, done: bool, at: datetime | None = None
) -> IncidentChecklistItem:
    with transaction.atomic():
        locked = (
            IncidentChecklistItem.objects.select_for_update(of=("self",)).select_related("incident").get(pk=item.pk)
        )
        if locked.done == done:
            return locked
        if not locked.incident.is_open and locked.incident.state != State.RESOLVED:
            raise ValidationError("The checklist of a closed incident cannot change.")
        locked.done_at = (at or timezone.now()) if done else None
        locked.done_by = user if done else None
        locked.ticked_by_portal_when = ""  # a person's tick (or untick) now
        locked.save(update_fields=["done_at", "done_by", "ticked_by_portal_when"])
        timeline_record(
            locked.incident,
            kind=TimelineEntry.Kind.CHECKLIST,
            action=f"{'Done' if done else 'Un-ticked'}: {locked.section} — {locked.text}",
            owner=user,
            data={"checklist_item": locked.pk, "done": done},
            at=at,
        )
        return locked


def checklist_tick_for_action(
    *,
    incident: Incident,
    action: str,
    when: str,
    by: AbstractBaseUser | None = None,
    at: datetime | None = None,
) -> list[IncidentChecklistItem]:
    """Tick the incident's items keyed to `action`, which the portal just did itself.

    `when` says what happened, by whom ("Priya Raman acknowledged"); the item shows it as ticked
    by the portal. No timeline entry of its own: the action's entry (the acknowledgement, the
    evidence, the status update) already tells it, and a second one for the same moment would
    only repeat it. An item already ticked (by a person, or by an earlier action) is left as it
    is, so a repeated action changes nothing; nothing is ever unticked here. The apps above call
    this from their own services (an emergency stop, a status update).
    """
    with transaction.atomic():
        if action not in PortalAction.values:
            raise ValueError(f"Unknown portal action {action!r}")
        if not incident.is_open and incident.state != State.RESOLVED:
            return []  # as for a person: the checklist of a closed incident does not change
        now = at or timezone.now()
        when = when.strip()[:300]
        ticked = []
        for item in IncidentChecklistItem.objects.filter(incident=incident, action_key=action, done_at=None):
            # The conditional UPDATE is the claim: a person ticking the same item at the same moment
            # (checklist_item_set_done holds the row lock) keeps their tick, and this writes nothing.
            if IncidentChecklistItem.objects.filter(pk=item.pk, done_at=None).update(
                done_at=now, done_by=by, ticked_by_portal_when=when
            ):
                item.done_at, item.done_by, item.ticked_by_portal_when = now, by, when
                ticked.append(item)
        return ticked


# -- evidence -------------------------------------------------------------------------------

EVIDENCE_EXTENSIONS = {
    ".log",
    ".txt",
    ".json",
    ".csv",
    ".xml",
    ".yaml",
    ".yml",
    ".sql",
    ".har",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".webp",
    ".pdf",
    ".gz",
    ".zip",
    ".tar",
    ".tgz",
}
# Magic numbers for the binary types, so a renamed executable is not stored as a "screenshot".
_MAGIC = {
    ".png": [b"\x89PNG\r\n\x1a\n"],
    ".jpg": [b"\xff\xd8\xff"],
    ".jpeg": [b"\xff\xd8\xff"],
    ".gif": [b"GIF87a", b"GIF89a"],
    ".pdf": [b"%PDF-"],
    ".gz": [b"\x1f\x8b"],
    ".tgz": [b"\x1f\x8b"],
    ".zip": [b"PK\x03\x04", b"PK\x05\x06"],
}


def evidence_validate(uploaded: UploadedFile) -> None:
    name = uploaded.name or ""
    ext = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    if ext not in EVIDENCE_EXTENSIONS:
        raise ValidationError(
            {
                "file": (
                    f"Files of type “{ext or 'none'}” are not accepted. "
                    f"Accepted: {', '.join(sorted(EVIDENCE_EXTENSIONS))}."
                )
            }
        )
    if uploaded.size > settings.EVIDENCE_MAX_BYTES:
        raise ValidationError(
            {
                "file": (
                    f"The file is {uploaded.size / 1048576:.1f} MB; the limit "
                    f"is {settings.EVIDENCE_MAX_BYTES / 1048576:.0f} MB."
                )
            }
        )
    if uploaded.size == 0:
        raise ValidationError({"file": "The file is empty."})
    if ext in _MAGIC:
        uploaded.seek(0)
        head = uploaded.read(16)
        uploaded.seek(0)
        if not any(head.startswith(m) for m in _MAGIC[ext]):
            raise ValidationError({"file": f"The file's content is not a {ext} file."})


def evidence_attach(
    *, incident: Incident, uploaded: UploadedFile, user: AbstractBaseUser, description: str = ""
) -> EvidenceAttachment:
    with transaction.atomic():
        evidence_validate(uploaded)
        digest = hashlib.sha256()
        for chunk in uploaded.chunks():
            digest.update(chunk)
        uploaded.seek(0)
        content_type = mimetypes.guess_type(uploaded.name)[0] or "application/octet-stream"
        attachment = EvidenceAttachment(
            incident=incident,
            original_name=uploaded.name[:200],
            content_type=content_type,
            size_bytes=uploaded.size,
            sha256=digest.hexdigest(),
            description=description.strip(),
            uploaded_by=user,
        )
        attachment.file.save(uploaded.name, uploaded, save=False)
        attachment.save()
        timeline_record(
            incident,
            kind=TimelineEntry.Kind.EVIDENCE,
            action=f"Evidence added: {attachment.original_name} (SHA-256 {attachment.sha256[:12]}…)",
            owner=user,
            data={"evidence": attachment.pk, "sha256": attachment.sha256},
        )
        checklist_tick_for_action(
            incident=incident,
            action=PortalAction.EVIDENCE_ATTACHED,
            when=f"{_person(user)} attached {attachment.original_name}",
            by=user,
        )
        return attachment


# -- helpers --------------------------------------------------------------------------------


def _person(user) -> str:
    return user.get_full_name() or user.get_username()


def timeline_record(
    incident: Incident,
    *,
    kind: str,
    action: str,
    owner=None,
    owner_team: str = "",
    from_state: str = "",
    to_state: str = "",
    at: datetime | None = None,
    data: dict | None = None,
) -> TimelineEntry:
    """The one writer of timeline entries; escalation, health and report services use it too."""
    now = timezone.now()
    entry = TimelineEntry.objects.create(
        incident=incident,
        kind=kind,
        action=action,
        owner=owner,
        owner_team=owner_team,
        from_state=from_state,
        to_state=to_state,
        occurred_at=at or now,
        recorded_at=now,
        data=data or {},
    )
    for listener in hooks.after_record:
        listener(entry=entry)
    return entry
