"""The REST API for incidents: auth, role permissions, services behind every write, bad input."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from incidents.api.models import ApiToken
from incidents.api.services.api_tokens import api_token_create, api_token_revoke
from incidents.escalation.models import Deadline, EscalationEvent, StatusUpdate
from incidents.models import Incident, State, TimelineEntry
from tests.factories import certify, make_roster, open_incident, tick_initial_assessment

pytestmark = pytest.mark.django_db

INCIDENTS = "/api/v1/incidents/"


def _client(user=None, *, token: str | None = None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    elif user is not None:
        client.force_authenticate(user)
    return client


def _counts() -> tuple[int, int, int]:
    return Incident.objects.count(), TimelineEntry.objects.count(), Deadline.objects.count()


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()  # throttles count in the cache; one test's requests must not throttle the next


@pytest.fixture
def certified_engineer(engineer):
    certify(engineer)
    return engineer


# -- authentication -------------------------------------------------------------------------


def test_anonymous_request_is_told_to_authenticate():
    answer = APIClient().get(INCIDENTS)
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"].startswith("Bearer")


def test_personal_token_acts_as_its_user_and_is_stored_only_hashed(certified_engineer):
    token, raw = api_token_create(user=certified_engineer, name="runbook script")
    assert raw not in {token.key_hash, token.prefix} and raw.startswith(token.prefix)
    assert not ApiToken.objects.filter(key_hash=raw).exists()
    answer = _client(token=raw).post(
        INCIDENTS, {"title": "Risk agent slow", "severity": 3, "detection_method": "automated_alert"}, format="json"
    )
    assert answer.status_code == 201, answer.json()
    incident = Incident.objects.get(reference=answer.json()["reference"])
    assert incident.reported_by == certified_engineer
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_revoked_or_unknown_token_is_refused(engineer):
    token, raw = api_token_create(user=engineer, name="old laptop")
    api_token_revoke(token=token)
    for credentials in (raw, "not-a-token", raw + "x"):
        answer = _client(token=credentials).get(INCIDENTS)
        assert answer.status_code == 401
        assert "Invalid or revoked" in answer.json()["detail"]


def test_token_of_a_user_without_the_role_cannot_write(trainer):
    _, raw = api_token_create(user=trainer, name="trainer script")
    before = _counts()
    answer = _client(token=raw).post(
        INCIDENTS, {"title": "x", "severity": 3, "detection_method": "automated_alert"}, format="json"
    )
    assert answer.status_code == 403
    assert _counts() == before


def test_session_login_works_and_its_writes_need_the_csrf_token(certified_engineer):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(certified_engineer)
    assert client.get(INCIDENTS).status_code == 200
    payload = {"title": "Risk agent slow", "severity": 3, "detection_method": "automated_alert"}
    answer = client.post(INCIDENTS, payload, format="json")
    assert answer.status_code == 403 and "CSRF" in answer.json()["detail"]
    assert not Incident.objects.exists()


def test_throttling_counts_per_token_and_answers_429_with_retry_after(monkeypatch, engineer):
    from incidents.api.throttling import TokenRateThrottle

    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"user": "3/min"})
    _, raw = api_token_create(user=engineer, name="noisy script")
    script = _client(token=raw)
    codes = [script.get(INCIDENTS).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert int(script.get(INCIDENTS)["Retry-After"]) > 0
    # The runaway script used up its own token's budget, not its owner's browser session.
    assert _client(engineer).get(INCIDENTS).status_code == 200


def test_guessing_tokens_is_throttled_by_address(monkeypatch, engineer):
    from incidents.api.throttling import FailedAuthenticationThrottle

    monkeypatch.setattr(FailedAuthenticationThrottle, "THROTTLE_RATES", {"auth_failures": "5/min"})
    _, raw = api_token_create(user=engineer, name="real one")
    codes = [_client(token=f"guess-{n}").get(INCIDENTS).status_code for n in range(6)]
    # Four refusals, a fifth (the limit), then the sixth guess is throttled.
    assert codes == [401] * 5 + [429]
    # Someone else behind the same address with a valid token is never refused for it.
    assert _client(token=raw).get(INCIDENTS).status_code == 200
    assert _client(token="guess-7").get(INCIDENTS).status_code == 429


# -- incidents ------------------------------------------------------------------------------


def test_engineer_logs_an_incident_and_commands_it(certified_engineer):
    answer = _client(certified_engineer).post(
        INCIDENTS,
        {
            "title": "Circuit breaker not responding",
            "severity": 1,
            "category": "operational",
            "detection_method": "automated_alert",
            "affected_systems": ["circuit_breaker"],
            "financial_impact_usd": "12000.00",
        },
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["reference"].startswith("TMT-INC-")
    assert body["severity"] == 1 and body["state"] == "detected"
    assert body["commander"] == certified_engineer.username
    assert body["affected_systems"] == ["circuit_breaker"]
    assert answer["Location"].endswith(f"/api/v1/incidents/{body['reference']}/")
    incident = Incident.objects.get(reference=body["reference"])
    assert incident.timeline.filter(kind=TimelineEntry.Kind.STATE_CHANGE).exists()
    # Opened through the service: its escalation clocks are armed like a web-logged incident's.
    assert Deadline.objects.filter(incident=incident).exists()


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"severity": 3, "detection_method": "automated_alert"}, "title", "required"),
        ({"title": "  ", "severity": 3, "detection_method": "automated_alert"}, "title", ""),
        ({"title": "x", "severity": 9, "detection_method": "automated_alert"}, "severity", "1-4"),
        (
            {"title": "x", "severity": 4, "detection_method": "automated_alert", "financial_impact_usd": "6000"},
            "severity",
            "or higher",
        ),
        ({"title": "x", "severity": 3, "detection_method": "telepathy"}, "detection_method", "valid choice"),
        (
            {"title": "x", "severity": 3, "detection_method": "automated_alert", "affected_systems": ["moon_base"]},
            "affected_systems",
            "does not exist",
        ),
        (
            {"title": "x", "severity": 3, "detection_method": "automated_alert", "financial_impact_usd": "-5"},
            "financial_impact_usd",
            "",
        ),
        (
            {"title": "x", "severity": 3, "detection_method": "automated_alert", "started_at": "2999-01-01T00:00:00Z"},
            "started_at",
            "future",
        ),
        ({"title": "x", "severity": 3, "detection_method": "automated_alert", "severty": 1}, "severty", "Unknown"),
        (
            {"title": "x", "severity": 3, "detection_method": "automated_alert", "reference": "TMT-INC-X"},
            "reference",
            "read-only",
        ),
    ],
)
def test_bad_incident_input_names_the_field_and_writes_nothing(certified_engineer, payload, field, message):
    before = _counts()
    answer = _client(certified_engineer).post(INCIDENTS, payload, format="json")
    assert answer.status_code == 400
    errors = answer.json()
    assert field in errors, errors
    assert message in " ".join(errors[field])
    assert _counts() == before


def test_wrong_content_type_or_broken_json_is_refused(certified_engineer):
    client = _client(certified_engineer)
    before = _counts()
    form = client.post(INCIDENTS, "title=x&severity=3", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415
    assert "application/x-www-form-urlencoded" in form.json()["detail"]
    broken = client.post(INCIDENTS, '{"title": "x",', content_type="application/json")
    assert broken.status_code == 400
    assert "JSON parse error" in broken.json()["detail"]
    not_an_object = client.post(INCIDENTS, "[1, 2]", content_type="application/json")
    assert not_an_object.status_code == 400
    assert _counts() == before


# -- idempotency keys -----------------------------------------------------------------------

_NEW_INCIDENT = {"title": "Order gateway rejecting FIX logons", "severity": 2, "detection_method": "automated_alert"}


def _post_keyed(client, key: str, payload: dict = _NEW_INCIDENT):
    return client.post(INCIDENTS, payload, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_retried_create_with_its_idempotency_key_opens_one_incident(certified_engineer):
    client = _client(certified_engineer)
    first = _post_keyed(client, "3f6c1c9e-6a53-4a5e-9a55-1b2d3c4e5f60")
    assert first.status_code == 201, first.json()
    assert "Idempotent-Replayed" not in first
    before = _counts()
    retry = _post_keyed(client, "3f6c1c9e-6a53-4a5e-9a55-1b2d3c4e5f60")
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json()["reference"] == first.json()["reference"]
    assert retry["Location"] == first["Location"]
    assert _counts() == before  # no second incident, no second set of pages


def test_an_idempotency_key_reused_with_another_body_is_422_and_writes_nothing(certified_engineer):
    client = _client(certified_engineer)
    assert _post_keyed(client, "nightly-check-42").status_code == 201
    before = _counts()
    answer = _post_keyed(client, "nightly-check-42", {**_NEW_INCIDENT, "severity": 1})
    assert answer.status_code == 422
    assert "different request body" in answer.json()["detail"]
    assert _counts() == before


def test_idempotency_keys_are_per_user_and_expire(certified_engineer, manager):
    from datetime import timedelta

    from incidents.api.models import IdempotencyKey
    from incidents.api.services.idempotency import IDEMPOTENCY_KEY_LIFETIME

    mine = _post_keyed(_client(certified_engineer), "deploy-7").json()["reference"]
    theirs = _post_keyed(_client(manager), "deploy-7").json()["reference"]
    assert mine != theirs
    IdempotencyKey.objects.filter(user=certified_engineer).update(
        created_at=timezone.now() - IDEMPOTENCY_KEY_LIFETIME - timedelta(minutes=1)
    )
    again = _post_keyed(_client(certified_engineer), "deploy-7")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert again.json()["reference"] not in {mine, theirs}


@pytest.mark.parametrize("key", ["", " padded ", "x" * 256, "caf\u00e9"])
def test_a_malformed_idempotency_key_is_refused_by_name(certified_engineer, key):
    before = _counts()
    answer = _client(certified_engineer).post(INCIDENTS, _NEW_INCIDENT, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert answer.status_code == 400
    assert "printable ASCII" in answer.json()["Idempotency-Key"][0]
    assert _counts() == before


def test_a_retry_is_answered_before_its_body_is_validated_again(certified_engineer, monkeypatch):
    from incidents.api.serializers import IncidentCreateSerializer

    client = _client(certified_engineer)
    first = _post_keyed(client, "validated-once")
    # Whatever would refuse the body now (an edited policy, a clock that moved on), the retry of
    # an accepted request gets its incident back.
    monkeypatch.setattr(IncidentCreateSerializer, "validate_title", lambda self, value: 1 / 0)
    retry = _post_keyed(client, "validated-once")
    assert retry.status_code == 201 and retry["Idempotent-Replayed"] == "true"
    assert retry.json()["reference"] == first.json()["reference"]


def test_expired_idempotency_keys_are_purged():
    from datetime import timedelta

    from incidents.api.models import IdempotencyKey
    from incidents.api.services.idempotency import IDEMPOTENCY_KEY_LIFETIME, idempotency_keys_purge
    from tests.factories import UserFactory

    user = UserFactory()
    IdempotencyKey.objects.create(user=user, key="old", request_hash="0" * 64)
    IdempotencyKey.objects.create(user=user, key="new", request_hash="0" * 64)
    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - IDEMPOTENCY_KEY_LIFETIME - timedelta(seconds=1)
    )
    assert idempotency_keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


def test_a_refused_body_does_not_use_up_its_idempotency_key(certified_engineer):
    client = _client(certified_engineer)
    refused = _post_keyed(client, "retry-me", {**_NEW_INCIDENT, "severity": 9})
    assert refused.status_code == 400
    fixed = _post_keyed(client, "retry-me")
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("postgres")
def test_concurrent_retries_with_one_idempotency_key_open_one_incident(certified_engineer, monkeypatch):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    from incidents import services

    senders = 4
    # The first request to insert the key holds it while it opens the incident (slowly, here);
    # the others wait on the key's unique index and then answer with that incident.
    open_for_real = services.incident_open

    def slow_open(**kwargs):
        time.sleep(0.5)
        return open_for_real(**kwargs)

    monkeypatch.setattr(services, "incident_open", slow_open)
    everyone_ready = threading.Barrier(senders)

    def send(_):
        try:
            client = _client(certified_engineer)
            everyone_ready.wait(timeout=20)
            return _post_keyed(client, "pager-retry-1")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=senders) as pool:
        answers = list(pool.map(send, range(senders)))

    assert [a.status_code for a in answers] == [201] * senders
    assert len({a.json()["reference"] for a in answers}) == 1
    assert sorted(a.get("Idempotent-Replayed", "") for a in answers) == [""] + ["true"] * (senders - 1)
    assert Incident.objects.count() == 1


def test_list_filters_and_costs_the_same_queries_for_any_page_size(manager, django_assert_max_num_queries):
    for level in (1, 2, 3, 4):
        open_incident(level=level, reported_by=manager, financial_impact_usd=None, systems=("risk_management",))
    open_incident(level=2, reported_by=manager, systems=("circuit_breaker",), title="Breaker down")
    client = _client(manager)
    sev2 = client.get(INCIDENTS, {"severity": 2}).json()
    assert sev2["count"] == 2 and {row["severity"] for row in sev2["results"]} == {2}
    by_system = client.get(INCIDENTS, {"system": "circuit_breaker"}).json()
    assert [row["title"] for row in by_system["results"]] == ["Breaker down"]
    assert client.get(INCIDENTS, {"state": "open"}).json()["count"] == 5
    assert client.get(INCIDENTS, {"q": "breaker"}).json()["count"] == 1
    with django_assert_max_num_queries(12) as small:
        assert len(client.get(INCIDENTS, {"page_size": 1}).json()["results"]) == 1
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(client.get(INCIDENTS, {"page_size": 50}).json()["results"]) == 5


def test_bad_filter_value_is_a_400_not_an_empty_list(manager):
    answer = _client(manager).get(INCIDENTS, {"state": "sleeping"})
    assert answer.status_code == 400
    assert "state" in answer.json()


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("1969-12-31T23:59:59+00:00", False),  # just below the earliest year
        ("1970-01-01T00:00:00+00:00", True),
        ("2200-12-31T23:59:59+00:00", True),
        ("2201-01-01T00:00:00+00:00", False),  # just above the latest
        ("0001-01-01T00:00:00-23:59", False),  # year 1 shifted west overflowed Python's datetime
        # An offset Python accepts and PostgreSQL does not: taken as the same instant in UTC.
        ("2026-09-20T07:08:28-23:51", True),
    ],
)
def test_date_time_filters_take_only_years_the_portal_can_hold(manager, value, accepted):
    open_incident(level=3, reported_by=manager)
    for name in ("detected_after", "detected_before"):
        answer = _client(manager).get(INCIDENTS, {name: value})
        assert answer.status_code == (200 if accepted else 400), answer.content
        if not accepted:
            assert "1970 and 2200" in answer.json()[name][0]


def test_unknown_reference_is_404(manager):
    assert _client(manager).get(INCIDENTS + "TMT-INC-1999-01-01-001/").status_code == 404


def test_patch_raises_severity_through_the_service(manager):
    incident = open_incident(level=3, reported_by=manager, financial_impact_usd=None)
    answer = _client(manager).patch(
        f"{INCIDENTS}{incident.reference}/", {"severity": 1, "user_impact": "All trading halted"}, format="json"
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json()["severity"] == 1 and answer.json()["user_impact"] == "All trading halted"
    assert incident.timeline.filter(action__contains="Severity changed").exists()
    # Re-evaluated like an edit on the incident page: a Sev1 pages the CTO at once.
    assert Deadline.objects.filter(incident=incident, kind=Deadline.Kind.ROLE_ESCALATION).exists()


def test_patch_with_end_before_start_writes_nothing(manager):
    incident = open_incident(level=3, reported_by=manager)
    before = incident.timeline.count()
    answer = _client(manager).patch(
        f"{INCIDENTS}{incident.reference}/", {"ended_at": "2001-01-01T00:00:00Z", "title": "New title"}, format="json"
    )
    assert answer.status_code == 400 and "ended_at" in answer.json()
    incident.refresh_from_db()
    assert incident.title != "New title" and incident.timeline.count() == before


def test_put_and_delete_are_not_offered(manager):
    incident = open_incident(level=3, reported_by=manager)
    client = _client(manager)
    assert client.put(f"{INCIDENTS}{incident.reference}/", {}, format="json").status_code == 405
    assert client.delete(f"{INCIDENTS}{incident.reference}/").status_code == 405


# -- lifecycle ------------------------------------------------------------------------------


def test_acknowledge_then_walk_to_resolved(manager):
    incident = open_incident(level=3, reported_by=manager)
    client = _client(manager)
    url = f"{INCIDENTS}{incident.reference}/"
    acknowledged = client.post(url + "acknowledge/", {}, format="json")
    assert acknowledged.status_code == 200, acknowledged.json()
    assert acknowledged.json()["state"] == "acknowledged"
    assert acknowledged.json()["acknowledged_by"] == manager.username
    assert client.post(url + "start-investigation/", {}, format="json").json()["state"] == "investigating"
    tick_initial_assessment(incident, manager)
    assert client.post(url + "contain/", {}, format="json").json()["state"] == "contained"
    client.patch(url, {"resolution_actions": "Restarted the agent"}, format="json")
    assert client.post(url + "resolve/", {}, format="json").json()["state"] == "resolved"


def test_transition_not_allowed_is_409_and_changes_nothing(manager):
    incident = open_incident(level=3, reported_by=manager)
    before = incident.timeline.count()
    answer = _client(manager).post(f"{INCIDENTS}{incident.reference}/resolve/", {}, format="json")
    assert answer.status_code == 409
    assert "not possible while the incident is detected" in answer.json()["detail"]
    incident.refresh_from_db()
    assert incident.state == State.DETECTED and incident.timeline.count() == before


def test_guarded_transition_says_what_is_missing(manager):
    incident = open_incident(level=3, reported_by=manager)
    client = _client(manager)
    client.post(f"{INCIDENTS}{incident.reference}/acknowledge/", {}, format="json")
    client.post(f"{INCIDENTS}{incident.reference}/start-investigation/", {}, format="json")
    answer = client.post(f"{INCIDENTS}{incident.reference}/contain/", {}, format="json")
    assert answer.status_code == 409
    assert "initial assessment" in answer.json()["detail"]


def test_stale_expected_state_is_409(manager):
    incident = open_incident(level=3, reported_by=manager)
    answer = _client(manager).post(
        f"{INCIDENTS}{incident.reference}/acknowledge/", {"expected_state": "investigating"}, format="json"
    )
    assert answer.status_code == 409
    assert "changed" in answer.json()["detail"]


def test_cancel_needs_a_reason(manager):
    incident = open_incident(level=3, reported_by=manager)
    client = _client(manager)
    missing = client.post(f"{INCIDENTS}{incident.reference}/cancel/", {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()
    done = client.post(f"{INCIDENTS}{incident.reference}/cancel/", {"reason": "False alarm: test feed"}, format="json")
    assert done.status_code == 200 and done.json()["state"] == "cancelled"
    assert done.json()["cancel_reason"] == "False alarm: test feed"


def test_roles_without_the_transition_permission_get_403(trainer, manager):
    incident = open_incident(level=3, reported_by=manager)
    answer = _client(trainer).post(f"{INCIDENTS}{incident.reference}/acknowledge/", {}, format="json")
    assert answer.status_code == 403
    incident.refresh_from_db()
    assert incident.state == State.DETECTED


def test_engineer_may_not_close_an_incident(certified_engineer, manager):
    incident = open_incident(level=4, reported_by=manager, financial_impact_usd=None)
    answer = _client(certified_engineer).post(f"{INCIDENTS}{incident.reference}/close/", {}, format="json")
    assert answer.status_code == 403


def test_commander_assignment_follows_the_roles(certified_engineer, manager, sysadmin):
    incident = open_incident(level=3, reported_by=manager)
    url = f"{INCIDENTS}{incident.reference}/commander/"
    refused = _client(sysadmin).post(url, {"commander": certified_engineer.username}, format="json")
    assert refused.status_code == 403
    assert "incident manager" in refused.json()["detail"]
    assigned = _client(manager).post(url, {"commander": certified_engineer.username}, format="json")
    assert assigned.status_code == 200 and assigned.json()["commander"] == certified_engineer.username
    unknown = _client(manager).post(url, {"commander": "nobody-here"}, format="json")
    assert unknown.status_code == 400 and "commander" in unknown.json()


# -- timeline, status updates, escalations -------------------------------------------------


def test_timeline_append_and_read(manager):
    incident = open_incident(level=3, reported_by=manager)
    client = _client(manager)
    url = f"{INCIDENTS}{incident.reference}/timeline/"
    added = client.post(url, {"text": "Restarted the market analysis agent", "owner_team": "SRE"}, format="json")
    assert added.status_code == 201 and added.json()["owner"] == manager.username
    entries = client.get(url).json()
    assert entries["results"][-1]["action"] == "Restarted the market analysis agent"
    empty = client.post(url, {"text": "   "}, format="json")
    assert empty.status_code == 400 and "text" in empty.json()
    future = client.post(url, {"text": "later", "occurred_at": "2999-01-01T00:00:00Z"}, format="json")
    assert future.status_code == 400 and "occurred_at" in future.json()


def test_timeline_entries_cannot_be_changed(manager):
    incident = open_incident(level=3, reported_by=manager)
    url = f"{INCIDENTS}{incident.reference}/timeline/"
    assert _client(manager).put(url, {"text": "rewrite"}, format="json").status_code == 405
    assert _client(manager).delete(url).status_code == 405


def test_status_update_takes_the_template_for_missing_fields(manager):
    make_roster()
    incident = open_incident(level=2, reported_by=manager, commander=manager)
    answer = _client(manager).post(
        f"{INCIDENTS}{incident.reference}/status-updates/",
        {"details": "Failover to the standby agent complete", "eta": "30 minutes"},
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    update = StatusUpdate.objects.get(incident=incident)
    assert update.subject.startswith("[INCIDENT] TMT System - Sev2 - ")
    assert update.details == "Failover to the standby agent complete" and update.eta == "30 minutes"
    listed = _client(manager).get(f"{INCIDENTS}{incident.reference}/status-updates/").json()
    assert [u["sequence"] for u in listed["results"]] == [1]
    # The same words as the web composer: nothing else reaches the public status page.
    made_up = _client(manager).post(
        f"{INCIDENTS}{incident.reference}/status-updates/",
        {"details": "x", "status": "All clear", "is_public": True},
        format="json",
    )
    assert made_up.status_code == 400 and "status" in made_up.json()
    assert StatusUpdate.objects.filter(incident=incident).count() == 1


def test_deadlines_and_escalations_are_readable(manager):
    from incidents.escalation.services import deadlines_fire_due

    make_roster()
    incident = open_incident(level=1, reported_by=manager, financial_impact_usd=Decimal("12000"))
    deadlines_fire_due()
    client = _client(manager)
    deadlines = client.get(f"{INCIDENTS}{incident.reference}/deadlines/").json()["results"]
    assert {d["kind"] for d in deadlines} >= {"acknowledge", "role_escalation"}
    escalations = client.get(f"{INCIDENTS}{incident.reference}/escalations/").json()["results"]
    assert EscalationEvent.objects.filter(incident=incident).count() == len(escalations) > 0
    assert any(e["target_label"] == "CTO" for e in escalations)


# -- health and schema ----------------------------------------------------------------------


def test_health_targets_visible_to_responders_not_trainers(engineer, trainer):
    from incidents.monitoring.models import HealthTarget

    assert HealthTarget.objects.exists()  # seeded by migration for the three agents
    targets = _client(engineer).get("/api/v1/health-targets/").json()["results"]
    assert {t["system"] for t in targets} >= {"circuit_breaker", "market_analysis", "risk_management"}
    assert _client(trainer).get("/api/v1/health-targets/").status_code == 403


def test_openapi_schema_and_offline_swagger_ui(engineer):
    client = _client(engineer)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    # A generated client must be able to cancel with a reason, and expect the 409.
    cancel = paths["/api/v1/incidents/{reference}/cancel/"]["post"]
    assert cancel["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/TransitionRequest")
    assert cancel["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    create = paths["/api/v1/incidents/"]["post"]
    assert [p["name"] for p in create["parameters"]] == ["Idempotency-Key"]
    assert {"201", "400", "422"} <= set(create["responses"])
    browser = APIClient()
    browser.force_login(engineer)
    docs = browser.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower()


def test_schema_and_docs_need_a_login():
    assert APIClient().get("/api/schema/").status_code == 401
    assert APIClient().get("/api/docs/").status_code == 302


def test_reopening_an_alert_incident_after_the_alert_opened_a_new_one_is_409(manager):
    first = open_incident(level=3, reported_by=manager)
    Incident.objects.filter(pk=first.pk).update(alert_fingerprint="fp-disk-full")
    client = _client(manager)
    url = f"{INCIDENTS}{first.reference}/"
    client.post(url + "acknowledge/", {}, format="json")
    client.post(url + "start-investigation/", {}, format="json")
    tick_initial_assessment(first, manager)
    client.post(url + "contain/", {}, format="json")
    client.patch(url, {"resolution_actions": "Freed disk space"}, format="json")
    assert client.post(url + "resolve/", {}, format="json").json()["state"] == "resolved"
    second = open_incident(level=3, reported_by=manager, title="Disk full again")
    Incident.objects.filter(pk=second.pk).update(alert_fingerprint="fp-disk-full")

    answer = client.post(url + "reopen/", {}, format="json")
    assert answer.status_code == 409
    assert second.reference in answer.json()["detail"]
    first.refresh_from_db()
    assert first.state == State.RESOLVED


def test_reading_the_incidents_parts_follows_its_page_and_writing_needs_its_own_permission(manager, trainer):
    incident = open_incident(level=3, reported_by=manager)
    url = f"{INCIDENTS}{incident.reference}/timeline/"
    # A trainer follows incidents (view) but does not write on them.
    assert _client(trainer).get(url).status_code == 200
    before = incident.timeline.count()
    assert _client(trainer).post(url, {"text": "hello"}, format="json").status_code == 403
    assert incident.timeline.count() == before
    # Status updates are on the incident page's timeline, which a trainer reads: so do they here;
    # posting one is for responders.
    updates = f"{INCIDENTS}{incident.reference}/status-updates/"
    assert _client(trainer).get(updates).status_code == 200
    assert _client(trainer).post(updates, {"details": "All clear"}, format="json").status_code == 403
