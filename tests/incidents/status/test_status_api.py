"""The status page's API: publish, update, resolve and maintenance, by the same roles as the
publishing pages; bad input is a JSON field error and nothing is published."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from incidents.notifications.models import Notification
from incidents.status.models import Maintenance, PublicIncident, PublicUpdate, Subscriber
from tests.factories import open_incident

INCIDENTS = "/api/v1/status/incidents/"
MAINTENANCE = "/api/v1/status/maintenance/"


@pytest.fixture
def incident(db, engineer):
    return open_incident(reported_by=engineer, level=2, title="Internal: heap at 98%", systems=("circuit_breaker",))


@pytest.fixture
def subscriber(db):
    now = timezone.now()
    return Subscriber.objects.create(
        kind=Subscriber.Kind.EMAIL, email="c@clients.example", created_at=now, confirmed_at=now
    )


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def body(of, **extra) -> dict:
    return {
        "incident": of.reference,
        "title": "Orders delayed",
        "impact": "partial_outage",
        "status": "investigating",
        "message": "We are looking into delayed orders.",
        **extra,
    }


def test_publish_update_and_resolve_through_the_api(client, incident, engineer, subscriber):
    answer = api(engineer).post(INCIDENTS, body(incident), format="json")
    assert answer.status_code == 201, answer.json()
    public = answer.json()
    assert public["incident"] == incident.reference and public["components"] == ["circuit_breaker"]
    assert [i["title"] for i in client.get("/status.json").json()["incidents"]] == ["Orders delayed"]
    assert Notification.objects.filter(address=subscriber.email).count() == 1

    updated = api(engineer).post(
        f"{INCIDENTS}{public['id']}/updates/", {"status": "identified", "message": "Found it."}
    )
    assert updated.status_code == 200 and updated.json()["status"] == "identified"
    resolved = api(engineer).post(f"{INCIDENTS}{public['id']}/resolve/", {"message": "Orders flow again."})
    assert resolved.status_code == 200 and resolved.json()["resolved_at"] is not None
    assert [u["status"] for u in resolved.json()["updates"]] == ["resolved", "identified", "investigating"]
    shown = client.get("/status.json").json()
    assert shown["incidents"] == [] and [i["title"] for i in shown["history"]] == ["Orders delayed"]
    assert Notification.objects.filter(address=subscriber.email).count() == 3
    again = api(engineer).post(f"{INCIDENTS}{public['id']}/resolve/", {"message": "Twice"})
    assert again.status_code == 400 and "resolved" in str(again.json())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"components": ["no-such-system"]}, "components"),
        ({"incident": "TMT-INC-1999-01-01-001"}, "incident"),
        ({"status": "resolved"}, "status"),
        ({"impact": "operational"}, "impact"),
        ({"title": ""}, "title"),
        ({"message": "x", "internal_note": "leak"}, "internal_note"),
        ({"incident": "TMT-INC\x00"}, "incident"),
        ({"components": ["circuit_breaker\x00"]}, "components"),
    ],
)
def test_bad_input_is_a_json_field_error_and_nothing_is_published(
    client, incident, engineer, subscriber, change, field
):
    answer = api(engineer).post(INCIDENTS, body(incident, **change), format="json")
    assert answer.status_code == 400 and answer["Content-Type"].startswith("application/json")
    assert field in answer.json(), answer.json()
    assert not PublicIncident.objects.exists() and not Notification.objects.exists()
    assert client.get("/status.json").json()["incidents"] == []


def test_publishing_twice_is_refused(incident, engineer):
    assert api(engineer).post(INCIDENTS, body(incident), format="json").status_code == 201
    again = api(engineer).post(INCIDENTS, body(incident, title="Another"), format="json")
    assert again.status_code == 400 and "already on the status page" in str(again.json())
    assert PublicIncident.objects.count() == 1 and PublicUpdate.objects.count() == 1


def test_roles_without_the_permission_are_refused_in_json(incident, sysadmin, engineer, manager):
    refused = api(sysadmin).post(INCIDENTS, body(incident), format="json")  # announces maintenance, never publishes
    assert refused.status_code == 403 and refused["Content-Type"].startswith("application/json")
    starts = timezone.now() + timedelta(days=1)
    plan = {"title": "DB upgrade", "message": "Paused", "starts_at": starts, "ends_at": starts + timedelta(hours=1)}
    assert api(engineer).post(MAINTENANCE, plan, format="json").status_code == 403  # publishes, never announces
    assert not PublicIncident.objects.exists() and not Maintenance.objects.exists()
    assert api(sysadmin).post(MAINTENANCE, plan, format="json").status_code == 201
    assert api(manager).post(INCIDENTS, body(incident), format="json").status_code == 201


def test_maintenance_is_scheduled_and_advanced_through_the_api(client, sysadmin, subscriber):
    starts = timezone.now() + timedelta(days=1)
    plan = {
        "title": "DB upgrade",
        "message": "Orders paused for an hour.",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=1)).isoformat(),
        "components": ["circuit_breaker"],
    }
    made = api(sysadmin).post(MAINTENANCE, plan, format="json")
    assert made.status_code == 201 and made.json()["state"] == "scheduled"
    url = f"{MAINTENANCE}{made.json()['id']}/advance/"
    assert [m["title"] for m in client.get("/status.json").json()["maintenance"]] == ["DB upgrade"]
    wrong = api(sysadmin).post(url, {"step": "complete"}, format="json")
    assert wrong.status_code == 400 and "cannot complete" in str(wrong.json())
    assert api(sysadmin).post(url, {"step": "explode"}, format="json").json().keys() == {"step"}
    started = api(sysadmin).post(url, {"step": "start"}, format="json")
    assert started.status_code == 200 and started.json()["state"] == "in_progress"
    done = api(sysadmin).post(url, {"step": "complete", "message": "Back."}, format="json").json()
    assert done["state"] == "completed" and done["notices"][0]["message"] == "Back."
    assert Notification.objects.filter(address=subscriber.email).count() == 3
    assert api(sysadmin).post(f"{MAINTENANCE}999999/advance/", {"step": "start"}, format="json").status_code == 404


@pytest.mark.parametrize(
    ("start_offset", "ok"),
    [(timedelta(days=-1, minutes=1), True), (timedelta(days=-1, minutes=-1), False), (timedelta(days=6 * 366), False)],
)
def test_a_maintenance_start_a_day_back_or_years_ahead_is_refused(sysadmin, start_offset, ok):
    starts = timezone.now() + start_offset
    plan = {
        "title": "T",
        "message": "M",
        "starts_at": starts,
        "ends_at": max(starts, timezone.now()) + timedelta(hours=1),
    }
    answer = api(sysadmin).post(MAINTENANCE, plan, format="json")
    assert answer.status_code == (201 if ok else 400), answer.json()
    assert Maintenance.objects.exists() is ok
