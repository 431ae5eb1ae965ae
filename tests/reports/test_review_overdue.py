"""An overdue post-incident review is flagged wherever the review is shown.

The review is due the review phase target (72 h seeded) after resolution. From the due moment
on, the moment its "now due" reminder fires, and until a revision is approved, the report page,
the review's own page, the incident page and the reviews list warn that it is overdue.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents import services
from incidents.escalation.models import EscalationEvent
from incidents.escalation.services import deadlines_fire_due
from reports import services as report_services
from tests.factories import make_roster, open_incident

from .helpers import resolve, resolved_incident, submitted_review

pytestmark = pytest.mark.django_db

REVIEW_TARGET = timedelta(hours=72)  # the seed: post-incident review 24-72 hours after resolution
WARNING = 'data-testid="review-overdue"'


def _pages(client, incident, review=None) -> dict[str, str]:
    pages = {
        "report page": reverse("reports:report", args=[incident.reference]),
        "incident page": incident.get_absolute_url(),
        "reviews list": reverse("reports:reviews"),
    }
    if review is not None:
        pages["review page"] = reverse("reports:review_edit", args=[incident.reference, review.revision])
    out = {}
    for name, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200, name
        out[name] = response.content.decode()
    return out


@pytest.mark.parametrize(
    "after_due, overdue",
    [(-timedelta(seconds=1), False), (timedelta(0), True), (timedelta(seconds=1), True)],
    ids=["just before", "at", "just after"],
)
def test_an_overdue_review_is_flagged_on_every_page_that_shows_it(client, monkeypatch, after_due, overdue):
    team = make_roster()
    lead = team["oncall1"]
    incident = resolve(open_incident(reported_by=lead, commander=lead), lead)
    review = report_services.review_start(incident=incident, user=lead)  # a draft, not approved
    due = incident.resolved_at + REVIEW_TARGET
    now = due + after_due

    deadlines_fire_due(now=now)
    monkeypatch.setattr(timezone, "now", lambda: now)
    client.force_login(lead)
    pages = _pages(client, incident, review)

    for name, page in pages.items():
        assert (WARNING in page) == overdue, f"{name}: overdue warning {'missing' if overdue else 'shown early'}"
    # The warning and the author's "now due" reminder come at the same moment.
    now_due = EscalationEvent.objects.filter(incident=incident, rule__startswith="review:", step=2)
    assert now_due.exists() == overdue
    assert incident.reference in pages["reviews list"]
    if overdue:
        assert "Post-incident review overdue." in pages["incident page"]
        assert re.search(r"1 review overdue\.", pages["reviews list"])


def test_an_approved_review_is_not_overdue_even_while_the_incident_stays_open_for_review(
    client, engineer, cto, monkeypatch
):
    incident = resolved_incident(engineer)
    review = submitted_review(incident, engineer)
    report_services.review_approve(review=review, user=cto)
    monkeypatch.setattr(timezone, "now", lambda: incident.resolved_at + REVIEW_TARGET + timedelta(days=2))

    html = report_services.report_html(
        incident_id=incident.pk, review=review, kinds=[], generated_at=timezone.now(), pdf=False
    )
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())

    # The report's review phase ends with the approval, as the reminders and warnings do.
    assert "Post-incident review (target 3 d) met" in text
    client.force_login(cto)
    for name, page in _pages(client, incident).items():
        assert WARNING not in page, name
    assert incident.reference not in _pages(client, incident)["reviews list"]


def test_drills_closed_and_reopened_incidents_owe_no_review(engineer, manager, manager_client, monkeypatch):
    drill = resolved_incident(engineer, is_drill=True)
    reopened = resolved_incident(engineer)
    services.incident_transition(incident=reopened, name="reopen", user=manager)
    minor = resolved_incident(engineer, level=3)
    services.incident_transition(incident=minor, name="close", user=manager)  # a minor incident needs no review
    monkeypatch.setattr(timezone, "now", lambda: drill.resolved_at + REVIEW_TARGET + timedelta(days=1))

    for incident in (drill, reopened, minor):
        incident.refresh_from_db()
        for name, page in _pages(manager_client, incident).items():
            assert WARNING not in page, f"{incident.reference} {name}"
    reviews = _pages(manager_client, drill)["reviews list"]
    assert "No review outstanding." in reviews
