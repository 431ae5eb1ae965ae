"""Phase 1 (detection and initial response) is measured against each severity's response time,
the same rule as the response-time SLA, so its own flat 15-minute target row goes: kept, it
would be a second answer to the same question (and an edit to it would change nothing).
Nothing reads the row any more; a value an admin had tuned is dropped with it, and going back
puts the seeded 15 minutes back, not that value."""

from datetime import timedelta

from django.db import migrations


def drop_detection_target(apps, schema_editor):
    apps.get_model("incidents", "PhaseTarget").objects.filter(phase="detection").delete()


def restore_detection_target(apps, schema_editor):
    apps.get_model("incidents", "PhaseTarget").objects.get_or_create(
        phase="detection",
        defaults={
            "target": timedelta(minutes=15),
            "measured_from": "detection → acknowledged with initial assessment",
        },
    )


class Migration(migrations.Migration):
    dependencies = [("incidents", "0015_move_models_to_sub_apps")]

    operations = [migrations.RunPython(drop_detection_target, restore_detection_target)]
