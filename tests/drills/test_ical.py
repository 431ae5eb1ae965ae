"""The iCal feeds: one per person and one for the programme, parsed back with icalendar."""

from __future__ import annotations

import hashlib
from datetime import UTC, timedelta

import pytest
from django.db import connection
from icalendar import Calendar

from drills import services
from drills.models import CalendarFeedToken

from .conftest import schedule

pytestmark = pytest.mark.django_db


def _events(body: bytes) -> dict[str, object]:
    calendar = Calendar.from_ical(body)
    return {str(event["UID"]): event for event in calendar.walk("VEVENT")}


def test_a_persons_feed_parses_back_with_their_drills(client, trainer_user, team):
    mine = schedule(trainer_user, key="disaster-recovery", participants=[team["oncall2"], team["oncall3"]], days=20)
    not_mine = schedule(trainer_user, key="communication-test", participants=[team["oncall3"]], days=21)
    client.force_login(team["oncall2"])

    response = client.get("/drills/calendar/mine.ics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    calendar = Calendar.from_ical(response.content)
    assert str(calendar["VERSION"]) == "2.0" and "TMT" in str(calendar["PRODID"])
    events = _events(response.content)
    assert list(events) == [f"drill-{mine.pk}@drills.tmt-ir"]
    event = events[f"drill-{mine.pk}@drills.tmt-ir"]
    assert event.decoded("DTSTART") == mine.scheduled_start.astimezone(UTC).replace(microsecond=0)
    assert event.decoded("DTEND") - event.decoded("DTSTART") == timedelta(hours=4)
    assert str(event["SUMMARY"]) == f"[DRILL] {mine.title}"
    assert str(event["STATUS"]) == "CONFIRMED" and int(event["SEQUENCE"]) == 0
    assert "Scenario:" in str(event["DESCRIPTION"]) and f"/drills/{mine.pk}/" in str(event["URL"])
    attendees = sorted(str(a) for a in event.get("ATTENDEE"))
    assert attendees == sorted(f"mailto:{u.email}" for u in (team["oncall2"], team["oncall3"]))
    assert str(event["ORGANIZER"]) == f"mailto:{trainer_user.email}"
    alarms = [c for c in event.subcomponents if c.name == "VALARM"]
    assert sorted(a.decoded("TRIGGER") for a in alarms) == [-timedelta(days=7), -timedelta(days=1)]
    assert f"drill-{not_mine.pk}@drills.tmt-ir" not in events


def test_the_programme_feed_shows_changes_as_updates_and_cancellations(client, trainer_user, team):
    drill = schedule(trainer_user, participants=[team["oncall2"]], days=15)
    other = schedule(trainer_user, key="role-playing", days=16)
    new_start = drill.scheduled_start + timedelta(days=1)
    services.drill_update(drill=drill, user=trainer_user, scheduled_start=new_start)
    services.drill_cancel(drill=other, user=trainer_user, reason="Clashes with the quarter-end close")
    client.force_login(team["oncall1"])

    events = _events(client.get("/drills/calendar/programme.ics").content)
    moved = events[f"drill-{drill.pk}@drills.tmt-ir"]
    assert int(moved["SEQUENCE"]) == 1
    assert moved.decoded("DTSTART") == new_start.astimezone(UTC).replace(microsecond=0)
    cancelled = events[f"drill-{other.pk}@drills.tmt-ir"]
    assert str(cancelled["STATUS"]) == "CANCELLED" and str(cancelled["SUMMARY"]).startswith("CANCELLED: ")
    assert "quarter-end close" in str(cancelled["DESCRIPTION"])


def test_a_calendar_app_reads_the_feed_by_its_secret_url_without_logging_in(client, trainer_user, team):
    drill = schedule(trainer_user, participants=[team["oncall2"]], days=9)
    _, token = services.calendar_token_issue(user=team["oncall2"])

    response = client.get(f"/drills/calendar/feed/{token}/mine.ics")
    assert response.status_code == 200
    assert list(_events(response.content)) == [f"drill-{drill.pk}@drills.tmt-ir"]
    assert client.get(f"/drills/calendar/feed/{token}/programme.ics").status_code == 200
    assert client.get("/drills/calendar/feed/not-a-token/mine.ics").status_code == 404
    # One character off, or the token with more after it, is no token.
    assert client.get(f"/drills/calendar/feed/{token[:-1]}/mine.ics").status_code == 404
    assert client.get(f"/drills/calendar/feed/{token}x/mine.ics").status_code == 404
    assert client.get(f"/drills/calendar/feed/{token + 'x' * 30}/mine.ics").status_code == 404

    # A new link replaces the old one.
    _, new = services.calendar_token_issue(user=team["oncall2"])
    assert new != token
    assert client.get(f"/drills/calendar/feed/{token}/mine.ics").status_code == 404
    assert client.get(f"/drills/calendar/feed/{new}/mine.ics").status_code == 200
    # A disabled account's feed stops.
    team["oncall2"].is_active = False
    team["oncall2"].save()
    assert client.get(f"/drills/calendar/feed/{new}/mine.ics").status_code == 404


def test_only_the_feed_tokens_hash_and_prefix_are_stored(team):
    row, token = services.calendar_token_issue(user=team["oncall2"])

    row.refresh_from_db()
    assert row.key_hash == hashlib.sha256(token.encode()).hexdigest() and row.prefix == token[:8]
    stored = CalendarFeedToken.objects.filter(pk=row.pk).values().get()
    assert token not in [str(value) for value in stored.values()]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM drills_calendarfeedtoken")
        assert not [value for row in cursor.fetchall() for value in row if token in str(value)]


def test_the_admin_lists_feed_tokens_by_prefix_and_never_shows_the_secret(admin_client, team):
    row, token = services.calendar_token_issue(user=team["oncall2"])

    listing = admin_client.get("/admin/drills/calendarfeedtoken/")
    assert listing.status_code == 200 and f"{token[:8]}…" in listing.content.decode()
    change = admin_client.get(f"/admin/drills/calendarfeedtoken/{row.pk}/change/")
    assert change.status_code == 200
    for page in (listing, change):
        assert token not in page.content.decode() and row.key_hash not in page.content.decode()
    # Nobody makes a feed token in the admin (its URL could be shown to no one); deleting one
    # stops a leaked feed.
    assert admin_client.get("/admin/drills/calendarfeedtoken/add/").status_code == 403
    admin_client.post(f"/admin/drills/calendarfeedtoken/{row.pk}/delete/", {"post": "yes"})
    assert not CalendarFeedToken.objects.filter(pk=row.pk).exists()


def test_the_session_feeds_need_a_login(client):
    response = client.get("/drills/calendar/mine.ics")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def _programme(client, user) -> dict[str, object]:
    client.force_login(user)
    return _events(client.get("/drills/calendar/programme.ics").content)


def test_a_completed_drill_shows_when_it_really_ran_with_a_new_sequence(client, trainer_user, team):
    drill = schedule(trainer_user, key="role-playing", participants=[team["oncall2"]], days=0.05)
    uid = f"drill-{drill.pk}@drills.tmt-ir"
    planned = _programme(client, team["oncall2"])[uid]
    assert planned.decoded("DTSTART") == drill.scheduled_start.astimezone(UTC).replace(microsecond=0)
    seen = int(planned["SEQUENCE"])

    # Started early (the team was free), completed 40 minutes later: the planned hour is history.
    started = services.drill_start(drill=drill, user=trainer_user)
    ended_at = started.started_at + timedelta(minutes=40)
    services.drill_complete(drill=drill, user=trainer_user, result="met", now=ended_at)
    event = _programme(client, team["oncall2"])[uid]
    assert event.decoded("DTSTART") == started.started_at.astimezone(UTC).replace(microsecond=0)
    assert event.decoded("DTEND") == ended_at.astimezone(UTC).replace(microsecond=0)
    assert event.decoded("DTSTART") != planned.decoded("DTSTART")
    assert str(event["STATUS"]) == "CONFIRMED" and int(event["SEQUENCE"]) > seen
    assert "Completed: All objectives met" in str(event["DESCRIPTION"])
    assert not [c for c in event.subcomponents if c.name == "VALARM"]


def test_a_drill_completed_at_once_still_lasts_a_minute_in_calendars(client, trainer_user, team):
    drill = schedule(trainer_user, participants=[team["oncall2"]], days=1)
    started = services.drill_start(drill=drill, user=trainer_user)
    services.drill_complete(drill=drill, user=trainer_user, result="not_met", now=started.started_at)
    event = _programme(client, team["oncall2"])[f"drill-{drill.pk}@drills.tmt-ir"]
    assert event.decoded("DTEND") - event.decoded("DTSTART") == timedelta(minutes=1)


def test_a_running_drill_shows_its_real_start_and_once_cancelled_is_cancelled_in_calendars(client, trainer_user, team):
    drill = schedule(trainer_user, participants=[team["oncall2"]], days=3)
    uid = f"drill-{drill.pk}@drills.tmt-ir"
    seen = int(_programme(client, team["oncall2"])[uid]["SEQUENCE"])
    started = services.drill_start(drill=drill, user=trainer_user)  # three days before its planned time
    running = _programme(client, team["oncall2"])[uid]
    assert str(running["STATUS"]) == "CONFIRMED" and int(running["SEQUENCE"]) > seen
    assert running.decoded("DTSTART") == started.started_at.astimezone(UTC).replace(microsecond=0)
    services.drill_cancel(drill=drill, user=trainer_user, reason="Real incident under way")
    event = _programme(client, team["oncall2"])[uid]
    assert str(event["STATUS"]) == "CANCELLED" and int(event["SEQUENCE"]) > int(running["SEQUENCE"])
    assert "Real incident under way" in str(event["DESCRIPTION"])
