"""The trading emergency stop, against the real circuit-breaker simulator over HTTP."""

from __future__ import annotations

import socket

import httpx
import pytest
from django.urls import reverse

from incidents.models import Incident, TimelineEntry
from incidents.monitoring import emergency
from incidents.monitoring.models import EmergencyStop
from tests.conftest import _user_in
from tests.factories import open_incident
from tests.incidents.monitoring.conftest import agent_status

REASON = "Risk limits breached on EUR/USD; halting all trading"


def post_stop(client, **data):
    payload = {"reason": REASON, "stop_all_trading": "on", "confirm": "on", **data}
    return client.post(reverse("incidents:emergency_stop"), payload)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_emergency_stop_succeeds_verifies_and_opens_a_sev1_incident(breaker, engineer_client, engineer):
    response = post_stop(engineer_client)
    stop = EmergencyStop.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("incidents:emergency_stop_detail", args=[stop.pk])

    assert stop.outcome == EmergencyStop.Outcome.STOPPED
    assert stop.requested_by == engineer
    assert stop.reason == REASON
    assert stop.completed_at is not None and stop.error == ""
    assert stop.agent_response["http_status"] == 200
    assert stop.agent_response["body"]["status"] == "stopped"
    assert stop.status_response["body"]["trading_halted"] is True

    status = agent_status(breaker)
    assert status["trading_halted"] is True
    # The seed's payload: the trigger condition as the reason code, the person's words beside it.
    assert status["reason"] == "system_emergency"
    assert status["details"] == REASON
    assert status["triggered_by"].startswith(engineer.username)
    assert status["stop_all_trading"] is True

    incident = stop.incident
    assert incident.severity.level == 1
    assert incident.commander == engineer
    assert list(incident.affected_systems.values_list("key", flat=True)) == ["circuit_breaker"]
    entries = list(incident.timeline.filter(kind=TimelineEntry.Kind.EMERGENCY_STOP).order_by("id"))
    assert len(entries) == 3
    assert entries[0].owner == engineer and REASON in entries[0].action
    assert "TRADING STOPPED (VERIFIED)" in entries[1].action
    assert status["stop_id"] in entries[1].action
    assert entries[1].data["agent_response"]["body"]["stop_id"] == status["stop_id"]
    assert entries[2].action.startswith("TRADING HALTED (System emergency)")

    page = engineer_client.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert "Trading stopped" in html
    assert incident.reference in html


def test_emergency_stop_on_an_incident_links_to_it(breaker, engineer_client, engineer):
    incident = open_incident(reported_by=engineer, level=2, systems=("circuit_breaker",))
    page = engineer_client.get(reverse("incidents:emergency_stop") + f"?incident={incident.reference}")
    assert page.status_code == 200
    assert incident.reference in page.content.decode()
    post_stop(engineer_client, incident=incident.reference)
    stop = EmergencyStop.objects.get()
    assert stop.incident == incident
    assert Incident.objects.count() == 1, "no new incident when one is linked"
    assert incident.timeline.filter(kind=TimelineEntry.Kind.EMERGENCY_STOP).count() == 3, "request, result, halt"


def test_agent_unreachable_is_shown_and_recorded(breaker, engineer_client, engineer):
    breaker.inject_fault("circuit_breaker", "down")
    response = post_stop(engineer_client)
    stop = EmergencyStop.objects.get()
    assert stop.outcome == EmergencyStop.Outcome.UNREACHABLE
    assert stop.error.startswith("unreachable")
    assert stop.agent_response["http_status"] is None
    html = engineer_client.get(response["Location"]).content.decode()
    assert "Trading NOT confirmed stopped" in html
    assert "Agent unreachable" in html
    assert "emergency-close-positions.sh" in html
    result = stop.incident.timeline.filter(kind=TimelineEntry.Kind.EMERGENCY_STOP).order_by("id").last()
    assert "AGENT UNREACHABLE" in result.action
    assert result.owner == engineer


def test_agent_on_a_closed_port_and_a_timeout_count_as_unreachable(breaker, engineer, settings):
    settings.TMT_CIRCUIT_BREAKER_URL = f"http://127.0.0.1:{free_port()}"
    stop = emergency.emergency_stop_trigger(user=engineer, reason="closed port")
    assert stop.outcome == EmergencyStop.Outcome.UNREACHABLE

    settings.TMT_CIRCUIT_BREAKER_URL = breaker.endpoints.agent_url("circuit_breaker")
    settings.TMT_CIRCUIT_BREAKER_TIMEOUT = 0.3
    breaker.inject_fault("circuit_breaker", "slow:1500")
    stop = emergency.emergency_stop_trigger(user=engineer, reason="hung agent")
    assert stop.outcome == EmergencyStop.Outcome.UNREACHABLE
    assert stop.error == "timed out after 0.3 s"


def test_agent_refusing_the_stop_is_shown_as_refused(breaker, engineer):
    breaker.inject_fault("circuit_breaker", "refuse_stop:409")
    stop = emergency.emergency_stop_trigger(user=engineer, reason="refusal test")
    assert stop.outcome == EmergencyStop.Outcome.REFUSED
    assert stop.error.startswith("HTTP 409")
    assert stop.status_response["body"]["trading_halted"] is False
    assert agent_status(breaker)["trading_halted"] is False


def test_malformed_answer_is_not_taken_for_a_stop(breaker, engineer):
    breaker.inject_fault("circuit_breaker", "malformed")
    stop = emergency.emergency_stop_trigger(user=engineer, reason="malformed test")
    assert stop.outcome == EmergencyStop.Outcome.REFUSED
    assert "malformed response" in stop.error


def test_trading_already_halted_counts_as_stopped_even_if_the_request_fails(breaker, engineer):
    """What matters is whether trading is halted now: the status endpoint decides."""
    url = breaker.endpoints.agent_url("circuit_breaker")
    httpx.post(
        url + "/api/v1/emergency-stop",
        json={"reason": "circuit breaker activation", "triggered_by": "circuit_breaker", "stop_all_trading": True},
        timeout=5,
    )
    breaker.inject_fault("circuit_breaker", "refuse_stop:503")
    stop = emergency.emergency_stop_trigger(user=engineer, reason="belt and braces")
    assert stop.outcome == EmergencyStop.Outcome.STOPPED
    assert stop.error.startswith("the stop request failed (HTTP 503")
    assert stop.error.endswith("but trading is halted")


@pytest.mark.parametrize(
    ("stop", "status", "outcome"),
    [
        # The POST timed out after the agent acted; the status check shows the halt.
        (
            emergency.AgentAnswer(False, None, None, "timed out after 5 s"),
            emergency.AgentAnswer(True, 200, {"trading_halted": True}, ""),
            "stopped",
        ),
        (
            emergency.AgentAnswer(True, 200, {"status": "stopped"}, ""),
            emergency.AgentAnswer(False, None, None, "timed out after 5 s"),
            "unverified",
        ),
        (
            emergency.AgentAnswer(True, 200, {"status": "stopped"}, ""),
            emergency.AgentAnswer(True, 200, {"trading_halted": False}, ""),
            "unverified",
        ),
        (
            emergency.AgentAnswer(True, 500, {"error": "internal_error"}, ""),
            emergency.AgentAnswer(True, 500, {"error": "internal_error"}, ""),
            "refused",
        ),
        (
            emergency.AgentAnswer(False, None, None, "unreachable: Connection refused"),
            emergency.AgentAnswer(False, None, None, "unreachable: Connection refused"),
            "unreachable",
        ),
    ],
)
def test_outcome_from_the_two_answers(stop, status, outcome):
    assert emergency._outcome(stop, status)[0] == outcome


@pytest.mark.parametrize("role", ["System Administrator", "Trainer", "Incident Manager", "CEO"])
def test_users_without_the_trading_halt_permission_get_403(breaker, client, role):
    user = _user_in(role, "nohalt")
    client.force_login(user)
    assert client.get(reverse("incidents:emergency_stop")).status_code == 403
    assert post_stop(client).status_code == 403
    assert not EmergencyStop.objects.exists()
    assert not Incident.objects.exists()
    assert agent_status(breaker)["trading_halted"] is False
    with pytest.raises(emergency.PermissionDenied) as refused:
        emergency.emergency_stop_trigger(user=user, reason="service refuses too")
    assert str(refused.value) == "You are not allowed to trigger the trading emergency stop."


@pytest.mark.parametrize("role", ["On-Call Engineer", "Risk Manager", "CTO", "Head of Risk Management"])
def test_each_trading_halt_role_may_stop(breaker, client, role):
    client.force_login(_user_in(role, "halter"))
    assert post_stop(client).status_code == 302
    assert EmergencyStop.objects.get().outcome == EmergencyStop.Outcome.STOPPED


def test_anonymous_users_are_sent_to_log_in(breaker, client):
    response = post_stop(client)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
    assert agent_status(breaker)["trading_halted"] is False


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"reason": "   "}, "reason", "Give the reason for stopping trading."),
        ({"reason": "x" * 501}, "reason", "Ensure this value has at most 500 characters (it has 501)."),
        ({"confirm": ""}, "confirm", "Tick the box to confirm the emergency stop."),
        (
            {"incident": "TMT-INC-1999-01-01-001"},
            "incident",
            "No incident TMT-INC-1999-01-01-001; clear it to open a new Sev1 incident.",
        ),
    ],
)
def test_bad_input_is_a_field_error_and_sends_nothing(breaker, engineer_client, data, field, message):
    response = post_stop(engineer_client, **data)
    assert response.status_code == 400
    assert message in response.context["form"].errors[field]
    assert not EmergencyStop.objects.exists()
    assert not Incident.objects.exists()
    assert agent_status(breaker)["trading_halted"] is False


def test_incident_page_shows_the_button_only_to_those_allowed(breaker, client, engineer):
    incident = open_incident(reported_by=engineer)
    client.force_login(engineer)
    url = incident.get_absolute_url()
    assert 'data-testid="emergency-stop-button"' in client.get(url).content.decode()
    client.force_login(_user_in("System Administrator", "sysadmin2"))
    html = client.get(url).content.decode()
    assert "emergency-stop-button" not in html


def test_a_drill_incident_cannot_carry_a_real_stop(breaker, engineer_client, engineer):
    drill = open_incident(reported_by=engineer, is_drill=True)
    assert "emergency-stop-button" not in engineer_client.get(drill.get_absolute_url()).content.decode()
    response = post_stop(engineer_client, incident=drill.reference)
    assert response.status_code == 400
    assert response.context["form"].errors["incident"] == [
        f"{drill.reference} is a drill: a real emergency stop is not recorded on it. "
        "Clear it to open a real Sev1 incident."
    ]
    assert not EmergencyStop.objects.exists()
    assert agent_status(breaker)["trading_halted"] is False


def test_reloading_the_result_page_sends_no_second_stop(breaker, engineer_client):
    location = post_stop(engineer_client)["Location"]
    for _ in range(3):
        assert engineer_client.get(location).status_code == 200
    assert EmergencyStop.objects.count() == 1


def test_unknown_result_page_is_404(engineer_client, db):
    assert engineer_client.get(reverse("incidents:emergency_stop_detail", args=[999999])).status_code == 404
