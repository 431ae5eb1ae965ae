"""The seed's investigation commands (Phase 2.1) as diagnostic probes, editable in the admin."""

from django.db import migrations

PROBES = [
    # curl -f http://localhost:800N/health
    {"name": "Circuit breaker /health", "kind": "http", "url": "http://localhost:8001/health", "order": 10},
    {"name": "Market analysis /health", "kind": "http", "url": "http://localhost:8002/health", "order": 11},
    {"name": "Risk management /health", "kind": "http", "url": "http://localhost:8003/health", "order": 12},
    {"name": "Circuit breaker emergency status", "kind": "http", "url": "http://localhost:8001/api/v1/emergency-status", "order": 13},
    # top / df -h / free -m
    {"name": "Host resources", "kind": "host", "path": "/", "order": 20},
    # tail -f /var/log/tmt/*.log
    {"name": "system.log", "kind": "log_tail", "path": "/var/log/tmt/system.log", "lines": 200, "order": 30},
    {"name": "trading.log", "kind": "log_tail", "path": "/var/log/tmt/trading.log", "lines": 200, "order": 31},
    {"name": "errors.log", "kind": "log_tail", "path": "/var/log/tmt/errors.log", "lines": 200, "order": 32},
    # psql -h localhost -U tmt_user -d tmt_production -c "SELECT version();"
    {
        "name": "Trading database",
        "kind": "postgres",
        "host": "localhost",
        "port": 5432,
        "database": "tmt_production",
        "username": "tmt_user",
        "password_env": "TMT_TRADING_DB_PASSWORD",
        "order": 40,
    },
    # curl -f https://api-fxtrade.oanda.com/v3/accounts
    {"name": "Broker API (TLS)", "kind": "tls", "host": "api-fxtrade.oanda.com", "port": 443, "order": 50},
    {
        "name": "Broker API accounts",
        "kind": "http",
        "url": "https://api-fxtrade.oanda.com/v3/accounts",
        "headers": {"Authorization": "TMT_BROKER_API_AUTHORIZATION"},
        "order": 51,
    },
]


def seed(apps, schema_editor):
    probe_model = apps.get_model("monitoring", "DiagnosticProbe")
    for probe in PROBES:
        probe_model.objects.get_or_create(name=probe["name"], defaults=probe)


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0002_trading_halt_and_state_capture")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
