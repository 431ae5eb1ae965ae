"""Celery tasks of the API app: thin wrappers that call a service and return a short summary."""

from celery import shared_task

from incidents.api.services.idempotency import idempotency_keys_purge


@shared_task(ignore_result=True)
def purge_idempotency_keys() -> str:
    return f"purged {idempotency_keys_purge()} expired idempotency keys"
