"""Health target kinds against real services: HTTP with headers and expectations (a test server
that checks the header), PostgreSQL (the CI database), TCP (a real listener), Redis (CI's Redis);
each with its timeout. The admin's per-kind validation, the seeded trading targets, and the health
page keeping the portal's own infrastructure apart from the trading systems."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.urls import reverse

from incidents.devtools.simulator import SimulatorServer
from incidents.models import System
from incidents.monitoring import poller
from incidents.monitoring import services as health
from incidents.monitoring.admin import HealthTargetForm
from incidents.monitoring.models import HealthSample, HealthTarget
from tests.health_targets import point_trading_database_at_portal

TOKEN_ENV = "TMT_TEST_ENGINE_TOKEN"
TOKEN = "s3cret-token"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path == "/slow":
            time.sleep(1.5)
        if self.path == "/text":
            body, kind = b"engine ready: 12 venues connected", "text/plain"
        elif self.headers.get("X-Api-Key") != TOKEN:
            body, kind = json.dumps({"detail": "bad key"}).encode(), "application/json"
            self.send_response(401)
            self.send_header("Content-Type", kind)
            self.end_headers()
            self.wfile.write(body)
            return
        else:
            body = json.dumps({"engine": {"state": "running", "checks": [{"ok": True}]}}).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """Accepts connections and never says a word: a hung database or Redis."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def check(**fields) -> poller.ProbeResult:
    fields.setdefault("url", "")
    fields.setdefault("timeout_s", 1.0)
    return poller.poll([poller.Probe(target_id=1, **fields)])[0]


# -- HTTP --------------------------------------------------------------------------------------


def test_http_sends_headers_from_the_environment(http_server, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    ok = check(
        url=http_server + "/health",
        headers=(("X-Api-Key", TOKEN_ENV),),
        json_path="engine.state",
        json_expected="running",
    )
    assert ok.healthy and ok.status_code == 200, ok.error
    monkeypatch.setenv(TOKEN_ENV, "wrong")
    refused = check(url=http_server + "/health", headers=(("X-Api-Key", TOKEN_ENV),), expected_status=200)
    assert not refused.healthy and refused.error == "unhealthy: HTTP 401, expected 200"


def test_http_with_its_secret_unset_fails_without_sending(http_server, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    result = check(url=http_server + "/health", headers=(("X-Api-Key", TOKEN_ENV),), expected_status=200)
    assert not result.healthy
    assert result.error == f"configuration: environment variable {TOKEN_ENV} is not set"
    assert result.status_code is None


def test_http_json_path_and_expected_status(http_server, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    headers = (("X-Api-Key", TOKEN_ENV),)
    wrong = check(url=http_server + "/health", headers=headers, json_path="engine.state", json_expected="stopped")
    assert not wrong.healthy and wrong.error == "unhealthy: engine.state is 'running', expected 'stopped'"
    missing = check(url=http_server + "/health", headers=headers, json_path="engine.mode", json_expected="x")
    assert not missing.healthy and missing.error == "unhealthy: no 'engine.mode' in the answer"
    indexed = check(url=http_server + "/health", headers=headers, json_path="engine.checks.0.ok", json_expected="true")
    assert indexed.healthy, indexed.error
    expect_401 = check(url=http_server + "/health", expected_status=401)
    assert expect_401.healthy, "a target may expect a status other than 2xx"


def test_http_body_pattern(http_server):
    assert check(url=http_server + "/text", body_pattern=r"ready: \d+ venues").healthy
    no = check(url=http_server + "/text", body_pattern=r"^degraded")
    assert not no.healthy and no.error == "unhealthy: the body does not match /^degraded/"


def test_http_without_expectations_still_wants_status_healthy(http_server):
    """Targets from before kinds keep their check: a 2xx saying {"status": "healthy"}."""
    result = check(url=http_server + "/text")
    assert not result.healthy and result.error == "unhealthy: malformed response"


def test_http_timeout(http_server):
    started = time.perf_counter()
    result = check(url=http_server + "/slow", timeout_s=0.3, expected_status=200)
    assert time.perf_counter() - started < 1.2
    assert not result.healthy and result.error == "timeout: no answer within 0.3 s"


# -- PostgreSQL ----------------------------------------------------------------------------------


def _pg(**overrides) -> dict:
    db = connection.settings_dict
    return {
        "kind": "postgres",
        "host": db["HOST"] or "127.0.0.1",
        "port": int(db["PORT"] or 5432),
        "database": db["NAME"],
        "username": db["USER"] or "postgres",
    } | overrides


@pytest.mark.django_db
def test_postgres_connects_and_selects_one():
    result = check(**_pg())
    assert result.healthy, result.error
    assert result.latency_ms is not None


@pytest.mark.django_db
def test_postgres_faults(silent_listener, closed_port, monkeypatch):
    missing = check(**_pg(database="tmt_mon_no_such_database"))
    assert not missing.healthy and "does not exist" in missing.error
    refused = check(**_pg(port=closed_port))
    assert not refused.healthy and refused.error.startswith("unreachable:")
    monkeypatch.delenv("TMT_TEST_PG_PASSWORD", raising=False)
    unset = check(**_pg(password_env="TMT_TEST_PG_PASSWORD"))
    assert unset.error == "configuration: environment variable TMT_TEST_PG_PASSWORD is not set"
    started = time.perf_counter()
    hung = check(**_pg(port=silent_listener), timeout_s=0.5)
    assert time.perf_counter() - started < 1.5
    assert not hung.healthy and hung.error.startswith("timeout:")


# -- TCP and Redis --------------------------------------------------------------------------------


def test_tcp_connects_to_a_listener_and_reports_a_refusal(silent_listener, closed_port):
    assert check(kind="tcp", host="127.0.0.1", port=silent_listener).healthy
    refused = check(kind="tcp", host="127.0.0.1", port=closed_port)
    assert not refused.healthy and refused.error == "unreachable: connection refused"


def test_redis_ping(silent_listener, closed_port):
    assert check(kind="redis", host="127.0.0.1", port=6379).healthy
    refused = check(kind="redis", host="127.0.0.1", port=closed_port)
    assert not refused.healthy and refused.error.startswith("unreachable:")
    started = time.perf_counter()
    hung = check(kind="redis", host="127.0.0.1", port=silent_listener, timeout_s=0.4)
    assert time.perf_counter() - started < 1.5
    assert not hung.healthy and hung.error.startswith("timeout:")


# -- through the service: the seeded trading targets --------------------------------------------


@pytest.mark.django_db
def test_seeded_trading_targets_are_checked_by_kind():
    engine = HealthTarget.objects.get(name="Execution Engine")
    assert (engine.kind, engine.json_path, engine.json_expected, engine.system.key) == (
        "http",
        "status",
        "healthy",
        "execution_engine",
    )
    database = HealthTarget.objects.get(name="Trading Database")
    assert (database.kind, database.system.key, database.password_env) == (
        "postgres",
        "database",
        "TMT_TRADING_DB_PASSWORD",
    )
    # The agents seeded before kinds existed keep their old check.
    agent = HealthTarget.objects.get(name="Circuit Breaker Agent")
    assert (agent.kind, agent.json_path, agent.expected_status) == ("http", "", None)

    server = SimulatorServer(agent_ports={"execution_engine": 0}, control_port=None)
    endpoints = server.start_in_thread()
    try:
        HealthTarget.objects.exclude(pk__in=[engine.pk, database.pk]).update(enabled=False)
        HealthTarget.objects.filter(pk=engine.pk).update(url=endpoints.agent_url("execution_engine") + "/health")
        point_trading_database_at_portal()
        HealthTarget.objects.update(next_check_at=None)
        summary = health.health_poll_due()
    finally:
        server.stop()
    assert summary.polled == 2 and summary.failed == 0
    assert HealthSample.objects.filter(ok=True).count() == 2


# -- the admin's validation -----------------------------------------------------------------------


ENGINE_URL = "http://engine.example/health"
HTTP = {"kind": "http", "host": "", "url": ENGINE_URL}


def _form_data(**overrides) -> dict:
    data = {
        "name": "Trading Redis",
        "kind": "redis",
        "url": "",
        "headers": "{}",
        "expected_status": "",
        "json_path": "",
        "json_expected": "",
        "body_pattern": "",
        "host": "127.0.0.1",
        "port": "",
        "database": "",
        "username": "",
        "password_env": "",
        "system": System.objects.get(key="message_broker").pk,
        "interval": "00:00:10",
        "timeout": "00:00:02",
        "failures_before_down": 3,
        "latency_threshold_ms": 500,
        "enabled": "on",
    }
    return data | overrides


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "errors"),
    [
        ({"kind": "postgres", "host": ""}, {"host", "database", "username"}),
        ({"kind": "tcp"}, {"port"}),
        ({"kind": "redis", "host": ""}, {"host"}),
        ({"kind": "http", "host": ""}, {"url"}),
        (
            {**HTTP, "headers": '{"X-Key": "s3cret value"}'},
            {"headers"},
        ),
        ({**HTTP, "headers": '["X-Key"]'}, {"headers"}),
        (
            {**HTTP, "json_expected": "healthy"},
            {"json_path"},
        ),
        ({**HTTP, "json_path": "status"}, {"json_expected"}),
        (
            {**HTTP, "body_pattern": "(unclosed"},
            {"body_pattern"},
        ),
        (
            {**HTTP, "expected_status": "99"},
            {"expected_status"},
        ),
        ({"url": ENGINE_URL}, {"url"}),
        ({"password_env": "hunter2 is my password"}, {"password_env"}),
        ({"port": "70000"}, {"port"}),
    ],
)
def test_the_admin_form_gives_field_errors_per_kind(change, errors):
    before = HealthTarget.objects.count()
    form = HealthTargetForm(data=_form_data(**change))
    assert not form.is_valid()
    assert set(form.errors) == errors, form.errors
    assert HealthTarget.objects.count() == before


@pytest.mark.django_db
def test_the_admin_form_accepts_each_kind():
    assert HealthTargetForm(data=_form_data()).is_valid()
    assert HealthTargetForm(data=_form_data(kind="tcp", port="443", name="Broker API")).is_valid()
    pg = _form_data(kind="postgres", database="tmt", username="tmt_user", password_env="TMT_TRADING_DB_PASSWORD")
    assert HealthTargetForm(data=pg).is_valid()
    http = _form_data(
        kind="http", host="", url=ENGINE_URL, headers='{"Authorization": "TMT_ENGINE_TOKEN"}', name="Engine"
    )
    form = HealthTargetForm(data=http)
    assert form.is_valid(), form.errors
    saved = form.save()
    assert saved.headers == {"Authorization": "TMT_ENGINE_TOKEN"}  # the variable's name, never a value


# -- the health page --------------------------------------------------------------------------


def _section(html: str, testid: str) -> str:
    start = html.index(f'data-testid="{testid}"')
    return html[start : html.index("</section>", start)]


@pytest.mark.django_db
def test_the_health_page_keeps_the_portal_apart_from_the_trading_systems(engineer_client):
    html = engineer_client.get(reverse("incidents:health")).content.decode()
    trading = _section(html, "trading-systems")
    portal = _section(html, "portal-infrastructure")
    assert 'data-target="Execution Engine"' in trading and 'data-target="Trading Database"' in trading
    assert "PostgreSQL (connect + SELECT 1)" in trading
    assert "Portal database" not in trading and "Portal message broker" not in trading
    assert "Portal database" in portal and "Portal message broker (Celery)" in portal
    assert 'data-testid="duties"' in portal and "Celery beat" in portal
    assert "data-target=" not in portal


@pytest.mark.django_db
def test_the_admin_shows_a_bad_target_with_its_field_errors(admin_client):
    target = HealthTarget.objects.get(name="Trading Database")
    assert admin_client.get(reverse("admin:monitoring_healthtarget_change", args=[target.pk])).status_code == 200
    before = HealthTarget.objects.count()
    data = {**_form_data(kind="postgres", host=""), "headers": "{}"}
    response = admin_client.post(reverse("admin:monitoring_healthtarget_add"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"host", "database", "username"}
    assert HealthTarget.objects.count() == before


@pytest.mark.django_db
def test_the_demo_points_the_trading_database_at_the_portals_postgres():
    from incidents.devtools.demo import ensure_demo_trading_database

    target = HealthTarget.objects.get(name="Trading Database")
    assert target.database == "tmt_production"  # the seed's psql command, until configured
    ensure_demo_trading_database()
    target.refresh_from_db()
    assert target.database == connection.settings_dict["NAME"]
    assert poller.poll([health.health_probe(target)])[0].healthy
