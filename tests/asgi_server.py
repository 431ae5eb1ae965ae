"""The project's ASGI application served by uvicorn in a thread of the test process, for the
tests that need the live pages' event stream (pytest-django's live_server is WSGI, where the
stream answers "poll instead"). It shares the test database: use transactional tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection

from tests.processes import free_port
from tmt_ir.asgi import application


class AsgiServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
            # Open streams never end by themselves; the test's end closes them.
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="asgi-test-server", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the ASGI test server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        # The server's threads kept their database connections (CONN_MAX_AGE); the test
        # database cannot be flushed or dropped while they are open.
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture
def asgi_server(transactional_db) -> Iterator[AsgiServer]:
    server = AsgiServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def session_cookie(user) -> str:
    """What logging in leaves in the session table (no login form, no lockout counting)."""
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def client_for(server: AsgiServer, user=None) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=10)
    if user is not None:
        client.cookies.set("sessionid", session_cookie(user))
    return client
