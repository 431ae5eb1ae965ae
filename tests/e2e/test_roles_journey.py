"""An incident manager makes today's on-call engineer the scribe in one click, in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from incidents.models import IncidentRoleAssignment
from incidents.notifications.models import Notification
from tests.e2e.test_incident_journey import log_in
from tests.factories import make_roster, open_incident

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_manager_makes_todays_on_call_the_scribe_in_one_click(page: Page, live_server):
    team = make_roster()
    im, on_call = team["im"], team["oncall1"]
    incident = open_incident(reported_by=im, commander=im)
    name, im_name = on_call.get_full_name(), im.get_full_name()

    log_in(page, live_server.url, im.username)
    page.goto(live_server.url + incident.get_absolute_url())
    scribe = page.get_by_test_id("role-scribe")
    expect(scribe.get_by_test_id("role-holder")).to_have_text("Not assigned")
    expect(page.get_by_test_id("role-incident_commander").get_by_test_id("role-holder")).to_have_text(im_name)

    scribe.get_by_role("button", name=f"Today's on-call: {name}").click()

    expect(page.get_by_role("status")).to_contain_text(f"{name} is now scribe.")
    expect(scribe.get_by_test_id("role-holder")).to_have_text(name)
    expect(scribe).to_contain_text(f"assigned by {im_name}")
    line = (
        page.get_by_test_id("timeline")
        .get_by_role("row")
        .filter(has_text=f"{name} is now scribe (assigned by {im_name})")
    )
    expect(line).to_be_visible()
    assert IncidentRoleAssignment.objects.get(incident=incident).holder == on_call
    assert Notification.objects.filter(recipient=on_call).count() == 2  # SMS and email
    assert page.js_errors == []  # type: ignore[attr-defined]
