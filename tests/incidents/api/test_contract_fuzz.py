"""Contract fuzz run: schemathesis generates requests from /api/schema/ and checks every answer.

It runs as an authenticated incident manager (the widest role) against the real WSGI app and
PostgreSQL, and fails on any 5xx or any response the schema does not describe (status code,
content type, headers, body). `make test` runs a bounded number of examples per operation
(TMT_FUZZ_EXAMPLES, default 5: about two minutes); `make fuzz` runs 100. Both also run the
explicit edge cases at the end (depth, size, numbers, lone surrogates, dates at the calendar's
edges) for every operation that reads a body.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest
import schemathesis
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from incidents.api.models import AlertIntegration
from incidents.api.services.api_tokens import alert_integration_issue_token, api_token_create
from tests.factories import certify, make_roster, open_incident
from tests.incidents.api.conftest import FUZZ_EXAMPLES, served_schema


@pytest.fixture
def fuzz_token(db, manager, monkeypatch) -> str:
    from incidents.api.throttling import FailedAuthenticationThrottle

    make_roster()
    certify(manager)
    open_incident(reported_by=manager, level=2)
    cache.clear()  # throttle counts from other tests
    # Schemathesis probes every case with a made-up token and expects 401; one operation's
    # coverage cases pass the refused-token limit, whose 429 is tested on its own.
    monkeypatch.setattr(FailedAuthenticationThrottle, "THROTTLE_RATES", {"auth_failures": "1000000/min"})
    _, raw = api_token_create(user=manager, name="contract fuzz")
    return raw


schema = schemathesis.openapi.from_dict(served_schema())
schema.app = get_wsgi_application()


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_api_answers_match_the_schema_and_never_fail(case, fuzz_token, wsgi_calls_keep_the_test_connection):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {fuzz_token}"},
        # Every check but two that judge the input, not the answer: "schema-valid data must be
        # accepted" fails on any reference to a row that does not exist (owner "0"), which the
        # API rightly refuses with a 400; "schema-violating data must be rejected" fails on
        # DRF's documented leniency (a boolean given as "true"). Each answer is still checked
        # for 5xx, status code, content type, headers and body against the schema.
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )


# -- explicit edge cases for every endpoint that reads a body ---------------------------------
# Generated examples rarely reach the edges that broke: bodies nested 20,000 deep, bodies over
# the size limit, numbers no field can hold, text with a lone surrogate, years 1 and 9999. Each goes
# to every operation that takes a body, as a superuser (so no role stops it before the body is
# read), and each answer must be JSON, documented, and never a 5xx.

_SCHEMA = served_schema()
_BODY_OPERATIONS = sorted(
    (operation["operationId"], path, method)
    for path, operations in _SCHEMA["paths"].items()
    for method, operation in operations.items()
    if "requestBody" in operation
)
_INFINITE = "__1e999__"  # json.dumps writes inf as Infinity; the literal 1e999 is put in after


def _base_bodies(who: str) -> dict[str, dict]:
    """A body each operation accepts (or refuses for its state, not its shape)."""
    today, now = timezone.localdate(), timezone.now()
    soon, before = (now + timedelta(hours=1)).isoformat(), (now - timedelta(minutes=1)).isoformat()
    transition = {"reason": "Drill", "expected_state": "detected"}
    alert = {
        "status": "firing",
        "labels": {"alertname": "AgentDown", "severity": "critical"},
        "annotations": {"summary": "Agent down"},
        "startsAt": before,
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "edge-1",
    }
    return {
        "action_items_create": {"title": "Alert on lag", "kind": "monitoring", "owner": who, "due_date": str(today)},
        "action_items_complete_create": {"note": "Done"},
        "action_items_decline_create": {"reason": "Superseded"},
        "action_items_reschedule_create": {"due_date": str(today + timedelta(days=14)), "owner": who},
        "alerts_ingest": {"version": "4", "status": "firing", "alerts": [alert]},
        "certifications_create": {
            "person": who,
            "kind": "annual-certification",
            "issued_on": str(today),
            "issued_by": who,
        },
        "drills_create": {
            "kind": "disaster-recovery",
            "scheduled_start": (now + timedelta(days=7)).isoformat(),
            "facilitator": who,
        },
        "drills_cancel_create": {"reason": "Market holiday"},
        "incidents_create": {"title": "Edge", "severity": 3, "detection_method": "user_report", "started_at": before},
        "incidents_partial_update": {"started_at": before, "ended_at": before},
        "incidents_commander_create": {"commander": who},
        "incidents_roles_create": {"role": "scribe", "holder": who},
        "incidents_status_updates_create": {"details": "Feed restored", "next_update_at": soon},
        "incidents_timeline_create": {"text": "Restarted the feed", "occurred_at": before},
        "status_incidents_create": {
            "incident": "TMT-INC-2000-01-01-001",  # replaced by the edge client's incident
            "title": "Orders delayed",
            "impact": "degraded_performance",
            "status": "investigating",
            "message": "We are looking into it.",
            "components": ["circuit_breaker"],
        },
        "status_incidents_updates_create": {"status": "identified", "message": "Cause found."},
        "status_incidents_resolve_create": {"message": "Orders flow again."},
        "status_maintenance_create": {
            "title": "Database upgrade",
            "message": "Orders paused.",
            "starts_at": (now + timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=1, hours=2)).isoformat(),
            "components": ["circuit_breaker"],
        },
        "status_maintenance_advance_create": {"step": "start", "message": "Under way."},
        # Every lifecycle transition takes the same body.
        **{op: transition for op, path, method in _BODY_OPERATIONS if _request_schema(path, method) == _TRANSITION},
    }


_TRANSITION = {"$ref": "#/components/schemas/TransitionRequest"}


def _request_schema(path: str, method: str) -> dict:
    return _SCHEMA["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


def test_every_operation_that_reads_a_body_has_an_edge_case_base_body():
    # A new endpoint gets its edge cases once it has a base body here.
    assert sorted(_base_bodies("someone")) == sorted(op for op, _, _ in _BODY_OPERATIONS)


def _date_paths(schema: dict, path: tuple = ()) -> list[tuple[tuple, str]]:
    """Where the request schema has a date or date-time, and which: (("alerts", 0, "startsAt"), "date-time")."""
    if "$ref" in schema:
        return _date_paths(_SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], path)
    if schema.get("format") in ("date", "date-time"):
        return [(path, schema["format"])]
    found = []
    for branch in schema.get("oneOf", []) + schema.get("allOf", []):
        found += [item for item in _date_paths(branch, path) if item not in found]
    for name, child in schema.get("properties", {}).items():
        found += _date_paths(child, (*path, name))
    if "items" in schema:
        found += _date_paths(schema["items"], (*path, 0))
    return found


def _with_surrogates(value):
    """Every string in `value` with a lone surrogate added (json.dumps writes it as \\udfff)."""
    if isinstance(value, str):
        return value + "\udfff"
    if isinstance(value, dict):
        return {key: _with_surrogates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_surrogates(item) for item in value]
    return value


def _with(body: dict, path: tuple, value) -> dict:
    changed = copy.deepcopy(body)
    here = changed
    for key in path[:-1]:
        here = here[key]
    here[path[-1]] = value
    return changed


EXTREME_TIMES = {
    "date-time": [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00-23:59",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59+14:00",
        "+275760-09-13T00:00:00Z",
        253402300800,
        _INFINITE,
    ],
    "date": ["0001-01-01", "1969-12-31", "9999-12-31", "99999-01-01", _INFINITE],
}


@pytest.fixture
def edge_client(db, settings):
    from django.contrib.auth import get_user_model

    settings.TMT_API_MAX_BODY_BYTES = 64 * 1024  # the limit is a setting; a small one keeps this fast
    cache.clear()
    make_roster()
    superuser = get_user_model().objects.create_superuser("edge-admin", "edge@example.org", "x")
    _, raw = api_token_create(user=superuser, name="edges")
    integration = AlertIntegration(name="Edges", kind=AlertIntegration.Kind.ALERTMANAGER, reporter=superuser)
    alerts_token = alert_integration_issue_token(integration=integration)
    incident = open_incident(reported_by=superuser, level=3, started_at=timezone.now() - timedelta(hours=2))
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {raw}")
    bodies = _base_bodies(superuser.username)
    drill = client.post("/api/v1/drills/", bodies["drills_create"], content_type="application/json").json()
    item = client.post("/api/v1/action-items/", bodies["action_items_create"], content_type="application/json").json()
    bodies["status_incidents_create"]["incident"] = incident.reference
    public = client.post(
        "/api/v1/status/incidents/", bodies["status_incidents_create"], content_type="application/json"
    ).json()
    maintenance = client.post(
        "/api/v1/status/maintenance/", bodies["status_maintenance_create"], content_type="application/json"
    ).json()
    ids = {
        "reference": incident.reference,
        "drills": drill["id"],
        "action-items": item["id"],
        "status/incidents": public["id"],
        "status/maintenance": maintenance["id"],
    }

    def call(operation: str, path: str, method: str, raw_body: str | bytes):
        url = path.replace("{reference}", ids["reference"])
        if "{id}" in path:
            url = url.replace("{id}", str(ids[path.split("/{id}")[0].removeprefix("/api/v1/")]))
        headers = {"HTTP_AUTHORIZATION": f"Bearer {alerts_token}"} if operation == "alerts_ingest" else {}
        answer = client.generic(method.upper(), url, raw_body, content_type="application/json", **headers)
        documented = _SCHEMA["paths"][path][method]["responses"]
        assert answer.status_code < 500, (operation, answer.status_code, answer.content[:300])
        assert str(answer.status_code) in documented, (operation, answer.status_code, answer.content[:300])
        assert answer["Content-Type"].startswith("application/json"), (operation, answer["Content-Type"])
        assert isinstance(json.loads(answer.content), dict)
        return answer

    return call, bodies


@pytest.mark.parametrize(("operation", "path", "method"), _BODY_OPERATIONS, ids=[op for op, _, _ in _BODY_OPERATIONS])
def test_every_body_too_deep_too_large_or_unholdable_is_a_json_4xx(operation, path, method, edge_client):
    call, bodies = edge_client
    base = json.dumps(bodies[operation])
    cases = {
        "too deep": ("[" * 20_000 + "]" * 20_000, 400, "nests more than"),  # json.loads: RecursionError
        "too deep inside": (base[:-1] + ', "x": ' + "[" * 40 + "]" * 40 + "}", 400, "nests more than"),
        "too large": (base[:-1] + ', "x": "' + "x" * 64 * 1024 + '"}', 413, "larger than"),
        "infinite": (base[:-1] + ', "x": 1e999}', 400, "finite"),
        "huge integer": (base[:-1] + ', "x": ' + "9" * 5000 + "}", 400, "digits"),
        "NaN": (base[:-1] + ', "x": NaN}', 400, "NaN"),
    }
    for name, (raw_body, status, words) in cases.items():
        answer = call(operation, path, method, raw_body)
        assert answer.status_code == status and words in answer.content.decode(), (name, answer.content[:300])
    # Text with a lone surrogate (in a field's name, and in every text) is refused or, in an
    # alert, stored with a stand-in; never a 500.
    call(operation, path, method, base[:-1] + ', "\\ud800": "\\ud800"}')
    call(operation, path, method, json.dumps(_with_surrogates(bodies[operation])))


_DATE_OPERATIONS = [
    (op, path, method) for op, path, method in _BODY_OPERATIONS if _date_paths(_request_schema(path, method))
]


@pytest.mark.parametrize(("operation", "path", "method"), _DATE_OPERATIONS, ids=[op for op, _, _ in _DATE_OPERATIONS])
def test_every_date_at_the_edge_of_the_calendar_is_refused_by_name(operation, path, method, edge_client):
    call, bodies = edge_client
    for field_path, kind in _date_paths(_request_schema(path, method)):
        for value in EXTREME_TIMES[kind]:
            body = json.dumps(_with(bodies[operation], field_path, value)).replace(f'"{_INFINITE}"', "1e999")
            answer = call(operation, path, method, body)
            # An alert's time before 1971 is the alerting tools' zero time: "not ended".
            if operation == "alerts_ingest" and str(value)[:4] in ("0001", "1969"):
                continue
            assert answer.status_code == 400, (operation, field_path, value, answer.content[:300])
            # Named: the field, or for 1e999 the body (not even a JSON number a field could see).
            named = f'"{field_path[-1]}"' if value != _INFINITE else "finite"
            assert named in answer.content.decode(), (operation, field_path, value, answer.content[:300])
