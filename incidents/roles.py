"""The seed's response team as Django groups, and what each may do.

Synchronised after every migrate, so a permission added by a later migration reaches the groups
without a hand-written data migration. Admins may add permissions to a group; this only adds.
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

_RESPONDER = [
    "incidents.add_statusupdate",
    "incidents.view_statusupdate",
    "incidents.add_regulatoryobligation",
    "incidents.view_regulatoryobligation",
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
]
_MANAGER = _RESPONDER + [
    "incidents.change_regulatoryobligation",
    "incidents.close_incident",
    "incidents.assign_commander",
    "reports.approve_review",
    "reports.view_metrics",  # reports (issue #5)
]
_EXECUTIVE_VIEW = [
    "incidents.view_incident",
    "incidents.view_timelineentry",
    "incidents.view_evidenceattachment",
    "incidents.add_timelineentry",
    "reports.view_postincidentreview",
    "reports.approve_review",
    "reports.view_actionitem",
    "reports.view_metrics",  # reports (issue #5)
]
_POLICY_EDIT = [
    f"incidents.{action}_{model}"
    for model in ("severitylevel", "system", "phasetarget", "checklisttemplate", "checklisttemplateitem", "recoverypointobjective")
    for action in ("view", "change", "add")
]

# Everyone on the team sees the on-call roster (the /roster/ page and the admin lists).
_ROSTER_VIEW = [
    f"incidents.view_{model}"
    for model in ("oncallrotation", "rotationmember", "oncalloverride", "rolecontact", "person", "businessholiday")
]
# Only the incident manager maintains it; members and overrides can be removed (a cancelled swap).
_ROSTER_EDIT = [
    f"incidents.{action}_{model}"
    for model in ("oncallrotation", "rotationmember", "oncalloverride", "rolecontact", "person", "businessholiday")
    for action in ("add", "change")
] + ["incidents.delete_rotationmember", "incidents.delete_oncalloverride"]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    ON_CALL_ENGINEER: _RESPONDER + ["incidents.trigger_emergency_stop"] + _ROSTER_VIEW,
    RISK_MANAGER: _RESPONDER + ["incidents.trigger_emergency_stop", "incidents.change_regulatoryobligation"] + _ROSTER_VIEW,
    SYSTEM_ADMINISTRATOR: _RESPONDER + _ROSTER_VIEW,
    INCIDENT_MANAGER: _MANAGER + _POLICY_EDIT + _ROSTER_VIEW + _ROSTER_EDIT,
    CTO: _MANAGER + ["incidents.trigger_emergency_stop"] + _ROSTER_VIEW,
    HEAD_OF_RISK: _MANAGER + ["incidents.trigger_emergency_stop", "incidents.sign_off_obligation"] + _ROSTER_VIEW,
    CEO: _EXECUTIVE_VIEW + ["incidents.close_incident"] + _ROSTER_VIEW,
    TRAINER: ["incidents.view_incident", "incidents.view_timelineentry", "reports.view_actionitem", "reports.add_actionitem"] + _ROSTER_VIEW,
}
MANAGER_ROLES = {INCIDENT_MANAGER, CTO, HEAD_OF_RISK, CEO}


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

# Drills and training (issue #6), appended: trainers run the programme and keep certifications;
# everyone on the team sees the drills; managers may override the readiness gate with a reason.
_DRILLS_VIEW = ["drills.view_drill", "drills.view_drillkind", "drills.view_proceduredocument"]
_TRAINING_MANAGE = [
    "drills.manage_training",
    *(f"drills.{action}_{model}" for model in ("drill", "drillparticipant", "drillfinding", "certification",
                                                "mentoredresponse", "trainingprofile", "readinessoverride",
                                                "procedureacknowledgement", "reminder") for action in ("view",)),
    *(f"drills.{action}_{model}" for model in ("drillkind", "drillkindtarget", "certificationkind",
                                                "trainingpolicy", "proceduredocument") for action in ("view", "add", "change")),
]
for _role in (ON_CALL_ENGINEER, RISK_MANAGER, SYSTEM_ADMINISTRATOR, CEO):
    ROLE_PERMISSIONS[_role] = ROLE_PERMISSIONS[_role] + _DRILLS_VIEW
for _role in (INCIDENT_MANAGER, CTO, HEAD_OF_RISK):
    ROLE_PERMISSIONS[_role] = ROLE_PERMISSIONS[_role] + _DRILLS_VIEW + [
        "drills.override_readiness",
        "drills.view_readinessoverride",
        "drills.view_certification",
    ]
ROLE_PERMISSIONS[TRAINER] = ROLE_PERMISSIONS[TRAINER] + _DRILLS_VIEW + _TRAINING_MANAGE

# Health polling, emergency stops and maintenance windows (issue #4), appended like the above.
_HEALTH_VIEW = [f"incidents.view_{model}" for model in ("healthtarget", "healthsample", "emergencystop", "maintenancewindow")]
_HEALTH_EDIT = [
    f"incidents.{action}_{model}" for model in ("healthtarget", "maintenancewindow") for action in ("add", "change")
]
for _role in ROLE_PERMISSIONS:
    if _role != TRAINER:
        ROLE_PERMISSIONS[_role] = ROLE_PERMISSIONS[_role] + _HEALTH_VIEW
for _role in (SYSTEM_ADMINISTRATOR, INCIDENT_MANAGER):
    ROLE_PERMISSIONS[_role] = ROLE_PERMISSIONS[_role] + _HEALTH_EDIT

# Alert integrations (issue #7): the incident manager decides which monitoring may open incidents
# and how its labels map; everyone who watches health also sees the alerts that arrived.
_ALERTS_VIEW = ["incidents.view_alertevent"]
_ALERTS_EDIT = [f"incidents.{action}_alertintegration" for action in ("view", "add", "change")]
for _role in ROLE_PERMISSIONS:
    if _role != TRAINER:
        ROLE_PERMISSIONS[_role] = ROLE_PERMISSIONS[_role] + _ALERTS_VIEW
ROLE_PERMISSIONS[INCIDENT_MANAGER] = ROLE_PERMISSIONS[INCIDENT_MANAGER] + _ALERTS_EDIT
