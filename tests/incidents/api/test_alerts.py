"""POST /api/v1/alerts/: Alertmanager, Grafana and generic alerts opening and joining incidents."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import hypothesis
import jsonschema
import pytest
import schemathesis
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import connections
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from hypothesis import HealthCheck
from rest_framework.test import APIClient
from schemathesis.specs.openapi.checks import positive_data_acceptance

from incidents import services
from incidents.api.models import AlertEvent, AlertIntegration
from incidents.api.services import alerts as alert_services
from incidents.api.services.api_tokens import alert_integration_issue_token, api_token_create
from incidents.models import DetectionMethod, Incident, SeverityLevel, State, TimelineEntry
from incidents.validators import reported_problem
from tests.factories import UserFactory
from tests.incidents.api.conftest import FUZZ_EXAMPLES, served_schema

pytestmark = pytest.mark.django_db

ALERTS = "/api/v1/alerts/"
SYSTEM_MAP = {"cb": "circuit_breaker", "risk": "risk_management", "ma": "market_analysis"}
SEVERITY_MAP = {"critical": 1, "major": 2, "warning": 3, "info": 4}


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()  # the throttle counts in the cache; one test's requests must not throttle the next


@pytest.fixture
def reporter(db):
    return UserFactory(username="monitoring", first_name="Monitoring", last_name="bot", is_active=False)


def _integration(
    reporter, *, kind=AlertIntegration.Kind.ALERTMANAGER, name="Prometheus"
) -> tuple[AlertIntegration, str]:
    integration = AlertIntegration(
        name=name, kind=kind, reporter=reporter, system_map=SYSTEM_MAP, severity_map=SEVERITY_MAP, default_severity=3
    )
    raw = alert_integration_issue_token(integration=integration)
    return integration, raw


@pytest.fixture
def alertmanager(reporter):
    return _integration(reporter)


def _post(token: str | None, body, *, content_type: str = "application/json"):
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(ALERTS, data=data, content_type=content_type)


def _am_alert(
    fingerprint: str,
    *,
    status="firing",
    summary="Circuit breaker agent not answering",
    severity="critical",
    system="cb",
    **extra,
):
    labels = {"alertname": "AgentDown", "severity": severity, "system": system, "instance": "cb-1:8001"}
    labels.update(extra.pop("labels", {}))
    return {
        "status": status,
        "labels": {k: v for k, v in labels.items() if v is not None},
        "annotations": {"summary": summary, "description": "No /health answer for 2 minutes."},
        "startsAt": "2026-11-27T09:30:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-27T09:45:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
        **extra,
    }


def _am_payload(*alerts, status="firing"):
    return {
        "version": "4",
        "groupKey": '{}:{alertname="AgentDown"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "tmt-portal",
        "groupLabels": {"alertname": "AgentDown"},
        "commonLabels": {"alertname": "AgentDown"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def _counts() -> tuple[int, int, int]:
    return AlertEvent.objects.count(), Incident.objects.count(), TimelineEntry.objects.count()


def _alert_entries(incident: Incident) -> list[str]:
    return list(incident.timeline.filter(kind=TimelineEntry.Kind.ALERT).order_by("id").values_list("action", flat=True))


# -- Alertmanager ---------------------------------------------------------------------------


def test_alertmanager_payload_opens_one_incident_per_fingerprint(alertmanager, reporter):
    integration, token = alertmanager
    answer = _post(
        token,
        _am_payload(
            _am_alert("aaa111"),
            _am_alert("bbb222", summary="Risk limits feed stale", severity="warning", system="unknown-host"),
            _am_alert("aaa111"),
        ),
    )

    assert answer.status_code == 202, answer.content
    outcomes = answer.json()["alerts"]
    assert [o["outcome"] for o in outcomes] == ["opened", "opened", "joined"]
    assert outcomes[0]["incident"] == outcomes[2]["incident"] != outcomes[1]["incident"]
    assert Incident.objects.count() == 2
    breaker = Incident.objects.get(reference=outcomes[0]["incident"])
    assert breaker.title == "Circuit breaker agent not answering"
    assert breaker.severity.level == 1 and outcomes[0]["severity"] == 1
    assert [s.key for s in breaker.affected_systems.all()] == ["circuit_breaker"]
    assert breaker.detection_method == DetectionMethod.AUTOMATED_ALERT
    assert breaker.reported_by == reporter and breaker.alert_fingerprint == "aaa111"
    assert "No /health answer" in breaker.description and "instance=cb-1:8001" in breaker.description
    feed = Incident.objects.get(reference=outcomes[1]["incident"])
    assert feed.severity.level == 3
    assert not feed.affected_systems.exists()  # an unmapped label names no system
    assert AlertEvent.objects.filter(integration=integration).count() == 3
    assert set(AlertEvent.objects.filter(fingerprint="aaa111").values_list("incident", flat=True)) == {breaker.pk}
    assert breaker.timeline.get(to_state=State.DETECTED).owner_team == "Prometheus"
    assert any("re-fired" in action for action in _alert_entries(breaker))


def test_resent_alert_joins_the_open_incident_never_a_second(alertmanager):
    _, token = alertmanager
    first = _post(token, _am_payload(_am_alert("aaa111"))).json()["alerts"][0]
    again = _post(token, _am_payload(_am_alert("aaa111"))).json()["alerts"][0]

    assert (first["outcome"], again["outcome"]) == ("opened", "joined")
    assert again["incident"] == first["incident"]
    assert Incident.objects.count() == 1
    incident = Incident.objects.get()
    assert _alert_entries(incident)[-1].startswith("Alert re-fired (Prometheus, Alertmanager (tmt-portal))")
    assert AlertEvent.objects.count() == 2


def test_resent_alert_mapping_to_a_worse_severity_raises_the_incident(alertmanager):
    _, token = alertmanager
    _post(token, _am_payload(_am_alert("aaa111", severity="warning")))
    answer = _post(token, _am_payload(_am_alert("aaa111", severity="critical")))

    incident = Incident.objects.get()
    assert answer.json()["alerts"][0]["severity"] == 1
    assert incident.severity.level == 1
    assert incident.timeline.filter(action__startswith="Severity changed from").exists()
    # A milder re-send never lowers it: a person decides that.
    _post(token, _am_payload(_am_alert("aaa111", severity="info")))
    incident.refresh_from_db()
    assert incident.severity.level == 1


def test_resolved_alert_is_noted_and_the_incident_stays_open(alertmanager):
    _, token = alertmanager
    _post(token, _am_payload(_am_alert("aaa111")))
    answer = _post(token, _am_payload(_am_alert("aaa111", status="resolved"), status="resolved"))

    assert answer.status_code == 202
    assert answer.json()["alerts"][0]["outcome"] == "resolved_noted"
    incident = Incident.objects.get()
    assert incident.state == State.DETECTED
    assert "Alert resolved at the source" in _alert_entries(incident)[-1]
    assert "resolve it" in _alert_entries(incident)[-1]


def test_resolved_alert_with_no_open_incident_is_only_recorded(alertmanager):
    _, token = alertmanager
    before = _counts()
    answer = _post(token, _am_payload(_am_alert("zzz999", status="resolved"), status="resolved"))

    assert answer.json()["alerts"] == [
        {"fingerprint": "zzz999", "status": "resolved", "outcome": "recorded", "incident": None, "severity": None}
    ]
    assert _counts() == (before[0] + 1, before[1], before[2])


@pytest.mark.parametrize("ending", ["cancel", "close"])
def test_after_the_incident_ends_the_same_fingerprint_opens_a_new_one(alertmanager, manager, ending):
    _, token = alertmanager
    first = _post(token, _am_payload(_am_alert("aaa111", severity="warning"))).json()["alerts"][0]
    incident = Incident.objects.get(reference=first["incident"])
    if ending == "cancel":
        services.incident_transition(incident=incident, name="cancel", user=manager, reason="Flapping check")
    else:
        # A Sev3 closes without a review; the fingerprint is free once the incident is closed.
        for name in ["acknowledge", "start_investigation"]:
            incident = services.incident_transition(incident=incident, name=name, user=manager)
        for item in incident.checklist_items.filter(gates_containment=True):
            services.checklist_item_set_done(item=item, user=manager, done=True)
        incident = services.incident_transition(incident=incident, name="contain", user=manager)
        incident = services.incident_update(incident=incident, user=manager, resolution_actions="Restarted the agent")
        for name in ["resolve", "close"]:
            incident = services.incident_transition(incident=incident, name=name, user=manager)
        assert incident.state == State.CLOSED

    second = _post(token, _am_payload(_am_alert("aaa111"))).json()["alerts"][0]

    assert second["outcome"] == "opened"
    assert second["incident"] != first["incident"]
    assert Incident.objects.filter(alert_fingerprint="aaa111").count() == 2


# -- Grafana and generic --------------------------------------------------------------------


def test_grafana_payload_opens_an_incident(reporter):
    _, token = _integration(reporter, kind=AlertIntegration.Kind.GRAFANA, name="Grafana")
    body = {
        "receiver": "tmt-portal",
        "status": "firing",
        "orgId": 1,
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "Risk agent latency",
                    "severity": "major",
                    "system": "risk",
                    "grafana_folder": "TMT",
                },
                "annotations": {},
                "startsAt": "2026-11-27T09:51:03.157076+02:00",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://grafana:3000/alerting/grafana/abc/view",
                "fingerprint": "c6eadffa33fcdf37",
                "silenceURL": "http://grafana:3000/alerting/silence/new",
                "dashboardURL": "",
                "panelURL": "",
                "values": {"B": 1843.2, "C": 1},
                "valueString": "[ var='B' labels={} value=1843.2 ], [ var='C' labels={} value=1 ]",
            }
        ],
        "groupLabels": {"alertname": "Risk agent latency"},
        "commonLabels": {"alertname": "Risk agent latency"},
        "commonAnnotations": {},
        "externalURL": "http://grafana:3000/",
        "version": "1",
        "groupKey": '{}/{}:{alertname="Risk agent latency"}',
        "truncatedAlerts": 0,
        "title": "[FIRING:1] Risk agent latency (TMT)",
        "state": "alerting",
        "message": "**Firing**\n\nValue: B=1843.2",
    }
    answer = _post(token, body)

    assert answer.status_code == 202, answer.content
    incident = Incident.objects.get()
    assert incident.title == "Risk agent latency"  # no summary annotation: the alert's name
    assert incident.severity.level == 2
    assert [s.key for s in incident.affected_systems.all()] == ["risk_management"]
    assert "value=1843.2" in incident.description
    assert incident.started_at.isoformat() == "2026-11-27T07:51:03.157076+00:00"
    assert AlertEvent.objects.get().payload["values"] == {"B": 1843.2, "C": 1}


def test_generic_payload_takes_a_severity_level_and_a_system_key(reporter):
    _, token = _integration(reporter, kind=AlertIntegration.Kind.GENERIC, name="Nightly checks")
    answer = _post(
        token,
        {
            "source": "recon-job",
            "fingerprint": "recon-2026-11-27",
            "severity": "2",
            "summary": "Position reconciliation mismatch",
            "system": "execution_engine",
        },
    )

    assert answer.status_code == 202, answer.content
    assert answer.json()["alerts"][0]["outcome"] == "opened"
    incident = Incident.objects.get()
    assert incident.severity.level == 2
    assert [s.key for s in incident.affected_systems.all()] == ["execution_engine"]
    assert "Source: recon-job" in incident.description

    resolved = _post(token, {"fingerprint": "recon-2026-11-27", "summary": "Reconciled", "status": "resolved"})
    assert resolved.json()["alerts"][0]["outcome"] == "resolved_noted"


# -- bad input: 4xx with a clear message, nothing written -----------------------------------


def _assert_refused(answer, before, status=400) -> dict:
    assert answer.status_code == status, answer.content
    assert _counts() == before
    return answer.json()


def test_an_alert_without_a_fingerprint_refuses_the_whole_payload(alertmanager):
    _, token = alertmanager
    before = _counts()
    missing = _am_alert("x")
    del missing["fingerprint"]
    body = _assert_refused(_post(token, _am_payload(_am_alert("aaa111"), missing)), before)

    # Only the bad alert is named, by its position in the list.
    assert list(body["alerts"]) == ["1"]
    assert "needs a fingerprint" in body["alerts"]["1"]["fingerprint"][0]
    # A blank one is as missing.
    body = _assert_refused(_post(token, _am_payload(_am_alert("   "))), before)
    assert "needs a fingerprint" in body["alerts"]["0"]["fingerprint"][0]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (_am_payload(), "alerts", "no alerts"),
        ({"version": "4"}, "alerts", "required"),
        (_am_payload(_am_alert("a", status="pending")), "alerts", "not a valid choice"),
        (_am_payload(_am_alert("a", startsAt="yesterday")), "alerts", "RFC 3339"),
        (_am_payload(_am_alert("a" * 201)), "alerts", "200 characters"),
        ([_am_alert("a")], "non_field_errors", "Expected a dictionary"),
    ],
    ids=["empty-alerts", "no-alerts", "bad-status", "bad-time", "long-fingerprint", "not-an-object"],
)
def test_bad_alertmanager_payloads_are_refused_with_the_field_named(alertmanager, body, field, words):
    _, token = alertmanager
    before = _counts()
    answer = _assert_refused(_post(token, body), before)
    assert words in json.dumps(answer[field])


def test_infinite_number_in_a_payload_is_refused(alertmanager):
    _, token = alertmanager
    before = _counts()
    raw = json.dumps(_am_payload(_am_alert("a"))).replace('"truncatedAlerts": 0', '"truncatedAlerts": 1e999')
    assert "finite" in _assert_refused(_post(token, raw), before)["detail"]


def test_text_postgresql_cannot_store_is_replaced_not_a_reason_to_lose_the_alert(alertmanager):
    _, token = alertmanager
    raw = json.dumps(_am_payload(_am_alert("a", summary="Feed \u0000 stalled", labels={"bad\ud800": "x"})))
    assert _post(token, raw).status_code == 202
    event = AlertEvent.objects.get()
    assert event.summary == "Feed \ufffd stalled"
    assert Incident.objects.get().title == "Feed \ufffd stalled"
    assert "bad?" in event.payload["labels"]


def test_generic_payload_with_an_unknown_field_is_refused(reporter):
    _, token = _integration(reporter, kind=AlertIntegration.Kind.GENERIC, name="Scripts")
    before = _counts()
    body = _assert_refused(_post(token, {"fingerprint": "f1", "summary": "Disk full", "severty": "critical"}), before)
    assert body == {"severty": [body["severty"][0]]}
    assert body["severty"][0].startswith("Unknown field")
    body = _assert_refused(_post(token, {"severty": "critical"}), before)
    assert set(body) == {"severty", "fingerprint", "summary"}  # every problem at once


def test_non_json_content_type_is_415(alertmanager):
    _, token = alertmanager
    before = _counts()
    answer = _post(token, "fingerprint=aaa111", content_type="application/x-www-form-urlencoded")
    assert "Unsupported media type" in _assert_refused(answer, before, status=415)["detail"]


def test_malformed_json_is_400(alertmanager):
    _, token = alertmanager
    before = _counts()
    assert "JSON parse error" in _assert_refused(_post(token, '{"alerts": [}'), before)["detail"]


# -- authentication and throttling ----------------------------------------------------------


def test_wrong_revoked_or_paused_token_is_401(alertmanager, reporter):
    integration, token = alertmanager
    before = _counts()
    body = _am_payload(_am_alert("aaa111"))
    assert _assert_refused(_post(None, body), before, status=401)
    assert _assert_refused(_post("not-a-token", body), before, status=401)

    paused, paused_token = _integration(reporter, name="Paused")
    AlertIntegration.objects.filter(pk=paused.pk).update(active=False)
    assert _assert_refused(_post(paused_token, body), before, status=401)

    assert alert_services.alert_integration_revoke(integration=integration)
    answer = _post(token, body)
    assert "revoked" in _assert_refused(answer, before, status=401)["detail"]
    assert answer["WWW-Authenticate"].startswith("Bearer")


def test_rotated_token_replaces_the_old_one(alertmanager):
    integration, old = alertmanager
    new = alert_services.alert_integration_rotate_token(integration=integration)
    assert _post(old, _am_payload(_am_alert("a"))).status_code == 401
    assert _post(new, _am_payload(_am_alert("a"))).status_code == 202


def test_a_personal_api_token_or_session_is_refused(alertmanager, manager):
    _, raw = api_token_create(user=manager, name="my script")
    before = _counts()
    _assert_refused(_post(raw, _am_payload(_am_alert("aaa111"))), before, status=401)
    client = APIClient()
    client.force_login(manager)
    answer = client.post(ALERTS, data=json.dumps(_am_payload(_am_alert("aaa111"))), content_type="application/json")
    assert _assert_refused(answer, before, status=401)


def test_each_integration_is_throttled_on_its_own(alertmanager, reporter, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "alerts": "2/min"},
    }
    _, token = alertmanager
    _, other = _integration(reporter, name="Other")
    body = _am_payload(_am_alert("aaa111"))
    assert [_post(token, body).status_code for _ in range(2)] == [202, 202]
    before = _counts()
    throttled = _post(token, body)
    assert _assert_refused(throttled, before, status=429)["detail"].startswith("Request was throttled")
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert _post(other, body).status_code == 202


# -- the schema ------------------------------------------------------------------------------


def test_schema_describes_the_three_formats_and_the_answer(manager):
    client = APIClient()
    client.force_login(manager)
    schema = client.get(reverse("api:schema"), {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/alerts/"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    options = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["oneOf"]
    assert {o["$ref"].rsplit("/", 1)[1] for o in options} == {
        "AlertmanagerPayloadRequest",
        "GrafanaPayloadRequest",
        "GenericAlertRequest",
    }
    assert schema["components"]["schemas"]["GenericAlertRequest"]["additionalProperties"] is False
    assert set(operation["responses"]) >= {"202", "400", "401", "415", "429"}
    assert operation["security"] == [{"integrationToken": []}]


# -- concurrency (PostgreSQL) ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("postgres")
def test_concurrent_identical_alerts_open_one_incident(reporter, monkeypatch):
    _, token = _integration(reporter)
    senders = 4
    # Every request looks for an open incident before any opens one, so all but one of them
    # run into the unique constraint and must join the winner's incident.
    everyone_looked = threading.Barrier(senders)
    looked = threading.local()
    lookup = alert_services._open_incident_for

    def look_then_wait(fingerprint):
        found = lookup(fingerprint)
        if not getattr(looked, "done", False):
            looked.done = True
            everyone_looked.wait(timeout=20)
        return found

    monkeypatch.setattr(alert_services, "_open_incident_for", look_then_wait)

    def send(_):
        try:
            return _post(token, _am_payload(_am_alert("same-fingerprint")))
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=senders) as pool:
        answers = list(pool.map(send, range(senders)))

    assert [a.status_code for a in answers] == [202] * senders
    outcomes = sorted(a.json()["alerts"][0]["outcome"] for a in answers)
    assert outcomes == ["joined"] * (senders - 1) + ["opened"]
    incident = Incident.objects.get()
    assert {a.json()["alerts"][0]["incident"] for a in answers} == {incident.reference}
    assert incident.reference.endswith("-001")  # the losers' numbers rolled back with their savepoints
    assert AlertEvent.objects.filter(incident=incident).count() == senders
    assert incident.timeline.filter(kind=TimelineEntry.Kind.ALERT).count() == senders


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_deadlocked_request_is_retried_whole(reporter, monkeypatch, caplog):
    from django.db import OperationalError

    class Deadlock(Exception):
        sqlstate = "40P01"

    _, token = _integration(reporter)
    ingest = alert_services._ingest
    calls = []

    def deadlock_once(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("deadlock detected") from Deadlock()
        return ingest(**kwargs)

    monkeypatch.setattr(alert_services, "_ingest", deadlock_once)
    answer = _post(token, _am_payload(_am_alert("aaa111")))

    assert answer.status_code == 202 and len(calls) == 2
    assert Incident.objects.count() == 1 and AlertEvent.objects.count() == 1
    assert "deadlocked (attempt 1 of 3)" in caplog.text


# -- admin and demo --------------------------------------------------------------------------


@pytest.fixture
def manager_admin(client, manager):
    manager.is_staff = True
    manager.save(update_fields=["is_staff"])
    client.force_login(manager)
    return client


def _add_form(reporter, **overrides) -> dict:
    return {
        "name": "Prometheus prod",
        "kind": "alertmanager",
        "reporter": reporter.pk,
        "system_label": "service",
        "system_map": json.dumps({"cb": "circuit_breaker"}),
        "severity_label": "severity",
        "severity_map": json.dumps({"critical": 1, "warning": "3"}),
        "default_severity": 3,
        "active": "on",
        **overrides,
    }


def _shown_token(answer) -> str:
    return re.search(r'data-testid="issued-token">([^<]+)<', answer.content.decode()).group(1)


def test_manager_adds_an_integration_and_sees_its_token_once(manager_admin, reporter):
    answer = manager_admin.post(reverse("admin:api_alertintegration_add"), _add_form(reporter))

    assert answer.status_code == 200 and "no-store" in answer["Cache-Control"]
    raw = _shown_token(answer)
    # On the page only: not in a flash message, which Django keeps in a cookie or the session.
    assert raw not in str(answer.cookies.get("messages", ""))
    integration = AlertIntegration.objects.get(name="Prometheus prod")
    assert integration.severity_map == {"critical": 1, "warning": 3}
    assert raw not in {integration.key_hash, integration.prefix} and raw.startswith(integration.prefix)
    assert _post(raw, _am_payload(_am_alert("a", system=None, labels={"service": "cb"}))).status_code == 202
    page = manager_admin.get(reverse("admin:api_alertintegration_change", args=[integration.pk]))
    assert raw not in page.content.decode()


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("system_map", json.dumps({"cb": "circuit-breaker"}), "No system with key circuit-breaker"),
        ("severity_map", json.dumps({"critical": "sev1"}), "use a severity level"),
        ("system_map", json.dumps(["cb"]), "JSON object"),
    ],
)
def test_integration_form_refuses_maps_naming_nothing(manager_admin, reporter, field, value, words):
    answer = manager_admin.post(reverse("admin:api_alertintegration_add"), _add_form(reporter, **{field: value}))
    assert answer.status_code == 200
    assert words in " ".join(answer.context["adminform"].form.errors[field])
    assert not AlertIntegration.objects.exists()


def test_rotate_and_revoke_actions(manager_admin, alertmanager):
    integration, old = alertmanager
    changelist = reverse("admin:api_alertintegration_changelist")
    answer = manager_admin.post(changelist, {"action": "rotate_token", "_selected_action": [integration.pk]})
    new = _shown_token(answer)
    assert _post(old, _am_payload(_am_alert("a"))).status_code == 401
    assert _post(new, _am_payload(_am_alert("a"))).status_code == 202

    manager_admin.post(changelist, {"action": "revoke", "_selected_action": [integration.pk]})
    assert _post(new, _am_payload(_am_alert("a"))).status_code == 401
    answer = manager_admin.post(
        changelist, {"action": "rotate_token", "_selected_action": [integration.pk]}, follow=True
    )
    assert any("is revoked" in str(m) for m in answer.context["messages"])
    assert _post(new, _am_payload(_am_alert("a"))).status_code == 401


def test_engineer_sees_alerts_but_not_integrations(client, engineer, alertmanager):
    _post(alertmanager[1], _am_payload(_am_alert("a")))
    engineer.is_staff = True
    engineer.save(update_fields=["is_staff"])
    client.force_login(engineer)
    assert client.get(reverse("admin:api_alertevent_changelist")).status_code == 200
    event = AlertEvent.objects.get()
    assert client.post(reverse("admin:api_alertevent_change", args=[event.pk]), {}).status_code == 403
    assert client.get(reverse("admin:api_alertevent_add")).status_code == 403
    assert client.get(reverse("admin:api_alertintegration_changelist")).status_code == 403


def test_demo_integration_maps_the_agents_labels(db):
    from incidents.devtools.demo import ensure_demo_alert_integration

    integration, token = ensure_demo_alert_integration()
    answer = _post(
        token, _am_payload(_am_alert("demo-1", system=None, severity="high", labels={"service": "market-analysis"}))
    )
    incident = Incident.objects.get(reference=answer.json()["alerts"][0]["incident"])
    assert [s.key for s in incident.affected_systems.all()] == ["market_analysis"]
    assert incident.severity.level == 2
    assert ensure_demo_alert_integration() == (integration, None)  # a second run shows no token


# -- contract fuzz with an integration's token -----------------------------------------------
# The suite-wide fuzz run (test_contract_fuzz.py) authenticates as a person, which this endpoint
# refuses with 401; here schemathesis sends generated bodies (of all three formats, as the
# schema's oneOf allows) with each kind of integration's token, so parsers and service meet them.

_SCHEMA = served_schema()
_fuzz = schemathesis.openapi.from_dict(_SCHEMA).include(path="/api/v1/alerts/")
_fuzz.app = get_wsgi_application()
_PAYLOAD_SCHEMAS = {
    AlertIntegration.Kind.ALERTMANAGER: "AlertmanagerPayloadRequest",
    AlertIntegration.Kind.GRAFANA: "GrafanaPayloadRequest",
    AlertIntegration.Kind.GENERIC: "GenericAlertRequest",
}


def _valid_as(component: str, body) -> bool:
    schema = {"$ref": f"#/components/schemas/{component}", "components": _SCHEMA["components"]}
    return jsonschema.Draft4Validator(schema).is_valid(body) and not _times_past_the_horizon(body)


def _times_past_the_horizon(body) -> bool:
    """A startsAt or endsAt more than a year ahead: refused as a sender's wrong clock (the field's
    description says so; JSON Schema's date-time format has no bounds to say it with)."""
    alerts = body.get("alerts") if isinstance(body, dict) else None
    for alert in alerts if isinstance(alerts, list) else []:
        for name in ("startsAt", "endsAt"):
            value = alert.get(name) if isinstance(alert, dict) else None
            try:
                when = parse_datetime(value) if isinstance(value, str) else None
            except ValueError:
                when = None
            if when is not None and when.tzinfo is not None and reported_problem(when):
                return True
    return False


@pytest.fixture
def integration_tokens(reporter, monkeypatch) -> dict[str, str]:
    from incidents.api.throttling import FailedAuthenticationThrottle

    cache.clear()
    # Schemathesis probes each case with a made-up token too; at `make fuzz`'s length those
    # probes pass the refused-token limit (its 429 is tested on its own, below).
    monkeypatch.setattr(FailedAuthenticationThrottle, "THROTTLE_RATES", {"auth_failures": "1000000/min"})
    return {kind: _integration(reporter, kind=kind, name=f"Fuzz {kind}")[1] for kind in AlertIntegration.Kind}


@_fuzz.parametrize()
@pytest.mark.usefixtures("wsgi_calls_keep_the_test_connection")
@hypothesis.settings(
    max_examples=FUZZ_EXAMPLES * 3,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_generated_alert_payloads_never_fail_and_match_the_schema(case, integration_tokens):
    # The schema's oneOf cannot say that the token picks the format, so each body goes to every
    # kind of integration: where it is valid in that kind's format it must be accepted, and
    # elsewhere refused with a 4xx the schema describes. (An Alertmanager body may hold what
    # Grafana's format types differently, e.g. `panelURL: []`.)
    for kind, component in _PAYLOAD_SCHEMAS.items():
        case.call_and_validate(
            headers={"Authorization": f"Bearer {integration_tokens[kind]}"},
            excluded_checks=[] if _valid_as(component, case.body) else [positive_data_acceptance],
        )


def test_integration_reporter_must_be_a_service_account(manager_admin, manager):
    # A person (here the manager, who can log in) cannot be made the author of alert entries.
    answer = manager_admin.post(reverse("admin:api_alertintegration_add"), _add_form(manager))
    assert answer.status_code == 200
    assert "reporter" in answer.context["adminform"].form.errors
    assert not AlertIntegration.objects.exists()


def test_a_re_sent_alert_never_lowers_an_incident_raised_by_hand(alertmanager, manager):
    integration, raw = alertmanager
    _post(raw, _am_payload(_am_alert("disk", severity="warning")))
    incident = Incident.objects.get(alert_fingerprint="disk")
    services.incident_update(incident=incident, user=manager, severity=SeverityLevel.objects.get(level=1))
    _post(raw, _am_payload(_am_alert("disk", severity="warning")))
    incident.refresh_from_db()
    assert incident.severity.level == 1


def test_guessed_tokens_from_an_address_never_stop_a_valid_integration_there(alertmanager, monkeypatch):
    from incidents.api.throttling import FailedAuthenticationThrottle

    monkeypatch.setattr(FailedAuthenticationThrottle, "THROTTLE_RATES", {"auth_failures": "3/min"})
    _, raw = alertmanager
    guesses = [_post(f"guess-{n}", {"alerts": []}).status_code for n in range(4)]
    assert guesses == [401, 401, 401, 429]
    answer = _post(raw, {"alerts": [_am_alert("fp-after-guessing")]})
    assert answer.status_code in (200, 201, 202), answer.content
    assert AlertEvent.objects.filter(fingerprint="fp-after-guessing").exists()
