"""The core's models: the incident, its timeline, checklists and evidence, and the severity,
system and calendar policy. Each sub-app (oncall, notifications, escalation, monitoring, api)
has its own models module."""

from .calendar import BusinessHoliday
from .checklist import ChecklistTemplate, ChecklistTemplateItem, IncidentChecklistItem, PortalAction
from .evidence import EvidenceAttachment
from .incident import (
    CONDITION_REFUSALS,
    OPEN_STATES,
    TRANSITION_NAMES,
    TRANSITION_PERMISSIONS,
    VIEW_PERMISSION,
    Category,
    DetectionMethod,
    Incident,
    IncidentDaySequence,
    State,
)
from .incident_role import ASSIGNED_ROLES, IncidentRole, IncidentRoleAssignment
from .policy import PhaseTarget, RecoveryPointObjective, SeverityLevel, System, format_duration
from .timeline import AppendOnlyError, TimelineEntry

__all__ = [
    "ASSIGNED_ROLES",
    "IncidentRole",
    "IncidentRoleAssignment",
    "PortalAction",
    "BusinessHoliday",
    "OPEN_STATES",
    "CONDITION_REFUSALS",
    "TRANSITION_NAMES",
    "TRANSITION_PERMISSIONS",
    "VIEW_PERMISSION",
    "AppendOnlyError",
    "Category",
    "ChecklistTemplate",
    "ChecklistTemplateItem",
    "DetectionMethod",
    "EvidenceAttachment",
    "Incident",
    "IncidentChecklistItem",
    "IncidentDaySequence",
    "PhaseTarget",
    "RecoveryPointObjective",
    "SeverityLevel",
    "State",
    "System",
    "TimelineEntry",
    "format_duration",
]
