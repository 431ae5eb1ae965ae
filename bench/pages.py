"""Server time and query count of the busiest pages at production scale.

With 50,000 incidents and 500,000 timeline entries in PostgreSQL, times the dashboard, the
incident list (plus a filtered list and a search) and the incident page (a typical incident
and the one with the longest timeline) in-process with Django's test client, as a logged-in
On-Call Engineer. Goal: every page under 50 ms median and under 15 queries.

    python bench/pages.py                    # full run; loads the data (about a minute)
    python bench/pages.py --reuse            # re-time without reloading if the data is there
    python bench/pages.py --incidents 2000   # quick smoke run

It works in its own database (BENCH_DATABASE_NAME, default tmt_ir_bench_pages) on the server
that DATABASE_URL names, dropped and recreated on each load and left in place for --reuse; the
database DATABASE_URL names is never touched. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from bisect import bisect
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from operator import itemgetter
from pathlib import Path

# `python bench/pages.py` puts bench/ on sys.path, not the project root that holds bench/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Stopwatch,
    copy_rows,
    drop_indexes,
    load_average,
    migrate,
    print_result_json,
    print_table,
    reset_sequences,
    setup_django,
    time_pages,
    use_bench_database,
    vacuum_analyze,
)

GOAL_MS = 50.0
GOAL_QUERIES = 15
DEFAULT_DATABASE = "tmt_ir_bench_pages"
ENTRIES_PER_INCIDENT = 10  # timeline entries per incident on average
HEAVY_SIZE = 2000  # timeline entries on each of a few long Sev1 incidents
HISTORY_DAYS = 730
N_RESPONDERS = 20

# -- the shape of the data ----------------------------------------------------------------

SEVERITY_MIX = {1: 3, 2: 12, 3: 35, 4: 50}
CATEGORY_MIX = {"operational": 70, "data": 12, "security": 10, "compliance": 8}
DETECTION_MIX = {"automated_alert": 55, "health_check": 20, "user_report": 18, "external_notification": 7}
OPEN_MIX = {"detected": 15, "acknowledged": 20, "investigating": 35, "contained": 15, "recovering": 15}
RECENT_CLOSED_MIX = {"closed": 55, "resolved": 15, "in_review": 15, "cancelled": 15}
OLD_CLOSED_MIX = {"closed": 88, "cancelled": 8, "resolved": 2, "in_review": 2}
EXTRA_KIND_MIX = {
    "note": 35,
    "checklist": 18,
    "notification": 15,
    "health": 12,
    "status_update": 10,
    "escalation": 5,
    "update": 5,
}
# Mean time to acknowledge and to resolve by severity level.
MTTA_MEAN = {1: 3 * 60, 2: 10 * 60, 3: 45 * 60, 4: 10 * 3600}
MTTR_MEAN = {1: 3 * 3600, 2: 6 * 3600, 3: 14 * 3600, 4: 48 * 3600}
LIFECYCLE = ["detected", "acknowledged", "investigating", "contained", "recovering", "resolved", "in_review", "closed"]
TRANSITION_LABEL = {
    "acknowledged": "Acknowledge",
    "investigating": "Start investigation",
    "contained": "Mark contained",
    "recovering": "Start recovery",
    "resolved": "Resolve",
    "in_review": "Start post-incident review",
    "closed": "Close",
    "cancelled": "Cancel (false alarm)",
}
STATE_LABEL = {s: s.replace("_", " ").capitalize() for s in [*LIFECYCLE, "cancelled"]}

SYMBOLS = ["ES", "NQ", "CL", "GC", "ZN", "6E", "BTC", "AAPL", "MSFT", "TSLA", "SPY", "EURUSD"]
VENUES = ["CME", "ICE", "Eurex", "Nasdaq", "NYSE Arca", "LSE", "Binance", "Coinbase"]
PROVIDERS = ["Refinitiv", "Bloomberg B-PIPE", "dxFeed", "Polygon", "CQG"]
DESKS = ["futures", "equities", "FX", "crypto", "rates"]
HOSTS = ["trade-01", "trade-02", "risk-01", "md-gw-01", "md-gw-02", "db-primary", "broker-01"]
# (category, title, system keys): about one title in ten mentions the circuit breaker.
TITLES = [
    ("operational", "Circuit breaker tripped on {symbol}", ["circuit_breaker"]),
    ("operational", "Circuit breaker agent not answering health checks", ["circuit_breaker", "monitoring"]),
    ("operational", "Execution latency above 500 ms on {venue}", ["execution_engine"]),
    ("operational", "Orders rejected by {venue}", ["execution_engine"]),
    ("operational", "Risk limit breach on the {desk} desk", ["risk_management"]),
    ("operational", "Risk management agent reporting stale exposure", ["risk_management", "database"]),
    ("operational", "Market data gap from {provider}", ["market_analysis"]),
    ("operational", "Market analysis agent signals delayed", ["market_analysis", "message_broker"]),
    ("operational", "Message broker queue backlog on {host}", ["message_broker"]),
    ("operational", "Dashboard charts not loading", ["dashboard"]),
    ("operational", "Monitoring alert storm from {host}", ["monitoring"]),
    ("operational", "Analytics job failed overnight", ["analytics"]),
    ("operational", "Disk nearly full on {host}", ["monitoring"]),
    ("data", "Replication lag on the trading database", ["database"]),
    ("data", "Position mismatch after {venue} fill reconciliation", ["database", "reporting"]),
    ("data", "Nightly P&L report late", ["reporting"]),
    ("data", "Duplicate ticks from {provider}", ["market_analysis", "database"]),
    ("security", "Suspicious login attempts on the admin console", ["dashboard"]),
    ("security", "API key for {venue} possibly exposed", ["execution_engine"]),
    ("security", "Unexpected outbound traffic from {host}", ["monitoring"]),
    ("compliance", "Order-to-trade ratio near the {venue} limit", ["execution_engine", "reporting"]),
    ("compliance", "Trade report to {venue} submitted late", ["reporting"]),
    ("compliance", "Circuit breaker limits not applied to {symbol}", ["circuit_breaker", "risk_management"]),
]
NOTES = [
    "Checked logs on {host}: errors started at the last deploy.",
    "Restarted the service on {host}; watching the error rate.",
    "Spoke to {venue} support, they see no issue on their side.",
    "Rolled back the configuration change from this morning.",
    "Positions reconciled against the {venue} drop copy; no breaks.",
    "Latency back under 50 ms at p99 for the last 15 minutes.",
    "Added an alert on queue depth so this fires earlier next time.",
    "Risk confirms exposure on {symbol} is inside limits.",
    "Captured a heap dump and the last hour of logs as evidence.",
    "Failover to {host} complete; primary kept for analysis.",
]
STATUS_UPDATES = [
    "Investigating: elevated error rate on {venue} orders. Next update in 30 minutes.",
    "Contained: trading on {symbol} paused while we verify positions.",
    "Monitoring: fix deployed, watching for recurrence.",
]
DESCRIPTIONS = [
    "Alert fired from the monitoring stack; first responder confirmed the symptom. ",
    "Reported by the {desk} desk during the open. ",
    "{provider} notified us of a degraded feed. ",
    "Found by the scheduled health check. ",
]
CAUSES = [
    "A configuration change raised the order throttle below the venue's limit.",
    "Connection pool too small for the open's order burst.",
    "Upstream feed sent out-of-order sequence numbers after a failover.",
    "A certificate expired on the gateway host.",
]


def pick(rng: random.Random, mix: dict[str, int]):
    return rng.choices(list(mix), weights=list(mix.values()))[0]


def fill(rng: random.Random, text: str) -> str:
    return text.format(
        symbol=rng.choice(SYMBOLS),
        venue=rng.choice(VENUES),
        provider=rng.choice(PROVIDERS),
        desk=rng.choice(DESKS),
        host=rng.choice(HOSTS),
    )


class Inc:
    """What the timeline and checklist generators need to know about one generated incident."""

    __slots__ = (
        "id",
        "severity",
        "category",
        "detected_at",
        "path",
        "times",
        "commander_id",
        "reported_by_id",
        "title",
        "end",
        "heavy",
    )

    def __init__(self, **kwargs) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)


# -- loading ------------------------------------------------------------------------------
# The data is written straight into the tables (COPY), not through incidents.services, on
# purpose: the services open one incident per transaction with its row locks and checks,
# which would take hours for 50,000 incidents. The rows follow the same rules the services
# enforce (gap-free TMT-INC-YYYY-MM-DD-NNN per UTC day with the matching day-sequence rows,
# timestamps in lifecycle order, one state-change entry per transition, checklists copied
# from the templates when their state was entered). Timeline entries are only INSERTed, which
# the append-only trigger allows.


def load(n_incidents: int, *, seed: int, now: datetime, clock: Stopwatch) -> dict:
    from django.contrib.auth.models import Group, User

    from incidents.models import (
        ChecklistTemplate,
        Incident,
        IncidentChecklistItem,
        IncidentDaySequence,
        SeverityLevel,
        System,
        TimelineEntry,
    )
    from incidents.roles import ON_CALL_ENGINEER

    rng = random.Random(seed)
    severities = {s.level: s for s in SeverityLevel.objects.all()}
    systems = {s.key: s.pk for s in System.objects.all()}
    system_ids = list(systems.values())

    def make_users():
        people = [
            ("Alex", "Morgan"),
            ("Sam", "Okafor"),
            ("Priya", "Shah"),
            ("Jon", "Berg"),
            ("Mei", "Tanaka"),
            ("Luis", "Ortega"),
            ("Nina", "Kowalski"),
            ("Omar", "Haddad"),
            ("Ruth", "Adeyemi"),
            ("Tom", "Fischer"),
        ]
        users = [
            User(
                username=f"responder{i:02d}",
                first_name=people[i % 10][0],
                last_name=people[i % 10][1] + ("" if i < 10 else "-Lee"),
                password="!",
                email=f"responder{i:02d}@example.com",
            )
            for i in range(N_RESPONDERS)
        ]
        users.append(User(username="bench", first_name="Bench", last_name="User", password="!"))
        User.objects.bulk_create(users)
        group = Group.objects.get(name=ON_CALL_ENGINEER)
        created = list(User.objects.order_by("id"))
        group.user_set.add(*created)
        return {u.pk: u.get_full_name() for u in created if u.username != "bench"}

    names = clock.step(f"users ({N_RESPONDERS} responders + bench)", make_users)
    user_ids = list(names)

    big_tables = (Incident, Incident.affected_systems.through, TimelineEntry, IncidentChecklistItem)
    recreate_indexes = clock.step("drop indexes and keys for the load", lambda: drop_indexes(*big_tables))
    incidents, incident_rows, m2m_rows, day_counts = clock.step(
        f"generate {n_incidents:,} incidents",
        lambda: _generate_incidents(rng, n_incidents, now, severities, systems, system_ids, user_ids),
    )
    clock.step("COPY incidents", lambda: copy_rows(Incident, INCIDENT_COLUMNS, incident_rows))
    clock.step(
        "COPY affected systems",
        lambda: copy_rows(Incident.affected_systems.through, ["incident_id", "system_id"], m2m_rows),
    )
    clock.step(
        "COPY day sequences",
        lambda: copy_rows(IncidentDaySequence, ["day", "last_number"], sorted(day_counts.items())),
    )

    target_entries = n_incidents * ENTRIES_PER_INCIDENT
    timeline_rows = clock.step(
        f"generate {target_entries:,} timeline entries",
        lambda: _generate_timeline(rng, incidents, target_entries, now, names, severities),
    )
    n_entries = clock.step("COPY timeline entries", lambda: copy_rows(TimelineEntry, TIMELINE_COLUMNS, timeline_rows))

    templates = list(ChecklistTemplate.objects.filter(active=True).prefetch_related("items"))
    checklist_rows = clock.step(
        "generate checklist items",
        lambda: _generate_checklists(rng, incidents, templates, now, user_ids),
    )
    n_items = clock.step(
        "COPY checklist items", lambda: copy_rows(IncidentChecklistItem, CHECKLIST_COLUMNS, checklist_rows)
    )

    clock.step("recreate indexes and keys", recreate_indexes)
    clock.step("reset sequences", lambda: reset_sequences(Incident, TimelineEntry))
    clock.step(
        "VACUUM ANALYZE",
        lambda: vacuum_analyze(
            Incident,
            Incident.affected_systems.through,
            IncidentDaySequence,
            TimelineEntry,
            IncidentChecklistItem,
            User,
        ),
    )
    return {"timeline_entries": n_entries, "checklist_items": n_items}


INCIDENT_COLUMNS = [
    "id",
    "reference",
    "reference_day",
    "reference_number",
    "title",
    "description",
    "severity_id",
    "category",
    "detection_method",
    "financial_impact_usd",
    "user_impact",
    "is_drill",
    "state",
    "reported_by_id",
    "commander_id",
    "started_at",
    "ended_at",
    "detected_at",
    "acknowledged_at",
    "acknowledged_by_id",
    "investigating_at",
    "contained_at",
    "recovering_at",
    "resolved_at",
    "review_started_at",
    "closed_at",
    "cancelled_at",
    "cancel_reason",
    "primary_cause",
    "contributing_factors",
    "resolution_actions",
    "verification_steps",
    "went_well",
    "could_improve",
    "prevention_immediate",
    "prevention_long_term",
    "monitoring_improvements",
    "created_at",
    "updated_at",
]
TIMELINE_COLUMNS = [
    "id",
    "incident_id",
    "kind",
    "action",
    "owner_id",
    "owner_team",
    "occurred_at",
    "recorded_at",
    "from_state",
    "to_state",
    "data",
]
CHECKLIST_COLUMNS = [
    "incident_id",
    "template_id",
    "section",
    "text",
    "order",
    "gates_containment",
    "done_at",
    "done_by_id",
]


def _lifecycle_path(rng: random.Random, final: str) -> list[str]:
    if final == "cancelled":
        path = ["detected"]
        if rng.random() < 0.6:
            path.append("acknowledged")
            if rng.random() < 0.5:
                path.append("investigating")
        return [*path, "cancelled"]
    path = LIFECYCLE[: LIFECYCLE.index(final) + 1]
    # About half the incidents go straight from contained to resolved.
    if final != "recovering" and "resolved" in path and rng.random() < 0.5:
        path.remove("recovering")
    return path


def _generate_incidents(rng, n, now, severities, systems, system_ids, user_ids):
    history = timedelta(days=HISTORY_DAYS).total_seconds()
    # Oldest first, so ids and the per-day numbers follow detection time as they would live.
    detected = sorted(now - timedelta(seconds=rng.uniform(60, history)) for _ in range(n))
    levels = list(SEVERITY_MIX)
    level_weights = list(accumulate(SEVERITY_MIX.values()))
    titles_by_category: dict[str, list] = {}
    for category, title, keys in TITLES:
        titles_by_category.setdefault(category, []).append((title, keys))

    incidents: list[Inc] = []
    rows: list[tuple] = []
    m2m: list[tuple[int, int]] = []
    day_counts: dict = {}
    for pk, detected_at in enumerate(detected, start=1):
        age_days = (now - detected_at).total_seconds() / 86400
        # Most open incidents are recent; a few old low-severity ones linger (about 5% overall).
        p_open = 0.85 if age_days < 1 else 0.45 if age_days < 7 else 0.15 if age_days < 30 else 0.04
        if rng.random() < p_open:
            final = pick(rng, OPEN_MIX)
        else:
            final = pick(rng, RECENT_CLOSED_MIX if age_days < 30 else OLD_CLOSED_MIX)
        level = levels[bisect(level_weights, rng.random() * level_weights[-1])]
        category = pick(rng, CATEGORY_MIX)
        title_text, keys = rng.choice(titles_by_category[category])
        title = fill(rng, title_text)
        path = _lifecycle_path(rng, final)

        # Lifecycle timestamps, squeezed if the incident is so recent they would reach now.
        times = {"detected": detected_at}
        t = detected_at
        for state in path[1:]:
            if state == "acknowledged":
                gap = rng.expovariate(1 / MTTA_MEAN[level])
            elif state == "investigating":
                gap = rng.uniform(60, 600)
            elif state == "contained":
                gap = rng.expovariate(1 / (MTTR_MEAN[level] / 4))
            elif state == "recovering":
                gap = rng.uniform(300, 1800)
            elif state == "resolved":
                gap = rng.expovariate(1 / (MTTR_MEAN[level] / 2))
            elif state == "in_review":
                gap = rng.uniform(2 * 3600, 48 * 3600)
            elif state == "closed":
                gap = rng.uniform(86400, 4 * 86400)
            else:  # cancelled
                gap = rng.uniform(300, 7200)
            t = t + timedelta(seconds=gap)
            times[state] = t
        latest = now - timedelta(seconds=30)
        if t > latest:
            scale = (latest - detected_at) / (t - detected_at)
            times = {s: detected_at + (at - detected_at) * scale for s, at in times.items()}
        last = max(times.values())

        commander = rng.choice(user_ids) if final != "detected" or rng.random() < 0.6 else None
        reported_by = rng.choice(user_ids)
        day = detected_at.date()
        number = day_counts[day] = day_counts.get(day, 0) + 1
        resolved = "resolved" in times
        impact = None
        if level == 1:
            impact = round(rng.uniform(10_000, 500_000), 2)
        elif level == 2:
            impact = round(rng.uniform(1_000, 10_000), 2)
        elif level == 3 and rng.random() < 0.3:
            impact = round(rng.uniform(0, 1_000), 2)
        rows.append(
            (
                pk,
                f"TMT-INC-{day:%Y-%m-%d}-{number:03d}",
                day,
                number,
                title,
                fill(rng, rng.choice(DESCRIPTIONS)) + title + ".",
                severities[level].pk,
                category,
                pick(rng, DETECTION_MIX),
                impact,
                fill(rng, "Orders on {venue} delayed for some clients.") if level <= 2 else "",
                rng.random() < 0.02,
                final,
                reported_by,
                commander,
                detected_at - timedelta(seconds=rng.uniform(0, 1200)),
                times.get("resolved"),
                detected_at,
                times.get("acknowledged"),
                commander if "acknowledged" in times else None,
                times.get("investigating"),
                times.get("contained"),
                times.get("recovering"),
                times.get("resolved"),
                times.get("in_review"),
                times.get("closed"),
                times.get("cancelled"),
                "False alarm: monitoring threshold misconfigured." if final == "cancelled" else "",
                rng.choice(CAUSES) if resolved else "",
                "Alert fired late because the threshold was too loose." if resolved else "",
                fill(rng, "Restarted the gateway on {host} and replayed missed orders.") if resolved else "",
                "Compared positions with the venue drop copy." if resolved else "",
                "Fast acknowledgement; clear ownership." if final == "closed" else "",
                "Runbook step for failover was out of date." if final == "closed" else "",
                "Raised the pool size." if final == "closed" else "",
                "Load-test the gateway at twice the open's peak." if final == "closed" else "",
                "Alert on pool saturation at 80%." if final == "closed" else "",
                detected_at,
                last,
            )
        )
        wanted = [systems[k] for k in keys if k in systems]
        if rng.random() < 0.3:
            wanted.append(rng.choice(system_ids))
        for system_id in dict.fromkeys(wanted[:2] or [rng.choice(system_ids)]):
            m2m.append((pk, system_id))
        end = (
            times.get("closed")
            or times.get("cancelled")
            or (times.get("resolved") + timedelta(hours=2) if resolved else now)
        )
        incidents.append(
            Inc(
                id=pk,
                severity=level,
                category=category,
                detected_at=detected_at,
                path=path,
                times=times,
                commander_id=commander,
                reported_by_id=reported_by,
                title=title,
                end=min(end, now),
                heavy=False,
            )
        )
    return incidents, rows, m2m, day_counts


def _generate_timeline(rng, incidents, target, now, names, severities):
    """Every incident's mandatory entries (opened, commander, one per transition), then extras
    spread so the total is exactly `target`: a few long Sev1 incidents with HEAVY_SIZE entries
    (health flips and notifications every few minutes), the rest about ENTRIES_PER_INCIDENT."""
    user_ids = list(names)
    mandatory: list[list[tuple]] = []
    for inc in incidents:
        entries = []
        automated = rng.random() < 0.6
        entries.append(
            (
                inc.detected_at,
                "state_change",
                f"Incident opened as {severities[inc.severity].label}: {inc.title}",
                None if automated else inc.reported_by_id,
                "Monitoring" if automated else "",
                "",
                "detected",
            )
        )
        if inc.commander_id:
            entries.append(
                (
                    inc.detected_at + timedelta(seconds=20),
                    "update",
                    f"Incident commander: {names[inc.commander_id]}",
                    inc.reported_by_id,
                    "",
                    "",
                    "",
                )
            )
        for source, state in zip(inc.path, inc.path[1:], strict=False):
            action = f"{TRANSITION_LABEL[state]}: {STATE_LABEL[source]} → {STATE_LABEL[state]}"
            if state == "cancelled":
                action += ". Reason: false alarm, monitoring threshold misconfigured"
            entries.append(
                (inc.times[state], "state_change", action, inc.commander_id or rng.choice(user_ids), "", source, state)
            )
        mandatory.append(entries)

    heavy_size = min(HEAVY_SIZE, max(target // 5, 1))
    n_heavy = max(1, min(5, len(incidents) // 10_000))
    old_sev1 = [i for i in incidents if i.severity == 1 and "closed" in i.times and (now - i.detected_at).days > 30]
    open_sev1 = [i for i in incidents if i.severity == 1 and i.path[-1] in OPEN_MIX and (now - i.detected_at).days < 30]
    # One heavy incident is open and newer than the others, so the benchmark's "heaviest"
    # (most entries, then newest) is an open incident, the costlier page.
    heavies = rng.sample(old_sev1, min(len(old_sev1), n_heavy - (1 if open_sev1 else 0)))
    if open_sev1:
        heavies.append(rng.choice(open_sev1))
    for inc in heavies:
        inc.heavy = True

    fixed = sum(len(m) for m in mandatory)
    budget = target - fixed - sum(max(0, heavy_size - len(mandatory[i.id - 1])) for i in heavies)
    light = [i for i in incidents if not i.heavy]
    # Skewed: higher severities and longer incidents collect more notes.
    weights = [(5 - i.severity) * rng.lognormvariate(0, 0.6) for i in light]
    total_weight = sum(weights)
    extras = {i.id: int(max(budget, 0) * w / total_weight) for i, w in zip(light, weights, strict=True)}
    for inc in rng.choices(light, weights=weights, k=max(budget, 0) - sum(extras.values())):
        extras[inc.id] += 1
    for inc in heavies:
        extras[inc.id] = max(0, heavy_size - len(mandatory[inc.id - 1]))

    kinds = list(EXTRA_KIND_MIX)
    kind_weights = list(accumulate(EXTRA_KIND_MIX.values()))
    rows = []
    for inc, entries in zip(incidents, mandatory, strict=True):
        incident_id = inc.id
        for occurred, kind, action, owner, team, source, state in entries:
            recorded = occurred + timedelta(seconds=rng.uniform(0, 3))
            rows.append((min(recorded, now), incident_id, kind, action, owner, team, occurred, source, state, "{}"))
        start = inc.detected_at
        span = max((inc.end - start).total_seconds(), 60.0)
        for _ in range(extras[incident_id]):
            occurred = start + timedelta(seconds=rng.uniform(0, span))
            kind = kinds[bisect(kind_weights, rng.random() * kind_weights[-1])]
            owner, team, data = rng.choice(user_ids), "", "{}"
            recorded = occurred + timedelta(seconds=rng.uniform(0, 3))
            if kind == "note":
                action = fill(rng, rng.choice(NOTES))
                if rng.random() < 0.03:  # written up after the fact
                    recorded = occurred + timedelta(minutes=rng.uniform(5, 90))
            elif kind == "checklist":
                action = "Done: Initial assessment — Affected systems identification"
            elif kind == "notification":
                owner, team = None, "Notifications"
                action = f"Paged {names[rng.choice(user_ids)]} by SMS and email"
            elif kind == "health":
                owner, team = None, "Health monitor"
                host = rng.choice(HOSTS)
                up = rng.random() < 0.5
                action = f"{host} /health {'recovered' if up else 'failed: timeout after 5 s'}"
                data = json.dumps({"host": host, "healthy": up})
            elif kind == "status_update":
                action = fill(rng, rng.choice(STATUS_UPDATES))
            elif kind == "escalation":
                owner, team = None, "Escalation"
                action = "No acknowledgement within the response time: escalated to the incident manager"
            else:
                action = "Updated financial impact, user impact"
            rows.append((min(recorded, now), incident_id, kind, action, owner, team, occurred, "", "", data))
    # Physical order follows recorded_at, as it would after months of live inserts: one
    # incident's entries are spread over many pages, not packed together.
    rows.sort(key=itemgetter(0))
    return [(pk, *row[1:6], row[6], row[0], *row[7:]) for pk, row in enumerate(rows, start=1)]


def _generate_checklists(rng, incidents, templates, now, user_ids):
    rows = []
    for inc in incidents:
        finished = "resolved" in inc.times or inc.path[-1] == "cancelled"
        past_containment = "contained" in inc.times
        for template in templates:
            attached_at = inc.times.get(template.attach_on_state)
            if attached_at is None or (template.category and template.category != inc.category):
                continue
            if template.gates_containment:  # noqa: SIM108 - two ternaries nested would hide the rule
                p_done = 1.0 if past_containment else 0.5
            else:
                p_done = 0.9 if finished else 0.4
            for item in template.items.all():
                done = rng.random() < p_done
                done_at = min(attached_at + timedelta(seconds=rng.uniform(60, 1800)), now) if done else None
                rows.append(
                    (
                        attached_at,
                        inc.id,
                        template.pk,
                        template.name,
                        item.text,
                        item.order,
                        template.gates_containment,
                        done_at,
                        (inc.commander_id or rng.choice(user_ids)) if done else None,
                    )
                )
    rows.sort(key=itemgetter(0))  # created when the state was entered, as live
    return [row[1:] for row in rows]


# -- measuring ----------------------------------------------------------------------------


def data_present(n_incidents: int) -> bool:
    """Whether --reuse may skip loading: the same scale, and no migration added since."""
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    from incidents.models import Incident, TimelineEntry

    try:
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            print("The bench database misses migrations: reloading")
            return False
        return (
            Incident.objects.count() == n_incidents
            and TimelineEntry.objects.count() == n_incidents * ENTRIES_PER_INCIDENT
        )
    except DatabaseError:
        return False


def pick_incidents() -> tuple[tuple[str, int], tuple[str, int]]:
    """(reference, entries) of a typical open incident with 10 entries, and of the heaviest."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.reference, t.n FROM incidents_incident i
            JOIN (SELECT incident_id, count(*) AS n FROM incidents_timelineentry
                  GROUP BY incident_id) t ON t.incident_id = i.id
            ORDER BY (t.n = %s) DESC, (i.state = 'investigating') DESC, abs(t.n - %s),
                     i.detected_at DESC
            LIMIT 1
            """,
            [ENTRIES_PER_INCIDENT, ENTRIES_PER_INCIDENT],
        )
        typical = cursor.fetchone()
        cursor.execute(
            """
            SELECT i.reference, t.n FROM incidents_incident i
            JOIN (SELECT incident_id, count(*) AS n FROM incidents_timelineentry
                  GROUP BY incident_id) t ON t.incident_id = i.id
            ORDER BY t.n DESC, i.detected_at DESC
            LIMIT 1
            """
        )
        heavy = cursor.fetchone()
    return typical, heavy


def measure(*, warmup: int, runs: int) -> tuple[list, dict]:
    from django.contrib.auth.models import User
    from django.test import Client

    from incidents.models import Incident, SeverityLevel
    from incidents.views import LIST_PAGE_SIZE

    client = Client()
    client.force_login(User.objects.get(username="bench"))
    (typical_ref, typical_n), (heavy_ref, heavy_n) = pick_incidents()
    sev1 = SeverityLevel.objects.get(level=1).pk
    # Halfway through the history: the OFFSET a user paging "Older →" for a while reaches.
    deep_page = max(1, Incident.objects.count() // LIST_PAGE_SIZE // 2)
    pages = [
        ("dashboard", "/", "dashboard"),
        ("list", "/incidents/", "list, first page"),
        ("list_open_sev1", f"/incidents/?state=open&severity={sev1}", "list, open Sev1"),
        ("list_search", "/incidents/?q=circuit", "list, search 'circuit'"),
        ("list_deep", f"/incidents/?page={deep_page}", f"list, page {deep_page:,}"),
        ("detail", f"/incidents/{typical_ref}/", f"detail, {typical_n} entries"),
        ("detail_heavy", f"/incidents/{heavy_ref}/", f"detail, {heavy_n:,} entries"),
    ]
    timings = time_pages(client, [(key, url) for key, url, _ in pages], warmup=warmup, runs=runs)
    labels = [label for _, _, label in pages]
    return list(zip(labels, timings, strict=True)), {"typical": typical_ref, "heavy": heavy_ref}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=50_000, help="incidents to load (default 50,000)")
    parser.add_argument("--reuse", action="store_true", help="skip loading if the bench database has the data")
    parser.add_argument("--runs", type=int, default=30, help="timed rounds over the pages (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per page first (default 5)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--check", action="store_true", help="exit 1 if a page misses the goal")
    args = parser.parse_args()
    if args.incidents < 100:
        parser.error("--incidents must be at least 100")

    bench_db = use_bench_database(DEFAULT_DATABASE)
    setup_django()
    from django.utils import timezone

    from incidents.models import Incident, TimelineEntry

    clock = Stopwatch()
    load_s = 0.0
    if args.reuse and bench_db.exists() and data_present(args.incidents):
        print(f"Reusing {bench_db.name}: {args.incidents:,} incidents already loaded")
    else:
        print(f"Loading {bench_db.name} with {args.incidents:,} incidents")
        clock.step(f"create database {bench_db.name}", bench_db.recreate)
        clock.step("migrate", migrate)
        counts = load(args.incidents, seed=args.seed, now=timezone.now().astimezone(UTC), clock=clock)
        load_s = round(clock.elapsed, 1)
        print(
            f"  {'total load':<44} {load_s:6.1f} s  "
            f"({counts['timeline_entries']:,} timeline entries, "
            f"{counts['checklist_items']:,} checklist items)"
        )

    n_incidents = Incident.objects.count()
    n_entries = TimelineEntry.objects.count()
    n_open = Incident.objects.filter(state__in=list(OPEN_MIX)).count()
    print(
        f"\n{n_incidents:,} incidents ({n_open:,} open), {n_entries:,} timeline entries; "
        f"{args.runs} timed rounds over the pages after {args.warmup} warm-up requests each; "
        f"load average before timing: {load_average()}"
    )

    timings, refs = measure(warmup=args.warmup, runs=args.runs)
    load_after = load_average()
    print(f"load average after timing: {load_after}\n")
    missed = []
    rows = []
    for label, t in timings:
        ok = t.median_ms < GOAL_MS and t.queries < GOAL_QUERIES
        if not ok:
            missed.append(t.name)
        rows.append(
            (
                label,
                t.url if len(t.url) <= 46 else t.url[:43] + "...",
                f"{t.median_ms:.1f}",
                f"{t.min_ms:.1f}",
                f"{t.p95_ms:.1f}",
                t.queries,
                f"{t.size_bytes // 1024} KiB",
                "ok" if ok else "MISS",
            )
        )
    print_table(["page", "url", "median ms", "min ms", "p95 ms", "queries", "html", "goal"], rows)
    print(
        f"\nGoal: median under {GOAL_MS:.0f} ms and under {GOAL_QUERIES} queries per page. "
        + (f"Missed: {', '.join(missed)}." if missed else "All pages meet it.")
    )

    by_name = {t.name: t for _, t in timings}
    result = {
        "list_ms": by_name["list"].median_ms,
        "detail_ms": by_name["detail"].median_ms,
        "dashboard_ms": by_name["dashboard"].median_ms,
        "list_queries": by_name["list"].queries,
        "detail_queries": by_name["detail"].queries,
        "dashboard_queries": by_name["dashboard"].queries,
    }
    for name, t in by_name.items():
        if name not in {"list", "detail", "dashboard"}:
            result[f"{name}_ms"] = t.median_ms
            result[f"{name}_queries"] = t.queries
    for name, t in by_name.items():
        result[f"{name}_p95_ms"] = t.p95_ms
    result.update(
        incidents=n_incidents,
        timeline_entries=n_entries,
        load_s=load_s,
        detail_incident=refs["typical"],
        detail_heavy_incident=refs["heavy"],
        load_average=load_after,
    )
    print_result_json(result)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
