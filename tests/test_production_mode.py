"""Production mode from this checkout: collectstatic, gunicorn with whitenoise, HTTPS behind a
proxy (X-Forwarded-Proto), every page and every static file it links answering."""

import re
import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from tests.factories import make_roster, open_incident
from tests.processes import ROOT, free_port, process_env

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("postgres"),
]

PROXY = {"X-Forwarded-Proto": "https", "Host": "127.0.0.1"}


def _session_cookie(user) -> str:
    # What logging in leaves in the session table, so the test needs no POST through the proxy.
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def test_production_mode_serves_pages_and_every_static_file(tmp_path):
    team = make_roster()
    incident = open_incident(reported_by=team["oncall1"], level=2)
    env = process_env(
        tmp_path,
        DJANGO_PRODUCTION="1",
        # The test's own key: the session it writes carries a hash made with it.
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
        TMT_SMS_PROVIDER_URL="http://127.0.0.1:9/unused",
    )
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert collected.returncode == 0, collected.stderr[-2000:]
    deploy = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deploy.returncode == 0, deploy.stderr[-2000:]
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "tmt_ir.wsgi",
            "-k",
            "gthread",
            "-w",
            "2",
            "--threads",
            "2",
            "-b",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(tmp_path / "gunicorn.log", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, headers=PROXY, timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.get("/accounts/login/")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            # Without the proxy's header the site sends everyone to HTTPS.
            plain = httpx.get(f"{base}/accounts/login/", headers={"Host": "127.0.0.1"})
            assert plain.status_code == 301 and plain.headers["location"].startswith("https://")
            anonymous = ["/accounts/login/", "/status/"]
            signed_in = ["/", "/incidents/", incident.get_absolute_url(), "/health/"]
            statics = set()
            for path in anonymous:
                statics |= _fetch_page(client, path)
            client.cookies.set(settings.SESSION_COOKIE_NAME, _session_cookie(team["oncall1"]))
            for path in signed_in:
                statics |= _fetch_page(client, path)
            assert any(s.endswith(".css") for s in statics) and any(s.endswith(".js") for s in statics)
            for path in sorted(statics):
                answer = client.get(path)
                assert answer.status_code == 200, f"{path}: {answer.status_code}"
                # Hashed names (ManifestStaticFilesStorage) are cached for ever by whitenoise.
                assert "max-age=315360000" in answer.headers.get("cache-control", ""), path
    finally:
        server.terminate()
        server.wait(30)


def _fetch_page(client: httpx.Client, path: str) -> set[str]:
    answer = client.get(path)
    assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:300]}"
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    return set(re.findall(r'(?:src|href)="(/static/[^"]+)"', answer.text))
