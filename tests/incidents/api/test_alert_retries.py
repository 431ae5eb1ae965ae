"""When alert intake retries a request: a deadlock (which PostgreSQL resolves by cancelling one
of the two requests) is retried whole, up to three attempts; any other database error, and any
error inside a caller's transaction, reaches the caller at once."""

from __future__ import annotations

import pytest
from django.db import OperationalError, transaction

from incidents.api.services import alerts as intake


class _Deadlock(Exception):
    sqlstate = "40P01"


class _LockTimeout(Exception):
    sqlstate = "55P03"


def _error(message: str, cause: Exception | None) -> OperationalError:
    # What Django raises: the driver's error, with its SQLSTATE, is the cause.
    error = OperationalError(message)
    error.__cause__ = cause
    return error


class _FailingWork:
    """Stands in for one attempt at a request's work: fails every time, counting the attempts."""

    def __init__(self, error: OperationalError) -> None:
        self.error = error
        self.attempts = 0

    def __call__(self, **kwargs):
        self.attempts += 1
        raise self.error


def _failing(monkeypatch, message: str, cause: Exception | None) -> _FailingWork:
    work = _FailingWork(_error(message, cause))
    monkeypatch.setattr(intake, "_ingest", work)
    return work


def test_a_deadlock_every_time_is_given_up_after_three_attempts(monkeypatch):
    work = _failing(monkeypatch, "deadlock detected", _Deadlock())
    with pytest.raises(OperationalError, match="deadlock detected"):
        intake.alerts_ingest(integration=None, alerts=[])
    assert work.attempts == 3


@pytest.mark.parametrize("cause", [_LockTimeout(), None], ids=["another-sqlstate", "no-cause"])
def test_any_other_database_error_is_raised_at_once(monkeypatch, cause):
    work = _failing(monkeypatch, "canceling statement due to lock timeout", cause)
    with pytest.raises(OperationalError, match="lock timeout"):
        intake.alerts_ingest(integration=None, alerts=[])
    assert work.attempts == 1


@pytest.mark.django_db
def test_inside_a_callers_transaction_a_deadlock_is_left_to_the_caller(monkeypatch):
    work = _failing(monkeypatch, "deadlock detected", _Deadlock())
    with transaction.atomic(), pytest.raises(OperationalError, match="deadlock detected"):
        intake.alerts_ingest(integration=None, alerts=[])
    assert work.attempts == 1
