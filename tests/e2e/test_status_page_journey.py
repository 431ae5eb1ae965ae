"""The public status page in a real browser: a customer subscribes (double opt-in through a real
SMTP server), an engineer publishes an incident, the mailbox receives it, the page shows it, the
engineer resolves it and the page's history keeps it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from incidents.status import cache
from tests.e2e.test_health_journey import log_in
from tests.factories import deliver_outbox, open_incident
from tests.smtp import body, smtp_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

INTERNAL_TITLE = "CB agent OOM on trd-prod-07"


def test_publish_notify_show_resolve_and_keep_in_history(page: Page, live_server, engineer, settings):
    cache.invalidate()
    settings.TMT_SITE_URL = live_server.url
    address = "trader@client.example"
    with smtp_server(settings) as mailbox:
        # A customer subscribes to the circuit breaker and confirms from the mail.
        page.goto(f"{live_server.url}/status/subscribe/")
        page.get_by_label("Email address").fill(address)
        page.get_by_label("Circuit Breaker Agent").check()
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_test_id("subscribe-done")).to_contain_text(address)
        deliver_outbox()
        [confirmation] = mailbox.wait_for(address, 1)
        page.goto(re.search(r"http://\S+/confirm/\S+/", body(confirmation)).group(0))
        page.get_by_role("button", name="Confirm subscription").click()
        expect(page.get_by_test_id("confirmed")).to_be_visible()

        # Nothing is public until someone publishes it.
        incident = open_incident(reported_by=engineer, level=1, title=INTERNAL_TITLE, systems=("circuit_breaker",))
        page.goto(f"{live_server.url}/status/")
        expect(page.get_by_test_id("overall-status")).to_have_text("All systems operational")
        expect(page.get_by_test_id("public-incident")).to_have_count(0)

        page.context.clear_cookies()
        log_in(page, live_server.url, engineer.username)
        page.goto(f"{live_server.url}{incident.get_absolute_url()}")
        page.get_by_test_id("status-page-link").click()
        title = page.get_by_label("Public title")
        expect(title).to_have_value("Service disruption affecting Circuit Breaker Agent")
        title.fill("Order entry unavailable")
        page.get_by_label("Message for customers").fill("We are investigating failed order submissions.")
        page.get_by_role("button", name="Publish").click()
        expect(page.get_by_text("Published on the public status page; subscribers")).to_be_visible()

        deliver_outbox()
        _, notice = mailbox.wait_for(address, 2)
        assert notice["Subject"] == "[TMT status] Order entry unavailable: Investigating"
        assert "/status/unsubscribe/" in body(notice) and INTERNAL_TITLE not in body(notice)

        # A new query each visit: browsers may keep the page for its max-age (the server's own
        # copy is what a publish replaces, and the query does not change it).
        page.goto(f"{live_server.url}/status/?after=publish")
        shown = page.get_by_test_id("public-incident")
        expect(shown).to_contain_text("Order entry unavailable")
        expect(shown).to_contain_text("We are investigating failed order submissions.")
        expect(page.get_by_test_id("overall-status")).to_have_text("Major outage")
        expect(page.get_by_role("main")).not_to_contain_text(INTERNAL_TITLE)

        # Resolved: off the active list, into the history; the subscriber is told.
        page.goto(f"{live_server.url}{incident.get_absolute_url()}")
        page.get_by_test_id("status-page-link").click()
        page.get_by_label("Status").select_option("resolved")
        page.get_by_label("Message for customers").fill("Order entry is working normally again.")
        page.get_by_role("button", name="Publish update").click()
        expect(page.get_by_text("Update published; subscribers")).to_be_visible()
        deliver_outbox()
        mailbox.wait_for(address, 3)

        page.goto(f"{live_server.url}/status/?after=resolve")
        expect(page.get_by_test_id("public-incident")).to_have_count(0)
        past = page.get_by_test_id("history-incident")
        expect(past).to_contain_text("Order entry unavailable")
        expect(past).to_contain_text("Order entry is working normally again.")
        expect(page.get_by_test_id("overall-status")).to_have_text("All systems operational")


def test_the_banner_shows_a_published_incident_on_another_origins_page(page: Page, live_server, engineer, settings):
    from incidents.status import services

    cache.invalidate()
    host = live_server.url.replace("127.0.0.1", "localhost")  # another origin, same machine
    settings.CORS_ALLOWED_ORIGINS = [host]
    page.route(
        f"{host}/platform.html",
        lambda route: route.fulfill(
            content_type="text/html",
            body=f'<!doctype html><h1>Trading</h1><script src="{live_server.url}/status/embed.js"></script>',
        ),
    )
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.on("requestfailed", lambda request: console.append(f"failed: {request.url} {request.failure}"))
    # Waiting for the script's read: the "no banner" is then an answer, not a page still loading
    # (and no late answer lands in the browser's cache after it is cleared below).
    with page.expect_response(f"{live_server.url}/status.json") as answer:
        page.goto(f"{host}/platform.html")
    assert answer.value.ok and answer.value.json()["incidents"] == []
    expect(page.get_by_role("heading", name="Trading")).to_be_visible()
    expect(page.get_by_role("status")).to_have_count(0)  # nothing published: no banner

    incident = open_incident(reported_by=engineer, level=1, title=INTERNAL_TITLE, systems=("circuit_breaker",))
    services.public_incident_publish(
        incident=incident,
        user=engineer,
        title="Order entry unavailable",
        impact="major_outage",
        status="investigating",
        message="Looking into it.",
    )
    # The browser may keep status.json for its max-age (15 s); a visitor a moment later has none.
    page.context.new_cdp_session(page).send("Network.clearBrowserCache")
    page.goto(f"{host}/platform.html")
    banner = page.get_by_role("status")
    expect(banner, f"browser console: {console}").to_contain_text("Order entry unavailable — Investigating")
    expect(banner.get_by_role("link", name="System status")).to_have_attribute("href", f"{live_server.url}/status/")
    assert INTERNAL_TITLE not in page.content()
