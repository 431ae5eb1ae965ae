"""Alerts from monitoring (POST /api/v1/alerts/): open or join automated incidents by fingerprint.

A firing alert opens an automated incident, or joins the open incident its fingerprint already
opened: Alertmanager re-sends every firing alert of a group on each group notification, so a
re-sent alert must never open a second incident. A resolved alert is noted on that incident,
which stays open: a person verifies the recovery and resolves it. Every alert received is kept
as an AlertEvent row, whatever it did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from incidents.api.models import AlertEvent, AlertIntegration
from incidents.api.services.api_tokens import alert_integration_issue_token
from incidents.models import (
    OPEN_STATES,
    DetectionMethod,
    Incident,
    SeverityLevel,
    System,
    TimelineEntry,
)
from incidents.monitoring.models import StopReason
from incidents.monitoring.prompts import is_suspicious_trading, stop_prompt_record
from incidents.services.incident import incident_open, incident_update, timeline_record

logger = logging.getLogger(__name__)

OPENED = "opened"  # a new incident
JOINED = "joined"  # a re-sent or repeated alert, added to the incident its fingerprint opened
RESOLVED_NOTED = "resolved_noted"  # resolved at the source: noted on the open incident
RECORDED = "recorded"  # resolved, and no incident is open for it: only the AlertEvent row
# Two requests that each raise the severity of an incident the other is opening can deadlock
# on the incident row and the day's reference counter; PostgreSQL cancels one, which is retried.
DEADLOCK_ATTEMPTS = 3
_DEADLOCK_SQLSTATE = "40P01"


FIRING = "firing"
RESOLVED = "resolved"


@dataclass(frozen=True)
class ParsedAlert:
    """One alert, whatever format it came in (incidents/api/alert_payloads.py parses them).
    severity and system are raw label values that the integration's maps turn into a severity
    level and a system."""

    fingerprint: str
    status: str
    summary: str
    description: str = ""
    severity: str = ""
    system: str = ""
    source: str = ""
    link: str = ""
    starts_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def firing(self) -> bool:
        return self.status == FIRING


@dataclass(frozen=True)
class OpenIncident:
    """What ingestion needs of an incident: read as three columns, not as a whole Incident, since
    a re-sent alert (most of the traffic) needs no more and the full row costs more to build."""

    pk: int
    reference: str
    severity: int  # level


@dataclass(frozen=True)
class AlertOutcome:
    fingerprint: str
    status: str
    outcome: str
    incident: OpenIncident | None


@dataclass(frozen=True)
class IngestResult:
    outcomes: list[AlertOutcome]

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)


def alerts_ingest(
    *, integration: AlertIntegration, alerts: list[ParsedAlert], now: datetime | None = None
) -> IngestResult:
    """Act on one request's alerts, all or nothing; outcomes are in the alerts' order."""
    # A retry needs a transaction of its own; inside a caller's transaction the caller retries.
    attempts = 1 if connection.in_atomic_block else DEADLOCK_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return _ingest(integration=integration, alerts=alerts, now=now)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != _DEADLOCK_SQLSTATE or attempt == attempts:
                raise
            logger.warning("alert ingestion deadlocked (attempt %d of %d), retrying", attempt, attempts)
    raise AssertionError("unreachable")


def _ingest(*, integration: AlertIntegration, alerts: list[ParsedAlert], now: datetime | None) -> IngestResult:
    with transaction.atomic():
        now = now or timezone.now()
        mapping = _Mapping(integration, alerts)
        outcomes = []
        events = []
        for alert in alerts:
            if alert.firing:
                incident, outcome = _fire(integration=integration, alert=alert, mapping=mapping, now=now)
                if is_suspicious_trading(alert.labels):
                    # A seed trigger condition: prompt a person; the portal never stops trading itself.
                    stop_prompt_record(
                        incident=Incident.objects.get(pk=incident.pk),
                        reason_code=StopReason.SUSPICIOUS_TRADING,
                        why=f"Alert labelled as suspicious trading ({alert.summary[:120]})",
                        owner_team=_team(integration),
                    )
            else:
                incident = _open_incident_for(alert.fingerprint)
                outcome = RECORDED
                if incident is not None:
                    outcome = RESOLVED_NOTED
                    _note(
                        incident,
                        integration=integration,
                        alert=alert,
                        what="Alert resolved at the source",
                        then=" The incident stays open: verify the recovery and resolve it.",
                        now=now,
                    )
            outcomes.append(
                AlertOutcome(fingerprint=alert.fingerprint, status=alert.status, outcome=outcome, incident=incident)
            )
            events.append(
                AlertEvent(
                    integration=integration,
                    fingerprint=alert.fingerprint,
                    status=alert.status,
                    summary=alert.summary[: AlertEvent._meta.get_field("summary").max_length],
                    payload=alert.payload,
                    incident_id=incident.pk if incident is not None else None,
                )
            )
        AlertEvent.objects.bulk_create(events)
        return IngestResult(outcomes=outcomes)


class _Mapping:
    """The integration's label maps. The levels and systems they name are read from the database
    only when an alert opens or raises an incident: a re-sent alert, most of the traffic, needs
    neither (its level is compared as a number with its incident's)."""

    def __init__(self, integration: AlertIntegration, alerts: list[ParsedAlert]) -> None:
        self.integration = integration
        self._wanted_systems = {self._system_key(a.system) for a in alerts if a.firing and a.system}
        self._levels: dict[int, SeverityLevel] | None = None
        self._systems: dict[str, System] | None = None

    def level(self, value: str) -> int:
        """The mapped level number; a bare level ("2") works without a map entry. Not checked
        against the levels that exist: severity() does that."""
        mapped = self.integration.severity_map.get(value, value) if value else None
        try:
            return int(mapped)
        except (TypeError, ValueError):
            return self.integration.default_severity

    def severity(self, value: str) -> SeverityLevel:
        if self._levels is None:
            self._levels = {s.level: s for s in SeverityLevel.objects.all()}
        levels = self._levels
        return levels.get(self.level(value)) or levels.get(self.integration.default_severity) or levels[max(levels)]

    def _system_key(self, value: str) -> str:
        return str(self.integration.system_map.get(value, value))

    def system(self, value: str) -> System | None:
        """The mapped system; a label already naming a system key works without a map entry.
        Anything else names no system: an unknown label must not guess at one."""
        if not value:
            return None
        if self._systems is None:
            wanted = self._wanted_systems
            self._systems = System.objects.in_bulk(wanted, field_name="key") if wanted else {}
        return self._systems.get(self._system_key(value))


def _open_incident_for(fingerprint: str) -> OpenIncident | None:
    # No row lock: adding a timeline entry needs none (its foreign key takes KEY SHARE), and
    # locking here would order this request against escalation firings for nothing.
    # Hand-written SQL: every alert runs this lookup, and building it through the ORM cost more
    # CPU (0.5 ms) than the rest of a re-sent alert's queries together (bench/api.py).
    # `alert_fingerprint <> ''` repeats the partial unique index's predicate, so it is used.
    with connection.cursor() as cursor:
        cursor.execute(_OPEN_INCIDENT_SQL, [fingerprint, *_OPEN_STATE_VALUES])
        row = cursor.fetchone()
    return OpenIncident(*row) if row else None


_OPEN_STATE_VALUES = [str(state) for state in OPEN_STATES]
# IN (...) rather than PostgreSQL's = ANY(array): `make run` serves from SQLite.
_OPEN_INCIDENT_SQL = (
    f"SELECT i.id, i.reference, s.level FROM {Incident._meta.db_table} i "  # noqa: S608 - table names, not input
    f"JOIN {SeverityLevel._meta.db_table} s ON s.id = i.severity_id "
    "WHERE i.alert_fingerprint = %s AND i.alert_fingerprint <> '' "
    f"AND i.state IN ({', '.join(['%s'] * len(_OPEN_STATE_VALUES))}) LIMIT 1"
)


def _fire(
    *, integration: AlertIntegration, alert: ParsedAlert, mapping: _Mapping, now: datetime
) -> tuple[OpenIncident, str]:
    existing = _open_incident_for(alert.fingerprint)
    if existing is None:
        severity = mapping.severity(alert.severity)
        system = mapping.system(alert.system)
        try:
            # A savepoint: if a concurrent request opened an incident for this fingerprint
            # meanwhile, the partial unique constraint refuses ours and only this part (our
            # incident, its reference number, deadlines and pages) rolls back; we join theirs.
            with transaction.atomic():
                incident = incident_open(
                    title=alert.summary[: Incident._meta.get_field("title").max_length],
                    description=_description(integration, alert),
                    severity=severity,
                    reported_by=integration.reporter,
                    detection_method=DetectionMethod.AUTOMATED_ALERT,
                    affected_systems=[system] if system else [],
                    started_at=min(alert.starts_at, now) if alert.starts_at else None,
                    opened_by_team=_team(integration),
                    detected_at=now,
                    alert_fingerprint=alert.fingerprint,
                )
        except IntegrityError:
            existing = _open_incident_for(alert.fingerprint)
            if existing is None:
                raise
        else:
            opened = OpenIncident(pk=incident.pk, reference=incident.reference, severity=severity.level)
            _note(opened, integration=integration, alert=alert, what="Alert firing", now=now)
            return opened, OPENED
    if mapping.level(alert.severity) < existing.severity:
        severity = mapping.severity(alert.severity)
        # Compared again under the row lock: someone may have raised the incident by hand since
        # it was read, and this alert must not then lower it.
        locked = Incident.objects.select_for_update(no_key=True).select_related("severity").get(pk=existing.pk)
        if severity.level < locked.severity.level:
            # The alert now maps to a worse severity (a warning became critical): raise the
            # incident, which re-arms its escalations. Never lowered here: a person decides that.
            incident_update(incident=locked, user=integration.reporter, severity=severity)
            existing = OpenIncident(pk=existing.pk, reference=existing.reference, severity=severity.level)
        else:
            existing = OpenIncident(pk=existing.pk, reference=existing.reference, severity=locked.severity.level)
    _note(existing, integration=integration, alert=alert, what="Alert re-fired", now=now)
    return existing, JOINED


def _note(
    incident: OpenIncident,
    *,
    integration: AlertIntegration,
    alert: ParsedAlert,
    what: str,
    now: datetime,
    then: str = "",
) -> None:
    source = f"{integration.name}, {alert.source}" if alert.source else integration.name
    data: dict = {"fingerprint": alert.fingerprint, "status": alert.status}
    for key, value in [("severity_label", alert.severity), ("system_label", alert.system), ("link", alert.link)]:
        if value:
            data[key] = value
    timeline_record(
        Incident(pk=incident.pk),  # only its key is written
        kind=TimelineEntry.Kind.ALERT,
        action=f"{what} ({source}): {alert.summary.rstrip('.')}.{then}"
        if then
        else f"{what} ({source}): {alert.summary}",
        owner_team=_team(integration),
        at=now,
        data=data,
    )


def _team(integration: AlertIntegration) -> str:
    return integration.name[: TimelineEntry._meta.get_field("owner_team").max_length]


def _description(integration: AlertIntegration, alert: ParsedAlert) -> str:
    lines = [alert.description.strip()] if alert.description.strip() else []
    lines.append(f"Opened by the alert integration “{integration.name}” ({integration.get_kind_display()}).")
    if alert.source:
        lines.append(f"Source: {alert.source}")
    if alert.link:
        lines.append(f"Alert: {alert.link}")
    if alert.labels:
        lines.append("Labels: " + ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items())))
    lines.append(f"Fingerprint: {alert.fingerprint}")
    return "\n".join(lines)


# -- integrations ---------------------------------------------------------------------------


def alert_integration_rotate_token(*, integration: AlertIntegration) -> str:
    """A new token for a leaked or lost one; the old one stops working at once. Returns the raw
    token, for the caller to show once."""
    with transaction.atomic():
        locked = AlertIntegration.objects.select_for_update().get(pk=integration.pk)
        if locked.revoked_at is not None:
            raise ValidationError(f"“{locked.name}” is revoked; create a new integration instead.")
        raw = alert_integration_issue_token(integration=locked)
        integration.prefix, integration.key_hash = locked.prefix, locked.key_hash
        return raw


def alert_integration_revoke(*, integration: AlertIntegration) -> bool:
    """Refuse the integration's token from now on, for good (its alerts stay on record).
    Returns False if it was already revoked."""
    with transaction.atomic():
        now = timezone.now()
        revoked = AlertIntegration.objects.filter(pk=integration.pk, revoked_at=None).update(
            revoked_at=now, active=False
        )
        integration.refresh_from_db(fields=["revoked_at", "active"])
        return revoked == 1
