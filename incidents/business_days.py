"""Business days: weekdays that are not a BusinessHoliday, in the firm's time zone."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings

from incidents.models import BusinessHoliday


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TMT_BUSINESS_TIME_ZONE)


def _is_business_day(day: date, holidays: set[date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def holidays_between(first: date, last: date) -> set[date]:
    """Holidays in a range, for a page that computes many due times with one query."""
    return set(
        BusinessHoliday.objects.filter(date__gte=first, date__lte=last + timedelta(days=60)).values_list(
            "date", flat=True
        )
    )


def next_business_day_start(after: datetime, *, holidays: set[date] | None = None) -> datetime:
    """Opening time of the first business day after the day of `after`."""
    zone = _zone()
    day = after.astimezone(zone).date() + timedelta(days=1)
    if holidays is None:
        holidays = holidays_between(day, day)
    while not _is_business_day(day, holidays):
        day += timedelta(days=1)
    return datetime.combine(day, settings.TMT_BUSINESS_DAY_OPENS, tzinfo=zone)


def end_of_next_business_day(after: datetime) -> datetime:
    """'Within a business day': closing time of the next business day after `after`."""
    opening = next_business_day_start(after)
    return datetime.combine(opening.date(), settings.TMT_BUSINESS_DAY_CLOSES, tzinfo=opening.tzinfo)
