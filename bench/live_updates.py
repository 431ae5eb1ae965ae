"""Live pages: N open pages listening to the event stream while changes happen M times a second.

uvicorn serves `tmt_ir.asgi` as `make run` and the production `live` process do (DEBUG off,
PostgreSQL). This process opens N event streams with aiohttp (each one signed in, as a
dashboard would be), then:

- idle: nothing changes for --idle-seconds; the server's CPU over that time is `idle_cpu_pct`
  (percent of one core; the database backend's share is printed beside it);
- changes: a thread adds timeline notes through the service, --rate a second for --seconds,
  round-robin over 20 open incidents, as a responder's page would. Each note is one event to
  every open page; its push delay is from the announcement written after the note committed
  (the event's `at`) to the moment a client read it.

    python bench/live_updates.py                         # 500 pages, 5 changes/s (about a minute)
    python bench/live_updates.py --clients 50 --seconds 5   # smoke run

Goal: 500 pages, push p99 <= 1 s, the server under half a core while nothing changes. The load
generator shares the machine's 2 cores with uvicorn and PostgreSQL. It works in its own database
(BENCH_DATABASE_NAME, default tmt_ir_bench_live), dropped and recreated on each run. The last line
of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# `python bench/live_updates.py` puts bench/ on sys.path, not the project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PROJECT_ROOT,
    CpuMeter,
    free_port,
    load_average,
    migrate,
    percentile,
    print_result_json,
    print_table,
    setup_django,
    stop_all,
    use_bench_database,
    wait_ready,
)

GOAL_CLIENTS = 500
GOAL_P99_S = 1.0
GOAL_IDLE_CPU_PCT = 50.0
INCIDENTS = 20


def start_uvicorn(port: int, var_dir: Path) -> subprocess.Popen:
    env = os.environ | {"DJANGO_DEBUG": "0", "TMT_VAR_DIR": str(var_dir)}
    with open(var_dir / "uvicorn.log", "w") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter running uvicorn, fixed arguments
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tmt_ir.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
                "--timeout-graceful-shutdown",
                "2",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def make_people_and_incidents(clients: int) -> tuple[list[str], list, object]:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.db import SessionStore

    from incidents.roles import ensure_role_groups
    from tests.factories import UserFactory, open_incident

    ensure_role_groups()
    engineer = UserFactory(username="bench.engineer")
    engineer.groups.add(Group.objects.get(name="On-Call Engineer"))
    sessions = []
    for _ in range(clients):
        session = SessionStore()
        session[SESSION_KEY] = str(engineer.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = engineer.get_session_auth_hash()
        session.create()
        sessions.append(session.session_key)
    incidents = [open_incident(reported_by=engineer, level=3, title=f"Bench incident {n}") for n in range(INCIDENTS)]
    return sessions, incidents, engineer


class Clients:
    def __init__(self, base: str, sessions: list[str]) -> None:
        self.base = base
        self.sessions = sessions
        self.ready = 0
        self.delays: list[float] = []
        self.received = [0] * len(sessions)
        self.connected = [False] * len(sessions)
        self.failed: list[str] = []

    async def _one(self, http, index: int, session: str) -> None:
        import aiohttp

        try:
            async with http.get(
                f"{self.base}/live/stream/",
                cookies={"sessionid": session},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            ) as answer:
                if answer.status != 200:
                    self.failed.append(f"{answer.status}")
                    return
                async for raw in answer.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: ready"):
                        self.ready += 1
                        self.connected[index] = True
                    elif line.startswith('data: {"incident"'):
                        self.delays.append(time.time() - json.loads(line[6:])["at"])
                        self.received[index] += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed.append(repr(exc))

    async def run(self, stop: asyncio.Event) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            tasks = [asyncio.create_task(self._one(http, i, s)) for i, s in enumerate(self.sessions)]
            await stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def write_changes(incidents: list, author, rate: float, seconds: float, done: list[int]) -> None:
    from django.db import connection

    from incidents import services

    interval = 1.0 / rate
    started = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = n * interval
        if due > elapsed:
            time.sleep(due - elapsed)
        services.timeline_add_note(incident=incidents[n % len(incidents)], author=author, text=f"bench note {n}")
        n += 1
    done.append(n)
    connection.close()


async def main_async(args, base: str, sessions: list[str], incidents: list, author, meter: CpuMeter) -> dict:
    clients = Clients(base, sessions)
    stop = asyncio.Event()
    runner = asyncio.create_task(clients.run(stop))
    connect_started = time.monotonic()
    while clients.ready + len(clients.failed) < len(sessions):
        if time.monotonic() - connect_started > 120:
            break
        await asyncio.sleep(0.1)
    connect_s = time.monotonic() - connect_started
    print(f"{clients.ready} of {len(sessions)} pages connected in {connect_s:.1f} s ({len(clients.failed)} failed)")

    await asyncio.sleep(2)  # connection set-up done
    await asyncio.to_thread(meter.sample)
    idle_started = time.monotonic()
    await asyncio.sleep(args.idle_seconds)
    await asyncio.to_thread(meter.sample)
    idle_wall = time.monotonic() - idle_started
    idle = meter.used()

    busy_meter = CpuMeter(meter.processes, meter.database)
    await asyncio.to_thread(busy_meter.sample)
    done: list[int] = []
    writer = threading.Thread(target=write_changes, args=(incidents, author, args.rate, args.seconds, done))
    busy_started = time.monotonic()
    writer.start()
    while writer.is_alive():
        await asyncio.sleep(0.2)
    await asyncio.sleep(3)  # the last events' delivery
    await asyncio.to_thread(busy_meter.sample)
    busy_wall = time.monotonic() - busy_started
    busy = busy_meter.used()
    stop.set()
    await runner
    changes = done[0] if done else 0
    missed = sum(max(0, changes - got) for got, up in zip(clients.received, clients.connected, strict=True) if up)
    return {
        "connected": clients.ready,
        "connect_s": connect_s,
        "failed": clients.failed[:5],
        "changes": changes,
        "delays": clients.delays,
        "missed": missed,
        "idle_server_pct": idle.get("uvicorn", 0.0) / idle_wall * 100,
        "idle_db_pct": idle.get("postgres backends", 0.0) / idle_wall * 100,
        "busy_server_pct": busy.get("uvicorn", 0.0) / busy_wall * 100,
        "busy_db_pct": busy.get("postgres backends", 0.0) / busy_wall * 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=GOAL_CLIENTS, help="open pages (default 500)")
    parser.add_argument("--rate", type=float, default=5.0, help="changes a second (default 5)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long changes go on (default 20)")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="quiet time measured (default 15)")
    args = parser.parse_args()

    bench_db = use_bench_database("tmt_ir_bench_live")
    setup_django()
    bench_db.recreate()
    migrate()
    sessions, incidents, author = make_people_and_incidents(args.clients)
    from django.db import connections

    connections.close_all()
    var_dir = Path(tempfile.mkdtemp(prefix="tmt-bench-live-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_uvicorn(port, var_dir)
    print(f"load before: {load_average()}")
    try:
        wait_ready(base, server, var_dir / "uvicorn.log", path="/accounts/login/")
        meter = CpuMeter({"uvicorn": server}, bench_db.name)
        result = asyncio.run(main_async(args, base, sessions, incidents, author, meter))
    finally:
        stop_all({"uvicorn": server})
    delays = result["delays"] or [float("nan")]
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    print_table(
        ["pages", "changes", "events read", "missed", "push p50 s", "push p99 s", "push max s"],
        [
            [
                result["connected"],
                result["changes"],
                len(result["delays"]),
                result["missed"],
                f"{p50:.3f}",
                f"{p99:.3f}",
                f"{max(delays):.3f}",
            ]
        ],
    )
    print_table(
        ["CPU, % of one core", "uvicorn", "postgres backends"],
        [
            ["idle (nothing changes)", f"{result['idle_server_pct']:.1f}", f"{result['idle_db_pct']:.1f}"],
            [f"{args.rate:g} changes/s", f"{result['busy_server_pct']:.1f}", f"{result['busy_db_pct']:.1f}"],
        ],
    )
    if result["failed"]:
        print(f"failed streams (first 5): {result['failed']}")
    print(f"load after: {load_average()}")
    met = (
        result["connected"] >= GOAL_CLIENTS
        and p99 <= GOAL_P99_S
        and result["idle_server_pct"] <= GOAL_IDLE_CPU_PCT
        and result["missed"] == 0
    )
    print_result_json(
        {
            "clients": result["connected"],
            "changes_per_s": args.rate,
            "push_p50_s": round(p50, 3),
            "push_p99_s": round(p99, 3),
            "push_max_s": round(max(delays), 3),
            "missed": result["missed"],
            "idle_cpu_pct": round(result["idle_server_pct"], 1),
            "idle_db_cpu_pct": round(result["idle_db_pct"], 1),
            "busy_cpu_pct": round(result["busy_server_pct"], 1),
            "goal_met": met,
        }
    )


if __name__ == "__main__":
    main()
