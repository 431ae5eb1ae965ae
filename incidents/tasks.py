"""Celery tasks: thin wrappers that pass primary keys to services and return a short summary."""

from celery import shared_task

from .services import escalation, notifications


@shared_task(ignore_result=True)
def fire_due_deadlines() -> str:
    return f"fired {escalation.deadlines_fire_due()}"


@shared_task(ignore_result=True)
def fire_deadline(deadline_id: int) -> str:
    # An ETA message for precision; the row decides whether anything is still to do.
    return "fired" if escalation.deadline_fire(deadline_id=deadline_id) else "nothing to do"


@shared_task(ignore_result=True)
def send_notification(notification_id: int) -> str:
    return notifications.notification_deliver(notification_id=notification_id)


@shared_task(ignore_result=True)
def requeue_lost_notifications() -> str:
    return f"requeued {notifications.notifications_requeue_lost()}"
