"""A script author in a real browser: issue an API token, use it over real HTTP, read the docs offline."""

from __future__ import annotations

import re

import httpx
import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import Page, expect

from incidents.models import Incident
from incidents.roles import ensure_role_groups
from tests.e2e.test_health_journey import log_in
from tests.factories import UserFactory, certify

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_engineer_issues_a_token_logs_an_incident_with_it_and_revokes_it(page: Page, live_server):
    ensure_role_groups()
    engineer = UserFactory(username="priya")
    engineer.groups.add(Group.objects.get(name="On-Call Engineer"))
    certify(engineer)
    log_in(page, live_server.url, "priya")

    page.get_by_test_id("current-user").click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    page.get_by_label("New token name").fill("runbook script")
    page.get_by_role("button", name="Issue token").click()
    shown = page.get_by_test_id("new-token")
    expect(shown).to_contain_text("will not be shown again")
    raw = shown.locator("code").inner_text().strip()

    # The token, used by a script over real HTTP, acts as the engineer.
    headers = {"Authorization": f"Bearer {raw}"}
    created = httpx.post(
        f"{live_server.url}/api/v1/incidents/",
        json={"title": "Risk agent latency above 2 s", "severity": 3, "detection_method": "automated_alert"},
        headers=headers,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    reference = created.json()["reference"]
    assert Incident.objects.get(reference=reference).reported_by == engineer

    # The incident it logged is on the incidents page like any other.
    page.goto(f"{live_server.url}/incidents/")
    expect(page.get_by_role("link", name=re.compile(reference))).to_be_visible()

    # Swagger UI renders from the project's own static files (no CDN) and lists the operations.
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.get_by_text("/api/v1/incidents/{reference}/acknowledge/").first).to_be_visible()

    page.goto(f"{live_server.url}/account/api-tokens/")
    expect(page.get_by_role("cell", name="never")).to_have_count(0)  # its use was recorded
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("revoked", exact=False).first).to_be_visible()
    refused = httpx.get(f"{live_server.url}/api/v1/incidents/", headers=headers, timeout=10)
    assert refused.status_code == 401
    assert page.js_errors == []  # type: ignore[attr-defined]
