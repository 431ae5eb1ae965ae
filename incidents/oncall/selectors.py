"""Who is reached for a role: the person on call at any time (an override wins), the role's contact."""

from __future__ import annotations

from datetime import datetime

from incidents.oncall.models import OnCallRotation, RoleContact


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
    members = [m.user for m in rotation.members.all()]
    override = (
        rotation.overrides.filter(starts_at__lte=at, ends_at__gt=at)
        .select_related("user")
        .order_by("-created_at")
        .first()
    )
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
