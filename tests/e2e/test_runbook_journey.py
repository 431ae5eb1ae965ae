"""An engineer starts a runbook on an incident, ticks two steps, and sees them on the timeline."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from incidents.runbooks.models import StepRecord
from tests.e2e.test_incident_journey import log_in
from tests.factories import open_incident

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_engineer_starts_a_runbook_and_ticks_two_steps(page: Page, live_server, engineer):
    engineer.first_name, engineer.last_name = "Priya", "Raman"
    engineer.save()
    incident = open_incident(reported_by=engineer, systems=("circuit_breaker",), title="Breaker flapping")

    log_in(page, live_server.url, engineer.username)
    page.goto(live_server.url + incident.get_absolute_url())
    runbooks = page.get_by_test_id("incident-runbooks")
    offer = runbooks.get_by_role("listitem").filter(has_text="Circuit breaker restart")
    expect(offer).to_contain_text("affected system")
    offer.get_by_role("button", name="Start runbook").click()

    steps = page.get_by_test_id("incident-runbooks").get_by_test_id("run-step")
    expect(steps).to_have_count(4)
    steps.nth(0).get_by_role("button", name="Done").click()
    expect(steps.nth(0).get_by_test_id("step-outcome")).to_have_text("Done")
    steps.nth(1).get_by_label("Reason for skipping").fill("Nothing cached")
    steps.nth(1).get_by_role("button", name="Skip").click()
    expect(steps.nth(1).get_by_test_id("step-outcome")).to_have_text("Skipped")
    expect(steps.nth(2).get_by_role("button", name="Done")).to_be_visible()

    timeline = page.get_by_test_id("timeline")
    expect(
        timeline.get_by_role("row").filter(has_text="Step 1/4 of Runbook 'Circuit breaker restart' done by Priya Raman")
    ).to_be_visible()
    expect(
        timeline.get_by_role("row").filter(
            has_text="Step 2/4 of Runbook 'Circuit breaker restart' skipped by Priya Raman"
        )
    ).to_contain_text("Nothing cached")
    assert StepRecord.objects.filter(run__incident=incident).count() == 2
    assert page.js_errors == []  # type: ignore[attr-defined]
