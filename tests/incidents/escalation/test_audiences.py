"""Audiences: the composer offers each one's template, and posting to an audience reaches the
members of its distribution lists (through the outbox, over real SMTP) and nobody else."""

import socket
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from django.urls import reverse

from incidents.devtools.demo import DEMO_DISTRIBUTION_LISTS, ensure_demo_distribution_lists
from incidents.escalation import status_updates
from incidents.escalation.models import Audience, StatusUpdate
from incidents.notifications.models import DistributionList, Notification
from tests.factories import deliver_outbox, open_incident

pytestmark = pytest.mark.django_db


class Mailbox:
    """An SMTP server's received mail: who each message went to, and its subject."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's handler name
        subject = str(message_from_bytes(envelope.content, policy=policy.default)["Subject"])
        for rcpt in envelope.rcpt_tos:
            self.received.append((rcpt, subject))
        return "250 OK"


@pytest.fixture
def smtp(settings):
    mailbox = Mailbox()
    # aiosmtpd's start() connects to its own port to check it is up, so it needs a real one.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield mailbox
    controller.stop()


@pytest.fixture
def lists(team):
    """The seed's audiences with lists of their own (one shared member, to check de-duplication)."""
    made = {
        "internal": DistributionList.objects.create(
            name="Responders", max_severity_level=4, emails="oncall@tmt.example\nshared@tmt.example"
        ),
        "stakeholders": DistributionList.objects.create(
            name="Executives", max_severity_level=2, emails="ceo@tmt.example\ncfo@tmt.example\nshared@tmt.example"
        ),
        "stakeholders-business": DistributionList.objects.create(
            name="Business desks", max_severity_level=3, emails="desk@tmt.example"
        ),
        "regulators": DistributionList.objects.create(
            name="Regulator", max_severity_level=2, emails="reports@regulator.example"
        ),
        "users": DistributionList.objects.create(name="Clients", max_severity_level=4, emails="client@clients.example"),
    }
    for key, dist in made.items():
        Audience.objects.get(key=key.split("-")[0]).distribution_lists.add(dist)
    return made


def post(incident, user, audience_key: str) -> StatusUpdate:
    audience = Audience.objects.get(key=audience_key)
    draft = status_updates.status_update_draft(incident=incident, audience=audience)
    return status_updates.status_update_post(
        incident=incident,
        user=user,
        subject=draft.subject,
        status=draft.status,
        impact=draft.impact,
        details=draft.details or "Failing over",
        contact=draft.contact,
        audience=audience,
    )


def test_the_seed_audiences_exist_in_order():
    assert list(Audience.objects.values_list("key", flat=True)) == ["internal", "stakeholders", "regulators", "users"]


def test_posting_to_stakeholders_reaches_each_member_once_and_nobody_else(team, lists, smtp):
    incident = open_incident(reported_by=team["im"], level=2, commander=team["oncall1"])
    update = post(incident, team["oncall1"], "stakeholders")
    queued = sorted(Notification.objects.filter(status_update=update).values_list("address", flat=True))
    # Sev2: the executives (Sev1-2) and the business desks (Sev1-3); "shared" once; no commander.
    expected = ["ceo@tmt.example", "cfo@tmt.example", "desk@tmt.example", "shared@tmt.example"]
    assert queued == expected
    deliver_outbox()
    assert sorted(rcpt for rcpt, _ in smtp.received) == expected
    assert {subject for _, subject in smtp.received} == {update.subject}
    assert update.subject.startswith("[INCIDENT BRIEFING]")


def test_a_list_for_more_severe_incidents_only_is_not_reached(team, lists, smtp):
    incident = open_incident(reported_by=team["im"], level=3)
    update = post(incident, team["oncall1"], "stakeholders")
    deliver_outbox()
    assert [rcpt for rcpt, _ in smtp.received] == ["desk@tmt.example"]
    assert Notification.objects.filter(status_update=update).count() == 1


def test_internal_updates_copy_the_commander(team, lists, smtp):
    incident = open_incident(reported_by=team["im"], level=2, commander=team["oncall1"])
    post(incident, team["oncall1"], "internal")
    deliver_outbox()
    assert sorted(r for r, _ in smtp.received) == sorted(
        ["oncall@tmt.example", "shared@tmt.example", team["oncall1"].email]
    )


def test_an_audience_without_lists_sends_nothing(team, smtp):
    incident = open_incident(reported_by=team["im"], level=1, commander=team["oncall1"])
    DistributionList.objects.create(name="Everyone", max_severity_level=4, emails="all@tmt.example")
    update = post(incident, team["oncall1"], "regulators")
    deliver_outbox()
    assert smtp.received == []
    assert not Notification.objects.filter(status_update=update).exists()
    assert incident.timeline.filter(action__contains="to Regulators").exists()


def test_composer_offers_the_audience_template(client, team, lists):
    incident = open_incident(reported_by=team["im"], level=2, commander=team["oncall1"], user_impact="Orders slow")
    client.force_login(team["oncall1"])
    url = reverse("incidents:status_update", args=[incident.reference])
    page = client.get(url, {"audience": "stakeholders"})
    initial = page.context["form"].initial
    assert initial["audience"] == "stakeholders"
    assert initial["impact"] == "Impact assessment (Severity 2): Orders slow"
    assert initial["details"].startswith("Timeline:\n- Status now: Investigating")
    assert "Impact assessment and timeline" in page.content.decode()
    users = client.get(url, {"audience": "users"}).context["form"].initial
    assert (
        users["impact"] == "What you may notice: Orders slow" and users["is_public"] is True
    )  # offered (and ticked) for users
    assert client.get(url).context["form"].initial["audience"] == "internal"


def test_composer_posts_to_the_chosen_audience(client, team, lists):
    incident = open_incident(reported_by=team["im"], level=2)
    client.force_login(team["oncall1"])
    url = reverse("incidents:status_update", args=[incident.reference])
    fields = {
        "audience": "regulators",
        "subject": "[REGULATORY NOTICE] TMT",
        "status": "Investigating",
        "impact": "x",
        "details": "y",
        "contact": "desk",
    }
    assert client.post(url, fields).status_code == 302
    update = StatusUpdate.objects.get()
    assert update.audience.key == "regulators"
    assert list(Notification.objects.filter(status_update=update).values_list("address", flat=True)) == [
        "reports@regulator.example"
    ]


@pytest.mark.parametrize("audience", ["", "everyone", "<script>"])
def test_composer_refuses_an_unknown_audience(client, team, lists, audience):
    incident = open_incident(reported_by=team["im"], level=2)
    client.force_login(team["oncall1"])
    fields = {"subject": "s", "status": "Investigating", "impact": "x", "details": "y", "contact": "c"}
    response = client.post(
        reverse("incidents:status_update", args=[incident.reference]), {**fields, "audience": audience}
    )
    assert response.status_code == 400 and "audience" in response.context["form"].errors
    assert not StatusUpdate.objects.exists() and not Notification.objects.exists()


def test_demo_lists_cover_every_audience(team):
    people = {"Head of Risk Management": [team["head_of_risk"]], "CTO": [team["cto"]], "CEO": [team["ceo"]]}
    ensure_demo_distribution_lists(people=people)
    ensure_demo_distribution_lists(people=people)  # again: nothing doubled
    assert DistributionList.objects.count() == len(DEMO_DISTRIBUTION_LISTS)
    for audience in Audience.objects.all():
        assert audience.distribution_lists.exists(), audience.key
    executives = DistributionList.objects.get(name="Executive team")
    assert set(executives.email_list) == {team["head_of_risk"].email, team["cto"].email, team["ceo"].email}


def test_the_api_posts_to_an_audience_and_refuses_an_unknown_one(team, lists):
    from rest_framework.test import APIClient

    incident = open_incident(reported_by=team["im"], level=2, user_impact="Orders slow")
    api = APIClient()
    api.force_authenticate(team["im"])
    url = f"/api/v1/incidents/{incident.reference}/status-updates/"
    answer = api.post(url, {"details": "Failing over", "audience": "users"}, format="json")
    assert answer.status_code == 201, answer.json()
    assert answer.json()["audience"] == "users"
    update = StatusUpdate.objects.get()
    assert update.impact == "What you may notice: Orders slow" and update.subject.startswith("[SERVICE NOTICE]")
    assert list(Notification.objects.filter(status_update=update).values_list("address", flat=True)) == [
        "client@clients.example"
    ]
    refused = api.post(url, {"details": "x", "audience": "press"}, format="json")
    assert refused.status_code == 400 and "audience" in refused.json()
    assert StatusUpdate.objects.count() == 1


def test_an_update_naming_no_audience_stays_internal(team, lists, smtp):
    incident = open_incident(reported_by=team["im"], level=1, commander=team["oncall1"])
    legacy = DistributionList.objects.create(name="Old list", max_severity_level=4, emails="old@tmt.example")
    update = status_updates.status_update_post(
        incident=incident,
        user=team["oncall1"],
        subject="s",
        status="Investigating",
        impact="i",
        details="d",
        contact="c",
    )
    deliver_outbox()
    expected = sorted(["oncall@tmt.example", "shared@tmt.example", "old@tmt.example", team["oncall1"].email])
    assert sorted(r for r, _ in smtp.received) == expected
    assert update.audience is None and legacy.email_list == ["old@tmt.example"]
