"""Helpers shared by the benchmarks in bench/ (not a benchmark itself).

A benchmark runs against its own throwaway PostgreSQL database, never the one DATABASE_URL
names: that one may hold someone's data, and a benchmark drops and refills its tables. The
usual shape of a benchmark is:

    bench_db = use_bench_database("tmt_ir_bench_<name>")  # before Django is set up
    setup_django()
    bench_db.recreate(); migrate(); ...load with copy_rows()...; vacuum_analyze()
    ...measure with time_pages()...; print_table(...)
    print_result_json({...})  # the JSON object is the last line
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The Makefile's default; a benchmark only borrows its server, user and options.
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tmt_ir"
_POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "postgis"}
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/15"  # the Makefile's default


# -- the throwaway database ---------------------------------------------------------------


@dataclass(frozen=True)
class BenchDatabase:
    name: str
    url: str  # what DATABASE_URL now says (the bench database)
    admin_url: str  # the server's maintenance database, for CREATE / DROP DATABASE

    def _admin(self):
        import psycopg

        return psycopg.connect(self.admin_url, autocommit=True)

    def exists(self) -> bool:
        with self._admin() as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.name]).fetchone()
        return row is not None

    def recreate(self) -> None:
        """Drop (closing anyone still connected, us included) and create it empty."""
        from django.db import connections
        from psycopg import sql

        connections.close_all()
        with self._admin() as conn:
            name = sql.Identifier(self.name)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def use_bench_database(default_name: str) -> BenchDatabase:
    """Point DATABASE_URL at a throwaway database on the same server; call before setup_django().

    The name is BENCH_DATABASE_NAME if set, else `default_name`. Refuses to reuse the database
    DATABASE_URL named, since the benchmark drops it.
    """
    source = urlsplit(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    if source.scheme not in _POSTGRES_SCHEMES:
        sys.exit(f"benchmarks need PostgreSQL; DATABASE_URL is {source.scheme}://...")
    name = os.environ.get("BENCH_DATABASE_NAME") or default_name
    source_name = source.path.lstrip("/")
    if name == source_name or name in {"postgres", "template0", "template1"}:
        sys.exit(f"refusing to use {name!r} as the benchmark database: it would be dropped")
    bench_url = urlunsplit(source._replace(path=f"/{name}"))
    # psycopg only knows the postgres:// and postgresql:// spellings.
    admin_url = urlunsplit(source._replace(scheme="postgresql", path="/postgres"))
    os.environ["DATABASE_URL"] = bench_url
    return BenchDatabase(name=name, url=bench_url, admin_url=admin_url)


def setup_django() -> None:
    """Set Django up as a production-like server process that the test client can call."""
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tmt_ir.settings")
    # DEBUG would record every query and render debug pages: not what a server does.
    os.environ["DJANGO_DEBUG"] = "0"
    hosts = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h]
    if "testserver" not in hosts:
        os.environ["DJANGO_ALLOWED_HOSTS"] = ",".join([*hosts, "testserver", "127.0.0.1", "localhost"])
    import django

    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


# -- bulk loading ---------------------------------------------------------------------------


def copy_rows(model, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY `rows` (tuples in `columns` order, by column name) into `model`'s table.

    Concrete fields not in `columns` get their model default, so a field someone adds later
    with a default does not break the load; one with no usable default stops it by name.
    Returns the number of rows written. The caller resets sequences if it wrote ids.
    """
    from django.db import connection
    from django.utils import timezone

    fields = {f.column: f for f in model._meta.concrete_fields}
    unknown = [c for c in columns if c not in fields]
    if unknown:
        raise ValueError(f"{model.__name__} has no column(s) {unknown}")
    extra_columns: list[str] = []
    extra_values: list[Any] = []
    for column, field in fields.items():
        if column in columns or (field.primary_key and field.get_internal_type().endswith("AutoField")):
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = timezone.now()
        else:
            value = field.get_default()
        if value is None and not field.null:
            raise ValueError(
                f"bench load does not set {model.__name__}.{field.name} and it has no default; "
                "add it to the benchmark's rows"
            )
        extra_columns.append(column)
        extra_values.append(field.get_db_prep_save(value, connection))
    quoted = ", ".join(connection.ops.quote_name(c) for c in [*columns, *extra_columns])
    statement = f"COPY {connection.ops.quote_name(model._meta.db_table)} ({quoted}) FROM STDIN"
    tail = tuple(extra_values)
    count = 0
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row((*row, *tail) if tail else row)
            count += 1
    return count


def drop_indexes(*models) -> Callable[[], None]:
    """Drop `models`' secondary indexes and foreign/unique keys; returns what recreates them.

    Keeping a B-tree up to date row by row and queueing a foreign-key check per row is what
    makes a million-row COPY slow; building each index once and validating each key in one
    pass afterwards (what pg_restore does) is several times faster. Everything is recreated
    from its own definition, so the schema ends up exactly as migrate left it. Call the
    returned function after loading; if the load fails the database is a throwaway anyway.
    """
    from django.db import connection

    tables = [model._meta.db_table for model in models]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
            FROM pg_constraint WHERE conrelid = ANY(%s::regclass[]) AND contype IN ('f', 'u')
            ORDER BY contype DESC
            """,
            [tables],
        )
        constraints = cursor.fetchall()
        cursor.execute(
            """
            SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index i WHERE i.indrelid = ANY(%s::regclass[]) AND NOT i.indisprimary
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
            """,
            [tables],
        )
        indexes = cursor.fetchall()
        quote = connection.ops.quote_name
        for table, name, _ in constraints:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote(name)}")
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")

    def recreate() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '256MB'")
            for _, definition in indexes:
                cursor.execute(definition)
            # Unique keys first (ORDER BY contype DESC), then foreign keys, each validated
            # in one pass over the table.
            for table, name, definition in constraints:
                cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {quote(name)} {definition}")
            cursor.execute("RESET maintenance_work_mem")

    return recreate


def reset_sequences(*models) -> None:
    """After writing explicit ids, move each id sequence past them (later inserts need it)."""
    from django.core.management.color import no_style
    from django.db import connection

    with connection.cursor() as cursor:
        for statement in connection.ops.sequence_reset_sql(no_style(), list(models)):
            cursor.execute(statement)


def vacuum_analyze(*models) -> None:
    """Fresh statistics and visibility map, as autovacuum would have left a live database."""
    from django.db import connection

    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(model._meta.db_table)}")


# -- measuring ------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0-100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class Timing:
    name: str
    url: str
    median_ms: float
    p95_ms: float
    min_ms: float
    queries: int
    status: int
    size_bytes: int


def time_pages(client, pages: Sequence[tuple[str, str]], *, warmup: int = 5, runs: int = 30) -> list[Timing]:
    """Time GETs of `pages` ((name, url) pairs); count each page's queries on one request.

    Every page is requested `warmup` times untimed, then `runs` timed rounds go through the
    pages in turn, so a burst of load from something else on the machine lands on all pages
    alike instead of on whichever page was being timed. Times are wall-clock around the
    in-process request: URL routing, middleware, the view, its queries and the template,
    i.e. the server's share of a page. A page that does not answer 200 stops the run.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def get(url: str):
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        return response

    for _, url in pages:
        for _ in range(warmup):
            get(url)
    samples: dict[str, list[float]] = {name: [] for name, _ in pages}
    for _ in range(runs):
        for name, url in pages:
            start = time.perf_counter()
            get(url)
            samples[name].append((time.perf_counter() - start) * 1000)
    timings = []
    for name, url in pages:
        with CaptureQueriesContext(connection) as captured:
            response = get(url)
        timings.append(
            Timing(
                name=name,
                url=url,
                median_ms=round(median(samples[name]), 1),
                p95_ms=round(percentile(samples[name], 95), 1),
                min_ms=round(min(samples[name]), 1),
                queries=len(captured.captured_queries),
                status=response.status_code,
                size_bytes=len(response.content),
            )
        )
    return timings


def load_average() -> str:
    """The 1-minute load average and CPU count, to judge how noisy the timings were."""
    try:
        one_minute = os.getloadavg()[0]
    except OSError:
        return "unknown"
    return f"{one_minute:.2f} on {os.cpu_count()} CPUs"


@dataclass
class Stopwatch:
    """Prints how long each loading step took."""

    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.perf_counter()

    def step(self, label: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        print(f"  {label:<44} {time.perf_counter() - start:6.1f} s", flush=True)
        return result

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


# -- output ---------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))


def print_result_json(result: dict[str, Any]) -> None:
    """The machine-readable result: one JSON object, the last line of the output."""
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    # `make bench` runs every bench/*.py; this file only holds helpers.
    sys.exit(0)


# -- a benchmark's own Redis database ------------------------------------------------------


def use_bench_broker(default_db: int) -> str:
    """Point CELERY_BROKER_URL at this benchmark's Redis database (BENCH_REDIS_DB, else
    `default_db`); call before setup_django(). Each benchmark has its own, so two can run at once."""
    source = urlsplit(os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER_URL)
    if source.scheme not in {"redis", "rediss"}:
        sys.exit(f"this benchmark needs Redis; CELERY_BROKER_URL is {source.scheme}://...")
    db = int(os.environ.get("BENCH_REDIS_DB") or default_db)
    if source.path.strip("/") == str(db):
        sys.exit(f"refusing to flush Redis database {db}: CELERY_BROKER_URL uses it; set BENCH_REDIS_DB")
    url = urlunsplit(source._replace(path=f"/{db}"))
    os.environ["CELERY_BROKER_URL"] = url
    return url


def flush_broker(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


# -- processes and their CPU ------------------------------------------------------------------


def _proc_stats() -> dict[int, list[str]]:
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    return stats


def _cpu(stats: dict[int, list[str]], pid: int, *, with_children: bool = False) -> float:
    """User + system CPU seconds of a process (and its prefork children) from /proc."""
    family = {pid}
    while with_children:
        children = {p for p, f in stats.items() if int(f[1]) in family} - family
        family |= children
        with_children = bool(children)
    ticks = sum(int(stats[p][11]) + int(stats[p][12]) for p in family if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by our processes and by the bench database's PostgreSQL backends (Linux only).

    Sampled while waiting, so a backend that closes (CONN_MAX_AGE) still counts up to its last
    sample; the bench process's own connection is left out.
    """

    def __init__(self, processes: dict[str, subprocess.Popen], database: str) -> None:
        self.processes = processes
        self.database = database
        self.baseline: dict[str | int, float] = {}
        self.last: dict[str | int, float] = {}
        self.working = sys.platform.startswith("linux")

    def sample(self) -> None:
        if not self.working:
            return
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.database],
            )
            backends = [pid for (pid,) in cursor.fetchall()]
        try:
            stats = _proc_stats()
            now = {name: _cpu(stats, p.pid, with_children=True) for name, p in self.processes.items()}
            now |= {pid: _cpu(stats, pid) for pid in backends if pid in stats}  # PostgreSQL on this host
        except (OSError, ValueError, IndexError):
            self.working = False
            return
        if not self.baseline:
            self.baseline = dict(now)
        self.last |= now

    def used(self) -> dict[str, float]:
        if not self.working or not self.last:
            return {}
        used = {k: v - self.baseline.get(k, 0.0) for k, v in self.last.items()}
        result = {name: used[name] for name in self.processes if name in used}
        result["postgres backends"] = sum(v for k, v in used.items() if isinstance(k, int))
        return result


def stop_all(processes: dict[str, subprocess.Popen]) -> None:
    # Warm shutdown (SIGTERM) lets a task in progress finish; whatever is still up then is killed.
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    limit = time.monotonic() + 20
    for process in processes.values():
        try:
            process.wait(max(0.1, limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- an SMS/voice provider that honours idempotency keys ----------------------------------------


class _ProviderHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle holds the body back until the
    # client's delayed ACK (40 ms), a latency no real provider adds.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        received_at = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server: ProviderSink = self.server  # type: ignore[assignment]
        status = server.take(self.headers.get("Idempotency-Key"), received_at, body)
        if server.latency_s:
            # After the request was taken, as a real API answers: a client killed meanwhile has
            # had its page accepted, and its re-send (same key) must be dropped.
            time.sleep(server.latency_s)
        reply = b'{"ok": true}' if status < 400 else b'{"error": "unavailable"}'
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except (BrokenPipeError, ConnectionResetError):
            # The sender died (a killed dispatcher) before the answer: the page stands.
            with server.lock:
                server.clients_gone += 1
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


class ProviderSink(ThreadingHTTPServer):
    """The SMS/voice provider contract (POST JSON {to, channel, body, reference}) on a free local
    port, honouring Idempotency-Key as a real provider does.

    The first request with a key is a page: accepted (200) and its receive time recorded. A
    request with a key already accepted is a replay: answered 200 and not sent again (counted in
    `replays`; with a provider that ignored the key it would have paged the person twice). While
    `down` is set every request is answered 503 and nothing is accepted. Start it with
    `start()`, stop it with `close()`.
    """

    daemon_threads = True

    def __init__(self, *, latency_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _ProviderHandler)
        self.lock = threading.Lock()
        self.latency_s = latency_s
        self.down = False
        self.requests = 0
        self.refused = 0  # answered 503 while down
        self.without_key = 0
        self.clients_gone = 0  # senders gone before the answer was written
        self.accepted: dict[str, float] = {}  # key -> receive time (time.time())
        self.payloads: dict[str, dict] = {}
        self.replays: Counter[str] = Counter()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/send"

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, name="sms-provider", daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    def take(self, key: str | None, received_at: float, body: bytes) -> int:
        with self.lock:
            self.requests += 1
            if self.down:
                self.refused += 1
                return 503
            if key is None:
                # Not what the portal sends: such a page cannot be told from a re-send.
                self.without_key += 1
                key = f"(no key #{self.without_key})"
            if key in self.accepted:
                self.replays[key] += 1
                return 200
            self.accepted[key] = received_at
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = {}
        with self.lock:
            self.payloads[key] = payload
        return 200

    def snapshot(self) -> tuple[dict[str, float], int]:
        """(accepted key -> receive time, replays so far), copied under the lock."""
        with self.lock:
            return dict(self.accepted), sum(self.replays.values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, server: subprocess.Popen, log: Path, timeout: float = 60, path: str = "/status.json") -> None:
    """Until the server just started answers `path` with 200 (its log's tail if it dies or stays
    silent past `timeout`)."""
    name = log.stem
    limit = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"{name} exited with {server.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"{base}{path}", timeout=2) as answer:  # noqa: S310 - our own server
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > limit:
            raise RuntimeError(f"{name} not answering after {timeout:.0f} s:\n{tail(log)}")
        time.sleep(0.2)


def print_phase_tables(results: Sequence[Any], cpu: dict[str, dict[str, float]], *, ms_decimals: int = 1) -> None:
    """The phases' rates and latencies, then the CPU each process used per phase (bench/api.py's
    PhaseResult rows and CpuMeter readings)."""
    print()
    print_table(["phase", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "answers"], [r.row() for r in results])
    print()
    print("CPU seconds used per phase (2 cores = 2 CPU-seconds per second of wall time):")
    print_table(
        ["phase", "wall s", "gunicorn", "postgres", "bench client", "whole machine", "gunicorn ms/request"],
        [
            [
                r.name,
                f"{r.seconds:.1f}",
                f"{cpu[r.name].get('gunicorn', 0):.1f}",
                f"{cpu[r.name].get('postgres backends', 0):.1f}",
                f"{cpu[r.name]['bench client']:.1f}",
                f"{cpu[r.name]['machine']:.1f}",
                f"{cpu[r.name].get('gunicorn', 0) / r.requests * 1000:.{ms_decimals}f}",
            ]
            for r in results
        ],
    )
