"""The roles' Django permissions, applied to API requests exactly as the web UI applies them."""

from __future__ import annotations

from rest_framework import permissions


class RolePermissions(permissions.DjangoModelPermissions):
    """Model permissions per method, reads included (DRF's default lets any user read).

    A view may name the permissions of an extra action in `action_permissions` (a transition
    needs `transition_incident`, not `add_incident`), per method where reading and writing
    differ (`{"GET": [...], "POST": [...]}`); the services still check the finer rules
    (a transition's own permission, the readiness gate, "never the author") and answer 403.
    """

    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        if request.method not in view.allowed_methods:
            return True  # the view answers 405, which says more than a 403 would
        needed = getattr(view, "action_permissions", {}).get(getattr(view, "action", None))
        if isinstance(needed, dict):
            needed = needed.get(request.method, needed.get("GET") if request.method in ("HEAD", "OPTIONS") else None)
        if needed is not None:
            return request.user.has_perms(needed)
        return super().has_permission(request, view)
