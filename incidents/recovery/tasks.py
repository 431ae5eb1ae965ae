"""Celery tasks: thin. Backups run on the `backups` queue, consumed by a worker of their own, so
a dump of minutes never delays a health poll or a report; the RPO check runs on `default`."""

from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def run_backup(run_id: int) -> str:
    run = services.backup_run_execute(run_id=run_id)
    return f"backup run {run_id}: {run.state if run else 'already taken'}"


@shared_task(ignore_result=True)
def scheduled_backup() -> str:
    run = services.backup_schedule_due()
    if run is None:
        return "scheduled backup: skipped (one is already running, or nothing is configured)"
    done = services.backup_run_execute(run_id=run.pk)
    return f"scheduled backup run {run.pk}: {done.state if done else 'already taken'}"


@shared_task(ignore_result=True)
def check_rpo() -> str:
    failed = services.backup_run_stale_fail()
    outcome = services.rpo_check()
    return f"RPO check: breached {outcome.opened}, met again {outcome.cleared}, {failed} stale runs failed"
