"""The public status page under load: everyone opens it at once during an incident.

gunicorn serves `tmt_ir.wsgi` as the deployment would (DEBUG off, PostgreSQL, Redis as the
shared cache, so a publish replaces every worker's copy); this process keeps `--concurrency`
GETs in flight with aiohttp and times each from send to last byte. The database holds what a
real incident day looks like: three systems with health targets, 8 days of samples (one a
minute) and 90 days of rolled-up uptime, a published Sev1 incident with five public updates,
twelve resolved incidents in the 90-day history and scheduled maintenance.

Phases: `/status/` alone, `/status.json` alone, then both mixed half and half while a
communications role publishes a new public update every `--publish-every` seconds (each one
replaces the cached copies, so the mixed phase includes rebuilding them). The headline figures
are the mixed phase's.

    python bench/status_page.py                     # about a minute
    python bench/status_page.py --requests 2000     # quick

Goal: >= 1,500 requests/s with p99 <= 100 ms on 2 cores. The load generator shares the cores
with gunicorn, PostgreSQL and Redis; the CPU each used is printed. Its own database
(BENCH_DATABASE_NAME, default tmt_ir_bench_status) is dropped and recreated; Redis database 14
(BENCH_REDIS_DB) is flushed first and holds the cache. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
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
from bench.api import _machine_cpu, run_phase, start_gunicorn

DEFAULT_DATABASE = "tmt_ir_bench_status"
DEFAULT_REDIS_DB = 14
GOAL_RPS = 1500
GOAL_P99_MS = 100
# Reads are a cache hit plus the middleware stack (~1 ms of CPU): sync workers, one per core and
# one more to cover the moments a worker waits on Redis.
DEFAULT_WORKERS = 3


def seed() -> object:
    """The incident day described in the module docstring; returns the published incident."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from incidents.models import System
    from incidents.monitoring.models import HealthSample, HealthTarget
    from incidents.roles import ON_CALL_ENGINEER, ensure_role_groups
    from incidents.status import services
    from incidents.status.models import UptimeDay
    from tests.factories import open_incident

    ensure_role_groups()
    user = get_user_model().objects.create_user(username="bench-comms", first_name="Bench", last_name="Comms")
    user.groups.add(Group.objects.get(name=ON_CALL_ENGINEER))
    now = timezone.now()
    today = now.astimezone(UTC).date()
    systems = list(System.objects.all())
    samples, days = [], []
    for n, system in enumerate(systems):
        target = HealthTarget.objects.create(
            name=f"bench-{system.key}", url=f"http://127.0.0.1:{8001 + n}/health", system=system
        )
        for minute in range(8 * 24 * 60):
            samples.append(HealthSample(target=target, checked_at=now - timedelta(minutes=minute), ok=minute % 97 != 0))
        days += [
            UptimeDay(system=system, day=today - timedelta(days=d), ok=1430 - d % 7, total=1440) for d in range(9, 90)
        ]
    HealthSample.objects.bulk_create(samples, batch_size=5000)
    UptimeDay.objects.bulk_create(days)
    services.uptime_roll_up(now=now)

    def public(level: int, title: str, at):
        incident = open_incident(reported_by=user, level=level, systems=(systems[level % len(systems)].key,))
        return services.public_incident_publish(
            incident=incident,
            user=user,
            title=title,
            impact="partial_outage",
            status="investigating",
            message="We are investigating reports of failed order submissions.",
            now=at,
        )

    for i in range(12):
        at = now - timedelta(days=3 + i * 7)
        past = public(2, f"Delayed market data ({i + 1})", at)
        services.public_incident_update(
            public_incident=past, user=user, status="resolved", message="Recovered.", now=at + timedelta(hours=1)
        )
    live = public(1, "Order entry unavailable", now - timedelta(minutes=50))
    for step, status in enumerate(["identified", "monitoring", "identified", "monitoring"]):
        services.public_incident_update(
            public_incident=live,
            user=user,
            status=status,
            message=f"Update {step + 2}: engineers are on it.",
            now=now - timedelta(minutes=40 - step * 10),
        )
    services.maintenance_schedule(
        user=user,
        title="Database upgrade",
        message="Orders paused for 30 minutes.",
        starts_at=now + timedelta(days=2),
        ends_at=now + timedelta(days=2, minutes=30),
        systems=systems[:1],
    )
    return live


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10000, help="requests per phase (default 10000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker; 1 is the sync worker")
    parser.add_argument("--publish-every", type=float, default=2.0, help="seconds between public updates")
    args = parser.parse_args()

    bench_db = use_bench_database(DEFAULT_DATABASE)
    redis = use_bench_broker(DEFAULT_REDIS_DB)
    os.environ["CACHE_URL"] = redis  # the shared cache: a publish reaches every worker
    setup_django()
    print(f"status page benchmark: database {bench_db.name}, cache {redis}; load average {load_average()}", flush=True)
    bench_db.recreate()
    flush_broker(redis)
    migrate()
    live = seed()

    from django.db import connections

    from incidents.status import services

    connections.close_all()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    var_dir = Path(tempfile.mkdtemp(prefix="tmt-bench-status-"))
    server = start_gunicorn(port, args.workers, args.threads, var_dir)
    print(f"gunicorn: {args.workers} workers; {args.concurrency} requests in flight; {args.requests} requests a phase")
    meter = CpuMeter({"gunicorn": server}, bench_db.name)
    results, cpu = [], {}
    published = 0
    try:
        wait_ready(base, server, var_dir / "gunicorn.log")
        run_phase("warm-up", base, [("GET", p, None, "") for p in ["/status/", "/status.json"] * 200], args.concurrency)

        def measured(name: str, paths: list[str]) -> None:
            meter.baseline, meter.last = {}, {}
            meter.sample()
            client_cpu, machine = time.process_time(), _machine_cpu()
            results.append(run_phase(name, base, [("GET", p, None, "") for p in paths], args.concurrency))
            meter.sample()
            cpu[name] = {
                **meter.used(),
                "bench client": time.process_time() - client_cpu,
                "machine": _machine_cpu() - machine,
            }

        n = args.requests
        measured("/status/", ["/status/"] * n)
        measured("/status.json", ["/status.json"] * n)
        stop = threading.Event()

        def publisher() -> None:
            nonlocal published
            while not stop.wait(args.publish_every):
                services.public_incident_update(
                    public_incident=live,
                    user=live.published_by,
                    status="monitoring",
                    message=f"Monitoring the fix ({published + 1}).",
                )
                published += 1
            connections.close_all()

        thread = threading.Thread(target=publisher, daemon=True)
        thread.start()
        try:
            measured("mixed, publishing", ["/status/", "/status.json"] * (n // 2))
        finally:
            stop.set()
            thread.join()
    finally:
        stop_all({"gunicorn": server})

    print_phase_tables(results, cpu, ms_decimals=2)
    mixed = results[-1]
    rps, p99 = mixed.rps, percentile(mixed.latencies_ms, 99)
    print(f"\npublic updates published during the mixed phase: {published}")
    verdict = "met" if rps >= GOAL_RPS and p99 <= GOAL_P99_MS else "NOT met"
    print(f"goal: >= {GOAL_RPS} req/s with p99 <= {GOAL_P99_MS} ms (mixed): {verdict}; load average {load_average()}")
    print_result_json({"status_rps": round(rps, 1), "status_p99_ms": round(p99, 1)})


if __name__ == "__main__":
    main()
