"""Celery tasks: thin wrappers that call a service and return a short summary."""

from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def send_due_reminders() -> str:
    return f"sent {services.reminders_send_due()} reminder(s)"


@shared_task(ignore_result=True)
def record_mentored_responses() -> str:
    return f"recorded {services.mentored_responses_scan()} mentored response(s)"
