"""When a regime's stage falls due: its clock from its anchor, the cap after awareness, and the
working-day rule. Pure arithmetic over a holiday set, so a page of many clocks reads holidays once."""

from __future__ import annotations

from datetime import date, datetime

from dateutil.relativedelta import relativedelta

from incidents import business_days
from incidents.escalation.models import RegimeStage, RegulatoryRegime


def _holidays_for(start: datetime, stage: RegimeStage, aware_at: datetime | None) -> set[date]:
    # From the earlier of the anchor and awareness: the cap after awareness can fall before the
    # anchor's day.
    # A day's margin: the UTC date can be a day after the firm's local one.
    first = min(start, aware_at or start).date() - relativedelta(days=1)
    span = 45 * (stage.within_months or 0) + 2 * (stage.within_working_days or 0) + 14
    return business_days.holidays_between(first, first + relativedelta(days=span))


def stage_due_at(
    stage: RegimeStage,
    *,
    anchor_at: datetime,
    aware_at: datetime | None = None,
    regime: RegulatoryRegime | None = None,
    holidays: set[date] | None = None,
) -> datetime:
    """The moment the stage's report is due, given when its anchor happened."""
    regime = regime or stage.regime
    if holidays is None:
        holidays = _holidays_for(anchor_at, stage, aware_at)
    if stage.within_working_days is not None:
        # Counting working days lands on one: nothing to move.
        due = business_days.close_after_business_days(anchor_at, stage.within_working_days, holidays=holidays)
    elif stage.within_months is not None:
        # Calendar months: 31 January + 1 month is 28/29 February (the month's last day).
        due = anchor_at + relativedelta(months=stage.within_months)
    else:
        due = anchor_at + stage.within
    if stage.no_later_than_after_awareness is not None and aware_at is not None:
        due = min(due, aware_at + stage.no_later_than_after_awareness)
    if regime.moves_off_non_working_days and not business_days.is_business_day(due, holidays=holidays):
        due = moved_to_next_working_day(due, regime=regime, holidays=holidays)
    return due


def moved_to_next_working_day(due: datetime, *, regime: RegulatoryRegime, holidays: set[date]) -> datetime:
    """A deadline on a weekend day or holiday: the next working day, at the regime's time of day
    (DORA: 12:00 noon) or, when the regime names none, at the same time of day."""
    opening = business_days.next_business_day_start(due, holidays=holidays)
    at = regime.moved_due_time or due.astimezone(opening.tzinfo).timetz().replace(tzinfo=None)
    return datetime.combine(opening.date(), at, tzinfo=opening.tzinfo)
