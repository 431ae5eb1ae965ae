"""Seeds the seed document's "Training and Drills" section (every row editable in the admin).

Drill kinds: the four monthly fire drills and four quarterly exercises, each with a default
scenario, objectives and target times (taken from the seed's RTOs, response times and phase
targets); certification kinds: incident response training and the annual certification, required
for the primary response team; the training policy row; and the response procedures themselves as
version 1, read from a copy kept beside this app (drills/seed/) so the migration does not depend
on anything outside the repository.
"""

from datetime import timedelta
from pathlib import Path

from django.db import migrations
from django.utils import timezone

PROCEDURES_V1 = Path(__file__).resolve().parent.parent / "seed" / "incident-response-procedures-v1.md"
RESPONSE_TEAM = ["On-Call Engineer", "Risk Manager", "System Administrator"]

M = timedelta(minutes=1)

# key, name, cadence, description, scenario, objectives, duration, severity level, category,
# systems, measures emergency stop, targets [(name, target, measure)]
KINDS = [
    (
        "trading-emergency-stop", "Trading emergency stop", "monthly",
        "Practice emergency stop procedures",
        "Suspicious trading activity is reported on the execution engine and risk management decides to "
        "halt all trading. The on-call engineer triggers the emergency stop through the Circuit Breaker "
        "Agent, verifies the emergency status and decides whether positions must be closed manually.",
        "Trigger the emergency stop via the Circuit Breaker Agent\n"
        "Verify the emergency stop status (trading halted)\n"
        "Notify the response team and record the stop on the incident timeline\n"
        "Decide whether manual position closure is needed",
        30 * M, 1, "operational", ["circuit_breaker"], True,
        [("Time to verified emergency stop", 5 * M, "emergency_stop"), ("Page acknowledged", 5 * M, "manual")],
    ),
    (
        "communication-test", "Communication test", "monthly",
        "Test escalation and communication",
        "A Severity 1 outage is declared. The on-call engineer is paged, the escalation chain runs, and the "
        "first status update goes to the distribution list using the status update template.",
        "Every participant acknowledges the page\n"
        "Escalation reaches the incident manager\n"
        "First status update sent using the template\n"
        "Contact details verified for every participant",
        30 * M, 1, "operational", ["dashboard"], False,
        [("Page acknowledged", 5 * M, "manual"), ("First status update sent", 30 * M, "manual")],
    ),
    (
        "recovery-procedures", "Recovery procedures", "monthly",
        "Practice system recovery",
        "The Risk Management Agent has crashed and does not restart cleanly. Recover it with the system "
        "restart, data recovery and configuration fix procedures, then test, validate and restore gradually.",
        "Stop affected services gracefully and restart them in the correct order\n"
        "Verify data integrity and reconcile transactions\n"
        "Complete testing and validation before restoring\n"
        "Restore within the system's recovery time objective",
        60 * M, 2, "operational", ["risk_management"], False,
        [("Risk Management Agent restored (RTO)", 10 * M, "manual"), ("Testing and validation complete", 30 * M, "manual")],
    ),
    (
        "role-playing", "Role-playing", "monthly",
        "Different incident scenarios",
        "The facilitator plays out an incident as it unfolds (for example execution latency above 500 ms at "
        "market open); each participant takes a response-team role and works the incident in the portal.",
        "Initial assessment checklist completed\n"
        "Severity determined and a commander assigned\n"
        "Containment reached\n"
        "Roles and responsibilities followed",
        60 * M, 2, "operational", ["execution_engine"], False,
        [("Initial assessment complete", 15 * M, "manual"), ("Contained", 60 * M, "manual")],
    ),
    (
        "disaster-recovery", "Disaster recovery", "quarterly",
        "Full disaster recovery testing",
        "The primary database host is lost during trading hours. Take an emergency backup of what remains, "
        "restore from backup, verify integrity, and bring the critical systems back within their RTOs.",
        "Emergency backup taken and its integrity verified\n"
        "Database restored within its RTO (30 minutes)\n"
        "No trading data lost (RPO 0 minutes)\n"
        "Critical systems restored in order within their RTOs",
        240 * M, 1, "data", ["database", "circuit_breaker", "risk_management", "execution_engine"], False,
        [("Database restored (RTO)", 30 * M, "manual"), ("Message broker restored (RTO)", 15 * M, "manual"),
         ("Critical trading systems restored", 60 * M, "manual")],
    ),
    (
        "security-incident", "Security incident", "quarterly",
        "Security breach simulation",
        "Credentials of a trading API key appear on a paste site and unusual orders are observed. Isolate "
        "the affected systems, preserve evidence, rotate credentials and decide whether authorities must be notified.",
        "Affected systems isolated\n"
        "Forensic evidence preserved\n"
        "Potentially compromised credentials rotated\n"
        "Notification decision recorded",
        120 * M, 1, "security", ["execution_engine"], False,
        [("Affected systems isolated", 15 * M, "manual"), ("Credentials rotated", 60 * M, "manual")],
    ),
    (
        "multi-system-failure", "Multi-system failure", "quarterly",
        "Complex incident scenarios",
        "The message broker fails during market hours; the market analysis and risk management agents stop "
        "receiving data and the dashboard shows stale positions. Coordinate a response across teams.",
        "Impact assessed across every affected system\n"
        "Contained within 60 minutes\n"
        "Recovered in the right order (infrastructure first)\n"
        "Status updates on the Severity 1 cadence",
        180 * M, 1, "operational", ["message_broker", "market_analysis", "risk_management", "dashboard"], False,
        [("Contained", 60 * M, "manual"), ("Message broker restored (RTO)", 15 * M, "manual")],
    ),
    (
        "regulatory-incident", "Regulatory incident", "quarterly",
        "Compliance violation scenarios",
        "A trade reporting failure means two hours of transactions were not reported to the regulator. Assess "
        "the compliance impact, involve the Head of Risk Management and prepare the regulatory notification.",
        "Compliance impact assessed\n"
        "Head of Risk Management engaged\n"
        "Regulatory notification prepared within its window\n"
        "User communication drafted",
        120 * M, 2, "compliance", ["reporting"], False,
        [("Head of Risk Management engaged", 15 * M, "manual"), ("Regulatory notification drafted", 60 * M, "manual")],
    ),
]

CERTIFICATIONS = [
    (
        "incident-response-training", "Incident response training", None,
        "All response team members must complete incident response training.",
    ),
    (
        "annual-certification", "Annual certification", 12,
        "Annual certification required for all team members; expires after 12 months.",
    ),
]


def seed(apps, schema_editor):
    DrillKind = apps.get_model("drills", "DrillKind")
    DrillKindTarget = apps.get_model("drills", "DrillKindTarget")
    CertificationKind = apps.get_model("drills", "CertificationKind")
    TrainingPolicy = apps.get_model("drills", "TrainingPolicy")
    ProcedureDocument = apps.get_model("drills", "ProcedureDocument")
    SeverityLevel = apps.get_model("incidents", "SeverityLevel")
    System = apps.get_model("incidents", "System")
    Group = apps.get_model("auth", "Group")

    for order, row in enumerate(KINDS):
        key, name, cadence, description, scenario, objectives, duration, level, category, systems, stop, targets = row
        kind, _ = DrillKind.objects.update_or_create(
            key=key,
            defaults=dict(
                name=name,
                cadence=cadence,
                description=description,
                default_scenario=scenario,
                default_objectives=objectives,
                default_duration=duration,
                opens_incident=True,
                incident_severity=SeverityLevel.objects.filter(level=level).first(),
                incident_category=category,
                measures_emergency_stop=stop,
                order=order,
            ),
        )
        kind.incident_systems.set(System.objects.filter(key__in=systems))
        for t_order, (t_name, target, measure) in enumerate(targets):
            DrillKindTarget.objects.update_or_create(
                kind=kind, name=t_name, defaults=dict(target=target, measure=measure, order=t_order)
            )

    # The groups are normally made after migrate (incidents.roles); made here if not there yet,
    # so the requirement can point at them.
    team = [Group.objects.get_or_create(name=name)[0] for name in RESPONSE_TEAM]
    for order, (key, name, months, description) in enumerate(CERTIFICATIONS):
        kind, _ = CertificationKind.objects.update_or_create(
            key=key, defaults=dict(name=name, validity_months=months, description=description, order=order)
        )
        kind.required_for.set(team)

    TrainingPolicy.objects.get_or_create(pk=1)

    if not ProcedureDocument.objects.filter(version=1).exists():
        ProcedureDocument.objects.create(
            version=1,
            title="Incident Response Procedures",
            body=PROCEDURES_V1.read_text(encoding="utf-8"),
            summary_of_changes="First version: the procedures the portal was built from.",
            published_at=timezone.now(),
        )


class Migration(migrations.Migration):
    dependencies = [("drills", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
