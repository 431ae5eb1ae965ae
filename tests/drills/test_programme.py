"""The programme view: the year by quarter and month, with the seed's cadence gaps flagged."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from django.utils import timezone

from drills import selectors, services
from drills.models import Drill, DrillKind

from .conftest import schedule

pytestmark = pytest.mark.django_db

YEAR = timezone.localdate().year + 1  # wholly in the future: every drill in it can be planned


def at(month: int, day: int = 10, hour: int = 10) -> datetime:
    return datetime(YEAR, month, day, hour, tzinfo=timezone.get_current_timezone())


def test_programme_gaps_are_detected(trainer_user):
    # Fire drills in January, February and April only; in Q1 three of the four exercises,
    # one of them cancelled; Q2 has them all.
    for month, key in [(1, "trading-emergency-stop"), (2, "communication-test"), (4, "role-playing")]:
        schedule(trainer_user, key=key, scheduled_start=at(month))
    schedule(trainer_user, key="disaster-recovery", scheduled_start=at(2, 20))
    schedule(trainer_user, key="security-incident", scheduled_start=at(3, 5))
    cancelled = schedule(trainer_user, key="multi-system-failure", scheduled_start=at(3, 12))
    services.drill_cancel(drill=cancelled, user=trainer_user, reason="Trading floor move")
    for key in ("disaster-recovery", "security-incident", "multi-system-failure", "regulatory-incident"):
        schedule(trainer_user, key=key, scheduled_start=at(5, 15))

    plan = selectors.programme_year(year=YEAR, today=date(YEAR - 1, 12, 1))

    months = {m.month: m for q in plan.quarters for m in q.months}
    assert [n for n, m in months.items() if m.fire_drill_gap] == [3, 5, 6, 7, 8, 9, 10, 11, 12]
    assert not any(m.is_past for m in months.values())
    missing = {q.quarter: [k.key for k in q.missing_kinds] for q in plan.quarters}
    # A cancelled exercise leaves its quarter uncovered.
    assert missing[1] == ["multi-system-failure", "regulatory-incident"]
    assert missing[2] == []
    assert len(missing[3]) == len(missing[4]) == 4
    assert plan.gap_count == 9 + 2 + 4 + 4
    assert cancelled in months[3].drills  # still shown, struck through


def test_past_gaps_read_as_missed_and_a_new_kind_is_expected_every_quarter(trainer_user):
    DrillKind.objects.create(
        key="vendor-outage",
        name="Vendor outage",
        cadence="quarterly",
        default_scenario="The market data vendor is down.",
        default_objectives="Fail over",
    )
    plan = selectors.programme_year(year=YEAR, today=date(YEAR, 8, 1))
    assert all("vendor-outage" in [k.key for k in q.missing_kinds] for q in plan.quarters)
    assert [q.is_past for q in plan.quarters] == [True, True, False, False]
    months = {m.month: m for q in plan.quarters for m in q.months}
    assert months[7].is_past and months[8].is_current and not months[9].is_past


def test_programme_page_flags_gaps_in_a_constant_number_of_queries(
    trainer_client, trainer_user, django_assert_max_num_queries
):
    schedule(trainer_user, key="trading-emergency-stop", scheduled_start=at(1))
    url = f"/drills/?year={YEAR}"
    with django_assert_max_num_queries(12) as few:
        response = trainer_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="month-gap-1"' not in html
    assert 'data-testid="month-gap-2"' in html
    assert "No fire drill scheduled" in html
    assert 'data-testid="quarter-gap-1"' in html
    for month in range(2, 13):
        for key in ("disaster-recovery", "role-playing", "security-incident"):
            schedule(trainer_user, key=key, scheduled_start=at(month, 3))
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert trainer_client.get(url).status_code == 200


def test_programme_year_out_of_range_falls_back_with_a_message(trainer_client):
    response = trainer_client.get("/drills/?year=99999")
    assert response.status_code == 200
    assert response.context["year"] == timezone.localdate().year
    assert "is not a year" in response.content.decode()


def test_cancelled_drill_does_not_fill_a_month(trainer_user):
    drill = schedule(trainer_user, key="communication-test", scheduled_start=at(6))
    services.drill_cancel(drill=drill, user=trainer_user, reason="Clashes with the release")
    plan = selectors.programme_year(year=YEAR, today=date(YEAR - 1, 1, 1))
    june = plan.quarters[1].months[2]
    assert june.month == 6 and june.fire_drill_gap
    assert Drill.objects.get(pk=drill.pk).state == "cancelled"
    assert timedelta(0) < drill.duration
