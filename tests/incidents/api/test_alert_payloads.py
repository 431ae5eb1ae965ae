"""The alert formats' parsing on its own (no database): the serializers share their declared
fields' settings between requests, so requests parsed at the same time must not see each other's
alerts or errors."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework import serializers

from incidents.api.alert_payloads import parse_alerts


def _alertmanager(fingerprint: str, *, status: str = "firing") -> dict:
    return {
        "version": "4",
        "status": status,
        "receiver": "tmt-portal",
        "alerts": [
            {"status": "firing", "labels": {"alertname": "Ok", "service": "a"}, "fingerprint": "first"},
            {
                "status": status,
                "labels": {"alertname": f"Latency {fingerprint}", "service": "circuit-breaker"},
                "annotations": {"summary": f"p99 above 500 ms ({fingerprint})"},
                "fingerprint": fingerprint,
            },
        ],
    }


def _parse(payload: dict):
    try:
        return parse_alerts(kind="alertmanager", data=payload, system_label="service", severity_label="severity")
    except serializers.ValidationError as exc:
        return exc.detail


def test_payloads_parsed_at_the_same_time_keep_their_own_alerts_and_errors():
    good = [_alertmanager(f"fp-{i}") for i in range(200)]
    bad = [_alertmanager(f"bad-{i}", status="sideways") for i in range(200)]
    payloads = [p for pair in zip(good, bad, strict=True) for p in pair]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(_parse, payloads))
    for i, result in enumerate(results[0::2]):
        assert [a.fingerprint for a in result] == ["first", f"fp-{i}"]
        assert result[1].summary == f"p99 above 500 ms (fp-{i})"
    for result in results[1::2]:
        # Only the second alert is named: the first one, valid, has no errors to report.
        assert list(result["alerts"]) == [1]
        assert str(result["alerts"][1]["status"][0]) == '"sideways" is not a valid choice.'
        assert str(result["status"][0]) == '"sideways" is not a valid choice.'


@pytest.mark.parametrize("text", ["nul \x00 in it", "lone \ud800 surrogate"])
def test_text_postgresql_cannot_store_is_replaced_not_refused(text):
    payload = _alertmanager("fp")
    payload["alerts"][1]["annotations"]["summary"] = text
    (_, alert) = _parse(payload)
    assert alert.summary == text.replace("\x00", "\ufffd").replace("\ud800", "?")
