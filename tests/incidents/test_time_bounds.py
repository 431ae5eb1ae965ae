"""Bounds on every date and time people and clients write (incidents/validators.py): the same
rule on the web and in the API, at create and at update, a field-level error, nothing written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from incidents.api.models import AlertEvent, AlertIntegration
from incidents.api.services.api_tokens import alert_integration_issue_token
from incidents.escalation.models import StatusUpdate
from incidents.models import Incident, TimelineEntry
from incidents.validators import PLANNING_HORIZON
from reports.models import ActionItem
from tests.factories import UserFactory, certify, make_roster, open_incident, severity

pytestmark = pytest.mark.django_db

INCIDENTS = "/api/v1/incidents/"
NEW = {"title": "Risk agent slow", "severity": 3, "detection_method": "automated_alert"}


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ago(**delta) -> str:
    return _iso(timezone.now() - timedelta(**delta))


def _ahead(**delta) -> str:
    return _iso(timezone.now() + timedelta(**delta))


def _local(value: datetime) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%dT%H:%M")


# Year 1 and 9999, with offsets that overflow Python's datetime when turned into UTC, the year
# before 1970, and a time just past the clock skew allowed.
TOO_EARLY_OR_LATE = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-23:59",
    "1969-12-31T23:59:59Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-05:00",
]


# -- an incident's start and end -----------------------------------------------------------


@pytest.mark.parametrize(
    ("started_at", "accepted"),
    [
        *((value, False) for value in TOO_EARLY_OR_LATE),
        ("1970-01-01T00:00:00Z", True),  # the earliest
        ("now+4min", True),  # a client's clock a little ahead
        ("now+6min", False),  # past the clock skew allowed
    ],
)
def test_api_create_takes_a_start_time_only_from_1970_to_now(manager, started_at, accepted):
    certify(manager)
    if started_at.startswith("now+"):
        started_at = _ahead(minutes=int(started_at[4:-3]))
    answer = _api(manager).post(INCIDENTS, {**NEW, "started_at": started_at}, format="json")
    assert answer.status_code == (201 if accepted else 400), answer.content
    if not accepted:
        assert list(answer.json()) == ["started_at"]
        assert Incident.objects.count() == 0 and TimelineEntry.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"started_at": "0001-01-01T00:00:00Z"}, "started_at", "before 1970"),
        ({"ended_at": "9999-12-31T23:59:59Z"}, "ended_at", "in the future"),
        ({"ended_at": "now+1h"}, "ended_at", "in the future"),
        ({"ended_at": "2001-01-01T00:00:00Z"}, "ended_at", "before the start time"),
    ],
)
def test_api_update_refuses_a_start_or_end_out_of_bounds_and_writes_nothing(manager, change, field, words):
    incident = open_incident(level=3, reported_by=manager)
    before = (incident.timeline.count(), incident.started_at)
    if change.get("ended_at") == "now+1h":
        change = {"ended_at": _ahead(hours=1)}
    answer = _api(manager).patch(f"{INCIDENTS}{incident.reference}/", {**change, "title": "Renamed"}, format="json")
    assert answer.status_code == 400, answer.content
    assert words in answer.json()[field][0]
    incident.refresh_from_db()
    assert (incident.timeline.count(), incident.started_at) == before
    assert incident.title != "Renamed" and incident.ended_at is None


def test_api_update_takes_an_end_at_the_start_and_now(manager):
    incident = open_incident(level=3, reported_by=manager, started_at=timezone.now() - timedelta(hours=2))
    for ended_at in (_iso(incident.started_at), _ago(seconds=1)):
        answer = _api(manager).patch(f"{INCIDENTS}{incident.reference}/", {"ended_at": ended_at}, format="json")
        assert answer.status_code == 200, answer.content


def _create_form(**overrides) -> dict:
    return {
        "title": "Circuit breaker not tripping",
        "severity": severity(3).pk,
        "category": "operational",
        "detection_method": "automated_alert",
        "financial_impact_usd": "",
        "user_impact": "",
        "description": "",
        "started_at": "",
        **overrides,
    }


@pytest.mark.parametrize(
    ("started_at", "words"),
    [("0001-01-01T00:00", "before 1970"), ("1969-12-31T23:59", "before 1970"), ("9999-12-31T23:59", "in the future")],
)
def test_log_form_refuses_a_start_time_out_of_bounds(engineer_client, started_at, words):
    response = engineer_client.post(reverse("incidents:create"), _create_form(started_at=started_at))
    assert response.status_code == 400
    assert words in " ".join(response.context["form"].errors["started_at"])
    assert Incident.objects.count() == 0


def _edit_form(incident: Incident, **overrides) -> dict:
    return {
        "title": incident.title,
        "severity": incident.severity_id,
        "category": incident.category,
        "detection_method": incident.detection_method,
        "started_at": _local(incident.started_at),
        **overrides,
    }


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"started_at": "0001-01-01T00:00"}, "started_at", "before 1970"),
        ({"ended_at": "9999-12-31T23:59"}, "ended_at", "in the future"),
    ],
)
def test_edit_form_refuses_a_start_or_end_out_of_bounds(engineer_client, engineer, change, field, words):
    incident = open_incident(reported_by=engineer)
    response = engineer_client.post(
        reverse("incidents:edit", args=[incident.reference]), _edit_form(incident, **change)
    )
    assert response.status_code == 400
    assert words in " ".join(response.context["form"].errors[field])
    before = incident.started_at
    incident.refresh_from_db()
    assert incident.ended_at is None and incident.started_at == before


def test_the_service_refuses_what_a_form_or_serializer_did_not_check(manager):
    # Every caller (the admin, a task, a script) gets the same rule from the service.
    from django.core.exceptions import ValidationError

    from incidents import services

    with pytest.raises(ValidationError) as caught:
        open_incident(reported_by=manager, started_at=datetime(1, 1, 1, tzinfo=UTC))
    assert "started_at" in caught.value.message_dict
    incident = open_incident(reported_by=manager)
    with pytest.raises(ValidationError) as caught:
        services.incident_update(incident=incident, user=manager, ended_at=datetime(9999, 12, 31, tzinfo=UTC))
    assert "ended_at" in caught.value.message_dict


# -- timeline notes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("occurred_at", "words"),
    [
        ("0001-01-01T00:00:00Z", "before 1970"),
        ("9999-12-31T23:59:59Z", "in the future"),
        ("before-start", "before the incident began"),
    ],
)
def test_api_note_time_is_bounded_by_the_incident_start_and_now(manager, occurred_at, words):
    incident = open_incident(level=3, reported_by=manager, started_at=timezone.now() - timedelta(hours=2))
    if occurred_at == "before-start":
        occurred_at = _iso(incident.started_at - timedelta(minutes=1))
    before = incident.timeline.count()
    answer = _api(manager).post(
        f"{INCIDENTS}{incident.reference}/timeline/", {"text": "Restarted", "occurred_at": occurred_at}, format="json"
    )
    assert answer.status_code == 400, answer.content
    assert words in answer.json()["occurred_at"][0]
    assert incident.timeline.count() == before
    at_start = _api(manager).post(
        f"{INCIDENTS}{incident.reference}/timeline/",
        {"text": "It began", "occurred_at": _iso(incident.started_at)},
        format="json",
    )
    assert at_start.status_code == 201, at_start.content


def test_note_form_refuses_a_time_before_the_incident_began(engineer_client, engineer):
    incident = open_incident(reported_by=engineer, started_at=timezone.now() - timedelta(hours=2))
    before = incident.timeline.count()
    url = reverse("incidents:add_note", args=[incident.reference])
    too_early = _local(incident.started_at - timedelta(hours=1))
    response = engineer_client.post(url, {"text": "Deploy went out", "occurred_at": too_early})
    assert response.status_code == 400
    assert "before the incident began" in " ".join(response.context["note_form"].errors["occurred_at"])
    response = engineer_client.post(url, {"text": "Deploy", "occurred_at": "0001-01-01T00:00"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and "before 1970" in response.content.decode()
    assert incident.timeline.count() == before


# -- alerts ------------------------------------------------------------------------------------


def _alert(**times) -> dict:
    alert = {"status": "firing", "labels": {"alertname": "AgentDown"}, "fingerprint": "fp-1", **times}
    return {"version": "4", "status": "firing", "alerts": [alert]}


@pytest.mark.parametrize(
    ("times", "accepted"),
    [
        ({"startsAt": "9999-12-31T23:59:59Z"}, False),
        ({"startsAt": "9999-12-31T23:59:59-05:00"}, False),  # overflowed into "unset"
        ({"endsAt": "3000-01-01T00:00:00Z"}, False),
        ({"endsAt": "soon"}, True),  # a firing alert's end minutes ahead
        ({"startsAt": "0001-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00+05:00"}, True),  # the zero time
    ],
)
def test_alert_times_over_a_year_ahead_are_refused_with_the_field_named(times, accepted):
    reporter = UserFactory(username="monitoring", is_active=False)
    integration = AlertIntegration(name="Prometheus", kind=AlertIntegration.Kind.ALERTMANAGER, reporter=reporter)
    token = alert_integration_issue_token(integration=integration)
    if times.get("endsAt") == "soon":
        times = {"endsAt": _ahead(minutes=5)}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    answer = client.post("/api/v1/alerts/", json.dumps(_alert(**times)), content_type="application/json")
    assert answer.status_code == (202 if accepted else 400), answer.content
    if not accepted:
        (field,) = times
        assert "a year ahead" in answer.json()["alerts"]["0"][field][0]
        assert not AlertEvent.objects.exists() and not Incident.objects.exists()


# -- planned: action items, the next status update, drills -----------------------------------


def _due(days: int) -> str:
    return (timezone.localdate() + timedelta(days=days)).isoformat()


@pytest.mark.parametrize(
    ("due_date", "accepted"),
    [
        ("9999-12-31", False),
        ("0001-01-01", False),
        (_due(-1), False),
        (_due(0), True),
        (_due(PLANNING_HORIZON.days), True),
        (_due(PLANNING_HORIZON.days + 1), False),
    ],
)
def test_api_action_item_due_dates_run_from_today_to_the_planning_horizon(due_date, accepted):
    team = make_roster()
    client = _api(team["im"])
    body = {"title": "Alert on lag", "kind": "monitoring", "owner": "oncall1", "due_date": due_date}
    answer = client.post("/api/v1/action-items/", body, format="json")
    assert answer.status_code == (201 if accepted else 400), answer.content
    if not accepted:
        assert list(answer.json()) == ["due_date"]
        assert not ActionItem.objects.exists()
        item = client.post("/api/v1/action-items/", {**body, "due_date": _due(7)}, format="json").json()
        moved = client.post(f"/api/v1/action-items/{item['id']}/reschedule/", {"due_date": due_date}, format="json")
        assert moved.status_code == 400 and list(moved.json()) == ["due_date"]
        assert ActionItem.objects.get().due_date.isoformat() == _due(7)


def test_action_item_form_refuses_a_due_date_years_ahead(manager_client, manager):
    incident = open_incident(reported_by=manager)
    response = manager_client.post(
        reverse("reports:action_item_add", args=[incident.reference]),
        {"title": "Alert on lag", "kind": "monitoring", "owner": manager.pk, "due_date": "9999-12-31"},
    )
    assert response.status_code == 400
    assert "years ahead" in response.content.decode()
    assert not ActionItem.objects.exists()


@pytest.mark.parametrize("next_update_at", ["9999-12-31T23:59:59Z", "2999-01-01T00:00:00Z", "0001-01-01T00:00:00Z"])
def test_next_status_update_out_of_bounds_is_refused_in_the_api_and_the_composer(
    manager, manager_client, next_update_at
):
    incident = open_incident(reported_by=manager)
    answer = _api(manager).post(
        f"{INCIDENTS}{incident.reference}/status-updates/",
        {"details": "Feed restored", "next_update_at": next_update_at},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == ["next_update_at"]
    form = {
        "subject": "Update",
        "status": "Investigating",
        "impact": "None",
        "details": "Feed restored",
        "contact": "desk",
        "next_update_at": next_update_at[:16],
    }
    response = manager_client.post(reverse("incidents:status_update", args=[incident.reference]), form)
    assert response.status_code == 400 and "next_update_at" in response.context["form"].errors
    assert not StatusUpdate.objects.exists()


def test_a_drill_planned_past_the_horizon_is_refused(trainer):
    answer = _api(trainer).post(
        "/api/v1/drills/",
        {
            "kind": "disaster-recovery",
            "scheduled_start": _iso(timezone.now() + PLANNING_HORIZON + timedelta(days=1)),
            "facilitator": trainer.username,
        },
        format="json",
    )
    assert answer.status_code == 400 and "years ahead" in answer.json()["scheduled_start"][0]


@pytest.mark.parametrize("query", ["end=9999-12", "start=0001-01&end=0001-02", "start=1969-12"])
def test_metrics_months_outside_the_searchable_years_are_a_field_error(manager_client, query):
    # Year 1 or 9999 overflowed the month arithmetic: a 500.
    for url in ("/reports/metrics/", "/reports/metrics.csv"):
        response = manager_client.get(f"{url}?{query}")
        assert response.status_code == 400, url
    assert "between 1970 and 2200" in manager_client.get(f"/reports/metrics/?{query}").content.decode()


def test_a_certification_issued_in_year_9999_is_a_field_error_not_a_500(trainer):
    make_roster()
    answer = _api(trainer).post(
        "/api/v1/certifications/",
        {"person": "oncall1", "kind": "annual-certification", "issued_on": "9999-12-31", "issued_by": trainer.username},
        format="json",
    )
    assert answer.status_code == 400 and list(answer.json()) == ["issued_on"]
    typo = _api(trainer).post(
        "/api/v1/certifications/",
        {
            "person": "oncall1",
            "kind": "annual-certification",
            "issued_on": timezone.localdate().isoformat(),
            "expires_on": "2207-01-01",
            "issued_by": trainer.username,
        },
        format="json",
    )
    assert typo.status_code == 400 and "years ahead" in typo.json()["expires_on"][0]
