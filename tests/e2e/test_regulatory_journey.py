"""DORA reporting in a real browser: a risk manager classifies an incident as major, drafts the
initial notification, the Head of Risk (in a browser of their own) signs it off, the risk manager
records its submission with the regulator's reference, and the intermediate report's clock
appears on /regulatory/; the PDF downloaded from the report page says what was submitted."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import Browser, Page, expect
from pypdf import PdfReader

from incidents import roles
from incidents.escalation.models import RegulatoryObligation
from tests.e2e.conftest import LAPTOP
from tests.e2e.test_health_journey import log_in
from tests.factories import UserFactory, open_incident

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

CLIENTS = "DORA major ICT-related incident reporting: Clients, financial counterparts and transactions affected"
REFERENCE = "CA-DORA-2026-0042"


def _person(username: str, role: str, first: str, last: str):
    roles.ensure_role_groups()
    user = UserFactory(username=username, first_name=first, last_name=last)
    user.groups.add(Group.objects.get(name=role))
    return user


def test_classify_draft_sign_off_submit_and_the_next_clock(page: Page, browser: Browser, live_server):
    risk = _person("daniel", roles.RISK_MANAGER, "Daniel", "Okafor")
    head = _person("omar", roles.HEAD_OF_RISK, "Omar", "Haddad")
    incident = open_incident(
        reported_by=risk, level=1, title="Order gateway rejecting orders", systems=("circuit_breaker",)
    )

    log_in(page, live_server.url, risk.username)
    page.goto(f"{live_server.url}/incidents/{incident.reference}/regulatory/")
    expect(page.get_by_text("Not classified under any regime yet.")).to_be_visible()
    page.locator("#id_regime").select_option("dora")
    page.get_by_label("Major / reportable under this regime").check()
    page.get_by_label(CLIENTS).check()
    page.locator("#id_rationale").fill("Clients' orders rejected on a critical service.")
    page.get_by_role("button", name="Record classification").click()
    expect(page.get_by_text("reportable: its reports are now owed")).to_be_visible()
    dora = page.get_by_test_id("classification-dora")
    expect(dora).to_contain_text("Clients, financial counterparts and transactions affected")

    # The initial notification: drafted from the incident and saved; the drafter cannot sign it.
    dora.get_by_role("link", name="Initial notification").click()
    expect(page.locator("#id_summary")).to_contain_text(incident.reference)
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_text("draft saved")).to_be_visible()
    expect(page.get_by_test_id("sign-off")).to_have_count(0)
    expect(page.get_by_role("button", name="Record submission")).to_be_disabled()
    report_url = page.url

    # The Head of Risk, in a browser context of their own, signs it off.
    other = browser.new_context(viewport=LAPTOP, locale="en-GB", timezone_id="UTC")
    try:
        head_page = other.new_page()
        log_in(head_page, live_server.url, head.username)
        head_page.goto(report_url)
        head_page.get_by_test_id("sign-off").click()
        expect(head_page.get_by_text("signed off.")).to_be_visible()
        expect(head_page.get_by_test_id("report-status")).to_contain_text("by Omar Haddad")
    finally:
        other.close()

    # Back with the risk manager: submitted with the authority's reference.
    page.reload()
    page.get_by_label("Regulator's reference").fill(REFERENCE)
    page.get_by_role("button", name="Record submission").click()
    expect(page.get_by_text("recorded as submitted")).to_be_visible()
    expect(page.get_by_test_id("report-status")).to_contain_text(REFERENCE)

    # The PDF, downloaded as the user would, says what was signed and submitted.
    with page.expect_download() as download:
        page.get_by_role("link", name="PDF").click()
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(download.value.path().read_bytes())).pages)
    text = " ".join(text.split())
    for words in (incident.reference, "Initial notification", REFERENCE, "Omar Haddad", "Daniel Okafor"):
        assert words in text, words

    # The submission started the intermediate report's 72-hour clock, listed with the others.
    intermediate = RegulatoryObligation.objects.get(incident=incident, stage__key="intermediate")
    assert intermediate.due_at is not None
    page.goto(f"{live_server.url}/regulatory/")
    running = page.get_by_test_id("regulatory-running")
    row = running.get_by_role("row").filter(has_text="Intermediate report")
    expect(row).to_contain_text(incident.reference)
    expect(row).to_contain_text(f"{intermediate.due_at:%Y-%m-%d}")
    expect(running.get_by_role("row").filter(has_text="Initial notification")).to_have_count(0)
