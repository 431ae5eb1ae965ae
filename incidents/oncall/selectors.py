"""Who is reached for a role: the person on call at any time (an override wins), the role's contact."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from incidents.models import Incident, IncidentRole
from incidents.oncall.models import OnCallOverride, OnCallRotation, RoleContact, RotationMember
from incidents.roles import ON_CALL_ENGINEER, RISK_MANAGER


def on_call_at(role_name: str, at: datetime, *, deputy: bool = False):
    """Who is on call for a role at `at` (an override wins).

    The deputy is the next scheduled member after the current shift's who is not the person on
    call, so a cover never makes one person both primary and deputy.
    """
    rotation = (
        OnCallRotation.objects.filter(active=True, role__name=role_name)
        .prefetch_related("members__user")
        .order_by("pk")
        .first()
    )
    if rotation is None:
        return None
    override = (
        rotation.overrides.filter(starts_at__lte=at, ends_at__gt=at)
        .select_related("user")
        .order_by("-created_at")
        .first()
    )
    members = [m.user for m in rotation.members.all()]
    return _on_call_in(rotation, members, override.user if override else None, at, deputy=deputy)


def _on_call_in(rotation: OnCallRotation, members: list, override_user, at: datetime, *, deputy: bool = False):
    """on_call_at's answer for a rotation, its members in order and the override's person in force."""
    if not members:
        return None if deputy else override_user
    index = rotation.shift_index_at(at)
    primary = override_user or members[index % len(members)]
    if not deputy:
        return primary
    for offset in range(1, len(members) + 1):
        candidate = members[(index + offset) % len(members)]
        if candidate != primary:
            return candidate
    return None


def role_contact(role_name: str, *, deputy: bool = False):
    contact = RoleContact.objects.filter(role__name=role_name).select_related("primary", "deputy").first()
    if contact is None:
        return None
    return contact.deputy if deputy else contact.primary


# Whose rotation answers "today's on-call" for each incident role: the on-call engineer commands,
# writes and speaks until someone else is put in; the risk liaison is a Risk Manager.
INCIDENT_ROLE_ROTATIONS = {
    IncidentRole.COMMANDER: ON_CALL_ENGINEER,
    IncidentRole.SCRIBE: ON_CALL_ENGINEER,
    IncidentRole.COMMUNICATIONS: ON_CALL_ENGINEER,
    IncidentRole.RISK_LIAISON: RISK_MANAGER,
}


def incident_roles_on_call(incident: Incident, *, at: datetime | None = None) -> dict:
    """The incident page's one-click offers: who is on call now for each role (a role with no
    rotation falls back to its contact). Nothing for an incident that is over.

    One query for every role's rotation (the page's query budget): the members of the active
    rotations, each row with its rotation, person and the person of the override in force. A
    rotation with no members is passed over here (on_call_at would answer its override)."""
    if not incident.is_open:
        return {}
    at = at or timezone.now()
    groups = set(INCIDENT_ROLE_ROTATIONS.values())
    in_force = OnCallOverride.objects.filter(rotation=OuterRef("rotation_id"), starts_at__lte=at, ends_at__gt=at)
    rows = (
        RotationMember.objects.filter(rotation__active=True, rotation__role__name__in=groups)
        .select_related("rotation__role", "user")
        .annotate(override_user_id=Subquery(in_force.order_by("-created_at").values("user_id")[:1]))
        .order_by("rotation_id", "position")
    )
    rotations: dict[str, list[RotationMember]] = {}
    for row in rows:
        group = rotations.setdefault(row.rotation.role.name, [])
        if not group or group[0].rotation_id == row.rotation_id:  # the group's first rotation only
            group.append(row)
    people: dict[str, object] = {}
    for group, members in rotations.items():
        users = [m.user for m in members]
        override_id = members[0].override_user_id
        # A cover is usually one of the members; anyone else costs a query, only then.
        override = next((u for u in users if u.pk == override_id), None) or (
            get_user_model().objects.filter(pk=override_id).first() if override_id else None
        )
        people[group] = _on_call_in(members[0].rotation, users, override, at)
    missing = [group for group in groups if people.get(group) is None]
    if missing:
        for contact in RoleContact.objects.filter(role__name__in=missing).select_related("role", "primary"):
            people[contact.role.name] = contact.primary
    return {"role_on_call": {role.value: people.get(group) for role, group in INCIDENT_ROLE_ROTATIONS.items()}}
