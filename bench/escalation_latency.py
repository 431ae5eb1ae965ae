"""How late escalations fire under load: 5,000 deadlines due over 60 s, real worker and beat.

On PostgreSQL and Redis, with `celery worker` and `celery beat` started as the deployment starts
them, 5,000 role-escalation deadlines (one per Sev1 incident, paging the CTO by SMS and phone
through a local HTTP provider, email follow-up to a dummy mailer) fall due uniformly over a
60-second window. They are created beforehand through `deadline_schedule` inside transactions,
the production path, so each also requests its 100 ms wake-up on commit. Lateness of a deadline is its
EscalationEvent's fired_at minus its due_at. Goal: p99 lateness <= 1 s, no duplicate firing,
nothing missed (and nothing early).

    python bench/escalation_latency.py                     # the full run (about 3 minutes)
    python bench/escalation_latency.py --deadlines 500 --window 10   # quick smoke run

It works in its own database (BENCH_DATABASE_NAME, default tmt_ir_bench_escalation) on the
server DATABASE_URL names, dropped and recreated on each run; the database DATABASE_URL names is
never touched. Celery uses Redis database 12 (BENCH_REDIS_DB) on the server CELERY_BROKER_URL
names: that database belongs to this benchmark and is flushed first, so no message of an earlier
run (whose ids would point at rows of the new database) is delivered. The last line of output is
one JSON object.
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# `python bench/escalation_latency.py` puts bench/ on sys.path, not the project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PROJECT_ROOT,
    CpuMeter,
    flush_broker,
    load_average,
    migrate,
    percentile,
    print_result_json,
    print_table,
    setup_django,
    stop_all,
    tail,
    use_bench_broker,
    use_bench_database,
)

DEFAULT_DATABASE = "tmt_ir_bench_escalation"
DEFAULT_REDIS_DB = 12
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
# Deadlines are created the way services create them: a few per transaction, ETA sent on commit.
PER_TRANSACTION = 25
# Headroom on the measured cost of creating a deadline when placing the window after creation.
CREATE_COST_MARGIN = 2.0

# Process layout on a 2-core machine, as the Procfile runs it:
# - beat: one process; it only publishes `fire_due_deadlines` every second.
# - escalation worker, `-Q escalation -P threads -c 4`: claim runs (beat's and the 100 ms
#   wake-ups) may overlap, and SKIP LOCKED lets them share the due rows. Since firings are
#   claimed, written and queued a batch at a time (~4 round trips and ~2-3 ms of CPU per firing
#   instead of 15 and ~10 ms), this fires 5,000 deadlines in 60 s with p99 lateness ~0.15 s;
#   before, p99 was 14.6-28 s with threads and 42.8 s with `-P solo` (670 missed).
# - notifications worker, `-Q notifications -P threads -c 4`: delivery waits on the SMS/voice
#   provider and the mail server, so a few threads overlap those waits. It has a process of its
#   own because sharing one with escalation (the Procfile's `-Q escalation,notifications`) let
#   the burst of per-deadline tasks the engine then sent starve delivery: no page went out.
# Try another layout with --escalation-args / --notifications-args.
WORKERS = {
    "escalation": ["-Q", "escalation", "-P", "threads", "-c", "4"],
    "notifications": ["-Q", "notifications", "-P", "threads", "-c", "4"],
}


# -- the SMS/voice provider -----------------------------------------------------------------


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle holds the body back until the
    # client's delayed ACK (40 ms), a latency no real provider adds.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.received += 1  # type: ignore[attr-defined]
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Sink(ThreadingHTTPServer):
    """Answers every page with 200, like a healthy provider; counts what it received."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.lock = threading.Lock()
        self.received = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/send"


# -- set-up ---------------------------------------------------------------------------------


def seed(n_incidents: int, now: datetime) -> list:
    """The CTO with a phone and an SMS number, and Sev1 incidents whose frozen policy has one
    role trigger paging the CTO (bulk-inserted: opening them is not what is measured)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from incidents.models import Incident, IncidentDaySequence, Person, RoleContact, SeverityLevel
    from incidents.roles import CTO
    from incidents.services.escalation import escalation_snapshot_build

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
    return created


def schedule(incidents: list, window_start: datetime, window_s: float, rng: random.Random) -> float:
    """One deadline per incident, due uniformly over the window, created in random order through
    the service so each requests its wake-up on commit. Returns how long creation took."""
    from django.db import transaction

    from incidents.models import Deadline
    from incidents.services.escalation import deadline_schedule

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
                made = deadline_schedule(
                    incident, kind=Deadline.Kind.ROLE_ESCALATION, rule=RULE, step=0, due_at=due_at
                )
                if made is None:
                    raise RuntimeError(
                        f"deadline_schedule refused a deadline for {incident.reference}"
                    )
    return time.perf_counter() - started


def creation_cost(incidents: list, sample: int = 100) -> float:
    """Seconds it takes here and now to create one deadline through the service, measured on a
    throwaway rule due beyond the ETA horizon (so no message is sent); the rows are removed."""
    from django.db import transaction

    from incidents.models import Deadline
    from incidents.services.escalation import ETA_HORIZON, deadline_schedule

    due_at = datetime.now(UTC) + ETA_HORIZON + timedelta(hours=1)
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


def _env(var_dir: Path, sink_url: str) -> dict[str, str]:
    env = dict(os.environ)  # DATABASE_URL and CELERY_BROKER_URL already point at the bench's
    env.update(
        TMT_VAR_DIR=str(var_dir),
        EMAIL_URL="dummymail://",
        TMT_SMS_PROVIDER_URL=sink_url,
        DJANGO_DEBUG="0",
        LOG_LEVEL="INFO",
    )
    return env


def start(name: str, args: list[str], var_dir: Path, sink_url: str) -> subprocess.Popen:
    # The child keeps its own copy of the log's descriptor; ours can close at once.
    with open(var_dir / f"{name}.log", "w") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter running celery, fixed arguments
            [sys.executable, "-m", "celery", "-A", "tmt_ir", *args, "--loglevel", "INFO"],
            cwd=PROJECT_ROOT,
            env=_env(var_dir, sink_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def start_all(
    var_dir: Path, sink_url: str, workers: dict[str, list[str]]
) -> dict[str, subprocess.Popen]:
    processes = {
        "beat": start("beat", ["beat", "-s", str(var_dir / "beat-schedule")], var_dir, sink_url)
    }
    for name, args in workers.items():
        processes[name] = start(
            name,
            [
                "worker",
                *args,
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            var_dir,
            sink_url,
        )
    return processes


def wait_ready(processes: dict[str, subprocess.Popen], var_dir: Path, timeout: float = 60) -> None:
    marks = {name: " ready." for name in processes} | {"beat": "beat: Starting"}
    limit = time.monotonic() + timeout
    waiting = set(marks)
    while waiting:
        for name in list(waiting):
            if processes[name].poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {processes[name].returncode}:\n{tail(var_dir / f'{name}.log')}"
                )
            if marks[name] in (var_dir / f"{name}.log").read_text(errors="replace"):
                waiting.discard(name)
        if time.monotonic() > limit:
            raise RuntimeError(f"not ready after {timeout:.0f} s: {sorted(waiting)}")
        time.sleep(0.2)


def wait_for_firing(
    window_end: datetime,
    deadline: datetime,
    processes: dict[str, subprocess.Popen],
    meter: CpuMeter,
) -> None:
    """Until every benchmark deadline has fired and its SMS/voice pages were sent, or `deadline`."""
    from django.utils import timezone

    from incidents.models import Deadline, Notification

    pages_pending = Notification.objects.filter(
        event__rule=RULE, channel__in=["sms", "phone"], state__in=["pending", "sending"]
    )
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

_TASK_DONE = re.compile(
    r"Task incidents\.tasks\.(\w+)\[[^\]]+\] succeeded in ([0-9.e-]+)s: '([^']*)'"
)


def worker_log_summary(path: Path) -> dict:
    """Which path fired what, and how long each task ran, from the escalation worker's log."""
    runtimes: dict[str, list[float]] = {}
    fired = Counter()
    calls = Counter()
    for match in _TASK_DONE.finditer(path.read_text(errors="replace")):
        task, seconds, result = match.group(1), float(match.group(2)), match.group(3)
        runtimes.setdefault(task, []).append(seconds)
        calls[task] += 1
        if task == "fire_deadline" and result == "fired":
            fired["eta"] += 1
        elif task == "fire_due_deadlines":
            count = int(result.split()[-1])
            fired["beat"] += count
            if count:
                calls["beat_nonempty"] += 1
    return {"runtimes": runtimes, "fired": fired, "calls": calls}


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


def measure(window_start: datetime, window_s: float) -> dict:
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
            WHERE d.rule = %s AND NOT EXISTS (SELECT 1 FROM incidents_escalationevent e WHERE e.deadline_id = d.id)
            """,
            [RULE],
        )
        (missed,) = cursor.fetchone()
        # The unique constraint should make these 0; counted from the rows all the same.
        cursor.execute(
            """
            SELECT coalesce(sum(n - 1), 0) FROM (
                SELECT count(*) AS n FROM incidents_escalationevent WHERE rule = %s GROUP BY incident_id, rule, step
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
            SELECT n.channel, n.state, EXTRACT(EPOCH FROM n.sent_at - d.due_at)
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
    pages = [
        float(late)
        for channel, state, late in notifications
        if channel in ("sms", "phone") and state == "sent"
    ]
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
        "notifications": Counter((channel, state) for channel, state, _ in notifications),
        "pages": stats(pages),
    }


def report(
    result: dict, log: dict, *, created_s: float, margin_s: float, sink_received: int, cpu: dict
) -> None:
    s = result["stats"]
    print(
        f"\ncreated {result['deadlines']} deadlines in {created_s:.1f} s; the window opened {margin_s:.1f} s after"
    )
    print(
        f"fired {result['fired']}, missed {result['missed']}, early {result['early']}, "
        f"duplicate events {result['duplicate_events']}, duplicate timeline entries {result['duplicate_entries']} "
        f"(of {result['timeline_entries']})"
    )
    print("\nlateness (EscalationEvent.fired_at - Deadline.due_at), seconds:")
    rows = [("all", s)] + result["slices"]
    print_table(
        ["due in window", "n", "min", "p50", "p90", "p99", "max"],
        [
            (name, st["n"], *(f"{st[k]:.3f}" for k in ("min", "p50", "p90", "p99", "max")))
            for name, st in rows
        ],
    )
    buckets = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0]
    counts = Counter(
        next((f"<= {b:g} s" for b in buckets if late <= b), f"> {buckets[-1]:g} s")
        for late in result["lateness"]
    )
    print(
        "\n"
        + ", ".join(
            f"{label}: {counts[label]}"
            for label in [*(f"<= {b:g} s" for b in buckets), f"> {buckets[-1]:g} s"]
        )
    )

    fired, calls = log["fired"], log["calls"]
    unlogged = result["fired"] - fired["eta"] - fired["beat"]
    print(
        f"\nfired by a per-deadline task (none since 100 ms wake-ups): {fired['eta']}, by claim runs: {fired['beat']} "
        f"({calls['fire_due_deadlines']} beat runs, {calls['beat_nonempty']} of them found something)"
        + (f", by a task cut off at shutdown: {unlogged}" if unlogged > 0 else "")
        + f"; ETA tasks that found nothing to do: {calls['fire_deadline'] - fired['eta']}"
    )
    print("escalation worker task run time (ms):")
    print_table(
        ["task", "runs", "p50", "p99", "max", "total s"],
        [
            (
                task,
                len(v),
                f"{percentile(v, 50) * 1000:.1f}",
                f"{percentile(v, 99) * 1000:.1f}",
                f"{max(v) * 1000:.1f}",
                f"{sum(v):.1f}",
            )
            for task, v in sorted(log["runtimes"].items())
        ],
    )
    p = result["pages"]
    by_state = ", ".join(
        f"{ch} {st}: {n}" for (ch, st), n in sorted(result["notifications"].items())
    )
    print(f"\nnotifications: {by_state}; the provider received {sink_received} requests")
    print(
        f"SMS/voice page sent (sent_at - due_at), seconds: p50 {p['p50']:.3f}, p99 {p['p99']:.3f}, max {p['max']:.3f}"
    )
    if cpu and result["fired"]:
        print("\nCPU used from creation to the end (s), and per deadline fired (ms):")
        print_table(
            ["process", "CPU s", "ms per firing"],
            [
                (name, f"{sec:.1f}", f"{sec / result['fired'] * 1000:.1f}")
                for name, sec in cpu.items()
            ],
        )
    print(f"load average: {load_average()} (other processes on the machine share these CPUs)")


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deadlines", type=int, default=5000)
    parser.add_argument(
        "--window", type=float, default=60.0, help="seconds over which they fall due"
    )
    parser.add_argument(
        "--lead", type=float, default=15.0, help="seconds between creation and the window"
    )
    parser.add_argument(
        "--grace", type=float, default=30.0, help="seconds after the window before giving up"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--escalation-args",
        default=" ".join(WORKERS["escalation"]),
        help="the escalation worker's queue and pool options, to try another layout",
    )
    parser.add_argument(
        "--notifications-args",
        default=" ".join(WORKERS["notifications"]),
        help="the notifications worker's queue and pool options; 'none' for no such worker (when "
        "--escalation-args takes the notifications queue too, as the Procfile does)",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the processes' logs and print where"
    )
    args = parser.parse_args()

    bench_db = use_bench_database(DEFAULT_DATABASE)
    broker_url = use_bench_broker(DEFAULT_REDIS_DB)
    setup_django()
    from django.utils import timezone

    print(
        f"database {bench_db.name}, broker {broker_url}, {args.deadlines} deadlines over {args.window:.0f} s"
    )
    workers = {"escalation": args.escalation_args.split()}
    if args.notifications_args.strip().lower() != "none":
        workers["notifications"] = args.notifications_args.split()
    print("processes: beat; " + "; ".join(f"worker {' '.join(a)}" for a in workers.values()))
    bench_db.recreate()
    migrate()
    flush_broker(broker_url)

    sink = Sink()
    threading.Thread(target=sink.serve_forever, name="sms-sink", daemon=True).start()
    var_dir = Path(tempfile.mkdtemp(prefix="tmt-bench-escalation-"))
    processes = start_all(var_dir, sink.url, workers)
    try:
        now = timezone.now()
        incidents = seed(args.deadlines, now.astimezone(UTC))
        wait_ready(processes, var_dir)
        # Start the window once creation is over, so creating 5,000 rows does not eat into it.
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
        wait_for_firing(window_end, window_end + timedelta(seconds=args.grace), processes, meter)
        time.sleep(2)  # a duplicate firing, if there were one, would land now
        meter.sample()
        cpu = meter.used()
    finally:
        stop_all(processes)
        sink.shutdown()
        sink.server_close()

    log = worker_log_summary(var_dir / "escalation.log")
    result = measure(window_start, args.window)
    report(
        result, log, created_s=created_s, margin_s=margin_s, sink_received=sink.received, cpu=cpu
    )
    if args.keep_logs:
        print(f"logs in {var_dir}")
    else:
        shutil.rmtree(var_dir, ignore_errors=True)

    s = result["stats"]
    duplicates = result["duplicate_events"] + result["duplicate_entries"]
    # Firing on time is not enough: every fired deadline's SMS and call must have reached the
    # provider (the sink counts what it really received).
    pages_sent = sum(
        n
        for (channel, state), n in result["notifications"].items()
        if channel in ("sms", "phone") and state == "sent"
    )
    pages_unsent = sum(
        n
        for (channel, state), n in result["notifications"].items()
        if channel in ("sms", "phone") and state != "sent"
    )
    delivered = pages_unsent == 0 and pages_sent == 2 * result["fired"] <= sink.received
    met = (
        s["p99"] <= GOAL_P99_S
        and duplicates == 0
        and result["missed"] == 0
        and result["early"] == 0
        and delivered
    )
    print(
        f"pages: {pages_sent} sent ({2 * result['fired']} expected: SMS and call per firing), "
        f"{pages_unsent} not sent, {sink.received} received by the provider"
    )
    print(
        f"goal (p99 <= {GOAL_P99_S:g} s, 0 duplicates, 0 missed, every page delivered): "
        f"{'met' if met else 'NOT met'}"
    )
    print_result_json(
        {
            "p50_s": round(s["p50"], 3),
            "p90_s": round(s["p90"], 3),
            "p99_s": round(s["p99"], 3),
            "max_s": round(s["max"], 3),
            "duplicates": duplicates,
            "missed": result["missed"],
            "early": result["early"],
            "deadlines": result["deadlines"],
            "fired_eta": log["fired"]["eta"],
            "fired_beat": log["fired"]["beat"],
            "page_sent_p99_s": round(result["pages"]["p99"], 3),
            "pages_sent": pages_sent,
            "pages_unsent": pages_unsent,
            "provider_received": sink.received,
            "goal_met": met,
        }
    )


if __name__ == "__main__":
    main()
