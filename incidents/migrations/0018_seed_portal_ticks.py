"""The seed's checklist items the portal does itself, keyed by their template and position (not
their text, which an admin may reword): "Acknowledge alert", "Safety first: initiate emergency
stop", both "Preserve evidence" items, "Initial communication: notify response team" (a status
update to the internal teams) and "Start tracking: create incident ticket" (logging the incident
is the ticket). Items already copied onto incidents get the same key; nothing is ticked here."""

from django.db import migrations
from django.db.models import Exists, OuterRef, Subquery

# (template slug, item order) -> the portal action that ticks it
SEEDED_KEYS = {
    ("immediate-actions", 0): "acknowledged",
    ("immediate-actions", 1): "emergency_stop",
    ("immediate-actions", 2): "evidence_attached",
    ("immediate-actions", 3): "status_update_posted",
    ("immediate-actions", 4): "incident_logged",
    ("security-immediate-actions", 1): "evidence_attached",
}


def seed_keys(apps, schema_editor):
    ChecklistTemplateItem = apps.get_model("incidents", "ChecklistTemplateItem")
    IncidentChecklistItem = apps.get_model("incidents", "IncidentChecklistItem")
    for (slug, order), key in SEEDED_KEYS.items():
        # Only a blank key: one an admin set meanwhile stays theirs.
        ChecklistTemplateItem.objects.filter(template__slug=slug, order=order, action_key="").update(action_key=key)
    keyed = ChecklistTemplateItem.objects.exclude(action_key="").filter(
        template_id=OuterRef("template_id"), order=OuterRef("order")
    )
    IncidentChecklistItem.objects.filter(Exists(keyed), action_key="").update(
        action_key=Subquery(keyed.values("action_key")[:1])
    )


def clear_keys(apps, schema_editor):
    ChecklistTemplateItem = apps.get_model("incidents", "ChecklistTemplateItem")
    for (slug, order), key in SEEDED_KEYS.items():
        ChecklistTemplateItem.objects.filter(template__slug=slug, order=order, action_key=key).update(action_key="")


class Migration(migrations.Migration):
    dependencies = [("incidents", "0017_roles_and_portal_ticks")]
    operations = [migrations.RunPython(seed_keys, clear_keys)]
