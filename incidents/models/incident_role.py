"""Who holds which role on an incident, besides its commander, and since when.

The commander stays on the incident (`Incident.commander`), which the guards, the escalation,
the status updates and the reports read; the other roles are rows here. A row is written once
and ended once: the current holder of a role is its row with no end, and the rows of ended
holdings are the role's history. On PostgreSQL a trigger refuses a delete and any change but
the one end (migration 0017).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from .timeline import AppendOnlyError


class IncidentRole(models.TextChoices):
    # The values are the drills app's participant roles of the same name, so a drill's planned
    # roles and an incident's read alike.
    COMMANDER = "incident_commander", "Incident commander"
    SCRIBE = "scribe", "Scribe"
    COMMUNICATIONS = "communications", "Communications lead"
    RISK_LIAISON = "risk_manager", "Risk liaison"


# Roles held through IncidentRoleAssignment rows (the commander is the incident's own field).
ASSIGNED_ROLES = [IncidentRole.SCRIBE, IncidentRole.COMMUNICATIONS, IncidentRole.RISK_LIAISON]


class IncidentRoleAssignmentQuerySet(models.QuerySet):
    def current(self) -> IncidentRoleAssignmentQuerySet:
        return self.filter(ended_at=None)

    def delete(self):
        raise AppendOnlyError("IncidentRoleAssignment rows are history: they are ended, never deleted")


class IncidentRoleAssignment(models.Model):
    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="role_assignments")
    role = models.CharField(max_length=30, choices=[(r.value, r.label) for r in ASSIGNED_ROLES])
    holder = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    assigned_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    objects = IncidentRoleAssignmentQuerySet.as_manager()

    class Meta:
        ordering = ["incident", "assigned_at", "id"]
        constraints = [
            # One holder per role at a time: two people assigning at once cannot both win.
            models.UniqueConstraint(
                fields=["incident", "role"], condition=Q(ended_at=None), name="one_current_holder_per_incident_role"
            ),
            models.CheckConstraint(
                condition=Q(role__in=[r.value for r in ASSIGNED_ROLES]), name="incident_role_assignment_role_known"
            ),
            models.CheckConstraint(
                condition=Q(ended_at=None) | Q(ended_at__gte=models.F("assigned_at")),
                name="incident_role_assignment_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.holder} as {self.get_role_display()} on {self.incident_id}"

    def save(self, *args, **kwargs):
        # Ending goes through the service's conditional UPDATE; a loaded row is never saved back.
        if not self._state.adding:
            raise AppendOnlyError("IncidentRoleAssignment rows are written once; end one with incident_role_release")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("IncidentRoleAssignment rows are history: they are ended, never deleted")
