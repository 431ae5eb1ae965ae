"""System-state capture: probes run against real servers (the agent simulator, PostgreSQL, a TCP
server that never answers, a header-recording HTTP server), the bundle stored as hashed evidence."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.urls import reverse

from incidents.devtools.simulator import SimulatorServer
from incidents.models import EvidenceAttachment, TimelineEntry
from incidents.monitoring import capture
from incidents.monitoring.models import DiagnosticProbe, SystemStateCapture
from tests.factories import open_incident

SECRET = "Bearer s3cr3t-broker-token"


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    server = SimulatorServer(agent_ports={"circuit_breaker": 0}, control_port=None)
    server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture
def no_seeded_probes(db) -> None:
    # The seeded probes point at production hosts; each test configures its own.
    DiagnosticProbe.objects.all().delete()


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """Accepts connections and never sends a byte: a hung broker API or agent."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def header_server() -> Iterator[tuple[str, list[dict]]]:
    """Answers {"ok": true} and keeps the headers of every request it received."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            received.append(dict(self.headers))
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v3/accounts", received
    server.shutdown()
    server.server_close()


def probe(**fields) -> DiagnosticProbe:
    item = DiagnosticProbe(**fields)
    item.full_clean()
    item.save()
    return item


def by_name(bundle: dict) -> dict[str, dict]:
    return {p["name"]: p for p in bundle["probes"]}


def test_capture_stores_the_bundle_as_evidence_whose_hash_matches_its_bytes(
    simulator, no_seeded_probes, engineer, engineer_client, settings, tmp_path
):
    settings.TMT_CAPTURE_LOG_ROOTS = [str(tmp_path)]
    log = tmp_path / "trading.log"
    log.write_text("".join(f"2026-12-06 03:1{n % 10} order {n} filled\n" for n in range(500)))
    db = connection.settings_dict
    agent = simulator.endpoints.agent_url("circuit_breaker")
    probe(name="Circuit breaker /health", kind="http", url=agent + "/health", timeout_s=2)
    probe(
        name="Trading database",
        kind="postgres",
        host=db["HOST"] or "127.0.0.1",
        port=int(db["PORT"] or 5432),
        database=db["NAME"],
        username=db["USER"],
        timeout_s=3,
    )
    probe(name="Agent port", kind="tcp", host="127.0.0.1", port=int(agent.rsplit(":", 1)[1]), timeout_s=1)
    probe(name="trading.log", kind="log_tail", path=str(log), lines=50)
    probe(name="Host", kind="host", path=str(tmp_path))
    probe(name="Disabled", kind="tcp", host="127.0.0.1", port=1, enabled=False)
    incident = open_incident(reported_by=engineer)

    response = engineer_client.post(reverse("incidents:capture_state", args=[incident.reference]))
    assert response.status_code == 302

    result = SystemStateCapture.objects.get()
    evidence = result.evidence
    assert evidence.incident == incident and evidence.uploaded_by == engineer
    assert evidence.original_name.startswith(f"system-state-{incident.reference}-")
    download = engineer_client.get(reverse("incidents:evidence_download", args=[incident.reference, evidence.pk]))
    data = b"".join(download.streaming_content)
    assert hashlib.sha256(data).hexdigest() == evidence.sha256, "the hash is that of the stored bytes"
    assert len(data) == evidence.size_bytes

    bundle = json.loads(data)
    assert bundle["incident"] == incident.reference
    assert bundle["counts"] == {"ok": 5, "failed": 0, "timed_out": 0}
    probes = by_name(bundle)
    assert "Disabled" not in probes
    assert probes["Circuit breaker /health"]["result"]["body"]["status"] == "healthy"
    assert probes["Trading database"]["result"]["version"].startswith("PostgreSQL ")
    assert probes["Trading database"]["result"]["connections_total"] >= 1
    assert probes["Agent port"]["result"]["connected"] is True
    tail = probes["trading.log"]["result"]["lines"]
    assert len(tail) == 50 and tail[-1] == "2026-12-06 03:19 order 499 filled" and tail[0].endswith("order 450 filled")
    assert 0 <= probes["Host"]["result"]["memory"]["percent"] <= 100

    entry = incident.timeline.filter(kind=TimelineEntry.Kind.EVIDENCE, data__state_capture=result.pk).get()
    assert "5 probes, 5 ok, 0 failed, 0 timed out" in entry.action and evidence.sha256 in entry.action
    item = incident.checklist_items.get(text="Preserve evidence: capture logs and system state")
    assert item.done and item.done_by == engineer and item.ticked_by_portal, "the checklist item ticks itself"
    page = engineer_client.get(incident.get_absolute_url()).content.decode()
    assert evidence.original_name in page and "5 probes (5 ok, 0 failed, 0 timed out)" in page


def test_a_hanging_probe_is_timed_out_and_the_capture_still_completes(no_seeded_probes, engineer, silent_server):
    host, port = silent_server
    probe(name="Broker API (hangs)", kind="http", url=f"http://{host}:{port}/v3/accounts", timeout_s=0.5)
    probe(name="Broker TLS (hangs)", kind="tls", host=host, port=port, timeout_s=0.5)
    probe(name="Host", kind="host")
    incident = open_incident(reported_by=engineer)

    started = time.monotonic()
    result = capture.system_state_capture(incident=incident, user=engineer)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 + capture.GRACE_S + 1.0, f"bounded by the probes' timeouts, took {elapsed:.1f} s"

    assert result.summary["counts"] == {"ok": 1, "failed": 0, "timed_out": 2}
    bundle = json.loads(result.evidence.file.open("rb").read())
    probes = by_name(bundle)
    assert probes["Broker API (hangs)"]["status"] == "timed_out"
    assert probes["Broker API (hangs)"]["error"] == "no answer within 0.5 s"
    assert probes["Broker TLS (hangs)"]["status"] == "timed_out"
    assert probes["Host"]["status"] == "ok"
    entry = incident.timeline.filter(data__state_capture=result.pk).get()
    assert "2 timed out" in entry.action and "Broker API (hangs): timed out (no answer within 0.5 s)" in entry.action


def test_a_probe_past_the_captures_bound_is_recorded_as_timed_out(no_seeded_probes, engineer, monkeypatch):
    # A probe whose own timeout does not hold (a blocking call that ignores it): the capture
    # stops waiting at its bound.
    release = threading.Event()
    monkeypatch.setitem(capture.RUNNERS, DiagnosticProbe.Kind.HOST, lambda p: release.wait(10) or {})
    monkeypatch.setattr(capture, "GRACE_S", 0.2)
    stuck = probe(name="Stuck", kind="host", timeout_s=0.3)
    started = time.monotonic()
    [result] = capture.probes_run([stuck])
    release.set()
    assert time.monotonic() - started < 1.5
    assert result.status == capture.TIMED_OUT
    assert result.error == "still running after the capture's bound of 0.5 s"


def test_header_secrets_come_from_the_environment_and_never_enter_the_bundle(
    no_seeded_probes, engineer, header_server, monkeypatch
):
    url, received = header_server
    monkeypatch.setenv("TMT_TEST_BROKER_AUTH", SECRET)
    probe(name="Broker accounts", kind="http", url=url, headers={"Authorization": "TMT_TEST_BROKER_AUTH"})
    probe(name="Missing secret", kind="http", url=url, headers={"Authorization": "TMT_TEST_NOT_SET"})
    result = capture.system_state_capture(incident=open_incident(reported_by=engineer), user=engineer)

    assert [r["Authorization"] for r in received] == [SECRET], "sent once; never without its secret"
    data = result.evidence.file.open("rb").read()
    assert SECRET.encode() not in data
    probes = by_name(json.loads(data))
    assert probes["Broker accounts"]["result"]["headers_sent"] == ["Authorization"]
    assert probes["Missing secret"]["status"] == "failed"
    assert "environment variable TMT_TEST_NOT_SET is not set" in probes["Missing secret"]["error"]


def test_unreachable_database_and_log_outside_the_allowed_folders_fail_clearly(
    no_seeded_probes, engineer, settings, tmp_path
):
    settings.TMT_CAPTURE_LOG_ROOTS = [str(tmp_path)]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    probe(
        name="Dead database",
        kind="postgres",
        host="127.0.0.1",
        port=closed_port,
        database="x",
        username="x",
        timeout_s=1,
    )
    probe(name="passwd", kind="log_tail", path="/etc/passwd")
    probe(name="Escape", kind="log_tail", path=str(tmp_path / ".." / "elsewhere.log"))
    result = capture.system_state_capture(incident=open_incident(reported_by=engineer), user=engineer)
    data = result.evidence.file.open("rb").read()
    probes = by_name(json.loads(data))
    assert probes["Dead database"]["status"] == "failed"
    assert "Connection refused" in probes["Dead database"]["error"]
    for name in ("passwd", "Escape"):
        assert probes[name]["status"] == "failed"
        assert "outside the allowed log folders" in probes[name]["error"]
    assert b"root:" not in data


def test_capturing_needs_the_right_and_writes_nothing_without_it(no_seeded_probes, engineer, trainer):
    incident = open_incident(reported_by=engineer)
    client = Client()
    client.force_login(trainer)
    assert client.post(reverse("incidents:capture_state", args=[incident.reference])).status_code == 403
    assert not SystemStateCapture.objects.exists() and not EvidenceAttachment.objects.exists()
    assert client.get(reverse("incidents:capture_state", args=[incident.reference])).status_code in (403, 405)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "http"}, "url"),
        ({"kind": "tcp", "host": "broker"}, "port"),
        ({"kind": "postgres", "host": "db", "database": "tmt"}, "username"),
        ({"kind": "log_tail"}, "path"),
        ({"kind": "log_tail", "path": "/var/log/tmt/a.log", "lines": 5000}, "lines"),
        ({"kind": "host", "timeout_s": 120}, "timeout_s"),
        ({"kind": "http", "url": "file:///etc/passwd"}, "url"),
        ({"kind": "http", "url": "http://x/", "headers": {"Authorization": ""}}, "headers"),
    ],
)
def test_a_probe_is_checked_before_it_is_saved(no_seeded_probes, fields, field):
    with pytest.raises(ValidationError) as refused:
        DiagnosticProbe(name="p", **fields).full_clean()
    assert field in refused.value.message_dict


def test_the_seeds_investigation_commands_are_seeded_as_probes(db):
    kinds = dict(DiagnosticProbe.objects.values_list("name", "kind"))
    assert kinds["Circuit breaker /health"] == "http"
    assert kinds["Trading database"] == "postgres"
    assert kinds["Broker API (TLS)"] == "tls"
    assert kinds["trading.log"] == "log_tail"
    assert kinds["Host resources"] == "host"
