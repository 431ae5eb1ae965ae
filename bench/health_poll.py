"""One health-poll sweep over 1,000 targets, against a sequential loop over the same targets.

The agent simulator's fleet (in its own process, as real agents would be) serves 1,000 health
targets that answer after 50 ms; 5% of them (every 20th) hang for 2 s, so with the targets' 1 s
timeout they time out. The targets are real HealthTarget rows in PostgreSQL, and a sweep is the
production path end to end, exactly what the beat task runs: claim the due targets, check them
concurrently (aiohttp, at most TMT_HEALTH_POLL_CONCURRENCY = 200 in flight), write the samples
and counters. Before each sweep every target is made due again.

    python bench/health_poll.py               # cold sweep, 5 steady sweeps, httpx, sequential
    python bench/health_poll.py --skip-sequential --sweeps 3   # quick run

Rows:
- sweep 1 is cold: no history, so the poller cannot know which targets will hang and some of
  them start late (their 1 s runs from when they start);
- sweeps 2+ are the steady state: the targets that failed last time start first (see
  incidents/monitoring/poller.py), so the hung ones all time out about 1 s after the sweep began;
- "httpx AsyncClient" is the same poller with httpx instead of aiohttp (checks only, no DB),
  with the same bound: why the poller uses aiohttp;
- "sequential" is the baseline the issue asks for: one httpx.Client (sync, keep-alive) checking
  the same targets one after another with the same 1 s timeout (`requests` is not installed;
  httpx's sync client does the same job without a new dependency).

Goal: one sweep <= 1.5 s on 2 cores. cycle_s in the JSON is the median steady sweep. The last
line of output is one JSON object. Works in its own database (BENCH_DATABASE_NAME, default
tmt_ir_bench_health), dropped and recreated on each run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

# `python bench/health_poll.py` puts bench/ on sys.path, not the project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    load_average,
    migrate,
    print_result_json,
    print_table,
    setup_django,
    use_bench_database,
)

DEFAULT_DATABASE = "tmt_ir_bench_health"
TARGETS = 1000
BASE_LATENCY_MS = 50
SLOW_FRACTION = 0.05
HANG_MS = 2000
TIMEOUT_S = 1.0
GOAL_S = 1.5


def serve_fleet(conn, size: int) -> None:
    """The simulator's fleet in a process of its own (no Django needed)."""
    from incidents.devtools.simulator import FleetConfig, SimulatorServer

    fleet = FleetConfig.with_slow_fraction(
        size, SLOW_FRACTION, base_latency_ms=BASE_LATENCY_MS, slow_latency_ms=HANG_MS
    )
    server = SimulatorServer(agent_ports={}, control_port=None, fleet=fleet, fleet_port=0)
    server.serve_forever(on_ready=lambda endpoints: conn.send(endpoints.fleet_health_urls()))


def create_targets(urls: list[str]) -> None:
    from incidents.models import SeverityLevel, System
    from incidents.monitoring.models import HealthTarget

    # Only the fleet: the seeded agent targets point at ports nothing listens on here.
    HealthTarget.objects.update(enabled=False)

    system = System.objects.get(key="analytics")
    sev2 = SeverityLevel.objects.get(level=2)
    HealthTarget.objects.bulk_create(
        [
            HealthTarget(
                name=f"fleet {n:04d}",
                url=url,
                system=system,
                interval=timedelta(seconds=5),
                timeout=timedelta(seconds=TIMEOUT_S),
                # High enough that no target changes state during the measured sweeps: this
                # measures the sweep itself; the state changes are the tests' business.
                failures_before_down=20,
                latency_threshold_ms=500,
                degraded_severity=sev2,
            )
            for n, url in enumerate(urls)
        ]
    )


def timed_sweep():
    from incidents.monitoring import services as health
    from incidents.monitoring.models import HealthTarget

    HealthTarget.objects.update(next_check_at=None)
    started = time.perf_counter()
    summary = health.health_poll_due()
    return time.perf_counter() - started, summary


def httpx_sweep(urls: list[str]) -> tuple[float, int]:
    from django.conf import settings

    from incidents.monitoring import poller

    probes = [poller.Probe(target_id=n, url=url, timeout_s=TIMEOUT_S) for n, url in enumerate(urls)]
    started = time.perf_counter()
    results = poller.poll(probes, concurrency=settings.TMT_HEALTH_POLL_CONCURRENCY, backend="httpx")
    return time.perf_counter() - started, sum(1 for r in results if r.healthy)


def sequential_sweep(urls: list[str]) -> tuple[float, int]:
    import httpx

    from incidents.monitoring import poller

    healthy = 0
    started = time.perf_counter()
    with httpx.Client(timeout=TIMEOUT_S) as client:
        for url in urls:
            try:
                response = client.get(url)
            except httpx.HTTPError:
                continue
            healthy += poller.classify(response.status_code, response.content)[0]
    return time.perf_counter() - started, healthy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=TARGETS)
    parser.add_argument("--sweeps", type=int, default=6, help="sweeps in all, the first one cold (default 6)")
    parser.add_argument("--skip-sequential", action="store_true", help="skip the ~100 s sequential baseline")
    parser.add_argument("--skip-httpx", action="store_true")
    args = parser.parse_args()

    bench_db = use_bench_database(DEFAULT_DATABASE)
    setup_django()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    from django.conf import settings

    print(f"database {bench_db.name}; load {load_average()}; concurrency {settings.TMT_HEALTH_POLL_CONCURRENCY}")
    bench_db.recreate()
    migrate()

    parent, child = multiprocessing.get_context("spawn").Pipe()
    fleet = multiprocessing.get_context("spawn").Process(target=serve_fleet, args=(child, args.targets), daemon=True)
    fleet.start()
    try:
        if not parent.poll(30):
            sys.exit("the simulator fleet did not start")
        urls = parent.recv()
        create_targets(urls)
        hanging = sum(1 for n in range(args.targets) if (n + 1) * SLOW_FRACTION // 1 > n * SLOW_FRACTION // 1)
        print(
            f"{len(urls)} targets: {BASE_LATENCY_MS} ms each, {hanging} hanging {HANG_MS} ms; timeout {TIMEOUT_S:g} s"
        )

        rows = []
        sweeps = []
        for n in range(args.sweeps):
            wall, summary = timed_sweep()
            sweeps.append(wall)
            label = "sweep 1 (cold: no history)" if n == 0 else f"sweep {n + 1} (steady)"
            rows.append(
                [
                    label,
                    f"{wall:.3f}",
                    f"{summary.polled / wall:,.0f}",
                    summary.healthy,
                    summary.failed,
                    f"{summary.claim_s:.3f}",
                    f"{summary.check_s:.3f}",
                    f"{summary.apply_s:.3f}",
                ]
            )
            time.sleep(0.5)  # let the simulator drop the hung requests nobody waits for any more
        httpx_s = None
        if not args.skip_httpx:
            httpx_s, healthy = httpx_sweep(urls)
            rows.append(
                [
                    "httpx AsyncClient (checks only)",
                    f"{httpx_s:.3f}",
                    f"{len(urls) / httpx_s:,.0f}",
                    healthy,
                    len(urls) - healthy,
                    "",
                    f"{httpx_s:.3f}",
                    "",
                ]
            )
        sequential_s = None
        if not args.skip_sequential:
            time.sleep(2)
            sequential_s, healthy = sequential_sweep(urls)
            rows.append(
                [
                    "sequential httpx.Client loop",
                    f"{sequential_s:.3f}",
                    f"{len(urls) / sequential_s:,.0f}",
                    healthy,
                    len(urls) - healthy,
                    "",
                    f"{sequential_s:.3f}",
                    "",
                ]
            )
    finally:
        fleet.terminate()
        fleet.join(5)

    print()
    print_table(["round", "wall s", "checks/s", "healthy", "failed", "claim s", "check s", "apply s"], rows)
    steady = sweeps[1:] or sweeps
    cycle_s = statistics.median(steady)
    print()
    print(
        f"one sweep (median of {len(steady)} steady): {cycle_s:.3f} s; goal <= {GOAL_S} s: "
        f"{'met' if cycle_s <= GOAL_S else 'NOT met'}; cold sweep {sweeps[0]:.3f} s"
    )
    if sequential_s:
        print(f"sequential loop: {sequential_s:.1f} s ({sequential_s / cycle_s:.0f}x the sweep)")
    print_result_json(
        {
            "cycle_s": round(cycle_s, 3),
            "sequential_s": round(sequential_s, 3) if sequential_s else None,
            "checks_per_s": round(args.targets / cycle_s, 1),
            "cold_cycle_s": round(sweeps[0], 3),
            "httpx_async_s": round(httpx_s, 3) if httpx_s else None,
            "goal_s": GOAL_S,
            "goal_met": cycle_s <= GOAL_S,
        }
    )


if __name__ == "__main__":
    main()
