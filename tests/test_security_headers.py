"""Every page answers with a strict Content-Security-Policy and a Permissions-Policy, in every
mode (these tests run with the development settings; tests/test_production_mode.py walks the
production ones in Chromium), and serves nothing the policy would refuse: no inline script or
style, so no page depends on a relaxation."""

import re

import pytest
from django.test import Client

from tests.factories import open_incident
from tests.security_headers import assert_permissions_policy, assert_strict_csp, parse_policy

pytestmark = pytest.mark.django_db

ANONYMOUS_PAGES = ["/accounts/login/", "/status/", "/status/subscribe/"]
SIGNED_IN_PAGES = [
    "/",
    "/incidents/",
    "/health/",
    "/roster/",
    "/reports/",
    "/reports/metrics/",
    "/drills/",
    "/drills/me/",
    "/api/docs/",
    "/admin/",
    "/admin/monitoring/healthtarget/",
    "/status/manage/",
]

INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.IGNORECASE)
# A <script> without src runs inline; a JSON data block (json_script) is data, not script.
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\ssrc=)(?![^>]*type=\"application/json\")[^>]*>", re.IGNORECASE)


def _assert_page(client: Client, path: str, *, status: int = 200) -> str:
    answer = client.get(path)
    assert answer.status_code == status, f"{path}: {answer.status_code}"
    assert_strict_csp(answer.headers.get("Content-Security-Policy"), path)
    assert_permissions_policy(answer.headers.get("Permissions-Policy"), path)
    html = answer.content.decode()
    assert not INLINE_STYLE.search(html), f"{path} has inline style: {INLINE_STYLE.search(html).group(0)}"
    assert not INLINE_SCRIPT.search(html), f"{path} has an inline script: {INLINE_SCRIPT.search(html).group(0)}"
    return html


def test_every_page_answers_with_a_strict_policy_and_nothing_inline(client, manager):
    incident = open_incident(reported_by=manager, level=2)
    for path in ANONYMOUS_PAGES:
        _assert_page(client, path)
    manager.is_staff = True
    manager.save(update_fields=["is_staff"])
    client.force_login(manager)
    pages = {path: _assert_page(client, path) for path in [*SIGNED_IN_PAGES, incident.get_absolute_url()]}
    _assert_page(client, "/no-such-page/", status=404)
    # The pages that had inline parts before: the chart script and Swagger UI's start-up script
    # are files of their own now, and the health states in the admin are classes.
    assert re.search(r'<script src="/static/js/metrics\.js"', pages["/reports/metrics/"])
    assert 'class="health-text-unknown"' in pages["/admin/monitoring/healthtarget/"]
    start_up = re.search(r'<script src="(/api/docs/\?[^"]*script=[^"]*)"', pages["/api/docs/"])
    assert start_up, "Swagger UI's start-up script is not served apart"
    script = client.get(start_up.group(1).replace("&amp;", "&"))
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


def test_the_policy_refuses_inline_code_framing_plugins_and_other_origins(client):
    policy = parse_policy(client.get("/accounts/login/").headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    # Images may also be data: URIs (the SVG icons inside Pico's and Swagger UI's stylesheets),
    # never another origin.
    assert policy["img-src"] == ["'self'", "data:"]
    assert all(source in ("'self'", "'none'", "data:") for sources in policy.values() for source in sources)
