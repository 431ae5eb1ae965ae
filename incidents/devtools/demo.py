"""A realistic month of demo data, written the way a real month would be: through the services.

`manage.py seed_demo` calls `seed_demo()`. Every incident is opened, worked and closed through
incidents.services with past times, so the timeline, checklists, guards and reference numbers
are exactly what the app would have produced. Post-incident reviews go through reports.services
and the team's training records (which the readiness gate checks) through drills.services.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from drills import selectors as drill_selectors
from drills import services as drill_services
from drills.models import Certification
from incidents import roles, services
from incidents.api.models import AlertIntegration
from incidents.api.services.api_tokens import alert_integration_issue_token
from incidents.devtools.demo_backups import ensure_demo_backup_sources
from incidents.devtools.demo_status import ensure_demo_regulatory, ensure_demo_status_page
from incidents.escalation.models import Audience
from incidents.models import (
    OPEN_STATES,
    Category,
    DetectionMethod,
    Incident,
    IncidentChecklistItem,
    SeverityLevel,
    State,
    System,
    TimelineEntry,
)
from incidents.monitoring.models import HealthTarget
from incidents.notifications.models import DistributionList
from incidents.oncall.models import OnCallRotation, Person, RoleContact, RotationMember
from reports import services as report_services
from reports.models import PostIncidentReview

# Public by design: the README tells people to log in with it.
DEMO_PASSWORD = "tmt-demo-2026"  # noqa: S105
DEFAULT_SEED = 2026
DEFAULT_INCIDENTS = 40
DEFAULT_DAYS = 30


# -- people ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    last_name: str
    role: str
    is_staff: bool = False


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("priya.raman", "Priya", "Raman", roles.ON_CALL_ENGINEER),
    DemoUser("marcus.oneill", "Marcus", "O'Neill", roles.ON_CALL_ENGINEER),
    DemoUser("lena.fischer", "Lena", "Fischer", roles.ON_CALL_ENGINEER),
    DemoUser("daniel.okafor", "Daniel", "Okafor", roles.RISK_MANAGER),
    DemoUser("tomas.novak", "Tomáš", "Novák", roles.SYSTEM_ADMINISTRATOR),
    DemoUser("sofia.alvarez", "Sofia", "Álvarez", roles.SYSTEM_ADMINISTRATOR),
    DemoUser("hannah.brooks", "Hannah", "Brooks", roles.INCIDENT_MANAGER, is_staff=True),
    DemoUser("kenji.watanabe", "Kenji", "Watanabe", roles.INCIDENT_MANAGER, is_staff=True),
    DemoUser("rachel.stein", "Rachel", "Stein", roles.CTO),
    DemoUser("omar.haddad", "Omar", "Haddad", roles.HEAD_OF_RISK),
    DemoUser("catherine.moreau", "Catherine", "Moreau", roles.CEO),
    DemoUser("grace.lindqvist", "Grace", "Lindqvist", roles.TRAINER),
)
ADMIN_USERNAME = "admin"
EMAIL_DOMAIN = "tmt.example"


@dataclass(frozen=True)
class UserRow:
    username: str
    role: str
    created: bool


def ensure_demo_users(*, password: str = DEMO_PASSWORD) -> tuple[dict[str, list], list[UserRow]]:
    """get_or_create every demo user; an existing user keeps their password."""
    roles.ensure_role_groups()
    # One hash for everyone: hashing is deliberately slow, and this password is public anyway.
    hashed = make_password(password)
    groups = {g.name: g for g in Group.objects.filter(name__in=roles.ROLE_PERMISSIONS)}
    User = get_user_model()
    by_role: dict[str, list] = {role: [] for role in roles.ROLE_PERMISSIONS}
    rows: list[UserRow] = []

    admin, created = User.objects.get_or_create(
        username=ADMIN_USERNAME,
        defaults={"email": f"{ADMIN_USERNAME}@{EMAIL_DOMAIN}", "is_staff": True, "is_superuser": True},
    )
    if created:
        admin.password = hashed
        admin.save(update_fields=["password"])
    rows.append(UserRow(ADMIN_USERNAME, "Superuser", created))

    for spec in DEMO_USERS:
        user, created = User.objects.get_or_create(
            username=spec.username,
            defaults={
                "first_name": spec.first_name,
                "last_name": spec.last_name,
                "email": f"{spec.username}@{EMAIL_DOMAIN}",
                "is_staff": spec.is_staff,
            },
        )
        if created:
            user.password = hashed
            user.save(update_fields=["password"])
        elif spec.is_staff and not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        user.groups.add(groups[spec.role])
        by_role[spec.role].append(user)
        rows.append(UserRow(spec.username, spec.role, created))
    return by_role, rows


def ensure_demo_roster(*, people: dict[str, list], now: datetime) -> None:
    """Contact details, a weekly on-call rotation and the escalation role contacts, so the
    demo's escalations page named people. Roster rows are configuration (edited in the admin),
    so they are written like the admin writes them."""

    for number, user in enumerate(u for users in people.values() for u in users):
        Person.objects.get_or_create(
            user=user, defaults={"phone": f"+44207946{number:04d}", "sms_number": f"+44770090{number:04d}"}
        )
    engineers = people[roles.ON_CALL_ENGINEER]
    rotation, created = OnCallRotation.objects.get_or_create(
        name="Primary on-call (24/7)",
        defaults={
            "role": Group.objects.get(name=roles.ON_CALL_ENGINEER),
            "shift": OnCallRotation.Shift.WEEKLY,
            "handover_time": time(9, 0),
            "timezone": "Europe/London",
            "starts_on": (now - timedelta(days=28)).date(),
        },
    )
    if created:
        RotationMember.objects.bulk_create(
            RotationMember(rotation=rotation, user=user, position=i) for i, user in enumerate(engineers)
        )
    contacts = {
        roles.INCIDENT_MANAGER: people[roles.INCIDENT_MANAGER],
        roles.CTO: people[roles.CTO],
        roles.HEAD_OF_RISK: people[roles.HEAD_OF_RISK],
        roles.CEO: people[roles.CEO],
        roles.RISK_MANAGER: people[roles.RISK_MANAGER],
    }
    for role, users in contacts.items():
        RoleContact.objects.get_or_create(
            role=Group.objects.get(name=role),
            defaults={"primary": users[0], "deputy": users[1] if len(users) > 1 else None},
        )


def ensure_demo_readiness(*, people: dict[str, list], now: datetime, seed: int = DEFAULT_SEED) -> None:
    """Training records for the demo team, kept by the demo trainer through the drills services.

    The readiness gate refuses an untrained incident commander or on-call engineer, so the demo
    team holds valid certifications (issued before the demo month; a few due for renewal soon),
    has read the current procedures and, being an established team, has mentoring waived. Idempotent.
    """
    # Its own generator, so whether these records already exist does not shift the incidents.
    rng = random.Random(f"readiness-{seed}")
    trainer = people[roles.TRAINER][0]
    kinds = drill_selectors.required_kinds()
    procedure = drill_selectors.current_procedure()
    today = drill_selectors.business_day(now)
    for users in people.values():
        for user in users:
            groups = set(user.groups.values_list("pk", flat=True))
            mine = drill_selectors.kinds_required_of(group_ids=groups, group_names=set(), kinds=kinds)
            if not mine:
                continue
            held = set(Certification.objects.filter(person=user, kind__in=mine).values_list("kind_id", flat=True))
            for kind in mine:
                if kind.pk in held:
                    continue
                drill_services.certification_record(
                    person=user,
                    kind=kind,
                    issued_on=today - timedelta(days=rng.randint(45, 350)),
                    issued_by=trainer,
                    recorded_by=trainer,
                    evidence_note="Completed the in-house course and assessment.",
                    now=now,
                )
            if drill_selectors.needs_mentoring(user):
                drill_services.mentoring_waive(
                    person=user,
                    user=trainer,
                    reason="Established team member: responded to incidents before mentoring was recorded.",
                    now=now,
                )
            if procedure is not None:
                drill_services.procedure_acknowledge(document=procedure, user=user, now=now)


# -- scenarios (the seed's examples, per severity) ------------------------------------------

RESTART = "recovery-system-restart"
DATA = "recovery-data"
CONFIG = "recovery-configuration"
RECOVERY_CHOICES = {RESTART, DATA, CONFIG}


@dataclass(frozen=True)
class Scenario:
    level: int
    title: str
    description: str
    systems: tuple[str, ...]
    detection: str
    user_impact: str
    # (role, text) notes written while investigating; role is a key of the incident's cast.
    notes: tuple[tuple[str, str], ...]
    containment: tuple[str, str]
    recovery_note: tuple[str, str]
    cause: str
    contributing: str
    resolution: str
    verification: str
    prevention_immediate: str
    prevention_long_term: str
    monitoring: str
    category: str = Category.OPERATIONAL
    recovery: frozenset[str] = frozenset({RESTART})
    emergency_stop: bool = False


SCENARIOS: tuple[Scenario, ...] = (
    # Severity 1 -------------------------------------------------------------------------
    Scenario(
        level=1,
        title="Circuit breaker malfunction: drawdown limit breached on {pair} without a trip",
        description=(
            "The Circuit Breaker Agent did not halt trading when the intraday drawdown on {pair} "
            "passed the configured limit. New positions kept opening for several minutes after "
            "the breach."
        ),
        systems=("circuit_breaker", "risk_management", "execution_engine"),
        detection=DetectionMethod.AUTOMATED_ALERT,
        user_impact="Automated trading continued past the risk limit; unhedged exposure on {pair}.",
        notes=(
            (
                "oncall",
                "curl -f http://localhost:8001/health returns 200, but "
                "/api/v1/emergency-status reports the breaker as not armed.",
            ),
            ("risk", "Exposure on {pair} is {impact} beyond the drawdown limit. Requesting an immediate trading halt."),
            (
                "sysadmin",
                "errors.log: 'threshold parse error, falling back to default' since this morning's config deploy.",
            ),
        ),
        containment=(
            "risk",
            "All trading stopped; open {pair} positions closed with "
            "emergency-close-positions.sh. Exposure back to zero.",
        ),
        recovery_note=(
            "sysadmin",
            "Corrected limit deployed; restarting the Circuit Breaker Agent, then Risk Management, then Execution.",
        ),
        cause=(
            "A configuration deploy wrote the drawdown limit as a percentage string ('5%') where "
            "the agent expects a fraction; the agent fell back to a permissive default, so the "
            "breaker could never trip."
        ),
        contributing=(
            "No schema validation on the circuit-breaker configuration; no post-deploy breaker "
            "test; the fallback default failed open rather than closed."
        ),
        resolution=(
            "Corrected the limit to 0.05, restarted the Circuit Breaker Agent, and changed the "
            "fallback so an unparseable limit halts trading."
        ),
        verification=(
            "Simulated drawdown in dry-run mode: the breaker tripped within 2 s; emergency-status reports armed."
        ),
        prevention_immediate="Schema validation for risk limits in the deploy pipeline; fail-closed defaults.",
        prevention_long_term=(
            "Automated breaker trip test after every deploy; risk limits in a versioned configuration service."
        ),
        monitoring="Alert when the breaker reports not armed or when a limit falls back to a default.",
        recovery=frozenset({CONFIG, RESTART}),
        emergency_stop=True,
    ),
    Scenario(
        level=1,
        title="Complete trading system failure: execution engine not accepting orders",
        description=(
            "The Execution Engine stopped accepting orders; every order request timed out and "
            "the message broker queues backed up behind it."
        ),
        systems=("execution_engine", "message_broker"),
        detection=DetectionMethod.HEALTH_CHECK,
        user_impact="No orders could be placed or cancelled on any instrument.",
        notes=(
            ("oncall", "Execution engine /health times out; the broker shows 48k messages queued on orders.in."),
            ("sysadmin", "Broker node disk at 100% (df -h); the broker has blocked all publishers."),
            ("risk", "Open positions are within limits but cannot be adjusted; no new risk while orders are blocked."),
        ),
        containment=("sysadmin", "Moved old broker logs off the node; publishers unblocked and the queue is draining."),
        recovery_note=(
            "sysadmin",
            "Restarting in the documented order: message broker, risk management, execution engine.",
        ),
        cause=(
            "The message broker node ran out of disk because log rotation had been disabled "
            "during an upgrade; the broker blocked publishers and the order pipeline stalled."
        ),
        contributing=(
            "Disk alert threshold at 95% fired only minutes before "
            "the outage; no publish timeout in the execution engine."
        ),
        resolution="Freed disk, re-enabled log rotation, restarted services in order and replayed queued cancels.",
        verification=(
            "Order round-trip back to baseline; reconciliation against the broker shows no lost or duplicate orders."
        ),
        prevention_immediate="Log rotation back under configuration management; disk alert lowered to 80%.",
        prevention_long_term=(
            "Separate volume for broker logs; publish timeouts with a fallback in the execution engine."
        ),
        monitoring="Disk growth-rate alert on broker nodes; a synthetic order every minute in trading hours.",
        recovery=frozenset({RESTART}),
    ),
    Scenario(
        level=1,
        title="Security incident: broker API credentials exposed in application logs",
        description=(
            "A data provider told us that a log bundle shared for a support case contained a "
            "live broker API token used by the execution engine."
        ),
        systems=("execution_engine", "monitoring"),
        detection=DetectionMethod.EXTERNAL_NOTIFICATION,
        user_impact="Potential unauthorised trading on the firm's broker accounts.",
        notes=(
            (
                "oncall",
                "Confirmed: trading.log at DEBUG level prints the "
                "Authorization header. The token is valid for 3 accounts.",
            ),
            ("sysadmin", "No API calls from unknown IPs in the broker access log for the last 30 days."),
            ("risk", "No unauthorised trades found. Assessing whether regulatory notification is required."),
        ),
        containment=(
            "sysadmin",
            "Token revoked and rotated; all services restarted with the new credential; DEBUG logging disabled.",
        ),
        recovery_note=("sysadmin", "Purging affected log files and confirming the vendor has deleted the bundle."),
        cause=(
            "A debugging change left the HTTP client logging request "
            "headers at DEBUG, and DEBUG was on for one production host."
        ),
        contributing="Log bundles for vendors are not scrubbed; no secret scanning on logs.",
        resolution=(
            "Rotated the broker token, purged the affected logs, redacted Authorization "
            "headers in the logger, vendor deletion confirmed in writing."
        ),
        verification=(
            "30 days of broker access logs reviewed: no use of the token "
            "outside our IPs. Secret scan of current logs is clean."
        ),
        prevention_immediate="Header redaction in the logging filter; DEBUG disabled by policy in production.",
        prevention_long_term=(
            "Short-lived broker tokens from a secrets manager; secret scanning on log pipelines and vendor bundles."
        ),
        monitoring="Alert on broker API use from unknown IPs and on DEBUG logging in production.",
        category=Category.SECURITY,
        recovery=frozenset({CONFIG}),
    ),
    Scenario(
        level=1,
        title="Regulatory compliance violation: end-of-day transaction report not submitted",
        description=(
            "The end-of-day transaction report to the regulator was not submitted; the reporting "
            "job failed without raising an alert."
        ),
        systems=("reporting", "database"),
        detection=DetectionMethod.USER_REPORT,
        user_impact="Late regulatory transaction reporting for one trading day.",
        notes=(
            ("risk", "No submission receipt from the reporting gateway for yesterday's trades."),
            ("sysadmin", "Report job timed out reading a replica 6 hours behind, then exited with status 0."),
            ("im", "Compliance informed; preparing the late-submission notice for the regulator."),
        ),
        containment=("sysadmin", "Report regenerated against the primary database and accepted by the gateway."),
        recovery_note=(
            "sysadmin",
            "Re-pointing the reporting job at a healthy replica and checking the last 5 days of submissions.",
        ),
        cause="The reporting job read from a lagging replica, timed out, and exited with success, so nothing alerted.",
        contributing="Replica lag was not monitored; the job's exit code ignored query errors.",
        resolution=(
            "Submitted the missing report, fixed the job's error handling and pinned it to a replica with lag checks."
        ),
        verification=(
            "Gateway receipts present for every trading day of the month; the job now fails loudly on a forced timeout."
        ),
        prevention_immediate="Job fails on any query error; alert when no gateway receipt arrives by 19:00 UTC.",
        prevention_long_term=(
            "Reporting reads from a dedicated replica with lag SLOs; compliance dashboard for submissions."
        ),
        monitoring="Replica lag alert at 60 s; missing-receipt alert.",
        category=Category.COMPLIANCE,
        recovery=frozenset({DATA}),
    ),
    Scenario(
        level=1,
        title="Risk management agent crashed at market open; positions unmonitored",
        description=(
            "The Risk Management Agent crashed with an out-of-memory error at the London open; "
            "positions went unmonitored while trading continued."
        ),
        systems=("risk_management",),
        detection=DetectionMethod.HEALTH_CHECK,
        user_impact="Risk limits were not enforced for open positions.",
        notes=(
            ("oncall", "curl -f http://localhost:8003/health fails: connection refused. The process was OOM-killed."),
            (
                "risk",
                "Halting new orders until risk monitoring is back; current exposure {impact} above the intraday limit.",
            ),
            (
                "sysadmin",
                "Memory grew from 2 GB to 7.5 GB in 20 minutes after the open; heap dump captured for analysis.",
            ),
        ),
        containment=("risk", "Emergency stop in place; positions reviewed by hand and within limits."),
        recovery_note=("sysadmin", "Restarting the agent with the previous release and a larger memory limit."),
        cause=(
            "A new position-history cache was unbounded and grew with "
            "every tick at the open until the process was killed."
        ),
        contributing=(
            "Load test used a quiet-market tick rate; the watchdog restarted the agent into the same crash loop."
        ),
        resolution=(
            "Rolled back to the previous release, bounded the cache, restarted the agent and released the trading halt."
        ),
        verification="Agent memory flat through the next two opens; risk checks observed on every order.",
        prevention_immediate="Cache bounded; memory alert at 70% of the limit.",
        prevention_long_term="Load tests replay a real market open; execution refuses orders when risk is unavailable.",
        monitoring="Memory growth-rate alert; alert when any order is accepted without a risk check.",
        recovery=frozenset({RESTART}),
        emergency_stop=True,
    ),
    # Severity 2 -------------------------------------------------------------------------
    Scenario(
        level=2,
        title="Execution latency >500ms on {pair} orders",
        description="Order round-trip latency to the broker averaged {ms} ms for {pair} (target below 500 ms).",
        systems=("execution_engine",),
        detection=DetectionMethod.AUTOMATED_ALERT,
        user_impact="Slippage on {pair} orders; strategies throttled.",
        notes=(
            ("oncall", "p95 latency {ms} ms since 08:10 UTC; other pairs normal."),
            ("sysadmin", "Connection pool to the broker API saturated: 64/64 in use, requests queueing."),
        ),
        containment=("oncall", "Throttled {pair} strategies to half size; latency down to 320 ms."),
        recovery_note=(
            "sysadmin",
            "Raising the pool size and restarting the execution engine outside the busy window.",
        ),
        cause="A retry storm from one strategy held broker connections open and exhausted the pool.",
        contributing="No per-strategy connection limit; retries without backoff.",
        resolution="Added exponential backoff to order retries, per-strategy connection limits, and a larger pool.",
        verification="p95 latency 180 ms across the next trading session.",
        prevention_immediate="Backoff on retries; per-strategy limits.",
        prevention_long_term="Latency budget per strategy enforced by the execution engine.",
        monitoring="Alert on pool saturation above 80%, before latency degrades.",
        recovery=frozenset({CONFIG, RESTART}),
    ),
    Scenario(
        level=2,
        title="Database connection issues: connection pool exhausted",
        description="Services failed to get database connections: 'remaining connection slots are reserved'.",
        systems=("database",),
        detection=DetectionMethod.AUTOMATED_ALERT,
        user_impact="Intermittent errors saving orders and positions; retries succeeded after a delay.",
        notes=(
            (
                "oncall",
                "psql -h localhost -U tmt_user -d tmt_production -c "
                "'SELECT version();' fails with too many connections.",
            ),
            ("sysadmin", "pg_stat_activity: 180 idle-in-transaction sessions from the analytics job."),
        ),
        containment=("sysadmin", "Terminated idle-in-transaction sessions and paused the analytics job."),
        recovery_note=(
            "sysadmin",
            "Setting idle_in_transaction_session_timeout and restarting the analytics job with a small pool.",
        ),
        cause="A new analytics job opened a transaction per worker and never committed while waiting on a slow API.",
        contributing="No idle transaction timeout on the production database; analytics shares the trading database.",
        resolution=(
            "Killed the sessions, set idle_in_transaction_session_timeout=60s, fixed the job to commit per batch."
        ),
        verification="Connections steady at 40% of max for 24 h; no connection errors in errors.log.",
        prevention_immediate="Idle transaction timeout; per-role connection limits.",
        prevention_long_term="Move analytics to a read replica.",
        monitoring="Alert on connections above 80% and on idle-in-transaction sessions older than 5 min.",
        recovery=frozenset({CONFIG}),
    ),
    Scenario(
        level=2,
        title="Single agent failure: Market Analysis Agent not responding",
        description="The Market Analysis Agent stopped answering health checks; strategies fell back to stale signals.",
        systems=("market_analysis",),
        detection=DetectionMethod.HEALTH_CHECK,
        user_impact="Signal-driven strategies trading on signals up to {lag} minutes old.",
        notes=(
            ("oncall", "curl -f http://localhost:8002/health times out; the process is at 100% CPU."),
            ("sysadmin", "Thread dump: every worker blocked on a lock in the indicator cache."),
        ),
        containment=("oncall", "Signal-driven strategies paused; others unaffected."),
        recovery_note=("sysadmin", "Restarting the agent and clearing the indicator cache."),
        cause="A deadlock between the indicator cache refresh and the request handler after a library upgrade.",
        contributing="Health check did not fail fast, so the fallback to stale signals was silent for minutes.",
        resolution="Restarted the agent, pinned the previous library version, added a lock timeout.",
        verification="Agent healthy for 48 h; signals fresh (age below 5 s).",
        prevention_immediate="Library pinned; lock timeout.",
        prevention_long_term="Strategies refuse signals older than a configured age.",
        monitoring="Alert on signal age, not just on the health endpoint.",
        recovery=frozenset({RESTART}),
    ),
    Scenario(
        level=2,
        title="Platform integration failure: broker API returning 502 errors",
        description="Calls to https://api-fxtrade.oanda.com/v3/accounts returned 502 for about {pct}% of requests.",
        systems=("execution_engine", "market_analysis"),
        detection=DetectionMethod.EXTERNAL_NOTIFICATION,
        user_impact="Some orders rejected; position snapshots delayed.",
        notes=(
            (
                "oncall",
                "curl -f https://api-fxtrade.oanda.com/v3/accounts fails intermittently from both data centres.",
            ),
            ("risk", "Broker status page confirms a degraded gateway in their London region."),
        ),
        containment=("oncall", "Switched order routing to the broker's secondary endpoint; errors stopped."),
        recovery_note=(
            "oncall",
            "Broker reports the gateway fixed; moving routing back to the primary endpoint gradually.",
        ),
        cause="A failing gateway in the broker's London region (vendor incident).",
        contributing="Our failover to the secondary endpoint is manual.",
        resolution="Routed to the secondary endpoint during the vendor incident, then back to primary after their fix.",
        verification="Error rate 0% for 2 h on the primary endpoint; reconciliation clean.",
        prevention_immediate="Runbook entry for switching broker endpoints.",
        prevention_long_term="Automatic failover between broker endpoints on sustained 5xx.",
        monitoring="Alert on broker 5xx rate above 1%.",
        recovery=frozenset({CONFIG}),
    ),
    Scenario(
        level=2,
        title="Message broker consumer lag above {lag} seconds",
        description="Consumers of the market-data topic fell {lag} seconds behind; risk saw prices late.",
        systems=("message_broker", "risk_management"),
        detection=DetectionMethod.AUTOMATED_ALERT,
        user_impact="Risk calculations on delayed prices.",
        notes=(
            ("sysadmin", "One consumer instance stuck in a rebalance loop; partitions unassigned."),
            ("oncall", "Lag growing by about 2 s per minute."),
        ),
        containment=("sysadmin", "Removed the stuck consumer from the group; partitions reassigned and lag shrinking."),
        recovery_note=("sysadmin", "Rolling restart of the consumer group."),
        cause="A consumer exceeded the poll interval during garbage collection and kept rejoining the group.",
        contributing="Poll interval tuned for a lighter message rate.",
        resolution="Raised max poll interval, reduced batch size, rolling restart of consumers.",
        verification="Lag under 1 s during the next busy session.",
        prevention_immediate="Consumer settings reviewed for all topics.",
        prevention_long_term="Load tests at peak message rate before consumer changes.",
        monitoring="Alert on consumer rebalances per hour.",
        recovery=frozenset({RESTART, CONFIG}),
    ),
    Scenario(
        level=2,
        title="Data integrity issue: gaps in {pair} price history",
        description="Market data for {pair} missing for about {lag} minutes in the historical store.",
        systems=("market_analysis", "database"),
        detection=DetectionMethod.EXTERNAL_NOTIFICATION,
        user_impact="Backtests and end-of-day valuations for {pair} use interpolated prices.",
        notes=(
            ("risk", "Data provider alert: feed replay available for the affected window."),
            ("sysadmin", "Ingest worker dropped messages after a schema change in the provider feed."),
        ),
        containment=("sysadmin", "Ingest worker patched to accept the new field; no further gaps."),
        recovery_note=("sysadmin", "Replaying the provider's feed for the gap window into the historical store."),
        cause=(
            "The data provider added a field to the feed; our ingest "
            "rejected the messages instead of ignoring the field."
        ),
        contributing="Rejected messages were logged at DEBUG only.",
        resolution="Patched ingest, replayed the provider feed for the window, re-ran end-of-day valuations.",
        verification="Tick counts match the provider's for the whole day; valuations reconciled.",
        prevention_immediate="Ingest tolerates unknown fields; rejections logged at ERROR.",
        prevention_long_term="Contract tests against the provider's published schema.",
        monitoring="Alert on tick-count gaps per instrument.",
        category=Category.DATA,
        recovery=frozenset({DATA}),
    ),
    # Severity 3 -------------------------------------------------------------------------
    Scenario(
        level=3,
        title="Dashboard display issue: P&L widget shows stale values",
        description=(
            "The P&L widget on the dashboard stopped updating; other widgets are current. Workaround: reload the page."
        ),
        systems=("dashboard",),
        detection=DetectionMethod.USER_REPORT,
        user_impact="Traders see P&L up to {lag} minutes old until they reload.",
        notes=(("oncall", "WebSocket for the P&L channel disconnects after 10 minutes and does not reconnect."),),
        containment=("oncall", "Posted the reload workaround in the trading channel."),
        recovery_note=("oncall", "Deploying the reconnect fix to the dashboard."),
        cause="The dashboard client did not reconnect after the proxy's idle timeout closed the WebSocket.",
        contributing="Proxy idle timeout lowered in a recent infrastructure change.",
        resolution="Client reconnects with backoff; proxy idle timeout raised to 1 h.",
        verification="P&L widget current after 2 h idle in three browsers.",
        prevention_immediate="Reconnect with backoff.",
        prevention_long_term="Heartbeat on every dashboard channel.",
        monitoring="Client-side staleness beacon.",
        recovery=frozenset({CONFIG}),
    ),
    Scenario(
        level=3,
        title="Non-critical monitoring alert: disk usage at 85% on analytics host",
        description="Analytics host disk usage crossed 85%; no service impact yet.",
        systems=("analytics", "monitoring"),
        detection=DetectionMethod.AUTOMATED_ALERT,
        user_impact="None yet; analytics jobs would fail at 100%.",
        notes=(("sysadmin", "du shows 120 GB of intermediate files from last month's backfill."),),
        containment=("sysadmin", "Deleted intermediate backfill files; disk at 52%."),
        recovery_note=("sysadmin", "Adding a cleanup step to the backfill job."),
        cause="Backfill job left intermediate files behind.",
        contributing="No retention policy for analytics scratch space.",
        resolution="Removed the files and added cleanup and a 7-day retention on scratch space.",
        verification="Disk usage stable at about 50% for a week.",
        prevention_immediate="Cleanup step in the backfill job.",
        prevention_long_term="Scratch space on its own volume with retention.",
        monitoring="Disk growth forecast alert.",
        recovery=frozenset({CONFIG}),
    ),
    Scenario(
        level=3,
        title="Performance degradation <20%: report generation {pct}% slower",
        description="Daily reports take {pct}% longer than the 30-day baseline; they still finish before the deadline.",
        systems=("reporting",),
        detection=DetectionMethod.HEALTH_CHECK,
        user_impact="Reports arrive later than usual; still on time.",
        notes=(
            (
                "sysadmin",
                "Query plan for the positions report switched to a sequential scan after statistics went stale.",
            ),
        ),
        containment=("sysadmin", "ANALYZE on the positions table; the plan uses the index again."),
        recovery_note=("sysadmin", "Scheduling regular ANALYZE for the reporting tables."),
        cause="Stale table statistics after a large bulk load changed the query plan.",
        contributing="Autovacuum thresholds too high for a table with daily bulk loads.",
        resolution="Ran ANALYZE and tuned autovacuum thresholds for the reporting tables.",
        verification="Report generation back within 3% of baseline.",
        prevention_immediate="ANALYZE after each bulk load.",
        prevention_long_term="Per-table autovacuum settings reviewed quarterly.",
        monitoring="Alert on report duration more than 15% over baseline.",
        recovery=frozenset({CONFIG}),
    ),
    Scenario(
        level=3,
        title="Minor configuration issue: risk summary emails show the wrong time zone",
        description="The daily risk summary email shows times in server local time instead of UTC.",
        systems=("reporting",),
        detection=DetectionMethod.USER_REPORT,
        user_impact="Confusing timestamps in the risk summary; figures are correct.",
        notes=(("oncall", "TZ variable missing in the new reporting container image."),),
        containment=("oncall", "Told recipients that times are in server local time until fixed."),
        recovery_note=("oncall", "Rebuilding the image with TZ=UTC."),
        cause="The reporting container image lost its TZ setting in a base image upgrade.",
        contributing="No test checks the time zone of generated reports.",
        resolution="Set TZ=UTC in the image and formatted times explicitly as UTC.",
        verification="Next day's summary shows UTC times.",
        prevention_immediate="Explicit UTC formatting in templates.",
        prevention_long_term="Image smoke test checks the time zone.",
        monitoring="None needed.",
        recovery=frozenset({CONFIG}),
    ),
    Scenario(
        level=3,
        title="Dashboard display issue: position charts fail to render for some users",
        description="Position charts are blank in some browsers; the table view works.",
        systems=("dashboard",),
        detection=DetectionMethod.USER_REPORT,
        user_impact="Some users must use the table view.",
        notes=(("oncall", "Console error in Firefox ESR: unsupported canvas option after the chart library update."),),
        containment=("oncall", "Workaround shared: use the table view."),
        recovery_note=("oncall", "Deploying the chart library fix."),
        cause="A chart library update used an API missing in older browsers.",
        contributing="Browser matrix in CI lacks the ESR versions traders use.",
        resolution="Pinned the chart library to the last compatible version.",
        verification="Charts render in every browser on the supported list.",
        prevention_immediate="Library pinned.",
        prevention_long_term="ESR browsers added to the test matrix.",
        monitoring="Front-end error reporting for dashboard pages.",
        recovery=frozenset({CONFIG}),
    ),
    # Severity 4 -------------------------------------------------------------------------
    Scenario(
        level=4,
        title="UI/UX improvement: low contrast in the positions table",
        description="Negative P&L values in the positions table are hard to read on the dark theme.",
        systems=("dashboard",),
        detection=DetectionMethod.USER_REPORT,
        user_impact="Cosmetic.",
        notes=(("oncall", "Contrast ratio 2.8:1; WCAG AA needs 4.5:1."),),
        containment=("oncall", "No containment needed."),
        recovery_note=("oncall", "Shipping the colour change with the next dashboard release."),
        cause="Dark theme colours chosen without a contrast check.",
        contributing="No accessibility check in design review.",
        resolution="Adjusted the negative value colour to meet 4.5:1.",
        verification="Checked with a contrast tool and by two traders.",
        prevention_immediate="Contrast check in the style guide.",
        prevention_long_term="Automated accessibility checks in CI.",
        monitoring="None needed.",
        recovery=frozenset({CONFIG}),
    ),
    Scenario(
        level=4,
        title="Documentation update: database failover runbook out of date",
        description="The failover runbook still names the old replica hosts.",
        systems=("database",),
        detection=DetectionMethod.USER_REPORT,
        user_impact="None; found during a drill review.",
        notes=(("sysadmin", "Three host names and one command changed since the migration."),),
        containment=("sysadmin", "No containment needed."),
        recovery_note=("sysadmin", "Updating the runbook and the knowledge base."),
        cause="Runbook not updated after the database migration.",
        contributing="No owner for runbook updates after infrastructure changes.",
        resolution="Runbook updated and reviewed by a second administrator.",
        verification="Walked through in the next fire drill.",
        prevention_immediate="Runbook owner named.",
        prevention_long_term="Infrastructure change checklist includes runbooks.",
        monitoring="None needed.",
        recovery=frozenset({CONFIG}),
    ),
    Scenario(
        level=4,
        title="Minor feature request: CSV export of the daily analytics summary",
        description="Risk would like to export the daily analytics summary as CSV.",
        systems=("analytics",),
        detection=DetectionMethod.USER_REPORT,
        user_impact="None; manual copy for now.",
        notes=(("oncall", "Small change; the summary endpoint already returns tabular data."),),
        containment=("oncall", "No containment needed."),
        recovery_note=("oncall", "Adding the export button."),
        cause="Not a fault: feature request.",
        contributing="None.",
        resolution="Added CSV export to the analytics summary.",
        verification="Risk manager exported and opened the file.",
        prevention_immediate="None needed.",
        prevention_long_term="None needed.",
        monitoring="None needed.",
        recovery=frozenset({CONFIG}),
    ),
)

PAIRS = ("EUR/USD", "GBP/USD", "USD/JPY", "AUD/USD", "EUR/GBP", "USD/CHF", "GBP/JPY")
WENT_WELL = (
    "The alert fired within a minute and was acknowledged inside the response time.",
    "A clear commander from the start; status updates went out on schedule.",
    "The runbook restart order worked first time.",
    "The risk manager joined early, so the trading-halt decision took minutes.",
)
COULD_IMPROVE = (
    "Severity was unclear for the first minutes; the financial risk evaluation was done late.",
    "One status update slipped during recovery.",
    "The on-call engineer needed a sysadmin for log access, which cost time.",
    "Staging could not reproduce the issue, so the fix was verified only in production.",
)
CANCEL_REASONS = (
    "False alarm: the monitoring probe lost its own network link; the agents were healthy.",
    "Duplicate of an incident already open for the same alert.",
    "Planned maintenance window; the alert should have been silenced.",
    "False alarm: test order from the staging environment hit the production alert rule.",
)

# -- the month's shape ----------------------------------------------------------------------

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR

# Forced first so a small month still shows every state and severity, and the dashboard has
# live clocks: (state, severity, minutes ago or None for the state's usual window).
FORCED: tuple[tuple[str, int, tuple[int, int] | None], ...] = (
    (State.DETECTED, 1, (2, 4)),
    (State.DETECTED, 3, (12, 25)),
    (State.ACKNOWLEDGED, 2, (20, 40)),
    (State.INVESTIGATING, 2, (42, 58)),
    (State.CONTAINED, 1, None),
    (State.RECOVERING, 2, None),
    (State.RESOLVED, 3, None),
    (State.IN_REVIEW, 2, None),
    (State.CLOSED, 1, None),
    (State.CLOSED, 2, None),
    (State.CLOSED, 3, None),
    (State.CLOSED, 4, None),
    (State.CANCELLED, 3, None),
)
STATE_WEIGHTS = {
    State.CLOSED: 50,
    State.RESOLVED: 8,
    State.IN_REVIEW: 7,
    State.CANCELLED: 8,
    State.INVESTIGATING: 6,
    State.CONTAINED: 3,
    State.RECOVERING: 3,
    State.ACKNOWLEDGED: 4,
    State.DETECTED: 3,
}
SEVERITY_WEIGHTS = {1: 8, 2: 25, 3: 42, 4: 25}
# A month with two live Sev1s is already a bad month: random open incidents are Sev2-4.
OPEN_SEVERITY_WEIGHTS = {2: 30, 3: 45, 4: 25}

# How long ago an incident in this state was detected (minutes), per severity.
_WINDOW: dict[str, dict[int, tuple[int, int]]] = {
    State.DETECTED: {1: (2, 4), 2: (3, 12), 3: (5, 50), 4: (90, 1200)},
    State.ACKNOWLEDGED: {1: (10, 40), 2: (15, 55), 3: (30, 180), 4: (240, 2000)},
    State.INVESTIGATING: dict.fromkeys((1, 2, 3, 4), (40, 480)),
    State.CONTAINED: dict.fromkeys((1, 2, 3, 4), (90, 720)),
    State.RECOVERING: dict.fromkeys((1, 2, 3, 4), (180, 1440)),
    State.RESOLVED: dict.fromkeys((1, 2, 3, 4), (720, 3 * 1440)),
    State.IN_REVIEW: dict.fromkeys((1, 2, 3, 4), (2 * 1440, 6 * 1440)),
    State.CLOSED: {1: (6 * 1440, 30 * 1440), 2: (6 * 1440, 30 * 1440), 3: (1440, 30 * 1440), 4: (1440, 30 * 1440)},
    State.CANCELLED: dict.fromkeys((1, 2, 3, 4), (60, 30 * 1440)),
}

# Minutes each step takes after the previous one, per severity (the seed's response times,
# with a few Sev2/Sev3 acknowledgements late so the SLA figures are not all green).
_STEP_MINUTES: dict[str, dict[int, tuple[int, int]]] = {
    "acknowledge": {1: (1, 5), 2: (3, 18), 3: (10, 70), 4: (60, 960)},
    "start_investigation": dict.fromkeys((1, 2, 3, 4), (1, 12)),
    "contain": {1: (10, 50), 2: (15, 75), 3: (20, 150), 4: (30, 600)},
    "start_recovery": dict.fromkeys((1, 2, 3, 4), (5, 60)),
    "resolve": {1: (45, 300), 2: (60, 600), 3: (60, 1440), 4: (120, 2880)},
    "start_review": dict.fromkeys((1, 2, 3, 4), (120, 1440)),
    # Sev1/2 close only after the review is written, submitted and approved (24-72 h).
    "close": {1: (1500, 4200), 2: (1500, 4200), 3: (60, 1440), 4: (60, 1440)},
    "cancel": dict.fromkeys((1, 2, 3, 4), (5, 90)),
}


@dataclass
class Plan:
    state: str
    level: int
    detected_at: datetime
    scenario: Scenario


@dataclass
class SeedResult:
    users: list[UserRow] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    skipped: bool = False
    alert_integration: AlertIntegration | None = None
    alert_token: str | None = None  # only when the integration was created by this run


def plan_month(*, rng: random.Random, now: datetime, count: int, days: int = DEFAULT_DAYS) -> list[Plan]:
    """Which incidents the month has: state, severity, when detected, what happened."""
    wanted: list[tuple[str, int, tuple[int, int] | None]] = list(FORCED[:count])
    states = list(STATE_WEIGHTS)
    for _ in range(count - len(wanted)):
        state = rng.choices(states, weights=[STATE_WEIGHTS[s] for s in states])[0]
        weights = OPEN_SEVERITY_WEIGHTS if state in OPEN_STATES else SEVERITY_WEIGHTS
        level = rng.choices(list(weights), weights=list(weights.values()))[0]
        wanted.append((state, level, None))

    by_level: dict[int, list[Scenario]] = {}
    for scenario in SCENARIOS:
        by_level.setdefault(scenario.level, []).append(scenario)
    decks: dict[int, list[Scenario]] = {}

    plans = []
    limit = max(days * 1440 - 1, 5)
    for state, level, window in wanted:
        lo, hi = window or _WINDOW[state][level]
        hi = min(hi, limit)
        lo = min(lo, hi)
        detected_at = now - timedelta(minutes=rng.uniform(lo, hi))
        # Deal scenarios like cards so titles repeat only after every example was used.
        if not decks.get(level):
            decks[level] = rng.sample(by_level[level], len(by_level[level]))
        plans.append(Plan(state, level, detected_at.replace(microsecond=0), decks[level].pop()))
    plans.sort(key=lambda p: p.detected_at)
    return plans


def _path(state: str, level: int, rng: random.Random) -> list[str]:
    """The transitions that take a new incident to `state`."""
    if state == State.CANCELLED:
        return ["acknowledge", "start_investigation"][: rng.choice((0, 1, 1, 2, 2))] + ["cancel"]
    to_contained = ["acknowledge", "start_investigation", "contain"]
    steps = {
        State.DETECTED: [],
        State.ACKNOWLEDGED: ["acknowledge"],
        State.INVESTIGATING: ["acknowledge", "start_investigation"],
        State.CONTAINED: to_contained,
        State.RECOVERING: [*to_contained, "start_recovery"],
    }
    if state in steps:
        return steps[state]
    # Big incidents always need a recovery phase; small ones often are fixed once contained.
    path = list(to_contained)
    if level <= 2 or rng.random() < 0.6:
        path.append("start_recovery")
    path.append("resolve")
    if state == State.IN_REVIEW or (state == State.CLOSED and (level <= 2 or rng.random() < 0.4)):
        path.append("start_review")
    if state == State.CLOSED:
        path.append("close")
    return path


# -- one incident ---------------------------------------------------------------------------


def _when(service: Callable, when: datetime) -> dict:
    # Some services take no time yet (incident_update, incident_assign_commander, review_update),
    # so their timeline entry is stamped with the real time; pass ours once they accept one.
    params = inspect.signature(service).parameters
    for name in ("at", "now"):
        if name in params:
            return {name: when}
    return {}


class _IncidentBuilder:
    """Opens one incident in the past and works it to its planned state, step by step."""

    def __init__(
        self,
        *,
        plan: Plan,
        rng: random.Random,
        now: datetime,
        people: dict[str, list],
        levels: dict[int, SeverityLevel],
        systems: dict[str, System],
    ) -> None:
        self.plan = plan
        self.rng = rng
        self.now = now
        self.scenario = plan.scenario
        self.level = plan.level
        self.systems = [systems[k] for k in self.scenario.systems if k in systems]
        self.severity = levels[plan.level]
        self.impact = self._financial_impact()
        self.values = {
            "pair": rng.choice(PAIRS),
            "ms": rng.randrange(520, 1900, 10),
            "pct": rng.randrange(6, 19),
            "lag": rng.randrange(20, 95),
            "impact": f"${self.impact:,.0f}" if self.impact else "no direct loss",
        }
        self.cast = self._cast(people)
        self.incident: Incident | None = None
        self.commander_at_open = False
        self.path = _path(plan.state, plan.level, rng)
        self.times = self._milestones()

    # -- planning --------------------------------------------------------------------------
    def _financial_impact(self) -> Decimal | None:
        rng = self.rng
        if self.level == 1:
            return Decimal(rng.randrange(12_000, 240_000, 50))
        if self.level == 2:
            return Decimal(rng.randrange(1_000, 10_000, 25))
        if self.level == 3 and rng.random() < 0.4:
            return Decimal(rng.randrange(50, 950, 5))
        return None

    def _cast(self, people: dict[str, list]) -> dict:
        rng = self.rng
        engineers = people[roles.ON_CALL_ENGINEER]
        # The on-call rotation changes weekly.
        oncall = engineers[self.plan.detected_at.isocalendar().week % len(engineers)]
        managers = rng.sample(people[roles.INCIDENT_MANAGER], len(people[roles.INCIDENT_MANAGER]))
        cast = {
            "oncall": oncall,
            "oncall2": rng.choice([e for e in engineers if e != oncall] or engineers),
            "sysadmin": rng.choice(people[roles.SYSTEM_ADMINISTRATOR]),
            "risk": people[roles.RISK_MANAGER][0],
            "im": managers[0],
            "im2": managers[-1],
            "cto": people[roles.CTO][0],
            "head_risk": people[roles.HEAD_OF_RISK][0],
            "ceo": people[roles.CEO][0],
        }
        commander = {
            1: cast["im"] if rng.random() < 0.8 else cast["cto"],
            2: cast["im"] if rng.random() < 0.6 else oncall,
            3: oncall if rng.random() < 0.6 else None,
            4: oncall if rng.random() < 0.3 else None,
        }[self.level]
        cast["commander"] = commander
        cast["lead"] = commander or oncall
        return cast

    def _milestones(self) -> list[datetime]:
        rng = self.rng
        minutes = [rng.uniform(*_STEP_MINUTES[name][self.level]) for name in self.path]
        window = (self.now - self.plan.detected_at).total_seconds() / 60 - 1
        # An open incident has sat in its current state a while; a finished one may end late.
        room = window * (0.95 if self.plan.state not in OPEN_STATES else rng.uniform(0.6, 0.9))
        total = sum(minutes)
        if total > room > 0:
            minutes = [m * room / total for m in minutes]
        times, t = [], self.plan.detected_at
        for m in minutes:
            t += timedelta(minutes=m)
            times.append(t.replace(microsecond=0))
        return times

    def _text(self, text: str) -> str:
        return text.format_map(self.values)

    # -- doing -----------------------------------------------------------------------------
    def build(self) -> Incident:
        sc = self.scenario
        team = {
            DetectionMethod.AUTOMATED_ALERT: "Monitoring",
            DetectionMethod.HEALTH_CHECK: "Health checks",
        }.get(sc.detection, "")
        reporter = self.cast["risk"] if sc.detection == DetectionMethod.EXTERNAL_NOTIFICATION else self.cast["oncall"]
        finished = self.plan.state not in OPEN_STATES
        detected = self.plan.detected_at
        # Only an incident manager may name someone else as commander, so the reporter names
        # only themselves; anyone else takes command after acknowledgement (see _interval).
        self.commander_at_open = self.cast["commander"] == reporter
        self.incident = services.incident_open(
            title=self._text(sc.title)[:200],
            severity=self.severity,
            reported_by=reporter,
            detection_method=sc.detection,
            description=self._text(sc.description),
            category=sc.category,
            affected_systems=self.systems,
            financial_impact_usd=self.impact,
            user_impact=self._text(sc.user_impact),
            started_at=detected - timedelta(minutes=self.rng.randint(0, 12)),
            commander=self.cast["commander"] if self.commander_at_open else None,
            opened_by_team=team,
            detected_at=detected,
        )
        states = [State.DETECTED, *(_TARGET[name] for name in self.path)]
        starts = [detected, *self.times]
        for i, name in enumerate(self.path):
            self._run(self._interval(states[i], starts[i], self.times[i], name))
            self._transition(name, self.times[i])
        if not finished:
            end = self.now - timedelta(seconds=self.rng.randint(30, 180))
            if end > starts[-1]:
                self._run(self._interval(states[-1], starts[-1], end, None))
        elif self.plan.state == State.IN_REVIEW:
            end = self.now - timedelta(minutes=self.rng.randint(5, 120))
            if end > starts[-1]:
                self._run(self._interval(State.IN_REVIEW, starts[-1], end, None))
        return self.incident

    def _run(self, events: list[tuple[datetime, Callable[[datetime], None]]]) -> None:
        for when, action in sorted(events, key=lambda e: e[0]):
            action(when)

    def _transition(self, name: str, when: datetime) -> None:
        user = {
            "acknowledge": self.cast["oncall"],
            "start_investigation": self.cast["oncall"],
            "contain": self.cast["lead"],
            "start_recovery": self.cast["sysadmin"],
            "resolve": self.cast["lead"],
            "start_review": self.cast["lead"],
            "close": self.cast["im"],
            "cancel": self.cast["oncall"],
        }[name]
        if name == "start_review":
            # Starting the review is what moves the incident to in review.
            report_services.review_start(incident=self.incident, user=user, now=when)
            self.incident.refresh_from_db()
            return
        reason = self.rng.choice(CANCEL_REASONS) if name == "cancel" else ""
        services.incident_transition(incident=self.incident, name=name, user=user, reason=reason, at=when)

    def _spread(self, start: datetime, end: datetime, n: int) -> list[datetime]:
        """n sorted times strictly inside (start, end)."""
        span = (end - start).total_seconds()
        return sorted(
            (start + timedelta(seconds=span * self.rng.uniform(0.05, 0.95))).replace(microsecond=0) for _ in range(n)
        )

    def _interval(
        self, state: str, start: datetime, end: datetime, next_step: str | None
    ) -> list[tuple[datetime, Callable[[datetime], None]]]:
        """What the team did while the incident was in `state`, before `next_step`."""
        rng, cast, sc = self.rng, self.cast, self.scenario
        events: list[tuple[datetime, Callable[[datetime], None]]] = []

        def note(role: str, text: str, when: datetime | None = None) -> None:
            at = when or self._spread(start, end, 1)[0]
            events.append((at, lambda t: self._note(cast[role], self._text(text), t)))

        def ticks(items: list[IncidentChecklistItem]) -> None:
            for item, at in zip(items, self._spread(start, end, len(items)), strict=True):
                events.append((at, lambda t, item=item: self._tick(item, t)))

        if state == State.ACKNOWLEDGED:
            system = self.systems[0].name if self.systems else "the affected system"
            note("oncall", f"Acknowledged. Checking {system} health and errors.log.", start + (end - start) * 0.02)
            pending = self._unticked(attached_on={State.DETECTED})
            share = rng.uniform(0.5, 1.0) if next_step == "start_investigation" else rng.uniform(0.2, 0.6)
            ticks(pending[: round(len(pending) * share)])
            if cast["commander"] is not None and not self.commander_at_open:
                events.append((start + (end - start) * 0.1, self._assign_commander))
        elif state == State.INVESTIGATING:
            pending = self._unticked(attached_on={State.DETECTED, State.INVESTIGATING})
            gating = [i for i in pending if i.gates_containment]
            other = [i for i in pending if not i.gates_containment]
            if next_step == "contain":
                chosen = gating + other[: round(len(other) * rng.uniform(0.6, 1.0))]
                notes = list(sc.notes)
            else:
                chosen = gating[: rng.randint(0, len(gating))] + other[: rng.randint(0, len(other) // 2)]
                notes = list(sc.notes[: rng.randint(1, len(sc.notes))])
            chosen.sort(key=lambda i: (i.template.order, i.order, i.pk))
            ticks(chosen)
            for (role, text), at in zip(notes, self._spread(start, end, len(notes)), strict=True):
                note(role, text, at)
            if sc.emergency_stop:
                note(
                    "risk",
                    "Trading halted: emergency stop sent to the Circuit Breaker Agent (reason system_emergency, "
                    "stop all trading). Emergency status confirms all trading stopped.",
                    start + (end - start) * 0.1,
                )
            if self.level == 1:
                note(
                    "cto",
                    "CTO engaged (Severity 1 escalation). Vendor support "
                    "line open; extra engineers approved if needed.",
                )
            if self.level <= 2:
                every = "30 minutes" if self.level == 1 else "hour"
                note(
                    "lead",
                    f"Status: Investigating\nSeverity: {self.level}\nImpact: {self._text(sc.user_impact)}\n"
                    f"Next update: within the {every}.",
                )
            if self.impact and self.impact > 5000:
                note(
                    "head_risk",
                    f"Head of Risk notified: estimated impact {self.values['impact']} is above the $5,000 trigger. "
                    "Reviewing whether a regulatory notification is due.",
                )
        elif state == State.CONTAINED:
            role, text = sc.containment
            note(role, text, start + (end - start) * 0.1)
            ticks(self._unticked(attached_on={State.DETECTED, State.INVESTIGATING})[: rng.randint(0, 4)])
            if next_step == "resolve":
                self._record_findings(events, end)
        elif state == State.RECOVERING:
            role, text = sc.recovery_note
            note(role, text, start + (end - start) * 0.05)
            pending = self._unticked(attached_on={State.RECOVERING})
            if next_step != "resolve":
                pending = pending[: round(len(pending) * rng.uniform(0.2, 0.6))]
            ticks(pending)
            if self.level == 1:
                note(
                    "lead",
                    "Status: Recovering\nSeverity: 1\nImpact: "
                    f"{self._text(sc.user_impact)}\nNext update: within 30 minutes.",
                )
            if next_step == "resolve":
                self._record_findings(events, end)
        elif state == State.RESOLVED and next_step == "start_review":
            note("lead", "Post-incident review scheduled with the response team.")
        elif state == State.RESOLVED and next_step == "close":
            note("im", "Fix verified over a full trading session; closing.")
        elif state == State.IN_REVIEW:
            # A review that was started is finished before closing; one still in review is
            # awaiting approval (Sev1/2) or still a draft.
            finish = next_step == "close"
            self._review_events(events, start, end, submit=finish or self.level <= 2, approve=finish)

        # Sev1 lasting more than two hours reaches the CEO (the seed's escalation trigger).
        ceo_at = self.plan.detected_at + timedelta(minutes=125)
        if self.level == 1 and state in OPEN_STATES and start <= ceo_at < end:
            note(
                "ceo",
                "CEO briefed: Severity 1 open for over 2 hours. Board and regulator communication on standby.",
                ceo_at,
            )
        return events

    def _assign_commander(self, when: datetime) -> None:
        commander = self.cast["commander"]
        # An engineer takes command themselves; a manager is put in charge by an incident manager.
        engineer = commander.groups.filter(name=roles.ON_CALL_ENGINEER).exists()
        self.incident = services.incident_assign_commander(
            incident=self.incident,
            commander=commander,
            user=commander if engineer else self.cast["im"],
            **_when(services.incident_assign_commander, when),
        )

    def _record_findings(self, events: list, resolve_at: datetime) -> None:
        sc = self.scenario
        fields = {
            "primary_cause": sc.cause,
            "contributing_factors": sc.contributing,
            "resolution_actions": sc.resolution,
            "verification_steps": sc.verification,
        }
        if self.plan.state in (State.IN_REVIEW, State.CLOSED):
            fields |= {
                "went_well": self.rng.choice(WENT_WELL),
                "could_improve": self.rng.choice(COULD_IMPROVE),
                "prevention_immediate": sc.prevention_immediate,
                "prevention_long_term": sc.prevention_long_term,
                "monitoring_improvements": sc.monitoring,
            }
        fields = {k: self._text(v) for k, v in fields.items()}
        when = resolve_at - timedelta(minutes=self.rng.uniform(1, 5))

        def update(t: datetime) -> None:
            self.incident = services.incident_update(
                incident=self.incident,
                user=self.cast["lead"],
                **fields,
                **_when(services.incident_update, t),
            )

        events.append((when, update))

    def _review_events(self, events: list, start: datetime, end: datetime, *, submit: bool, approve: bool) -> None:
        """The review (started by review_start at start_review) is written, submitted, approved."""
        author = self.cast["lead"]
        candidates = (
            [self.cast["cto"], self.cast["head_risk"], self.cast["im2"]]
            if self.level == 1
            else [self.cast["im"], self.cast["im2"], self.cast["head_risk"]]
        )
        approver = next(c for c in candidates if c != author)
        written_at, submitted_at, approved_at = self._spread(start, end, 3)

        def write(t: datetime) -> None:
            review = self.incident.reviews.get(state=PostIncidentReview.State.DRAFT)
            report_services.review_update(
                review=review, user=author, **self._review_texts(), **_when(report_services.review_update, t)
            )

        events.append((written_at, write))
        if submit:
            events.append(
                (
                    submitted_at,
                    lambda t: report_services.review_submit(
                        review=self.incident.reviews.get(state=PostIncidentReview.State.DRAFT), user=author, now=t
                    ),
                )
            )
        if approve:
            events.append(
                (
                    approved_at,
                    lambda t: report_services.review_approve(
                        review=self.incident.reviews.get(state=PostIncidentReview.State.SUBMITTED),
                        user=approver,
                        now=t,
                    ),
                )
            )

    def _review_texts(self) -> dict[str, str]:
        sc, inc = self.scenario, self.incident
        lines = [
            f"{e.occurred_at:%Y-%m-%d %H:%M} UTC  {e.action} ({e.owner_label})"
            for e in TimelineEntry.objects.filter(incident=inc, kind=TimelineEntry.Kind.STATE_CHANGE)
            .select_related("owner")
            .order_by("occurred_at", "id")
        ]
        return {
            "timeline_reconstruction": "\n".join(lines),
            "root_cause_analysis": self._text(f"{sc.cause}\n\nContributing factors: {sc.contributing}"),
            "response_effectiveness": f"{inc.went_well}\n{inc.could_improve}".strip(),
            "process_improvements": self._text(sc.monitoring),
            "prevention_measures": self._text(f"{sc.prevention_immediate}\n{sc.prevention_long_term}"),
        }

    def _unticked(self, *, attached_on: Iterable[str]) -> list[IncidentChecklistItem]:
        skip = RECOVERY_CHOICES - self.scenario.recovery
        items = (
            IncidentChecklistItem.objects.filter(
                incident=self.incident,
                done_at__isnull=True,
                template__attach_on_state__in=list(attached_on),
            )
            .exclude(template__slug__in=skip)
            .select_related("template")
            .order_by("template__order", "order", "id")
        )
        return list(items)

    def _tick(self, item: IncidentChecklistItem, when: datetime) -> None:
        text = item.text.lower()
        if "financial" in text or "safety first" in text:
            user = self.cast["risk"]
        elif item.template.attach_on_state == State.RECOVERING and "testing" not in text:
            user = self.cast["sysadmin"]
        else:
            user = self.cast["oncall"]
        services.checklist_item_set_done(item=item, user=user, done=True, at=when)

    def _note(self, author, text: str, when: datetime) -> None:
        services.timeline_add_note(incident=self.incident, author=author, text=text, occurred_at=when)


_TARGET = {
    "acknowledge": State.ACKNOWLEDGED,
    "start_investigation": State.INVESTIGATING,
    "contain": State.CONTAINED,
    "start_recovery": State.RECOVERING,
    "resolve": State.RESOLVED,
    "start_review": State.IN_REVIEW,
    "close": State.CLOSED,
    "cancel": State.CANCELLED,
}


# -- entry point ----------------------------------------------------------------------------


@transaction.atomic
def seed_demo(
    *,
    incidents: int = DEFAULT_INCIDENTS,
    seed: int = DEFAULT_SEED,
    days: int = DEFAULT_DAYS,
    password: str = DEMO_PASSWORD,
    if_empty: bool = False,
    now: datetime | None = None,
) -> SeedResult:
    """Users in every role and `incidents` incidents over the last `days` days."""
    if if_empty and Incident.objects.exists():
        return SeedResult(skipped=True)
    now = now or timezone.now()
    rng = random.Random(seed)
    people, rows = ensure_demo_users(password=password)
    ensure_demo_roster(people=people, now=now)
    ensure_demo_readiness(people=people, now=now, seed=seed)
    ensure_demo_distribution_lists(people=people)
    levels = {s.level: s for s in SeverityLevel.objects.all()}
    missing = {1, 2, 3, 4} - set(levels)
    if missing:
        raise ValueError(f"Severity levels missing (run migrate): {sorted(missing)}")
    systems = System.objects.in_bulk(field_name="key")
    result = SeedResult(users=rows)
    result.alert_integration, result.alert_token = ensure_demo_alert_integration()
    ensure_demo_backup_sources()
    ensure_demo_trading_database()
    for plan in plan_month(rng=rng, now=now, count=incidents, days=days):
        builder = _IncidentBuilder(plan=plan, rng=rng, now=now, people=people, levels=levels, systems=systems)
        result.incidents.append(builder.build())
    ensure_demo_status_page(people=people, incidents=result.incidents, now=now)
    ensure_demo_regulatory(people=people, incidents=result.incidents, now=now)
    return result


def portal_database_target() -> dict:
    """A PostgreSQL health target's fields for the portal's own database."""
    db = connection.settings_dict
    return {
        "host": db["HOST"] or "127.0.0.1",
        "port": int(db["PORT"] or 5432),
        "database": db["NAME"],
        "username": db["USER"] or "postgres",
        # A local database without a password needs no variable; with one, set it.
        "password_env": "TMT_TRADING_DB_PASSWORD" if db.get("PASSWORD") else "",
    }


def ensure_demo_trading_database() -> None:
    """The demo has no trading database of its own: its health target checks the portal's
    PostgreSQL instead (left alone once someone has pointed it elsewhere in the admin)."""
    if connection.vendor == "postgresql":
        HealthTarget.objects.filter(name="Trading Database", database="tmt_production").update(
            **portal_database_target()
        )


# -- audiences' distribution lists ---------------------------------------------------------

# (list name, audience key, least severe level it is used for, roles whose holders are on it, other
# addresses). The audiences themselves are policy and come with the migrations.
DEMO_DISTRIBUTION_LISTS: tuple[tuple[str, str, int, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "Incident response team",
        "internal",
        4,
        (roles.ON_CALL_ENGINEER, roles.SYSTEM_ADMINISTRATOR, roles.RISK_MANAGER, roles.INCIDENT_MANAGER),
        (),
    ),
    ("Executive team", "stakeholders", 2, (roles.CTO, roles.HEAD_OF_RISK, roles.CEO), ()),
    ("Business desks", "stakeholders", 3, (), (f"fx-desk@{EMAIL_DOMAIN}", f"operations@{EMAIL_DOMAIN}")),
    ("Regulatory contacts", "regulators", 2, (roles.HEAD_OF_RISK,), (f"compliance@{EMAIL_DOMAIN}",)),
    ("Trading platform clients", "users", 4, (), ("client-a@clients.example", "client-b@clients.example")),
)


def ensure_demo_distribution_lists(*, people: dict[str, list]) -> None:
    """A distribution list or two for each audience, from the demo's people (get_or_create: an
    admin's edits to an existing list are kept)."""
    audiences = {a.key: a for a in Audience.objects.all()}
    for name, audience_key, level, role_names, extra in DEMO_DISTRIBUTION_LISTS:
        addresses = [u.email for role in role_names for u in people.get(role, []) if u.email] + list(extra)
        dist, _ = DistributionList.objects.get_or_create(
            name=name, defaults={"max_severity_level": level, "emails": "\n".join(addresses)}
        )
        if audience_key in audiences:
            audiences[audience_key].distribution_lists.add(dist)


# -- monitoring -----------------------------------------------------------------------------

DEMO_ALERTMANAGER = "Prometheus Alertmanager"
MONITORING_USERNAME = "alertmanager"


def ensure_demo_alert_integration() -> tuple[AlertIntegration, str | None]:
    """The Alertmanager integration the agents' Prometheus alerts would arrive through, with
    its `service` and `severity` labels mapped. Returns the raw token when this call created
    the integration (it cannot be shown again), else None."""
    existing = AlertIntegration.objects.filter(name=DEMO_ALERTMANAGER).first()
    if existing is not None:
        return existing, None
    reporter, created = get_user_model().objects.get_or_create(
        username=MONITORING_USERNAME,
        # Inactive: automated incidents are reported as it, nobody logs in as it.
        defaults={"first_name": "Alertmanager", "last_name": "(monitoring)", "is_active": False},
    )
    if created:
        reporter.set_unusable_password()
        reporter.save(update_fields=["password"])
    integration = AlertIntegration(
        name=DEMO_ALERTMANAGER,
        kind=AlertIntegration.Kind.ALERTMANAGER,
        reporter=reporter,
        system_label="service",
        system_map={
            "circuit-breaker": "circuit_breaker",
            "market-analysis": "market_analysis",
            "risk-management": "risk_management",
        },
        severity_label="severity",
        severity_map={"critical": 1, "high": 2, "warning": 3, "info": 4},
        default_severity=3,
    )
    return integration, alert_integration_issue_token(integration=integration)
