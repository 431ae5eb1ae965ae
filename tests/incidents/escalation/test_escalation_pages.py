from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from incidents.escalation import services as escalation
from incidents.escalation.models import RegulatoryObligation, StatusUpdate
from incidents.notifications.models import Notification
from tests.factories import open_incident

pytestmark = pytest.mark.django_db


def login(client, user):
    client.force_login(user)
    return client


def test_panel_shows_clocks_and_who_is_paged_next(client, team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    escalation.deadlines_fire_due(now=timezone.now())
    html = (
        login(client, team["oncall1"])
        .get(reverse("incidents:escalation_panel", args=[incident.reference]))
        .content.decode()
    )
    assert "Time to acknowledge" in html
    assert "Severity 1 incident lasting over 2 hours: CEO" in html  # pending, with who it pages
    assert team["ceo"].get_full_name() in html
    assert "step 1: on-call On-Call Engineer" in html and team["oncall1"].get_full_name() in html


def test_status_update_composer_prefills_the_template_and_posts(client, team):
    incident = open_incident(reported_by=team["im"], level=2, commander=team["oncall1"])
    page = login(client, team["oncall1"]).get(reverse("incidents:status_update", args=[incident.reference]))
    form = page.context["form"]
    assert form.initial["subject"] == f"[INCIDENT] TMT System - Sev2 - {incident.title}"
    assert form.initial["status"] == "Investigating" and team["oncall1"].email in form.initial["contact"]
    response = client.post(
        reverse("incidents:status_update", args=[incident.reference]),
        {
            **{k: v for k, v in form.initial.items() if v is not None and k != "next_update_at"},
            "impact": "Orders delayed",
            "details": "Failing over to the standby",
        },
    )
    assert response.status_code == 302
    update = StatusUpdate.objects.get()
    assert update.sequence == 1
    assert Notification.objects.filter(status_update=update, channel="email", address=team["oncall1"].email).exists()
    assert incident.timeline.filter(kind="status_update").exists()


def test_status_update_bad_input_is_field_errors_and_writes_nothing(client, team):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    past = (timezone.localtime() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = login(client, team["oncall1"]).post(
        reverse("incidents:status_update", args=[incident.reference]),
        {"subject": "", "status": "Exploded", "impact": "x", "details": "y", "contact": "z", "next_update_at": past},
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert {"subject", "status", "next_update_at"} <= set(errors)
    assert not StatusUpdate.objects.exists()


def test_regulatory_flag_submit_and_head_of_risk_sign_off(client, team):
    risk = team["oncall1"]
    risk.groups.add(Group.objects.get(name="Risk Manager"))
    incident = open_incident(reported_by=risk, level=2)
    from incidents.escalation.models import RegulatoryCategory

    category = RegulatoryCategory.objects.get(key="data-integrity")
    login(client, risk).post(
        reverse("incidents:obligation_raise", args=[incident.reference]), {"category": category.pk}
    )
    obligation = RegulatoryObligation.objects.get()
    assert obligation.due_at - obligation.raised_at == timedelta(hours=24)
    client.post(
        reverse("incidents:obligation_submit", args=[incident.reference, obligation.pk]), {"reference": "FCA-123"}
    )
    obligation.refresh_from_db()
    assert obligation.submission_reference == "FCA-123" and obligation.status == "submitted"
    # A Risk Manager cannot sign off; the Head of Risk can.
    assert (
        client.post(reverse("incidents:obligation_sign_off", args=[incident.reference, obligation.pk])).status_code
        == 403
    )
    login(client, team["head_of_risk"]).post(
        reverse("incidents:obligation_sign_off", args=[incident.reference, obligation.pk])
    )
    obligation.refresh_from_db()
    assert obligation.signed_off_by == team["head_of_risk"]


def test_compliance_flag_pages_head_of_risk(team):
    incident = open_incident(reported_by=team["oncall1"], level=3, financial_impact_usd=None)
    escalation.regulatory_raise(incident=incident, category_key="compliance-violation", user=team["oncall1"])
    escalation.deadlines_fire_due(now=timezone.now())
    assert incident.escalations.filter(rule="role:head-of-risk-compliance", target_user=team["head_of_risk"]).exists()


def test_bad_obligation_input_never_500(client, team):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    team["oncall1"].groups.add(Group.objects.get(name="Risk Manager"))
    login(client, team["oncall1"])
    assert (
        client.post(reverse("incidents:obligation_raise", args=[incident.reference]), {"category": "nope"}).status_code
        == 302
    )
    assert (
        client.post(
            reverse("incidents:obligation_submit", args=[incident.reference, 999]), {"reference": "x"}
        ).status_code
        == 404
    )
    assert not RegulatoryObligation.objects.exists()
