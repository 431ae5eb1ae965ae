"""Production mode from this checkout: collectstatic, gunicorn with whitenoise, HTTPS behind a
proxy (X-Forwarded-Proto), every page and every static file it links answering, and a walk
through the portal in Chromium under its Content-Security-Policy."""

import re
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import ConsoleMessage, Page, Response, expect, sync_playwright
from pypdf import PdfReader

from incidents.escalation.services import deadlines_fire_due
from incidents.notifications import acks
from incidents.notifications.models import Notification
from reports import services as report_services
from tests.browser import launch, watch_csp_violations
from tests.factories import DEMO_PASSWORD, make_roster, open_incident
from tests.processes import ROOT, free_port, process_env
from tests.reports.helpers import resolved_incident
from tests.security_headers import assert_permissions_policy, assert_strict_csp

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
    # The incident's first page (not sent: no provider here) and its one-tap link, a public page.
    deadlines_fire_due()
    page = Notification.objects.filter(incident=incident, channel=Notification.Channel.SMS).select_related(
        "incident", "ack_link"
    )[0]
    ack_path = urlsplit(acks.ack_link_url(page)).path
    # For the walk in Chromium: a manager who may also use the admin, and a resolved incident
    # whose report is rendered to PDF here (the reports queue's own service; no worker runs).
    manager = team["im"]
    manager.is_staff = True
    manager.save(update_fields=["is_staff"])
    resolved = resolved_incident(team["oncall1"], title="Order gateway rejected FIX logons")
    render = report_services.report_render_request(incident=resolved, kinds=[], user=manager)
    assert report_services.report_render_run(render_id=render.pk).startswith("rendered")
    port = free_port()
    env = process_env(
        tmp_path,
        DJANGO_PRODUCTION="1",
        # The test's own key: the session it writes carries a hash made with it.
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        # The browser's origin in the walk in Chromium (see _walk_in_chromium).
        DJANGO_CSRF_TRUSTED_ORIGINS=f"http://127.0.0.1:{port}",
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
            anonymous = ["/accounts/login/", "/status/", ack_path]
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
        _walk_in_chromium(base, username=manager.username, incident=resolved.reference, tmp_path=tmp_path)
    finally:
        server.terminate()
        server.wait(30)


def _fetch_page(client: httpx.Client, path: str) -> set[str]:
    answer = client.get(path)
    assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:300]}"
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    return set(re.findall(r'(?:src|href)="(/static/[^"]+)"', answer.text))


def _walk_in_chromium(base: str, *, username: str, incident: str, tmp_path: Path) -> None:
    """A manager's rounds in Chromium against the production server, under its real headers.

    The browser talks plain HTTP to gunicorn and sends X-Forwarded-Proto: https with every request
    (extra_http_headers), as the TLS-terminating proxy would add it, so Django treats each request
    as HTTPS: no redirect to https://, Secure cookies (Chromium keeps them for 127.0.0.1, a secure
    context), HSTS. The one thing the proxy cannot fake is the browser's Origin, which stays
    http://: the server trusts it for CSRF (DJANGO_CSRF_TRUSTED_ORIGINS), as a deployment would
    trust its public https:// address. Fails on any console error, uncaught exception or policy
    violation, and on any static file that does not answer 200.
    """
    documents: dict[str, Response] = {}
    statics: dict[str, int] = {}
    problems: list[str] = []

    def seen(response: Response) -> None:
        path = urlsplit(response.url).path
        if path.startswith("/static/"):
            statics[path] = response.status
        elif response.request.resource_type == "document" and not 300 <= response.status < 400:
            documents[path] = response  # the page a redirect (the login's) leads to is recorded too

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text} ({message.location.get('url')})")

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(
                viewport={"width": 1366, "height": 900},
                extra_http_headers={"X-Forwarded-Proto": "https"},
                accept_downloads=True,
            )
            context.set_default_timeout(15_000)
            violations = watch_csp_violations(context)
            page = context.new_page()
            page.on("response", seen)
            page.on("console", console)
            page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
            _rounds(page, base, username=username, incident=incident, tmp_path=tmp_path)
        finally:
            browser.close()

    assert violations == [], "\n".join(violations)
    assert problems == [], "\n".join(problems)
    pages = {"/accounts/login/", "/", f"/incidents/{incident}/", f"/reports/{incident}/", "/status/", "/health/"}
    pages |= {"/reports/metrics/", "/api/docs/", "/admin/monitoring/healthtarget/"}
    assert pages <= set(documents), f"not visited: {pages - set(documents)}"
    for path, response in documents.items():
        assert response.status == 200, f"{path}: {response.status}"
        assert_strict_csp(response.headers.get("content-security-policy"), path)
        assert_permissions_policy(response.headers.get("permissions-policy"), path)
    assert [path for path, status in statics.items() if status != 200] == []
    assert any(p.endswith(".css") for p in statics) and any(p.endswith(".js") for p in statics)
    assert any("chart.umd" in p for p in statics) and any("swagger-ui-bundle" in p for p in statics)


def _rounds(page: Page, base: str, *, username: str, incident: str, tmp_path: Path) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name=f"Log out {username}")).to_be_visible()  # the dashboard

    page.goto(f"{base}/incidents/{incident}/")
    expect(page.get_by_test_id("incident-reference")).to_have_text(incident)

    page.goto(f"{base}/reports/{incident}/")
    with page.expect_download() as download:
        page.get_by_test_id("download-pdf").click()
    pdf = tmp_path / "report.pdf"
    download.value.save_as(pdf)
    reader = PdfReader(BytesIO(pdf.read_bytes()))
    assert len(reader.pages) >= 1 and f"Incident ID {incident}" in reader.pages[0].extract_text()

    page.goto(f"{base}/status/")
    expect(page.get_by_test_id("overall-status")).to_be_visible()
    page.goto(f"{base}/health/")
    expect(page.get_by_role("heading", name="Health", exact=True)).to_be_visible()

    # The charts are drawn by static/js/metrics.js with Chart.js, both from our static files.
    page.goto(f"{base}/reports/metrics/")
    page.wait_for_function("() => window.Chart && Chart.getChart('chart-mtta') && Chart.getChart('chart-detection')")

    # Swagger UI runs its start-up script from the split view's own URL, not inline.
    page.goto(f"{base}/api/docs/")
    expect(page.get_by_text("/api/v1/incidents/{reference}/acknowledge/").first).to_be_visible()

    page.goto(f"{base}/admin/monitoring/healthtarget/")
    expect(page.get_by_role("heading", name="Select health target to change")).to_be_visible()
    expect(page.locator("strong.health-text-unknown").first).to_be_visible()
