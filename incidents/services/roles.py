"""Incident roles: who commands, who writes the timeline, who speaks for the incident, who
watches the risk, each taken, given or left through here (the web, the API and the admin alike).

The commander is the incident's own field, as before (incident_assign_commander does the work
and keeps its readiness gate); the other roles are IncidentRoleAssignment rows. Each change is
on the timeline and goes to the hooks, where the notifications app pages the new holder.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents.exceptions import ChangedError
from incidents.hooks import hooks
from incidents.roles import RISK_MANAGER

from ..models import Incident, IncidentRole, IncidentRoleAssignment, TimelineEntry
from .incident import _person, incident_assign_commander, timeline_record

ASSIGN_PERMISSION = "incidents.assign_commander"  # the same right as putting someone else in command
CHANGE_PERMISSION = "incidents.change_incident"


class RoleTakenError(ChangedError):
    message = "Someone else took this role meanwhile. Reload the page to see who holds it."


def incident_role_holder(*, incident: Incident, role: str) -> AbstractBaseUser | None:
    if role == IncidentRole.COMMANDER:
        return incident.commander
    current = (
        IncidentRoleAssignment.objects.current().filter(incident=incident, role=role).select_related("holder").first()
    )
    return current.holder if current else None


def _role(role: str) -> IncidentRole:
    if role not in IncidentRole.values:
        raise ValidationError({"role": f"Choose one of: {', '.join(IncidentRole.labels)}."})
    return IncidentRole(role)


def _refuse_unless_allowed(*, user: AbstractBaseUser, holder: AbstractBaseUser | None, current, role: str) -> None:
    """The commander's rule, for every role: whoever may change the incident may take an empty role
    (or take command, as before) and leave their own; anything else needs the assigning right."""
    if not user.has_perm(CHANGE_PERMISSION):
        raise PermissionDenied("You do not have permission to change this incident.")
    if user.has_perm(ASSIGN_PERMISSION):
        return
    taking = holder is not None and holder.pk == user.pk
    leaving = holder is None and current is not None and current.pk == user.pk
    if leaving or (taking and (current is None or current.pk == user.pk or role == IncidentRole.COMMANDER)):
        return
    if taking:
        raise PermissionDenied(
            f"{_person(current)} is the {IncidentRole(role).label.lower()}; only an incident manager may replace them."
        )
    raise PermissionDenied("Only an incident manager may assign someone else to a role.")


def role_holder_problem(*, holder: AbstractBaseUser, role: str) -> str:
    if not holder.is_active:
        return f"{_person(holder)}'s account is disabled."
    if not holder.has_perm("incidents.view_incident"):
        return f"{_person(holder)} cannot see incidents, so cannot hold an incident role."
    if role == IncidentRole.RISK_LIAISON and not holder.groups.filter(name=RISK_MANAGER).exists():
        return f"The risk liaison must be a {RISK_MANAGER}; {_person(holder)} is not one."
    return ""


@transaction.atomic
def incident_role_assign(
    *,
    incident: Incident,
    role: str,
    holder: AbstractBaseUser,
    by: AbstractBaseUser,
    at: datetime | None = None,
) -> Incident:
    """Give `role` on `incident` to `holder` (taking it over from whoever held it).

    Refuses with PermissionDenied (see _refuse_unless_allowed) or a field-level ValidationError
    (the incident is not open; an unknown role; a holder who may not hold it), writing nothing.
    Assigning the current holder again does nothing.
    """
    if holder is None:
        raise ValidationError({"holder": "Choose a person."})
    locked, role, current = _lock_for_change(incident=incident, role=role, holder=holder, by=by)
    if problem := role_holder_problem(holder=holder, role=role):
        raise ValidationError({"holder": problem})
    if current is not None and current.pk == holder.pk:
        return locked
    now = at or timezone.now()
    if role == IncidentRole.COMMANDER:
        # The commander's own service: its readiness gate, its timeline entry, its checklist tick.
        locked = incident_assign_commander(incident=locked, commander=holder, user=by)
    else:
        _end_current(incident=locked, role=role, by=by, now=now)
        try:
            with transaction.atomic():
                IncidentRoleAssignment.objects.create(
                    incident=locked, role=role, holder=holder, assigned_by=by, assigned_at=now
                )
        except IntegrityError as exc:  # another assignment committed between our read and insert
            raise RoleTakenError(RoleTakenError.message) from exc
        taking_over = f", taking over from {_person(current)}" if current is not None else ""
        assigned = "took the role" if holder.pk == by.pk else f"assigned by {_person(by)}"
        timeline_record(
            locked,
            kind=TimelineEntry.Kind.UPDATE,
            action=f"{_person(holder)} is now {role.label.lower()}{taking_over} ({assigned})",
            owner=by,
            at=now,
            data={"role": role.value, "holder": holder.pk, "previous": current.pk if current else None},
        )
    for listener in hooks.after_role_change:
        listener(incident=locked, role=role, holder=holder, previous=current, by=by, now=now)
    return locked


@transaction.atomic
def incident_role_release(
    *, incident: Incident, role: str, by: AbstractBaseUser, at: datetime | None = None
) -> Incident:
    """Leave `role` empty: its holder steps down, or an incident manager takes it off them."""
    locked, role, current = _lock_for_change(incident=incident, role=role, holder=None, by=by)
    if current is None:
        return locked
    now = at or timezone.now()
    if role == IncidentRole.COMMANDER:
        locked = incident_assign_commander(incident=locked, commander=None, user=by)
    else:
        _end_current(incident=locked, role=role, by=by, now=now)
        released = "stepped down" if current.pk == by.pk else f"released by {_person(by)}"
        timeline_record(
            locked,
            kind=TimelineEntry.Kind.UPDATE,
            action=f"{_person(current)} is no longer {role.label.lower()} ({released})",
            owner=by,
            at=now,
            data={"role": role.value, "holder": None, "previous": current.pk},
        )
    for listener in hooks.after_role_change:
        listener(incident=locked, role=role, holder=None, previous=current, by=by, now=now)
    return locked


def _lock_for_change(
    *, incident: Incident, role: str, holder: AbstractBaseUser | None, by: AbstractBaseUser
) -> tuple[Incident, IncidentRole, AbstractBaseUser | None]:
    """The incident locked (one role change at a time), the role, and its holder now; refused
    here, before anything is written, if `by` may not make this change or the incident is over."""
    role = _role(role)
    locked = (
        Incident.objects.select_for_update(no_key=True, of=("self",)).select_related("commander").get(pk=incident.pk)
    )
    current = incident_role_holder(incident=locked, role=role)
    _refuse_unless_allowed(user=by, holder=holder, current=current, role=role)
    if not locked.is_open:
        raise ValidationError({"role": "Only an open incident's roles can change."})
    return locked, role, current


def _end_current(*, incident: Incident, role: str, by: AbstractBaseUser, now: datetime) -> None:
    IncidentRoleAssignment.objects.current().filter(incident=incident, role=role).update(ended_at=now, ended_by=by)
