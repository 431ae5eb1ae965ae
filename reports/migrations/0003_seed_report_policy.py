from datetime import timedelta

from django.db import migrations


def seed(apps, schema_editor):
    # The reminder timings are data, editable in the admin (DESIGN.md: no buried constants).
    ReportPolicy = apps.get_model("reports", "ReportPolicy")
    ReportPolicy.objects.get_or_create(
        pk=1,
        defaults={
            "review_reminder_before": timedelta(hours=24),
            "review_escalate_after": timedelta(hours=24),
            "action_item_reminder_before": timedelta(days=2),
            "action_item_escalate_after": timedelta(days=3),
        },
    )


class Migration(migrations.Migration):

    dependencies = [
        ("reports", "0002_review_freeze_renders_policy"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
