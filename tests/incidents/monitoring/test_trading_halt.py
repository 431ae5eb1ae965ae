"""The trading halt after a verified stop, against the real circuit-breaker simulator over HTTP:
the banner, the re-check, the four-eyes resume, position closures, reason codes and stop prompts."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from incidents.api.models import AlertIntegration
from incidents.api.services.alerts import ParsedAlert, alerts_ingest
from incidents.api.services.api_tokens import alert_integration_issue_token
from incidents.devtools.simulator import SimulatorServer
from incidents.models import Incident, TimelineEntry
from incidents.monitoring import emergency, halt, prompts, tasks
from incidents.monitoring import services as health
from incidents.monitoring.models import (
    EmergencyStop,
    HealthTarget,
    PositionClosure,
    ResumeRequest,
    StopReason,
    TradingHalt,
)
from tests.conftest import _user_in
from tests.factories import UserFactory, open_incident
from tests.incidents.monitoring.conftest import agent_status

POSITIONS = [
    {"instrument": "EUR/USD", "venue": "OANDA", "quantity": 250000},
    {"instrument": "GBP/JPY", "venue": "OANDA", "quantity": 40000},
]


@pytest.fixture
def priya(db):
    user = _user_in("On-Call Engineer", "priya")
    user.first_name, user.last_name = "Priya", "Raman"
    user.save()
    return user


@pytest.fixture
def risk(db):
    user = _user_in("Risk Manager", "rmorgan")
    user.first_name, user.last_name = "Robin", "Morgan"
    user.save()
    return user


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def stop(user, **kwargs) -> EmergencyStop:
    kwargs.setdefault("reason_code", StopReason.CIRCUIT_BREAKER_MALFUNCTION)
    kwargs.setdefault("reason", "Breaker trips on every order; halting until understood")
    return emergency.emergency_stop_trigger(user=user, **kwargs)


def banner(html: str) -> str:
    start = html.find('data-testid="halt-banner"')
    return html[start : html.find("</div></div>", start)] if start >= 0 else ""


# -- the stop, its reason code and the halt -----------------------------------------------------


def test_the_stop_sends_the_reason_code_and_details_and_begins_a_halt(breaker, priya):
    breaker.set_positions("circuit_breaker", POSITIONS)
    result = stop(priya)
    received = agent_status(breaker)
    assert received["reason"] == "circuit_breaker_malfunction", "the seed's code is the reason the agent gets"
    assert received["details"] == "Breaker trips on every order; halting until understood"
    assert result.reason_code == StopReason.CIRCUIT_BREAKER_MALFUNCTION

    trading_halt = TradingHalt.objects.get()
    assert trading_halt.emergency_stop == result and trading_halt.incident == result.incident
    assert trading_halt.active and trading_halt.started_by == priya
    assert trading_halt.reason_code == "circuit_breaker_malfunction"
    assert trading_halt.agent_positions == POSITIONS, "the agent's open positions, read once halted"
    entry = result.incident.timeline.order_by("id").last()
    assert entry.action.startswith("TRADING HALTED (Circuit breaker malfunction)")
    assert "250000 EUR/USD at OANDA" in entry.action

    # A second stop during the halt joins it: still one active halt.
    stop(priya, reason="again", incident=result.incident)
    assert TradingHalt.objects.count() == 1


def test_an_unverified_stop_begins_no_halt(breaker, priya):
    breaker.inject_fault("circuit_breaker", "refuse_stop")
    assert stop(priya).outcome == EmergencyStop.Outcome.REFUSED
    assert not TradingHalt.objects.exists()


def test_an_unknown_reason_code_is_a_field_error_and_nothing_is_sent(breaker, priya):
    with pytest.raises(ValidationError) as refused:
        stop(priya, reason_code="because")
    assert "reason_code" in refused.value.message_dict
    assert not EmergencyStop.objects.exists()
    assert agent_status(breaker)["trading_halted"] is False

    response = client_for(priya).post(
        reverse("incidents:emergency_stop"), {"reason": "x", "reason_code": "because", "confirm": "on"}
    )
    assert response.status_code == 400
    assert "Choose one of the trigger conditions." in response.content.decode()
    assert not EmergencyStop.objects.exists()


# -- the banner -------------------------------------------------------------------------------


def test_the_halt_banner_is_on_every_page_while_halted_and_gone_after(breaker, priya, risk, sysadmin):
    incident = open_incident(reported_by=priya)
    pages = [
        reverse("incidents:dashboard"),
        reverse("incidents:list"),
        reverse("incidents:health"),
        incident.get_absolute_url(),
        reverse("drills:me"),
    ]
    viewer = client_for(sysadmin)
    assert all(banner(viewer.get(url).content.decode()) == "" for url in pages), "no halt, no banner"

    result = stop(priya)
    since = timezone.localtime(result.halt.started_at).strftime("%H:%M")
    expected = f"TRADING HALTED since {since} by Priya Raman: circuit breaker malfunction"
    for url in pages:
        response = viewer.get(url)
        assert response.status_code == 200, url
        assert expected in banner(response.content.decode()), url
    # The public status page is for customers, not a place for the internal banner.
    assert banner(Client().get(reverse("status")).content.decode()) == ""

    request = halt.trading_resume_request(halt=result.halt, user=priya)
    halt.trading_resume_approve(request=request, user=risk)
    assert all(banner(viewer.get(url).content.decode()) == "" for url in pages), "resumed: no banner"


# -- the re-check -------------------------------------------------------------------------------


def test_recheck_while_halted_changes_nothing_but_the_last_check(breaker, priya):
    trading_halt = stop(priya).halt
    incidents = Incident.objects.count()
    assert "halted" in tasks.recheck_trading_halt()
    trading_halt.refresh_from_db()
    assert trading_halt.active and trading_halt.last_checked_at is not None
    assert trading_halt.last_check["body"]["trading_halted"] is True
    assert Incident.objects.count() == incidents


def test_no_halt_means_no_call_to_the_agent(breaker, priya):
    breaker.inject_fault("circuit_breaker", "down")  # a call would fail; none is made
    assert halt.trading_halt_recheck() == "no active halt"


def test_an_unexpected_resume_opens_one_sev1_and_not_twice(breaker, priya):
    trading_halt = stop(priya).halt
    before = set(Incident.objects.values_list("pk", flat=True))
    # Someone resumes at the agent itself, around the portal's procedure.
    httpx.post(breaker.endpoints.agent_url("circuit_breaker") + "/api/v1/resume-trading", json={}, timeout=5)

    summary = halt.trading_halt_recheck()
    assert "LEFT UNEXPECTEDLY" in summary
    alarms = Incident.objects.exclude(pk__in=before)
    alarm = alarms.get()
    assert alarm.severity.level == 1
    assert alarm.title == "Trading resumed without the resume procedure"
    trading_halt.refresh_from_db()
    assert trading_halt.ending == TradingHalt.Ending.UNEXPECTED and trading_halt.alarm_incident == alarm
    assert trading_halt.incident.timeline.filter(action__startswith="ALARM: the circuit breaker reports").count() == 1

    halt.trading_halt_recheck()
    halt.trading_halt_recheck()
    assert alarms.count() == 1, "one alarm, however often the loop looks"
    assert trading_halt.incident.timeline.filter(action__startswith="ALARM").count() == 1


def test_an_unreachable_agent_while_halted_is_not_a_resume(breaker, priya):
    trading_halt = stop(priya).halt
    incidents = Incident.objects.count()
    breaker.inject_fault("circuit_breaker", "down")
    halt.trading_halt_recheck()
    trading_halt.refresh_from_db()
    assert trading_halt.active
    assert trading_halt.last_check["error"].startswith("unreachable")
    assert Incident.objects.count() == incidents


def test_an_approved_resume_in_flight_is_not_an_alarm(breaker, priya, risk):
    trading_halt = stop(priya).halt
    request = halt.trading_resume_request(halt=trading_halt, user=priya)
    # The approval is recorded and the agent resumed, but the outcome is not yet written.
    halt._resume_approve_record(request=request, user=risk)
    httpx.post(breaker.endpoints.agent_url("circuit_breaker") + "/api/v1/resume-trading", json={}, timeout=5)
    incidents = Incident.objects.count()
    assert "resuming" in halt.trading_halt_recheck()
    assert Incident.objects.count() == incidents
    trading_halt.refresh_from_db()
    assert trading_halt.active


@pytest.mark.parametrize("agent_resumed", [True, False])
def test_an_approved_resume_left_unsettled_is_settled_by_the_recheck(breaker, priya, risk, agent_resumed):
    trading_halt = stop(priya).halt
    request = halt._resume_approve_record(request=halt.trading_resume_request(halt=trading_halt, user=priya), user=risk)
    if agent_resumed:
        httpx.post(breaker.endpoints.agent_url("circuit_breaker") + "/api/v1/resume-trading", json={}, timeout=5)
    incidents = Incident.objects.count()
    # Just inside the window: still left to the approver's request.
    halt.trading_halt_recheck(now=request.approved_at + halt.RESUME_STALE - timedelta(seconds=1))
    request.refresh_from_db()
    assert request.state == ResumeRequest.State.RESUMING

    halt.trading_halt_recheck(now=request.approved_at + halt.RESUME_STALE + timedelta(seconds=1))
    request.refresh_from_db()
    trading_halt.refresh_from_db()
    assert Incident.objects.count() == incidents, "a four-eyes resume is never an alarm"
    if agent_resumed:
        assert request.state == ResumeRequest.State.RESUMED
        assert trading_halt.ending == TradingHalt.Ending.RESUMED and trading_halt.resumed_by == risk
    else:
        assert request.state == ResumeRequest.State.FAILED and trading_halt.active
        assert halt.trading_resume_request(halt=trading_halt, user=priya).state == ResumeRequest.State.PENDING


# -- the four-eyes resume -----------------------------------------------------------------------


def test_four_eyes_resume_requested_by_the_engineer_approved_by_a_risk_manager(breaker, priya, risk):
    trading_halt = stop(priya).halt
    engineer_web, risk_web = client_for(priya), client_for(risk)
    page = reverse("incidents:trading_halt", args=[trading_halt.pk])

    response = engineer_web.post(
        reverse("incidents:trading_resume_request", args=[trading_halt.pk]), {"note": "Breaker firmware rolled back"}
    )
    assert response.status_code == 302
    request = ResumeRequest.objects.get()
    assert request.state == ResumeRequest.State.PENDING and request.requested_by == priya

    # The engineer cannot approve (no right); the approval page shows the button to the risk manager only.
    approve = reverse("incidents:trading_resume_approve", args=[request.pk])
    assert engineer_web.post(approve).status_code == 403
    assert "Approve and resume" not in engineer_web.get(page).content.decode()
    assert "Approve and resume" in risk_web.get(page).content.decode()
    assert agent_status(breaker)["trading_halted"] is True

    response = risk_web.post(approve)
    assert response.status_code == 302
    request.refresh_from_db()
    trading_halt.refresh_from_db()
    assert request.state == ResumeRequest.State.RESUMED and request.approved_by == risk
    assert request.status_response["body"]["trading_halted"] is False
    assert agent_status(breaker)["trading_halted"] is False, "verified against the agent"
    assert trading_halt.ending == TradingHalt.Ending.RESUMED and trading_halt.resumed_by == risk
    actions = list(trading_halt.incident.timeline.order_by("id").values_list("action", flat=True))
    assert any(a.startswith("Resume of trading requested by Priya Raman") for a in actions)
    assert any(a.startswith("Resume approved by Robin Morgan (requested by Priya Raman)") for a in actions)
    assert actions[-1].startswith("TRADING RESUMED (verified)")

    # The loop then finds nothing to watch: no alarm for a resume that followed the procedure.
    incidents = Incident.objects.count()
    assert halt.trading_halt_recheck() == "no active halt"
    assert Incident.objects.count() == incidents


def test_the_requester_cannot_be_the_approver(breaker, priya):
    both = _user_in("On-Call Engineer", "both")
    both.groups.add(*_user_in("Risk Manager", "other").groups.all())
    trading_halt = stop(priya).halt
    request = halt.trading_resume_request(halt=trading_halt, user=both)
    response = client_for(both).post(reverse("incidents:trading_resume_approve", args=[request.pk]))
    assert response.status_code == 400
    assert "Four eyes: someone other than the requester must approve the resume." in response.content.decode()
    request.refresh_from_db()
    assert request.state == ResumeRequest.State.PENDING and request.approved_by is None
    assert agent_status(breaker)["trading_halted"] is True, "nothing was sent to the agent"


def test_someone_without_the_risk_role_cannot_approve(breaker, priya, sysadmin, manager):
    trading_halt = stop(priya).halt
    request = halt.trading_resume_request(halt=trading_halt, user=priya)
    for user in (sysadmin, manager, _user_in("On-Call Engineer", "second-engineer")):
        with pytest.raises(PermissionDenied):
            halt.trading_resume_approve(request=request, user=user)
        assert client_for(user).post(reverse("incidents:trading_resume_approve", args=[request.pk])).status_code == 403
    request.refresh_from_db()
    assert request.state == ResumeRequest.State.PENDING
    assert agent_status(breaker)["trading_halted"] is True


def test_only_the_on_call_engineer_requests_and_only_once_at_a_time(breaker, priya, risk):
    trading_halt = stop(priya).halt
    with pytest.raises(PermissionDenied):
        halt.trading_resume_request(halt=trading_halt, user=risk)
    halt.trading_resume_request(halt=trading_halt, user=priya)
    response = client_for(priya).post(reverse("incidents:trading_resume_request", args=[trading_halt.pk]), {})
    assert response.status_code == 400
    assert "A resume is already requested" in response.content.decode()
    assert ResumeRequest.objects.count() == 1


def test_a_resume_the_agent_does_not_confirm_keeps_the_halt(breaker, priya, risk):
    trading_halt = stop(priya).halt
    request = halt.trading_resume_request(halt=trading_halt, user=priya)
    breaker.inject_fault("circuit_breaker", "http500")
    done = halt.trading_resume_approve(request=request, user=risk)
    assert done.state == ResumeRequest.State.FAILED
    assert "HTTP 500" in done.error
    trading_halt.refresh_from_db()
    assert trading_halt.active
    assert trading_halt.incident.timeline.order_by("id").last().action.startswith("Resume NOT confirmed")
    # A failed request does not block the next one.
    breaker.clear_fault("circuit_breaker")
    again = halt.trading_resume_request(halt=trading_halt, user=priya)
    assert halt.trading_resume_approve(request=again, user=risk).state == ResumeRequest.State.RESUMED


# -- position closure ---------------------------------------------------------------------------


def test_position_closure_is_recorded_on_the_halt_and_the_incident(breaker, priya):
    trading_halt = stop(priya).halt
    web = client_for(priya)
    url = reverse("incidents:position_closure", args=[trading_halt.pk])
    response = web.post(url, {"instrument": "EUR/USD", "venue": "OANDA", "quantity": "250000"})
    assert response.status_code == 302
    closure = PositionClosure.objects.get()
    assert (closure.instrument, closure.venue, closure.quantity) == ("EUR/USD", "OANDA", Decimal("250000"))
    assert closure.closed_by == priya and closure.recorded_by == priya and not closure.none_open
    entry = trading_halt.incident.timeline.order_by("id").last()
    assert entry.action.startswith("Position closed by hand: 250000 EUR/USD at OANDA, closed by Priya Raman")

    halt_page = web.get(reverse("incidents:trading_halt", args=[trading_halt.pk])).content.decode()
    assert "EUR/USD" in halt_page and "250000" in halt_page
    incident_page = web.get(trading_halt.incident.get_absolute_url()).content.decode()
    assert "250000 EUR/USD at OANDA (Priya Raman" in incident_page


def test_none_open_is_an_explicit_record(breaker, priya):
    trading_halt = stop(priya).halt
    response = client_for(priya).post(
        reverse("incidents:position_closure", args=[trading_halt.pk]), {"none_open": "on"}
    )
    assert response.status_code == 302
    closure = PositionClosure.objects.get()
    assert closure.none_open and closure.instrument == "" and closure.quantity is None
    assert "Positions: none open" in trading_halt.incident.timeline.order_by("id").last().action
    assert "none open" in client_for(priya).get(trading_halt.incident.get_absolute_url()).content.decode()


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"instrument": "EUR/USD", "venue": "OANDA", "quantity": "-5"}, "quantity", "must be above zero"),
        ({"instrument": "EUR/USD", "venue": "OANDA", "quantity": "0"}, "quantity", "must be above zero"),
        ({"instrument": "EUR/USD", "venue": "OANDA", "quantity": "lots"}, "quantity", "Enter a number."),
        ({"instrument": "EUR/USD", "venue": "OANDA", "quantity": "NaN"}, "quantity", "must be above zero"),
        ({"instrument": "  ", "venue": "OANDA", "quantity": "5"}, "instrument", "Name the instrument"),
        ({"instrument": "EUR/USD", "venue": "", "quantity": "5"}, "venue", "Name the venue"),
        ({"instrument": "EUR/USD", "venue": "OANDA", "quantity": "0.00001"}, "quantity", "4 after the point"),
        (
            {"instrument": "EUR/USD", "venue": "OANDA", "quantity": "1", "closed_at": "2999-01-01 00:00"},
            "closed_at",
            "future",
        ),
    ],
)
def test_bad_position_closures_are_field_errors_and_nothing_is_written(breaker, priya, data, field, words):
    trading_halt = stop(priya).halt
    entries = TimelineEntry.objects.count()
    response = client_for(priya).post(reverse("incidents:position_closure", args=[trading_halt.pk]), data)
    assert response.status_code == 400
    assert words in str(response.context["closure_form"].errors[field])
    assert not PositionClosure.objects.exists()
    assert TimelineEntry.objects.count() == entries


def test_closures_need_the_right(breaker, priya, trainer):
    trading_halt = stop(priya).halt
    url = reverse("incidents:position_closure", args=[trading_halt.pk])
    response = client_for(trainer).post(url, {"instrument": "EUR/USD", "venue": "OANDA", "quantity": "1"})
    assert response.status_code == 403
    assert not PositionClosure.objects.exists()


# -- prompts: the portal never stops by itself -------------------------------------------------


def test_the_circuit_breaker_going_down_prompts_a_stop_once_and_stops_nothing(breaker, priya):
    HealthTarget.objects.exclude(name="Circuit Breaker Agent").update(enabled=False)
    HealthTarget.objects.filter(name="Circuit Breaker Agent").update(
        url=breaker.endpoints.agent_url("circuit_breaker") + "/health",
        interval=timedelta(seconds=1),
        timeout=timedelta(milliseconds=500),
    )
    breaker.inject_fault("circuit_breaker", "down")
    for _ in range(5):
        HealthTarget.objects.update(next_check_at=None)
        health.health_poll_due()
    incident = Incident.objects.get(automated_system__key="circuit_breaker")
    prompts = incident.timeline.filter(data__stop_prompt="circuit_breaker_malfunction")
    assert prompts.count() == 1, "one prompt, not one per failed check"
    assert prompts.get().action.startswith("Circuit breaker unhealthy (Circuit Breaker Agent is down): consider")
    assert not EmergencyStop.objects.exists(), "a prompt, never a stop"

    html = client_for(priya).get(incident.get_absolute_url()).content.decode()
    assert 'data-testid="stop-prompt"' in html
    link = (
        reverse("incidents:emergency_stop")
        + f"?incident={incident.reference}&amp;reason_code=circuit_breaker_malfunction"
    )
    assert link in html
    form = client_for(priya).get(link.replace("&amp;", "&")).content.decode()
    assert '<option value="circuit_breaker_malfunction" selected>' in form


def _suspicious_alert(labels: dict[str, str]) -> ParsedAlert:
    return ParsedAlert(
        fingerprint=hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16],
        status="firing",
        summary="Order flow pattern matches layering",
        severity="2",
        labels=labels,
    )


def test_an_alert_labelled_suspicious_trading_prompts_a_stop(db):
    reporter = UserFactory(username="monitoring", is_active=False)
    integration = AlertIntegration(name="Surveillance", kind=AlertIntegration.Kind.GENERIC, reporter=reporter)
    alert_integration_issue_token(integration=integration)

    result = alerts_ingest(integration=integration, alerts=[_suspicious_alert({"category": "suspicious_trading"})])
    incident = Incident.objects.get(pk=result.outcomes[0].incident.pk)
    assert incident.timeline.filter(data__stop_prompt="suspicious_trading").count() == 1
    alerts_ingest(integration=integration, alerts=[_suspicious_alert({"category": "suspicious_trading"})])
    assert incident.timeline.filter(data__stop_prompt="suspicious_trading").count() == 1, "re-fired: no second"

    other = alerts_ingest(integration=integration, alerts=[_suspicious_alert({"category": "latency"})])
    assert (
        not Incident.objects.get(pk=other.outcomes[0].incident.pk)
        .timeline.filter(data__stop_prompt__isnull=False)
        .exists()
    )
    assert not EmergencyStop.objects.exists()


def test_no_prompt_while_trading_is_already_halted(breaker, priya):
    stop(priya)
    incident = open_incident(reported_by=priya)
    assert not prompts.stop_prompt_record(
        incident=incident, reason_code=StopReason.SUSPICIOUS_TRADING, why="Alert", owner_team="t"
    )
    assert not incident.timeline.filter(data__stop_prompt__isnull=False).exists()


# -- the loop on a real worker, and two loops at once --------------------------------------------


def _unexpected_resume(breaker: SimulatorServer, user) -> TradingHalt:
    trading_halt = stop(user).halt
    httpx.post(breaker.endpoints.agent_url("circuit_breaker") + "/api/v1/resume-trading", json={}, timeout=5)
    return trading_halt


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_recheck_beat_task_raises_the_alarm_on_a_real_worker(breaker, priya, celery_worker, postgres, settings):
    from celery.signals import task_postrun

    from tests.celery_fixtures import wait_for

    schedule = settings.CELERY_BEAT_SCHEDULE["recheck-trading-halt"]
    assert schedule["task"] == tasks.recheck_trading_halt.name
    assert schedule["schedule"] == settings.TMT_HALT_RECHECK_SECONDS
    summaries: list[str] = []

    def done(sender=None, retval=None, **kwargs) -> None:
        if getattr(sender, "name", None) == tasks.recheck_trading_halt.name:
            summaries.append(retval)

    task_postrun.connect(done, weak=False)
    try:
        trading_halt = _unexpected_resume(breaker, priya)
        for _ in range(4):
            tasks.recheck_trading_halt.delay()
        wait_for(lambda: len(summaries) == 4, what="four looks on the worker")
    finally:
        task_postrun.disconnect(done)
    assert "LEFT UNEXPECTEDLY" in summaries[0]
    assert summaries[1:] == ["no active halt"] * 3
    trading_halt.refresh_from_db()
    assert trading_halt.ending == TradingHalt.Ending.UNEXPECTED
    assert Incident.objects.filter(title="Trading resumed without the resume procedure").count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_rechecks_at_once_open_one_sev1(breaker, priya, postgres):
    import threading

    from django.db import connections

    _unexpected_resume(breaker, priya)
    barrier = threading.Barrier(4)

    def look() -> None:
        try:
            barrier.wait()
            halt.trading_halt_recheck()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=look) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert Incident.objects.filter(title="Trading resumed without the resume procedure").count() == 1
