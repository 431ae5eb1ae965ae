"""The trainer's journey in a real browser: schedule a quarterly disaster-recovery exercise, add
participants, run it, complete it with a finding, and see the finding become an action item."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from playwright.sync_api import Page, expect

from drills.models import Drill, DrillFinding, DrillKind
from reports.models import ActionItem
from tests.factories import DEMO_PASSWORD, UserFactory, make_roster

pytestmark = [
    pytest.mark.e2e,
    # live_server needs transactional tests; serialized_rollback restores the seeded rows
    # (drill kinds, certification kinds, severities) the flush removes.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

FINDING = "Database restore runbook still names the old backup host"


def log_in(page: Page, base_url: str, username: str, *, first: bool = False) -> None:
    # The live server's first request builds the WSGI app and whitenoise's index of every static
    # file; on a busy machine that alone can exceed the 10 s page budget, so it gets longer.
    page.goto(base_url + "/accounts/login/", timeout=60_000 if first else None)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name=re.compile(rf"Log out {username}"))).to_be_visible()


def log_out(page: Page) -> None:
    page.get_by_role("button", name=re.compile(r"^Log out")).click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def _label(user) -> str:
    return f"{user.get_full_name()} ({user.get_username()})"


def test_trainer_schedules_runs_and_completes_a_dr_exercise_whose_finding_becomes_an_action_item(
    page: Page, live_server
):
    team = make_roster()
    trainer = UserFactory(username="coach", first_name="Casey", last_name="Coach")
    trainer.groups.add(Group.objects.get(name="Trainer"))
    commander, sysadmin = team["oncall2"], team["oncall3"]
    dr = DrillKind.objects.get(key="disaster-recovery")
    starts = (timezone.localtime() + timedelta(days=7)).replace(hour=10, minute=0, second=0, microsecond=0)

    log_in(page, live_server.url, trainer.username, first=True)
    page.get_by_role("navigation").get_by_role("link", name="Drills", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"Drill and exercise programme"))).to_be_visible()
    page.get_by_role("button", name="Schedule a drill").click()

    # Choosing the kind brings in its default scenario, objectives and duration (htmx).
    page.get_by_label("Kind", exact=True).select_option(label="Disaster recovery — quarterly exercise")
    expect(page.get_by_label("Scenario", exact=True)).to_have_value(dr.default_scenario)
    expect(page.get_by_label("Duration (minutes)")).to_have_value("240")
    page.get_by_label("Starts", exact=True).fill(starts.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Title", exact=True).fill("Q-exercise: primary database host lost")

    # Bad input first: a start in the past is refused on its field, nothing saved.
    page.get_by_label("Starts", exact=True).fill((timezone.localtime() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Schedule drill").click()
    expect(page.get_by_text("A planned drill must start in the future")).to_be_visible()
    assert not Drill.objects.exists()
    page.get_by_label("Starts", exact=True).fill(starts.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Schedule drill").click()

    expect(page.get_by_test_id("drill-title")).to_have_text("Q-exercise: primary database host lost")
    expect(page.get_by_test_id("drill-state")).to_have_text("Planned")
    expect(page.get_by_role("status")).to_contain_text("scheduled")
    drill = Drill.objects.get()

    # Participants, each with a role; the same person twice is refused.
    for person, role in [(commander, "Incident commander"), (sysadmin, "System administrator"), (commander, "Mentor")]:
        page.get_by_label("Person", exact=True).select_option(label=_label(person))
        page.get_by_label("Role", exact=True).select_option(label=role)
        page.get_by_role("button", name="Add participant").click()
    expect(page.get_by_text(f"{commander.get_full_name()} is already a participant.")).to_be_visible()
    participants = page.get_by_test_id("participants")
    expect(participants.get_by_role("row")).to_have_count(3)  # header + two
    expect(participants).to_contain_text("Incident commander")
    expect(participants).to_contain_text("System administrator")

    # The programme now has this quarter's disaster-recovery exercise.
    quarter = (starts.month - 1) // 3 + 1
    page.goto(f"{live_server.url}/drills/?year={starts.year}")
    card = page.get_by_test_id(f"quarter-{quarter}")
    expect(card.get_by_role("link", name=re.compile("Disaster recovery"))).to_be_visible()
    expect(card.get_by_test_id(f"quarter-gap-{quarter}")).not_to_contain_text("Disaster recovery")
    card.get_by_role("link", name=re.compile("Disaster recovery")).click()

    # Run it: an exercise incident opens, marked as a drill.
    page.get_by_role("button", name=re.compile(r"^Start drill")).click()
    expect(page.get_by_test_id("drill-state")).to_have_text("In progress")
    expect(page.get_by_role("status")).to_contain_text("is open (marked DRILL)")
    drill.refresh_from_db()
    assert drill.incident is not None and drill.incident.is_drill

    # Complete it with a finding.
    page.get_by_role("button", name="Record outcome").click()
    page.get_by_label("Objectives partly met").check()
    page.get_by_label("What went well").fill("Backups were intact and restored cleanly")
    page.get_by_label("What could improve").fill("The runbook sent us to a decommissioned host first")
    attendance = page.get_by_test_id("attendance")
    expect(attendance.get_by_role("checkbox")).to_have_count(2)
    page.get_by_label("Achieved minutes: Database restored (RTO)").fill("41")
    page.get_by_label("Finding 1", exact=True).fill(FINDING)
    page.get_by_label("Owner of finding 1").select_option(label=_label(commander))
    page.get_by_label("Due date of finding 1").fill((timezone.localdate() + timedelta(days=14)).isoformat())
    page.get_by_label("Kind of finding 1").select_option(label="Immediate action")
    page.get_by_role("button", name="Complete drill").click()

    expect(page.get_by_test_id("drill-state")).to_have_text("Completed")
    expect(page.get_by_role("status")).to_contain_text("1 finding recorded as action items")
    expect(page.get_by_test_id("drill-result")).to_have_text("Objectives partly met")
    findings = page.get_by_test_id("findings")
    expect(findings).to_contain_text(FINDING)
    expect(findings.get_by_test_id("action-item-state")).to_have_text("Open")
    expect(page.get_by_test_id("targets")).to_contain_text("41 min")

    item = DrillFinding.objects.get(drill=drill).action_item
    assert ActionItem.objects.get(pk=item.pk).title == FINDING and item.owner == commander

    # The owner finds it among their action items.
    log_out(page)
    log_in(page, live_server.url, commander.username)
    page.get_by_role("navigation").get_by_role("link", name="My action items").click()
    expect(page.get_by_test_id("my-action-items")).to_contain_text(FINDING)
    assert page.js_errors == []  # type: ignore[attr-defined]
