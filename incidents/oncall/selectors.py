"""Who is reached for a role: the person on call at any time (an override wins), the role's contact."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch
from django.utils import timezone

from incidents.models import Incident, IncidentRole
from incidents.oncall.models import OnCallOverride, OnCallRotation, RoleContact
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
    return _on_call_in(rotation, override, at, deputy=deputy)


def _on_call_in(rotation: OnCallRotation, override, at: datetime, *, deputy: bool = False):
    """on_call_at's answer for a loaded rotation (members prefetched) and the override in force."""
    members = [m.user for m in rotation.members.all()]
    if not members:
        return None if deputy else (override.user if override else None)
    index = rotation.shift_index_at(at)
    primary = override.user if override else members[index % len(members)]
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

    Every role's rotation is read at once (the page's query budget): the first active rotation of
    each group, as on_call_at reads it, with its members and the overrides in force."""
    if not incident.is_open:
        return {}
    at = at or timezone.now()
    groups = set(INCIDENT_ROLE_ROTATIONS.values())
    rotations = (
        OnCallRotation.objects.filter(active=True, role__name__in=groups)
        .select_related("role")
        .prefetch_related(
            "members__user",
            Prefetch(
                "overrides",
                queryset=OnCallOverride.objects.filter(starts_at__lte=at, ends_at__gt=at)
                .select_related("user")
                .order_by("-created_at"),
                to_attr="in_force",
            ),
        )
        .order_by("pk")
    )
    people: dict[str, object] = {}
    for rotation in rotations:
        if rotation.role.name not in people:
            people[rotation.role.name] = _on_call_in(rotation, next(iter(rotation.in_force), None), at)
    missing = [group for group in groups if people.get(group) is None]
    if missing:
        for contact in RoleContact.objects.filter(role__name__in=missing).select_related("role", "primary"):
            people[contact.role.name] = contact.primary
    return {"role_on_call": {role.value: people.get(group) for role, group in INCIDENT_ROLE_ROTATIONS.items()}}
