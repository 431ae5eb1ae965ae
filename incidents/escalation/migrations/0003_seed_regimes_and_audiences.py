"""Seeds the reporting regimes (the procedures' windows as the default, DORA, the UK's) and the
audiences of status updates, and moves every existing obligation onto the default regime.

Regimes and audiences are policy (what the firm owes and to whom it speaks), so they are seeded
here; the distribution lists are people's addresses and are seeded with the demo data."""

from datetime import time, timedelta

from django.db import migrations

NOT_CHECKED = (
    " Cited from the texts as known when this was written and from the issue that asked for it; "
    "the portal's build had no access to the Official Journal or the regulators' sites to re-check "
    "the wording, so confirm it before relying on it."
)

REGIMES = [
    {
        "key": "procedures",
        "name": "The procedures' notification windows",
        "authority": "As the notification requires",
        "citation": (
            "TMT incident response procedures, Communication Protocols → External Communication → "
            "Regulatory Notifications (notification_requirements: immediate; within 24 hours; within a "
            "business day). Each category is raised on its own; its window runs from when it is raised."
        ),
        "effective_from": None,
        "is_default": True,
        "criteria": [],
        "moves_off_non_working_days": False,
        "moved_due_time": None,
        "stages": [
            {
                "key": "immediate",
                "name": "Immediate",
                "anchor": "classification",
                "within": timedelta(hours=1),
                "requires_sign_off": False,
                "citation": "Procedures: immediate (the category's grace, 1 hour unless set)",
            },
            {
                "key": "within_24h",
                "name": "Within 24 hours",
                "anchor": "classification",
                "within": timedelta(hours=24),
                "requires_sign_off": False,
                "citation": "Procedures: within_24_hours",
            },
            {
                "key": "business_day",
                "name": "Within a business day",
                "anchor": "classification",
                "within_working_days": 1,
                "requires_sign_off": False,
                "citation": "Procedures: within_business_day (close of the next business day)",
            },
        ],
    },
    {
        "key": "dora",
        "name": "DORA major ICT-related incident reporting",
        "authority": "The competent authority (Regulation (EU) 2022/2554, Art. 19)",
        "citation": (
            "Regulation (EU) 2022/2554 (DORA) Art. 19 and 20; Commission Delegated Regulation (EU) "
            "2025/301 (RTS on the content and time limits of the initial notification, intermediate "
            "and final reports), Art. 5: initial notification within 4 hours of classifying the "
            "incident as major and no later than 24 hours after becoming aware of it; intermediate "
            "report within 72 hours of the initial notification's submission; final report within one "
            "month of the latest (updated) intermediate report; a deadline on a weekend day or a bank "
            "holiday may be met by 12:00 noon of the next working day (not available to credit "
            "institutions, central counterparties, trading venue operators and other entities the RTS "
            "names: such a firm turns 'moves off non-working days' off). Classification criteria: "
            "Commission Delegated Regulation (EU) 2024/1772, Art. 1-9." + NOT_CHECKED
        ),
        "effective_from": "2025-01-17",
        "is_default": False,
        "criteria": [
            {"key": "clients", "label": "Clients, financial counterparts and transactions affected"},
            {"key": "data_losses", "label": "Data losses (availability, authenticity, integrity, confidentiality)"},
            {"key": "critical_services", "label": "Critical services affected"},
            {"key": "duration", "label": "Duration and service downtime"},
            {"key": "geographical_spread", "label": "Geographical spread (two or more Member States)"},
            {"key": "economic_impact", "label": "Economic impact"},
            {"key": "reputational_impact", "label": "Reputational impact"},
        ],
        "moves_off_non_working_days": True,
        "moved_due_time": time(12, 0),
        "stages": [
            {
                "key": "initial",
                "name": "Initial notification",
                "anchor": "classification",
                "within": timedelta(hours=4),
                "no_later_than_after_awareness": timedelta(hours=24),
                "citation": "Delegated Regulation (EU) 2025/301, Art. 5(1)(a)",
            },
            {
                "key": "intermediate",
                "name": "Intermediate report",
                "anchor": "previous_submission",
                "within": timedelta(hours=72),
                "reminder_before": timedelta(hours=6),
                "citation": "Delegated Regulation (EU) 2025/301, Art. 5(1)(b)",
            },
            {
                "key": "final",
                "name": "Final report",
                "anchor": "previous_submission",
                "within_months": 1,
                "reminder_before": timedelta(days=3),
                "citation": "Delegated Regulation (EU) 2025/301, Art. 5(1)(c)",
            },
        ],
    },
    {
        "key": "uk-oir",
        "name": "UK operational incident reporting (FCA/PRA PS26/2)",
        "authority": "FCA and PRA",
        "citation": (
            "FCA/PRA PS26/2, operational incident and third-party reporting, applying from 18 March "
            "2027 (consulted on as FCA CP24/28 and PRA CP17/24): an initial report within 24 hours of "
            "determining that the incident is reportable, intermediate reports as the incident "
            "develops (no fixed clock), and a final report within 30 working days of the incident's "
            "resolution. Reportability thresholds: intolerable harm to consumers, risk to market "
            "integrity, a threat to the firm's safety and soundness." + NOT_CHECKED
        ),
        "effective_from": "2027-03-18",
        "is_default": False,
        "criteria": [
            {"key": "consumer_harm", "label": "Intolerable harm to consumers"},
            {"key": "market_integrity", "label": "Risk to market integrity or the UK financial system"},
            {"key": "safety_soundness", "label": "Threat to the firm's safety and soundness"},
            {"key": "important_business_service", "label": "An important business service disrupted"},
        ],
        "moves_off_non_working_days": False,
        "moved_due_time": None,
        "stages": [
            {
                "key": "initial",
                "name": "Initial report",
                "anchor": "classification",
                "within": timedelta(hours=24),
                "citation": "PS26/2: within 24 hours of determining the incident is reportable",
            },
            {
                "key": "final",
                "name": "Final report",
                "anchor": "resolution",
                "within_working_days": 30,
                "reminder_before": timedelta(days=3),
                "citation": "PS26/2: within 30 working days",
            },
        ],
    },
]

AUDIENCES = [
    {
        "key": "internal",
        "name": "Internal teams",
        "order": 1,
        "guidance": "Regular status updates in the procedures' template (Internal Communication).",
        "subject_prefix": "[INCIDENT]",
        "include_commander": True,
    },
    {
        "key": "stakeholders",
        "name": "Stakeholders (executives, business)",
        "order": 2,
        "guidance": "Impact assessment and timeline (Communication Updates → Stakeholders).",
        "subject_prefix": "[INCIDENT BRIEFING]",
        "impact_template": "Impact assessment (Severity {severity}): {impact}",
        "details_template": (
            "Timeline:\n- Status now: {status}\n- Expected resolution: {eta}\n- Next update: {next_update}"
        ),
    },
    {
        "key": "regulators",
        "name": "Regulators",
        "order": 3,
        "guidance": (
            "If compliance implications exist (Communication Updates → Regulatory). Formal reports with "
            "their own clocks and sign-off are in the regulatory view; this is correspondence."
        ),
        "subject_prefix": "[REGULATORY NOTICE]",
        "impact_template": "Nature and impact of the incident: {impact}",
        "details_template": "Status: {status}. Expected resolution: {eta}. Next update: {next_update}.",
    },
    {
        "key": "users",
        "name": "Users",
        "order": 4,
        "guidance": (
            "In-app (the public status page) for immediate user-facing issues; email for planned "
            "maintenance or extended issues (User Communication)."
        ),
        "subject_prefix": "[SERVICE NOTICE]",
        "impact_template": "What you may notice: {impact}",
        "details_template": "We expect this to be resolved: {eta}. Next update: {next_update}.",
        "suggest_public": True,
    },
]


def seed(apps, schema_editor):
    Regime = apps.get_model("escalation", "RegulatoryRegime")
    Stage = apps.get_model("escalation", "RegimeStage")
    Obligation = apps.get_model("escalation", "RegulatoryObligation")
    Category = apps.get_model("escalation", "RegulatoryCategory")
    Audience = apps.get_model("escalation", "Audience")
    for data in REGIMES:
        data = dict(data)
        stages = data.pop("stages")
        regime, _ = Regime.objects.update_or_create(key=data.pop("key"), defaults=data)
        for order, stage in enumerate(stages, start=1):
            stage = dict(stage)
            Stage.objects.update_or_create(regime=regime, key=stage.pop("key"), defaults={"order": order, **stage})
    default = Regime.objects.get(is_default=True)
    by_window = {s.key: s for s in Stage.objects.filter(regime=default)}
    for category in Category.objects.all():
        Obligation.objects.filter(category=category).update(
            regime=default, stage=by_window[category.window]
        )
    for obligation in Obligation.objects.filter(clock_started_at=None).exclude(category=None):
        Obligation.objects.filter(pk=obligation.pk).update(clock_started_at=obligation.raised_at)
    for data in AUDIENCES:
        data = dict(data)
        Audience.objects.update_or_create(key=data.pop("key"), defaults=data)


class Migration(migrations.Migration):
    dependencies = [("escalation", "0002_regimes_audiences")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
