"""Bounds on the dates and times people and clients write, in one place.

Every form, API serializer and service asks these, so a year typed as 0226 or 20266 is refused
alike on the web and in the API, at create and at update, with the field named, before anything
is written. Each check returns why a value is refused ("" when it is fine) for the caller to put
on its field.

- A time something happened (an incident's start and end, a timeline note): not before 1970 and
  not in the future (beyond CLOCK_SKEW); where it belongs to an incident, not before it began.
- A time a machine reports about the present (an alert's start and end): not before 1970 and
  at most SOON ahead.
- A time or date planned (the next status update, an action item's due date, a drill's start):
  not in the past and at most PLANNING_HORIZON ahead; a certification's expiry too, which may
  be past when a record is entered late.
- A date-time searched for (the API's list filters): the years EARLIEST_YEAR to LATEST_YEAR.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.utils import timezone

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
# A search may look further ahead than anything is recorded, but not past what every part
# (Python, PostgreSQL, a time-zone offset) can hold.
EARLIEST_YEAR, LATEST_YEAR = EARLIEST.year, 2200
# A browser's or a script's clock may run this far ahead of the server's.
CLOCK_SKEW = timedelta(minutes=5)
# Alertmanager's end time of a firing alert is minutes to hours ahead; a year is a wrong clock.
SOON = timedelta(days=366)
# Long-term prevention actions and drills are planned up to a few years out; further is a typo.
PLANNING_YEARS = 5
PLANNING_HORIZON = timedelta(days=PLANNING_YEARS * 366)


def _shown(value: datetime) -> str:
    return f"{timezone.localtime(value):%d %b %Y %H:%M %Z}"


def happened_problem(
    value: datetime | None, *, what: str = "The time", now: datetime | None = None, began: datetime | None = None
) -> str:
    """Why `value` cannot be when something happened; `began`: the start of the incident it
    belongs to, if any. `what` names it in the message ("The start time")."""
    if value is None:
        return ""
    if value < EARLIEST:
        return f"{what} cannot be before 1970."
    if value > (now or timezone.now()) + CLOCK_SKEW:
        return f"{what} cannot be in the future."
    if began is not None and value < began:
        return f"{what} cannot be before the incident began ({_shown(began)})."
    return ""


def reported_problem(value: datetime | None, *, what: str = "The time", now: datetime | None = None) -> str:
    """Why `value` cannot be a time a machine reports about the present."""
    if value is None:
        return ""
    if value < EARLIEST:
        return f"{what} cannot be before 1970."
    if value > (now or timezone.now()) + SOON:
        return f"{what} is more than a year ahead; check the sender's clock."
    return ""


def planned_problem(
    value: date | datetime | None, *, what: str = "The date", now: datetime | None = None, past_ok: bool = False
) -> str:
    """Why `value` cannot be planned: a date-time from now, a date from today (the local date),
    up to PLANNING_HORIZON ahead. past_ok: only the horizon applies (an expiry recorded late)."""
    if value is None:
        return ""
    now = now or timezone.now()
    start: date | datetime = now if isinstance(value, datetime) else timezone.localdate(now)
    if value < start and not past_ok:
        return f"{what} cannot be in the past."
    if value > start + PLANNING_HORIZON:
        return f"{what} is more than {PLANNING_YEARS} years ahead; check the year."
    return ""


def incident_time_errors(
    *, started_at: datetime | None, ended_at: datetime | None, now: datetime | None = None
) -> dict[str, str]:
    """The report's Start and End Time of an incident, as people give them: each a time that
    happened, the end not before the start. Keyed by field, for a form, a serializer or a service."""
    errors = {}
    if problem := happened_problem(started_at, what="The start time", now=now):
        errors["started_at"] = problem
    if problem := happened_problem(ended_at, what="The end time", now=now):
        errors["ended_at"] = problem
    elif started_at and ended_at and ended_at < started_at:
        errors["ended_at"] = "The end time cannot be before the start time."
    return errors
