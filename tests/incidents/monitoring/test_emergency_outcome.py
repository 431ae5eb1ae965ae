"""How the two answers of the circuit breaker (the stop request and the status check) decide
what the desk is told, at the edge of each rule: only a 2xx that says "stopped" (or that trading
is halted) counts as accepted; only a 200 status check whose trading_halted is the JSON true
counts as halted; anything else is never taken for a stop."""

import pytest

from incidents.monitoring.agent import AgentAnswer
from incidents.monitoring.emergency import _outcome

NO_ANSWER = AgentAnswer(False, None, None, "timed out after 5 s")
HALTED = AgentAnswer(True, 200, {"trading_halted": True}, "")
NOT_HALTED = AgentAnswer(True, 200, {"trading_halted": False}, "")


def answer(status: int | None, body) -> AgentAnswer:
    return AgentAnswer(True, status, body, "")


@pytest.mark.parametrize(
    ("status", "accepted"),
    [(199, False), (200, True), (201, True), (202, True), (299, True), (300, False), (409, False)],
)
def test_a_stop_request_is_accepted_only_with_a_2xx(status, accepted):
    outcome, _ = _outcome(answer(status, {"status": "stopped"}), NOT_HALTED)
    assert outcome == ("unverified" if accepted else "refused")


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        ({"status": "stopped"}, True),
        ({"trading_halted": True}, True),
        ({"status": "stopping"}, False),
        ({"status": "STOPPED"}, False),
        ({"trading_halted": "true"}, False),  # a string is not the JSON true
        ({"trading_halted": 1}, False),
        ({"trading_halted": False}, False),
        (["stopped"], False),
        ("stopped", False),
        (None, False),
    ],
)
def test_a_stop_request_is_accepted_only_when_it_says_stopped(body, accepted):
    outcome, _ = _outcome(answer(200, body), NOT_HALTED)
    assert outcome == ("unverified" if accepted else "refused")


def test_an_answer_that_did_not_arrive_is_never_accepted_whatever_it_holds():
    # ok=False is a transport failure even if a status and a body were kept.
    outcome, error = _outcome(AgentAnswer(False, 200, {"status": "stopped"}, "connection reset"), NO_ANSWER)
    assert (outcome, error) == ("unreachable", "connection reset")


@pytest.mark.parametrize(
    ("status_check", "halted"),
    [
        (HALTED, True),
        (answer(201, {"trading_halted": True}), False),
        (answer(204, {"trading_halted": True}), False),
        (answer(199, {"trading_halted": True}), False),
        (answer(200, {"trading_halted": "true"}), False),
        (answer(200, {"trading_halted": 1}), False),
        (answer(200, {"status": "stopped"}), False),
        (answer(200, [True]), False),
        (AgentAnswer(False, 200, {"trading_halted": True}, "connection reset"), False),
    ],
)
def test_trading_counts_as_halted_only_on_a_200_that_says_trading_halted_true(status_check, halted):
    outcome, _ = _outcome(answer(200, {"status": "stopped"}), status_check)
    assert outcome == ("stopped" if halted else "unverified")


def test_what_each_outcome_says_went_wrong():
    accepted = answer(200, {"status": "stopped", "stop_id": "ES-1"})
    refused = answer(409, {"error": "already_stopping"})
    assert _outcome(accepted, HALTED) == ("stopped", "")
    assert _outcome(refused, HALTED) == (
        "stopped",
        "the stop request failed (HTTP 409: already_stopping), but trading is halted",
    )
    assert _outcome(accepted, NOT_HALTED) == (
        "unverified",
        "accepted, but the status check says otherwise (HTTP 200)",
    )
    assert _outcome(refused, NOT_HALTED) == ("refused", "HTTP 409: already_stopping")
    assert _outcome(NO_ANSWER, NO_ANSWER) == ("unreachable", "timed out after 5 s")
