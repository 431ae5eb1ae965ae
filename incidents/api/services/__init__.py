"""Writes that belong to the API app: tokens, alert intake, idempotency keys."""
