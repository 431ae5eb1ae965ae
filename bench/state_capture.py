"""A system-state capture of the seed's kind of probes, against running them one after another.

Probes (real servers, all local): 30 HTTP GETs of simulated agents answering after 50 ms, 5
broker-API probes (HTTP and TLS) against a server that accepts and never answers (1 s timeout),
`SELECT version()` and connection counts on the bench database, a 200-line tail of a
100,000-line log file, and host resources. The capture is the production path end to end: the
probes in parallel, the JSON bundle stored as hashed evidence, the timeline entry and the
checklist tick. "sequential" is the sum of the probes' own durations in the same run (what a
loop over them would take).

    python bench/state_capture.py            # 5 captures
    python bench/state_capture.py --runs 2   # quick run

Goal: a capture completes within its bound (the slowest probe's timeout + 1 s grace, here 6 s,
plus storing the bundle) however many probes hang. The last line is one JSON object. Works in its own database
(BENCH_DATABASE_NAME, default tmt_ir_bench_capture), dropped and recreated on each run.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import load_average, migrate, print_result_json, print_table, setup_django, use_bench_database

DEFAULT_DATABASE = "tmt_ir_bench_capture"
AGENTS = 30
HUNG = 5
HUNG_TIMEOUT_S = 1.0


def silent_server() -> tuple[str, int]:
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    bench_db = use_bench_database(DEFAULT_DATABASE)
    setup_django()
    bench_db.recreate()
    migrate()

    from django.conf import settings
    from django.contrib.auth.models import Group
    from django.db import connection

    from incidents.devtools.simulator import SimulatorServer
    from incidents.monitoring import capture
    from incidents.monitoring.models import DiagnosticProbe
    from incidents.roles import ensure_role_groups
    from tests.factories import UserFactory, open_incident

    ensure_role_groups()
    simulator = SimulatorServer(
        agent_ports={f"agent_{n}": 0 for n in range(AGENTS)}, control_port=None, base_latency_ms=50
    )
    endpoints = simulator.start_in_thread()
    host, port = silent_server()
    logs = Path(tempfile.mkdtemp(prefix="tmt-bench-logs-"))
    (logs / "trading.log").write_text(
        "".join(f"2026-12-06 03:12:{n % 60:02d} order {n} filled\n" for n in range(100_000))
    )
    settings.TMT_CAPTURE_LOG_ROOTS = [str(logs)]

    DiagnosticProbe.objects.all().delete()
    for n in range(AGENTS):
        DiagnosticProbe.objects.create(
            name=f"agent {n} /health", kind="http", url=endpoints.agent_url(f"agent_{n}") + "/health", timeout_s=2
        )
    for n in range(HUNG):
        kind = "http" if n % 2 == 0 else "tls"
        DiagnosticProbe.objects.create(
            name=f"broker {n} ({kind}, hangs)",
            kind=kind,
            url=f"http://{host}:{port}/v3/accounts" if kind == "http" else "",
            host=host,
            port=port,
            timeout_s=HUNG_TIMEOUT_S,
        )
    db = connection.settings_dict
    DiagnosticProbe.objects.create(
        name="Trading database",
        kind="postgres",
        host=db["HOST"] or "127.0.0.1",
        port=int(db["PORT"] or 5432),
        database=db["NAME"],
        username=db["USER"],
    )
    DiagnosticProbe.objects.create(name="trading.log", kind="log_tail", path=str(logs / "trading.log"), lines=200)
    DiagnosticProbe.objects.create(name="Host", kind="host")
    probes = DiagnosticProbe.objects.count()
    # What the capture waits for its probes at most (the bundle's storing comes on top).
    bound = max(DiagnosticProbe.objects.values_list("timeout_s", flat=True)) + capture.GRACE_S

    user = UserFactory(username="bench-engineer")
    user.groups.add(*Group.objects.filter(name="On-Call Engineer"))
    incident = open_incident(reported_by=user)

    rows, walls, sequentials, sizes = [], [], [], []
    for run in range(1, args.runs + 1):
        started = time.perf_counter()
        result = capture.system_state_capture(incident=incident, user=user)
        wall = time.perf_counter() - started
        with result.evidence.file.open("rb") as handle:
            summary = json.load(handle)
        sequential = sum(p["duration_ms"] for p in summary["probes"]) / 1000
        counts = summary["counts"]
        walls.append(wall)
        sequentials.append(sequential)
        sizes.append(result.evidence.size_bytes)
        rows.append([run, f"{wall:.2f}", f"{sequential:.2f}", counts["ok"], counts["failed"], counts["timed_out"]])
    simulator.stop()
    print(f"{probes} probes ({AGENTS} agents at 50 ms, {HUNG} hung at {HUNG_TIMEOUT_S:g} s); load {load_average()}")
    print_table(["run", "capture s", "sequential s", "ok", "failed", "timed out"], rows)
    print_result_json(
        {
            "probes": probes,
            "hung": HUNG,
            "capture_s": round(statistics.median(walls), 3),
            "sequential_s": round(statistics.median(sequentials), 3),
            "bound_s": bound,
            "bundle_kb": round(statistics.median(sizes) / 1024, 1),
        }
    )


if __name__ == "__main__":
    main()
