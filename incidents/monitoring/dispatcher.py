"""The paging dispatcher: fires due deadlines and delivers due pages straight from the database.

Paging must go on while the message broker is away (the seed gives it an RTO of 15 minutes), so
it does not use the broker at all, the way healthchecks' `sendalerts` runs a plain loop:

- the firing loop sleeps until the next pending deadline is due (at most a second, so a row
  written by anyone is seen in time) and then claims and fires every due row
  (escalation.deadlines_fire_due: SELECT ... FOR UPDATE SKIP LOCKED, one event per rule step);
- the delivery loop claims one due notification per idle sending thread and each thread records
  its row's outcome as soon as the send returns, so a dispatcher killed mid-delivery leaves at
  most its in-flight rows, which another takes over (notifications.notifications_claim_due);
- on PostgreSQL a listener thread is woken by NOTIFY when a row due at once is committed
  (incidents/wakeups.py), so a page at open leaves within milliseconds, not at the next look.

Any number of dispatchers may run side by side on one host or several: the claims make double
work impossible, and each keeps paging when another dies. Each loop records its duty heartbeat,
and a monitor thread checks every duty (the portal's Celery ones too) and raises an
infrastructure incident for a silent one. A broken database connection is closed and the loop
tries again; the process itself is restarted by its supervisor if it dies.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from incidents import wakeups
from incidents.escalation import services as escalation
from incidents.escalation.models import Deadline
from incidents.monitoring import services as health
from incidents.monitoring.models import DutyHeartbeat
from incidents.notifications import services as notifications

log = logging.getLogger(__name__)

# How often each loop records its duty heartbeat (well inside TMT_DUTY_STALE_SECONDS).
HEARTBEAT_EVERY = timedelta(seconds=2)
# After a database error a loop waits this long before trying again (and reconnecting).
ERROR_PAUSE_S = 0.2
# A due row this dispatcher could not claim is held by another (committing in a moment, or
# stuck behind a lost connection): look again after this pause rather than at once.
HELD_ROW_PAUSE = timedelta(milliseconds=100)


def process_name() -> str:
    return f"dispatcher@{socket.gethostname()}:{os.getpid()}"


class Dispatcher:
    """One dispatcher process's loops, as threads; `start()` them and `stop()` to finish.

    `monitor` also runs the duty checks (off in the test suite's in-process dispatcher, whose
    clock-shortened policies would otherwise meet the portal's own monitoring incidents).
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        threads: int | None = None,
        max_sleep: timedelta = wakeups.DISPATCHER_MAX_SLEEP,
        listen: bool = True,
        monitor: bool = True,
    ) -> None:
        self.name = name or process_name()
        self.threads = threads or settings.TMT_DISPATCHER_THREADS
        self.max_sleep_s = max_sleep.total_seconds()
        self.listen = listen and connection.vendor == "postgresql"
        self.monitor = monitor
        self.started_at = timezone.now()
        self.stopping = threading.Event()
        self.fire_wanted = threading.Event()
        self.deliver_wanted = threading.Event()
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._to_send: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._monitor: health.HeartbeatThread | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        loops = [("fire", self._fire_loop), ("deliver", self._deliver_loop)]
        if self.listen:
            loops.append(("listen", self._listen_loop))
        loops += [(f"send-{n}", self._sender) for n in range(self.threads)]
        for label, target in loops:
            thread = threading.Thread(
                target=self._closing_connections(target), name=f"tmt-dispatch-{label}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        if self.monitor:
            # Checks every duty, the Celery ones too, as every worker and beat does.
            self._monitor = health.heartbeat_thread_start(role="dispatcher", name=self.name)
        log.info("%s started: %s sending threads, listening=%s", self.name, self.threads, self.listen)

    def request_stop(self) -> None:
        """Ask the loops to finish (safe from a signal handler); `stop()` waits for them."""
        self.stopping.set()
        self.fire_wanted.set()
        self.deliver_wanted.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is in flight (so it is recorded) and stop the loops."""
        self.request_stop()
        senders = [t for t in self._threads if t.name.startswith("tmt-dispatch-send-")]
        for thread in self._threads:
            if thread not in senders:
                thread.join(timeout)
        if self._monitor is not None:
            self._monitor.stop_event.set()
            self._monitor.join(timeout)
        # Only now, with nothing claiming any more: each sender sends what was claimed for it,
        # then meets its end marker (queued after every claimed row).
        for _ in senders:
            self._to_send.put(None)
        for thread in senders:
            thread.join(timeout)

    @staticmethod
    def _closing_connections(target):
        def run() -> None:
            try:
                target()
            finally:
                # This thread's own database connection, so none outlives it.
                connections.close_all()

        return run

    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    # -- firing -------------------------------------------------------------------------------

    def _fire_loop(self) -> None:
        self._loop(
            duty=DutyHeartbeat.Duty.ESCALATION,
            wanted=self.fire_wanted,
            work=self._fire_once,
        )

    def _fire_once(self) -> datetime | None:
        fired = escalation.deadlines_fire_due()
        if fired:
            log.info("fired %s deadline(s)", fired)
            self.deliver_wanted.set()  # their pages are due now (no NOTIFY on SQLite)
        next_due = (
            Deadline.objects.filter(fired_at=None, cancelled_at=None)
            .order_by("due_at")
            .values_list("due_at", flat=True)
            .first()
        )
        return _after_a_pause_if_held(next_due, worked=bool(fired))

    # -- delivery -----------------------------------------------------------------------------

    def _deliver_loop(self) -> None:
        self._loop(
            duty=DutyHeartbeat.Duty.DELIVERY,
            wanted=self.deliver_wanted,
            work=self._deliver_once,
        )

    def _deliver_once(self) -> datetime | None:
        with self._in_flight_lock:
            free = self.threads - self._in_flight
        claimed = notifications.notifications_claim_due(limit=free) if free > 0 else []
        for row in claimed:
            with self._in_flight_lock:
                self._in_flight += 1
            self._to_send.put(row)
        with self._in_flight_lock:
            if self._in_flight >= self.threads:
                return None  # every thread busy: a finished send wakes the loop
        return _after_a_pause_if_held(notifications.notifications_next_due_at(), worked=bool(claimed))

    def _sender(self) -> None:
        while True:
            row = self._to_send.get()
            if row is None:
                return
            self._send(row)

    def _send(self, row) -> None:
        try:
            connection.close_if_unusable_or_obsolete()
            outcome = notifications.notification_send(notification=row)
            log.info("notification %s (%s to %s): %s", row.pk, row.channel, row.address, outcome)
            if outcome.startswith("failed"):
                self.fire_wanted.set()  # it may have moved the chain on to the next person
        except Exception:
            # Only the database can fail here (a channel's errors are recorded attempts); the
            # row stays "sending" and is taken over after TMT_NOTIFY_TAKEOVER_SECONDS.
            log.exception("delivering notification %s failed", row.pk)
            connection.close()
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
                free = self.threads - self._in_flight
            # Claim for several threads at once rather than one claim transaction per finished
            # send: under a burst that halves the claims' round trips. A page due at once still
            # wakes the loop through its NOTIFY, whatever the threads are doing.
            if 2 * free >= self.threads:
                self.deliver_wanted.set()

    # -- the shared loop ----------------------------------------------------------------------

    def _loop(self, *, duty: str, wanted: threading.Event, work) -> None:
        last_heartbeat = None
        while not self.stopping.is_set():
            wanted.clear()
            try:
                # Django checks connections around each web request; these threads have none.
                connection.close_if_unusable_or_obsolete()
                next_due = work()
                now = timezone.now()
                if last_heartbeat is None or now - last_heartbeat >= HEARTBEAT_EVERY:
                    health.duty_record(duty=duty, process=self.name, now=now)
                    last_heartbeat = now
            except Exception:
                # A dropped connection or a database restart: start again on a new connection.
                log.exception("%s loop failed; retrying", duty)
                connection.close()
                self.stopping.wait(ERROR_PAUSE_S)
                continue
            sleep_s = self.max_sleep_s
            if next_due is not None:
                sleep_s = min(sleep_s, max(0.0, (next_due - timezone.now()).total_seconds()))
            wanted.wait(sleep_s)

    # -- wake-ups -----------------------------------------------------------------------------

    def _listen_loop(self) -> None:
        """LISTEN for wake-ups on a connection of its own; reconnect whenever it breaks."""
        # The site's own connection settings (host, SSL, options), without Django's cursor.
        params = connection.get_connection_params()
        for django_only in ("cursor_factory", "context"):
            params.pop(django_only, None)
        params.setdefault("connect_timeout", 5)
        while not self.stopping.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as listener:
                    for channel in wakeups.CHANNELS:
                        listener.execute(f"LISTEN {channel}")
                    # Anything committed while nobody listened is looked at now.
                    self.fire_wanted.set()
                    self.deliver_wanted.set()
                    while not self.stopping.is_set():
                        for notice in listener.notifies(timeout=1.0):
                            self._woken(notice.channel)
                        listener.execute("SELECT 1")  # a dead server is noticed here
            except psycopg.Error:
                log.warning("wake-up listener lost its connection; reconnecting", exc_info=True)
                self.stopping.wait(1.0)

    def _woken(self, channel: str) -> None:
        if channel == wakeups.DEADLINES:
            self.fire_wanted.set()
        elif channel == wakeups.NOTIFICATIONS:
            self.deliver_wanted.set()


def _after_a_pause_if_held(next_due: datetime | None, *, worked: bool) -> datetime | None:
    """When to look again: at once after doing work, a moment later for a row someone holds."""
    if worked or next_due is None:
        return next_due
    return max(next_due, timezone.now() + HELD_ROW_PAUSE)


def run_forever(dispatcher: Dispatcher) -> None:
    """Run until SIGTERM/SIGINT (set by the management command) or a loop thread dies."""
    dispatcher.start()
    try:
        while not dispatcher.stopping.is_set():
            if not dispatcher.alive():
                # A loop thread died of something not caught: exit so the supervisor restarts us.
                raise SystemExit(f"{dispatcher.name}: a loop thread died; exiting for a restart")
            time.sleep(1.0)
    finally:
        dispatcher.stop()
