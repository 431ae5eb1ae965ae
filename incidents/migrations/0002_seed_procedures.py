"""Seeds the defaults of shared/seed/incident-response-procedures.md (editable in the admin)."""

from datetime import timedelta
from decimal import Decimal

from django.db import migrations

SEVERITIES = [
    dict(
        level=1,
        name="Critical",
        definition="Complete system outage or potential financial loss >$10,000",
        financial_threshold_usd=Decimal("10000"),
        threshold_inclusive=False,
        response_time=timedelta(minutes=5),
        status_update_interval=timedelta(minutes=30),
        examples="Complete trading system failure\nCircuit breaker malfunction\nMajor data breach or security incident\nRegulatory compliance violation",
    ),
    dict(
        level=2,
        name="High",
        definition="Significant system degradation or potential financial loss $1,000-$10,000",
        financial_threshold_usd=Decimal("1000"),
        threshold_inclusive=True,
        response_time=timedelta(minutes=15),
        status_update_interval=timedelta(hours=1),
        examples="Single agent failure\nExecution latency >500ms\nDatabase connection issues\nPlatform integration failures",
    ),
    dict(
        level=3,
        name="Medium",
        definition="Minor system issues with workarounds available",
        response_time=timedelta(hours=1),
        examples="Dashboard display issues\nNon-critical monitoring alerts\nPerformance degradation <20%\nMinor configuration issues",
    ),
    dict(
        level=4,
        name="Low",
        definition="Cosmetic issues or feature requests",
        response_next_business_day=True,
        examples="UI/UX improvements\nDocumentation updates\nMinor feature requests",
    ),
]

RPOS = [
    ("Trading data", timedelta(0)),
    ("Configuration data", timedelta(minutes=15)),
    ("Historical data", timedelta(hours=1)),
    ("Log data", timedelta(hours=4)),
]

# key, name, tier, RTO, RPO class, severity when down
SYSTEMS = [
    ("circuit_breaker", "Circuit Breaker Agent", "critical", timedelta(minutes=5), "Trading data", 1),
    ("risk_management", "Risk Management Agent", "critical", timedelta(minutes=10), "Trading data", 1),
    ("execution_engine", "Execution Engine", "critical", timedelta(minutes=15), "Trading data", 1),
    ("market_analysis", "Market Analysis Agent", "critical", timedelta(minutes=30), "Historical data", 2),
    ("dashboard", "Dashboard", "supporting", timedelta(hours=1), "Configuration data", 3),
    ("reporting", "Reporting", "supporting", timedelta(hours=4), "Historical data", 3),
    ("analytics", "Analytics", "supporting", timedelta(hours=24), "Historical data", 4),
    ("database", "Database", "infrastructure", timedelta(minutes=30), "Trading data", 1),
    ("message_broker", "Message Broker", "infrastructure", timedelta(minutes=15), "Trading data", 1),
    ("monitoring", "Monitoring", "infrastructure", timedelta(hours=1), "Log data", 2),
]

PHASES = [
    ("detection", timedelta(minutes=15), "detection → acknowledged with initial assessment"),
    ("containment", timedelta(minutes=60), "detection → contained"),
    ("recovery", timedelta(hours=24), "detection → resolved"),
    ("review", timedelta(hours=72), "resolution → review approved"),
]

# slug, name, attach on state, category, gates containment, items
CHECKLISTS = [
    ("initial-assessment", "Initial assessment", "detected", "", True, [
        "Severity level determination",
        "Affected systems identification",
        "User impact assessment",
        "Financial risk evaluation",
        "Immediate safety measures needed",
    ]),
    ("immediate-actions", "Immediate actions", "detected", "", False, [
        "Acknowledge alert: acknowledge monitoring alerts",
        "Safety first: initiate emergency stop if needed",
        "Preserve evidence: capture logs and system state",
        "Initial communication: notify response team",
        "Start tracking: create incident ticket",
    ]),
    ("security-immediate-actions", "Security incident: immediate actions", "detected", "security", False, [
        "Isolate affected systems: network isolation if needed",
        "Preserve evidence: capture forensic data",
        "Change credentials: rotate potentially compromised credentials",
        "Notify authorities: if legally required",
        "Document everything: detailed incident logging",
    ]),
    ("containment-actions", "Containment actions", "investigating", "", False, [
        "Isolate affected systems: prevent spread of issues",
        "Implement workarounds: temporary fixes if available",
        "Backup current state: preserve system state for analysis",
        "Monitor key metrics: continuous monitoring during response",
    ]),
    ("recovery-system-restart", "Recovery: system restart", "recovering", "", False, [
        "Stop affected services gracefully",
        "Clear temporary data if needed",
        "Restart services in correct order",
        "Verify system health",
    ]),
    ("recovery-data", "Recovery: data recovery", "recovering", "", False, [
        "Identify data corruption scope",
        "Restore from backup if needed",
        "Verify data integrity",
        "Reconcile transactions",
    ]),
    ("recovery-configuration", "Recovery: configuration fixes", "recovering", "", False, [
        "Identify configuration issues",
        "Test fixes in staging",
        "Apply fixes to production",
        "Monitor for stability",
    ]),
    ("testing-validation", "Testing and validation", "recovering", "", False, [
        "Functional testing: verify core functionality",
        "Performance testing: ensure performance standards",
        "Integration testing: validate external connections",
        "User acceptance: confirm user functionality",
    ]),
    ("gradual-restoration", "Gradual restoration", "recovering", "", False, [
        "Core systems: restore essential trading functions",
        "Monitoring: re-enable full monitoring",
        "Additional features: restore non-critical features",
        "Full operations: resume normal operations",
    ]),
]


def seed(apps, schema_editor):
    SeverityLevel = apps.get_model("incidents", "SeverityLevel")
    RecoveryPointObjective = apps.get_model("incidents", "RecoveryPointObjective")
    System = apps.get_model("incidents", "System")
    PhaseTarget = apps.get_model("incidents", "PhaseTarget")
    ChecklistTemplate = apps.get_model("incidents", "ChecklistTemplate")
    ChecklistTemplateItem = apps.get_model("incidents", "ChecklistTemplateItem")

    levels = {}
    for row in SEVERITIES:
        level, _ = SeverityLevel.objects.update_or_create(level=row["level"], defaults=row)
        levels[level.level] = level
    rpos = {}
    for name, rpo in RPOS:
        rpos[name], _ = RecoveryPointObjective.objects.update_or_create(name=name, defaults={"rpo": rpo})
    for key, name, tier, rto, rpo, sev in SYSTEMS:
        System.objects.update_or_create(
            key=key,
            defaults=dict(name=name, tier=tier, rto=rto, rpo_class=rpos[rpo], outage_severity=levels[sev]),
        )
    for phase, target, measured_from in PHASES:
        PhaseTarget.objects.update_or_create(
            phase=phase, defaults={"target": target, "measured_from": measured_from}
        )
    for order, (slug, name, state, category, gates, items) in enumerate(CHECKLISTS):
        template, _ = ChecklistTemplate.objects.update_or_create(
            slug=slug,
            defaults=dict(
                name=name, attach_on_state=state, category=category, gates_containment=gates, order=order
            ),
        )
        if not template.items.exists():
            ChecklistTemplateItem.objects.bulk_create(
                ChecklistTemplateItem(template=template, text=text, order=i) for i, text in enumerate(items)
            )


class Migration(migrations.Migration):
    dependencies = [("incidents", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
