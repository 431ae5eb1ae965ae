"""The seed's recovery procedures as runbooks, each step citing the section it comes from.

Sections of seed/incident-response-procedures.md: 3.1 Recovery Planning (recovery_procedures:
system_restart, data_recovery, configuration_fixes), 3.2 Testing and Validation, 3.3 Gradual
Restoration; the commands are the seed's own, from 2.1 Detailed Investigation, the Emergency Stop
Process and the Emergency Backup Process. Revision 1 of each is approved at migration time with
no author: it is the procedure document itself, not anyone's proposal.
"""

from django.db import migrations
from django.utils import timezone

RESTART = "3.1 Recovery Planning › system_restart"
DATA = "3.1 Recovery Planning › data_recovery"
CONFIG = "3.1 Recovery Planning › configuration_fixes"
TESTING = "3.2 Testing and Validation"
RESTORE = "3.3 Gradual Restoration"
INVESTIGATE = "2.1 Detailed Investigation"
STOP = "Emergency Procedures › Emergency Stop Process"
BACKUP = "Emergency Procedures › Emergency Backup Process"

LOGS = "tail -f /var/log/tmt/system.log\ntail -f /var/log/tmt/trading.log\ntail -f /var/log/tmt/errors.log"
AGENTS_HEALTH = (
    "curl -f http://localhost:8001/health  # Circuit Breaker\n"
    "curl -f http://localhost:8002/health  # Market Analysis\n"
    "curl -f http://localhost:8003/health  # Risk Management"
)
DB_CHECK = 'psql -h localhost -U tmt_user -d tmt_production -c "SELECT version();"'


def _restart(name: str, port: int) -> list[dict]:
    return [
        {
            "title": "Stop affected services gracefully",
            "instructions": f"Stop the {name} gracefully. Trading stays halted while it is down: check the "
            "emergency stop still holds.",
            "commands": "curl -f http://localhost:8001/api/v1/emergency-status",
            "source": f"{RESTART}; command: {STOP}",
        },
        {
            "title": "Clear temporary data if needed",
            "instructions": "Clear the agent's temporary data only when it is part of the fault; keep a copy as "
            "evidence first.",
            "source": RESTART,
        },
        {
            "title": "Restart services in correct order",
            "instructions": "Infrastructure first (database, message broker), then the agents.",
            "commands": 'top -p $(pgrep -f "tmt")\ndf -h\nfree -m',
            "source": f"{RESTART}; commands: {INVESTIGATE} › Check system resources",
        },
        {
            "title": "Verify system health",
            "instructions": f"The {name}'s health endpoint answers and its logs show no new errors.",
            "commands": f"curl -f http://localhost:{port}/health\n{LOGS}",
            "source": f"{RESTART}; commands: {INVESTIGATE} › Check agent status, Review recent logs",
        },
    ]


RUNBOOKS = [
    ("circuit-breaker-restart", "Circuit breaker restart", "system_restart", "circuit_breaker",
     _restart("Circuit Breaker Agent", 8001)),
    ("market-analysis-restart", "Market analysis agent restart", "system_restart", "market_analysis",
     _restart("Market Analysis Agent", 8002)),
    ("risk-management-restart", "Risk management agent restart", "system_restart", "risk_management",
     _restart("Risk Management Agent", 8003)),
    ("database-data-recovery", "Trading database data recovery", "data_recovery", "database", [
        {"title": "Identify data corruption scope", "commands": DB_CHECK,
         "instructions": "Which tables and which time range are affected; is the database reachable at all.",
         "source": f"{DATA}; command: {INVESTIGATE} › Check database connectivity"},
        {"title": "Backup current state", "instructions": "Dump the database as it is before restoring anything.",
         "commands": "sudo -u postgres pg_dump tmt_production > /backup/emergency_$(date +%Y%m%d_%H%M%S).sql",
         "source": f"2.2 Containment Actions › Backup Current State; command: {BACKUP}"},
        {"title": "Restore from backup if needed", "commands": "./scripts/verify-backup-integrity.sh",
         "instructions": "Verify the backup's integrity before restoring from it.", "source": f"{DATA}; command: {BACKUP}"},
        {"title": "Verify data integrity", "commands": DB_CHECK, "source": DATA},
        {"title": "Reconcile transactions", "instructions": "Reconcile trades and positions against the broker.",
         "commands": "curl -f https://api-fxtrade.oanda.com/v3/accounts",
         "source": f"{DATA}; command: {INVESTIGATE} › Verify external connections"},
    ]),
    ("configuration-fixes", "Configuration fixes", "configuration_fixes", None, [
        {"title": "Identify configuration issues", "instructions": "Back up the configuration before changing it.",
         "commands": "tar -czf /backup/config_emergency_$(date +%Y%m%d_%H%M%S).tar.gz /etc/tmt/",
         "source": f"{CONFIG}; command: {BACKUP}"},
        {"title": "Test fixes in staging", "source": CONFIG},
        {"title": "Apply fixes to production", "source": CONFIG},
        {"title": "Monitor for stability", "commands": LOGS, "source": f"{CONFIG}; commands: {INVESTIGATE} › Review recent logs"},
    ]),
    ("testing-and-validation", "Testing and validation", "testing_validation", None, [
        {"title": "Functional testing", "instructions": "Verify core functionality.", "commands": AGENTS_HEALTH,
         "source": f"{TESTING}; commands: {INVESTIGATE} › Check agent status"},
        {"title": "Performance testing", "instructions": "Ensure performance standards (execution latency under 500 ms).",
         "source": TESTING},
        {"title": "Integration testing", "instructions": "Validate external connections.",
         "commands": "curl -f https://api-fxtrade.oanda.com/v3/accounts",
         "source": f"{TESTING}; command: {INVESTIGATE} › Verify external connections"},
        {"title": "User acceptance", "instructions": "Confirm user functionality.", "source": TESTING},
    ]),
    ("gradual-restoration", "Gradual restoration", "gradual_restoration", None, [
        {"title": "Core systems", "instructions": "Restore essential trading functions.", "restores": True, "source": RESTORE},
        {"title": "Monitoring", "instructions": "Re-enable full monitoring.", "restores": True, "source": RESTORE},
        {"title": "Additional features", "instructions": "Restore non-critical features.", "restores": True,
         "source": RESTORE},
        {"title": "Full operations", "instructions": "Resume normal operations.", "restores": True, "source": RESTORE},
    ]),
]


def seed(apps, schema_editor):
    Runbook = apps.get_model("runbooks", "Runbook")
    RunbookRevision = apps.get_model("runbooks", "RunbookRevision")
    RunbookStep = apps.get_model("runbooks", "RunbookStep")
    System = apps.get_model("incidents", "System")
    now = timezone.now()
    for key, title, procedure, system_key, steps in RUNBOOKS:
        system = System.objects.filter(key=system_key).first() if system_key else None
        runbook, created = Runbook.objects.get_or_create(
            key=key, defaults={"title": title, "procedure": procedure, "system": system, "created_at": now}
        )
        if not created:
            continue
        revision = RunbookRevision.objects.create(
            runbook=runbook,
            number=1,
            state="approved",
            summary="From the incident response procedures.",
            created_at=now,
            approved_at=now,
        )
        for position, step in enumerate(steps, start=1):
            RunbookStep.objects.create(
                revision=revision,
                position=position,
                title=step["title"],
                instructions=step.get("instructions", ""),
                commands=step.get("commands", ""),
                records_restoration=step.get("restores", False),
                source=step["source"],
            )
        runbook.current_revision = revision
        runbook.save(update_fields=["current_revision"])


class Migration(migrations.Migration):
    dependencies = [("runbooks", "0001_initial"), ("incidents", "0018_seed_portal_ticks")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
