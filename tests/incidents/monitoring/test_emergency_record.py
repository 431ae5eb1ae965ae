"""What an emergency stop leaves on the record, word for word, against the real simulator: the
request entry (scope, who, the trigger condition, the reason), the result entry (outcome, the
agent's stop ID, the status check), the Sev1 incident it opens when none is linked or the
linked one is closed, and the limits on what is sent."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError

from incidents import services
from incidents.models import Incident, TimelineEntry
from incidents.monitoring import emergency
from incidents.monitoring.models import EmergencyStop, StopReason
from tests.factories import open_incident
from tests.incidents.monitoring.conftest import agent_status


def entries(incident) -> list[TimelineEntry]:
    return list(incident.timeline.filter(kind=TimelineEntry.Kind.EMERGENCY_STOP).order_by("id"))


def test_the_request_and_the_result_are_recorded_word_for_word(breaker, engineer):
    stop = emergency.emergency_stop_trigger(
        user=engineer,
        reason="Spread widening on all venues",
        reason_code=StopReason.RISK_DECISION,
        stop_all_trading=False,
    )

    name = engineer.get_full_name()
    request, result, *_ = entries(stop.incident)
    assert request.action == (
        f"Emergency stop of trading (not all) requested by {name} "
        "(Risk management decision, risk_management_decision). Reason: Spread widening on all venues"
    )
    assert request.owner == engineer and request.occurred_at == stop.requested_at
    assert request.data == {"emergency_stop": stop.pk, "agent_url": stop.agent_url, "stop_all_trading": False}
    assert stop.stop_all_trading is False
    stop_id = agent_status(breaker)["stop_id"]
    assert re.fullmatch(
        rf"Emergency stop result: TRADING STOPPED \(VERIFIED\) \(\d+\.\d s\)\. Agent: HTTP 200, stop ID {stop_id}\. "
        r"Status check: HTTP 200, trading_halted=true\.",
        result.action,
    ), result.action
    assert result.owner == engineer and result.occurred_at == stop.completed_at
    assert result.data["emergency_stop"] == stop.pk and result.data["outcome"] == "stopped"
    assert result.data["status_response"]["body"]["trading_halted"] is True
    assert agent_status(breaker)["reason"] == "risk_management_decision"
    assert agent_status(breaker)["stop_all_trading"] is False


def test_a_stop_of_all_trading_says_so_on_its_request(breaker, engineer):
    stop = emergency.emergency_stop_trigger(user=engineer, reason="Runaway algo on desk 4")

    request = entries(stop.incident)[0]
    assert request.action == (
        f"Emergency stop of all trading requested by {engineer.get_full_name()} "
        "(System emergency, system_emergency). Reason: Runaway algo on desk 4"
    )
    assert stop.stop_all_trading is True and request.data["stop_all_trading"] is True
    assert agent_status(breaker)["stop_all_trading"] is True


def test_a_breaker_address_ending_in_a_slash_still_reaches_the_stop_endpoint(breaker, engineer, settings):
    settings.TMT_CIRCUIT_BREAKER_URL = breaker.endpoints.agent_url("circuit_breaker") + "/"
    stop = emergency.emergency_stop_trigger(user=engineer, reason="trailing slash")
    assert stop.agent_url == settings.TMT_CIRCUIT_BREAKER_URL.removesuffix("/")
    assert stop.outcome == EmergencyStop.Outcome.STOPPED


class _LongRefusal(BaseHTTPRequestHandler):
    """A circuit breaker that refuses the stop with a reason longer than the record keeps."""

    detail = "venue gateway still holds open orders; " * 20

    def _json(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._json(409, {"detail": self.detail})

    def do_GET(self) -> None:  # noqa: N802
        self._json(200, {"trading_halted": False})

    def log_message(self, *args) -> None:
        pass


def test_a_refusal_longer_than_the_record_keeps_is_cut_to_500_characters_and_recorded(settings, engineer):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LongRefusal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.TMT_CIRCUIT_BREAKER_URL = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        stop = emergency.emergency_stop_trigger(user=engineer, reason="refused at length")
    finally:
        server.shutdown()
        server.server_close()

    said = f"HTTP 409: {_LongRefusal.detail}"
    assert len(said) > 500
    assert stop.outcome == EmergencyStop.Outcome.REFUSED and stop.error == said[:500]
    assert entries(stop.incident)[-1].action.endswith(f"trading_halted=false. {said}.")


def test_a_refused_stop_says_why_in_its_result(breaker, engineer):
    breaker.inject_fault("circuit_breaker", "refuse_stop:409")
    stop = emergency.emergency_stop_trigger(user=engineer, reason="refusal on the record")
    result = entries(stop.incident)[-1]
    assert stop.error.startswith("HTTP 409")
    assert re.fullmatch(
        r"Emergency stop result: REFUSED BY THE AGENT \(\d+\.\d s\)\. Agent: HTTP 409[^,]*\. "
        rf"Status check: HTTP 200, trading_halted=false\. {re.escape(stop.error)}\.",
        result.action,
    ), result.action
    assert "stop ID" not in result.action


def test_a_stop_with_no_incident_opens_a_sev1_that_says_who_and_why(breaker, engineer):
    stop = emergency.emergency_stop_trigger(user=engineer, reason="Runaway algo on desk 4")
    incident = stop.incident
    assert incident.title == "Trading emergency stop: Runaway algo on desk 4"
    assert incident.description == (
        f"Emergency stop triggered by {engineer.get_full_name()} from the portal. Reason: Runaway algo on desk 4."
    )
    assert incident.severity.level == 1 and incident.reported_by == engineer and incident.commander == engineer
    assert incident.detection_method == "user_report"
    assert incident.detected_at == stop.requested_at


def test_a_stop_linked_to_a_closed_incident_opens_a_new_one_that_names_it(breaker, engineer):
    old = open_incident(reported_by=engineer, level=2)
    services.incident_transition(incident=old, name="cancel", user=engineer, reason="Duplicate report")
    old.refresh_from_db()

    stop = emergency.emergency_stop_trigger(user=engineer, reason="Second halt", incident=old)

    assert stop.incident != old and Incident.objects.count() == 2
    assert stop.incident.description.endswith(f"Reason: Second halt. Related to {old.reference}, which is cancelled.")
    assert not entries(old)  # nothing written on the closed one


def test_a_long_reason_makes_a_title_of_200_characters_and_is_sent_whole(breaker, engineer):
    reason = "r" * 500  # the circuit breaker's limit
    stop = emergency.emergency_stop_trigger(user=engineer, reason=reason)
    assert stop.incident.title == ("Trading emergency stop: " + reason)[:200]
    assert agent_status(breaker)["details"] == reason


@pytest.mark.parametrize("length", [499, 500])
def test_a_reason_of_up_to_500_characters_is_taken(engineer, length):
    assert emergency.emergency_stop_validate(user=engineer, reason="x" * length) == "x" * length


def test_a_reason_of_501_characters_is_refused_and_nothing_is_sent(breaker, engineer):
    with pytest.raises(ValidationError) as refused:
        emergency.emergency_stop_trigger(user=engineer, reason="x" * 501)
    assert refused.value.message_dict == {"reason": ["At most 500 characters (the circuit breaker's limit)."]}
    assert not EmergencyStop.objects.exists() and not Incident.objects.exists()
    assert agent_status(breaker)["trading_halted"] is False


@pytest.mark.parametrize("reason", ["", "  \n ", None])
def test_a_blank_reason_is_refused_before_anything_is_sent(breaker, engineer, reason):
    with pytest.raises(ValidationError) as refused:
        emergency.emergency_stop_trigger(user=engineer, reason=reason)
    assert refused.value.message_dict == {"reason": ["Give the reason for stopping trading."]}
    assert not EmergencyStop.objects.exists() and agent_status(breaker)["trading_halted"] is False


def test_an_unknown_trigger_condition_is_refused_before_anything_is_sent(breaker, engineer):
    with pytest.raises(ValidationError) as refused:
        emergency.emergency_stop_trigger(user=engineer, reason="test", reason_code="because")
    assert refused.value.message_dict == {"reason_code": ["Choose one of the trigger conditions."]}
    assert not EmergencyStop.objects.exists() and agent_status(breaker)["trading_halted"] is False


def test_the_reason_is_sent_without_surrounding_spaces(breaker, engineer):
    emergency.emergency_stop_trigger(user=engineer, reason="  padded reason \n")
    assert agent_status(breaker)["details"] == "padded reason"


@pytest.mark.parametrize(("full_name", "expected"), [("Ada Lovelace", "{u} (Ada Lovelace)"), ("", "{u}")])
def test_triggered_by_names_the_account_and_the_person(breaker, engineer, full_name, expected):
    engineer.first_name, engineer.last_name = (full_name.split(" ") + [""])[:2] if full_name else ("", "")
    engineer.save()
    emergency.emergency_stop_trigger(user=engineer, reason="who")
    assert agent_status(breaker)["triggered_by"] == expected.format(u=engineer.username)


def test_triggered_by_is_cut_at_200_characters(breaker, engineer):
    engineer.first_name = "A" * 150
    engineer.last_name = "B" * 149
    engineer.save()
    emergency.emergency_stop_trigger(user=engineer, reason="long name")
    sent = agent_status(breaker)["triggered_by"]
    assert len(sent) == 200 and sent.startswith(f"{engineer.username} (AAA")
