"""The seed's investigation commands as health targets (editable in the admin)."""

from datetime import timedelta

from django.db import migrations

TARGETS = [
    ("Circuit Breaker Agent", "http://localhost:8001/health", "circuit_breaker"),
    ("Market Analysis Agent", "http://localhost:8002/health", "market_analysis"),
    ("Risk Management Agent", "http://localhost:8003/health", "risk_management"),
]


def seed(apps, schema_editor):
    HealthTarget = apps.get_model("incidents", "HealthTarget")
    System = apps.get_model("incidents", "System")
    for name, url, system in TARGETS:
        HealthTarget.objects.update_or_create(
            name=name,
            defaults=dict(
                url=url,
                system=System.objects.get(key=system),
                interval=timedelta(seconds=10),
                timeout=timedelta(seconds=2),
                failures_before_down=3,
                latency_threshold_ms=500,
            ),
        )


class Migration(migrations.Migration):
    dependencies = [("incidents", "0006_health_api")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
