"""Runbooks worked on incidents, revised by lessons learned with four eyes, found by search."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from incidents import services as incident_services
from incidents.models import TimelineEntry
from incidents.runbooks import selectors, services
from incidents.runbooks.models import Runbook, RunbookRevision, RunbookRun, StepRecord
from incidents.runbooks.services import StepInput
from tests.conftest import _user_in
from tests.factories import open_incident, system

pytestmark = pytest.mark.django_db

SEEDED = {
    "circuit-breaker-restart": ("circuit_breaker", 4),
    "market-analysis-restart": ("market_analysis", 4),
    "risk-management-restart": ("risk_management", 4),
    "database-data-recovery": ("database", 5),
    "configuration-fixes": (None, 4),
    "testing-and-validation": (None, 4),
    "gradual-restoration": (None, 4),
}


def _runbook(key: str) -> Runbook:
    return Runbook.objects.select_related("current_revision").get(key=key)


def _steps(runbook: Runbook) -> list:
    return list(runbook.current_revision.steps.order_by("position"))


def _timeline(incident, **filters) -> list[str]:
    return list(TimelineEntry.objects.filter(incident=incident, **filters).values_list("action", flat=True))


def test_the_seeded_runbooks_are_the_procedures_steps_in_order():
    assert set(Runbook.objects.values_list("key", flat=True)) == set(SEEDED)
    for key, (system_key, count) in SEEDED.items():
        runbook = _runbook(key)
        assert (runbook.system.key if runbook.system else None) == system_key
        assert runbook.current_revision.number == 1
        assert runbook.current_revision.state == RunbookRevision.State.APPROVED
        steps = _steps(runbook)
        assert [s.position for s in steps] == list(range(1, count + 1))
        assert all(s.source for s in steps), key
    restart = [s.title for s in _steps(_runbook("circuit-breaker-restart"))]
    assert restart == [
        "Stop affected services gracefully",
        "Clear temporary data if needed",
        "Restart services in correct order",
        "Verify system health",
    ]
    assert "curl -f http://localhost:8001/health" in _steps(_runbook("circuit-breaker-restart"))[3].commands
    restore = _steps(_runbook("gradual-restoration"))
    assert [s.title for s in restore] == ["Core systems", "Monitoring", "Additional features", "Full operations"]
    assert all(s.records_restoration for s in restore)
    assert _steps(_runbook("database-data-recovery"))[0].source.startswith("3.1 Recovery Planning › data_recovery")


def test_steps_are_done_in_order_and_each_is_on_the_timeline(engineer):
    engineer.first_name, engineer.last_name = "Priya", "Raman"
    engineer.save()
    incident = open_incident(reported_by=engineer, systems=("circuit_breaker",))
    runbook = _runbook("circuit-breaker-restart")
    run = services.runbook_run_start(incident=incident, runbook=runbook, user=engineer)
    first, second, third, _ = _steps(runbook)

    with pytest.raises(ValidationError) as refused:
        services.runbook_step_record(run=run, step=second, user=engineer, outcome="done")
    assert refused.value.message_dict == {"step": ["Step 1 must be done or skipped first."]}
    assert not StepRecord.objects.exists()

    services.runbook_step_record(run=run, step=first, user=engineer, outcome="done")
    services.runbook_step_record(run=run, step=second, user=engineer, outcome="skipped", reason="No temp data")
    services.runbook_step_record(run=run, step=third, user=engineer, outcome="done")

    lines = _timeline(incident, kind=TimelineEntry.Kind.CHECKLIST, data__runbook_run=run.pk)
    assert lines == [
        "Runbook 'Circuit breaker restart' (r1, 4 steps) started by Priya Raman",
        "Step 1/4 of Runbook 'Circuit breaker restart' done by Priya Raman: Stop affected services gracefully",
        "Step 2/4 of Runbook 'Circuit breaker restart' skipped by Priya Raman: Clear temporary data if needed"
        " (reason: No temp data)",
        "Step 3/4 of Runbook 'Circuit breaker restart' done by Priya Raman: Restart services in correct order",
    ]
    rows = selectors.run_steps(run)
    assert [r["is_next"] for r in rows] == [False, False, False, True]
    assert [r["record"].by for r in rows[:3]] == [engineer] * 3

    with pytest.raises(ValidationError) as again:
        services.runbook_step_record(run=run, step=first, user=engineer, outcome="done")
    assert "already recorded" in again.value.message_dict["step"][0]


def test_a_skip_needs_a_reason_and_writes_nothing_without_one(engineer):
    incident = open_incident(reported_by=engineer)
    run = services.runbook_run_start(incident=incident, runbook=_runbook("configuration-fixes"), user=engineer)
    before = TimelineEntry.objects.filter(incident=incident).count()
    with pytest.raises(ValidationError) as refused:
        services.runbook_step_record(
            run=run, step=_steps(run.runbook)[0], user=engineer, outcome="skipped", reason="   "
        )
    assert refused.value.message_dict == {"reason": ["Say why the step is skipped."]}
    with pytest.raises(ValidationError) as bad:
        services.runbook_step_record(run=run, step=_steps(run.runbook)[0], user=engineer, outcome="maybe")
    assert "outcome" in bad.value.message_dict
    assert not StepRecord.objects.exists()
    assert TimelineEntry.objects.filter(incident=incident).count() == before


def test_gradual_restoration_records_what_was_restored_and_by_whom(engineer):
    incident = open_incident(reported_by=engineer, systems=("execution_engine",))
    run = services.runbook_run_start(incident=incident, runbook=_runbook("gradual-restoration"), user=engineer)
    core = _steps(run.runbook)[0]
    with pytest.raises(ValidationError) as refused:
        services.runbook_step_record(run=run, step=core, user=engineer, outcome="done")
    assert refused.value.message_dict == {"restored_service": ["Name the system or service this step restored."]}
    record = services.runbook_step_record(
        run=run,
        step=core,
        user=engineer,
        outcome="done",
        restored_system=system("execution_engine"),
        restored_service="order routing",
    )
    assert (record.restored_system.key, record.restored_service, record.by) == (
        "execution_engine",
        "order routing",
        engineer,
    )
    (line,) = _timeline(incident, data__step=core.pk)
    assert line.endswith("Core systems (restored: Execution Engine, order routing)")


def test_a_cancelled_incident_refuses_runbooks_and_steps(engineer):
    incident = open_incident(reported_by=engineer)
    run = services.runbook_run_start(incident=incident, runbook=_runbook("configuration-fixes"), user=engineer)
    incident_services.incident_transition(incident=incident, name="cancel", user=engineer, reason="False alarm")
    with pytest.raises(ValidationError) as step_refused:
        services.runbook_step_record(run=run, step=_steps(run.runbook)[0], user=engineer, outcome="done")
    assert "runbooks are closed" in step_refused.value.message_dict["step"][0]
    with pytest.raises(ValidationError) as start_refused:
        services.runbook_run_start(incident=incident, runbook=_runbook("gradual-restoration"), user=engineer)
    assert "incident" in start_refused.value.message_dict
    assert not StepRecord.objects.exists()
    assert RunbookRun.objects.count() == 1


def test_a_runbook_runs_once_per_incident(engineer):
    incident = open_incident(reported_by=engineer)
    services.runbook_run_start(incident=incident, runbook=_runbook("configuration-fixes"), user=engineer)
    with pytest.raises(ValidationError) as refused:
        services.runbook_run_start(incident=incident, runbook=_runbook("configuration-fixes"), user=engineer)
    assert refused.value.message_dict == {"runbook": ["This runbook is already running on this incident."]}


def _proposal(runbook: Runbook, author, *, incident=None) -> RunbookRevision:
    steps = [
        StepInput(title=s.title, instructions=s.instructions, commands=s.commands, source=s.source)
        for s in _steps(runbook)
    ]
    steps.insert(
        1,
        StepInput(title="Drain open orders", commands="curl -f http://localhost:8001/api/v1/orders/drain"),
    )
    return services.runbook_revision_propose(
        runbook=runbook, author=author, summary="Orders were lost at restart", steps=steps, source_incident=incident
    )


def test_four_eyes_author_and_people_without_the_role_are_refused(sysadmin, manager, engineer):
    runbook = _runbook("circuit-breaker-restart")
    incident = open_incident(reported_by=engineer, systems=("circuit_breaker",))
    revision = _proposal(runbook, sysadmin, incident=incident)
    assert (revision.number, revision.state) == (2, RunbookRevision.State.DRAFT)

    for user, message in (
        (sysadmin, "Someone other than its author must approve a revision (four eyes)."),
        (engineer, "Only an Incident Manager or a System Administrator approves runbooks."),
        (_user_in("CTO", "cto"), "Only an Incident Manager or a System Administrator approves runbooks."),
    ):
        with pytest.raises(ValidationError) as refused:
            services.runbook_revision_approve(revision=revision, user=user)
        assert refused.value.message_dict == {"revision": [message]}
        assert _runbook(runbook.key).current_revision.number == 1
        assert RunbookRevision.objects.get(pk=revision.pk).state == RunbookRevision.State.DRAFT

    services.runbook_revision_approve(revision=revision, user=manager)
    runbook = _runbook(runbook.key)
    assert runbook.current_revision == revision
    assert [s.title for s in _steps(runbook)][:2] == ["Stop affected services gracefully", "Drain open orders"]
    assert list(runbook.revisions.values_list("number", "state")) == [(1, "approved"), (2, "approved")]
    assert _timeline(incident, kind=TimelineEntry.Kind.UPDATE)[-2:] == [
        f"Runbook change proposed from the lessons learned: 'Circuit breaker restart' r2 by {sysadmin.get_full_name()}",
        f"Runbook 'Circuit breaker restart' r2 approved by {manager.get_full_name()}; it is now current",
    ]
    with pytest.raises(ValidationError):
        services.runbook_revision_approve(revision=revision, user=manager)


def test_a_run_started_before_a_revision_keeps_its_frozen_steps(sysadmin, manager, engineer):
    runbook = _runbook("circuit-breaker-restart")
    earlier = open_incident(reported_by=engineer, systems=("circuit_breaker",))
    old_run = services.runbook_run_start(incident=earlier, runbook=runbook, user=engineer)
    services.runbook_revision_approve(revision=_proposal(runbook, sysadmin), user=manager)

    assert [r["step"].title for r in selectors.run_steps(old_run)] == [s.title for s in _steps_of(old_run.revision)]
    assert len(selectors.run_steps(old_run)) == 4
    services.runbook_step_record(run=old_run, step=_steps_of(old_run.revision)[0], user=engineer, outcome="done")
    assert "Step 1/4 " in _timeline(earlier, data__step=_steps_of(old_run.revision)[0].pk)[0]

    later = open_incident(reported_by=engineer, systems=("circuit_breaker",), title="Breaker again")
    new_run = services.runbook_run_start(incident=later, runbook=_runbook(runbook.key), user=engineer)
    assert new_run.revision.number == 2
    assert len(selectors.run_steps(new_run)) == 5


def _steps_of(revision: RunbookRevision) -> list:
    return list(revision.steps.order_by("position"))


def test_an_older_draft_cannot_replace_a_newer_current_revision(sysadmin, manager):
    runbook = _runbook("configuration-fixes")
    older = _proposal(runbook, sysadmin)
    newer = _proposal(runbook, sysadmin)
    services.runbook_revision_approve(revision=newer, user=manager)
    with pytest.raises(ValidationError) as refused:
        services.runbook_revision_approve(revision=older, user=manager)
    assert "proposed before the current r3" in refused.value.message_dict["revision"][0]
    assert _runbook(runbook.key).current_revision == newer


def test_a_bad_proposal_is_a_field_error_and_writes_nothing(sysadmin):
    runbook = _runbook("configuration-fixes")
    cases = [
        ({"summary": "", "steps": [StepInput(title="x")]}, "summary"),
        ({"summary": "why", "steps": []}, "steps"),
        ({"summary": "why", "steps": [StepInput(title="  ", commands="ls")]}, "steps"),
        ({"summary": "why", "steps": [StepInput(title="t" * 201)]}, "steps"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as refused:
            services.runbook_revision_propose(runbook=runbook, author=sysadmin, **kwargs)
        assert field in refused.value.message_dict
    assert runbook.revisions.count() == 1


def test_search_finds_runbooks_by_step_text_of_the_current_revision(sysadmin, manager):
    found = [rb.key for rb in selectors.runbook_search(q="VERIFY-BACKUP-INTEGRITY")]
    assert found == ["database-data-recovery"]
    assert [rb.key for rb in selectors.runbook_search(q="reconcile transactions")] == ["database-data-recovery"]
    assert set(rb.key for rb in selectors.runbook_search(q="localhost:8002/health")) == {
        "market-analysis-restart",
        "testing-and-validation",
    }
    assert list(selectors.runbook_search(q="drain open orders")) == []
    runbook = _runbook("circuit-breaker-restart")
    draft = _proposal(runbook, sysadmin)
    # A draft is not the knowledge base yet.
    assert list(selectors.runbook_search(q="drain open orders")) == []
    services.runbook_revision_approve(revision=draft, user=manager)
    assert [rb.key for rb in selectors.runbook_search(q="drain open orders")] == ["circuit-breaker-restart"]
    assert [rb.key for rb in selectors.runbook_search(q="", system_key="database")] == ["database-data-recovery"]


def test_the_diff_shows_what_a_revision_changed(sysadmin):
    revision = _proposal(_runbook("circuit-breaker-restart"), sysadmin)
    diff = selectors.revision_diff(revision)
    added = [line for cls, line in diff if cls == "diff-add"]
    removed = [line for cls, line in diff if cls == "diff-del"]
    assert "+2. Drain open orders" in added
    assert "+   $ curl -f http://localhost:8001/api/v1/orders/drain" in added
    assert "-2. Clear temporary data if needed" in removed
    assert "+3. Clear temporary data if needed" in added


def test_the_incident_offers_its_affected_systems_runbooks_first(engineer):
    incident = open_incident(reported_by=engineer, systems=("database", "risk_management"))
    offered = [rb.key for rb in selectors.runbooks_for_incident(incident)]
    assert set(offered[:2]) == {"database-data-recovery", "risk-management-restart"}
    assert set(offered[2:5]) == {"configuration-fixes", "testing-and-validation", "gradual-restoration"}
    assert offered[5:] == ["circuit-breaker-restart", "market-analysis-restart"]
