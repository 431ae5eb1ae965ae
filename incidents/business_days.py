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


def is_business_day(at: datetime, *, holidays: set[date] | None = None) -> bool:
    """Whether `at` falls on a business day, in the firm's time zone."""
    day = at.astimezone(_zone()).date()
    if holidays is None:
        holidays = holidays_between(day, day)
    return _is_business_day(day, holidays)


def close_after_business_days(after: datetime, days: int, *, holidays: set[date] | None = None) -> datetime:
    """'Within N working days': closing time of the Nth business day after the day of `after`."""
    zone = _zone()
    day = after.astimezone(zone).date()
    if holidays is None:
        # Holidays within reach: N business days span at most about 1.4 N calendar days plus holidays.
        holidays = holidays_between(day, day + timedelta(days=2 * days + 14))
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if _is_business_day(day, holidays):
            counted += 1
    return datetime.combine(day, settings.TMT_BUSINESS_DAY_CLOSES, tzinfo=zone)
