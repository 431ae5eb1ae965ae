"""Celery tasks of the status page: thin, each returns a short summary."""

from celery import shared_task

from incidents.status import services


@shared_task(ignore_result=True)
def roll_up_uptime() -> str:
    return f"rolled up {services.uptime_roll_up()} system-days"


@shared_task(ignore_result=True)
def advance_maintenance() -> str:
    return services.maintenance_advance_due()
