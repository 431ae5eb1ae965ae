"""System-state capture: the seed's investigation commands, run from the portal as evidence.

Each DiagnosticProbe row is a fixed piece of code (an HTTP GET, `SELECT version()` and the
connection counts on a PostgreSQL database, a TCP connect, a TLS handshake, a log file's tail, the
host's resources), never a shell command. They run in parallel threads; each has its own I/O
timeout, and the capture waits at most the longest timeout plus a grace period: a probe still
running then is recorded as timed out and the capture completes without it. Secrets come from
environment variables named on the probe and never enter the bundle.

The bundle (JSON) is stored through the core's evidence service, so its SHA-256 is that of the
exact stored bytes; the capture is on the timeline, and attaching it ticks the incident's "Preserve evidence"
checklist items as done by the portal (the core's evidence service does that for any evidence).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone

from incidents.models import Incident, TimelineEntry
from incidents.monitoring.models import CAPTURE_PERMISSION, DiagnosticProbe, SystemStateCapture
from incidents.services.incident import evidence_attach, timeline_record

BODY_LIMIT = 20_000  # characters of an HTTP answer kept in the bundle
LINE_LIMIT = 2_000  # characters per log line kept
TAIL_READ_LIMIT = 4 * 1024 * 1024  # bytes read from a log file's end at most
# The capture waits this much longer than its slowest probe's timeout before giving up on it.
GRACE_S = 1.0

OK, FAILED, TIMED_OUT = "ok", "failed", "timed_out"


class ProbeTimeout(Exception):
    pass


@dataclass
class ProbeResult:
    name: str
    kind: str
    target: str
    status: str
    duration_ms: float
    result: Any = None
    error: str = ""


def _target(probe: DiagnosticProbe) -> str:
    if probe.kind == DiagnosticProbe.Kind.HTTP:
        return probe.url
    if probe.kind == DiagnosticProbe.Kind.POSTGRES:
        return f"postgresql://{probe.username}@{probe.host}:{probe.port or 5432}/{probe.database}"
    if probe.kind in (DiagnosticProbe.Kind.TCP, DiagnosticProbe.Kind.TLS):
        return f"{probe.host}:{probe.port}"
    if probe.kind == DiagnosticProbe.Kind.LOG_TAIL:
        return probe.path
    return probe.path or "/"


def _secret(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise ValueError(f"environment variable {name} is not set")
    return value


def _http(probe: DiagnosticProbe) -> dict:
    headers = {header: _secret(env) for header, env in (probe.headers or {}).items()}
    try:
        with httpx.Client(timeout=probe.timeout_s, trust_env=False, follow_redirects=False) as client:
            response = client.get(probe.url, headers=headers)
    except httpx.TimeoutException as exc:
        raise ProbeTimeout(f"no answer within {probe.timeout_s:g} s") from exc
    text = response.text[:BODY_LIMIT]
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    return {
        "http_status": response.status_code,
        "headers_sent": sorted(headers),  # names only: the values are secrets
        "content_type": response.headers.get("content-type", ""),
        "body": body,
        "truncated": len(response.text) > BODY_LIMIT,
    }


def _postgres(probe: DiagnosticProbe) -> dict:
    password = _secret(probe.password_env) if probe.password_env else None
    timeout_ms = int(probe.timeout_s * 1000)
    try:
        with psycopg.connect(
            host=probe.host,
            port=probe.port or 5432,
            dbname=probe.database,
            user=probe.username,
            password=password,
            connect_timeout=max(1, int(probe.timeout_s + 0.999)),
            options=f"-c statement_timeout={timeout_ms}",
            application_name="tmt-state-capture",
        ) as conn:
            version = conn.execute("SELECT version()").fetchone()[0]
            rows = conn.execute(
                "SELECT coalesce(state, 'background'), count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() GROUP BY 1 ORDER BY 1"
            ).fetchall()
            limit = conn.execute("SHOW max_connections").fetchone()[0]
    except psycopg.errors.QueryCanceled as exc:
        raise ProbeTimeout(f"query cancelled after {probe.timeout_s:g} s") from exc
    except psycopg.OperationalError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "timeout" in message.lower():
            raise ProbeTimeout(message) from exc
        raise ValueError(message) from exc
    return {
        "version": version,
        "connections": {state: count for state, count in rows},
        "connections_total": sum(count for _, count in rows),
        "max_connections": int(limit),
    }


def _tcp(probe: DiagnosticProbe) -> dict:
    started = time.perf_counter()
    try:
        with socket.create_connection((probe.host, probe.port), timeout=probe.timeout_s) as sock:
            peer = sock.getpeername()
    except TimeoutError as exc:
        raise ProbeTimeout(f"no connection within {probe.timeout_s:g} s") from exc
    return {
        "connected": True,
        "peer": f"{peer[0]}:{peer[1]}",
        "connect_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _tls(probe: DiagnosticProbe) -> dict:
    context = ssl.create_default_context()
    deadline = time.monotonic() + probe.timeout_s
    try:
        with socket.create_connection((probe.host, probe.port), timeout=probe.timeout_s) as raw:
            raw.settimeout(max(0.05, deadline - time.monotonic()))
            with context.wrap_socket(raw, server_hostname=probe.host) as sock:
                cert = sock.getpeercert() or {}
                version, cipher = sock.version(), (sock.cipher() or ("",))[0]
    except TimeoutError as exc:
        raise ProbeTimeout(f"no TLS handshake within {probe.timeout_s:g} s") from exc
    subject = dict(item[0] for item in cert.get("subject", ()))
    return {
        "tls_version": version,
        "cipher": cipher,
        "subject": subject.get("commonName", ""),
        "not_after": cert.get("notAfter", ""),
        "verified": True,
    }


def log_roots() -> list[Path]:
    return [Path(root).resolve() for root in settings.TMT_CAPTURE_LOG_ROOTS]


def _log_tail(probe: DiagnosticProbe) -> dict:
    path = Path(probe.path).resolve()
    if not any(path.is_relative_to(root) for root in log_roots()):
        raise ValueError(f"{probe.path} is outside the allowed log folders (TMT_CAPTURE_LOG_ROOTS)")
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - TAIL_READ_LIMIT))
        data = handle.read(TAIL_READ_LIMIT)
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > TAIL_READ_LIMIT and lines:
        lines = lines[1:]  # the first is most likely cut
    tail = [line[:LINE_LIMIT] for line in lines[-probe.lines :]]
    return {"size_bytes": size, "lines": tail, "line_count": len(tail)}


def _host(probe: DiagnosticProbe) -> dict:
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(probe.path or "/")
    return {
        "cpu_percent": psutil.cpu_percent(interval=min(0.2, probe.timeout_s / 2)),
        "cpu_count": psutil.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "memory": {
            "total_mb": memory.total // 1048576,
            "available_mb": memory.available // 1048576,
            "percent": memory.percent,
        },
        "disk": {
            "path": probe.path or "/",
            "total_gb": round(disk.total / 1e9, 2),
            "free_gb": round(disk.free / 1e9, 2),
            "percent": disk.percent,
        },
        "processes": len(psutil.pids()),
        "boot_time": datetime.fromtimestamp(psutil.boot_time(), tz=timezone.get_fixed_timezone(0)).isoformat(),
    }


RUNNERS: dict[str, Callable[[DiagnosticProbe], dict]] = {
    DiagnosticProbe.Kind.HTTP: _http,
    DiagnosticProbe.Kind.POSTGRES: _postgres,
    DiagnosticProbe.Kind.TCP: _tcp,
    DiagnosticProbe.Kind.TLS: _tls,
    DiagnosticProbe.Kind.LOG_TAIL: _log_tail,
    DiagnosticProbe.Kind.HOST: _host,
}


def probe_run(probe: DiagnosticProbe) -> ProbeResult:
    started = time.perf_counter()

    def done(status: str, result: Any = None, error: str = "") -> ProbeResult:
        return ProbeResult(
            name=probe.name,
            kind=probe.kind,
            target=_target(probe),
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            result=result,
            error=error[:500],
        )

    try:
        return done(OK, RUNNERS[probe.kind](probe))
    except ProbeTimeout as exc:
        return done(TIMED_OUT, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure of a probe is its result, never the capture's
        cause = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return done(FAILED, error=f"{type(exc).__name__}: {cause}")


def probes_run(probes: list[DiagnosticProbe]) -> list[ProbeResult]:
    """All probes in parallel; a probe still running after its bound is recorded as timed out."""
    if not probes:
        return []
    bound = max(p.timeout_s for p in probes) + GRACE_S
    pool = ThreadPoolExecutor(
        max_workers=min(len(probes), settings.TMT_CAPTURE_CONCURRENCY), thread_name_prefix="tmt-probe"
    )
    started = time.perf_counter()
    futures = [pool.submit(probe_run, probe) for probe in probes]
    wait(futures, timeout=bound)
    # Not joined: a probe stuck past its own timeout must not hold the capture (its thread ends
    # with its socket's timeout).
    pool.shutdown(wait=False, cancel_futures=True)
    results = []
    for probe, future in zip(probes, futures, strict=True):
        if future.done() and not future.cancelled():
            results.append(future.result())
        else:
            results.append(
                ProbeResult(
                    name=probe.name,
                    kind=probe.kind,
                    target=_target(probe),
                    status=TIMED_OUT,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                    error=f"still running after the capture's bound of {bound:g} s",
                )
            )
    return results


def system_state_capture(*, incident: Incident, user: AbstractBaseUser) -> SystemStateCapture:
    """Run the enabled probes and store the bundle as the incident's evidence. Never raises for a
    probe's fault; PermissionDenied for someone who may not capture."""
    if not user.has_perm(CAPTURE_PERMISSION):
        raise PermissionDenied("You may not capture system state.")
    started = timezone.now()
    probes = list(DiagnosticProbe.objects.filter(enabled=True))
    results = probes_run(probes)
    completed = timezone.now()
    counts = {status: sum(1 for r in results if r.status == status) for status in (OK, FAILED, TIMED_OUT)}
    bundle = {
        "kind": "tmt-system-state",
        "incident": incident.reference,
        "captured_by": user.get_username(),
        "started_at": started.isoformat(),
        "completed_at": completed.isoformat(),
        "counts": counts,
        "probes": [asdict(r) for r in results],
    }
    data = json.dumps(bundle, indent=2, sort_keys=True, default=str).encode()
    name = f"system-state-{incident.reference}-{started:%Y%m%dT%H%M%SZ}.json"
    with transaction.atomic():
        evidence = evidence_attach(
            incident=incident,
            uploaded=SimpleUploadedFile(name, data, content_type="application/json"),
            user=user,
            description=f"System state: {len(results)} probes ({counts[OK]} ok, {counts[FAILED]} failed, "
            f"{counts[TIMED_OUT]} timed out)",
        )
        capture = SystemStateCapture.objects.create(
            incident=incident,
            requested_by=user,
            started_at=started,
            completed_at=completed,
            evidence=evidence,
            summary={
                "counts": counts,
                "probes": [{"name": r.name, "status": r.status, "error": r.error} for r in results],
            },
        )
        problems = "; ".join(f"{r.name}: {r.status.replace('_', ' ')} ({r.error})" for r in results if r.status != OK)
        timeline_record(
            incident,
            kind=TimelineEntry.Kind.EVIDENCE,
            action=(
                f"System state captured by {user.get_full_name() or user.get_username()}: {len(results)} probes, "
                f"{counts[OK]} ok, {counts[FAILED]} failed, {counts[TIMED_OUT]} timed out "
                f"({(completed - started).total_seconds():.1f} s). Evidence {name}, SHA-256 {evidence.sha256}."
                + (f" Problems: {problems}" if problems else "")
            ),
            owner=user,
            at=completed,
            data={"state_capture": capture.pk, "evidence": evidence.pk, "sha256": evidence.sha256, "counts": counts},
        )
    return capture
