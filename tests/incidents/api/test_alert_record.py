"""Alert intake in the service, word for word and at each rule's edge: the incident an alert
opens (title, description, start, severity and system from the integration's maps), the
timeline note each alert leaves, a re-sent alert that raises but never lowers, a resolved alert
with and without an open incident, and the integration's token kept or refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from incidents.api.models import AlertEvent, AlertIntegration
from incidents.api.services import alerts as intake
from incidents.api.services.alerts import FIRING, RESOLVED, ParsedAlert
from incidents.models import Incident, SeverityLevel, TimelineEntry
from tests.factories import UserFactory
from tests.races import in_another_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def integration(db) -> AlertIntegration:
    reporter = UserFactory(username="monitoring", first_name="Monitoring", last_name="bot", is_active=False)
    return AlertIntegration.objects.create(
        name="Prometheus",
        kind=AlertIntegration.Kind.ALERTMANAGER,
        reporter=reporter,
        system_map={"cb": "circuit_breaker"},
        severity_map={"critical": 1, "warning": 3, "nonsense": 9},
        default_severity=3,
    )


def alert(fingerprint="fp-1", status=FIRING, summary="Order gateway down", **kw) -> ParsedAlert:
    return ParsedAlert(fingerprint=fingerprint, status=status, summary=summary, **kw)


def ingest(integration, *alerts, now=None):
    return intake.alerts_ingest(integration=integration, alerts=list(alerts), now=now)


def notes(incident_pk) -> list[TimelineEntry]:
    return list(TimelineEntry.objects.filter(incident_id=incident_pk, kind=TimelineEntry.Kind.ALERT).order_by("id"))


def opened(integration, *, now=None, **kw) -> Incident:
    result = ingest(integration, alert(**kw), now=now)
    assert result.outcomes[0].outcome == intake.OPENED
    return Incident.objects.get(pk=result.outcomes[0].incident.pk)


def test_an_opened_incident_says_where_it_came_from(integration):
    now = timezone.now()
    incident = opened(
        integration,
        description="  p99 latency over 2 s  ",
        source="prometheus-eu",
        link="https://grafana.example.test/d/1",
        labels={"team": "ops", "alertname": "GatewayDown"},
        severity="critical",
        system="cb",
    )
    assert incident.title == "Order gateway down"
    assert incident.description == (
        "p99 latency over 2 s\n"
        "Opened by the alert integration “Prometheus” (Prometheus Alertmanager).\n"
        "Source: prometheus-eu\n"
        "Alert: https://grafana.example.test/d/1\n"
        "Labels: alertname=GatewayDown, team=ops\n"
        "Fingerprint: fp-1"
    )
    assert incident.severity.level == 1
    assert list(incident.affected_systems.values_list("key", flat=True)) == ["circuit_breaker"]
    assert incident.detection_method == "automated_alert" and incident.alert_fingerprint == "fp-1"
    assert incident.reported_by == integration.reporter and incident.detected_at >= now
    [note] = notes(incident.pk)
    assert note.action == "Alert firing (Prometheus, prometheus-eu): Order gateway down"
    assert note.owner_team == "Prometheus" and note.owner is None
    assert note.data == {
        "fingerprint": "fp-1",
        "status": "firing",
        "severity_label": "critical",
        "system_label": "cb",
        "link": "https://grafana.example.test/d/1",
    }


def test_a_bare_alert_has_only_what_it_gave(integration):
    incident = opened(integration)
    assert incident.description == (
        "Opened by the alert integration “Prometheus” (Prometheus Alertmanager).\nFingerprint: fp-1"
    )
    assert list(incident.affected_systems.all()) == []
    [note] = notes(incident.pk)
    assert note.action == "Alert firing (Prometheus): Order gateway down"
    assert note.data == {"fingerprint": "fp-1", "status": "firing"}


def test_long_summaries_are_cut_to_what_the_title_and_the_event_hold(integration):
    incident = opened(integration, summary="s" * 400)
    assert incident.title == "s" * 200
    assert AlertEvent.objects.get().summary == "s" * 300


@pytest.mark.parametrize(
    ("starts", "expected"),
    [("1 h ago", "starts"), ("1 s from now", "now"), ("now", "now")],
)
def test_the_incident_started_when_the_alert_did_never_in_the_future(integration, starts, expected):
    now = timezone.now().replace(microsecond=0)
    starts_at = {"1 h ago": now - timedelta(hours=1), "1 s from now": now + timedelta(seconds=1), "now": now}[starts]
    result = ingest(integration, alert(starts_at=starts_at), now=now)
    incident = Incident.objects.get(pk=result.outcomes[0].incident.pk)
    assert incident.started_at == (starts_at if expected == "starts" else now)


@pytest.mark.parametrize(
    ("label", "level"),
    [
        ("critical", 1),  # mapped
        ("2", 2),  # a bare level
        ("", 3),  # none: the integration's default
        ("unheard-of", 3),  # not mapped, not a number: the default
        ("nonsense", 3),  # mapped to a level that does not exist: the default
        ("9", 3),
    ],
)
def test_the_severity_comes_from_the_map_else_a_bare_level_else_the_default(integration, label, level):
    assert opened(integration, severity=label).severity.level == level


def test_an_alert_without_a_severity_label_takes_the_default_even_if_the_map_names_an_empty_label(integration):
    integration.severity_map = {"": 1, "critical": 1}
    assert opened(integration, severity="").severity.level == 3


def test_with_no_usable_default_the_least_severe_level_is_taken(integration):
    integration.default_severity = 9
    integration.save()
    least = max(SeverityLevel.objects.values_list("level", flat=True))
    assert opened(integration, severity="unheard-of").severity.level == least


@pytest.mark.parametrize(("label", "system"), [("cb", "circuit_breaker"), ("risk_management", "risk_management")])
def test_the_system_comes_from_the_map_or_a_label_naming_a_system(integration, label, system):
    assert list(opened(integration, system=label).affected_systems.values_list("key", flat=True)) == [system]


def test_an_unknown_system_label_names_no_system(integration):
    assert not opened(integration, system="mainframe").affected_systems.exists()


@pytest.mark.parametrize(
    ("again", "level_after"),
    [("critical", 1), ("2", 2), ("warning", 3), ("4", 3)],
)
def test_a_re_sent_alert_raises_its_incident_but_never_lowers_it(integration, again, level_after):
    incident = opened(integration, severity="warning")  # level 3

    result = ingest(integration, alert(severity=again))

    assert result.outcomes[0].outcome == intake.JOINED
    assert result.outcomes[0].incident.severity == level_after
    incident.refresh_from_db()
    assert incident.severity.level == level_after
    assert Incident.objects.count() == 1
    assert notes(incident.pk)[-1].action == "Alert re-fired (Prometheus): Order gateway down"


def test_a_re_sent_alert_whose_level_falls_back_to_the_incidents_own_leaves_it_untouched(integration):
    # "0" is a bare level that does not exist: the default (Sev3) is taken, the incident's level.
    incident = opened(integration, severity="warning")
    ingest(integration, alert(severity="0"))
    after = Incident.objects.get(pk=incident.pk)
    assert after.updated_at == incident.updated_at and after.severity.level == 3


def test_a_raise_is_recorded_as_the_integrations_and_answers_with_the_incidents_reference(integration):
    incident = opened(integration, severity="warning")

    result = ingest(integration, alert(severity="critical"))

    assert result.outcomes[0].incident == intake.OpenIncident(pk=incident.pk, reference=incident.reference, severity=1)
    change = incident.timeline.get(kind=TimelineEntry.Kind.UPDATE, action__startswith="Severity changed")
    sev3, sev1 = (SeverityLevel.objects.get(level=level).label for level in (3, 1))
    assert change.action == f"Severity changed from {sev3} to {sev1}"
    assert change.owner == integration.reporter


def test_the_incident_and_each_note_carry_the_time_the_alert_was_received(integration):
    received = timezone.now() - timedelta(minutes=5)
    incident = opened(integration, now=received)
    assert incident.detected_at == received
    assert notes(incident.pk)[0].occurred_at == received

    again = received + timedelta(minutes=1)
    ingest(integration, alert(), now=again)
    assert notes(incident.pk)[1].occurred_at == again

    recovered = again + timedelta(minutes=1)
    ingest(integration, alert(status=RESOLVED), now=recovered)
    assert notes(incident.pk)[2].occurred_at == recovered


def test_a_resolved_note_ends_its_summary_with_one_full_stop_and_keeps_the_rest(integration):
    incident = opened(integration, summary="Quotes stale on desk FX")
    ingest(integration, alert(status=RESOLVED, summary="Quotes stale on desk FX..."))
    assert notes(incident.pk)[-1].action == (
        "Alert resolved at the source (Prometheus): Quotes stale on desk FX. "
        "The incident stays open: verify the recovery and resolve it."
    )


def test_a_resolved_alert_is_noted_and_the_incident_stays_open(integration):
    incident = opened(integration, summary="Gateway down.")

    result = ingest(integration, alert(status=RESOLVED, summary="Gateway down.", source="prom"))

    assert result.outcomes[0].outcome == intake.RESOLVED_NOTED
    assert notes(incident.pk)[-1].action == (
        "Alert resolved at the source (Prometheus, prom): Gateway down. "
        "The incident stays open: verify the recovery and resolve it."
    )
    assert notes(incident.pk)[-1].data["status"] == "resolved"
    incident.refresh_from_db()
    assert incident.is_open
    assert AlertEvent.objects.filter(status="resolved", incident=incident).count() == 1


def test_a_resolved_alert_with_nothing_open_is_only_recorded(integration):
    result = ingest(integration, alert(status=RESOLVED))
    assert result.outcomes[0].outcome == intake.RECORDED and result.outcomes[0].incident is None
    assert result.count(intake.RECORDED) == 1 and result.count(intake.OPENED) == 0
    assert not Incident.objects.exists() and not TimelineEntry.objects.exists()
    event = AlertEvent.objects.get()
    assert (event.fingerprint, event.status, event.incident) == ("fp-1", "resolved", None)


def test_alerts_without_a_fingerprint_never_join_each_other(integration):
    # The lookup refuses the empty fingerprint: two such alerts are two incidents.
    first = ingest(integration, alert(fingerprint=""))
    second = ingest(integration, alert(fingerprint=""))
    assert first.outcomes[0].outcome == second.outcomes[0].outcome == intake.OPENED
    assert Incident.objects.count() == 2


def test_a_request_of_several_alerts_answers_each_in_order(integration):
    result = ingest(integration, alert("a"), alert("b"), alert("a"), alert("c", status=RESOLVED))
    assert [o.outcome for o in result.outcomes] == [intake.OPENED, intake.OPENED, intake.JOINED, intake.RECORDED]
    assert result.outcomes[0].incident.pk == result.outcomes[2].incident.pk != result.outcomes[1].incident.pk
    assert AlertEvent.objects.count() == 4


def stop_prompts(incident) -> list[TimelineEntry]:
    return list(TimelineEntry.objects.filter(incident=incident, kind=TimelineEntry.Kind.EMERGENCY_STOP))


@pytest.mark.parametrize(
    "labels",
    [
        {"category": "suspicious_trading"},
        {"category": " Suspicious_Trading "},
        {"suspicious_trading": "true"},
        {"suspicious_trading": "yes"},
    ],
)
def test_an_alert_labelled_suspicious_trading_prompts_a_stop(integration, labels):
    incident = opened(integration, labels=labels, summary="Wash trades on desk 3")
    [prompt] = stop_prompts(incident)
    assert "Alert labelled as suspicious trading (Wash trades on desk 3)" in prompt.action
    assert prompt.owner_team == "Prometheus"


def test_a_stop_prompt_quotes_the_first_120_characters_of_the_summary(integration):
    summary = "Wash trades on desk 3 " + "w" * 120
    [prompt] = stop_prompts(opened(integration, labels={"suspicious_trading": "true"}, summary=summary))
    assert f"Alert labelled as suspicious trading ({summary[:120]})" in prompt.action


@pytest.mark.parametrize("labels", [{"suspicious_trading": "false"}, {"category": "suspicious"}, {}])
def test_an_alert_not_labelled_suspicious_trading_prompts_nothing(integration, labels):
    assert stop_prompts(opened(integration, labels=labels)) == []


def test_a_revoked_integration_stays_revoked_and_cannot_be_given_a_new_token(integration):
    assert intake.alert_integration_revoke(integration=integration) is True
    assert intake.alert_integration_revoke(integration=integration) is False
    integration.refresh_from_db()
    assert integration.revoked_at is not None and integration.active is False
    with pytest.raises(ValidationError) as refused:
        intake.alert_integration_rotate_token(integration=integration)
    assert refused.value.messages == ["“Prometheus” is revoked; create a new integration instead."]


def test_a_rotated_token_replaces_the_old_one_on_the_callers_object_too(integration):
    raw = intake.alert_integration_rotate_token(integration=integration)
    stored = AlertIntegration.objects.get(pk=integration.pk)
    assert (integration.prefix, integration.key_hash) == (stored.prefix, stored.key_hash)
    assert raw.startswith(stored.prefix)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("postgres")
def test_a_raise_by_hand_between_the_read_and_the_lock_is_neither_lowered_nor_lost(integration, monkeypatch):
    # The alert maps to Sev2 and reads its incident at Sev3; before it takes the row lock someone
    # raises the incident to Sev1 by hand, in another connection. The alert must not lower it.
    incident = opened(integration, severity="warning")
    sev1 = SeverityLevel.objects.get(level=1)
    lookup = intake._open_incident_for

    def read_then_raise_by_hand(fingerprint):
        found = lookup(fingerprint)
        in_another_connection(lambda: Incident.objects.filter(pk=incident.pk).update(severity=sev1))
        return found

    monkeypatch.setattr(intake, "_open_incident_for", read_then_raise_by_hand)

    result = ingest(integration, alert(severity="2"))

    assert result.outcomes[0].outcome == intake.JOINED
    assert result.outcomes[0].incident == intake.OpenIncident(pk=incident.pk, reference=incident.reference, severity=1)
    incident.refresh_from_db()
    assert incident.severity.level == 1
    assert not incident.timeline.filter(kind=TimelineEntry.Kind.UPDATE, action__startswith="Severity changed").exists()
