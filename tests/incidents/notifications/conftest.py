"""A paged incident: opened, its first escalation step fired, its SMS and call delivered."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.core.cache import cache

from incidents.escalation.services import deadlines_fire_due
from incidents.models import Incident
from incidents.notifications.models import Notification
from tests.factories import deliver_outbox, make_roster, open_incident

ACK_LINK = re.compile(r"https?://\S+/ack/([0-9a-f]{64})/")


@dataclass
class Paged:
    incident: Incident
    user: object  # who the first step paged
    number: str  # their SMS number
    phone: str
    bodies: dict[str, str]  # channel ("sms", "voice") -> text the provider was given

    def link(self, channel: str = "sms") -> str:
        """The path of the one-tap link in that page."""
        match = ACK_LINK.search(self.bodies[channel])
        assert match, self.bodies[channel]
        return f"/ack/{match.group(1)}/"

    def token(self, channel: str = "sms") -> str:
        return self.link(channel).split("/")[2]


@pytest.fixture
def team(db):
    return make_roster()


@pytest.fixture(autouse=True)
def _fresh_throttle():
    # The link page's throttle counts in the default cache, which outlives a test.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def page_incident(team, sms_provider, settings):
    """Open an incident and deliver its first page (SMS and call to the on-call engineer)."""
    settings.TMT_SMS_PROVIDER_WEBHOOK_SECRET = "test-webhook-secret"

    def make(*, level: int = 1, title: str = "Circuit breaker not tripping") -> Paged:
        incident = open_incident(level=level, title=title, reported_by=team["im"], systems=("circuit_breaker",))
        deadlines_fire_due()
        deliver_outbox()
        sms = Notification.objects.filter(incident=incident, channel=Notification.Channel.SMS).order_by("pk").first()
        assert sms is not None and sms.state == Notification.State.SENT, "the first step sent no SMS"
        user = sms.recipient
        phone = user.person.phone
        bodies = {}
        for payload in sms_provider.received:
            if incident.reference in payload["body"] and payload["to"] in (sms.address, phone):
                bodies[payload["channel"]] = payload["body"]
        return Paged(incident=incident, user=user, number=sms.address, phone=phone, bodies=bodies)

    return make
