"""The "API tokens" page: people issue their own tokens (shown once) and revoke them."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from incidents.api.models import ApiToken
from incidents.api.services.api_tokens import api_token_create

pytestmark = pytest.mark.django_db


def test_token_is_shown_once_works_and_revoking_stops_it(engineer_client, engineer):
    issued = engineer_client.post("/account/api-tokens/", {"name": "runbook script"})
    assert issued.status_code == 200
    assert "no-store" in issued["Cache-Control"]
    raw = re.search(r"<pre><code>([A-Za-z0-9_-]{40,})</code></pre>", issued.content.decode()).group(1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/incidents/").status_code == 200
    page = engineer_client.get("/account/api-tokens/").content.decode()
    assert "runbook script" in page and raw not in page and raw[:8] in page
    token = ApiToken.objects.get(user=engineer)
    engineer_client.post(f"/account/api-tokens/{token.pk}/revoke/")
    assert api.get("/api/v1/incidents/").status_code == 401


def test_blank_name_is_a_field_error_and_issues_nothing(engineer_client):
    answer = engineer_client.post("/account/api-tokens/", {"name": "   "})
    assert answer.status_code == 400
    assert "Name the token" in answer.content.decode()
    assert not ApiToken.objects.exists()


def test_nobody_revokes_someone_elses_token(engineer_client, manager):
    token, _ = api_token_create(user=manager, name="manager's script")
    assert engineer_client.post(f"/account/api-tokens/{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert "manager&#x27;s script" not in engineer_client.get("/account/api-tokens/").content.decode()


def test_token_page_needs_a_login(client):
    answer = client.get("/account/api-tokens/")
    assert answer.status_code == 302 and "/accounts/login/" in answer["Location"]


def test_admin_issues_a_token_on_one_page_only_and_revokes_it(admin_client, engineer):
    answer = admin_client.post("/admin/api/apitoken/add/", {"user": engineer.pk, "name": "deploy bot"})
    assert answer.status_code == 200 and "no-store" in answer["Cache-Control"]
    raw = re.search(r'data-testid="issued-token">([^<]+)<', answer.content.decode()).group(1)
    assert raw not in str(answer.cookies.get("messages", ""))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/incidents/").status_code == 200
    token = ApiToken.objects.get(name="deploy bot")
    assert raw not in admin_client.get(f"/admin/api/apitoken/{token.pk}/change/").content.decode()
    admin_client.post("/admin/api/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert api.get("/api/v1/incidents/").status_code == 401
