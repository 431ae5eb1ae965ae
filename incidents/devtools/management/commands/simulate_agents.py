"""``manage.py simulate_agents``: serve stand-ins for the trading agents, or steer running ones.

Serve (blocks until Ctrl-C / SIGTERM)::

    manage.py simulate_agents                       # 8001-8004, control on 8009
    manage.py simulate_agents --base-port 9001 --agent execution_engine=9004
    manage.py simulate_agents --fault market_analysis=flapping --fleet 1000 --fleet-slow-fraction 0.05

Steer a simulator that is already running (talks to its control port, then exits)::

    manage.py simulate_agents --inject circuit_breaker=down
    manage.py simulate_agents --inject risk_management=slow:800 --inject circuit_breaker=refuse_stop:409
    manage.py simulate_agents --clear circuit_breaker
    manage.py simulate_agents --reset
    manage.py simulate_agents --list-faults
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from incidents.devtools.simulator import (
    DEFAULT_AGENT_PORTS,
    DEFAULT_CONTROL_PORT,
    DEFAULT_FLEET_PORT,
    DEFAULT_HOST,
    Fault,
    FaultError,
    FleetConfig,
    SimulatorControlClient,
    SimulatorControlError,
    SimulatorEndpoints,
    SimulatorServer,
    SimulatorStartError,
    agent_ports_from_base,
    parse_agent_assignment,
)
from incidents.devtools.simulator import logger as simulator_logger


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is outside 0-65535")
    return port


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


class Command(BaseCommand):
    help = (
        "Serve simulated trading agents (circuit_breaker, market_analysis, risk_management) with "
        "/health and the emergency-stop API, plus a control port for fault injection; or, with "
        "--inject/--clear/--reset/--list-faults, steer a simulator that is already running."
    )

    # The simulator touches no database; skipping the checks keeps `--inject` instant and lets
    # the simulator run while migrations are half-applied during a demo set-up.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        serve = parser.add_argument_group("serving")
        serve.add_argument("--host", default=DEFAULT_HOST, help="interface to bind (default %(default)s)")
        serve.add_argument(
            "--base-port",
            type=_port,
            default=min(DEFAULT_AGENT_PORTS.values()),
            help="circuit_breaker listens here, market_analysis on +1, risk_management on +2; "
            "0 picks free ports (default %(default)s)",
        )
        serve.add_argument(
            "--agent",
            action="append",
            default=[],
            metavar="NAME=PORT",
            help="override one agent's port or add another agent (repeatable)",
        )
        serve.add_argument(
            "--control-port",
            type=_port,
            default=DEFAULT_CONTROL_PORT,
            help="port of the fault-injection control endpoint (default %(default)s)",
        )
        serve.add_argument(
            "--latency-ms",
            type=_non_negative_float,
            default=0.0,
            help="base latency added to every agent response (default %(default)s)",
        )
        serve.add_argument(
            "--fault",
            action="append",
            default=[],
            metavar="NAME=MODE[:N]",
            help="start with this fault injected (repeatable), e.g. market_analysis=flapping",
        )
        serve.add_argument("--quiet", action="store_true", help="do not log one line per request")

        fleet = parser.add_argument_group("fleet (many cheap targets for benchmarks)")
        fleet.add_argument(
            "--fleet",
            type=int,
            default=0,
            metavar="N",
            help="also serve /agents/<n>/health for n in 0..N-1 on --fleet-port",
        )
        fleet.add_argument("--fleet-port", type=_port, default=DEFAULT_FLEET_PORT)
        fleet.add_argument("--fleet-latency-ms", type=_non_negative_float, default=50.0)
        fleet.add_argument(
            "--fleet-slow-fraction",
            type=_non_negative_float,
            default=0.0,
            help="share of fleet targets that take --fleet-slow-ms instead (e.g. 0.05)",
        )
        fleet.add_argument("--fleet-slow-ms", type=_non_negative_float, default=1000.0)

        steer = parser.add_argument_group("steering a running simulator")
        steer.add_argument(
            "--control-url",
            help="control endpoint of the running simulator (default http://HOST:CONTROL-PORT)",
        )
        steer.add_argument(
            "--inject",
            action="append",
            default=[],
            metavar="NAME=MODE[:N]",
            help="modes: ok, down, slow:MS, flapping, http500, malformed, refuse_stop[:409|503]",
        )
        steer.add_argument("--clear", action="append", default=[], metavar="NAME")
        steer.add_argument(
            "--reset",
            action="store_true",
            help="clear every fault and resume trading on all agents",
        )
        steer.add_argument("--list-faults", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["inject"] or options["clear"] or options["reset"] or options["list_faults"]:
            self._steer(options)
        else:
            self._serve(options)

    # ---- steering ---------------------------------------------------------------------------

    def _steer(self, options: dict[str, Any]) -> None:
        # Parse everything before sending anything, so a typo in the second --inject does not
        # leave the first one applied.
        injections: list[tuple[str, Fault]] = []
        for text in options["inject"]:
            try:
                name, spec = parse_agent_assignment(text)
                injections.append((name, Fault.parse(spec)))
            except (ValueError, FaultError) as exc:
                raise CommandError(f"--inject {text}: {exc}") from exc

        control_url = options["control_url"] or self._default_control_url(options)
        client = SimulatorControlClient(control_url)
        try:
            if options["reset"]:
                client.reset()
                self.stdout.write("reset: every fault cleared, trading resumed on every agent")
            for name in options["clear"]:
                client.clear(name)
                self.stdout.write(f"{name}: fault cleared")
            for name, fault in injections:
                client.inject(name, fault)
                self.stdout.write(f"{name}: {self._describe(fault)}")
            if options["list_faults"]:
                for name, fault_json in client.faults().items():
                    self.stdout.write(f"{name}: {self._describe(Fault.from_json(fault_json))}")
        except SimulatorControlError as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    def _default_control_url(options: dict[str, Any]) -> str:
        host = options["host"]
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104
        return f"http://{host}:{options['control_port']}"

    @staticmethod
    def _describe(fault: Fault) -> str:
        parts = [fault.mode.value]
        if fault.delay_ms:
            parts.append(f"+{fault.delay_ms:g} ms")
        if fault.mode.value == "refuse_stop":
            parts.append(f"status {fault.status}")
        return " ".join(parts)

    # ---- serving ----------------------------------------------------------------------------

    def _serve(self, options: dict[str, Any]) -> None:
        agent_ports = agent_ports_from_base(options["base_port"])
        for text in options["agent"]:
            try:
                name, port_text = parse_agent_assignment(text)
                agent_ports[name] = _port(port_text)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                raise CommandError(f"--agent {text}: {exc}") from exc

        initial_faults: dict[str, Fault] = {}
        for text in options["fault"]:
            try:
                name, spec = parse_agent_assignment(text)
                initial_faults[name] = Fault.parse(spec)
            except (ValueError, FaultError) as exc:
                raise CommandError(f"--fault {text}: {exc}") from exc
            if name not in agent_ports:
                raise CommandError(f"--fault {text}: no agent named {name!r}")

        fleet: FleetConfig | None = None
        if options["fleet"] < 0:
            raise CommandError("--fleet must not be negative")
        if options["fleet"]:
            try:
                fleet = FleetConfig.with_slow_fraction(
                    options["fleet"],
                    options["fleet_slow_fraction"],
                    base_latency_ms=options["fleet_latency_ms"],
                    slow_latency_ms=options["fleet_slow_ms"],
                )
            except ValueError as exc:
                raise CommandError(f"--fleet: {exc}") from exc

        if not options["quiet"]:
            self._log_requests_to_stderr()

        server = SimulatorServer(
            host=options["host"],
            agent_ports=agent_ports,
            control_port=options["control_port"],
            fleet=fleet,
            fleet_port=options["fleet_port"],
            base_latency_ms=options["latency_ms"],
            initial_faults=initial_faults,
            access_log=not options["quiet"],
        )
        try:
            server.serve_forever(on_ready=self._announce)
        except SimulatorStartError as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:  # only if a signal arrived before the handlers were installed
            pass
        self.stdout.write("simulator stopped")

    def _announce(self, endpoints: SimulatorEndpoints) -> None:
        for name, url in endpoints.agent_urls.items():
            self.stdout.write(f"agent {name} listening on {url}")
        if endpoints.control_url:
            self.stdout.write(f"control listening on {endpoints.control_url}")
        if endpoints.fleet_url:
            self.stdout.write(
                f"fleet listening on {endpoints.fleet_url} (/agents/0..{endpoints.fleet_size - 1}/health)"
            )
        self.stdout.write("press Ctrl-C to stop")
        # Scripts (and the tests) read the bound ports from a pipe, where output is buffered.
        self.stdout.flush()

    @staticmethod
    def _log_requests_to_stderr() -> None:
        # The project's LOGGING sends the root logger to the console at LOG_LEVEL; make sure the
        # simulator's per-request lines show up even if that level is WARNING.
        if simulator_logger.level == logging.NOTSET or simulator_logger.level > logging.INFO:
            simulator_logger.setLevel(logging.INFO)
        if not logging.getLogger().handlers and not simulator_logger.handlers:
            simulator_logger.addHandler(logging.StreamHandler(sys.stderr))
