"""Real Celery, the paging dispatcher and a real HTTP SMS/voice provider for the tests."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings
from django.db import connections

from tmt_ir.celery import app

QUEUES = ["default", "health", "reports"]


def purge_queues() -> None:
    # Messages left by an earlier run would point at rows of another test database.
    with app.connection_for_write() as conn:
        for queue in QUEUES:
            # A queue that never existed has nothing to purge.
            with contextlib.suppress(Exception):
                conn.default_channel.queue_purge(queue)


@pytest.fixture
def celery_worker(transactional_db):
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.fail("the worker tests need Redis: set CELERY_BROKER_URL (make test does)")
    purge_queues()
    # Real workers keep their database connections between tasks (tmt_ir/celery.py); this one
    # runs in a thread of the test process, so it closes them after each task instead: a
    # connection left behind by its finished thread would stop the test database being dropped.
    task_postrun.connect(_close_connections, weak=False)
    try:
        with start_worker(
            app,
            pool="solo",
            queues=QUEUES,
            perform_ping_check=False,
            shutdown_timeout=20,
            loglevel="WARNING",
        ) as worker:
            yield worker
    finally:
        task_postrun.disconnect(_close_connections)


def _close_connections(**kwargs) -> None:
    connections.close_all()


@pytest.fixture
def dispatcher(transactional_db):
    """The paging dispatcher as `manage.py run_dispatcher` runs it, in threads of this process."""
    from incidents.monitoring.dispatcher import Dispatcher

    running = Dispatcher(name="dispatcher@tests", threads=4, monitor=False)
    running.start()
    yield running
    running.stop()


class ProviderHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length", 0))
        payload = json.loads(self.rfile.read(length) or b"{}")
        server: ProviderServer = self.server  # type: ignore[assignment]
        key = self.headers.get("Idempotency-Key")
        if server.delay_s:
            time.sleep(server.delay_s)  # a provider that takes its time, so sends are in flight
        with server.lock:
            server.authorizations.append(self.headers.get("Authorization"))
            if key is not None and key in server.accepted_keys:
                # A re-send of a page already accepted: answered as accepted, not sent again.
                server.replays += 1
                status = 200
            else:
                payload["_received_at"] = time.time()
                payload["_key"] = key
                server.received.append(payload)
                status = server.respond_with(payload)
                if status < 400 and key is not None:
                    server.accepted_keys.add(key)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}' if status < 400 else b'{"error": "refused"}')

    def log_message(self, *args) -> None:
        pass


class ProviderServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ProviderHandler)
        self.lock = threading.Lock()
        self.received: list[dict] = []
        self.authorizations: list[str | None] = []  # each request's Authorization header
        # A provider honouring idempotency keys: a re-send of an accepted key is a replay, dropped.
        self.replays = 0
        self.accepted_keys: set[str] = set()
        self.delay_s = 0.0
        self.respond_with: Callable[[dict], int] = lambda payload: 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/send"

    def to(self, number: str) -> list[dict]:
        with self.lock:
            return [p for p in self.received if p["to"] == number]


@pytest.fixture
def sms_provider(settings):
    server = ProviderServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.TMT_SMS_PROVIDER_URL = server.url
    yield server
    server.shutdown()
    server.server_close()


def wait_for(condition: Callable[[], object], *, timeout: float = 20.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")
