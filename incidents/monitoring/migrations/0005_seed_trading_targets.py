"""The trading systems the seed names but nothing checked: the execution engine's /health and the
trading database (connect + SELECT 1). Editable in the admin afterwards.

The trading database's address comes from TMT_TRADING_DATABASE_URL when this runs (the demo and
the tests point it at the portal's own PostgreSQL); any password in it is dropped, the check
reads TMT_TRADING_DB_PASSWORD instead.
"""

from datetime import timedelta
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import migrations


def _trading_database() -> dict:
    parts = urlsplit(settings.TMT_TRADING_DATABASE_URL)
    return {
        "kind": "postgres",
        "host": parts.hostname or "localhost",
        "port": parts.port or 5432,
        "database": unquote(parts.path.lstrip("/")) or "tmt_production",
        "username": unquote(parts.username or "tmt_user"),
        "password_env": "TMT_TRADING_DB_PASSWORD",
    }


def seed(apps, schema_editor):
    HealthTarget = apps.get_model("monitoring", "HealthTarget")
    System = apps.get_model("incidents", "System")
    common = dict(
        interval=timedelta(seconds=10), timeout=timedelta(seconds=2), failures_before_down=3, latency_threshold_ms=500
    )
    if System.objects.filter(key="execution_engine").exists():
        HealthTarget.objects.get_or_create(
            name="Execution Engine",
            defaults=dict(
                kind="http",
                url=settings.TMT_EXECUTION_ENGINE_HEALTH_URL,
                json_path="status",
                json_expected="healthy",
                expected_status=200,
                system=System.objects.get(key="execution_engine"),
                **common,
            ),
        )
    if System.objects.filter(key="database").exists():
        HealthTarget.objects.get_or_create(
            name="Trading Database",
            defaults=dict(_trading_database(), system=System.objects.get(key="database"), **common),
        )


def unseed(apps, schema_editor):
    HealthTarget = apps.get_model("monitoring", "HealthTarget")
    HealthTarget.objects.filter(name__in=["Execution Engine", "Trading Database"], samples__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0004_health_target_kinds"), ("incidents", "0002_seed_procedures")]

    operations = [migrations.RunPython(seed, unseed)]
