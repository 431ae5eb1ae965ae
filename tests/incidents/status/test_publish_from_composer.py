"""The status update composer's "also publish" box: an update for users, posted with it ticked,
is what the public page shows; unticked, the page and its JSON know nothing of the incident."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from rest_framework.test import APIClient

from incidents import roles
from incidents.escalation.models import StatusUpdate
from incidents.status.models import PublicIncident, PublicUpdate
from tests.factories import UserFactory, open_incident

INTERNAL_TITLE = "CB agent OOM-killed on trd-prod-07 after deploy 4f2a"


@pytest.fixture
def incident(db, engineer):
    return open_incident(
        reported_by=engineer,
        level=2,
        title=INTERNAL_TITLE,
        systems=("circuit_breaker",),
        user_impact="Orders may be rejected",
        commander=engineer,
    )


def fields(audience: str = "users", **extra) -> dict:
    return {
        "audience": audience,
        "subject": "[SERVICE NOTICE] Orders",
        "status": "Investigating",
        "impact": "What you may notice: orders may be rejected",
        "details": "We expect this to be resolved: soon.",
        "contact": "desk",
        **extra,
    }


def compose(client, incident, **data):
    return client.post(reverse("incidents:status_update", args=[incident.reference]), data)


def public_json(client) -> dict:
    answer = client.get("/status.json")
    assert answer.status_code == 200
    return answer.json()


def test_unticked_the_update_stays_off_the_page_and_json(client, incident, engineer):
    client.force_login(engineer)
    assert compose(client, incident, **fields()).status_code == 302
    assert StatusUpdate.objects.filter(incident=incident, is_public=False).exists()
    assert not PublicIncident.objects.exists()
    client.logout()
    assert "orders may be rejected" not in client.get("/status/").content.decode()
    assert public_json(client)["incidents"] == [] and public_json(client)["history"] == []


def test_ticked_the_users_update_is_published_then_updated_then_resolved(client, incident, engineer):
    client.force_login(engineer)
    assert compose(client, incident, **fields(is_public="on")).status_code == 302
    public = PublicIncident.objects.get(incident=incident)
    assert public.title == "Service disruption affecting Circuit Breaker Agent"
    assert public.status == "investigating" and public.impact == "partial_outage"
    assert public.updates.get().message == (
        "What you may notice: orders may be rejected\n\nWe expect this to be resolved: soon."
    )
    client.logout()
    shown = public_json(client)["incidents"]
    assert [i["title"] for i in shown] == [public.title]
    html = client.get("/status/").content.decode()
    assert "orders may be rejected" in html and INTERNAL_TITLE not in html

    client.force_login(engineer)
    assert compose(client, incident, **fields(is_public="on", status="Contained", details="Fixed.")).status_code == 302
    assert PublicIncident.objects.count() == 1 and PublicUpdate.objects.count() == 2
    public.refresh_from_db()
    assert public.status == "identified"
    # An update to users left unticked does not reach the page.
    assert compose(client, incident, **fields(details="Internal-ish wording")).status_code == 302
    assert PublicUpdate.objects.count() == 2
    assert (
        compose(client, incident, **fields(is_public="on", status="Resolved", details="All clear.")).status_code == 302
    )
    client.logout()
    answer = public_json(client)
    assert answer["incidents"] == [] and [i["title"] for i in answer["history"]] == [public.title]


def test_the_box_is_offered_for_users_and_to_publishers_only(client, incident, engineer, db):
    url = reverse("incidents:status_update", args=[incident.reference])
    client.force_login(engineer)
    users = client.get(url, {"audience": "users"})
    assert "is_public" in users.context["form"].fields and 'data-testid="publish-public"' in users.content.decode()
    internal = client.get(url, {"audience": "internal"})
    assert 'data-testid="publish-public"' not in internal.content.decode()
    assert internal.context["form"].initial["is_public"] is False
    admin = UserFactory(username="sysadmin-composer")
    admin.groups.add(Group.objects.get(name=roles.SYSTEM_ADMINISTRATOR))  # posts updates, does not publish
    client.force_login(admin)
    page = client.get(url, {"audience": "users"})
    assert page.status_code == 200 and "is_public" not in page.context["form"].fields
    # Posted anyway (a hand-made form): the box is not a field for them, nothing is published.
    assert compose(client, incident, **fields(is_public="on")).status_code == 302
    assert not PublicIncident.objects.exists()


def test_publishing_an_update_for_another_audience_is_refused_and_writes_nothing(client, incident, engineer):
    client.force_login(engineer)
    answer = compose(client, incident, **fields(audience="internal", is_public="on"))
    assert answer.status_code == 400 and "is_public" in answer.context["form"].errors
    assert not StatusUpdate.objects.exists() and not PublicIncident.objects.exists()


def test_a_resolution_never_published_is_refused_and_writes_nothing(client, incident, engineer):
    client.force_login(engineer)
    answer = compose(client, incident, **fields(is_public="on", status="Resolved"))
    assert answer.status_code == 400 and "never on the public status page" in str(answer.context["form"].errors)
    assert not StatusUpdate.objects.exists() and not PublicIncident.objects.exists()


def test_the_api_publishes_with_the_same_rule(incident, engineer, db):
    url = f"/api/v1/incidents/{incident.reference}/status-updates/"
    admin = UserFactory(username="sysadmin-api")
    admin.groups.add(Group.objects.get(name=roles.SYSTEM_ADMINISTRATOR))
    api = APIClient()
    api.force_authenticate(admin)
    refused = api.post(url, {"details": "x", "audience": "users", "is_public": True}, format="json")
    assert refused.status_code == 400 and "is_public" in refused.json(), refused.json()
    assert not StatusUpdate.objects.exists() and not PublicIncident.objects.exists()
    api.force_authenticate(engineer)
    odd = api.post(url, {"details": "x", "audience": "users\x00", "is_public": True}, format="json")
    assert odd.status_code == 400 and "audience" in odd.json()
    answer = api.post(url, {"details": "Failing over.", "audience": "users", "is_public": True}, format="json")
    assert answer.status_code == 201 and answer.json()["is_public"] is True
    assert PublicIncident.objects.get().updates.get().message.endswith("Failing over.")
