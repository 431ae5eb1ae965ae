"""The event stream the live pages listen to: login, what each role hears, and how fast."""

from __future__ import annotations

import json
import queue
import sys
import threading
import time

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection

from incidents import services
from incidents.live import relay, views
from incidents.live.models import LiveEvent
from incidents.live.publish import publish
from incidents.roles import ensure_role_groups
from tests.asgi_server import AsgiServer, client_for, session_cookie
from tests.celery_fixtures import wait_for
from tests.factories import UserFactory, open_incident
from tests.processes import free_port, start, stop

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


class Stream:
    """An open /live/stream/, read in a thread into (event, data) pairs."""

    def __init__(self, client: httpx.Client) -> None:
        self.events: queue.Queue = queue.Queue()
        self.client = client
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        event, data = self.next(timeout=10)
        assert event == "ready", (event, data)
        self.topics = data["topics"]

    def _read(self) -> None:
        try:
            with self.client.stream("GET", "/live/stream/", timeout=httpx.Timeout(10, read=None)) as answer:
                assert answer.headers["content-type"].startswith("text/event-stream")
                event, data = "message", ""
                for line in answer.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line == "" and data:
                        self.events.put((event, json.loads(data), time.time()))
                        event, data = "message", ""
        except (httpx.HTTPError, RuntimeError):
            pass  # closed at the test's end

    def next(self, timeout: float) -> tuple[str, dict]:
        event, data, _ = self.events.get(timeout=timeout)
        return event, data

    def drain(self, wait: float) -> list[tuple[str, dict]]:
        time.sleep(wait)
        found = []
        while not self.events.empty():
            event, data, _ = self.events.get_nowait()
            found.append((event, data))
        return found

    def close(self) -> None:
        self.client.close()


def _user(role: str | None, username: str):
    ensure_role_groups()
    user = UserFactory(username=username)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def test_the_stream_and_the_summary_need_a_login(asgi_server: AsgiServer):
    with client_for(asgi_server) as anonymous:
        for path in ("/live/stream/", "/live/summary/"):
            answer = anonymous.get(path)
            assert answer.status_code == 302 and "/accounts/login/" in answer.headers["location"], path


def test_a_note_reaches_an_open_stream_within_a_second(asgi_server: AsgiServer):
    engineer = _user("On-Call Engineer", "priya")
    incident = open_incident(reported_by=engineer)
    stream = Stream(client_for(asgi_server, engineer))
    try:
        assert stream.topics == ["health", "incident"]
        started = time.time()
        services.timeline_add_note(incident=incident, author=engineer, text="Failover started")
        event, data = stream.next(timeout=2)
        _, _, received = (event, data, time.time())
        assert (event, data["incident"]) == ("incident", incident.pk)
        assert received - started < 1.0
        # What changed is not in the event: the page re-fetches it through the views.
        assert set(data) == {"incident", "at"}
    finally:
        stream.close()


def test_each_person_hears_only_of_what_they_may_open(asgi_server: AsgiServer):
    engineer = _user("On-Call Engineer", "priya")
    trainer = _user("Trainer", "tom")  # incidents yes; the health page no
    nobody = _user(None, "visitor")  # no role: neither
    incident = open_incident(reported_by=engineer)
    streams = {user.username: Stream(client_for(asgi_server, user)) for user in (engineer, trainer, nobody)}
    try:
        assert streams["priya"].topics == ["health", "incident"]
        assert streams["tom"].topics == ["incident"]
        assert streams["visitor"].topics == []
        services.timeline_add_note(incident=incident, author=engineer, text="Rolled back the release")
        publish(topic=LiveEvent.Topic.HEALTH)
        heard = {name: stream.drain(1.5) for name, stream in streams.items()}
        assert sorted(event for event, _ in heard["priya"]) == ["health", "incident"]
        assert [event for event, _ in heard["tom"]] == ["incident"]
        assert heard["visitor"] == []
    finally:
        for stream in streams.values():
            stream.close()


def test_the_summary_counts_unacknowledged_real_incidents_for_those_who_may_see_them(asgi_server: AsgiServer):
    engineer = _user("On-Call Engineer", "priya")
    nobody = _user(None, "visitor")
    major = open_incident(reported_by=engineer, level=1, title="Order gateway down")
    open_incident(reported_by=engineer, level=3, title="Slow report")
    acknowledged = open_incident(reported_by=engineer, level=2, title="Acknowledged already")
    services.incident_acknowledge(incident=acknowledged, user=engineer)
    open_incident(reported_by=engineer, level=1, title="Drill", is_drill=True)
    with client_for(asgi_server, engineer) as client:
        summary = client.get("/live/summary/").json()
    assert summary["unacknowledged"] == 2
    assert [(m["reference"], m["severity"], m["title"]) for m in summary["major"]] == [
        (major.reference, 1, "Order gateway down")
    ]
    with client_for(asgi_server, nobody) as client:
        assert client.get("/live/summary/").json() == {"unacknowledged": 0, "major": []}


def test_a_synchronous_server_tells_the_page_to_poll(client):
    client.force_login(_user("On-Call Engineer", "priya"))
    answer = client.get("/live/stream/")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/event-stream")
    assert b"event: unavailable" in b"".join(answer.streaming_content if answer.streaming else [answer.content])


def test_favicon_ico_is_an_icon_not_a_404(client):
    answer = client.get("/favicon.ico", follow=True)
    assert answer.status_code == 200
    assert answer.redirect_chain and answer.redirect_chain[-1][0].endswith(".svg")


def _connections_to_the_test_database() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


@pytest.mark.usefixtures("postgres")
def test_pages_connecting_at_once_are_signed_in_a_few_at_a_time_and_keep_no_connection(
    asgi_server: AsgiServer, monkeypatch
):
    engineer = _user("On-Call Engineer", "priya")
    incident = open_incident(reported_by=engineer)
    # Each sign-in holds a database connection while it runs: count how many run at once.
    lock, running, most = threading.Lock(), [0], [0]
    signing_in = views._topics_for

    def counted(request):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.05)  # long enough for the pages to overlap
            return signing_in(request)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(views, "_topics_for", counted)
    clients = [client_for(asgi_server, engineer) for _ in range(24)]  # sessions made here, not in the threads
    streams: list[Stream] = []
    opening = [threading.Thread(target=lambda c=client: streams.append(Stream(c))) for client in clients]
    try:
        for thread in opening:
            thread.start()
        for thread in opening:
            thread.join(30)
        assert len(streams) == 24
        assert most[0] == relay.SETUP_SLOTS
        # The test's own and the relay's: none kept for the pages that stay open.
        wait_for(lambda: _connections_to_the_test_database() <= 2, timeout=5, what="sign-in connections closed")
        services.timeline_add_note(incident=incident, author=engineer, text="Still one relay")
        for stream in streams:
            assert stream.next(timeout=3)[0] == "incident"
    finally:
        for stream in streams:
            stream.close()


@pytest.mark.usefixtures("postgres")
def test_the_production_live_process_streams_behind_the_proxy(tmp_path):
    """The `live` process of the production layout: uvicorn in production mode, HTTPS at the proxy."""
    engineer = _user("On-Call Engineer", "priya")
    port = free_port()
    server = start(
        [sys.executable, "-m", "uvicorn", "tmt_ir.asgi:application", "--port", str(port), "--no-access-log"],
        tmp_path,
        "live",
        DJANGO_PRODUCTION="1",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,  # the session below is signed with it
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
        TMT_SMS_PROVIDER_URL="http://127.0.0.1:9/unused",
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{base}/live/summary/"), timeout=30, what="uvicorn to answer")
        with httpx.Client(base_url=base, headers={"X-Forwarded-Proto": "https"}, timeout=10) as client:
            client.cookies.set(settings.SESSION_COOKIE_NAME, session_cookie(engineer))
            with client.stream("GET", "/live/stream/", timeout=httpx.Timeout(10, read=10)) as answer:
                assert answer.status_code == 200, answer.read()
                lines = answer.iter_lines()
                assert next(lines) == "retry: 2000"
                assert next(lines) == "event: ready"
        # Without the proxy's header the process sends the page to HTTPS, as gunicorn does.
        assert httpx.get(f"{base}/live/stream/").status_code == 301
    finally:
        stop(server)


def _answers(url: str) -> bool:
    try:
        # Signed out: sent to the login page (no page rendered: no collected static files here).
        return httpx.get(url, headers={"X-Forwarded-Proto": "https"}, timeout=2).status_code == 302
    except httpx.TransportError:
        return False
