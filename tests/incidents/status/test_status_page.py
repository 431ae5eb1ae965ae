"""The public status page and its JSON twin: no login, no internal details."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents.escalation import status_updates
from incidents.models import System
from incidents.monitoring.models import HealthTarget, MaintenanceWindow
from tests.factories import UserFactory, open_incident

INTERNAL_TITLE = "Sev1: CB agent OOM-killed on host trd-prod-07 after bad deploy 4f2a"
INTERNAL_DESCRIPTION = "kubectl logs show heap at 98%; Bob's config change"


def post_update(incident, user, *, public: bool, details: str, impact: str = "Orders are rejected"):
    return status_updates.status_update_post(
        incident=incident,
        user=user,
        subject=f"[INCIDENT] TMT System - Sev{incident.severity.level} - {incident.title}",
        status="Investigating",
        impact=impact,
        details=details,
        contact="Alice Commander +44 20 7000 0100 alice@tmt.example",
        eta="within the hour",
        is_public=public,
    )


@pytest.fixture
def outage(db, engineer):
    incident = open_incident(
        reported_by=engineer,
        level=1,
        title=INTERNAL_TITLE,
        description=INTERNAL_DESCRIPTION,
        systems=("circuit_breaker",),
        financial_impact_usd=Decimal("25000"),
        commander=engineer,
    )
    incident.public_title = "Trading temporarily unavailable"
    incident.save(update_fields=["public_title"])
    post_update(incident, engineer, public=True, details="We have identified the cause and are restarting.")
    post_update(incident, engineer, public=False, details="INTERNAL: rolling back deploy 4f2a on trd-prod-07")
    return incident


def test_status_page_needs_no_login_and_shows_no_internal_details(client, outage):
    response = client.get("/status/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Trading temporarily unavailable" in html
    assert "Severity 1 (Critical)" in html
    assert "We have identified the cause and are restarting." in html
    assert "within the hour" in html
    assert "Major outage" in html
    for secret in [
        INTERNAL_TITLE,
        INTERNAL_DESCRIPTION,
        "INTERNAL: rolling back",
        outage.reference,
        "25,000",
        "25000",
        "alice@tmt.example",
        "+44 20 7000 0100",
        "[INCIDENT]",
        outage.commander.username,
        "csrfmiddlewaretoken",
    ]:
        assert secret not in html, secret
    assert set(response["Cache-Control"].split(", ")) == {"max-age=15", "public"}


def test_status_json_is_the_twin(client, outage):
    response = client.get("/status.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert data["status"] == "major_outage"
    [incident] = data["incidents"]
    assert incident["title"] == "Trading temporarily unavailable"
    assert incident["severity"] == {"level": 1, "name": "Critical"}
    assert incident["status"] == "Investigating"
    assert incident["systems"] == ["Circuit Breaker Agent"]
    assert incident["last_update"]["details"] == "We have identified the cause and are restarting."
    assert set(incident["last_update"]) == {"posted_at", "status", "impact", "details", "eta", "next_update_at"}
    systems = {s["key"]: s["status"] for s in data["systems"]}
    assert systems["circuit_breaker"] == "major_outage"
    assert systems["market_analysis"] == "operational"
    assert len(systems) == System.objects.count()
    text = response.content.decode()
    for secret in [INTERNAL_TITLE, INTERNAL_DESCRIPTION, "INTERNAL:", outage.reference, "alice@tmt.example"]:
        assert secret not in text


def test_an_incident_without_public_title_or_update_is_described_generically(client, db, engineer):
    open_incident(reported_by=engineer, level=2, title=INTERNAL_TITLE, systems=("market_analysis",))
    data = client.get("/status.json").json()
    [incident] = data["incidents"]
    assert incident["title"] == "Service disruption affecting Market Analysis Agent"
    assert incident["last_update"] is None
    assert {s["key"]: s["status"] for s in data["systems"]}["market_analysis"] == "degraded"
    assert "We are aware of the issue" in client.get("/status/").content.decode()


def test_drills_and_closed_incidents_are_not_shown(client, db, engineer):
    open_incident(reported_by=engineer, level=1, is_drill=True, systems=("circuit_breaker",))
    data = client.get("/status.json").json()
    assert data["incidents"] == []
    assert data["status"] == "operational"
    assert "All systems operational" in client.get("/status/").content.decode()


def test_health_states_show_per_system(client, db):
    HealthTarget.objects.filter(system__key="risk_management").update(state=HealthTarget.State.DOWN)
    HealthTarget.objects.filter(system__key="market_analysis").update(state=HealthTarget.State.DEGRADED)
    systems = {s["key"]: s["status_label"] for s in client.get("/status.json").json()["systems"]}
    assert systems["risk_management"] == "Major outage"
    assert systems["market_analysis"] == "Degraded performance"
    assert systems["circuit_breaker"] == "Operational"


def test_planned_maintenance_is_announced(client, db):
    author = UserFactory(username="planner")
    now = timezone.now()
    current = MaintenanceWindow.objects.create(
        title="Database failover test",
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(hours=1),
        created_by=author,
    )
    current.systems.set(System.objects.filter(key="database"))
    upcoming = MaintenanceWindow.objects.create(
        title="Broker upgrade",
        description="Brief reconnects expected.",
        starts_at=now + timedelta(days=2),
        ends_at=now + timedelta(days=2, hours=1),
        created_by=author,
    )
    upcoming.systems.set(System.objects.filter(key="message_broker"))
    MaintenanceWindow.objects.create(
        title="Old work", starts_at=now - timedelta(days=3), ends_at=now - timedelta(days=2), created_by=author
    )
    data = client.get("/status.json").json()
    assert [(w["title"], w["in_progress"]) for w in data["maintenance"]] == [
        ("Database failover test", True),
        ("Broker upgrade", False),
    ]
    systems = {s["key"]: s["status"] for s in data["systems"]}
    assert systems["database"] == "maintenance"
    assert systems["message_broker"] == "operational"
    html = client.get("/status/").content.decode()
    assert "Broker upgrade" in html and "Brief reconnects expected." in html and "Old work" not in html
    assert "planner" not in html


def test_query_count_does_not_grow_with_incidents(client, db, engineer):
    open_incident(reported_by=engineer, level=2)
    client.get("/status/")
    with CaptureQueriesContext(connection) as one:
        client.get("/status/")
    for level in (1, 2, 3, 4):
        incident = open_incident(reported_by=engineer, level=level, systems=("dashboard", "reporting"))
        post_update(incident, engineer, public=True, details="update")
    with CaptureQueriesContext(connection) as five:
        response = client.get("/status/")
    assert len(response.context["status"].incidents) == 5
    assert len(five.captured_queries) == len(one.captured_queries)


def test_only_get_is_allowed(client, db):
    assert client.post("/status/").status_code == 405
    assert client.post("/status.json").status_code == 405


def test_routes(db):
    assert reverse("status") == "/status/"
    assert reverse("status_json") == "/status.json"


def test_health_page_links_to_status_page(engineer_client):
    assert 'href="/status/"' in engineer_client.get(reverse("incidents:health")).content.decode()
