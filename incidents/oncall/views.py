"""The on-call calendar: who is on call, now and each day of the next four weeks.

`selectors.on_call_at` answers one instant with two queries; a 28-day grid through it
would cost a query per day and rotation. Here every rotation, its members and its overrides for
the whole window are fetched up front (a fixed number of queries however many days or rotations
are shown) and the same rules are applied in memory: an override covering the instant wins (the
most recently created if several do), otherwise the member whose shift it is; the deputy is the
next member in the rotation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from incidents.oncall.models import OnCallOverride, OnCallRotation, RoleContact, RotationMember

WEEKS = 4
DAYS = WEEKS * 7
# Far enough for planning and look-backs; beyond it datetime arithmetic can overflow (year 9999).
MAX_DAYS_AWAY = 3660


@dataclass
class DayCell:
    day: date
    at: datetime  # the hand-over instant that day, in the rotation's time zone
    user: object | None
    override: OnCallOverride | None  # the cover in effect at the hand-over
    partial: list[OnCallOverride] = field(default_factory=list)  # covers for part of that day's shift
    is_today: bool = False
    shift_starts: bool = False


@dataclass
class RotationCalendar:
    rotation: OnCallRotation
    timezone: str
    days: list[DayCell]
    now_user: object | None = None
    now_override: OnCallOverride | None = None
    now_until: datetime | None = None
    deputy: object | None = None


def _covering(overrides: list[OnCallOverride], at: datetime) -> OnCallOverride | None:
    """The override in effect at `at`: the latest created wins, as in on_call_at."""
    best = None
    for override in overrides:
        if override.starts_at <= at < override.ends_at and (best is None or override.created_at > best.created_at):
            best = override
    return best


def _scheduled(rotation: OnCallRotation, members: list[RotationMember], index: int):
    return members[index % len(members)].user if members else None


def rotation_calendar(rotation: OnCallRotation, *, start: date, now: datetime) -> RotationCalendar:
    """Needs `member_list`, `window_overrides` and `current_overrides` prefetched (see below)."""
    tz = ZoneInfo(rotation.timezone)
    members: list[RotationMember] = rotation.member_list
    window: list[OnCallOverride] = rotation.window_overrides
    today = now.astimezone(tz).date()

    days: list[DayCell] = []
    previous_index = None
    for offset in range(DAYS):
        day = start + timedelta(days=offset)
        at = datetime.combine(day, rotation.handover_time, tzinfo=tz)
        shift_end = datetime.combine(day + timedelta(days=1), rotation.handover_time, tzinfo=tz)
        index = rotation.shift_index_at(at)
        override = _covering(window, at)
        partial = [o for o in window if o is not override and o.starts_at < shift_end and o.ends_at > at]
        days.append(
            DayCell(
                day=day,
                at=at,
                user=override.user if override else _scheduled(rotation, members, index),
                override=override,
                partial=partial,
                is_today=day == today,
                shift_starts=previous_index is not None and index != previous_index,
            )
        )
        previous_index = index

    calendar = RotationCalendar(rotation=rotation, timezone=rotation.timezone, days=days)
    index = rotation.shift_index_at(now)
    shift_end = rotation.shift_bounds(index)[1]
    current = rotation.current_overrides
    calendar.now_override = _covering(current, now)
    if calendar.now_override is not None:
        calendar.now_user = calendar.now_override.user
        calendar.now_until = calendar.now_override.ends_at
    else:
        calendar.now_user = _scheduled(rotation, members, index)
        # A cover starting before the hand-over ends this person's watch early.
        next_cover = min((o.starts_at for o in current if now < o.starts_at < shift_end), default=None)
        calendar.now_until = next_cover or shift_end
    if len(members) > 1:
        calendar.deputy = _scheduled(rotation, members, index + 1)
    calendar.now_until = calendar.now_until.astimezone(tz)
    return calendar


def _start_date(request: HttpRequest, today: date) -> date:
    raw = request.GET.get("start", "").strip()
    if not raw:
        return today
    try:
        start = date.fromisoformat(raw)
    except ValueError:
        messages.warning(request, f"“{raw[:40]}” is not a date (use YYYY-MM-DD); showing from today.")
        return today
    if abs((start - today).days) > MAX_DAYS_AWAY:
        messages.warning(request, "That date is too far away; showing from today.")
        return today
    return start


@require_GET
@login_required
@permission_required("oncall.view_oncallrotation", raise_exception=True)
def roster_calendar(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    today = timezone.localdate(now)
    start = _start_date(request, today)
    # One window for every rotation, a day wider each side than any time zone's offset; the
    # exact per-day test is done in memory.
    window_from = datetime.combine(start - timedelta(days=2), time.min, tzinfo=UTC)
    window_to = datetime.combine(start + timedelta(days=DAYS + 2), time.min, tzinfo=UTC)
    overrides = OnCallOverride.objects.select_related("user__person").order_by("starts_at", "pk")
    rotations = (
        OnCallRotation.objects.filter(active=True)
        .select_related("role")
        .prefetch_related(
            Prefetch(
                "members",
                queryset=RotationMember.objects.select_related("user__person").order_by("position"),
                to_attr="member_list",
            ),
            Prefetch(
                "overrides",
                queryset=overrides.filter(starts_at__lt=window_to, ends_at__gt=window_from),
                to_attr="window_overrides",
            ),
            Prefetch(
                "overrides",
                # In effect now, or starting before the longest shift (a week) is over.
                queryset=overrides.filter(ends_at__gt=now, starts_at__lt=now + timedelta(days=8)),
                to_attr="current_overrides",
            ),
        )
        .order_by("name")
    )
    calendars = [rotation_calendar(r, start=start, now=now) for r in rotations]
    contacts = RoleContact.objects.select_related("role", "primary__person", "deputy__person").order_by("role__name")
    return render(
        request,
        "oncall/roster.html",
        {
            "calendars": calendars,
            "contacts": contacts,
            "start": start,
            "end": start + timedelta(days=DAYS - 1),
            "today": today,
            "previous_start": start - timedelta(days=DAYS),
            "next_start": start + timedelta(days=DAYS),
            "now": now,
        },
    )
