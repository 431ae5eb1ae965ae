"""Metrics: MTTA/MTTR by severity and month, SLA compliance, RTO breaches, detection methods, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents import services
from incidents.models import System
from reports import selectors
from tests.factories import open_incident, tick_initial_assessment

pytestmark = pytest.mark.django_db


def _month(offset: int) -> datetime:
    first = timezone.now().astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return datetime(first.year + (first.month - 1 + offset) // 12, (first.month - 1 + offset) % 12 + 1, 1, tzinfo=UTC)


def worked(user, *, level, detected, ack_min=None, resolve_min=None, systems=(), method="automated_alert", drill=False):
    incident = open_incident(
        reported_by=user, level=level, systems=systems, detection_method=method, is_drill=drill, detected_at=detected
    )
    if ack_min is None:
        return incident
    services.incident_transition(
        incident=incident, name="acknowledge", user=user, at=detected + timedelta(minutes=ack_min)
    )
    if resolve_min is None:
        return incident
    at = detected + timedelta(minutes=resolve_min)
    services.incident_transition(incident=incident, name="start_investigation", user=user, at=at)
    tick_initial_assessment(incident, user)
    services.incident_transition(incident=incident, name="contain", user=user, at=at)
    incident = services.incident_update(incident=incident, user=user, resolution_actions="Fixed")
    services.incident_transition(incident=incident, name="resolve", user=user, at=at)
    return incident


@pytest.fixture
def history(engineer):
    m2, m1 = _month(-2), _month(-1)
    worked(
        engineer,
        level=2,
        detected=m2 + timedelta(days=9, hours=10),
        ack_min=5,
        resolve_min=60,
        systems=("market_analysis",),
    )
    worked(
        engineer,
        level=2,
        detected=m2 + timedelta(days=11),
        ack_min=30,
        resolve_min=25,
        systems=("market_analysis",),
        method="user_report",
    )
    worked(
        engineer,
        level=1,
        detected=m1 + timedelta(days=4),
        ack_min=3,
        resolve_min=120,
        systems=("circuit_breaker",),
        method="health_check",
    )
    worked(engineer, level=3, detected=m1 + timedelta(days=6), method="external_notification")  # never acknowledged
    # A drill that would change every figure if it counted.
    worked(
        engineer,
        level=1,
        detected=m1 + timedelta(days=7),
        ack_min=90,
        resolve_min=900,
        systems=("circuit_breaker", "market_analysis"),
    )
    from incidents.models import Incident

    Incident.objects.filter(detected_at=m1 + timedelta(days=7)).update(is_drill=True)
    return selectors.Period(start=m2.date(), end=_month(0).date())


def test_mtta_and_mttr_by_severity_and_month_exclude_drills(history):
    rows = {(r["month"], r["level"]): r for r in selectors.mttx_by_month(history)}
    m2, m1 = _month(-2).date(), _month(-1).date()
    assert (rows[(m2, 2)]["incidents"], rows[(m2, 2)]["mtta_min"], rows[(m2, 2)]["mttr_min"]) == (2, 17.5, 42.5)
    assert (rows[(m1, 1)]["incidents"], rows[(m1, 1)]["mtta_min"], rows[(m1, 1)]["mttr_min"]) == (1, 3.0, 120.0)
    assert (rows[(m1, 3)]["incidents"], rows[(m1, 3)]["mtta_min"], rows[(m1, 3)]["mttr_min"]) == (1, None, None)
    assert len(rows) == 3
    by_level = {r["severity"].level: r for r in selectors.mttx_by_severity(history)}
    assert by_level[1]["incidents"] == 1 and by_level[4]["incidents"] == 0


def test_response_time_sla_compliance(history):
    sla = {r["severity"].level: r for r in selectors.sla_compliance(history)}
    assert (sla[1]["met"], sla[1]["missed"], sla[1]["compliance_pct"]) == (1, 0, 100.0)
    assert (sla[2]["met"], sla[2]["missed"], sla[2]["compliance_pct"]) == (1, 1, 50.0)
    assert (sla[3]["met"], sla[3]["missed"]) == (0, 1)  # never acknowledged, long past its hour
    assert sla[4]["compliance_pct"] is None


def test_rto_breaches_by_system(history):
    rto = {r["system"].key: r for r in selectors.rto_breaches(history)}
    assert (rto["market_analysis"]["incidents"], rto["market_analysis"]["breaches"]) == (2, 1)
    assert rto["market_analysis"]["worst"] == timedelta(minutes=60)
    assert (rto["circuit_breaker"]["incidents"], rto["circuit_breaker"]["breaches"]) == (1, 1)
    assert rto["dashboard"]["incidents"] == 0


def test_incidents_by_detection_method(history):
    counts = {r["method"]: r["incidents"] for r in selectors.by_detection_method(history)}
    assert counts == {"automated_alert": 1, "user_report": 1, "health_check": 1, "external_notification": 1}


def test_the_page_shows_the_figures_charts_from_static_files_and_the_drill_count(manager_client, history):
    query = f"?start={history.start:%Y-%m}&end={_month(-1):%Y-%m}"
    response = manager_client.get(reverse("reports:metrics") + query)
    page = response.content.decode()
    assert response.status_code == 200
    assert "/static/vendor/chartjs/chart.umd.min.js" in page and 'id="metrics-data"' in page
    assert "1 in this period" in page  # the drill, excluded
    assert "17.5" in page and "42.5" in page and "50.0%" in page
    assert "https://" not in page.split('id="metrics-data"')[1]  # nothing loaded from elsewhere


def test_csv_export(manager_client, history):
    System.objects.filter(key="dashboard").update(name='=HYPERLINK("http://x")')
    base = reverse("reports:metrics_csv") + f"?start={history.start:%Y-%m}&end={_month(-1):%Y-%m}"
    response = manager_client.get(base + "&table=mttx")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment;" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["month", "severity", "incidents", "acknowledged", "resolved", "mtta_minutes", "mttr_minutes"]
    assert [f"{_month(-2):%Y-%m}", "2", "2", "2", "2", "17.5", "42.5"] in rows
    rto = list(csv.reader(io.StringIO(manager_client.get(base + "&table=rto").content.decode())))
    assert ["Market Analysis Agent", "30.0", "2", "1", "60.0"] in rto
    assert any(row[0] == '\'=HYPERLINK("http://x")' for row in rto)  # no formula in a spreadsheet
    sla = list(csv.reader(io.StringIO(manager_client.get(base + "&table=sla").content.decode())))
    assert ["2", "15 min", "1", "1", "50.0"] in sla
    detection = manager_client.get(base + "&table=detection").content.decode()
    assert "Automated alert (monitoring),1" in detection


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?start=2026-13", "Enter a valid date."),
        ("?start=yesterday", "Enter a valid date."),
        ("?start=2026-05&end=2026-01", "The last month is before the first."),
        ("?start=2000-01&end=2026-01", "Choose at most 60 months."),
    ],
)
def test_bad_periods_give_field_errors_not_500s(manager_client, query, message):
    response = manager_client.get(reverse("reports:metrics") + query)
    assert response.status_code == 400 and message in response.content.decode()
    response = manager_client.get(reverse("reports:metrics_csv") + query)
    assert response.status_code == 400 and message in response.content.decode()


def test_an_unknown_csv_table_is_a_400(manager_client):
    response = manager_client.get(reverse("reports:metrics_csv") + "?table=passwords")
    assert response.status_code == 400 and "Choose one of: mttx, sla, rto, detection." in response.content.decode()


def test_the_metrics_page_runs_a_constant_number_of_queries(manager_client, engineer):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert manager_client.get(reverse("reports:metrics")).status_code == 200
        return len(ctx.captured_queries)

    now = timezone.now()
    worked(engineer, level=2, detected=now - timedelta(days=3), ack_min=5, resolve_min=30, systems=("database",))
    few = queries()
    for n in range(8):
        worked(
            engineer,
            level=1 + n % 4,
            detected=now - timedelta(days=40 + n),
            ack_min=2,
            resolve_min=50,
            systems=("dashboard", "database"),
        )
    assert queries() == few <= 20


def test_next_business_day_matches_the_incidents_calendar(db):
    from incidents.business_days import next_business_day_start
    from incidents.models import BusinessHoliday

    friday = datetime(2026, 12, 24, 16, 0, tzinfo=UTC)
    BusinessHoliday.objects.create(date=datetime(2026, 12, 28).date(), name="Bank holiday")
    holidays = set(BusinessHoliday.objects.values_list("date", flat=True))
    assert selectors._next_business_day_start(friday, holidays) == next_business_day_start(friday)
