"""The circuit-breaker simulator the emergency-stop tests send their stops to (a module that
needs other agents defines its own `simulator`)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from incidents.devtools.simulator import SimulatorServer


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    server = SimulatorServer(agent_ports={"circuit_breaker": 0}, control_port=None)
    server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture
def breaker(simulator: SimulatorServer, settings, db) -> Iterator[SimulatorServer]:
    simulator.reset()
    settings.TMT_CIRCUIT_BREAKER_URL = simulator.endpoints.agent_url("circuit_breaker")
    settings.TMT_CIRCUIT_BREAKER_TIMEOUT = 2.0
    yield simulator
    simulator.reset()


def agent_status(simulator: SimulatorServer) -> dict:
    """What the circuit breaker says of itself: whether trading is halted, and the last stop."""
    return httpx.get(simulator.endpoints.agent_url("circuit_breaker") + "/api/v1/emergency-status", timeout=5).json()
