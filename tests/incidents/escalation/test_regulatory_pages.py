"""The regulatory pages: classify, draft, sign off, submit, export (JSON and PDF), and the view of
every report still owed."""

import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from incidents.escalation import regimes
from incidents.escalation import services as escalation
from incidents.escalation.models import RegulatoryClassification, RegulatoryObligation, RegulatoryRegime
from tests.factories import UserFactory, open_incident

pytestmark = pytest.mark.django_db


def login(client, user):
    client.force_login(user)
    return client


def dora_incident(team, **kwargs):
    incident = open_incident(reported_by=team["oncall1"], level=1, **kwargs)
    regimes.regulatory_classify(
        incident=incident,
        regime=RegulatoryRegime.objects.get(key="dora"),
        user=team["head_of_risk"],
        reportable=True,
        criteria_met=["clients", "critical_services"],
        rationale="Order routing down for all clients",
    )
    return incident


def stage_of(incident, key):
    return RegulatoryObligation.objects.get(incident=incident, stage__key=key, regime__key="dora")


def test_classifying_on_the_page_creates_the_reports(client, team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    url = reverse("incidents:incident_regulatory", args=[incident.reference])
    response = login(client, team["im"]).post(
        url, {"regime": "dora", "reportable": "on", "criteria_met": ["clients", "duration"], "rationale": "x"}
    )
    assert response.status_code == 302
    classification = RegulatoryClassification.objects.get(incident=incident)
    assert classification.classified_by == team["im"] and classification.criteria_met == ["clients", "duration"]
    assert RegulatoryObligation.objects.filter(incident=incident).count() == 3
    page = client.get(url).content.decode()
    assert "Clients, financial counterparts and transactions affected" in page
    assert "Initial notification" in page and "starts on submission of the previous stage" in page


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"regime": "mifid", "reportable": "on", "criteria_met": ["clients"]}, "regime"),
        ({"regime": "procedures", "reportable": "on", "criteria_met": ["clients"]}, "regime"),
        ({"regime": "dora", "reportable": "on"}, "criteria_met"),
        ({"regime": "dora", "reportable": "on", "criteria_met": ["consumer_harm"]}, "criteria_met"),
        ({"regime": "dora", "reportable": "on", "criteria_met": ["nope"]}, "criteria_met"),
        (
            {"regime": "dora", "reportable": "on", "criteria_met": ["clients"], "aware_at": "2999-01-01T00:00"},
            "aware_at",
        ),
        ({"regime": "dora", "reportable": "on", "criteria_met": ["clients"], "aware_at": "yesterday"}, "aware_at"),
    ],
)
def test_bad_classification_on_the_page_is_a_field_error(client, team, fields, error):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    response = login(client, team["head_of_risk"]).post(
        reverse("incidents:incident_regulatory", args=[incident.reference]), fields
    )
    assert response.status_code == 400
    assert error in response.context["form"].errors
    assert not RegulatoryClassification.objects.exists() and not RegulatoryObligation.objects.exists()


def test_an_engineer_sees_but_cannot_classify(client, team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    url = reverse("incidents:incident_regulatory", args=[incident.reference])
    login(client, team["oncall1"])
    assert client.get(url).status_code == 200
    response = client.post(url, {"regime": "dora", "reportable": "on", "criteria_met": ["clients"]})
    assert response.status_code == 403
    assert not RegulatoryClassification.objects.exists()


def test_pages_need_login_and_permission(client, team):
    incident = dora_incident(team)
    initial = stage_of(incident, "initial")
    urls = [
        reverse("incidents:regulatory"),
        reverse("incidents:incident_regulatory", args=[incident.reference]),
        reverse("incidents:obligation_report", args=[incident.reference, initial.pk]),
        reverse("incidents:obligation_report_json", args=[incident.reference, initial.pk]),
        reverse("reports:regulatory_pdf", args=[incident.reference, initial.pk]),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url
    trainer = UserFactory(username="trainer1")
    trainer.groups.add(Group.objects.get(name="Trainer"))
    login(client, trainer)
    for url in urls:
        assert client.get(url).status_code == 403, url


def test_the_regulatory_view_lists_every_open_clock_across_incidents(client, team):
    first = dora_incident(team, title="Order router down")
    second = open_incident(reported_by=team["oncall1"], level=2, title="Reporting feed late")
    escalation.regulatory_raise(incident=second, category_key="data-integrity")
    drill = open_incident(reported_by=team["oncall1"], level=1, title="Drill only", is_drill=True)
    page = login(client, team["im"]).get(reverse("incidents:regulatory"))
    running = [row["obligation"] for row in page.context["running"]]
    waiting = [row["obligation"] for row in page.context["waiting"]]
    assert {o.label for o in running} == {
        "DORA major ICT-related incident reporting: Initial notification",
        "Data integrity issues",
    }
    assert [o.due_at for o in running] == sorted(o.due_at for o in running)
    assert {o.stage.key for o in waiting} == {"intermediate", "final"}
    html = page.content.decode()
    assert first.reference in html and second.reference in html and drill.reference not in html
    # A submitted report leaves the list.
    initial = stage_of(first, "initial")
    regimes.regulatory_draft(obligation=initial, user=team["im"])
    escalation.regulatory_sign_off(obligation=initial, user=team["head_of_risk"])
    escalation.regulatory_submit(obligation=initial, user=team["im"], reference="CA-7")
    page = client.get(reverse("incidents:regulatory"))
    labels = [row["obligation"].label for row in page.context["running"]]
    assert "DORA major ICT-related incident reporting: Intermediate report" in labels
    assert "DORA major ICT-related incident reporting: Initial notification" not in labels


def test_draft_sign_off_and_submit_on_the_report_page(client, team):
    incident = dora_incident(team)
    initial = stage_of(incident, "initial")
    url = reverse("incidents:obligation_report", args=[incident.reference, initial.pk])
    login(client, team["head_of_risk"])
    form = client.get(url).context["form"]
    assert form.initial["summary"].startswith(incident.reference)
    content = {k: form.initial[k] for k in regimes.CONTENT_FIELDS}
    assert client.post(url, {**content, "cause": "Expired certificate"}).status_code == 302
    # The drafter is the Head of Risk: their own sign-off is refused with a message.
    sign_off = reverse("incidents:obligation_sign_off", args=[incident.reference, initial.pk])
    response = client.post(sign_off, follow=True)
    assert "drafter cannot sign it off" in response.content.decode()
    initial.refresh_from_db()
    assert initial.signed_off_at is None and initial.content["cause"] == "Expired certificate"
    # Someone else drafts (from the incident); the Head of Risk signs off; the manager submits.
    login(client, team["im"]).post(url, {"from_incident": "1"})
    login(client, team["head_of_risk"]).post(sign_off)
    submit = reverse("incidents:obligation_submit", args=[incident.reference, initial.pk])
    login(client, team["im"]).post(submit, {"reference": "CA-2027-0042"})
    initial.refresh_from_db()
    assert initial.signed_off_by == team["head_of_risk"] and initial.submission_reference == "CA-2027-0042"
    intermediate = stage_of(incident, "intermediate")
    assert intermediate.clock_started_at == initial.submitted_at
    assert intermediate.due_at is not None and intermediate.due_at >= initial.submitted_at + timedelta(hours=72)


def test_submission_before_sign_off_is_refused_on_the_page(client, team):
    incident = dora_incident(team)
    initial = stage_of(incident, "initial")
    regimes.regulatory_draft(obligation=initial, user=team["im"])
    submit = reverse("incidents:obligation_submit", args=[incident.reference, initial.pk])
    response = login(client, team["im"]).post(submit, {"reference": "CA-1"}, follow=True)
    assert "signs the report off before it is submitted" in response.content.decode()
    initial.refresh_from_db()
    assert initial.submitted_at is None


def test_an_empty_draft_is_a_field_error(client, team):
    incident = dora_incident(team)
    initial = stage_of(incident, "initial")
    url = reverse("incidents:obligation_report", args=[incident.reference, initial.pk])
    response = login(client, team["im"]).post(url, {"summary": " ", "impact": "x"})
    assert response.status_code == 400
    assert {"summary", "timeline", "cause", "actions"} <= set(response.context["form"].errors)
    initial.refresh_from_db()
    assert initial.drafted_at is None and initial.content == {}


def _signed_off_initial(team, incident):
    initial = stage_of(incident, "initial")
    regimes.regulatory_draft(
        obligation=initial,
        user=team["im"],
        content={
            "summary": "Order router <b>down</b> & rejecting",
            "impact": "All clients' orders rejected for 42 minutes",
            "timeline": "09:00 detected\n09:42 restored",
            "cause": "Expired TLS certificate",
            "actions": "Certificate renewed; expiry monitoring added",
        },
    )
    return escalation.regulatory_sign_off(obligation=initial, user=team["head_of_risk"])


def test_json_export_shape(client, team):
    incident = dora_incident(team)
    initial = _signed_off_initial(team, incident)
    response = login(client, team["im"]).get(
        reverse("incidents:obligation_report_json", args=[incident.reference, initial.pk])
    )
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    data = json.loads(response.content)
    assert set(data) == {
        "incident",
        "regime",
        "stage",
        "classification",
        "clock",
        "content",
        "drafted",
        "signed_off",
        "submission",
    }
    assert data["incident"] == {"reference": incident.reference, "title": incident.title, "severity": 1}
    assert data["regime"]["key"] == "dora" and "2025/301" in data["regime"]["citation"]
    assert data["stage"] == {
        "key": "initial",
        "name": "Initial notification",
        "citation": "Delegated Regulation (EU) 2025/301, Art. 5(1)(a)",
    }
    assert [c["key"] for c in data["classification"]["criteria_met"]] == ["clients", "critical_services"]
    assert data["classification"]["classified_by"] == team["head_of_risk"].get_full_name()
    assert data["clock"]["status"] == "signed off, to submit"
    assert data["clock"]["due_at"] == initial.due_at.isoformat()
    assert data["content"]["cause"] == "Expired TLS certificate"
    assert data["signed_off"]["by"] == team["head_of_risk"].get_full_name()
    assert data["submission"] == {"at": None, "by": None, "reference": None}


def test_pdf_export_reads_back(client, team):
    incident = dora_incident(team)
    initial = _signed_off_initial(team, incident)
    response = login(client, team["im"]).get(reverse("reports:regulatory_pdf", args=[incident.reference, initial.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    flat = " ".join(text.split())
    assert "Initial notification — DORA major ICT-related incident reporting" in flat
    assert incident.reference in flat
    assert "Order router <b>down</b> & rejecting" in flat  # user text stays text
    assert "Expired TLS certificate" in flat and "Certificate renewed; expiry monitoring added" in flat
    assert "Delegated Regulation (EU) 2025/301, Art. 5(1)(a)" in flat
    assert "Critical services affected" in flat
    assert f"{timezone.localtime(initial.due_at):%Y-%m-%d %H:%M}" in flat


def test_the_procedures_categories_have_no_report_page(client, team):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity")
    login(client, team["im"])
    assert (
        client.get(reverse("incidents:obligation_report", args=[incident.reference, obligation.pk])).status_code == 404
    )
    panel = client.get(reverse("incidents:escalation_panel", args=[incident.reference])).content.decode()
    assert "Data integrity issues" in panel and "Regulatory reporting" in panel


def test_the_regulatory_view_reads_a_constant_number_of_queries(client, team, django_assert_max_num_queries):
    login(client, team["im"])
    dora_incident(team)
    url = reverse("incidents:regulatory")
    with django_assert_max_num_queries(12) as few:
        client.get(url)
    for _ in range(4):
        dora_incident(team)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(url).status_code == 200
