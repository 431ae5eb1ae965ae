"""The UK final report's clock starts at the incident's resolution: the seeded citation says
that this is the anchor the portal assumes, so whoever relies on it checks that one point."""

from django.db import migrations

UK_FINAL = (
    "PS26/2: within 30 working days of the incident being resolved (as CP24/28 and CP17/24 "
    "proposed). Assumed anchor: the incident's first resolution in the portal (a reopening keeps "
    "that clock). Check the final PS26/2 and PRA PS7/26 rules before relying on it."
)
UK_FINAL_BEFORE = "PS26/2: within 30 working days"


def forwards(apps, schema_editor):
    Stage = apps.get_model("escalation", "RegimeStage")
    # Only the seeded wording: an admin's own citation is kept.
    Stage.objects.filter(regime__key="uk-oir", key="final", citation=UK_FINAL_BEFORE).update(citation=UK_FINAL)


def backwards(apps, schema_editor):
    Stage = apps.get_model("escalation", "RegimeStage")
    Stage.objects.filter(regime__key="uk-oir", key="final", citation=UK_FINAL).update(citation=UK_FINAL_BEFORE)


class Migration(migrations.Migration):
    dependencies = [("escalation", "0005_deadline_rto_breach")]

    operations = [migrations.RunPython(forwards, backwards)]
