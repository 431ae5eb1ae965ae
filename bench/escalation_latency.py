"""How late escalations fire and pages arrive under load: 5,000 deadlines due over 60 s.

Paging as deployed: `manage.py run_dispatcher` processes (the Procfile's `dispatcher:`; one with
its default sending threads, or --dispatchers N side by side) fire due deadlines and deliver
their pages straight from PostgreSQL, woken by LISTEN/NOTIFY and otherwise looking at least once
a second. No broker, Celery worker or beat is on that path, so none is started. 5,000
role-escalation deadlines (one per Sev1 incident, paging the CTO by SMS and phone through a local
HTTP provider, email follow-up to a dummy mailer) fall due uniformly over a 60-second window.
They are created beforehand through `deadline_schedule` inside transactions, the production path.

Measured: a firing's lateness is its EscalationEvent's fired_at minus its due_at; a page's is
the time the provider received it minus the deadline's due_at. The provider honours
Idempotency-Key as a real one does: a key it already accepted is answered 200 and not counted
as a new page (a replay). Goal: firing p99 lateness <= 1 s, no duplicate (a step fired or
recorded twice, a page key received twice), nothing missed or early, and every SMS and call
received by the provider. Page lateness is reported beside it.

    python bench/escalation_latency.py                     # the full run (about 3 minutes)
    python bench/escalation_latency.py --dispatchers 2     # two dispatchers sharing the work
    python bench/escalation_latency.py --deadlines 500 --window 10   # quick smoke run

It works in its own database (BENCH_DATABASE_NAME, default tmt_ir_bench_escalation) on the
server DATABASE_URL names, dropped and recreated on each run; the database DATABASE_URL names is
never touched. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

# `python bench/escalation_latency.py` puts bench/ on sys.path, not the project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PROJECT_ROOT,
    CpuMeter,
    ProviderSink,
    load_average,
    migrate,
    percentile,
    print_result_json,
    print_table,
    setup_django,
    stop_all,
    tail,
    use_bench_database,
)

DEFAULT_DATABASE = "tmt_ir_bench_escalation"
GOAL_P99_S = 1.0
RULE = "role:bench"
TRIGGER = {
    "key": "bench",
    "name": "Benchmark escalation",
    "role": "CTO",
    "condition": "severity",
    "severity_level": 1,
    "open_for_s": None,
    "amount_usd": None,
}
# Deadlines are created the way services create them: a few per transaction.
PER_TRANSACTION = 25
# Headroom on the measured cost of creating a deadline when placing the window after creation.
CREATE_COST_MARGIN = 2.0
URGENT = ("sms", "phone")


# -- set-up ---------------------------------------------------------------------------------


def seed(n_incidents: int, now: datetime) -> list:
    """The CTO with a phone and an SMS number, and Sev1 incidents whose frozen policy has one
    role trigger paging the CTO (bulk-inserted: opening them is not what is measured)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from incidents.escalation.services import escalation_snapshot_build
    from incidents.models import Incident, IncidentDaySequence, SeverityLevel
    from incidents.oncall.models import Person, RoleContact
    from incidents.roles import CTO

    cto = get_user_model().objects.create_user(
        username="bench-cto", email="cto@bench.example", first_name="Bench", last_name="CTO"
    )
    role = Group.objects.get(name=CTO)
    cto.groups.add(role)
    Person.objects.create(user=cto, phone="+442070000100", sms_number="+447700000101")
    RoleContact.objects.create(role=role, primary=cto)

    snapshot = escalation_snapshot_build()
    snapshot["triggers"] = [TRIGGER]
    sev1 = SeverityLevel.objects.get(level=1)
    day = now.date()
    incidents = [
        Incident(
            reference=f"TMT-INC-{day:%Y-%m-%d}-{i:05d}",
            reference_day=day,
            reference_number=i,
            title=f"Benchmark incident {i}",
            severity=sev1,
            detection_method="automated_alert",
            reported_by=cto,
            started_at=now,
            detected_at=now,
            escalation_snapshot=snapshot,
        )
        for i in range(1, n_incidents + 1)
    ]
    created = Incident.objects.bulk_create(incidents, batch_size=1000)
    IncidentDaySequence.objects.update_or_create(day=day, defaults={"last_number": n_incidents})
    # The seeded health targets point at the agent simulator, which this bench does not run.
    from incidents.monitoring.models import HealthTarget

    HealthTarget.objects.update(enabled=False)
    return created


def schedule(incidents: list, window_start: datetime, window_s: float, rng: random.Random) -> float:
    """One deadline per incident, due uniformly over the window, created in random order through
    the service. Returns how long creation took."""
    from django.db import transaction

    from incidents.escalation.models import Deadline
    from incidents.escalation.services import deadline_schedule

    n = len(incidents)
    due = [window_start + timedelta(seconds=(i + 0.5) * window_s / n) for i in range(n)]
    rng.shuffle(due)
    started = time.perf_counter()
    for start in range(0, n, PER_TRANSACTION):
        with transaction.atomic():
            for incident, due_at in zip(
                incidents[start : start + PER_TRANSACTION],
                due[start : start + PER_TRANSACTION],
                strict=True,
            ):
                made = deadline_schedule(incident, kind=Deadline.Kind.ROLE_ESCALATION, rule=RULE, step=0, due_at=due_at)
                if made is None:
                    raise RuntimeError(f"deadline_schedule refused a deadline for {incident.reference}")
    return time.perf_counter() - started


def creation_cost(incidents: list, sample: int = 100) -> float:
    """Seconds it takes here and now to create one deadline through the service, measured on a
    throwaway rule due in a day (so no dispatcher fires it); the rows are removed."""
    from django.db import transaction

    from incidents.escalation.models import Deadline
    from incidents.escalation.services import deadline_schedule

    due_at = datetime.now(UTC) + timedelta(days=1)
    started = time.perf_counter()
    for start in range(0, sample, PER_TRANSACTION):
        with transaction.atomic():
            for incident in incidents[start : min(sample, start + PER_TRANSACTION)]:
                deadline_schedule(
                    incident,
                    kind=Deadline.Kind.ROLE_ESCALATION,
                    rule="role:calibration",
                    step=0,
                    due_at=due_at,
                )
    cost = (time.perf_counter() - started) / sample
    Deadline.objects.filter(rule="role:calibration").delete()
    return cost


# -- the processes --------------------------------------------------------------------------

# Paging as the Procfile runs it: `manage.py run_dispatcher`, by default one process with
# TMT_DISPATCHER_THREADS (8) sending threads. Each process claims due deadlines and due pages
# with SELECT ... FOR UPDATE SKIP LOCKED, so several share the work without doing any twice.
# Measured on 2 cores shared with a test run (load average 6-10): one dispatcher fired 5,000
# deadlines in 60 s with firing p99 0.16 s, and the provider received all 10,000 SMS and calls
# with p99 1.9 s after due (delivery, ~8 ms of dispatcher CPU per firing and its two pages, is
# what falls behind); two dispatchers: firing p99 0.45 s, pages p99 1.1 s. No duplicate or
# replayed key, nothing missed.


def dispatcher_names(n: int) -> list[str]:
    return [f"bench-d{i}" for i in range(1, n + 1)]


def start_dispatchers(
    names: list[str], var_dir: Path, sink_url: str, threads: int | None
) -> dict[str, subprocess.Popen]:
    env = dict(os.environ)  # DATABASE_URL already points at the bench's database
    env.update(
        TMT_VAR_DIR=str(var_dir),
        EMAIL_URL="dummymail://",
        TMT_SMS_PROVIDER_URL=sink_url,
        DJANGO_DEBUG="0",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    extra = ["--threads", str(threads)] if threads else []
    processes = {}
    for name in names:
        # The child keeps its own copy of the log's descriptor; ours can close at once.
        with open(var_dir / f"{name}.log", "w") as log:
            processes[name] = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
                [sys.executable, "manage.py", "run_dispatcher", "--name", name, *extra],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    return processes


def wait_ready(processes: dict[str, subprocess.Popen], var_dir: Path, timeout: float = 60) -> None:
    """Until each dispatcher has recorded both its paging duties (its loops are running)."""
    from incidents.monitoring.models import DutyHeartbeat

    limit = time.monotonic() + timeout
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail(var_dir / f'{name}.log')}")
        seen = Counter(
            DutyHeartbeat.objects.filter(process__in=list(processes), duty__in=["escalation", "delivery"]).values_list(
                "process", flat=True
            )
        )
        if all(seen[name] == 2 for name in processes):
            return
        if time.monotonic() > limit:
            raise RuntimeError(f"dispatchers not ready after {timeout:.0f} s: {dict(seen)}")
        time.sleep(0.2)


class CeleryDutiesStandIn(threading.Thread):
    """Records the Celery worker's duty heartbeats (health polling, report rendering), which this
    bench does not run: otherwise each dispatcher's monitor thread, doing its deployed checks,
    would find them silent after 30 s and open infrastructure incidents whose pages would mix
    with the measured ones."""

    def __init__(self) -> None:
        super().__init__(name="celery-duties-stand-in", daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        from django.db import connections

        from incidents.monitoring import services as health
        from incidents.monitoring.models import DutyHeartbeat

        duties = (DutyHeartbeat.Duty.HEALTH_POLLING, DutyHeartbeat.Duty.REPORT_RENDERING)
        try:
            while True:
                for duty in duties:
                    health.duty_record(duty=duty, process="bench (no Celery worker)")
                if self.stopping.wait(5):
                    return
        finally:
            connections.close_all()


def wait_for_paging(
    window_end: datetime,
    deadline: datetime,
    processes: dict[str, subprocess.Popen],
    meter: CpuMeter,
) -> None:
    """Until every benchmark deadline has fired and its SMS/voice pages were sent, or `deadline`."""
    from django.utils import timezone

    from incidents.escalation.models import Deadline
    from incidents.notifications.models import Notification

    pages_pending = Notification.objects.filter(event__rule=RULE, channel__in=URGENT, state__in=["pending", "sending"])
    while timezone.now() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} died with {process.returncode}")
        if timezone.now() > window_end:
            unfired = Deadline.objects.filter(rule=RULE, fired_at=None, cancelled_at=None).exists()
            if not unfired and not pages_pending.exists():
                return
        meter.sample()
        time.sleep(0.5)


# -- results --------------------------------------------------------------------------------

_FIRED = re.compile(r"^fired (\d+) deadline\(s\)$", re.MULTILINE)
_SENT = re.compile(r"^notification \d+ \((\w+) to [^)]*\): (\w+)", re.MULTILINE)


def dispatcher_log_summary(var_dir: Path, names: list[str]) -> dict[str, dict]:
    """Per dispatcher, from its log: firing runs that fired something, deadlines fired, and
    deliveries by channel and outcome."""
    summary = {}
    for name in names:
        text = (var_dir / f"{name}.log").read_text(errors="replace")
        fired = [int(n) for n in _FIRED.findall(text)]
        summary[name] = {
            "runs": len(fired),
            "fired": sum(fired),
            "largest_run": max(fired, default=0),
            "deliveries": Counter(f"{channel} {outcome}" for channel, outcome in _SENT.findall(text)),
            "errors": text.count("Traceback"),
        }
    return summary


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "min": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    return {
        "n": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def measure(window_start: datetime, window_s: float, sink: ProviderSink) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT EXTRACT(EPOCH FROM d.due_at - %s), EXTRACT(EPOCH FROM e.fired_at - d.due_at)
            FROM incidents_escalationevent e JOIN incidents_deadline d ON d.id = e.deadline_id
            WHERE d.rule = %s
            """,
            [window_start, RULE],
        )
        fired = [(float(offset), float(late)) for offset, late in cursor.fetchall()]
        cursor.execute("SELECT count(*) FROM incidents_deadline WHERE rule = %s", [RULE])
        (deadlines,) = cursor.fetchone()
        cursor.execute(
            """
            SELECT count(*) FROM incidents_deadline d
            WHERE d.rule = %s
              AND NOT EXISTS (SELECT 1 FROM incidents_escalationevent e WHERE e.deadline_id = d.id)
            """,
            [RULE],
        )
        (missed,) = cursor.fetchone()
        # The unique constraint should make these 0; counted from the rows all the same.
        cursor.execute(
            """
            SELECT coalesce(sum(n - 1), 0) FROM (
                SELECT count(*) AS n FROM incidents_escalationevent WHERE rule = %s
                GROUP BY incident_id, rule, step
            ) per_step
            """,
            [RULE],
        )
        (duplicate_events,) = cursor.fetchone()
        cursor.execute(
            """
            SELECT coalesce(sum(n - 1), 0), coalesce(sum(n), 0) FROM (
                SELECT count(*) AS n FROM incidents_timelineentry
                WHERE kind = 'escalation' AND data->>'rule' = %s
                GROUP BY incident_id, data->>'rule', data->>'step'
            ) per_step
            """,
            [RULE],
        )
        duplicate_entries, entries = cursor.fetchone()
        cursor.execute(
            """
            SELECT n.id, n.channel, n.state, EXTRACT(EPOCH FROM d.due_at),
                   EXTRACT(EPOCH FROM n.sent_at - d.due_at)
            FROM incidents_notification n
            JOIN incidents_escalationevent e ON e.id = n.event_id
            JOIN incidents_deadline d ON d.id = e.deadline_id
            WHERE d.rule = %s
            """,
            [RULE],
        )
        notifications = cursor.fetchall()
    lateness = [late for _, late in fired]
    slice_s = max(1.0, window_s / 6)
    slices = []
    for k in range(int(window_s // slice_s + (window_s % slice_s > 0))):
        part = [late for offset, late in fired if k * slice_s <= offset < (k + 1) * slice_s]
        slices.append((f"{k * slice_s:.0f}-{min(window_s, (k + 1) * slice_s):.0f} s", stats(part)))
    accepted, replays = sink.snapshot()
    urgent = [row for row in notifications if row[1] in URGENT]
    received = []  # provider receive time - due_at, per page the provider accepted
    lost = 0  # pages that never reached the provider
    for pk, _, _, due_epoch, _ in urgent:
        at = accepted.get(f"tmt-notification-{pk}")
        if at is None:
            lost += 1
        else:
            received.append(at - float(due_epoch))
    return {
        "deadlines": deadlines,
        "fired": len(fired),
        "lateness": lateness,
        "stats": stats(lateness),
        "slices": slices,
        "missed": missed,
        "early": sum(1 for late in lateness if late < 0),
        "duplicate_events": int(duplicate_events),
        "duplicate_entries": int(duplicate_entries),
        "timeline_entries": int(entries),
        "notifications": Counter((channel, state) for _, channel, state, _, _ in notifications),
        "pages_recorded_sent": stats([float(late) for _, channel, state, _, late in urgent if state == "sent"]),
        "pages_received": stats(received),
        "pages_lost": lost,
        "provider_keys": len(accepted),
        "provider_requests": sink.requests,
        "replays": replays,
    }


def report(result: dict, logs: dict, *, created_s: float, margin_s: float, cpu: dict) -> None:
    s = result["stats"]
    print(f"\ncreated {result['deadlines']} deadlines in {created_s:.1f} s; the window opened {margin_s:.1f} s after")
    print(
        f"fired {result['fired']}, missed {result['missed']}, early {result['early']}, "
        f"duplicate events {result['duplicate_events']}, "
        f"duplicate timeline entries {result['duplicate_entries']} "
        f"(of {result['timeline_entries']})"
    )
    print("\nfiring lateness (EscalationEvent.fired_at - Deadline.due_at), seconds:")
    rows = [("all", s)] + result["slices"]
    print_table(
        ["due in window", "n", "min", "p50", "p90", "p99", "max"],
        [(name, st["n"], *(f"{st[k]:.3f}" for k in ("min", "p50", "p90", "p99", "max"))) for name, st in rows],
    )
    buckets = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0]
    counts = Counter(
        next((f"<= {b:g} s" for b in buckets if late <= b), f"> {buckets[-1]:g} s") for late in result["lateness"]
    )
    print(
        "\n"
        + ", ".join(
            f"{label}: {counts[label]}" for label in [*(f"<= {b:g} s" for b in buckets), f"> {buckets[-1]:g} s"]
        )
    )
    print("\nper dispatcher (from its log):")
    print_table(
        ["dispatcher", "firing runs", "fired", "largest run", "deliveries", "tracebacks"],
        [
            (
                name,
                log["runs"],
                log["fired"],
                log["largest_run"],
                ", ".join(f"{k}: {n}" for k, n in sorted(log["deliveries"].items())) or "-",
                log["errors"],
            )
            for name, log in logs.items()
        ],
    )
    by_state = ", ".join(f"{ch} {st}: {n}" for (ch, st), n in sorted(result["notifications"].items()))
    print(f"\nnotifications: {by_state}")
    print(
        f"provider: {result['provider_requests']} requests, {result['provider_keys']} distinct "
        f"Idempotency-Keys accepted, {result['replays']} replays (a key already accepted, "
        f"answered 200 and not paged again)"
    )
    print("SMS/voice page lateness, seconds:")
    print_table(
        ["measured as", "n", "p50", "p90", "p99", "max"],
        [
            (name, st["n"], *(f"{st[k]:.3f}" for k in ("p50", "p90", "p99", "max")))
            for name, st in [
                ("provider received - due_at", result["pages_received"]),
                ("Notification.sent_at - due_at", result["pages_recorded_sent"]),
            ]
        ],
    )
    if cpu and result["fired"]:
        print("\nCPU used from creation to the end (s), and per deadline fired (ms):")
        print_table(
            ["process", "CPU s", "ms per firing"],
            [(name, f"{sec:.1f}", f"{sec / result['fired'] * 1000:.1f}") for name, sec in cpu.items()],
        )
    print(f"load average: {load_average()} (other processes on the machine share these CPUs)")


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deadlines", type=int, default=5000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds over which they fall due")
    parser.add_argument("--lead", type=float, default=15.0, help="seconds between creation and the window")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds after the window before giving up")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dispatchers", type=int, default=1, help="`run_dispatcher` processes side by side")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="each dispatcher's sending threads (default: its own, TMT_DISPATCHER_THREADS)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs and print where")
    args = parser.parse_args()
    if args.dispatchers < 1:
        parser.error("--dispatchers must be at least 1")

    bench_db = use_bench_database(DEFAULT_DATABASE)
    setup_django()
    from django.conf import settings
    from django.utils import timezone

    names = dispatcher_names(args.dispatchers)
    threads = args.threads or settings.TMT_DISPATCHER_THREADS
    print(
        f"database {bench_db.name}, {args.deadlines} deadlines over {args.window:.0f} s; "
        f"{args.dispatchers} dispatcher(s) x {threads} sending threads, no broker"
    )
    bench_db.recreate()
    migrate()

    sink = ProviderSink()
    sink.start()
    var_dir = Path(tempfile.mkdtemp(prefix="tmt-bench-escalation-"))
    processes: dict[str, subprocess.Popen] = {}
    stand_in = CeleryDutiesStandIn()
    try:
        now = timezone.now()
        incidents = seed(args.deadlines, now.astimezone(UTC))
        stand_in.start()
        processes = start_dispatchers(names, var_dir, sink.url, args.threads)
        wait_ready(processes, var_dir)
        # Start the window `lead` seconds after creation is over (creation cost measured first),
        # so creating the rows does not eat into it.
        estimate = args.deadlines * creation_cost(incidents) * CREATE_COST_MARGIN
        window_start = timezone.now() + timedelta(seconds=estimate + args.lead)
        window_end = window_start + timedelta(seconds=args.window)
        meter = CpuMeter(processes, bench_db.name)
        meter.sample()
        created_s = schedule(incidents, window_start, args.window, random.Random(args.seed))
        margin_s = (window_start - timezone.now()).total_seconds()
        if margin_s < 0:
            print(f"WARNING: creation overran the window's start by {-margin_s:.1f} s")
        print(
            f"created in {created_s:.1f} s; waiting {margin_s:.0f} s for the window, then {args.window:.0f} s",
            flush=True,
        )
        wait_for_paging(window_end, window_end + timedelta(seconds=args.grace), processes, meter)
        time.sleep(2)  # a duplicate firing or re-send, if there were one, would land now
        meter.sample()
        cpu = meter.used()
    finally:
        stand_in.stopping.set()
        stop_all(processes)
        sink.close()

    logs = dispatcher_log_summary(var_dir, names)
    result = measure(window_start, args.window, sink)
    report(result, logs, created_s=created_s, margin_s=margin_s, cpu=cpu)
    if args.keep_logs:
        print(f"logs in {var_dir}")
    else:
        shutil.rmtree(var_dir, ignore_errors=True)

    s = result["stats"]
    pages = result["pages_received"]
    duplicates = result["duplicate_events"] + result["duplicate_entries"] + result["replays"]
    pages_sent = sum(
        n for (channel, state), n in result["notifications"].items() if channel in URGENT and state == "sent"
    )
    pages_unsent = sum(
        n for (channel, state), n in result["notifications"].items() if channel in URGENT and state != "sent"
    )
    # Firing on time is not enough: every fired deadline's SMS and call must have reached the
    # provider (the provider's own record of keys, not the rows' state).
    delivered = pages_unsent == 0 and result["pages_lost"] == 0 and pages["n"] == pages_sent == 2 * result["fired"]
    met = s["p99"] <= GOAL_P99_S and duplicates == 0 and result["missed"] == 0 and result["early"] == 0 and delivered
    print(
        f"pages: {pages_sent} sent ({2 * result['fired']} expected: SMS and call per firing), "
        f"{pages_unsent} not sent, {pages['n']} received by the provider, "
        f"{result['pages_lost']} never received"
    )
    print(
        f"goal (firing p99 <= {GOAL_P99_S:g} s, 0 duplicates, 0 missed, every page delivered): "
        f"{'met' if met else 'NOT met'}; pages received p99 {pages['p99']:.3f} s "
        f"({'within' if pages['p99'] <= GOAL_P99_S else 'over'} {GOAL_P99_S:g} s)"
    )
    print_result_json(
        {
            "dispatchers": args.dispatchers,
            "threads": threads,
            "p50_s": round(s["p50"], 3),
            "p90_s": round(s["p90"], 3),
            "p99_s": round(s["p99"], 3),
            "max_s": round(s["max"], 3),
            "duplicates": duplicates,
            "replays": result["replays"],
            "missed": result["missed"],
            "early": result["early"],
            "deadlines": result["deadlines"],
            "page_received_p50_s": round(pages["p50"], 3),
            "page_received_p99_s": round(pages["p99"], 3),
            "page_received_max_s": round(pages["max"], 3),
            "pages_sent": pages_sent,
            "pages_unsent": pages_unsent,
            "pages_lost": result["pages_lost"],
            "provider_keys": result["provider_keys"],
            "provider_requests": result["provider_requests"],
            "goal_met": met,
        }
    )


if __name__ == "__main__":
    main()
