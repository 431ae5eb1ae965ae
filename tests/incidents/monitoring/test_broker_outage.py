"""A Celery worker that holds a task when Redis dies survives the outage and consumes again.

Real processes: a redis-server of the test's own (killed with SIGKILL and started again on the
same port) and `celery worker --pool=threads` on it and on the test's PostgreSQL database.

The worker must hold an unacknowledged message when the broker goes: with task_acks_late that is
any task still running. Celery 5.7.0 then closed the broken connection a second time after
collecting it, and restoring that message needed the transport that collect() had detached:
AttributeError in kombu's Redis `_connparams`, "Unrecoverable error", and the worker exited for
good. A task blocked on a row lock is in flight for exactly as long as the test wants.
"""

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction

from incidents.monitoring.models import WorkerHeartbeat
from tests.processes import OwnRedis, start_celery, stop
from tmt_ir.celery import app

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("postgres"),
]

TASK = "incidents.monitoring.tasks.record_beat_heartbeat"
QUEUE = settings.CELERY_TASK_ROUTES.get(TASK, {}).get("queue", settings.CELERY_TASK_DEFAULT_QUEUE)


def _wait(condition, timeout: float, what: str, worker: subprocess.Popen | None = None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if worker is not None and worker.poll() is not None:
            pytest.fail(f"the worker exited (code {worker.returncode}) waiting for {what}:\n{_tail(log)}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}:\n{_tail(log)}")


def _tail(log: Path | None, lines: int = 20) -> str:
    # The worker's log records, without the tracebacks between them.
    if log is None or not log.exists():
        return ""
    records = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("[")]
    return "\n".join(records[-lines:])


def _crashed(log: Path) -> bool:
    return "Unrecoverable error" in log.read_text(errors="replace")


def _send(broker_url: str, name: str) -> None:
    with app.connection_for_write(broker_url) as conn:
        app.send_task(TASK, args=[name], queue=QUEUE, connection=conn)


def _blocked_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        # Inside a transaction PostgreSQL answers from a snapshot taken at the first look.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_threads_worker_holding_a_task_survives_a_redis_outage(tmp_path):
    log = tmp_path / "worker.log"
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    held = WorkerHeartbeat.objects.create(name="outage-probe-held", kind="beat", seen_at=long_ago)
    redis = OwnRedis(tmp_path)
    redis.start()
    worker = None
    try:
        # A threads pool, as the Procfile's escalation and notifications workers had: tasks run
        # beside the consumer, so a message is nearly always unacknowledged when Redis goes.
        worker = start_celery(
            ["worker", "-Q", QUEUE, "--pool=threads", "--concurrency=4", "-n", "outage@%h", "--loglevel=INFO"],
            tmp_path,
            "worker",
            CELERY_BROKER_URL=redis.url,
        )
        _wait(lambda: log.exists() and " ready." in log.read_text(), 30, "the worker to start", worker, log)

        with transaction.atomic():
            # The task's upsert waits on this row lock: it is running, its message unacknowledged.
            WorkerHeartbeat.objects.select_for_update().get(pk=held.pk)
            _send(redis.url, held.name)
            _wait(_blocked_on_a_lock, 15, "the task to block on the row lock", worker, log)
            redis.kill()
            killed_at = time.monotonic()
            _wait(
                lambda: "Connection to broker lost" in log.read_text(), 15, "the worker to see the outage", worker, log
            )
            # Without the fix the worker logs "Unrecoverable error" within milliseconds of noticing
            # (measured: 1-3 ms) and exits once its running task ends.
            time.sleep(0.5)
        # The held task finishes now, with the broker still down.
        _wait(
            lambda: WorkerHeartbeat.objects.get(pk=held.pk).seen_at > long_ago,
            15,
            "the held task to finish",
            worker,
            log,
        )
        time.sleep(0.3)
        assert not _crashed(log), f"the worker gave up when Redis went:\n{_tail(log)}"
        assert worker.poll() is None, f"the worker died of the broker outage:\n{_tail(log)}"

        redis.start()  # on the same port; Redis has lost everything (no persistence)
        print(f"Redis down {time.monotonic() - killed_at:.1f} s")
        _send(redis.url, "outage-probe-after")
        _wait(
            lambda: WorkerHeartbeat.objects.filter(name="outage-probe-after").exists(),
            40,
            "the worker to consume a task sent after Redis came back",
            worker,
            log,
        )
        assert worker.poll() is None, _tail(log)
        assert not _crashed(log), _tail(log)
    finally:
        stop(worker)
        redis.kill()
