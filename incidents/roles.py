"""The seed's response team as Django groups, and what each may do, on the web and in the API.

Synchronised after every migrate, so a permission added by a later migration reaches the groups
without a hand-written data migration. Admins may add permissions to a group; this only adds.
The table names permissions as strings ("app_label.codename"), so it imports no other app.
"""

from django.contrib.auth.models import Group, Permission

ON_CALL_ENGINEER = "On-Call Engineer"
RISK_MANAGER = "Risk Manager"
SYSTEM_ADMINISTRATOR = "System Administrator"
INCIDENT_MANAGER = "Incident Manager"
CTO = "CTO"
HEAD_OF_RISK = "Head of Risk Management"
CEO = "CEO"
TRAINER = "Trainer"
MANAGER_ROLES = {INCIDENT_MANAGER, CTO, HEAD_OF_RISK, CEO}


def _perms(app: str, models: tuple[str, ...], actions: tuple[str, ...]) -> list[str]:
    return [f"{app}.{action}_{model}" for model in models for action in actions]


# -- incidents, status updates, regulatory obligations, reviews --------------------------------
_RESPONDER = [
    "escalation.add_statusupdate",
    "escalation.view_statusupdate",
    "escalation.add_regulatoryobligation",
    "escalation.view_regulatoryobligation",
    "incidents.view_incident",
    "incidents.add_incident",
    "incidents.change_incident",
    "incidents.transition_incident",
    "incidents.add_timelineentry",
    "incidents.view_timelineentry",
    "incidents.change_incidentchecklistitem",
    "incidents.add_evidenceattachment",
    "incidents.view_evidenceattachment",
    "reports.view_postincidentreview",
    "reports.add_postincidentreview",
    "reports.change_postincidentreview",
    "reports.view_actionitem",
    "reports.add_actionitem",
    "reports.change_actionitem",
    # the knowledge base: responders read runbooks and work them on incidents
    "runbooks.view_runbook",
    "runbooks.view_runbookrevision",
    "runbooks.view_runbookrun",
    "runbooks.add_runbookrun",
    "runbooks.add_steprecord",
]
_MANAGER = _RESPONDER + [
    "escalation.change_regulatoryobligation",
    "incidents.close_incident",
    "incidents.assign_commander",
    "reports.approve_review",
    "reports.view_metrics",
]
_EXECUTIVE_VIEW = [
    "incidents.view_incident",
    "incidents.view_timelineentry",
    "incidents.view_evidenceattachment",
    "incidents.add_timelineentry",
    "reports.view_postincidentreview",
    "reports.approve_review",
    "reports.view_actionitem",
    "reports.view_metrics",
    "runbooks.view_runbook",
    "runbooks.view_runbookrevision",
    "runbooks.view_runbookrun",
]
# The seed gives recovery operations to the System Administrator and the response to the
# incident manager: they propose runbook revisions and approve each other's (four eyes).
_RUNBOOK_EDIT = ["runbooks.add_runbookrevision", "runbooks.approve_runbookrevision"]
_POLICY_EDIT = _perms(
    "incidents",
    ("severitylevel", "system", "phasetarget", "checklisttemplate", "checklisttemplateitem", "recoverypointobjective"),
    ("view", "change", "add"),
)
_EMERGENCY_STOP = ["incidents.trigger_emergency_stop"]

# -- the on-call roster: everyone sees it; only the incident manager maintains it (members and
# overrides can be removed: a cancelled swap) ----------------------------------------------------
_ROSTER_MODELS = ("oncallrotation", "rotationmember", "oncalloverride", "rolecontact", "person")
_ROSTER_VIEW = _perms("oncall", _ROSTER_MODELS, ("view",)) + ["incidents.view_businessholiday"]
_ROSTER_EDIT = (
    _perms("oncall", _ROSTER_MODELS, ("add", "change"))
    + _perms("incidents", ("businessholiday",), ("add", "change"))
    + ["oncall.delete_rotationmember", "oncall.delete_oncalloverride"]
)

# -- drills and training: trainers run the programme and keep certifications; everyone sees the
# drills; managers may override the readiness gate with a reason --------------------------------
_DRILLS_VIEW = ["drills.view_drill", "drills.view_drillkind", "drills.view_proceduredocument"]
_READINESS_OVERRIDE = ["drills.override_readiness", "drills.view_readinessoverride", "drills.view_certification"]
_TRAINING_MANAGE = [
    "drills.manage_training",
    *_perms(
        "drills",
        (
            "drill",
            "drillparticipant",
            "drillfinding",
            "certification",
            "mentoredresponse",
            "trainingprofile",
            "readinessoverride",
            "procedureacknowledgement",
            "reminder",
        ),
        ("view",),
    ),
    *_perms(
        "drills",
        ("drillkind", "drillkindtarget", "certificationkind", "trainingpolicy", "proceduredocument"),
        ("view", "add", "change"),
    ),
]

# -- health, emergency stops, maintenance windows, alerts: everyone who responds sees them; the
# incident manager decides which monitoring may open incidents and how its labels map -----------
_MONITORING_VIEW = _perms(
    "monitoring",
    ("healthtarget", "healthsample", "emergencystop", "maintenancewindow", "tradinghalt", "positionclosure"),
    ("view",),
) + ["api.view_alertevent"]
# The trading halt: the on-call engineer asks to resume, a Risk Manager approves (four eyes);
# responders record closed positions and capture system state as evidence.
_RESUME_REQUEST = ["monitoring.request_trading_resume"]
_RESUME_APPROVE = ["monitoring.approve_trading_resume"]
_HALT_WORK = ["monitoring.add_positionclosure", "monitoring.capture_system_state"]
_HEALTH_EDIT = _perms("monitoring", ("healthtarget", "maintenancewindow"), ("add", "change")) + _perms(
    "monitoring", ("diagnosticprobe",), ("view", "add", "change")
)
_ALERTS_EDIT = _perms("api", ("alertintegration",), ("view", "add", "change"))
# -- backups and recovery points: the responders and managers see them; the seed's emergency
# backup is run by the system administrator, the risk manager and the incident manager, who also
# say what is backed up ------------------------------------------------------------------------
_BACKUPS_VIEW = _perms("recovery", ("backuprun", "backupartefact", "rpobreach"), ("view",))
_BACKUPS_RUN = ["recovery.run_backup"] + _perms(
    "recovery", ("backupdatabase", "backupfolder"), ("view", "add", "change")
)

# -- the public status page: those the seed gives communication to publish (the on-call engineer
# coordinates it, the CTO talks to media and stakeholders, the Head of Risk notifies stakeholders,
# the CEO the board); maintenance is announced by those who plan it -------------------------------
_STATUS_PUBLISH = ["status.publish_status"]
_STATUS_MAINTENANCE = ["status.announce_maintenance"]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    ON_CALL_ENGINEER: (
        _RESPONDER
        + _EMERGENCY_STOP
        + _ROSTER_VIEW
        + _DRILLS_VIEW
        + _MONITORING_VIEW
        + _RESUME_REQUEST
        + _HALT_WORK
        + _STATUS_PUBLISH
        + _BACKUPS_VIEW
    ),
    RISK_MANAGER: (
        _RESPONDER
        + _EMERGENCY_STOP
        + ["escalation.change_regulatoryobligation"]
        + _ROSTER_VIEW
        + _DRILLS_VIEW
        + _MONITORING_VIEW
        + _RESUME_APPROVE
        + _HALT_WORK
        + _BACKUPS_VIEW
        + _BACKUPS_RUN
    ),
    SYSTEM_ADMINISTRATOR: (
        _RESPONDER
        + _ROSTER_VIEW
        + _DRILLS_VIEW
        + _MONITORING_VIEW
        + _HEALTH_EDIT
        + _HALT_WORK
        + _STATUS_MAINTENANCE
        + _BACKUPS_VIEW
        + _BACKUPS_RUN
        + _RUNBOOK_EDIT
    ),
    INCIDENT_MANAGER: (
        _MANAGER
        + _POLICY_EDIT
        + _ROSTER_VIEW
        + _ROSTER_EDIT
        + _DRILLS_VIEW
        + _READINESS_OVERRIDE
        + _MONITORING_VIEW
        + _HEALTH_EDIT
        + _ALERTS_EDIT
        + ["monitoring.capture_system_state"]
        + _STATUS_PUBLISH
        + _STATUS_MAINTENANCE
        + _BACKUPS_VIEW
        + _BACKUPS_RUN
        + _RUNBOOK_EDIT
    ),
    CTO: (
        _MANAGER
        + _EMERGENCY_STOP
        + _ROSTER_VIEW
        + _DRILLS_VIEW
        + _READINESS_OVERRIDE
        + _MONITORING_VIEW
        + _STATUS_PUBLISH
        + _STATUS_MAINTENANCE
        + _BACKUPS_VIEW
    ),
    HEAD_OF_RISK: (
        _MANAGER
        + _EMERGENCY_STOP
        + ["escalation.sign_off_obligation"]
        + _ROSTER_VIEW
        + _DRILLS_VIEW
        + _READINESS_OVERRIDE
        + _MONITORING_VIEW
        + _RESUME_APPROVE
        + _STATUS_PUBLISH
        + _BACKUPS_VIEW
    ),
    CEO: (
        _EXECUTIVE_VIEW
        + ["incidents.close_incident"]
        + _ROSTER_VIEW
        + _DRILLS_VIEW
        + _MONITORING_VIEW
        + _STATUS_PUBLISH
    ),
    TRAINER: (
        ["incidents.view_incident", "incidents.view_timelineentry", "reports.view_actionitem", "reports.add_actionitem"]
        + ["runbooks.view_runbook", "runbooks.view_runbookrevision"]
        + _ROSTER_VIEW
        + _DRILLS_VIEW
        + _TRAINING_MANAGE
    ),
}


def ensure_role_groups(sender=None, **kwargs) -> None:
    using = kwargs.get("using", "default")
    wanted = {perm for perms in ROLE_PERMISSIONS.values() for perm in perms}
    by_name = {}
    for perm in Permission.objects.using(using).select_related("content_type"):
        key = f"{perm.content_type.app_label}.{perm.codename}"
        if key in wanted:
            by_name[key] = perm
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role)
        present = [by_name[p] for p in perms if p in by_name]
        group.permissions.add(*present)
