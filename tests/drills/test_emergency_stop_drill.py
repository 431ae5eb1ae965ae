"""The emergency-stop drill against the agent simulator, over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.core.exceptions import ValidationError

from drills import services
from drills.models import DrillStopAttempt
from incidents.devtools.simulator import SimulatorServer
from incidents.models import TimelineEntry

from .conftest import schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def simulator(settings) -> Iterator[SimulatorServer]:
    server = SimulatorServer(agent_ports={"circuit_breaker": 0}, control_port=None)
    endpoints = server.start_in_thread()
    settings.TMT_DRILL_AGENT_URL = endpoints.agent_url("circuit_breaker")
    yield server
    server.stop()


def _status(settings) -> dict:
    return httpx.get(f"{settings.TMT_DRILL_AGENT_URL}/api/v1/emergency-status", timeout=5).json()


def test_time_from_start_to_verified_stop_is_measured_and_recorded(simulator, settings, trainer_user, team):
    drill = schedule(trainer_user, key="trading-emergency-stop", participants=[team["oncall2"]])
    with pytest.raises(ValidationError, match="Start the drill first"):
        services.drill_emergency_stop(drill=drill, user=team["oncall2"])
    drill = services.drill_start(drill=drill, user=trainer_user)

    attempt = services.drill_emergency_stop(drill=drill, user=team["oncall2"])

    assert attempt.outcome == DrillStopAttempt.Outcome.VERIFIED
    assert attempt.response["status"] == "stopped" and attempt.status_response["trading_halted"] is True
    drill.refresh_from_db()
    assert drill.emergency_stop_verified_at is not None
    assert drill.time_to_stop == drill.emergency_stop_verified_at - drill.started_at
    target = drill.targets.get(measure="emergency_stop")
    assert target.actual == drill.time_to_stop and target.met  # well within 5 minutes
    entry = drill.incident.timeline.get(kind=TimelineEntry.Kind.EMERGENCY_STOP)
    assert "Trading halted (verified)" in entry.action and "to verified stop" in entry.action
    # The drill leaves the simulator trading again.
    assert _status(settings)["trading_halted"] is False

    # A second stop is recorded but does not move the measurement.
    first = drill.time_to_stop
    services.drill_emergency_stop(drill=drill, user=trainer_user)
    drill.refresh_from_db()
    assert drill.time_to_stop == first and drill.stop_attempts.count() == 2


def test_a_refused_stop_is_recorded_and_measures_nothing(simulator, trainer_user, team):
    drill = services.drill_start(
        drill=schedule(trainer_user, key="trading-emergency-stop", participants=[team["oncall2"]]), user=trainer_user
    )
    simulator.inject_fault("circuit_breaker", "refuse_stop:409")
    attempt = services.drill_emergency_stop(drill=drill, user=team["oncall2"])
    assert attempt.outcome == DrillStopAttempt.Outcome.REFUSED and "409" in attempt.detail
    drill.refresh_from_db()
    assert drill.time_to_stop is None and drill.targets.get(measure="emergency_stop").actual is None

    simulator.clear_fault("circuit_breaker")
    assert services.drill_emergency_stop(drill=drill, user=team["oncall2"]).outcome == "verified"
    drill.refresh_from_db()
    assert drill.time_to_stop is not None


class _NotASimulator(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _NotASimulator.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "healthy", "version": "circuit-breaker/2.3"}')

    def do_POST(self) -> None:  # noqa: N802
        _NotASimulator.hits.append("POST " + self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_drill_never_sends_a_stop_to_something_that_is_not_the_simulator(settings, trainer_user, team):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotASimulator)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.TMT_DRILL_AGENT_URL = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        drill = services.drill_start(
            drill=schedule(trainer_user, key="trading-emergency-stop", participants=[team["oncall2"]]),
            user=trainer_user,
        )
        attempt = services.drill_emergency_stop(drill=drill, user=trainer_user)
    finally:
        server.shutdown()
        server.server_close()
    assert attempt.outcome == DrillStopAttempt.Outcome.NOT_SIMULATOR
    assert _NotASimulator.hits == ["/health"]  # no POST ever went out


def test_only_emergency_stop_drills_stop_anything(simulator, trainer_user, team):
    drill = services.drill_start(drill=schedule(trainer_user, key="communication-test"), user=trainer_user)
    with pytest.raises(ValidationError, match="does not include an emergency stop"):
        services.drill_emergency_stop(drill=drill, user=trainer_user)
    from django.core.exceptions import PermissionDenied

    stop = services.drill_start(drill=schedule(trainer_user, key="trading-emergency-stop"), user=trainer_user)
    with pytest.raises(PermissionDenied):
        services.drill_emergency_stop(drill=stop, user=team["oncall1"])  # not a participant
