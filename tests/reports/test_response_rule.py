"""One rule for the first response: the severity's response time (the seed's "Response Time").

The report's response-time SLA, its "Detection and initial response" phase, the incident page's
clocks and the SLA figures on the metrics page read the same clock, so at the response target
(just below it, at it, just above it) they give one verdict. Acknowledged at the due moment is
in time; still unacknowledged at the due moment is overdue.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from incidents import services
from reports import selectors
from reports import services as report_services
from tests.factories import open_incident

pytestmark = pytest.mark.django_db

SEV3_RESPONSE = timedelta(hours=1)  # the seed: Medium (Severity 3), "Response Time: 1 hour"
DETECTION = "Detection and initial response"


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _sev3_figures(incident) -> dict:
    day = incident.detected_at.date()
    period = selectors.Period(start=day.replace(day=1), end=selectors.add_months(day.replace(day=1), 1))
    return next(row for row in selectors.sla_compliance(period) if row["severity"].level == 3)


def _incident_page_clock(client, incident, label: str) -> str:
    page = client.get(incident.get_absolute_url()).content.decode()
    match = re.search(rf"<th>{re.escape(label)} \([^)]*\)</th><td[^>]*><span class=\"clock clock-(\w+)\"", page)
    assert match, f"no {label!r} clock on the incident page"
    return match.group(1)


@pytest.mark.parametrize(
    "acknowledged_after, verdict",
    [
        (timedelta(minutes=50), "met"),  # the report that said MET beside "missed"
        (SEV3_RESPONSE - timedelta(seconds=1), "met"),
        (SEV3_RESPONSE, "met"),
        (SEV3_RESPONSE + timedelta(seconds=1), "missed"),
    ],
    ids=["50 min", "just below", "at", "just above"],
)
def test_the_sla_and_the_detection_phase_give_one_verdict_at_the_response_target(
    engineer, manager_client, acknowledged_after, verdict
):
    detected = timezone.now().replace(microsecond=0) - timedelta(hours=3)
    incident = open_incident(reported_by=engineer, level=3, detected_at=detected)
    services.incident_transition(incident=incident, name="acknowledge", user=engineer, at=detected + acknowledged_after)

    html = report_services.report_html(
        incident_id=incident.pk, review=None, kinds=[], generated_at=timezone.now(), pdf=False
    )
    text = _text(html)

    assert f"Response-time SLA (1 h) {verdict.upper()} · acknowledged after" in text
    assert f"{DETECTION} (target 1 h) {verdict} ·" in text
    assert _incident_page_clock(manager_client, incident, DETECTION) == verdict
    assert _incident_page_clock(manager_client, incident, "Acknowledge") == verdict
    figures = _sev3_figures(incident)
    assert (figures["met"], figures["missed"]) == ((1, 0) if verdict == "met" else (0, 1))


@pytest.mark.parametrize(
    "now_after, verdict",
    [
        (SEV3_RESPONSE - timedelta(seconds=1), "running"),
        (SEV3_RESPONSE, "overdue"),
        (SEV3_RESPONSE + timedelta(seconds=1), "overdue"),
    ],
    ids=["just below", "at", "just above"],
)
def test_an_unacknowledged_incident_is_overdue_from_its_response_target_on(engineer, monkeypatch, now_after, verdict):
    detected = timezone.now().replace(microsecond=0) - timedelta(hours=3)
    incident = open_incident(reported_by=engineer, level=3, detected_at=detected)
    monkeypatch.setattr(timezone, "now", lambda: detected + now_after)

    context = selectors.report_context(incident=incident, review=None, kinds=[], generated_at=timezone.now())
    phases = {clock.label: clock for clock in context["phase_clocks"]}

    assert context["response_clock"].status == verdict
    assert phases[DETECTION].status == verdict
    assert phases[DETECTION].due_at == context["response_clock"].due_at == detected + SEV3_RESPONSE
    figures = _sev3_figures(incident)
    assert (figures["met"], figures["missed"]) == ((0, 0) if verdict == "running" else (0, 1))
