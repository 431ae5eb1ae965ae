"""Subscribers: email double opt-in and unsubscribe over a real SMTP server, signed webhooks to a
real HTTP receiver, and bad input refused with nothing sent."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from incidents.models import System
from incidents.notifications.models import Notification
from incidents.status import services
from incidents.status.models import Subscriber
from tests.factories import deliver_outbox, open_incident
from tests.smtp import body

PUBLIC = {"title": "Order entry unavailable", "impact": "major_outage", "status": "investigating"}


def subscribe(client, **data):
    return client.post("/status/subscribe/", {"kind": "email", **data})


def link(text: str, path: str) -> str:
    match = re.search(rf"https?://[^\s]+({re.escape(path)}[^\s/]+/)", text)
    assert match, f"no {path} link in {text!r}"
    return match.group(1)


def test_email_double_opt_in_and_unsubscribe_through_smtp(client, mailbox, engineer):
    address = "trader@client.example"
    response = subscribe(client, email=address, components=["circuit_breaker"])
    assert response.status_code == 200 and b"Check your mail" in response.content
    incident = open_incident(reported_by=engineer, level=1, systems=("circuit_breaker",))
    public = services.public_incident_publish(incident=incident, user=engineer, message="Investigating.", **PUBLIC)
    assert deliver_outbox() == ["sent"]  # the confirmation only: not confirmed, not told
    [confirmation] = mailbox.wait_for(address, 1)
    assert confirmation["Subject"] == "[TMT status] Confirm your subscription"
    confirm = link(body(confirmation), "/status/subscribe/confirm/")
    assert client.get(confirm).status_code == 200  # a mail scanner's GET confirms nothing
    assert not Subscriber.objects.get(email=address).active
    assert client.post(confirm).status_code == 200
    assert Subscriber.objects.get(email=address).active

    services.public_incident_update(public_incident=public, user=engineer, status="identified", message="Found it.")
    assert deliver_outbox() == ["sent"]
    _, update = mailbox.wait_for(address, 2)
    assert update["Subject"] == "[TMT status] Order entry unavailable: Identified"
    assert "Found it." in body(update)
    unsubscribe = link(body(update), "/status/unsubscribe/")
    assert update["List-Unsubscribe"].strip() == f"<http://127.0.0.1:8000{unsubscribe}>"
    assert client.post(unsubscribe).status_code == 200
    assert b"Unsubscribed" in client.post(unsubscribe).content  # twice: still fine

    services.public_incident_update(public_incident=public, user=engineer, status="resolved", message="Fixed.")
    assert deliver_outbox() == []
    assert len(mailbox.to(address)) == 2


def test_a_used_or_unknown_confirmation_link_confirms_nothing(client, db):
    response = client.post("/status/subscribe/confirm/not-a-token/")
    assert response.status_code == 404 and b"unknown" in response.content


def test_malformed_email_and_unknown_component_are_field_errors_and_nothing_is_sent(client, db):
    response = subscribe(client, email="not-an-address")
    assert response.status_code == 400
    assert response.context["form"].errors["email"] == ["Enter a valid email address."]
    response = subscribe(client, email="ok@client.example", components=["no_such_system"])
    assert response.status_code == 400
    assert response.context["form"].errors["components"] == ["Unknown component: no_such_system."]
    assert not Subscriber.objects.exists() and not Notification.objects.exists()


def test_a_subscription_flood_is_refused_with_429_and_nothing_sent(client, settings, db):
    settings.TMT_STATUS_SUBSCRIBE_PER_IP_HOUR = 100
    settings.TMT_STATUS_SUBSCRIBE_PER_ADDRESS_HOUR = 3
    for _ in range(3):
        assert subscribe(client, email="victim@client.example").status_code == 200
    flooded = subscribe(client, email="victim@client.example")
    assert flooded.status_code == 429 and b"Too many subscription requests" in flooded.content
    assert Notification.objects.count() == 3
    # Per client address, whatever the address asked for.
    settings.TMT_STATUS_SUBSCRIBE_PER_IP_HOUR = 5
    assert subscribe(client, email="a@client.example").status_code == 200
    assert subscribe(client, email="b@client.example").status_code == 429
    assert Notification.objects.count() == 4


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/api/v1/incidents/",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://portal.tmt.example/hook",
        "ftp://hooks.example.com/",
        "http://user:pass@hooks.example.com/",
    ],
)
def test_a_webhook_on_the_portals_own_network_is_refused(client, settings, db, url):
    settings.TMT_SITE_URL = "https://portal.tmt.example"
    response = client.post("/status/subscribe/", {"kind": "webhook", "url": url})
    assert response.status_code == 400
    assert response.context["form"].errors["url"]
    assert not Subscriber.objects.exists() and not Notification.objects.exists()


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict, bytes]] = []
    failures_left = 0  # answer 503 this many times first

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        content = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), content))
        if Receiver.failures_left:
            Receiver.failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    Receiver.received, Receiver.failures_left = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/tmt-status"
    server.shutdown()
    server.server_close()


def test_webhook_deliveries_are_signed_with_the_subscribers_key(client, settings, receiver, engineer):
    # The receiver runs on loopback; allowed here only, as a deployment may allow a partner network.
    settings.TMT_STATUS_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.TMT_SITE_URL = "https://portal.tmt.example"
    settings.ALLOWED_HOSTS = ["testserver"]
    response = client.post(
        "/status/subscribe/", {"kind": "webhook", "url": receiver, "components": ["risk_management"]}
    )
    assert response.status_code == 200
    secret = response.context["secret"]
    assert secret.startswith("whsec_") and secret not in Subscriber.objects.get().url
    incident = open_incident(reported_by=engineer, level=2, systems=("risk_management",))
    services.public_incident_publish(incident=incident, user=engineer, message="Risk checks slow.", **PUBLIC)
    assert deliver_outbox() == ["sent"]
    [(headers, content)] = Receiver.received
    expected = "sha256=" + hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-TMT-Signature-256"], expected)
    payload = json.loads(content)
    assert payload["event"] == "incident.published" and headers["X-TMT-Event"] == "incident.published"
    assert payload["incident"]["title"] == "Order entry unavailable"
    assert payload["incident"]["components"] == ["risk_management"]
    assert payload["unsubscribe"].startswith("https://portal.tmt.example/status/unsubscribe/")
    assert incident.title not in content.decode() and incident.reference not in content.decode()
    # Another key does not verify it.
    forged = "sha256=" + hmac.new(b"whsec_other", content, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(headers["X-TMT-Signature-256"], forged)


def test_a_webhook_whose_address_became_internal_is_not_called(settings, receiver, engineer):
    settings.TMT_STATUS_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.TMT_SITE_URL = "https://portal.tmt.example"
    settings.ALLOWED_HOSTS = ["testserver"]
    services.subscriber_subscribe_webhook(url=receiver)
    settings.TMT_STATUS_WEBHOOK_ALLOWED_NETWORKS = []  # allowed when subscribed, not any more
    incident = open_incident(reported_by=engineer, level=2, systems=("risk_management",))
    services.public_incident_publish(incident=incident, user=engineer, message="Slow.", **PUBLIC)
    [outcome] = deliver_outbox()
    assert outcome.startswith("failed: refused")
    assert Receiver.received == []


def test_maintenance_notices_reach_followers_of_its_components(mailbox, settings, manager):
    from datetime import timedelta

    from django.utils import timezone

    follows = Subscriber.objects.create(
        kind="email", email="ops@client.example", created_at=timezone.now(), confirmed_at=timezone.now()
    )
    follows.systems.set([System.objects.get(key="market_analysis")])
    elsewhere = Subscriber.objects.create(
        kind="email", email="risk@client.example", created_at=timezone.now(), confirmed_at=timezone.now()
    )
    elsewhere.systems.set([System.objects.get(key="risk_management")])
    now = timezone.now()
    services.maintenance_schedule(
        user=manager,
        title="Market data feed upgrade",
        message="Quotes may lag for ten minutes.",
        starts_at=now + timedelta(days=1),
        ends_at=now + timedelta(days=1, hours=1),
        systems=[System.objects.get(key="market_analysis")],
    )
    assert deliver_outbox() == ["sent"]
    [notice] = mailbox.wait_for("ops@client.example", 1)
    assert notice["Subject"] == "[TMT status] Maintenance scheduled: Market data feed upgrade"
    assert "Quotes may lag for ten minutes." in body(notice)
    assert mailbox.to("risk@client.example") == []


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "email", "email": "a\x00@client.example"},
        {"kind": "email", "email": "ok@client.example", "components": ["circuit\x00breaker"]},
        {"kind": "email", "email": "x" * 300 + "@client.example"},
        {"kind": "webhook", "url": "https://hooks\x00.example.com/"},
        {"kind": "webhook", "url": "https://" + "a" * 70 + ".example.com/"},
        {"kind": "webhook", "url": "http://[::ffff:127.0.0.1]/hook"},
        {"kind": "webhook", "url": "http://0x7f000001/hook"},
        {"kind": "carrier-pigeon", "email": "ok@client.example"},
    ],
)
def test_odd_subscription_input_is_a_field_error_not_a_500(client, db, data):
    response = client.post("/status/subscribe/", data)
    assert response.status_code == 400
    assert response.context["form"].errors
    assert not Subscriber.objects.exists() and not Notification.objects.exists()


def test_the_confirmation_mail_has_an_unsubscribe_link_too(client, db, mailbox):
    assert subscribe(client, email="trader@client.example").status_code == 200
    deliver_outbox()
    [confirmation] = mailbox.wait_for("trader@client.example", 1)
    assert client.post(link(body(confirmation), "/status/unsubscribe/")).status_code == 200
    assert Subscriber.objects.get().unsubscribed_at is not None
    assert client.post(link(body(confirmation), "/status/subscribe/confirm/")).status_code == 404


def test_a_failed_webhook_delivery_is_retried_by_the_outbox_with_the_same_signature(settings, receiver, engineer):
    from datetime import timedelta

    from django.utils import timezone

    settings.TMT_STATUS_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.TMT_SITE_URL = "https://portal.tmt.example"
    settings.ALLOWED_HOSTS = ["testserver"]
    services.subscriber_subscribe_webhook(url=receiver)
    Receiver.failures_left = 1
    incident = open_incident(reported_by=engineer, level=2, systems=("risk_management",))
    services.public_incident_publish(incident=incident, user=engineer, message="Slow.", **PUBLIC)
    [outcome] = deliver_outbox()
    assert outcome.startswith("retry in") and "503" in outcome
    assert deliver_outbox() == []  # not before its backoff
    assert deliver_outbox(now=timezone.now() + timedelta(seconds=settings.TMT_NOTIFY_BACKOFF_SECONDS + 1)) == ["sent"]
    (first_headers, first), (again_headers, again) = Receiver.received
    assert first == again and first_headers["X-TMT-Signature-256"] == again_headers["X-TMT-Signature-256"]
    assert first_headers["Idempotency-Key"] == again_headers["Idempotency-Key"]
