"""The alert formats POST /api/v1/alerts/ accepts, parsed into one shape (pure: no database).

Which format a request is in is the integration's `kind`, not something guessed from the body:
a Grafana payload sent to an Alertmanager integration is still read as Alertmanager. Each
format is a DRF serializer, so a bad payload gets field-level errors (`{"alerts": [{},
{"fingerprint": ["..."]}]}`) and is refused whole before anything is written.

Alertmanager and Grafana payloads are their tools' native JSON, which grows fields with new
versions, so unknown fields there are ignored. The generic format is ours: an unknown field
there is more likely a typo (`severty`) than a newer sender, so it is refused.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from django.core.validators import ProhibitNullCharactersValidator, RegexValidator
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from incidents.api.models import AlertIntegration
from incidents.api.services.alerts import FIRING, RESOLVED, ParsedAlert
from incidents.validators import reported_problem

STATUSES = [FIRING, RESOLVED]
# Alertmanager batches a group's alerts in one request (its max_alerts is unlimited by
# default); a cap keeps one request a bounded transaction. Large groups split fine upstream.
MAX_ALERTS_PER_REQUEST = 500
MAX_FINGERPRINT_LENGTH = 200  # AlertEvent.fingerprint / Incident.alert_fingerprint
MAX_SUMMARY_LENGTH = 300  # AlertEvent.summary
# Alertmanager and Grafana send "0001-01-01T00:00:00Z" for "not ended yet".
_UNSET_BEFORE = datetime(1971, 1, 1, tzinfo=UTC)

FINGERPRINT_MISSING = (
    "Every alert needs a fingerprint: it is how a re-sent alert joins the incident it opened "
    "(Alertmanager 0.19+ and Grafana 8+ send one)."
)


class _Text(serializers.CharField):
    """A JSON string, and only that: DRF's CharField would take 0 or 1.5 as "0" and "1.5", which
    the schema (type: string) does not allow, so a typed client and the server would disagree."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # parse_alerts has already replaced NUL characters and lone surrogates (_storable), so
        # CharField's own checks for them could never fail here; they cost an ord() per
        # character of every label, about a twentieth of parsing an alert.
        self.validators = [v for v in self.validators if not isinstance(v, _CLEANED_BEFORE)]

    def to_internal_value(self, data) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


_CLEANED_BEFORE = (ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator)


@extend_schema_field(OpenApiTypes.DATETIME)
class _Timestamp(serializers.Field):
    """An RFC 3339 time; the tools' zero time ("0001-01-01T00:00:00Z") reads as unset, and a time
    over a year ahead is refused (a sender's wrong clock, not an alert about next year)."""

    default_error_messages = {"invalid": "Not an RFC 3339 time, e.g. 2026-11-27T09:30:00Z."}

    def to_internal_value(self, data) -> datetime | None:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            value = parse_datetime(data)
        except ValueError:
            value = None
        if value is None or value.tzinfo is None:
            self.fail("invalid")
        try:
            value = value.astimezone(UTC)
        except OverflowError:  # beyond year 1 or 9999 in UTC
            if value.year == 1:  # the zero time with an offset, "0001-01-01T00:00:00+05:00"
                return None
            value = datetime.max.replace(tzinfo=UTC)  # refused below
        if value < _UNSET_BEFORE:
            return None
        if problem := reported_problem(value):
            raise serializers.ValidationError(problem)
        return value

    def to_representation(self, value):
        return value.isoformat() if value else None


_TIME_HELP = (
    "RFC 3339. The zero time (0001-01-01T00:00:00Z) and anything before 1971 read as unset; "
    "a time more than a year ahead is refused (the sender's clock is wrong)."
)


def _fingerprint_field() -> serializers.CharField:
    return _Text(
        max_length=MAX_FINGERPRINT_LENGTH,
        # An identifier, used as sent: trimming would merge " a" with "a", and Python trims
        # characters (\x1c-\x1f) that JSON Schema's pattern dialect does not count as space.
        trim_whitespace=False,
        # Also the schema's pattern (an explicit class: Python's \S and ECMA's \S differ):
        # a fingerprint of spaces is as missing as an empty one.
        validators=[RegexValidator(r"[^ \t\n\r\f\v]", message=FINGERPRINT_MISSING)],
        error_messages={"required": FINGERPRINT_MISSING, "blank": FINGERPRINT_MISSING, "null": FINGERPRINT_MISSING},
    )


def _labels_field(help_text: str) -> serializers.DictField:
    return serializers.DictField(child=_Text(allow_blank=True), required=False, help_text=help_text)


class _PayloadSerializer(serializers.Serializer):
    """DRF deep-copies a serializer's declared fields for every instance, which re-runs each
    field's constructor: for an Alertmanager payload about half the time spent parsing it, on
    the path every alert takes. The fields here keep no state of their own while validating
    (plain text, choice, time and dict fields), so a shallow copy per instance, bound afresh,
    is enough; a nested list's child serializer does keep state (the item it is validating), so
    each instance gets its own child, with fields of its own."""

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = {}
        for name, declared in self._declared_fields.items():
            field = copy.copy(declared)
            if isinstance(declared, serializers.ListSerializer):
                field.child = copy.copy(declared.child)
                field.child.__dict__.pop("fields", None)  # the cached_property: built anew
                field.child.parent = field  # what the child's bind() in ListSerializer did
            fields[name] = field
        return fields


class AlertmanagerAlertSerializer(_PayloadSerializer):
    status = serializers.ChoiceField(choices=STATUSES)
    labels = _labels_field("The alert's labels: the integration's system and severity labels are read from here.")
    annotations = _labels_field("`summary` becomes the incident title, `description` its description.")
    startsAt = _Timestamp(required=False, help_text=_TIME_HELP)  # noqa: N815 - Alertmanager's own field names
    endsAt = _Timestamp(required=False, help_text=_TIME_HELP)  # noqa: N815
    generatorURL = _Text(required=False, allow_blank=True)  # noqa: N815
    fingerprint = _fingerprint_field()


class AlertmanagerPayloadSerializer(_PayloadSerializer):
    """Prometheus Alertmanager's webhook (version 4)."""

    version = _Text(required=False)
    status = serializers.ChoiceField(choices=STATUSES, required=False)
    receiver = _Text(required=False, allow_blank=True)
    groupKey = _Text(required=False, allow_blank=True)  # noqa: N815
    externalURL = _Text(required=False, allow_blank=True)  # noqa: N815
    alerts = AlertmanagerAlertSerializer(
        many=True,
        allow_empty=False,
        max_length=MAX_ALERTS_PER_REQUEST,
        error_messages={"empty": "The payload has no alerts."},
    )


class GrafanaAlertSerializer(AlertmanagerAlertSerializer):
    valueString = _Text(required=False, allow_blank=True)  # noqa: N815
    dashboardURL = _Text(required=False, allow_blank=True)  # noqa: N815
    panelURL = _Text(required=False, allow_blank=True)  # noqa: N815


class GrafanaPayloadSerializer(AlertmanagerPayloadSerializer):
    """Grafana (unified) alerting's webhook contact point."""

    title = _Text(required=False, allow_blank=True)
    message = _Text(required=False, allow_blank=True)
    alerts = GrafanaAlertSerializer(
        many=True,
        allow_empty=False,
        max_length=MAX_ALERTS_PER_REQUEST,
        error_messages={"empty": "The payload has no alerts."},
    )


class GenericAlertSerializer(_PayloadSerializer):
    """Our own format, for scripts: one alert per request."""

    source = _Text(
        max_length=100, required=False, allow_blank=True, help_text="What sent it, e.g. a host or script name."
    )
    fingerprint = _fingerprint_field()
    status = serializers.ChoiceField(choices=STATUSES, default=FIRING)
    # Not trimmed here (the schema cannot say which characters Python trims); a summary of
    # nothing but space is replaced below rather than the alert refused.
    summary = _Text(max_length=MAX_SUMMARY_LENGTH, trim_whitespace=False)
    description = _Text(required=False, allow_blank=True)
    severity = _Text(
        max_length=60,
        required=False,
        allow_blank=True,
        help_text="A value of the integration's severity map, or a severity level (1-4).",
    )
    system = _Text(
        max_length=60,
        required=False,
        allow_blank=True,
        help_text="A value of the integration's system map, or a system key (e.g. circuit_breaker).",
    )

    def to_internal_value(self, data):
        # Reported together with the other fields' errors, so one round trip shows them all.
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        errors = {name: [f"Unknown field (expected: {', '.join(self.fields)})."] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not isinstance(exc.detail, dict):
                raise
            errors = {**exc.detail, **errors}
        if errors:
            raise serializers.ValidationError(errors)
        return value


PAYLOAD_SERIALIZERS: dict[str, type[serializers.Serializer]] = {
    AlertIntegration.Kind.ALERTMANAGER: AlertmanagerPayloadSerializer,
    AlertIntegration.Kind.GRAFANA: GrafanaPayloadSerializer,
    AlertIntegration.Kind.GENERIC: GenericAlertSerializer,
}


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def _from_alert_list(
    data: dict, raw: dict, *, system_label: str, severity_label: str, source: str, fallback_summary: str = ""
) -> list[ParsedAlert]:
    parsed = []
    for alert, raw_alert in zip(data["alerts"], raw["alerts"], strict=True):
        labels = alert.get("labels") or {}
        annotations = alert.get("annotations") or {}
        description = annotations.get("description", "") or alert.get("valueString", "")
        summary = (
            _first_line(annotations.get("summary", ""))
            or labels.get("alertname", "")
            or _first_line(description)
            or fallback_summary
            or f"Alert {alert['fingerprint']}"
        )
        parsed.append(
            ParsedAlert(
                fingerprint=alert["fingerprint"],
                status=alert["status"],
                summary=summary[:MAX_SUMMARY_LENGTH],
                description=description,
                severity=labels.get(severity_label, ""),
                system=labels.get(system_label, ""),
                source=source,
                link=alert.get("generatorURL", "") or alert.get("panelURL", "") or alert.get("dashboardURL", ""),
                starts_at=alert.get("startsAt"),
                labels=labels,
                payload=raw_alert,
            )
        )
    return parsed


def _storable_text(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _storable(data: Any) -> Any:
    """The body with what PostgreSQL cannot store replaced: JSON may spell a NUL character and
    a lone surrogate, which neither jsonb nor UTF-8 text takes, so they become U+FFFD (losing
    an alert over one character of monitoring text would be worse). Numbers need nothing: the
    API's parser refuses one that is not finite (incidents/api/parsers.py)."""
    root = [data]
    pending: list[tuple[Any, Any]] = [(root, 0)]
    while pending:
        container, key = pending.pop()
        value = container[key]
        if isinstance(value, dict):
            value = container[key] = {_storable_text(k): v for k, v in value.items()}
            pending.extend((value, k) for k in value)
        elif isinstance(value, list):
            pending.extend((value, i) for i in range(len(value)))
        elif isinstance(value, str):
            container[key] = _storable_text(value)
    return root[0]


def parse_alerts(*, kind: str, data: Any, system_label: str, severity_label: str) -> list[ParsedAlert]:
    """The alerts in a request body of format `kind`; raises serializers.ValidationError with
    field-level messages if any part of it is bad (then none of it should be acted on)."""
    data = _storable(data)
    serializer = PAYLOAD_SERIALIZERS[kind](data=data)
    serializer.is_valid(raise_exception=True)
    valid = serializer.validated_data
    if kind == AlertIntegration.Kind.GENERIC:
        return [
            ParsedAlert(
                fingerprint=valid["fingerprint"],
                status=valid["status"],
                summary=_first_line(valid["summary"]) or f"Alert {valid['fingerprint']}",
                description=valid.get("description", ""),
                severity=valid.get("severity", ""),
                system=valid.get("system", ""),
                source=valid.get("source", ""),
                payload=data,
            )
        ]
    source = "Grafana" if kind == AlertIntegration.Kind.GRAFANA else "Alertmanager"
    if valid.get("receiver"):
        source = f"{source} ({valid['receiver']})"
    return _from_alert_list(
        valid,
        data,
        system_label=system_label,
        severity_label=severity_label,
        source=source,
        fallback_summary=_first_line(valid.get("title", "")),
    )
