"""Paging under faults: the Procfile's processes on PostgreSQL and Redis with a counting provider.

Started as subprocesses, each under a restart loop of the bench's own that starts it again a
second after it exits (what supervisord does for `make run`), on a database and a redis-server
of the bench's own (so killing them hurts nobody): two paging dispatchers (`manage.py
run_dispatcher --name d1` / `d2`), the Celery worker and beat with the Procfile's arguments. The
SMS/voice provider is a local HTTP server in this process that honours Idempotency-Key as a real
one does (a key it already accepted is answered 200 and not paged again: a replay), records when
it first received each key, and can be switched to answer 503. The roster is the test suite's
(tests.factories.make_roster), incidents are opened through `incident_open`, and every severity's
acknowledgement chain is shortened to 3 pages, at open and then every --step-s seconds.

Drills, one after the other:
  a. baseline: Sev1 incidents opened over ~10 s, their chains falling due after;
  b. SIGKILL d1, then (in a second round) d2, while Sev1 incidents open: catch-up is the time
     from the kill until every page due at the kill has been received; the killed dispatcher
     must be restarted and paging again;
  c. SIGKILL the Celery worker, then beat (not on the paging path): both must be restarted and
     processing again (a health-polling duty heartbeat from the new worker, beat's report
     rendering heartbeat arriving through it);
  d. Redis SIGKILLed for --redis-down-s (300) with an incident opened every 5 s: pages due while
     it was down must be on time; after it returns, worker and beat must be processing;
  e. the provider answering 503 for --provider-down-s (120): pages retry with backoff and each
     is received once after it returns.

Per page: lost (its notification never reached the provider), duplicates (a person paged twice:
a key accepted twice, or two keys for one step, channel and number), replays (a re-send of a key
already accepted, dropped by the provider), lateness = the provider's first receive time minus
the deadline's due time (EscalationEvent.due_at). Goal: lost 0, duplicates 0, late_p99_s <= 2
(over drills a, c and d, whose faults are not on the paging path), redis_down_late_p99_s <= 2,
catchup_s <= 30, no process dead at the end.

    python bench/fault_drill.py --quick      # smoke run: Redis down 20 s, provider down 15 s
    python bench/fault_drill.py              # full run, about 10 minutes

It works in its own database (BENCH_DATABASE_NAME, default tmt_ir_bench_faults) on the server
DATABASE_URL names, dropped and recreated on each run; the database DATABASE_URL names and the
Redis CELERY_BROKER_URL names are never touched. The processes' logs stay in a temporary folder
printed at the start and the end. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

# `python bench/fault_drill.py` puts bench/ on sys.path, not the project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PROJECT_ROOT,
    ProviderSink,
    load_average,
    migrate,
    percentile,
    print_result_json,
    print_table,
    setup_django,
    use_bench_database,
)

# The test suite's redis-server of its own, which the drill kills and starts on the same port.
from tests.processes import OwnRedis  # noqa: E402 - after the path above

DEFAULT_DATABASE = "tmt_ir_bench_faults"
URGENT = ("sms", "phone")
CHAIN_PAGES = 3  # acknowledgement chain: at open, then two steps --step-s apart
GOAL = {"late_p99_s": 2.0, "redis_down_late_p99_s": 2.0, "catchup_s": 30.0}
# Retries after a provider outage: a short base so they come back fast in a drill.
BACKOFF_S = 2
# How long a settle, a restart or a catch-up may take before the drill reports it and goes on.
SETTLE_TIMEOUT_S = 90.0
RESTART_TIMEOUT_S = 90.0


def stamp() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]


def say(text: str) -> None:
    print(f"[{stamp()}] {text}", flush=True)


# -- processes under a restart loop -----------------------------------------------------------


class Program:
    """One process under a restart loop, as supervisord runs the Procfile's in `make run`
    (autorestart, a crash loop retried for ever): whenever it exits it is started again a
    second later. Its output is appended to <name>.log with a line at each start."""

    RESTART_DELAY_S = 1.0

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.process: subprocess.Popen | None = None
        self.starts: list[tuple[float, int]] = []  # (time.time(), pid)
        self.exits: list[tuple[float, int, int]] = []  # (time.time(), pid, returncode)
        self.killed: set[int] = set()  # pids the bench killed on purpose
        self.thread = threading.Thread(target=self._run, name=f"supervise-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while True:
            with self.lock:
                if self.stopping.is_set():
                    return
                with open(self.log_path, "a") as log:
                    log.write(f"=== {stamp()} bench supervisor: starting {self.name}\n")
                    log.flush()
                    # A session of its own: a Ctrl-C in the terminal reaches the bench, which
                    # stops everything in order, not each child at once.
                    process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
                        self.argv,
                        cwd=PROJECT_ROOT,
                        env=self.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                self.process = process
                self.starts.append((time.time(), process.pid))
            returncode = process.wait()
            with self.lock:
                self.exits.append((time.time(), process.pid, returncode))
            if self.stopping.is_set():
                return
            with open(self.log_path, "a") as log:
                log.write(
                    f"=== {stamp()} bench supervisor: pid {process.pid} exited with "
                    f"{returncode}; restarting in {self.RESTART_DELAY_S:g} s\n"
                )
            if self.stopping.wait(self.RESTART_DELAY_S):
                return

    @property
    def pid(self) -> int | None:
        process = self.process
        return process.pid if process is not None and process.poll() is None else None

    def alive(self) -> bool:
        return self.pid is not None

    def kill(self) -> tuple[float, int]:
        """SIGKILL the running process; returns (when, its pid)."""
        with self.lock:
            process = self.process
            if process is None or process.poll() is not None:
                raise RuntimeError(f"{self.name} is not running")
            self.killed.add(process.pid)
            process.send_signal(signal.SIGKILL)
            return time.time(), process.pid

    def wait_restarted(self, old_pid: int, timeout: float) -> tuple[float, int] | None:
        """Until a new process runs in place of `old_pid`: (when it started, pid), or None."""
        limit = time.monotonic() + timeout
        while time.monotonic() < limit:
            with self.lock:
                newest = self.starts[-1] if self.starts else None
            if newest is not None and newest[1] != old_pid and self.alive():
                return newest
            time.sleep(0.1)
        return None

    def unexpected_exits(self) -> list[tuple[float, int, int]]:
        with self.lock:
            return [e for e in self.exits if e[1] not in self.killed]

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
            process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.thread.join(5)


def queue_lengths(redis_url: str) -> dict[str, int]:
    """Messages waiting in each Celery queue (a Redis list per queue)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        lengths = {}
        for key in client.keys("*"):
            name = key.decode(errors="replace")
            if client.type(key) == b"list":
                lengths[name] = client.llen(key)
        return lengths
    finally:
        client.close()


# -- the portal's data ------------------------------------------------------------------------


def prepare(step_s: float) -> dict:
    """The test suite's roster, each severity's chain shortened, no health targets polled."""
    from incidents.escalation.models import EscalationStep
    from incidents.models import SeverityLevel
    from incidents.monitoring.models import HealthTarget
    from tests.factories import make_roster

    team = make_roster()
    # As tests/incidents/monitoring/test_paging_faults.py's chain_every: pages at open, +step, +2 steps.
    SeverityLevel.objects.update(response_time=timedelta(seconds=step_s), response_next_business_day=False)
    EscalationStep.objects.filter(order__gte=CHAIN_PAGES).delete()
    EscalationStep.objects.filter(order__gt=1).update(delay=timedelta(seconds=step_s))
    # The seeded targets point at the agent simulator's ports, which this bench does not run
    # (something else on the machine may); the worker still runs its sweep and heartbeat.
    HealthTarget.objects.update(enabled=False)
    return team


class Opener:
    """Opens Sev1 incidents through the service, as a responder would."""

    def __init__(self, reporter) -> None:
        self.reporter = reporter
        self.opened = 0
        self.lock = threading.Lock()

    def open_one(self, label: str) -> None:
        from tests.factories import open_incident

        open_incident(
            reported_by=self.reporter,
            level=1,
            financial_impact_usd=None,
            title=f"Fault drill {label}",
        )
        with self.lock:
            self.opened += 1

    def open_over(self, n: int, over_s: float, label: str) -> float:
        """`n` incidents spread over `over_s` seconds; returns how long it took."""
        started = time.monotonic()
        for i in range(n):
            delay = started + i * over_s / n - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.open_one(f"{label} #{i + 1}")
        return time.monotonic() - started

    def open_in_background(self, n: int, over_s: float, label: str) -> threading.Thread:
        def run() -> None:
            from django.db import connections

            try:
                self.open_over(n, over_s, label)
            finally:
                connections.close_all()

        thread = threading.Thread(target=run, name=f"open-{label}", daemon=True)
        thread.start()
        return thread


# -- what the provider and the database say ---------------------------------------------------


def key_of(pk: int) -> str:
    return f"tmt-notification-{pk}"


def backlog(sink: ProviderSink, cutoff: float) -> tuple[int, int]:
    """(deadlines due by `cutoff` not fired yet, urgent pages due by then not yet received)."""
    from django.db.models import Q

    from incidents.escalation.models import Deadline
    from incidents.notifications.models import Notification

    when = datetime.fromtimestamp(cutoff, UTC)
    unfired = Deadline.objects.filter(fired_at=None, cancelled_at=None, due_at__lte=when).count()
    due = (
        Notification.objects.filter(channel__in=URGENT)
        .filter(Q(event__due_at__lte=when) | Q(event__due_at=None, event__fired_at__lte=when))
        .exclude(state__in=["failed", "skipped"])
        .values_list("pk", flat=True)
    )
    accepted, _ = sink.snapshot()
    return unfired, sum(1 for pk in due if key_of(pk) not in accepted)


def wait_caught_up(sink: ProviderSink, cutoff: float, timeout: float) -> float | None:
    """Until every page due by `cutoff` has been received: when that was, or None (timeout)."""
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        if backlog(sink, cutoff) == (0, 0):
            return time.time()
        time.sleep(0.2)
    return None


def unrecorded_pages(cutoff: float):
    """Urgent pages due by `cutoff` still "pending" or "sending" in the database."""
    from django.db.models import Q

    from incidents.notifications.models import Notification

    when = datetime.fromtimestamp(cutoff, UTC)
    return Notification.objects.filter(
        Q(event__due_at__lte=when) | Q(event__due_at=None, event__fired_at__lte=when),
        channel__in=URGENT,
        state__in=["pending", "sending"],
    )


def heartbeat_since(duty: str, process: str, since: float) -> bool:
    from incidents.monitoring.models import DutyHeartbeat

    return DutyHeartbeat.objects.filter(
        duty=duty, process=process, seen_at__gt=datetime.fromtimestamp(since, UTC)
    ).exists()


def wait_heartbeat(duty: str, process_of, since: float, timeout: float) -> float | None:
    """Until `process_of()` (re-read each time: it may be restarted) records `duty` after
    `since`: when that was seen, or None."""
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        process = process_of()
        if process and heartbeat_since(duty, process, since):
            return time.time()
        time.sleep(0.5)
    return None


@dataclass
class PageRow:
    pk: int
    state: str
    due: float
    incident: int
    rule: str
    step: int
    channel: str
    address: str


def page_rows() -> list[PageRow]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT n.id, n.state, EXTRACT(EPOCH FROM coalesce(e.due_at, e.fired_at)),
                   e.incident_id, e.rule, e.step, n.channel, n.address
            FROM incidents_notification n JOIN incidents_escalationevent e ON e.id = n.event_id
            WHERE n.channel IN ('sms', 'phone')
            """
        )
        return [
            PageRow(pk, state, float(due), incident, rule, step, channel, address)
            for pk, state, due, incident, rule, step, channel, address in cursor.fetchall()
        ]


def duplicate_firings() -> tuple[int, int]:
    """(rule steps fired twice, rule steps recorded twice on a timeline): both must be 0."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT coalesce(sum(n - 1), 0) FROM (
                SELECT count(*) AS n FROM incidents_escalationevent GROUP BY incident_id, rule, step
            ) per_step
            """
        )
        (events,) = cursor.fetchone()
        cursor.execute(
            """
            SELECT coalesce(sum(n - 1), 0) FROM (
                SELECT count(*) AS n FROM incidents_timelineentry WHERE kind = 'escalation'
                GROUP BY incident_id, data->>'rule', data->>'step'
            ) per_step
            """
        )
        (entries,) = cursor.fetchone()
    return int(events), int(entries)


def missed_deadlines(before: float) -> int:
    from incidents.escalation.models import Deadline

    return Deadline.objects.filter(
        fired_at=None, cancelled_at=None, due_at__lt=datetime.fromtimestamp(before, UTC)
    ).count()


# -- drills -----------------------------------------------------------------------------------


@dataclass
class Drill:
    key: str
    title: str
    started: float = 0.0
    ended: float = 0.0
    notes: dict = field(default_factory=dict)
    load: str = ""


class Bench:
    def __init__(self, args, sink: ProviderSink, redis: OwnRedis, programs: dict, team) -> None:
        self.args = args
        self.sink = sink
        self.redis = redis
        self.programs: dict[str, Program] = programs
        self.opener = Opener(team["oncall2"])
        self.drills: list[Drill] = []
        self.hostname = socket.gethostname()

    def begin(self, key: str, title: str) -> Drill:
        drill = Drill(key, title, started=time.time())
        self.drills.append(drill)
        say(f"drill {key}: {title}")
        return drill

    def settle(self, drill: Drill, *, after: float) -> None:
        """Let the chains of what was opened by `after` fall due, wait until every page due by
        then was received, and close the drill's window."""
        chain_end = after + (CHAIN_PAGES - 1) * self.args.step_s + 1.0
        time.sleep(max(0.0, chain_end - time.time()))
        cutoff = time.time()
        if wait_caught_up(self.sink, cutoff, SETTLE_TIMEOUT_S) is None:
            unfired, unreceived = backlog(self.sink, cutoff)
            drill.notes["not settled"] = f"{unfired} deadlines unfired, {unreceived} pages unreceived"
            say(f"drill {drill.key}: NOT settled after {SETTLE_TIMEOUT_S:.0f} s")
        drill.ended = cutoff
        drill.load = load_average_all()
        say(f"drill {drill.key} done; load average {drill.load}")

    def worker_process_name(self) -> str | None:
        pid = self.programs["worker"].pid
        return f"worker@{self.hostname}:{pid}" if pid else None

    # a
    def baseline(self) -> None:
        drill = self.begin("a", f"baseline: {self.args.incidents} Sev1 incidents over ~10 s")
        took = self.opener.open_over(self.args.incidents, 10.0, "a")
        drill.notes["opened in"] = f"{took:.1f} s"
        self.settle(drill, after=time.time())

    # b
    def kill_dispatcher(self, victim: str) -> None:
        program = self.programs[victim]
        drill = self.begin(f"b-{victim}", f"SIGKILL {victim} while {self.args.incidents} Sev1 incidents open")
        before = len(self.sink.snapshot()[0])
        opening = self.opener.open_in_background(self.args.incidents, 10.0, f"b-{victim}")
        from incidents.notifications.models import Notification

        # Kill once pages are flowing and some are in flight (claimed, not yet recorded), so
        # the victim likely leaves rows in "sending" for the other to take over.
        limit = time.monotonic() + 6
        while time.monotonic() < limit:
            flowing = len(self.sink.snapshot()[0]) >= before + 20
            if flowing and Notification.objects.filter(state="sending").count() >= 3:
                break
            time.sleep(0.02)
        in_flight = Notification.objects.filter(state="sending").count()
        killed_at, old_pid = program.kill()
        say(f"SIGKILLed {victim} (pid {old_pid}); {in_flight} page(s) in 'sending' across both")
        # Watched side by side, each timed from the kill: the provider having every page due at
        # the kill (catch-up); the rows' side, where those the victim left in "sending" are
        # taken over after TMT_NOTIFY_TAKEOVER_SECONDS and re-sent with the same key (a replay,
        # dropped); the restart; and the new process recording its delivery duty.
        seen: dict[str, float] = {}
        checks = {
            "caught_up": lambda: backlog(self.sink, killed_at) == (0, 0),
            "recorded": lambda: not unrecorded_pages(killed_at).exists(),
            "restarted": lambda: program.pid not in (None, old_pid),
            "paging_again": lambda: heartbeat_since("delivery", victim, killed_at + 0.5),
        }
        limit = time.monotonic() + SETTLE_TIMEOUT_S
        while len(seen) < len(checks) and time.monotonic() < limit:
            for what, check in checks.items():
                if what not in seen and check():
                    seen[what] = time.time() - killed_at
            time.sleep(0.1)
        catchup = seen.get("caught_up")
        recorded = seen.get("recorded")
        restarted = seen.get("restarted")
        paging_again = seen.get("paging_again")
        drill.notes.update(
            {
                "in_flight_at_kill": in_flight,
                "catchup_s": None if catchup is None else round(catchup, 2),
                "rows_recorded_sent_after_s": None if recorded is None else round(recorded, 1),
                "restarted_after_s": None if restarted is None else round(restarted, 1),
                "paging_again_after_s": None if paging_again is None else round(paging_again, 1),
            }
        )
        say(
            f"{victim}: caught up {drill.notes['catchup_s']} s after the kill, restarted after "
            f"{drill.notes['restarted_after_s']} s, delivery heartbeat again after "
            f"{drill.notes['paging_again_after_s']} s"
        )
        opening.join(60)
        self.settle(drill, after=time.time())

    # c
    def kill_celery(self) -> None:
        drill = self.begin("c", "SIGKILL the Celery worker, then beat (not on the paging path)")
        opening = self.opener.open_in_background(max(10, self.args.incidents // 3), 10.0, "c")
        time.sleep(2)
        worker, beat = self.programs["worker"], self.programs["beat"]
        killed_at, old_pid = worker.kill()
        say(f"SIGKILLed the worker (pid {old_pid})")
        restarted = worker.wait_restarted(old_pid, RESTART_TIMEOUT_S)
        polling = wait_heartbeat("health_polling", self.worker_process_name, killed_at, RESTART_TIMEOUT_S)
        drill.notes["worker_restarted_after_s"] = round(restarted[0] - killed_at, 1) if restarted else None
        drill.notes["worker_polling_again_after_s"] = round(polling - killed_at, 1) if polling else None
        killed_at, old_pid = beat.kill()
        say(f"SIGKILLed beat (pid {old_pid})")
        restarted = beat.wait_restarted(old_pid, RESTART_TIMEOUT_S)
        # Beat's report-rendering heartbeat (every 10 s) arriving through the worker proves the
        # new beat schedules; the first one may be sent at once, so look for one after a restart.
        rendering = wait_heartbeat(
            "report_rendering",
            self.worker_process_name,
            restarted[0] if restarted else killed_at,
            RESTART_TIMEOUT_S,
        )
        drill.notes["beat_restarted_after_s"] = round(restarted[0] - killed_at, 1) if restarted else None
        drill.notes["beat_scheduling_again_after_s"] = round(rendering - killed_at, 1) if rendering else None
        say(f"celery drill: {drill.notes}")
        opening.join(60)
        self.settle(drill, after=time.time())

    def open_every_5_s(self, drill: str, *, since: float, for_s: float) -> int:
        """Open an incident every 5 s from `since` for `for_s` seconds; returns how many."""
        n = 0
        while time.time() < since + for_s:
            self.opener.open_one(f"{drill} #{n + 1}")
            n += 1
            time.sleep(max(0.0, min(since + n * 5.0, since + for_s) - time.time()))
        return n

    # d
    def redis_down(self) -> None:
        down_s = self.args.redis_down_s
        drill = self.begin("d", f"Redis SIGKILLed for {down_s:.0f} s, an incident opened every 5 s")
        self.redis.kill()
        down_at = time.time()
        say(f"SIGKILLed redis-server (port {self.redis.port}); back in {down_s:.0f} s")
        n = self.open_every_5_s("d", since=down_at, for_s=down_s)
        self.redis.start()
        up_at = time.time()
        drill.notes["redis_down"] = (down_at, up_at)
        drill.notes["opened"] = n
        say(f"redis-server back on port {self.redis.port} after {up_at - down_at:.0f} s")
        polling = wait_heartbeat("health_polling", self.worker_process_name, up_at, RESTART_TIMEOUT_S)
        rendering = wait_heartbeat("report_rendering", self.worker_process_name, up_at, RESTART_TIMEOUT_S)
        drill.notes["worker_polling_after_redis_s"] = round(polling - up_at, 1) if polling else None
        drill.notes["beat_scheduling_after_redis_s"] = round(rendering - up_at, 1) if rendering else None
        say(
            f"after Redis returned: health polling heartbeat after "
            f"{drill.notes['worker_polling_after_redis_s']} s, report rendering (beat) after "
            f"{drill.notes['beat_scheduling_after_redis_s']} s"
        )
        self.settle(drill, after=up_at)

    # e
    def provider_down(self) -> None:
        down_s = self.args.provider_down_s
        drill = self.begin("e", f"provider answering 503 for {down_s:.0f} s, an incident opened every 5 s")
        refused_before = self.sink.refused
        self.sink.down = True
        down_at = time.time()
        n = self.open_every_5_s("e", since=down_at, for_s=down_s)
        self.sink.down = False
        up_at = time.time()
        say(f"provider answering again after {up_at - down_at:.0f} s")
        drill.notes["provider_down"] = (down_at, up_at)
        drill.notes["opened"] = n
        # The last retry of a page may come a whole backoff step after the provider returns.
        caught_up = wait_caught_up(self.sink, up_at, self.args.retry_budget_s + 60)
        drill.notes["refused_503"] = self.sink.refused - refused_before
        drill.notes["caught_up_after_s"] = round(caught_up - up_at, 1) if caught_up else None
        self.settle(drill, after=up_at)


def load_average_all() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs"


# -- results ----------------------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
    }


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def analyse(bench: Bench, rows: list[PageRow]) -> dict:
    accepted, _ = bench.sink.snapshot()
    with bench.sink.lock:
        replays = dict(bench.sink.replays)
    # A person paged twice: two accepted keys for one rule step, channel and number (the
    # provider itself never accepts one key twice; a key sent again is a replay).
    per_page = Counter((r.incident, r.rule, r.step, r.channel, r.address) for r in rows if key_of(r.pk) in accepted)
    double_pages = sum(n - 1 for n in per_page.values() if n > 1)
    unknown_keys = set(accepted) - {key_of(r.pk) for r in rows}

    def window(rows_in: list[PageRow]) -> dict:
        late = [accepted[key_of(r.pk)] - r.due for r in rows_in if key_of(r.pk) in accepted]
        lost = [r for r in rows_in if key_of(r.pk) not in accepted]
        return {
            "pages": len(rows_in),
            "received": len(late),
            "lost": len(lost),
            "lost_rows": [(r.pk, r.state, r.channel, r.rule, r.step) for r in lost][:10],
            "replays": sum(replays.get(key_of(r.pk), 0) for r in rows_in),
            "late": stats(late),
            "late_values": late,
            "early": sum(1 for x in late if x < -0.05),
        }

    per_drill = {}
    assigned: set[int] = set()
    for drill in bench.drills:
        inside = [r for r in rows if drill.started <= r.due < drill.ended]
        assigned |= {r.pk for r in inside}
        per_drill[drill.key] = window(inside)
    per_drill["between drills"] = window([r for r in rows if r.pk not in assigned])
    return {
        "per_drill": per_drill,
        "all": window(rows),
        "double_pages": double_pages,
        "unknown_keys": len(unknown_keys),
    }


def process_table(bench: Bench) -> list[tuple]:
    """Each process's starts, kills and other exits, taken before the bench stops them."""
    rows = []
    for name, program in bench.programs.items():
        unexpected = program.unexpected_exits()
        rows.append(
            (
                name,
                len(program.starts),
                len(program.killed),
                len(unexpected),
                ", ".join(str(rc) for _, _, rc in unexpected) or "-",
                program.pid or "DEAD",
            )
        )
    return rows


def report(bench: Bench, result: dict, processes: list[tuple], started: float) -> None:
    print("\nper drill: urgent pages (SMS and calls) by the drill their deadline fell due in;")
    print("lateness = provider's first receive time - EscalationEvent.due_at, seconds")
    for drill in bench.drills:
        w = result["per_drill"][drill.key]
        print(f"\n{drill.key}. {drill.title}  (load average {drill.load})")
        print_table(
            ["pages", "received", "lost", "replays", "early", "p50", "p99", "max"],
            [
                (
                    w["pages"],
                    w["received"],
                    w["lost"],
                    w["replays"],
                    w["early"],
                    fmt(w["late"]["p50"]),
                    fmt(w["late"]["p99"]),
                    fmt(w["late"]["max"]),
                )
            ],
        )
        notes = {k: v for k, v in drill.notes.items() if k not in ("redis_down", "provider_down")}
        if notes:
            print("  " + ", ".join(f"{k}: {v}" for k, v in notes.items()))
        if w["lost_rows"]:
            print(f"  lost (pk, state, channel, rule, step): {w['lost_rows']}")
    between = result["per_drill"]["between drills"]
    if between["pages"]:
        print(
            f"\npages due between drills (setup, settling): {between['pages']}, "
            f"lost {between['lost']}, p99 {fmt(between['late']['p99'])} s"
        )
    print("\nprocesses (each under the bench's restart loop), before the bench stopped them:")
    print_table(["process", "starts", "killed by bench", "other exits", "exit codes", "pid"], processes)
    print(f"\nran {time.time() - started:.0f} s; load average {load_average_all()}")


def check_alive(bench: Bench) -> list[str]:
    """Processes not running, or running but not doing their duty, at the end."""
    from incidents.monitoring.models import DutyHeartbeat

    dead = []
    now = time.time()
    fresh = datetime.fromtimestamp(now - 15, UTC)
    for name, program in bench.programs.items():
        if not program.alive():
            dead.append(name)
            continue
        if name.startswith("d"):
            duties = {"escalation", "delivery"}
            seen = set(DutyHeartbeat.objects.filter(process=name, seen_at__gt=fresh).values_list("duty", flat=True))
            if not duties <= seen:
                dead.append(f"{name} (running, no fresh {sorted(duties - seen)} heartbeat)")
        elif name == "worker":
            if not heartbeat_since("health_polling", bench.worker_process_name() or "", now - 15):
                dead.append("worker (running, no health polling heartbeat in 15 s)")
        elif name == "beat" and not heartbeat_since("report_rendering", bench.worker_process_name() or "", now - 25):
            # Beat's report rendering heartbeat is scheduled every 10 s.
            dead.append("beat (running, no report rendering heartbeat in 25 s)")
    return dead


# -- main -------------------------------------------------------------------------------------


def attempts_for(outage_s: float, backoff_s: float) -> int:
    """The fewest attempts whose doubling backoff spans `outage_s` plus a margin (10 s x 5
    attempts, as deployed, spans 150 s)."""
    return max(5, 1 + math.ceil(math.log2((outage_s + 10) / backoff_s + 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: Redis 20 s, provider 15 s")
    parser.add_argument("--redis-down-s", type=float, default=None, help="default 300 (quick 20)")
    parser.add_argument("--provider-down-s", type=float, default=None, help="default 120 (quick 15)")
    parser.add_argument("--incidents", type=int, default=None, help="Sev1 incidents per burst (60; quick 30)")
    parser.add_argument("--step-s", type=float, default=3.0, help="chain step, seconds")
    parser.add_argument(
        "--provider-latency-s",
        type=float,
        default=0.2,
        help="how long the provider takes to answer (after taking the request)",
    )
    args = parser.parse_args()
    args.redis_down_s = args.redis_down_s or (20.0 if args.quick else 300.0)
    args.provider_down_s = args.provider_down_s or (15.0 if args.quick else 120.0)
    args.incidents = args.incidents or (30 if args.quick else 60)
    max_attempts = attempts_for(args.provider_down_s, BACKOFF_S)
    args.retry_budget_s = BACKOFF_S * (2 ** (max_attempts - 1) - 1)
    # Stop in order (finally below) on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))

    started = time.time()
    bench_db = use_bench_database(DEFAULT_DATABASE)
    log_dir = Path(tempfile.mkdtemp(prefix="tmt-fault-drill-"))
    redis = OwnRedis(log_dir)
    os.environ["CELERY_BROKER_URL"] = redis.url  # this process too, should it ever publish
    setup_django()
    print(f"database {bench_db.name}; own redis-server on port {redis.port}; logs in {log_dir}")
    print(
        f"retries: TMT_NOTIFY_BACKOFF_SECONDS={BACKOFF_S} (deployed 10) so retries after the "
        f"provider outage come back fast, and TMT_NOTIFY_MAX_ATTEMPTS={max_attempts} (deployed 5) "
        f"so the doubling schedule spans the {args.provider_down_s:.0f} s outage "
        f"({args.retry_budget_s} s; deployed: 10+20+40+80 = 150 s)"
    )
    print(
        f"provider answers after {args.provider_latency_s:g} s; chains page at open and every "
        f"{args.step_s:g} s ({CHAIN_PAGES} pages); Sev1 also pages the CTO at open"
    )
    bench_db.recreate()
    migrate()
    team = prepare(args.step_s)

    sink = ProviderSink(latency_s=args.provider_latency_s)
    sink.start()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=bench_db.url,
        CELERY_BROKER_URL=redis.url,
        TMT_VAR_DIR=str(log_dir),
        EMAIL_URL="dummymail://",
        TMT_SMS_PROVIDER_URL=sink.url,
        TMT_NOTIFY_BACKOFF_SECONDS=str(BACKOFF_S),
        TMT_NOTIFY_MAX_ATTEMPTS=str(max_attempts),
        DJANGO_DEBUG="0",
        PYTHONUNBUFFERED="1",
    )
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "tmt_ir"]
    # The Procfile's commands (the dispatcher twice, named), with this interpreter.
    commands = {
        "d1": [python, "manage.py", "run_dispatcher", "--name", "d1"],
        "d2": [python, "manage.py", "run_dispatcher", "--name", "d2"],
        "worker": [
            *celery,
            "worker",
            "-Q",
            "default,health,reports",
            "--pool=solo",
            "-n",
            "worker@%h",
            "--loglevel=INFO",
        ],
        "beat": [*celery, "beat", "--loglevel=INFO"],
    }
    programs = {name: Program(name, argv, env, log_dir) for name, argv in commands.items()}
    bench = Bench(args, sink, redis, programs, team)
    result: dict = {}
    try:
        redis.start()
        for program in programs.values():
            program.start()
        say("waiting for the dispatchers' and the worker's first heartbeats")
        since = time.time() - 60
        for name in ("d1", "d2"):
            if wait_heartbeat("delivery", lambda n=name: n, since, 60) is None:
                raise RuntimeError(f"{name} never recorded a delivery heartbeat; see {log_dir}")
        if wait_heartbeat("health_polling", bench.worker_process_name, since, 90) is None:
            raise RuntimeError(f"the worker never polled; see {log_dir}")

        bench.baseline()
        bench.kill_dispatcher("d1")
        bench.kill_dispatcher("d2")
        bench.kill_celery()
        bench.redis_down()
        bench.provider_down()

        time.sleep(3)  # a late re-send, if there were one, would land now
        dead = check_alive(bench)
        processes = process_table(bench)
        unexpected = {
            name: [rc for _, _, rc in p.unexpected_exits()] for name, p in programs.items() if p.unexpected_exits()
        }
        queues = queue_lengths(redis.url)
        rows = page_rows()
        result = analyse(bench, rows)
        events_twice, entries_twice = duplicate_firings()
        missed = missed_deadlines(time.time() - 5)
    finally:
        for program in programs.values():
            program.stop()
        redis.kill()
        sink.close()

    report(bench, result, processes, started)
    per = result["per_drill"]
    quiet = [x for k in ("a", "c", "d") for x in per[k]["late_values"]]
    redis_down, redis_up = next(d for d in bench.drills if d.key == "d").notes["redis_down"]
    down_values = [accepted_late for r, accepted_late in zip_late(rows, sink) if redis_down <= r.due < redis_up]
    catchups = {d.key: d.notes.get("catchup_s") for d in bench.drills if d.key.startswith("b-")}
    provider = next(d for d in bench.drills if d.key == "e")
    _, provider_up = provider.notes["provider_down"]
    accepted, _ = sink.snapshot()
    last_after = max(
        (
            accepted[key_of(r.pk)] - provider_up
            for r in rows
            if r.due < provider_up and r.due >= provider.started and key_of(r.pk) in accepted
        ),
        default=None,
    )
    lost = result["all"]["lost"] + missed
    duplicates = result["double_pages"] + events_twice + entries_twice
    late_p99 = stats(quiet)["p99"]
    redis_p99 = stats(down_values)["p99"]
    catchup = None if any(v is None for v in catchups.values()) else max(catchups.values(), default=0)
    met = (
        lost == 0
        and duplicates == 0
        and late_p99 is not None
        and late_p99 <= GOAL["late_p99_s"]
        and redis_p99 is not None
        and redis_p99 <= GOAL["redis_down_late_p99_s"]
        and catchup is not None
        and catchup <= GOAL["catchup_s"]
        and not dead
    )
    print(
        f"\nall drills: {result['all']['pages']} urgent pages, {result['all']['received']} "
        f"received, lost {result['all']['lost']}, deadlines never fired {missed}, pages sent "
        f"twice {result['double_pages']}, steps fired twice {events_twice}, timeline entries "
        f"twice {entries_twice}, replays dropped by the provider {result['all']['replays']}, "
        f"provider keys matching no page {result['unknown_keys']}, requests {sink.requests}, "
        f"503s {sink.refused}, senders gone before the answer {sink.clients_gone}"
    )
    print(
        f"lateness over drills a, c, d: p99 {fmt(late_p99)} s; pages due while Redis was down "
        f"({len(down_values)}): p99 {fmt(redis_p99)} s; catch-up after a dispatcher kill: "
        f"{catchups}; last page after the provider returned: {fmt(last_after)} s"
    )
    print(f"unconsumed Redis lists at the end: {queues or 'none'}")
    print(f"processes dead at the end: {dead or 'none'}; exits not caused by the bench: {unexpected or 'none'}")
    print(f"logs in {log_dir}")
    print(
        f"goal (lost 0, duplicates 0, late_p99_s <= 2, redis_down_late_p99_s <= 2, "
        f"catchup_s <= 30, dead_processes []): {'met' if met else 'NOT met'}"
    )
    print_result_json(
        {
            "lost": lost,
            "duplicates": duplicates,
            "late_p99_s": late_p99,
            "redis_down_late_p99_s": redis_p99,
            "catchup_s": catchup,
            "dead_processes": dead,
            "goal_met": met,
            "quick": args.quick,
            "pages": result["all"]["pages"],
            "replays": result["all"]["replays"],
            "missed_deadlines": missed,
            "late_p50_s": stats(quiet)["p50"],
            "late_max_s": stats(quiet)["max"],
            "late_p99_by_drill": {k: v["late"]["p99"] for k, v in per.items()},
            "catchup_by_kill": catchups,
            "provider_down_s": args.provider_down_s,
            "provider_last_page_after_s": None if last_after is None else round(last_after, 1),
            "redis_down_s": args.redis_down_s,
            "worker_polling_after_redis_s": next(d for d in bench.drills if d.key == "d").notes.get(
                "worker_polling_after_redis_s"
            ),
            "unexpected_exits": unexpected,
            "unconsumed_queues": queues,
            "load_average": load_average(),
            "log_dir": str(log_dir),
        }
    )


def zip_late(rows: list[PageRow], sink: ProviderSink):
    accepted, _ = sink.snapshot()
    for r in rows:
        if key_of(r.pk) in accepted:
            yield r, accepted[key_of(r.pk)] - r.due


if __name__ == "__main__":
    main()
