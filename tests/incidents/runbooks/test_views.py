"""The knowledge base's pages and the incident page's runbooks, as people use them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from incidents import services as incident_services
from incidents.models import TimelineEntry
from incidents.runbooks import selectors, services
from incidents.runbooks.models import Runbook, RunbookRevision, RunbookRun, StepRecord
from reports import services as report_services
from tests.conftest import _user_in
from tests.factories import open_incident, system
from tests.reports.helpers import resolved_incident

pytestmark = pytest.mark.django_db


def _runbook(key: str) -> Runbook:
    return Runbook.objects.select_related("current_revision").get(key=key)


def _step(runbook: Runbook, position: int):
    return runbook.current_revision.steps.get(position=position)


def test_every_runbook_page_needs_login(client):
    run_incident = open_incident()
    run = services.runbook_run_start(
        incident=run_incident, runbook=_runbook("configuration-fixes"), user=run_incident.reported_by
    )
    for url in (
        reverse("runbooks:list"),
        reverse("runbooks:detail", args=["configuration-fixes"]),
        reverse("runbooks:revision", args=["configuration-fixes", 1]),
        reverse("runbooks:propose", args=["configuration-fixes"]),
        reverse("runbooks:propose_choose"),
        reverse("runbooks:run", args=[run.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


def test_search_page_finds_by_step_text_and_answers_bad_input_with_a_field_error(client, engineer):
    client.force_login(engineer)
    response = client.get(reverse("runbooks:list"), {"q": "pg_dump tmt_production"})
    assert response.status_code == 200
    assert [rb.key for rb in response.context["runbooks"]] == ["database-data-recovery"]
    response = client.get(reverse("runbooks:list"), {"q": "x", "system": "no-such-system"})
    assert response.status_code == 400
    assert "system" in response.context["form"].errors


def test_a_person_without_a_role_sees_no_runbook_and_cannot_start_one(client):
    nobody = _user_in("Trainer", "trainer-x")
    nobody.groups.clear()
    client.force_login(nobody)
    incident = open_incident()
    assert client.get(reverse("runbooks:list")).status_code == 403
    response = client.post(
        reverse("runbooks:run_start", args=[incident.reference]), {"runbook": _runbook("configuration-fixes").pk}
    )
    assert response.status_code == 403
    assert not RunbookRun.objects.exists()


def test_the_trainer_reads_the_knowledge_base_but_works_no_incident(client, trainer):
    client.force_login(trainer)
    assert client.get(reverse("runbooks:detail", args=["gradual-restoration"])).status_code == 200
    incident = open_incident()
    response = client.post(
        reverse("runbooks:run_start", args=[incident.reference]), {"runbook": _runbook("gradual-restoration").pk}
    )
    assert response.status_code == 403


def test_incident_page_offers_runbooks_and_steps_are_ticked_from_it(client, engineer):
    client.force_login(engineer)
    incident = open_incident(reported_by=engineer, systems=("circuit_breaker",))
    page = client.get(incident.get_absolute_url())
    panel_url = reverse("runbooks:incident_panel", args=[incident.reference])
    assert page.status_code == 200 and panel_url.encode() in page.content
    panel = client.get(panel_url)
    assert panel.context["runbooks_offered"][0].key == "circuit-breaker-restart"
    assert b'data-testid="start-runbook"' in panel.content

    runbook = _runbook("circuit-breaker-restart")
    response = client.post(reverse("runbooks:run_start", args=[incident.reference]), {"runbook": runbook.pk})
    assert response.status_code == 302
    run = RunbookRun.objects.get(incident=incident)

    # Out of order: a field error on the step, nothing written.
    response = client.post(reverse("runbooks:step_record", args=[run.pk, _step(runbook, 2).pk]), {"outcome": "done"})
    assert response.status_code == 400
    assert response.context["form"].errors == {"step": ["Step 1 must be done or skipped first."]}
    assert "Step 1 must be done or skipped first." in response.content.decode()
    assert not StepRecord.objects.exists()

    response = client.post(reverse("runbooks:step_record", args=[run.pk, _step(runbook, 1).pk]), {"outcome": "done"})
    assert response.status_code == 302
    response = client.post(reverse("runbooks:step_record", args=[run.pk, _step(runbook, 2).pk]), {"outcome": "skipped"})
    assert response.status_code == 400
    assert response.context["form"].errors["reason"] == ["Say why the step is skipped."]
    assert StepRecord.objects.count() == 1

    page = client.get(incident.get_absolute_url())
    assert "Step 1/4 of Runbook &#x27;Circuit breaker restart&#x27; done by" in page.content.decode()


def test_a_step_of_another_revision_is_not_found(client, engineer, sysadmin, manager):
    client.force_login(engineer)
    incident = open_incident(reported_by=engineer)
    runbook = _runbook("configuration-fixes")
    run = services.runbook_run_start(incident=incident, runbook=runbook, user=engineer)
    other = _step(_runbook("gradual-restoration"), 1)
    assert client.post(reverse("runbooks:step_record", args=[run.pk, other.pk]), {"outcome": "done"}).status_code == 404
    assert client.post(reverse("runbooks:step_record", args=[run.pk, 99999]), {"outcome": "done"}).status_code == 404
    assert not StepRecord.objects.exists()


def _formset(steps: list[dict], summary: str = "Orders were lost at restart") -> dict:
    data = {
        "summary": summary,
        "steps-TOTAL_FORMS": str(len(steps)),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
    }
    for i, step in enumerate(steps):
        for name, value in step.items():
            data[f"steps-{i}-{name}"] = value
    return data


def test_a_review_proposes_a_revision_which_another_role_holder_approves(client, engineer, sysadmin, manager):
    incident = resolved_incident(engineer, systems=("circuit_breaker",))
    review = report_services.review_start(incident=incident, user=engineer)
    client.force_login(sysadmin)
    report = client.get(reverse("reports:report", args=[incident.reference]))
    assert b'data-testid="propose-runbook-change"' in report.content

    choose = client.get(reverse("runbooks:propose_choose"), {"incident": incident.reference, "review": review.pk})
    assert choose.status_code == 200
    assert choose.context["runbooks"][0].key == "circuit-breaker-restart"

    url = (
        reverse("runbooks:propose", args=["circuit-breaker-restart"])
        + f"?incident={incident.reference}&review={review.pk}"
    )
    form = client.get(url)
    assert form.context["formset"].initial[3]["title"] == "Verify system health"

    bad = client.post(url, _formset([{"title": "", "commands": "ls"}]))
    assert bad.status_code == 400
    assert "Step 1 needs a title." in bad.content.decode()
    assert _runbook("circuit-breaker-restart").revisions.count() == 1

    good = client.post(url, _formset([{"title": "Drain orders", "commands": "curl -f x"}, {"title": "Restart"}]))
    assert good.status_code == 302
    revision = RunbookRevision.objects.get(runbook__key="circuit-breaker-restart", number=2)
    assert (revision.source_incident, revision.source_review_id, revision.author) == (incident, review.pk, sysadmin)

    # The author may not approve their own revision; the page does not offer it and refuses it.
    page = client.get(reverse("runbooks:revision", args=["circuit-breaker-restart", 2]))
    assert b'data-testid="approve-revision"' not in page.content
    assert b"diff-add" in page.content
    refused = client.post(reverse("runbooks:revision_approve", args=["circuit-breaker-restart", 2]))
    assert refused.status_code == 400
    assert _runbook("circuit-breaker-restart").current_revision.number == 1

    client.force_login(engineer)
    assert client.post(reverse("runbooks:revision_approve", args=["circuit-breaker-restart", 2])).status_code == 403

    client.force_login(manager)
    assert client.post(reverse("runbooks:revision_approve", args=["circuit-breaker-restart", 2])).status_code == 302
    assert _runbook("circuit-breaker-restart").current_revision == revision


def test_a_proposal_from_an_unknown_review_is_refused_and_writes_nothing(client, engineer, sysadmin):
    incident = open_incident(reported_by=engineer)
    client.force_login(sysadmin)
    url = reverse("runbooks:propose", args=["configuration-fixes"]) + f"?incident={incident.reference}&review=424242"
    response = client.post(url, _formset([{"title": "A step"}]))
    assert response.status_code == 400
    assert response.context["source_errors"] == {"review": "No such post-incident review on that incident."}
    assert client.get(reverse("runbooks:propose_choose"), {"review": "abc"}).status_code == 400
    assert _runbook("configuration-fixes").revisions.count() == 1
    assert not TimelineEntry.objects.filter(incident=incident, data__has_key="revision").exists()


def test_the_runbook_page_lists_the_incidents_it_was_used_on(client, engineer):
    client.force_login(engineer)
    incident = open_incident(reported_by=engineer, systems=("database",), title="Trading DB corrupted")
    services.runbook_run_start(incident=incident, runbook=_runbook("database-data-recovery"), user=engineer)
    page = client.get(reverse("runbooks:detail", args=["database-data-recovery"]))
    assert [run.incident for run in page.context["past_runs"]] == [incident]
    assert incident.reference in page.content.decode()
    assert b'<pre class="runbook-commands"' in page.content


def test_a_cancelled_incidents_panel_offers_nothing_and_its_steps_are_refused(client, engineer):
    client.force_login(engineer)
    incident = open_incident(reported_by=engineer)
    runbook = _runbook("configuration-fixes")
    run = services.runbook_run_start(incident=incident, runbook=runbook, user=engineer)
    incident_services.incident_transition(incident=incident, name="cancel", user=engineer, reason="False alarm")
    panel = client.get(reverse("runbooks:incident_panel", args=[incident.reference]))
    assert b'data-testid="start-runbook"' not in panel.content
    assert b'data-testid="step-done"' not in panel.content
    response = client.post(reverse("runbooks:step_record", args=[run.pk, _step(runbook, 1).pk]), {"outcome": "done"})
    assert response.status_code == 400
    assert "runbooks are closed" in response.content.decode()
    assert not StepRecord.objects.exists()


def test_a_new_runbook_is_offered_only_once_its_first_revision_is_approved(client, engineer, sysadmin, manager):
    client.force_login(engineer)
    refused = client.post(reverse("runbooks:new"), {"title": "Broker failover", "procedure": "system_restart"})
    assert refused.status_code == 403
    client.force_login(sysadmin)
    bad = client.post(reverse("runbooks:new"), {"title": "", "procedure": "juggling"})
    assert bad.status_code == 400
    assert set(bad.context["form"].errors) == {"title", "procedure"}
    assert Runbook.objects.count() == 7

    created = client.post(
        reverse("runbooks:new"),
        {"title": "Message broker failover", "procedure": "system_restart", "system": system("message_broker").pk},
    )
    assert created.status_code == 302
    runbook = Runbook.objects.get(key="message-broker-failover")
    incident = open_incident(reported_by=engineer, systems=("message_broker",))
    offered = lambda: [rb.key for rb in selectors.runbooks_for_incident(incident)]  # noqa: E731
    assert "message-broker-failover" not in offered()

    url = reverse("runbooks:propose", args=[runbook.key])
    assert client.post(url, _formset([{"title": "Promote the standby broker"}])).status_code == 302
    client.force_login(manager)
    assert client.post(reverse("runbooks:revision_approve", args=[runbook.key, 1])).status_code == 302
    assert offered()[0] == "message-broker-failover"


def test_a_runbook_titled_like_a_page_gets_a_key_of_its_own(sysadmin):
    runbook = services.runbook_create(title="New", procedure="system_restart", system=None, author=sysadmin)
    assert runbook.key == "new-runbook"
    assert reverse("runbooks:detail", args=[runbook.key]) == "/runbooks/new-runbook/"


@pytest.mark.parametrize("query", ["?incident=%00", "?incident=TMT-INC-%00&review=1", "?review=%00"])
def test_a_proposal_from_a_reference_postgresql_cannot_query_is_a_field_error_not_a_500(client, manager, query):
    client.force_login(manager)
    answer = client.get(reverse("runbooks:propose_choose") + query)
    assert answer.status_code in (200, 400)
    assert not RunbookRevision.objects.filter(state="draft").exists()
