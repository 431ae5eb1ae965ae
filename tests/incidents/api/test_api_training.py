"""The API for drills, certifications and action items: the training and follow-up services, by role."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from drills.models import Certification, Drill
from reports.models import ActionItem
from tests.factories import make_roster, open_incident

pytestmark = pytest.mark.django_db


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()


@pytest.fixture
def team(db):
    return make_roster()


def _in_a_week() -> str:
    return (timezone.now() + timedelta(days=7)).replace(microsecond=0).isoformat()


def test_trainer_schedules_a_drill_with_the_kinds_defaults(trainer, team):
    answer = _client(trainer).post(
        "/api/v1/drills/",
        {
            "kind": "disaster-recovery",
            "scheduled_start": _in_a_week(),
            "facilitator": trainer.username,
            "participants": [team["oncall1"].username, team["oncall2"].username],
        },
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["state"] == "planned" and body["reference"].startswith("DRILL-")
    assert sorted(body["participants"]) == ["oncall1", "oncall2"]
    assert body["scenario"]  # the kind's default scenario
    listed = _client(team["oncall1"]).get("/api/v1/drills/").json()
    assert [d["id"] for d in listed["results"]] == [body["id"]]


def test_only_trainers_schedule_and_bad_drills_write_nothing(trainer, team):
    payload = {"kind": "disaster-recovery", "scheduled_start": _in_a_week(), "facilitator": trainer.username}
    assert _client(team["oncall1"]).post("/api/v1/drills/", payload, format="json").status_code == 403
    past = _client(trainer).post(
        "/api/v1/drills/", {**payload, "scheduled_start": "2020-01-01T09:00:00Z"}, format="json"
    )
    assert past.status_code == 400 and "scheduled_start" in past.json()
    unknown_kind = _client(trainer).post("/api/v1/drills/", {**payload, "kind": "karaoke"}, format="json")
    assert unknown_kind.status_code == 400 and "kind" in unknown_kind.json()
    assert not Drill.objects.exists()


def test_cancelling_a_drill_needs_a_reason(trainer, team):
    created = (
        _client(trainer)
        .post(
            "/api/v1/drills/",
            {"kind": "communication-test", "scheduled_start": _in_a_week(), "facilitator": trainer.username},
            format="json",
        )
        .json()
    )
    url = f"/api/v1/drills/{created['id']}/cancel/"
    assert _client(trainer).post(url, {}, format="json").status_code == 400
    assert _client(team["oncall1"]).post(url, {"reason": "clash"}, format="json").status_code == 403
    done = _client(trainer).post(url, {"reason": "Clashes with the release"}, format="json")
    assert done.status_code == 200 and done.json()["state"] == "cancelled"


def test_engineers_see_only_their_own_certifications(trainer, team):
    mine = _client(team["oncall1"]).get("/api/v1/certifications/").json()["results"]
    assert mine and {c["person"] for c in mine} == {"oncall1"}
    everyone = _client(trainer).get("/api/v1/certifications/").json()
    assert everyone["count"] == Certification.objects.count()
    assert len({c["person"] for c in everyone["results"]}) > 1


def test_trainer_records_a_certification_with_the_kinds_validity(trainer, team):
    today = timezone.localdate()
    answer = _client(trainer).post(
        "/api/v1/certifications/",
        {
            "person": team["oncall2"].username,
            "kind": "annual-certification",
            "issued_on": today.isoformat(),
            "issued_by": trainer.username,
            "evidence_note": "Passed the annual assessment",
        },
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    assert answer.json()["expires_on"] > today.isoformat()
    before = Certification.objects.count()
    refused = _client(team["oncall2"]).post(
        "/api/v1/certifications/",
        {"person": "oncall2", "kind": "annual-certification", "issued_on": today.isoformat(), "issued_by": "oncall2"},
        format="json",
    )
    assert refused.status_code == 403
    future = _client(trainer).post(
        "/api/v1/certifications/",
        {
            "person": "oncall2",
            "kind": "annual-certification",
            "issued_on": (today + timedelta(days=3)).isoformat(),
            "issued_by": trainer.username,
        },
        format="json",
    )
    assert future.status_code == 400 and "issued_on" in future.json()
    assert Certification.objects.count() == before


def test_action_item_lifecycle_by_its_owner(team):
    incident = open_incident(reported_by=team["im"], level=2)
    due = (timezone.localdate() + timedelta(days=14)).isoformat()
    created = _client(team["im"]).post(
        "/api/v1/action-items/",
        {
            "incident": incident.reference,
            "title": "Alert on agent heartbeat gaps",
            "kind": "monitoring",
            "owner": "oncall1",
            "due_date": due,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    item = created.json()
    assert item["incident"] == incident.reference and item["state"] == "open"
    mine = _client(team["oncall1"]).get("/api/v1/action-items/", {"owner__username": "oncall1"}).json()
    assert [i["id"] for i in mine["results"]] == [item["id"]]
    done = _client(team["oncall1"]).post(
        f"/api/v1/action-items/{item['id']}/complete/", {"note": "Alert rule deployed"}, format="json"
    )
    assert done.status_code == 200 and done.json()["state"] == "done"
    assert incident.timeline.filter(action__contains="Action item done").exists()
    again = _client(team["oncall1"]).post(f"/api/v1/action-items/{item['id']}/start/", {}, format="json")
    assert again.status_code == 400


def test_bad_action_items_write_nothing(team, trainer):
    past = _client(team["im"]).post(
        "/api/v1/action-items/",
        {"title": "x", "kind": "monitoring", "owner": "oncall1", "due_date": "2001-01-01"},
        format="json",
    )
    assert past.status_code == 400 and "due_date" in past.json()
    bad_kind = _client(team["im"]).post(
        "/api/v1/action-items/",
        {"title": "x", "kind": "someday", "owner": "oncall1", "due_date": "2099-01-01"},
        format="json",
    )
    assert bad_kind.status_code == 400 and "kind" in bad_kind.json()
    assert not ActionItem.objects.exists()
    item = ActionItem.objects.create(
        title="Patch", kind="immediate", owner=team["oncall1"], due_date=timezone.localdate(), created_by=team["im"]
    )
    # A trainer may read and add action items, but only the owner or a responder changes one.
    assert _client(trainer).post(f"/api/v1/action-items/{item.pk}/start/", {}, format="json").status_code == 403
