from .checklist import ChecklistTemplate, ChecklistTemplateItem, IncidentChecklistItem
from .evidence import EvidenceAttachment
from .incident import (
    OPEN_STATES,
    TRANSITION_NAMES,
    Category,
    DetectionMethod,
    Incident,
    IncidentDaySequence,
    State,
)
from .policy import PhaseTarget, RecoveryPointObjective, SeverityLevel, System, format_duration
from .timeline import AppendOnlyError, TimelineEntry

__all__ = [
    "OPEN_STATES",
    "TRANSITION_NAMES",
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
