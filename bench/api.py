"""API throughput under gunicorn on PostgreSQL: create incidents, list them, ingest alerts.

gunicorn serves `tmt_ir.wsgi` as the deployment would (DEBUG off, PostgreSQL, Redis broker for
the tasks an opening incident queues); this process drives it over HTTP with aiohttp, keeping
`--concurrency` requests in flight, and times each request from send to last byte. Phases:

- create: POST /api/v1/incidents/ with a personal API token (Sev3, one system, no commander).
- list: GET /api/v1/incidents/ pages 1-10 (50 incidents a page, newest first).
- alerts, new: POST /api/v1/alerts/ with the integration's token, an Alertmanager v4 webhook of
  one firing alert with a fingerprint never seen: each opens an automated incident.
- alerts, re-sent: the same, with fingerprints of incidents already open (Alertmanager's repeat
  and group-interval notifications): each joins its incident (timeline entry + AlertEvent).
- alerts, mixed: 90 % re-sent, 10 % new, in random order; its figures are `alerts_rps` and
  `alerts_p99_ms`. Monitoring mostly repeats what is already firing, hence the mix.

    python bench/api.py                                # the full run (about 4 minutes)
    python bench/api.py --requests 300                 # quick smoke run
    python bench/api.py --phases alerts --threads 1    # alerts only, sync workers

Goal: alert ingestion >= 300 requests/s on 2 cores. The load generator shares the machine's
cores with gunicorn and PostgreSQL, so the figures are for the three together; the CPU each
used is printed. It works in its own database (BENCH_DATABASE_NAME, default tmt_ir_bench_api),
dropped and recreated on each run, and Redis database 13 (BENCH_REDIS_DB), flushed first. The
last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# `python bench/api.py` puts bench/ on sys.path, not the project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PROJECT_ROOT,
    CpuMeter,
    flush_broker,
    free_port,
    load_average,
    migrate,
    percentile,
    print_phase_tables,
    print_result_json,
    setup_django,
    stop_all,
    use_bench_broker,
    use_bench_database,
    wait_ready,
)

DEFAULT_DATABASE = "tmt_ir_bench_api"
DEFAULT_REDIS_DB = 13  # not the escalation benchmark's 12: both may run at once

GOAL_ALERTS_RPS = 300
NEW_SHARE = 0.10  # of the mixed alert phase
RESENT_POOL = 200  # open incidents whose alerts the re-sent phases repeat
LIST_PAGES = 10
PHASES = ["create", "list", "alerts, new", "alerts, re-sent", "alerts, mixed"]

# Workers for 2 cores. A re-sent alert is ~3 ms of Python CPU around six PostgreSQL round trips
# (authentication, BEGIN, lookup, two INSERTs, COMMIT with its WAL flush), so a worker spends
# much of a request waiting. Measured here before opening an incident got cheaper (alerts
# phases, 1,000 requests each, 8 in flight, re-sent / mixed req/s): sync -w 3: 136 / 87 (three
# requests at a time leave the CPU idle during the waits); sync -w 8: 361 / 169 (eight processes,
# eight connections); gthread -w 2 --threads 4: 376 / 186; gthread -w 3 --threads 4: 387 / 197.
# Threads overlap the waits as well as processes do with less memory, and a third process keeps
# both cores busy when the GIL is held by one.
DEFAULT_WORKERS = 3
DEFAULT_THREADS = 4  # 1: gunicorn's sync worker; more: gthread


# -- set-up ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    user_token: str
    alert_token: str


def seed() -> Credentials:
    """An incident manager with a personal token, and an Alertmanager integration mapping the
    agents' `service` labels and the usual `severity` values."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from incidents.api.models import AlertIntegration
    from incidents.api.services.api_tokens import alert_integration_issue_token, api_token_create
    from incidents.roles import INCIDENT_MANAGER, ensure_role_groups

    ensure_role_groups()
    user_model = get_user_model()
    manager = user_model.objects.create_user(username="bench-manager", first_name="Bench", last_name="Manager")
    manager.groups.add(Group.objects.get(name=INCIDENT_MANAGER))
    _, user_token = api_token_create(user=manager, name="bench/api.py")
    monitoring = user_model.objects.create_user(username="bench-alertmanager", is_active=False)
    integration = AlertIntegration(
        name="Bench Alertmanager",
        kind=AlertIntegration.Kind.ALERTMANAGER,
        reporter=monitoring,
        system_label="service",
        system_map={
            "circuit-breaker": "circuit_breaker",
            "market-analysis": "market_analysis",
            "risk-management": "risk_management",
        },
        severity_label="severity",
        severity_map={"critical": 1, "high": 2, "warning": 3, "info": 4},
    )
    alert_token = alert_integration_issue_token(integration=integration)
    return Credentials(user_token=user_token, alert_token=alert_token)


# -- the server -----------------------------------------------------------------------------


def start_gunicorn(port: int, workers: int, threads: int, var_dir: Path) -> subprocess.Popen:
    env = dict(os.environ)  # DATABASE_URL and CELERY_BROKER_URL already point at the bench's
    env.update(
        TMT_VAR_DIR=str(var_dir),
        DJANGO_DEBUG="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        EMAIL_URL="dummymail://",
    )
    worker_args = ["--workers", str(workers)]
    if threads > 1:
        worker_args += ["--worker-class", "gthread", "--threads", str(threads)]
    with open(var_dir / "gunicorn.log", "w") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter running gunicorn, fixed arguments
            [sys.executable, "-m", "gunicorn", "tmt_ir.wsgi", "--bind", f"127.0.0.1:{port}", *worker_args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


# -- the requests ---------------------------------------------------------------------------


def incident_body(i: int) -> bytes:
    return json.dumps(
        {
            "title": f"Market data feed gap on venue {i % 17} ({i})",
            "severity": 3,
            "detection_method": "user_report",
            "affected_systems": ["market_analysis"],
            "description": "Quotes stopped for 40 s; the agent fell back to the last snapshot.",
            "take_command": False,
        }
    ).encode()


SERVICES = ["circuit-breaker", "market-analysis", "risk-management"]


def alertmanager_body(fingerprint: str, n: int) -> bytes:
    """Alertmanager's webhook as it sends it: one group, one firing alert."""
    service = SERVICES[n % len(SERVICES)]
    started = "2026-11-27T09:30:00Z"
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}/{{severity=~"critical|high"}}:{{alertname="AgentLatencyHigh", service="{service}"}}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "tmt-portal",
            "groupLabels": {"alertname": "AgentLatencyHigh", "service": service},
            "commonLabels": {"alertname": "AgentLatencyHigh", "service": service, "severity": "high"},
            "commonAnnotations": {"summary": f"{service} p99 latency above 500 ms"},
            "externalURL": "http://alertmanager.tmt.internal:9093",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {
                        "alertname": "AgentLatencyHigh",
                        "service": service,
                        "severity": "high",
                        "instance": f"{service}-{n % 4}:8001",
                        "job": "tmt-agents",
                        "fp": fingerprint,
                    },
                    "annotations": {
                        "summary": f"{service} p99 latency above 500 ms ({fingerprint})",
                        "description": "histogram_quantile(0.99, ...) = 0.734 for 5 minutes.",
                        "runbook_url": "https://wiki.tmt.internal/runbooks/agent-latency",
                    },
                    "startsAt": started,
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus.tmt.internal:9090/graph?g0.expr=histogram_quantile",
                    "fingerprint": fingerprint,
                }
            ],
        }
    ).encode()


@dataclass
class PhaseResult:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: Counter

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def row(self) -> list:
        return [
            self.name,
            self.requests,
            f"{self.rps:,.0f}",
            f"{percentile(self.latencies_ms, 50):.1f}",
            f"{percentile(self.latencies_ms, 99):.1f}",
            f"{max(self.latencies_ms):.1f}",
            " ".join(f"{code}×{n}" for code, n in sorted(self.statuses.items())),
        ]


async def _drive(
    base: str, requests: list[tuple[str, str, bytes | None, str]], concurrency: int
) -> tuple[float, list[float], Counter, list[str]]:
    import aiohttp

    latencies: list[float] = []
    statuses: Counter = Counter()
    problems: list[str] = []
    pending = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            for method, path, body, token in pending:
                headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
                if body is not None:
                    headers["Content-Type"] = "application/json"
                started = time.perf_counter()
                async with session.request(method, base + path, data=body, headers=headers) as answer:
                    content = await answer.read()
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[answer.status] += 1
                if answer.status >= 300 and len(problems) < 3:
                    problems.append(f"{method} {path} → {answer.status}: {content[:300]!r}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return wall, latencies, statuses, problems


def run_phase(name: str, base: str, requests: list, concurrency: int) -> PhaseResult:
    wall, latencies, statuses, problems = asyncio.run(_drive(base, requests, concurrency))
    if problems:
        raise RuntimeError(f"{name}: not every request succeeded ({dict(statuses)}):\n" + "\n".join(problems))
    return PhaseResult(name=name, requests=len(requests), seconds=wall, latencies_ms=latencies, statuses=statuses)


def _machine_cpu() -> float:
    """CPU seconds all processes on the machine used so far (Linux /proc/stat; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per phase (default 2000)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help=f"gunicorn workers (default {DEFAULT_WORKERS})"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"threads per worker; 1 is the sync worker, more gthread (default {DEFAULT_THREADS})",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--phases",
        default="create,list,alerts",
        help="which phases to run, e.g. `alerts` while profiling (default all)",
    )
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    n = args.requests
    rng = random.Random(args.seed)

    bench_db = use_bench_database(DEFAULT_DATABASE)
    broker = use_bench_broker(DEFAULT_REDIS_DB)
    setup_django()
    print(f"API benchmark: database {bench_db.name}, broker {broker}; load average {load_average()}", flush=True)
    bench_db.recreate()
    flush_broker(broker)
    migrate()
    credentials = seed()

    from django.db import connections

    connections.close_all()  # gunicorn's workers get the database to themselves
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    var_dir = Path(tempfile.mkdtemp(prefix="tmt-bench-api-"))
    server = start_gunicorn(port, args.workers, args.threads, var_dir)
    kind = f"gthread, {args.threads} threads each" if args.threads > 1 else "sync"
    print(f"gunicorn: {args.workers} workers ({kind}); {args.concurrency} requests in flight; {n} requests a phase")
    meter = CpuMeter({"gunicorn": server}, bench_db.name)
    results: list[PhaseResult] = []
    cpu: dict[str, dict[str, float]] = {}
    try:
        wait_ready(base, server, var_dir / "gunicorn.log")
        user, alert = credentials.user_token, credentials.alert_token
        fingerprints = (f"{rng.getrandbits(64):016x}" for _ in iter(int, 1))
        # Warm every worker (imports, connections, caches) outside the timings; the warm-up's
        # alerts open the incidents the re-sent phases repeat.
        pool = [next(fingerprints) for _ in range(RESENT_POOL)]
        run_phase(
            "warm-up",
            base,
            [("POST", "/api/v1/alerts/", alertmanager_body(fp, i), alert) for i, fp in enumerate(pool)],
            args.concurrency,
        )
        run_phase("warm-up", base, [("GET", "/api/v1/incidents/", None, user)] * 50, args.concurrency)

        def measured(name: str, requests: list) -> None:
            if name.split(",")[0] not in phases:
                return
            meter.baseline, meter.last = {}, {}
            meter.sample()
            client_cpu, machine = time.process_time(), _machine_cpu()
            results.append(run_phase(name, base, requests, args.concurrency))
            meter.sample()
            used = meter.used()
            used["bench client"] = time.process_time() - client_cpu
            used["machine"] = _machine_cpu() - machine
            cpu[name] = used

        measured("create", [("POST", "/api/v1/incidents/", incident_body(i), user) for i in range(n)])
        # The pages that exist: the warm-up's incidents, plus the create phase's if it ran.
        pages = max(1, min(LIST_PAGES, (RESENT_POOL + (n if "create" in phases else 0)) // 50))
        measured("list", [("GET", f"/api/v1/incidents/?page={i % pages + 1}", None, user) for i in range(n)])
        measured(
            "alerts, new",
            [("POST", "/api/v1/alerts/", alertmanager_body(next(fingerprints), i), alert) for i in range(n)],
        )
        measured(
            "alerts, re-sent",
            [("POST", "/api/v1/alerts/", alertmanager_body(rng.choice(pool), i), alert) for i in range(n)],
        )
        mixed = [
            (
                "POST",
                "/api/v1/alerts/",
                alertmanager_body(next(fingerprints) if rng.random() < NEW_SHARE else rng.choice(pool), i),
                alert,
            )
            for i in range(n)
        ]
        measured("alerts, mixed", mixed)
    finally:
        stop_all({"gunicorn": server})

    print_phase_tables(results, cpu)
    verify(results)
    by_name = {r.name: r for r in results}
    if set(by_name) != set(PHASES):
        return  # a partial run (--phases) has no headline figures
    mixed_result = by_name["alerts, mixed"]
    print()
    verdict = "met" if mixed_result.rps >= GOAL_ALERTS_RPS else "NOT met"
    print(f"goal: alert ingestion >= {GOAL_ALERTS_RPS} req/s (mixed): {verdict}; load average {load_average()}")
    print_result_json(
        {
            "create_rps": round(by_name["create"].rps, 1),
            "list_rps": round(by_name["list"].rps, 1),
            "alerts_rps": round(mixed_result.rps, 1),
            "alerts_p99_ms": round(percentile(mixed_result.latencies_ms, 99), 1),
            "alerts_new_rps": round(by_name["alerts, new"].rps, 1),
            "alerts_resent_rps": round(by_name["alerts, re-sent"].rps, 1),
            "create_p99_ms": round(percentile(by_name["create"].latencies_ms, 99), 1),
            "list_p99_ms": round(percentile(by_name["list"].latencies_ms, 99), 1),
        }
    )


def verify(results: list[PhaseResult]) -> None:
    """The work was really done: an AlertEvent per alert, one open incident per fingerprint."""
    from django.db.models import Count

    from incidents.api.models import AlertEvent
    from incidents.models import Incident

    alerts_sent = sum(r.requests for r in results if r.name.startswith("alerts")) + RESENT_POOL
    events = AlertEvent.objects.count()
    duplicates = (
        Incident.objects.exclude(alert_fingerprint="")
        .values("alert_fingerprint")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    automated = Incident.objects.exclude(alert_fingerprint="").count()
    print(
        f"\nchecked: {events:,} alert events for {alerts_sent:,} alerts sent; "
        f"{automated:,} automated incidents; {duplicates} fingerprints with two incidents"
    )
    if events != alerts_sent or duplicates:
        raise SystemExit("alert ingestion lost alerts or opened duplicate incidents")


if __name__ == "__main__":
    main()
