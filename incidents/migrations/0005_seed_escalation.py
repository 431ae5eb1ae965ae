"""Seeds the escalation defaults of the procedures document (editable in the admin)."""

from datetime import timedelta
from decimal import Decimal

from django.db import migrations

# key, name, role, condition, severity level, open for, amount
TRIGGERS = [
    ("cto-sev1", "Severity 1 incident: CTO at once", "CTO", "severity", 1, None, None),
    ("cto-prolonged-sev2", "Prolonged Severity 2 incident: CTO", "CTO", "open_for", 2, timedelta(hours=2), None),
    ("head-of-risk-financial", "Financial impact above $5,000: Head of Risk Management", "Head of Risk Management",
     "financial_impact", None, None, Decimal("5000")),
    ("head-of-risk-compliance", "Compliance issue: Head of Risk Management", "Head of Risk Management",
     "compliance", None, None, None),
    ("ceo-sev1-2h", "Severity 1 incident lasting over 2 hours: CEO", "CEO", "open_for", 1, timedelta(hours=2), None),
]

# key, name, window, immediate grace, reminder before, is compliance, raised automatically
REGULATORY = [
    ("market-manipulation", "Market manipulation suspicion", "immediate", timedelta(hours=1), timedelta(minutes=30), True, False),
    ("major-security-breach", "Major security breach", "immediate", timedelta(hours=1), timedelta(minutes=30), True, False),
    ("compliance-violation", "Compliance violation", "immediate", timedelta(hours=1), timedelta(minutes=30), True, False),
    ("significant-trading-losses", "Significant trading losses", "within_24h", None, timedelta(hours=4), False, False),
    ("outage_over_4h", "System outage longer than 4 hours", "within_24h", None, timedelta(hours=4), False, True),
    ("data-integrity", "Data integrity issues", "within_24h", None, timedelta(hours=4), False, False),
    ("minor-compliance", "Minor compliance issue", "business_day", None, timedelta(hours=2), True, False),
    ("resolved_security_incident", "Resolved security incident", "business_day", None, timedelta(hours=2), False, True),
    ("performance-affecting-compliance", "Performance issue affecting compliance", "business_day", None,
     timedelta(hours=2), True, False),
]

# order, delay after the previous step, target, role
CHAIN = [
    (1, timedelta(0), "on_call", "On-Call Engineer"),
    (2, timedelta(minutes=5), "on_call_deputy", "On-Call Engineer"),
    (3, timedelta(minutes=5), "role", "Incident Manager"),
]


def seed(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    EscalationPolicy = apps.get_model("incidents", "EscalationPolicy")
    EscalationStep = apps.get_model("incidents", "EscalationStep")
    EscalationTrigger = apps.get_model("incidents", "EscalationTrigger")
    RegulatoryCategory = apps.get_model("incidents", "RegulatoryCategory")

    def group(name):
        # Groups are also synchronised after migrate (incidents.roles); create them here so the
        # seeded rows can point at them on a fresh database.
        return Group.objects.get_or_create(name=name)[0]

    policy, _ = EscalationPolicy.objects.update_or_create(
        name="Unacknowledged incident",
        defaults={"is_default": True, "status_update_escalate_after": timedelta(minutes=15)},
    )
    if not policy.steps.exists():
        for order, delay, target, role in CHAIN:
            EscalationStep.objects.create(policy=policy, order=order, delay=delay, target=target, role=group(role))
    for key, name, role, condition, level, open_for, amount in TRIGGERS:
        EscalationTrigger.objects.update_or_create(
            key=key,
            defaults=dict(name=name, role=group(role), condition=condition, severity_level=level,
                          open_for=open_for, amount_usd=amount),
        )
    for key, name, window, grace, reminder, compliance, auto in REGULATORY:
        RegulatoryCategory.objects.update_or_create(
            key=key,
            defaults=dict(name=name, window=window, immediate_grace=grace, reminder_before=reminder,
                          is_compliance=compliance, raised_automatically=auto),
        )


TRIGGER_SQL = (
    "CREATE TRIGGER incidents_notificationattempt_append_only BEFORE UPDATE OR DELETE "
    "ON incidents_notificationattempt FOR EACH ROW EXECUTE FUNCTION tmt_refuse_append_only_change()"
)


def append_only(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER_SQL)


def drop_append_only(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP TRIGGER IF EXISTS incidents_notificationattempt_append_only ON incidents_notificationattempt"
        )


class Migration(migrations.Migration):
    dependencies = [("incidents", "0004_escalation_engine"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [
        migrations.RunPython(seed, migrations.RunPython.noop),
        migrations.RunPython(append_only, drop_append_only),
    ]
