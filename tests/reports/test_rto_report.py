"""The report's RTO table: each affected system's RTO against the measured restoration, and when
the incident manager was paged for a breach (page and PDF alike)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.escalation import services as escalation
from reports import services as report_services
from reports.pdf import html_to_pdf
from tests.factories import make_roster, open_incident

from .helpers import pdf_text, resolve

pytestmark = pytest.mark.django_db


def _pdf(incident) -> str:
    html = report_services.report_html(
        incident_id=incident.pk, review=None, kinds=[], generated_at=timezone.now(), pdf=True
    )
    return pdf_text(html_to_pdf(html).content)


def test_the_report_shows_rto_met_and_breached_with_the_page(client):
    team = make_roster()
    started = timezone.now() - timedelta(minutes=20)
    incident = open_incident(
        reported_by=team["oncall1"], level=2, systems=("circuit_breaker", "market_analysis"), started_at=started
    )
    # Circuit breaker's RTO (5 min) passed while the incident was open; market analysis (30 min)
    # is restored in time: resolved 20 minutes after the start.
    escalation.deadlines_fire_due(now=timezone.now())
    incident = resolve(incident, team["oncall1"], at=timezone.now())
    client.force_login(team["im"])
    page = client.get(reverse("reports:report", args=[incident.reference])).content.decode()
    assert "RTO BREACHED by" in page
    assert "Within RTO" in page
    assert page.count('data-testid="rto-page">RTO page at ') == 1
    text = _pdf(incident)
    assert "RTO BREACHED" in text and "Within RTO" in text
    assert "RTO page at" in text


def test_a_system_restored_in_time_shows_no_page(client):
    team = make_roster()
    started = timezone.now() - timedelta(minutes=4)
    incident = open_incident(reported_by=team["oncall1"], level=2, systems=("circuit_breaker",), started_at=started)
    escalation.deadlines_fire_due(now=timezone.now())
    incident = resolve(incident, team["oncall1"], at=timezone.now())
    client.force_login(team["im"])
    page = client.get(reverse("reports:report", args=[incident.reference])).content.decode()
    assert "Within RTO" in page
    assert "RTO BREACHED" not in page
    assert "RTO page at" not in page
