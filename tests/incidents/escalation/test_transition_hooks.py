"""What the lifecycle's transitions do to the escalation engine: resolving a security incident
owes the regulator a notice by the end of the next business day (a drill or another category
owes none; a cancelled false alarm is in test_cancel_reasons.py), and a reopened incident's
clocks run again."""

import pytest
from django.utils import timezone

from incidents import business_days, services
from incidents.escalation.models import Deadline, RegulatoryObligation
from tests.factories import open_incident, resolve

pytestmark = pytest.mark.django_db


def resolve_now(incident, user):
    # The time given, as the lifecycle passes it on to the engine: the notice's clock is exact.
    return resolve(incident, user, at=timezone.now())


def pending(incident) -> set[str]:
    return set(
        Deadline.objects.filter(incident=incident, fired_at=None, cancelled_at=None).values_list("rule", flat=True)
    )


def test_resolving_a_security_incident_owes_the_regulator_a_notice_from_the_resolution(team):
    incident = open_incident(reported_by=team["oncall1"], level=2, category="security")
    incident = resolve_now(incident, team["oncall1"])

    obligation = RegulatoryObligation.objects.get(incident=incident)
    assert obligation.category.key == "resolved_security_incident"
    assert obligation.raised_at == incident.resolved_at
    assert obligation.due_at == business_days.end_of_next_business_day(incident.resolved_at)
    assert f"regulatory:{obligation.pk}" in pending(incident)  # its pages still run after the resolution


@pytest.mark.parametrize(
    ("category", "is_drill"),
    [("operational", False), ("data", False), ("security", True)],
    ids=["operational", "data", "security-drill"],
)
def test_no_notice_for_another_category_or_a_drill(team, category, is_drill):
    incident = open_incident(reported_by=team["oncall1"], level=2, category=category, is_drill=is_drill)
    resolve_now(incident, team["oncall1"])
    assert not RegulatoryObligation.objects.filter(incident=incident).exists()


def test_a_reopened_incident_has_its_clocks_armed_again(team):
    incident = resolve_now(open_incident(reported_by=team["oncall1"], level=1), team["oncall1"])
    assert not pending(incident) - {rule for rule in pending(incident) if rule.startswith("review")}

    services.incident_transition(incident=incident, name="reopen", user=team["im"], reason="Came back")
    incident.refresh_from_db()

    rules = pending(incident)
    assert any(rule.startswith("status:") for rule in rules)  # the status-update cadence runs again
    assert "role:ceo-sev1-2h" in rules and "outage_4h" in rules
    assert "ack" not in rules  # acknowledged before: nobody is paged to acknowledge again
