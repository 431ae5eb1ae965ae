"""Celery tasks: thin wrappers that pass primary keys to services and return a short summary.

Deadlines and pages are not Celery's: the paging dispatcher (incidents/monitoring/dispatcher.py) takes them
from the database, so they go on while the broker is down.
"""

import os
import socket

from celery import shared_task
from celery.signals import beat_init, worker_ready

from incidents.monitoring import halt
from incidents.monitoring import services as health
from incidents.monitoring.models import DutyHeartbeat

# -- health polling and heartbeats -------------------------------------------------------------


def _process() -> str:
    # At call time: a prefork pool child has its own pid, not the parent's.
    return f"worker@{socket.gethostname()}:{os.getpid()}"


@shared_task(ignore_result=True)
def poll_health_targets() -> str:
    summary = health.health_poll_due()
    health.duty_record(duty=DutyHeartbeat.Duty.HEALTH_POLLING, process=_process())
    return str(summary)


@shared_task(ignore_result=True)
def record_report_rendering_heartbeat() -> str:
    # Routed to the reports queue: its arrival proves a worker would render a report now.
    health.duty_record(duty=DutyHeartbeat.Duty.REPORT_RENDERING, process=_process())
    return "report rendering heartbeat"


@shared_task(ignore_result=True)
def record_beat_heartbeat(name: str) -> str:
    # Sent by beat every TMT_HEARTBEAT_SECONDS: its arrival proves beat -> broker -> worker -> DB.
    health.heartbeat_record(name=name, kind="beat")
    return f"beat heartbeat from {name}"


@shared_task(ignore_result=True)
def recheck_trading_halt() -> str:
    return halt.trading_halt_recheck()


@shared_task(ignore_result=True)
def prune_health_samples() -> str:
    return f"pruned {health.health_samples_prune()} health samples"


def _start_worker_heartbeat(sender=None, **kwargs) -> None:
    # worker_ready is sent by the `celery worker` command only (not by the test suite's
    # in-process worker), so only real workers write heartbeats and judge beat and the broker.
    from django.conf import settings

    # Only a worker that consumes the beat heartbeat's queue can tell whether beat is silent.
    consumer = getattr(sender, "task_consumer", None)
    consumed = {queue.name for queue in getattr(consumer, "queues", [])}
    heartbeat_queue = settings.CELERY_TASK_ROUTES["incidents.monitoring.tasks.record_beat_heartbeat"]["queue"]
    health.heartbeat_thread_start(
        role="worker",
        name=getattr(sender, "hostname", None) or "worker",
        judges_beat=heartbeat_queue in consumed,
    )


def _start_beat_watch(sender=None, **kwargs) -> None:
    # In the beat process: check every duty, as workers and dispatchers do.
    import socket

    health.heartbeat_thread_start(role="beat", name=f"beat@{socket.gethostname()}")


worker_ready.connect(_start_worker_heartbeat, weak=False)
beat_init.connect(_start_beat_watch, weak=False)
