"""A stand-in for the firm's trading agents, served over real HTTP.

The portal polls agent ``/health`` endpoints and triggers the emergency stop documented in the
seed procedures ("2.1 Detailed Investigation", "Trading Emergency Stop"). Demos, tests and
benchmarks need something on the other end of those calls that behaves like the real agents,
including the ways they fail, so this module serves:

* one small aiohttp app per agent (circuit_breaker on 8001, market_analysis on 8002,
  risk_management on 8003, and the execution engine on 8004 by default) with ``GET /health``,
  ``POST /api/v1/emergency-stop``,
  ``GET /api/v1/emergency-status`` and ``POST /api/v1/resume-trading``;
* a control app (8009 by default) to inject faults into a running simulator: ``GET /faults``,
  ``GET|POST|DELETE /faults/<agent>``, ``POST /reset``; it also stands in for the SMS/voice
  provider (``POST /pager`` takes the portal's pages and logs them, ``GET /pager`` lists the
  latest), so `make run`'s pages are delivered somewhere a person can see them;
* ``POST /pager/reply`` on the same control app plays the person answering a page: it signs an
  SMS reply (``{"from", "body"}``) or a voice keypress (``{"from", "digits", "channel": "voice"}``)
  the way the provider does and posts it to the portal's webhook (``TMT_PAGER_REPLY_URL``, else
  ``TMT_SITE_URL``; secret ``TMT_SMS_PROVIDER_WEBHOOK_SECRET``), answering with the portal's reply;
* optionally a "fleet" app that serves ``GET /agents/<n>/health`` for many cheap targets on one
  port, so a benchmark can poll a thousand endpoints without a thousand sockets listening.

Use ``SimulatorServer(...).start_in_thread()`` from pytest fixtures and bench scripts (port 0 picks
free ports), or ``manage.py simulate_agents`` for demos.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx
from aiohttp import web

from incidents.notifications.signatures import HEADER, sign

logger = logging.getLogger("incidents.devtools.simulator")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_AGENT_PORTS: dict[str, int] = {
    "circuit_breaker": 8001,
    "market_analysis": 8002,
    "risk_management": 8003,
    # Not an agent in the seed, but a trading system the portal monitors (its /health only).
    "execution_engine": 8004,
}
DEFAULT_CONTROL_PORT = 8009
DEFAULT_FLEET_PORT = 8010
SIMULATOR_VERSION = "tmt-agent-simulator/1"

# Long enough for a benchmark to model a hung agent, short enough that a typo (800000 for 800)
# is caught instead of wedging a demo for hours.
MAX_DELAY_MS = 600_000
REFUSE_STOP_STATUSES = frozenset({409, 503})
MAX_REASON_LENGTH = 500
MAX_TRIGGERED_BY_LENGTH = 200

# Requests still in flight when an agent goes "down" (or the simulator stops) are cut off after
# this long: a crashed agent does not finish its answers, and a slow fault must never make
# stop() hang for the length of the injected delay.
_SHUTDOWN_GRACE_SECONDS = 0.25
# A benchmark opens about a thousand connections to the fleet port at once; the default listen
# backlog (128) would overflow and the kernel's SYN retry adds a full second to some polls,
# which would read as agent latency. The kernel caps this at net.core.somaxconn.
_FLEET_BACKLOG = 4096

# Set by the fault middleware so /health can report latency including the injected delay.
_REQUEST_STARTED = web.RequestKey("sim_started", float)

_AGENT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# The pager keeps this many pages for GET /pager; older ones are only in the log.
PAGER_KEEP = 200
# Idempotency keys remembered (oldest forgotten first): a re-send comes within minutes.
PAGER_KEYS_KEPT = 100_000
PAGER_CHANNELS = frozenset({"sms", "voice"})
# Where POST /pager/reply sends replies: the portal's signed provider webhooks under this base.
DEFAULT_REPLY_URL = "http://127.0.0.1:8000"
REPLY_PATHS = {"sms": "/provider/sms/", "voice": "/provider/voice/"}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def normalize_agent_name(name: str) -> str:
    """Accept ``circuit-breaker`` and ``Circuit_Breaker`` as well as ``circuit_breaker``."""
    return name.strip().lower().replace("-", "_")


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


class FaultMode(StrEnum):
    OK = "ok"
    DOWN = "down"  # the port stops listening: clients see "connection refused"
    SLOW = "slow"  # every response is delayed by delay_ms
    FLAPPING = "flapping"  # /health alternates failing (503) and healthy, failing first
    HTTP500 = "http500"  # every endpoint answers 500
    MALFORMED = "malformed"  # every endpoint answers 200 with a body that is not valid JSON
    REFUSE_STOP = "refuse_stop"  # the emergency stop answers 503 (or 409) and halts nothing


class FaultError(ValueError):
    """Bad fault input; ``field`` names the offending field so the 400 can say which."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


_FAULT_FIELDS = ("mode", "delay_ms", "status")


@dataclass(frozen=True)
class Fault:
    """What is wrong with one agent right now.

    ``delay_ms`` is required for ``slow`` and may be added to any other failing mode (a slow *and*
    flapping agent is a realistic combination); ``status`` only applies to ``refuse_stop``.
    """

    mode: FaultMode = FaultMode.OK
    delay_ms: float = 0.0
    status: int = 503

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise FaultError("body", 'expected a JSON object such as {"mode": "slow", "delay_ms": 800}')
        for key in data:
            if key not in _FAULT_FIELDS:
                raise FaultError(str(key), f"unknown field; allowed fields are {', '.join(_FAULT_FIELDS)}")

        raw_mode = data.get("mode")
        if raw_mode is None:
            raise FaultError("mode", f"required; one of {', '.join(m.value for m in FaultMode)}")
        if not isinstance(raw_mode, str) or raw_mode not in FaultMode.__members__.values():
            raise FaultError("mode", f"unknown mode {raw_mode!r}; one of {', '.join(m.value for m in FaultMode)}")
        mode = FaultMode(raw_mode)

        delay_ms = 0.0
        if "delay_ms" in data:
            raw_delay = data["delay_ms"]
            if mode in (FaultMode.OK, FaultMode.DOWN):
                raise FaultError("delay_ms", f"does not apply to mode {mode.value!r}")
            # bool is an int subclass; {"delay_ms": true} is a mistake, not 1 ms.
            if isinstance(raw_delay, bool) or not isinstance(raw_delay, int | float):
                raise FaultError("delay_ms", "must be a number of milliseconds")
            if not math.isfinite(raw_delay) or not 0 <= raw_delay <= MAX_DELAY_MS:
                raise FaultError("delay_ms", f"must be between 0 and {MAX_DELAY_MS}")
            delay_ms = float(raw_delay)
        if mode is FaultMode.SLOW and delay_ms <= 0:
            raise FaultError("delay_ms", "mode 'slow' needs a positive delay_ms")

        status = 503
        if "status" in data:
            raw_status = data["status"]
            if mode is not FaultMode.REFUSE_STOP:
                raise FaultError("status", "only applies to mode 'refuse_stop'")
            # Type first: a list or dict is unhashable and would blow up the set lookup.
            if type(raw_status) is not int or raw_status not in REFUSE_STOP_STATUSES:
                raise FaultError("status", f"must be one of {', '.join(map(str, sorted(REFUSE_STOP_STATUSES)))}")
            status = int(raw_status)
        return cls(mode=mode, delay_ms=delay_ms, status=status)

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Parse the command-line form ``MODE[:N]``: ``down``, ``slow:800``, ``refuse_stop:409``.

        N is the delay in ms for ``slow`` and the HTTP status for ``refuse_stop``.
        """
        mode, sep, argument = spec.strip().partition(":")
        payload: dict[str, Any] = {"mode": mode}
        if sep:
            try:
                number = int(argument)
            except ValueError:
                raise FaultError("mode", f"{spec!r}: the part after ':' must be an integer") from None
            if mode == FaultMode.REFUSE_STOP:
                payload["status"] = number
            elif mode in (FaultMode.OK, FaultMode.DOWN):
                raise FaultError("mode", f"{spec!r}: mode {mode!r} takes no ':N' argument")
            else:
                payload["delay_ms"] = number
        return cls.from_json(payload)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mode": self.mode.value}
        if self.delay_ms:
            data["delay_ms"] = self.delay_ms
        if self.mode is FaultMode.REFUSE_STOP:
            data["status"] = self.status
        return data


NO_FAULT = Fault()


def parse_agent_assignment(text: str) -> tuple[str, str]:
    """Split ``NAME=VALUE`` (as in ``--agent circuit_breaker=8001`` or ``--inject x=down``)."""
    name, sep, value = text.partition("=")
    name = normalize_agent_name(name)
    if not sep or not name or not value.strip():
        raise ValueError(f"{text!r}: expected NAME=VALUE")
    if not _AGENT_NAME_RE.match(name):
        raise ValueError(f"{text!r}: agent names are lower-case letters, digits and underscores")
    return name, value.strip()


# --------------------------------------------------------------------------------------------
# Fleet (many cheap targets on one port, for benchmarks)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetConfig:
    """``size`` health targets at ``/agents/<n>/health``.

    Every target answers after ``base_latency_ms`` except ``slow_targets``, which take
    ``slow_latency_ms`` in total; ``failing_targets`` answer 503 "unhealthy".
    """

    size: int = 1000
    base_latency_ms: float = 50.0
    slow_targets: frozenset[int] = frozenset()
    slow_latency_ms: float = 1000.0
    failing_targets: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("size must not be negative")
        if self.base_latency_ms < 0 or self.slow_latency_ms < 0:
            raise ValueError("latencies must not be negative")

    @classmethod
    def with_slow_fraction(
        cls,
        size: int,
        slow_fraction: float,
        *,
        base_latency_ms: float = 50.0,
        slow_latency_ms: float = 1000.0,
    ) -> FleetConfig:
        """Spread ``floor(size * slow_fraction)`` slow targets evenly (every 20th for 5%).

        Deterministic on purpose: a benchmark run is comparable with the previous one only if the
        same targets are slow.
        """
        if not 0 <= slow_fraction <= 1:
            raise ValueError("slow_fraction must be between 0 and 1")
        slow = frozenset(n for n in range(size) if math.floor((n + 1) * slow_fraction) > math.floor(n * slow_fraction))
        return cls(
            size=size,
            base_latency_ms=base_latency_ms,
            slow_targets=slow,
            slow_latency_ms=slow_latency_ms,
        )

    def latency_ms_for(self, target: int) -> float:
        return self.slow_latency_ms if target in self.slow_targets else self.base_latency_ms


# --------------------------------------------------------------------------------------------
# Bound addresses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatorEndpoints:
    """Where a started simulator actually listens (port 0 resolved to the real port)."""

    host: str
    agent_ports: Mapping[str, int]
    control_port: int | None = None
    fleet_port: int | None = None
    fleet_size: int = 0

    def _base(self, port: int) -> str:
        # A wildcard bind is reachable on loopback; a URL cannot point at 0.0.0.0 portably.
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        if host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def agent_url(self, agent: str) -> str:
        return self._base(self.agent_ports[normalize_agent_name(agent)])

    @property
    def agent_urls(self) -> dict[str, str]:
        return {name: self._base(port) for name, port in self.agent_ports.items()}

    @property
    def control_url(self) -> str | None:
        return None if self.control_port is None else self._base(self.control_port)

    @property
    def fleet_url(self) -> str | None:
        return None if self.fleet_port is None else self._base(self.fleet_port)

    def fleet_health_urls(self) -> list[str]:
        if self.fleet_port is None:
            return []
        base = self._base(self.fleet_port)
        return [f"{base}/agents/{n}/health" for n in range(self.fleet_size)]


class SimulatorStartError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# Per-agent state and HTTP handlers
# --------------------------------------------------------------------------------------------


@dataclass
class EmergencyStop:
    stop_id: str
    stopped_at: str
    reason: str
    triggered_by: str
    stop_all_trading: bool
    details: str = ""


@dataclass
class AgentState:
    """One simulated agent. Only ever touched from the simulator's event loop."""

    name: str
    requested_port: int
    base_latency_ms: float = 0.0
    fault: Fault = NO_FAULT
    bound_port: int | None = None
    runner: web.AppRunner | None = None
    health_requests_while_flapping: int = 0
    emergency_stop: EmergencyStop | None = None
    resumed_at: str | None = None
    # Open positions the agent reports (GET /api/v1/positions); set by tests and demos.
    positions: list[dict[str, Any]] = field(default_factory=list)
    started_monotonic: float = field(default_factory=time.monotonic)
    # Serialises down/up so two control calls cannot both try to bind the port.
    listen_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def listening(self) -> bool:
        return self.runner is not None

    def status_json(self) -> dict[str, Any]:
        stop = self.emergency_stop
        return {
            "agent": self.name,
            "trading_halted": stop is not None,
            "stop_id": stop.stop_id if stop else None,
            "stopped_at": stop.stopped_at if stop else None,
            "reason": stop.reason if stop else None,
            "details": stop.details if stop else None,
            "triggered_by": stop.triggered_by if stop else None,
            "stop_all_trading": stop.stop_all_trading if stop else None,
            "resumed_at": self.resumed_at,
        }


def _error(status: int, error: str, detail: str, field_name: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": error, "detail": detail}
    if field_name is not None:
        body["field"] = field_name
    return web.json_response(body, status=status)


async def _read_json_object(request: web.Request, *, required: bool) -> dict[str, Any]:
    """The request body as a JSON object; raises FaultError("body", ...) otherwise."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise FaultError("body", "a JSON object is required")
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FaultError("body", f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise FaultError("body", "expected a JSON object")
    return data


def _validate_stop_payload(data: dict[str, Any]) -> tuple[str, str, bool]:
    """Validate the seed's payload: {"reason": str, "triggered_by": str, "stop_all_trading": bool}."""
    checked: dict[str, str] = {}
    for name, limit in (("reason", MAX_REASON_LENGTH), ("triggered_by", MAX_TRIGGERED_BY_LENGTH)):
        value = data.get(name)
        if value is None:
            raise FaultError(name, "required")
        if not isinstance(value, str) or not value.strip():
            raise FaultError(name, "must be a non-empty string")
        if len(value) > limit:
            raise FaultError(name, f"must be at most {limit} characters")
        checked[name] = value.strip()
    stop_all = data.get("stop_all_trading")
    if stop_all is None:
        raise FaultError("stop_all_trading", "required")
    if not isinstance(stop_all, bool):
        raise FaultError("stop_all_trading", "must be true or false")
    return checked["reason"], checked["triggered_by"], stop_all


def _validate_positions(data: Any) -> list[dict[str, Any]]:
    """[{"instrument": str, "venue": str, "quantity": number}, ...]"""
    if not isinstance(data, list):
        raise FaultError("positions", "expected a list")
    checked = []
    for item in data:
        if not isinstance(item, dict):
            raise FaultError("positions", "each position is an object")
        instrument, venue, quantity = item.get("instrument"), item.get("venue"), item.get("quantity")
        if not isinstance(instrument, str) or not instrument.strip() or not isinstance(venue, str):
            raise FaultError("positions", "instrument and venue must be strings")
        if isinstance(quantity, bool) or not isinstance(quantity, int | float):
            raise FaultError("positions", "quantity must be a number")
        checked.append({"instrument": instrument.strip(), "venue": venue.strip(), "quantity": quantity})
    return checked


def _build_agent_app(agent: AgentState) -> web.Application:
    @web.middleware
    async def inject_faults(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        request[_REQUEST_STARTED] = time.perf_counter()
        fault = agent.fault
        delay_ms = agent.base_latency_ms + fault.delay_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        # http500 and malformed short-circuit every endpoint, the emergency stop included: the
        # agent did not act, so the portal must treat the stop as unconfirmed and check again.
        if fault.mode is FaultMode.HTTP500:
            return _error(500, "internal_error", "injected fault: http500")
        if fault.mode is FaultMode.MALFORMED:
            # Declared as JSON and cut off mid-object, like a crashed serializer would leave it.
            return web.Response(
                status=200,
                text=f'{{"agent": "{agent.name}", "status": "heal',
                content_type="application/json",
            )
        return await handler(request)

    def elapsed_ms(request: web.Request) -> float:
        return round((time.perf_counter() - request[_REQUEST_STARTED]) * 1000, 3)

    async def health(request: web.Request) -> web.Response:
        healthy = True
        if agent.fault.mode is FaultMode.FLAPPING:
            # Failing first so the fault is visible on the very next poll after injecting it.
            healthy = agent.health_requests_while_flapping % 2 == 1
            agent.health_requests_while_flapping += 1
        body = {
            "agent": agent.name,
            "status": "healthy" if healthy else "unhealthy",
            "latency_ms": elapsed_ms(request),
            "checked_at": _now_iso(),
            "version": SIMULATOR_VERSION,
            "uptime_s": round(time.monotonic() - agent.started_monotonic, 3),
            "trading_halted": agent.emergency_stop is not None,
        }
        if not healthy:
            body["detail"] = "injected fault: flapping"
        return web.json_response(body, status=200 if healthy else 503)

    async def emergency_stop(request: web.Request) -> web.Response:
        try:
            data = await _read_json_object(request, required=True)
            reason, triggered_by, stop_all = _validate_stop_payload(data)
        except FaultError as exc:
            return _error(400, "invalid_payload", exc.detail, exc.field)
        # Optional free text beside the reason code (the seed's "reason": "system_emergency").
        details = data.get("details", "")
        if not isinstance(details, str) or len(details) > MAX_REASON_LENGTH:
            return _error(
                400, "invalid_payload", f"must be a string of at most {MAX_REASON_LENGTH} characters", "details"
            )
        if agent.fault.mode is FaultMode.REFUSE_STOP:
            return _error(
                agent.fault.status,
                "stop_refused",
                f"{agent.name} refused the emergency stop (injected fault: refuse_stop)",
            )
        already_halted = agent.emergency_stop is not None
        if agent.emergency_stop is None:
            agent.emergency_stop = EmergencyStop(
                stop_id=str(uuid.uuid4()),
                stopped_at=_now_iso(),
                reason=reason,
                triggered_by=triggered_by,
                stop_all_trading=stop_all,
                details=details.strip(),
            )
            agent.resumed_at = None
            logger.info("%s: emergency stop by %s (%s)", agent.name, triggered_by, reason)
        # A repeated stop is answered like the first one (same stop_id) so a portal that retries
        # after a timeout does not see a conflict for a stop that actually worked.
        stop = agent.emergency_stop
        return web.json_response(
            {
                "status": "stopped",
                "agent": agent.name,
                "stop_id": stop.stop_id,
                "stopped_at": stop.stopped_at,
                "trading_halted": True,
                "already_halted": already_halted,
                "reason": stop.reason,
                "triggered_by": stop.triggered_by,
                "stop_all_trading": stop.stop_all_trading,
            }
        )

    async def emergency_status(request: web.Request) -> web.Response:
        return web.json_response(agent.status_json())

    async def positions(request: web.Request) -> web.Response:
        return web.json_response(
            {"agent": agent.name, "trading_halted": agent.emergency_stop is not None, "positions": agent.positions}
        )

    async def resume_trading(request: web.Request) -> web.Response:
        try:
            data = await _read_json_object(request, required=False)
        except FaultError as exc:
            return _error(400, "invalid_payload", exc.detail, exc.field)
        resumed_by = data.get("triggered_by")
        if resumed_by is not None and not isinstance(resumed_by, str):
            return _error(400, "invalid_payload", "must be a string", "triggered_by")
        was_halted = agent.emergency_stop is not None
        if was_halted:
            agent.emergency_stop = None
            agent.resumed_at = _now_iso()
            logger.info("%s: trading resumed by %s", agent.name, resumed_by or "unknown")
        return web.json_response(
            {
                "status": "trading",
                "agent": agent.name,
                "trading_halted": False,
                "was_halted": was_halted,
                "resumed_at": agent.resumed_at,
            }
        )

    app = web.Application(middlewares=[inject_faults])
    app.router.add_get("/health", health)
    app.router.add_post("/api/v1/emergency-stop", emergency_stop)
    app.router.add_get("/api/v1/emergency-status", emergency_status)
    app.router.add_post("/api/v1/resume-trading", resume_trading)
    app.router.add_get("/api/v1/positions", positions)
    return app


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class SimulatorServer:
    """The three agents (or any set of named agents), a control endpoint and an optional fleet.

    In-process use (tests, benchmarks)::

        server = SimulatorServer(agent_ports={"circuit_breaker": 0}, control_port=0)
        endpoints = server.start_in_thread()
        ...  # httpx.get(endpoints.agent_url("circuit_breaker") + "/health")
        server.inject_fault("circuit_breaker", "down")
        server.stop()

    or ``with SimulatorServer(...) as endpoints: ...``. Inside an existing event loop use
    ``await server.start()`` / ``await server.close()``.
    """

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        agent_ports: Mapping[str, int] | None = None,
        control_port: int | None = DEFAULT_CONTROL_PORT,
        fleet: FleetConfig | None = None,
        fleet_port: int = DEFAULT_FLEET_PORT,
        base_latency_ms: float = 0.0,
        initial_faults: Mapping[str, Fault] | None = None,
        access_log: bool = False,
        reply_url: str | None = None,
        reply_secret: str | None = None,
    ) -> None:
        ports = dict(DEFAULT_AGENT_PORTS if agent_ports is None else agent_ports)
        self.host = host
        self._agent_ports = {normalize_agent_name(name): port for name, port in ports.items()}
        for name in self._agent_ports:
            if not _AGENT_NAME_RE.match(name):
                raise ValueError(f"invalid agent name {name!r}")
        self._control_port = control_port
        self._fleet_port = fleet_port
        self._fleet_config = fleet
        self._base_latency_ms = base_latency_ms
        self._initial_faults = {normalize_agent_name(k): v for k, v in (initial_faults or {}).items()}
        unknown = set(self._initial_faults) - set(self._agent_ports)
        if unknown:
            raise ValueError(f"faults given for unknown agents: {', '.join(sorted(unknown))}")
        self._access_log = access_log
        self._reply_url = (
            reply_url or os.environ.get("TMT_PAGER_REPLY_URL") or os.environ.get("TMT_SITE_URL") or DEFAULT_REPLY_URL
        ).rstrip("/")
        self._reply_secret = (
            reply_secret if reply_secret is not None else os.environ.get("TMT_SMS_PROVIDER_WEBHOOK_SECRET", "")
        )
        self._replies: list[dict[str, Any]] = []

        self._agents: dict[str, AgentState] = {}
        self._pages: list[dict[str, Any]] = []
        self._page_keys: dict[str, str] = {}
        self._control_runner: web.AppRunner | None = None
        self._fleet_runner: web.AppRunner | None = None
        self._endpoints: SimulatorEndpoints | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle (inside an event loop) -------------------------------------------------

    @property
    def endpoints(self) -> SimulatorEndpoints:
        if self._endpoints is None:
            raise RuntimeError("the simulator is not running")
        return self._endpoints

    async def start(self) -> SimulatorEndpoints:
        if self._endpoints is not None:
            raise RuntimeError("the simulator is already running")
        self._loop = asyncio.get_running_loop()
        try:
            for name, port in self._agent_ports.items():
                agent = AgentState(name=name, requested_port=port, base_latency_ms=self._base_latency_ms)
                self._agents[name] = agent
                await self._listen(agent)
            if self._control_port is not None:
                self._control_runner, control_port = await self._serve(
                    self._build_control_app(), self._control_port, what="control endpoint"
                )
            else:
                control_port = None
            fleet_port: int | None = None
            if self._fleet_config is not None:
                self._fleet_runner, fleet_port = await self._serve(
                    self._build_fleet_app(), self._fleet_port, what="fleet", backlog=_FLEET_BACKLOG
                )
        except BaseException:
            await self._close_all()
            raise
        self._endpoints = SimulatorEndpoints(
            host=self.host,
            agent_ports={name: agent.bound_port or 0 for name, agent in self._agents.items()},
            control_port=control_port,
            fleet_port=fleet_port,
            fleet_size=self._fleet_config.size if self._fleet_config else 0,
        )
        for name, fault in self._initial_faults.items():
            await self.apply_fault(name, fault)
        return self._endpoints

    async def close(self) -> None:
        await self._close_all()
        self._endpoints = None

    async def _close_all(self) -> None:
        runners = [agent.runner for agent in self._agents.values()]
        runners += [self._control_runner, self._fleet_runner]
        for agent in self._agents.values():
            agent.runner = None
        self._control_runner = self._fleet_runner = None
        await asyncio.gather(*(r.cleanup() for r in runners if r is not None), return_exceptions=True)
        self._agents.clear()

    async def _serve(
        self, app: web.Application, port: int, *, what: str, backlog: int = 128, log_name: str = ""
    ) -> tuple[web.AppRunner, int]:
        runner_kwargs: dict[str, Any] = {"shutdown_timeout": _SHUTDOWN_GRACE_SECONDS}
        if self._access_log:
            runner_kwargs["access_log"] = logging.getLogger(f"{logger.name}.access")
            runner_kwargs["access_log_format"] = f'{log_name or what} %a "%r" %s %b %Tfs'
        else:
            runner_kwargs["access_log"] = None
        runner = web.AppRunner(app, **runner_kwargs)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port, backlog=backlog)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SimulatorStartError(f"cannot listen on {self.host}:{port} for {what}: {exc.strerror or exc}") from exc
        return runner, site.port

    async def _listen(self, agent: AgentState) -> None:
        if agent.runner is not None:
            return
        # Re-open on the port first bound, so an agent that comes back from "down" is where the
        # portal (and a test that asked for port 0) expects it.
        port = agent.bound_port if agent.bound_port is not None else agent.requested_port
        # A fresh Application each time: aiohttp freezes an app once a runner has used it.
        agent.runner, agent.bound_port = await self._serve(
            _build_agent_app(agent), port, what=f"agent {agent.name}", log_name=agent.name
        )

    async def _stop_listening(self, agent: AgentState) -> None:
        runner, agent.runner = agent.runner, None
        if runner is not None:
            # cleanup() closes the listening socket (new connections are refused) and drops
            # keep-alive connections, so an already-connected client cannot slip past "down".
            await runner.cleanup()

    # ---- faults (inside the event loop) ------------------------------------------------------

    def _agent(self, name: str) -> AgentState:
        try:
            return self._agents[normalize_agent_name(name)]
        except KeyError:
            known = ", ".join(self._agents) or "none"
            raise KeyError(f"unknown agent {name!r}; known agents: {known}") from None

    async def apply_fault(self, agent_name: str, fault: Fault) -> Fault:
        agent = self._agent(agent_name)
        async with agent.listen_lock:
            agent.fault = fault
            agent.health_requests_while_flapping = 0
            if fault.mode is FaultMode.DOWN:
                await self._stop_listening(agent)
            else:
                await self._listen(agent)
        logger.info("%s: fault set to %s", agent.name, fault.to_json())
        return fault

    async def reset_all(self) -> None:
        """Clear every fault and resume trading everywhere, so each demo or test starts clean."""
        for name, agent in self._agents.items():
            await self.apply_fault(name, NO_FAULT)
            agent.emergency_stop = None
            agent.resumed_at = None
            agent.positions = []

    def set_fleet_config(self, config: FleetConfig) -> None:
        """Swap the fleet's behaviour between benchmark rounds (one attribute store, so atomic)."""
        if self._fleet_config is None:
            raise RuntimeError("this simulator was started without a fleet")
        if config.size != self._fleet_config.size and self._endpoints is not None:
            self._endpoints = SimulatorEndpoints(
                host=self._endpoints.host,
                agent_ports=self._endpoints.agent_ports,
                control_port=self._endpoints.control_port,
                fleet_port=self._endpoints.fleet_port,
                fleet_size=config.size,
            )
        self._fleet_config = config

    def snapshot(self) -> dict[str, Any]:
        return {
            "agents": {
                name: {
                    "url": self._endpoints.agent_url(name) if self._endpoints else None,
                    "listening": agent.listening,
                    "fault": agent.fault.to_json(),
                    "trading_halted": agent.emergency_stop is not None,
                }
                for name, agent in self._agents.items()
            },
            "fleet": (
                None
                if self._fleet_config is None
                else {
                    "url": self._endpoints.fleet_url if self._endpoints else None,
                    "size": self._fleet_config.size,
                    "base_latency_ms": self._fleet_config.base_latency_ms,
                    "slow_latency_ms": self._fleet_config.slow_latency_ms,
                    "slow_targets": sorted(self._fleet_config.slow_targets),
                    "failing_targets": sorted(self._fleet_config.failing_targets),
                }
            ),
        }

    # ---- control app ------------------------------------------------------------------------

    def _build_control_app(self) -> web.Application:
        def faults_json() -> dict[str, Any]:
            return {"faults": {name: a.fault.to_json() for name, a in self._agents.items()}}

        def unknown_agent(exc: KeyError) -> web.Response:
            return _error(404, "unknown_agent", str(exc.args[0]), "agent")

        async def overview(request: web.Request) -> web.Response:
            return web.json_response(self.snapshot())

        async def list_faults(request: web.Request) -> web.Response:
            return web.json_response(faults_json())

        async def get_fault(request: web.Request) -> web.Response:
            try:
                agent = self._agent(request.match_info["agent"])
            except KeyError as exc:
                return unknown_agent(exc)
            return web.json_response(
                {"agent": agent.name, "fault": agent.fault.to_json(), "listening": agent.listening}
            )

        async def set_fault(request: web.Request) -> web.Response:
            try:
                agent = self._agent(request.match_info["agent"])
            except KeyError as exc:
                return unknown_agent(exc)
            try:
                fault = Fault.from_json(await _read_json_object(request, required=True))
            except FaultError as exc:
                return _error(400, "invalid_fault", exc.detail, exc.field)
            try:
                await self.apply_fault(agent.name, fault)
            except SimulatorStartError as exc:
                # Clearing "down" re-binds the port; if something else took it meanwhile, say so.
                return _error(409, "port_unavailable", str(exc))
            return web.json_response({"agent": agent.name, "fault": fault.to_json(), "listening": agent.listening})

        async def clear_fault(request: web.Request) -> web.Response:
            try:
                agent = self._agent(request.match_info["agent"])
                await self.apply_fault(agent.name, NO_FAULT)
            except KeyError as exc:
                return unknown_agent(exc)
            except SimulatorStartError as exc:
                return _error(409, "port_unavailable", str(exc))
            return web.json_response({"agent": agent.name, "fault": NO_FAULT.to_json(), "listening": agent.listening})

        async def put_positions(request: web.Request) -> web.Response:
            try:
                agent = self._agent(request.match_info["agent"])
            except KeyError as exc:
                return unknown_agent(exc)
            try:
                body = await _read_json_object(request, required=True)
                agent.positions = _validate_positions(body.get("positions"))
            except FaultError as exc:
                return _error(400, "invalid_positions", exc.detail, exc.field)
            return web.json_response({"agent": agent.name, "positions": agent.positions})

        async def reset(request: web.Request) -> web.Response:
            try:
                await self.reset_all()
            except SimulatorStartError as exc:
                return _error(409, "port_unavailable", str(exc))
            return web.json_response({"status": "reset", **faults_json()})

        async def page(request: web.Request) -> web.Response:
            # The portal's SMS/voice provider contract: {to, channel: sms|voice, body, reference}.
            try:
                data = await _read_json_object(request, required=True)
            except FaultError as exc:
                return _error(400, "invalid_page", exc.detail, exc.field)
            for name in ("to", "body"):
                if not isinstance(data.get(name), str) or not data[name].strip():
                    return _error(400, "invalid_page", f"“{name}” must be a non-empty string.", name)
            if data.get("channel") not in PAGER_CHANNELS:
                return _error(400, "invalid_page", "“channel” must be “sms” or “voice”.", "channel")
            # A page re-sent with a key already accepted (the portal crashed between sending
            # and recording it) is answered as before and not sent again, as real providers do.
            key = request.headers.get("Idempotency-Key", "")
            if key and key in self._page_keys:
                return web.json_response({"status": "accepted", "id": self._page_keys[key], "replayed": True})
            received = {
                "id": uuid.uuid4().hex,
                "received_at": _now_iso(),
                "idempotency_key": key,
                **{k: str(data.get(k, "")) for k in ("to", "channel", "body", "reference")},
            }
            if key:
                self._page_keys[key] = received["id"]
                while len(self._page_keys) > PAGER_KEYS_KEPT:
                    self._page_keys.pop(next(iter(self._page_keys)))
            self._pages.append(received)
            del self._pages[:-PAGER_KEEP]
            logger.info("pager: %s to %s: %s", received["channel"], received["to"], received["body"])
            return web.json_response({"status": "accepted", "id": received["id"]})

        async def list_pages(request: web.Request) -> web.Response:
            return web.json_response({"pages": self._pages[::-1], "replies": self._replies[::-1]})

        async def reply(request: web.Request) -> web.Response:
            # A person answering a page: signed like the provider signs, posted to the portal.
            try:
                data = await _read_json_object(request, required=True)
            except FaultError as exc:
                return _error(400, "invalid_reply", exc.detail, exc.field)
            return await self._send_reply(data)

        app = web.Application()
        app.router.add_get("/", overview)
        app.router.add_post("/pager", page)
        app.router.add_get("/pager", list_pages)
        app.router.add_post("/pager/reply", reply)
        app.router.add_get("/faults", list_faults)
        app.router.add_get("/faults/{agent}", get_fault)
        app.router.add_post("/faults/{agent}", set_fault)
        app.router.add_delete("/faults/{agent}", clear_fault)
        app.router.add_post("/reset", reset)
        app.router.add_put("/positions/{agent}", put_positions)
        return app

    async def _send_reply(self, data: dict[str, Any]) -> web.Response:
        """Sign and post one reply; the answer carries the portal's status and JSON."""
        channel = data.get("channel", "sms")
        if channel not in PAGER_CHANNELS:
            return _error(400, "invalid_reply", "“channel” must be “sms” or “voice”.", "channel")
        # "to": the number a page went to, which is the number that answers it.
        sender = data.get("from") or data.get("to")
        text_field = "body" if channel == "sms" else "digits"
        for name, value in (("from", sender), (text_field, data.get(text_field))):
            if not isinstance(value, str) or not value.strip():
                return _error(400, "invalid_reply", f"“{name}” must be a non-empty string.", name)
        if not self._reply_secret:
            return _error(409, "no_secret", "Set TMT_SMS_PROVIDER_WEBHOOK_SECRET to sign replies.")
        message = {
            "id": str(data.get("id") or f"sim-{uuid.uuid4().hex}"),
            "from": sender,
            text_field: data[text_field],
            **({"reference": str(data["reference"])} if data.get("reference") else {}),
        }
        body = json.dumps(message).encode()
        url = self._reply_url + REPLY_PATHS[channel]
        headers = {"Content-Type": "application/json", HEADER: sign(body, secret=self._reply_secret)}
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                answer = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return _error(502, "portal_unreachable", f"{url}: {type(exc).__name__}: {exc}")
        try:
            portal = answer.json()
        except ValueError:
            portal = {"text": answer.text[:500]}
        record = {"sent_at": _now_iso(), "url": url, **message, "status": answer.status_code, "portal": portal}
        self._replies.append(record)
        del self._replies[:-PAGER_KEEP]
        logger.info("pager: reply from %s: %s -> %s %s", sender, data[text_field], answer.status_code, portal)
        return web.json_response(record)

    # ---- fleet app --------------------------------------------------------------------------

    def _build_fleet_app(self) -> web.Application:
        async def target_health(request: web.Request) -> web.Response:
            started = time.perf_counter()
            config = self._fleet_config
            assert config is not None  # only routed when a fleet is configured
            target = int(request.match_info["n"])
            if target >= config.size:
                return _error(404, "unknown_target", f"fleet has targets 0..{config.size - 1}", "n")
            # asyncio.sleep, not a thread: a thousand waiting targets cost a thousand timers.
            await asyncio.sleep(config.latency_ms_for(target) / 1000)
            healthy = target not in config.failing_targets
            return web.json_response(
                {
                    "agent": f"fleet_{target}",
                    "target": target,
                    "status": "healthy" if healthy else "unhealthy",
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    "checked_at": _now_iso(),
                },
                status=200 if healthy else 503,
            )

        async def describe(request: web.Request) -> web.Response:
            return web.json_response(self.snapshot()["fleet"])

        app = web.Application()
        app.router.add_get(r"/agents/{n:\d+}/health", target_health)
        app.router.add_get("/agents", describe)
        return app

    # ---- blocking / threaded use ----------------------------------------------------------------

    def start_in_thread(self, timeout: float = 10.0) -> SimulatorEndpoints:
        """Run the simulator on its own event loop in a daemon thread; returns once bound."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        ready: concurrent.futures.Future[SimulatorEndpoints] = concurrent.futures.Future()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                endpoints = loop.run_until_complete(self.start())
            except BaseException as exc:
                ready.set_exception(exc)
                loop.close()
                return
            ready.set_result(endpoints)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="trading-agent-simulator", daemon=True)
        self._thread.start()
        try:
            return ready.result(timeout)
        except BaseException:
            self._thread.join(timeout)
            self._thread = None
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a simulator started with start_in_thread(). Safe to call twice."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.close(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = None

    def _call_in_loop(self, coro: Awaitable[Any], timeout: float = 10.0) -> Any:
        if self._thread is None or self._loop is None:
            raise RuntimeError("only available after start_in_thread()")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def inject_fault(self, agent: str, fault: Fault | str) -> Fault:
        """Thread-safe: ``inject_fault("circuit_breaker", "slow:800")`` or a ``Fault``."""
        parsed = Fault.parse(fault) if isinstance(fault, str) else fault
        return self._call_in_loop(self.apply_fault(agent, parsed))

    def clear_fault(self, agent: str) -> None:
        self._call_in_loop(self.apply_fault(agent, NO_FAULT))

    def reset(self) -> None:
        self._call_in_loop(self.reset_all())

    def set_positions(self, agent: str, positions: list[dict[str, Any]]) -> None:
        """Thread-safe: the open positions ``agent`` reports on GET /api/v1/positions."""
        checked = _validate_positions(positions)

        async def assign() -> None:
            self._agent(agent).positions = checked

        self._call_in_loop(assign())

    def __enter__(self) -> SimulatorEndpoints:
        return self.start_in_thread()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def serve_forever(self, on_ready: Callable[[SimulatorEndpoints], None] | None = None) -> None:
        """Block until SIGINT/SIGTERM, then close every port cleanly (the management command)."""
        asyncio.run(self._serve_until_signalled(on_ready))

    async def _serve_until_signalled(self, on_ready: Callable[[SimulatorEndpoints], None] | None) -> None:
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        handled: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop_requested.set)
                handled.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread / not POSIX
                pass
        try:
            endpoints = await self.start()
            if on_ready is not None:
                on_ready(endpoints)
            await stop_requested.wait()
            logger.info("simulator: shutting down")
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            await self.close()


# --------------------------------------------------------------------------------------------
# Control client (used by the management command; handy in bench scripts)
# --------------------------------------------------------------------------------------------


class SimulatorControlError(RuntimeError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SimulatorControlClient:
    """Talks to the control endpoint of a running simulator (another process or thread)."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        try:
            response = httpx.request(method, url, json=payload, timeout=self.timeout)
        except httpx.ConnectError as exc:
            raise SimulatorControlError(f"no simulator control endpoint at {self.base_url} ({exc})") from exc
        except httpx.HTTPError as exc:
            raise SimulatorControlError(f"{method} {url} failed: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text}
        if response.is_error:
            detail = body.get("detail", response.text) if isinstance(body, dict) else response.text
            where = f" ({body['field']})" if isinstance(body, dict) and body.get("field") else ""
            raise SimulatorControlError(f"{response.status_code}{where}: {detail}", response.status_code)
        return body

    def overview(self) -> dict[str, Any]:
        return self._request("GET", "/")

    def faults(self) -> dict[str, dict[str, Any]]:
        return self._request("GET", "/faults")["faults"]

    def inject(self, agent: str, fault: Fault | str) -> dict[str, Any]:
        parsed = Fault.parse(fault) if isinstance(fault, str) else fault
        return self._request("POST", f"/faults/{normalize_agent_name(agent)}", parsed.to_json())

    def clear(self, agent: str) -> dict[str, Any]:
        return self._request("DELETE", f"/faults/{normalize_agent_name(agent)}")

    def reset(self) -> dict[str, Any]:
        return self._request("POST", "/reset")


def agent_ports_from_base(base_port: int, names: Iterable[str] = DEFAULT_AGENT_PORTS) -> dict[str, int]:
    """``8001`` → circuit_breaker 8001, market_analysis 8002, ...; ``0`` → every agent ephemeral."""
    return {name: (0 if base_port == 0 else base_port + offset) for offset, name in enumerate(names)}
