"""The trading-agent simulator, driven over real HTTP on free ports (no database involved)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from io import StringIO
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from incidents.devtools.simulator import (
    Fault,
    FaultError,
    FaultMode,
    FleetConfig,
    SimulatorControlClient,
    SimulatorEndpoints,
    SimulatorServer,
    agent_ports_from_base,
)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
STOP_PAYLOAD = {"reason": "system_emergency", "triggered_by": "ops_team", "stop_all_trading": True}
FLEET = FleetConfig(size=40, base_latency_ms=20, slow_targets=frozenset({7, 19}), slow_latency_ms=300)


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    server = SimulatorServer(agent_ports=agent_ports_from_base(0), control_port=0, fleet=FLEET, fleet_port=0)
    server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # One client for the module: building an httpx client (its TLS context) costs ~0.1 s. No
    # keep-alive, so a connection pooled before a "down" fault can never mask the refusal.
    with httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        yield client


@pytest.fixture
def endpoints(simulator: SimulatorServer) -> Iterator[SimulatorEndpoints]:
    # One simulator for the module (starting it is the slow part); each test starts clean.
    simulator.reset()
    yield simulator.endpoints
    simulator.reset()


@pytest.fixture
def cb_url(endpoints: SimulatorEndpoints) -> str:
    return endpoints.agent_url("circuit_breaker")


def set_fault(endpoints: SimulatorEndpoints, agent: str, payload: object) -> httpx.Response:
    return httpx.post(f"{endpoints.control_url}/faults/{agent}", json=payload, timeout=5)


def test_health_reports_each_agent_in_the_seed_shape(http: httpx.Client, endpoints: SimulatorEndpoints) -> None:
    assert set(endpoints.agent_urls) == {"circuit_breaker", "market_analysis", "risk_management", "execution_engine"}
    for name, url in endpoints.agent_urls.items():
        response = http.get(f"{url}/health")
        assert response.status_code == 200
        body = response.json()
        assert body["agent"] == name
        assert body["status"] == "healthy"
        assert isinstance(body["latency_ms"], float)
        assert datetime.fromisoformat(body["checked_at"]).tzinfo is not None
        assert body["trading_halted"] is False


def test_default_ports_follow_the_seed() -> None:
    assert agent_ports_from_base(8001) == {
        "circuit_breaker": 8001,
        "market_analysis": 8002,
        "risk_management": 8003,
        "execution_engine": 8004,
    }


def test_down_refuses_connections_until_cleared_on_the_same_port(
    http: httpx.Client, endpoints: SimulatorEndpoints, cb_url: str
) -> None:
    assert set_fault(endpoints, "circuit_breaker", {"mode": "down"}).json()["listening"] is False
    with pytest.raises(httpx.ConnectError):
        http.get(f"{cb_url}/health")
    # The other agents are unaffected.
    assert http.get(f"{endpoints.agent_url('risk_management')}/health").status_code == 200

    assert set_fault(endpoints, "circuit_breaker", {"mode": "ok"}).json()["listening"] is True
    assert http.get(f"{cb_url}/health").status_code == 200


def test_slow_delays_every_response_by_at_least_the_injected_time(
    http: httpx.Client, endpoints: SimulatorEndpoints, cb_url: str
) -> None:
    set_fault(endpoints, "circuit_breaker", {"mode": "slow", "delay_ms": 300})
    started = time.perf_counter()
    health = http.get(f"{cb_url}/health")
    health_elapsed = time.perf_counter() - started
    started = time.perf_counter()
    status = http.get(f"{cb_url}/api/v1/emergency-status")
    status_elapsed = time.perf_counter() - started

    assert health.status_code == status.status_code == 200
    assert health_elapsed >= 0.3
    assert status_elapsed >= 0.3
    assert health.json()["latency_ms"] >= 300


def test_flapping_alternates_failing_and_healthy(
    http: httpx.Client, endpoints: SimulatorEndpoints, cb_url: str
) -> None:
    set_fault(endpoints, "circuit_breaker", {"mode": "flapping"})
    responses = [http.get(f"{cb_url}/health") for _ in range(4)]
    assert [r.status_code for r in responses] == [503, 200, 503, 200]
    assert [r.json()["status"] for r in responses] == ["unhealthy", "healthy"] * 2


def test_http500_fails_every_endpoint(http: httpx.Client, endpoints: SimulatorEndpoints, cb_url: str) -> None:
    set_fault(endpoints, "circuit_breaker", {"mode": "http500"})
    assert http.get(f"{cb_url}/health").status_code == 500
    assert http.post(f"{cb_url}/api/v1/emergency-stop", json=STOP_PAYLOAD).status_code == 500


def test_malformed_answers_200_with_a_body_that_is_not_json(
    http: httpx.Client, endpoints: SimulatorEndpoints, cb_url: str
) -> None:
    set_fault(endpoints, "circuit_breaker", {"mode": "malformed"})
    response = http.get(f"{cb_url}/health")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_emergency_stop_halts_trading_until_resumed(http: httpx.Client, cb_url: str) -> None:
    stop = http.post(f"{cb_url}/api/v1/emergency-stop", json=STOP_PAYLOAD)
    assert stop.status_code == 200
    stopped = stop.json()
    assert stopped["status"] == "stopped"
    assert stopped["trading_halted"] is True
    assert stopped["stop_id"]
    datetime.fromisoformat(stopped["stopped_at"])

    status = http.get(f"{cb_url}/api/v1/emergency-status").json()
    assert status["trading_halted"] is True
    assert status["stopped_at"] == stopped["stopped_at"]
    assert status["reason"] == "system_emergency"
    assert status["triggered_by"] == "ops_team"

    # A retried stop is not a conflict: same stop, flagged as already in force.
    again = http.post(f"{cb_url}/api/v1/emergency-stop", json=STOP_PAYLOAD).json()
    assert again["stop_id"] == stopped["stop_id"]
    assert again["already_halted"] is True

    resumed = http.post(f"{cb_url}/api/v1/resume-trading")
    assert resumed.status_code == 200
    assert resumed.json()["trading_halted"] is False
    status = http.get(f"{cb_url}/api/v1/emergency-status").json()
    assert status["trading_halted"] is False
    assert status["stopped_at"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"triggered_by": "ops_team", "stop_all_trading": True}, "reason"),
        (
            {"reason": "system_emergency", "triggered_by": " ", "stop_all_trading": True},
            "triggered_by",
        ),
        (
            {"reason": "system_emergency", "triggered_by": "ops_team", "stop_all_trading": "yes"},
            "stop_all_trading",
        ),
        ({"reason": 42, "triggered_by": "ops_team", "stop_all_trading": True}, "reason"),
        ({"reason": "system_emergency", "triggered_by": "ops_team"}, "stop_all_trading"),
        (b"{not json", "body"),
        (b"", "body"),
        ([STOP_PAYLOAD], "body"),
    ],
)
def test_invalid_stop_payload_is_rejected_naming_the_field(
    http: httpx.Client, cb_url: str, body: object, field: str
) -> None:
    if isinstance(body, bytes):
        response = http.post(
            f"{cb_url}/api/v1/emergency-stop",
            content=body,
            headers={"content-type": "application/json"},
        )
    else:
        response = http.post(f"{cb_url}/api/v1/emergency-stop", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["detail"]
    # Nothing was halted by a rejected request.
    assert http.get(f"{cb_url}/api/v1/emergency-status").json()["trading_halted"] is False


@pytest.mark.parametrize(
    ("fault", "expected_status"),
    [({"mode": "refuse_stop"}, 503), ({"mode": "refuse_stop", "status": 409}, 409)],
)
def test_refuse_stop_answers_an_error_and_halts_nothing(
    http: httpx.Client,
    endpoints: SimulatorEndpoints,
    cb_url: str,
    fault: dict,
    expected_status: int,
) -> None:
    set_fault(endpoints, "circuit_breaker", fault)
    response = http.post(f"{cb_url}/api/v1/emergency-stop", json=STOP_PAYLOAD)
    assert response.status_code == expected_status
    assert response.json()["error"] == "stop_refused"
    assert http.get(f"{cb_url}/health").status_code == 200
    assert http.get(f"{cb_url}/api/v1/emergency-status").json()["trading_halted"] is False


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"mode": "sideways"}, "mode"),
        ({}, "mode"),
        ({"mode": "slow"}, "delay_ms"),
        ({"mode": "slow", "delay_ms": -5}, "delay_ms"),
        ({"mode": "slow", "delay_ms": "800"}, "delay_ms"),
        ({"mode": "slow", "delay": 800}, "delay"),
        ({"mode": "down", "delay_ms": 100}, "delay_ms"),
        ({"mode": "http500", "status": 409}, "status"),
        ({"mode": "refuse_stop", "status": 200}, "status"),
        (["down"], "body"),
    ],
)
def test_control_rejects_bad_fault_input_with_400(endpoints: SimulatorEndpoints, payload: object, field: str) -> None:
    response = set_fault(endpoints, "circuit_breaker", payload)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["detail"]
    assert SimulatorControlClient(endpoints.control_url).faults()["circuit_breaker"] == {"mode": "ok"}


def test_control_rejects_non_json_and_unknown_agents(http: httpx.Client, endpoints: SimulatorEndpoints) -> None:
    not_json = http.post(f"{endpoints.control_url}/faults/circuit_breaker", content=b"down")
    assert not_json.status_code == 400
    assert not_json.json()["field"] == "body"

    unknown = set_fault(endpoints, "order_router", {"mode": "down"})
    assert unknown.status_code == 404
    assert "circuit_breaker" in unknown.json()["detail"]


def test_pager_takes_the_portals_pages_and_lists_the_latest(http: httpx.Client, endpoints: SimulatorEndpoints) -> None:
    # The SMS/voice provider contract of incidents/notifications/services.py, for `make run`.
    pager = f"{endpoints.control_url}/pager"
    page = {
        "to": "+447700900123",
        "channel": "voice",
        "body": "Sev1 TMT-INC-1: risk agent down",
        "reference": "TMT-INC-1/7",
    }
    answer = http.post(pager, json=page)
    assert answer.status_code == 200 and answer.json()["status"] == "accepted"
    latest = http.get(pager).json()["pages"][0]
    assert {k: latest[k] for k in page} == page
    for bad, field in [({**page, "channel": "fax"}, "channel"), ({**page, "to": ""}, "to"), ([1], "body")]:
        refused = http.post(pager, json=bad)
        assert refused.status_code == 400 and refused.json()["field"] == field


def test_control_lists_faults_and_reset_restores_everything(
    http: httpx.Client, endpoints: SimulatorEndpoints, cb_url: str
) -> None:
    client = SimulatorControlClient(endpoints.control_url)
    client.inject("market-analysis", "slow:150")
    client.inject("circuit_breaker", "down")
    http.post(f"{endpoints.agent_url('risk_management')}/api/v1/emergency-stop", json=STOP_PAYLOAD)
    assert client.faults() == {
        "circuit_breaker": {"mode": "down"},
        "market_analysis": {"mode": "slow", "delay_ms": 150.0},
        "risk_management": {"mode": "ok"},
        "execution_engine": {"mode": "ok"},
    }

    client.reset()

    assert {fault["mode"] for fault in client.faults().values()} == {"ok"}
    assert http.get(f"{cb_url}/health").status_code == 200
    status = http.get(f"{endpoints.agent_url('risk_management')}/api/v1/emergency-status")
    assert status.json()["trading_halted"] is False


def test_command_inject_and_clear_steer_a_running_simulator(
    http: httpx.Client, endpoints: SimulatorEndpoints, cb_url: str
) -> None:
    out = StringIO()
    call_command(
        "simulate_agents",
        inject=["circuit_breaker=down", "risk_management=refuse_stop:409"],
        control_url=endpoints.control_url,
        stdout=out,
    )
    assert "circuit_breaker: down" in out.getvalue()
    with pytest.raises(httpx.ConnectError):
        http.get(f"{cb_url}/health")
    refused = http.post(f"{endpoints.agent_url('risk_management')}/api/v1/emergency-stop", json=STOP_PAYLOAD)
    assert refused.status_code == 409

    # Argument-list form, as typed on a shell.
    call_command(
        "simulate_agents",
        "--clear",
        "circuit_breaker",
        "--control-url",
        endpoints.control_url,
        stdout=StringIO(),
    )
    assert http.get(f"{cb_url}/health").status_code == 200

    listed = StringIO()
    call_command("simulate_agents", "--list-faults", "--control-url", endpoints.control_url, stdout=listed)
    assert "risk_management: refuse_stop status 409" in listed.getvalue()


@pytest.mark.parametrize(
    ("inject", "message"),
    [
        ("circuit_breaker=sideways", "unknown mode"),
        ("circuit_breaker", "NAME=VALUE"),
        ("circuit_breaker=down:5", "takes no"),
    ],
)
def test_command_rejects_bad_inject_before_sending_anything(
    endpoints: SimulatorEndpoints, inject: str, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command(
            "simulate_agents",
            inject=["market_analysis=down", inject],
            control_url=endpoints.control_url,
        )
    assert SimulatorControlClient(endpoints.control_url).faults()["market_analysis"] == {"mode": "ok"}


def test_command_reports_an_unknown_agent_and_a_missing_simulator(
    endpoints: SimulatorEndpoints,
) -> None:
    with pytest.raises(CommandError, match="unknown agent"):
        call_command("simulate_agents", inject=["order_router=down"], control_url=endpoints.control_url)
    # While the circuit breaker is down its port is an address known to refuse connections.
    SimulatorControlClient(endpoints.control_url).inject("circuit_breaker", "down")
    dead_url = endpoints.agent_url("circuit_breaker")
    with pytest.raises(CommandError, match="no simulator control endpoint"):
        call_command("simulate_agents", reset=True, control_url=dead_url)


def test_fault_spec_parsing() -> None:
    assert Fault.parse("slow:800") == Fault(mode=FaultMode.SLOW, delay_ms=800)
    assert Fault.parse("refuse_stop:409").status == 409
    assert Fault.parse("ok") == Fault()
    with pytest.raises(FaultError):
        Fault.parse("slow:fast")


def test_fleet_serves_many_targets_with_base_and_slow_latency(
    http: httpx.Client, endpoints: SimulatorEndpoints
) -> None:
    urls = endpoints.fleet_health_urls()
    assert len(urls) == FLEET.size

    async def poll_all() -> list[tuple[int, float, dict]]:
        async with httpx.AsyncClient(timeout=5) as client:

            async def poll(url: str) -> tuple[int, float, dict]:
                started = time.perf_counter()
                response = await client.get(url)
                return response.status_code, time.perf_counter() - started, response.json()

            return await asyncio.gather(*(poll(url) for url in urls))

    started = time.perf_counter()
    results = asyncio.run(poll_all())
    total = time.perf_counter() - started

    assert all(status == 200 for status, _, _ in results)
    for target, (_, elapsed, body) in enumerate(results):
        assert body["target"] == target
        if target in FLEET.slow_targets:
            assert elapsed >= 0.3
        else:
            assert elapsed >= 0.02
    # Served concurrently: the whole sweep costs about one slow target, not the sum.
    assert total < 2.0
    assert http.get(f"{endpoints.fleet_url}/agents/{FLEET.size}/health").status_code == 404


def test_fleet_slow_fraction_is_spread_evenly() -> None:
    fleet = FleetConfig.with_slow_fraction(1000, 0.05, base_latency_ms=50, slow_latency_ms=1000)
    assert len(fleet.slow_targets) == 50
    assert sorted(fleet.slow_targets)[:3] == [19, 39, 59]
    assert fleet.latency_ms_for(19) == 1000
    assert fleet.latency_ms_for(20) == 50


def test_context_manager_starts_and_stops_cleanly(http: httpx.Client) -> None:
    with SimulatorServer(agent_ports={"execution_engine": 0}, control_port=None) as started:
        url = started.agent_url("execution_engine")
        assert http.get(f"{url}/health").json()["agent"] == "execution_engine"
    with pytest.raises(httpx.ConnectError):
        http.get(f"{url}/health")


def test_command_serves_until_sigterm_then_exits_cleanly(http: httpx.Client) -> None:
    process = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter and manage.py
        [
            sys.executable,
            "manage.py",
            "simulate_agents",
            "--base-port",
            "0",
            "--control-port",
            "0",
            "--quiet",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        urls: dict[str, str] = {}
        assert process.stdout is not None
        deadline = time.monotonic() + 10
        for line in process.stdout:
            if match := re.match(r"(?:agent )?(\w+) listening on (\S+)", line):
                urls[match[1]] = match[2]
            if line.startswith("press Ctrl-C") or time.monotonic() > deadline:
                break
        assert set(urls) == {"circuit_breaker", "market_analysis", "risk_management", "execution_engine", "control"}
        assert http.get(f"{urls['circuit_breaker']}/health").json()["status"] == "healthy"

        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
        assert process.returncode == 0, stderr
        assert "simulator stopped" in stdout
        with pytest.raises(httpx.ConnectError):
            http.get(f"{urls['circuit_breaker']}/health")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_pager_drops_a_resent_page_with_the_same_idempotency_key(
    http: httpx.Client, endpoints: SimulatorEndpoints
) -> None:
    pager = f"{endpoints.control_url}/pager"
    page = {"to": "+447700900124", "channel": "sms", "body": "Sev1 TMT-INC-2", "reference": "TMT-INC-2/8"}
    before = len(http.get(pager).json()["pages"])
    first = http.post(pager, json=page, headers={"Idempotency-Key": "tmt-notification-8"})
    again = http.post(pager, json=page, headers={"Idempotency-Key": "tmt-notification-8"})
    other = http.post(pager, json=page, headers={"Idempotency-Key": "tmt-notification-9"})
    assert first.status_code == again.status_code == other.status_code == 200
    assert again.json() == {**first.json(), "replayed": True}
    assert other.json()["id"] != first.json()["id"]
    pages = http.get(pager).json()["pages"]
    assert len(pages) == before + 2, "the re-send was paged a second time"
    assert [p["idempotency_key"] for p in pages[:2]] == ["tmt-notification-9", "tmt-notification-8"]
