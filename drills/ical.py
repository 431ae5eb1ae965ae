"""iCalendar (RFC 5545) feeds of drills, built with the icalendar package.

Each drill is one VEVENT whose UID never changes and whose SEQUENCE goes up with every change,
so a calendar app updates the event in place when a drill is rescheduled, and shows it as
cancelled (STATUS:CANCELLED) instead of silently dropping it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone
from icalendar import Alarm, Calendar, Event, vCalAddress, vText

from .models import Drill, DrillState

PRODID = "-//TMT//Incident Response Portal drills//EN"
UID_DOMAIN = "drills.tmt-ir"


def _status(drill: Drill) -> str:
    return {
        DrillState.CANCELLED: "CANCELLED",
        DrillState.PLANNED: "CONFIRMED",
        DrillState.IN_PROGRESS: "CONFIRMED",
        DrillState.COMPLETED: "CONFIRMED",
    }[DrillState(drill.state)]


# A calendar shows an event that ends when it starts as a point, or not at all.
SHORTEST_EVENT = timedelta(minutes=1)


def _times(drill: Drill) -> tuple[datetime, datetime]:
    """When the drill happens, as far as anyone knows: the planned times until it starts, then
    the actual start, and once completed the actual end, so calendars keep when the team really
    exercised rather than when it meant to (a cancelled one keeps its times, STATUS:CANCELLED)."""
    start = drill.started_at or drill.scheduled_start
    if drill.state == DrillState.COMPLETED and drill.completed_at is not None:
        end = drill.completed_at
    else:
        end = start + drill.duration
    return start, max(end, start + SHORTEST_EVENT)


def _address(user) -> vCalAddress | None:
    if not user.email:
        return None
    address = vCalAddress(f"mailto:{user.email}")
    address.params["cn"] = vText(user.get_full_name() or user.get_username())
    return address


def drill_event(drill: Drill, *, stamp: datetime, reminder_hours: Iterable[int] = ()) -> Event:
    """Needs `kind`, `facilitator` and `participants__user` loaded."""
    event = Event()
    event.add("uid", f"drill-{drill.pk}@{UID_DOMAIN}")
    event.add("dtstamp", stamp)
    event.add("sequence", drill.calendar_sequence)
    start, end = _times(drill)
    event.add("dtstart", start.astimezone(UTC))
    event.add("dtend", end.astimezone(UTC))
    prefix = "CANCELLED: " if drill.state == DrillState.CANCELLED else ""
    event.add("summary", f"{prefix}[DRILL] {drill.title}")
    event.add("categories", [drill.kind.get_cadence_display(), drill.kind.name])
    event.add("status", _status(drill))
    url = settings.TMT_SITE_URL.rstrip("/") + drill.get_absolute_url()
    event.add("url", url)
    lines = [f"{drill.kind.name} ({drill.kind.get_cadence_display().lower()}) {drill.reference}", ""]
    lines += ["Scenario:", drill.scenario, "", "Objectives:", *(f"- {o}" for o in drill.objective_list)]
    if drill.state == DrillState.CANCELLED and drill.cancel_reason:
        lines += ["", f"Cancelled: {drill.cancel_reason}"]
    if drill.state == DrillState.COMPLETED:
        planned = timezone.localtime(drill.scheduled_start)
        lines += ["", f"Completed: {drill.get_result_display()} (planned for {planned:%d %b %Y %H:%M %Z})."]
    lines += ["", url]
    event.add("description", "\n".join(lines))
    organizer = _address(drill.facilitator)
    if organizer is not None:
        event.add("organizer", organizer)
    for participant in drill.participants.all():
        attendee = _address(participant.user)
        if attendee is not None:
            attendee.params["role"] = vText("REQ-PARTICIPANT")
            event.add("attendee", attendee, encode=0)
    if drill.state == DrillState.PLANNED:
        for hours in reminder_hours:
            alarm = Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", f"Drill: {drill.title}")
            alarm.add("trigger", -timedelta(hours=hours))
            event.add_component(alarm)
    return event


def drills_calendar(drills: Iterable[Drill], *, name: str, reminder_hours: Iterable[int] = ()) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", name)
    calendar.add("x-wr-timezone", "UTC")
    # Calendar apps poll feeds; ask for an hourly refresh so a rescheduled drill shows up soon.
    calendar.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", "PT1H")
    stamp = timezone.now().astimezone(UTC).replace(microsecond=0)
    hours = list(reminder_hours)
    for drill in drills:
        calendar.add_component(drill_event(drill, stamp=stamp, reminder_hours=hours))
    return calendar.to_ical()
