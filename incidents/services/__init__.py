"""Every write goes through a service: views, admin, API and tasks call these.

The core's services (the incident, its lifecycle, timeline, checklists and evidence); each sub-app
has its own. The package re-exports them so `from incidents import services;
services.incident_open(...)` works.
"""

from .incident import (  # noqa: F401 - explicit for readers and type checkers
    EDITABLE_FIELDS,
    NOTE_TIME,
    PASS_THROUGH,
    RESOLUTION_ACTIONS_REQUIRED,
    IncidentChangedError,
    SeveritySuggestion,
    TransitionRefusedError,
    checklist_item_set_done,
    checklist_tick_for_action,
    evidence_attach,
    evidence_validate,
    incident_acknowledge,
    incident_assign_commander,
    incident_available_transitions,
    incident_exercise_end,
    incident_open,
    incident_resolve,
    incident_transition,
    incident_update,
    severity_suggest,
    timeline_add_note,
    timeline_record,
)
from .roles import (  # noqa: F401
    RoleTakenError,
    incident_role_assign,
    incident_role_holder,
    incident_role_release,
)
