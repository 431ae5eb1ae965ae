"""Health polling, heartbeats and the portal's own infrastructure checks.

One sweep (the beat task, every second): claim the due targets in one short transaction (their
next_check_at moves on by their interval, so an overlapping sweep skips them), check them all at
once in one event loop (incidents/monitoring/poller.py; no transaction is open meanwhile), then apply the
results. Targets whose state does not change are written in one batch (counters, last check, one
bulk insert of samples); each state change gets its own transaction, which locks the target,
re-evaluates it and opens or updates the automated incident, so a failure there rolls back only
that target (its transition is retried on the next check).

States change only after N checks in a row (the target's failures_before_down), in both
directions: N failures → down, N slow answers → degraded, and back to healthy only after N
healthy (from down) or N fast (from degraded) answers, so a flapping agent pages nobody.

At most one open automated incident per system: the partial unique constraint
"one_open_automated_incident_per_system" decides races between concurrent pollers; the loser's
savepoint rolls back (its incident number too) and it adds to the winner's incident instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import celery
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, IntegrityError, connection, connections, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q, Value
from django.utils import timezone

from incidents.escalation.models import Deadline, EscalationEvent
from incidents.escalation.services import deadlines_fire_due
from incidents.escalation.snapshot import snapshot_of
from incidents.models import (
    OPEN_STATES,
    DetectionMethod,
    Incident,
    SeverityLevel,
    System,
    TimelineEntry,
)
from incidents.monitoring import poller
from incidents.monitoring.agent import CIRCUIT_BREAKER_SYSTEM
from incidents.monitoring.models import DutyHeartbeat, HealthSample, HealthTarget, StopReason, WorkerHeartbeat
from incidents.monitoring.prompts import stop_prompt_record
from incidents.notifications.models import Notification
from incidents.notifications.services import notification_send, notifications_claim_due, page_user
from incidents.oncall.selectors import on_call_at
from incidents.roles import ON_CALL_ENGINEER
from incidents.services.incident import incident_open, incident_update, timeline_record

log = logging.getLogger(__name__)

TEAM = "Health monitor"
MONITOR_USERNAME = "health-monitor"
RECOVERY_RULE = "health:recovered"
ATTACHED_RULE = "health:new_failure"
# The seed's Severity 2 examples ("Single agent failure", "Execution latency >500ms"): used when
# a system has no outage severity or a target no degraded severity configured.
FALLBACK_SEVERITY_LEVEL = 2

State = HealthTarget.State


# -- the state machine (pure) ------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    state: str
    consecutive_failures: int
    consecutive_ok: int
    consecutive_slow: int
    consecutive_fast: int
    slow: bool


def health_evaluate(
    *,
    state: str,
    failures: int,
    ok: int,
    slow: int,
    fast: int,
    healthy: bool,
    latency_ms: float | None,
    threshold_ms: float,
    n: int,
) -> Evaluation:
    """The target's next state and streak counters after one check."""
    n = max(1, n)
    if not healthy:
        failures += 1
        new_state = State.DOWN if failures >= n else state
        return Evaluation(new_state, failures, 0, 0, 0, False)
    is_slow = latency_ms is not None and latency_ms > threshold_ms
    failures, ok = 0, ok + 1
    slow, fast = (slow + 1, 0) if is_slow else (0, fast + 1)
    new_state = state
    if state == State.DOWN:
        if ok >= n:
            new_state = State.DEGRADED if slow >= n else State.HEALTHY
    elif state == State.DEGRADED:
        if fast >= n:
            new_state = State.HEALTHY
    elif slow >= n:
        new_state = State.DEGRADED
    elif state == State.UNKNOWN and not is_slow:
        # The first good answer of a new target: nothing was wrong, nothing to recover from.
        new_state = State.HEALTHY
    return Evaluation(new_state, failures, ok, slow, fast, is_slow)


def _evaluate_target(target: HealthTarget, result: poller.ProbeResult) -> Evaluation:
    return health_evaluate(
        state=target.state,
        failures=target.consecutive_failures,
        ok=target.consecutive_ok,
        slow=target.consecutive_slow,
        fast=target.consecutive_fast,
        healthy=result.healthy,
        latency_ms=result.latency_ms,
        threshold_ms=target.latency_threshold_ms,
        n=target.failures_before_down,
    )


# -- one sweep -------------------------------------------------------------------------------


@dataclass
class StateChange:
    target_id: int
    target_name: str
    from_state: str
    to_state: str
    incident_reference: str = ""


@dataclass
class PollSummary:
    polled: int = 0
    healthy: int = 0
    failed: int = 0
    slow: int = 0
    changes: list[StateChange] = field(default_factory=list)
    claim_s: float = 0.0
    check_s: float = 0.0  # from the first request to the last write (the writes overlap it)
    apply_s: float = 0.0  # time spent writing, summed over the batches

    def __str__(self) -> str:
        text = f"polled {self.polled}: {self.healthy} healthy ({self.slow} slow), {self.failed} failed"
        if self.changes:
            text += "; " + ", ".join(f"{c.target_name} {c.from_state}→{c.to_state}" for c in self.changes)
        return text


def _due_order():
    # Suspects first: a target that failed or answered slowly last time is the one likely to hold
    # a slot for its whole timeout, so it starts at once instead of last (see poller.py).
    return [
        F("consecutive_failures").desc(),
        F("last_latency_ms").desc(nulls_first=True),
        "pk",
    ]


# What a check needs of its target, besides its timeout.
PROBE_FIELDS = [
    "kind",
    "url",
    "headers",
    "expected_status",
    "json_path",
    "json_expected",
    "body_pattern",
    "host",
    "port",
    "database",
    "username",
    "password_env",
]


def health_probe(target: HealthTarget) -> poller.Probe:
    """The poller's plain value for one target (the poller knows nothing of Django)."""
    return poller.Probe(
        target_id=target.pk,
        url=target.url,
        timeout_s=target.timeout.total_seconds(),
        kind=target.kind,
        headers=tuple(sorted((target.headers or {}).items())) if isinstance(target.headers, dict) else (),
        expected_status=target.expected_status,
        json_path=target.json_path,
        json_expected=target.json_expected,
        body_pattern=target.body_pattern,
        host=target.host,
        port=target.port,
        database=target.database,
        username=target.username,
        password_env=target.password_env,
    )


def health_targets_claim(*, now: datetime | None = None, limit: int | None = None) -> list[HealthTarget]:
    """Claim the enabled targets that are due: their next check moves on by their interval."""
    now = now or timezone.now()
    limit = limit or settings.TMT_HEALTH_MAX_TARGETS_PER_SWEEP
    with transaction.atomic():
        due = (
            HealthTarget.objects.filter(enabled=True)
            .filter(Q(next_check_at__isnull=True) | Q(next_check_at__lte=now))
            .order_by(*_due_order())
            .only("pk", "name", "timeout", "latency_threshold_ms", *PROBE_FIELDS)
        )
        if connection.features.has_select_for_update_skip_locked:
            # Another sweep holding some rows: take the others instead of waiting for it.
            due = due.select_for_update(skip_locked=True)
        targets = list(due[:limit])
        if targets:
            HealthTarget.objects.filter(pk__in=[t.pk for t in targets]).update(
                next_check_at=ExpressionWrapper(Value(now) + F("interval"), output_field=DateTimeField())
            )
    return targets


def health_poll_due(
    *,
    now: datetime | None = None,
    concurrency: int | None = None,
    backend: poller.Backend = "aiohttp",
) -> PollSummary:
    """One sweep: claim, check concurrently, apply. The beat task's whole body.

    Results are written in batches as they arrive (poller.poll_stream), each batch while the
    slower checks are still out, so the hung targets' timeouts are not followed by writing
    everything else.
    """
    summary = PollSummary()
    started = time.perf_counter()
    targets = health_targets_claim(now=now)
    summary.claim_s = time.perf_counter() - started
    if not targets:
        return summary
    threshold_ms = {t.pk: t.latency_threshold_ms for t in targets}
    probes = [health_probe(t) for t in targets]
    started = time.perf_counter()
    for batch in poller.poll_stream(
        probes, concurrency=concurrency or settings.TMT_HEALTH_POLL_CONCURRENCY, backend=backend
    ):
        applying = time.perf_counter()
        summary.changes += health_results_apply(batch)
        summary.apply_s += time.perf_counter() - applying
        summary.polled += len(batch)
        summary.failed += sum(1 for r in batch if not r.healthy)
        summary.slow += sum(1 for r in batch if r.healthy and (r.latency_ms or 0) > threshold_ms[r.target_id])
    summary.check_s = time.perf_counter() - started
    summary.healthy = summary.polled - summary.failed
    return summary


_BATCH_FIELDS = [
    "consecutive_failures",
    "consecutive_ok",
    "consecutive_slow",
    "consecutive_fast",
    "last_checked_at",
    "last_latency_ms",
    "last_error",
]
_QUIET_FIELDS = [*_BATCH_FIELDS, "state", "state_changed_at"]
# What the batch reads of each target, as plain tuples (model instances cost ~5x as much).
_READ_FIELDS = [
    "pk",
    "state",
    "consecutive_failures",
    "consecutive_ok",
    "consecutive_slow",
    "consecutive_fast",
    "last_checked_at",
    "latency_threshold_ms",
    "failures_before_down",
    "state_changed_at",
]


def _apply_counters(target: HealthTarget, evaluation: Evaluation, result: poller.ProbeResult) -> None:
    target.consecutive_failures = evaluation.consecutive_failures
    target.consecutive_ok = evaluation.consecutive_ok
    target.consecutive_slow = evaluation.consecutive_slow
    target.consecutive_fast = evaluation.consecutive_fast
    target.last_checked_at = result.checked_at
    target.last_latency_ms = result.latency_ms
    target.last_error = result.error[:300]


def _status_code(result: poller.ProbeResult) -> int | None:
    return result.status_code if result.status_code and 0 < result.status_code < 1000 else None


def _sample(target_id: int, result: poller.ProbeResult) -> HealthSample:
    return HealthSample(
        target_id=target_id,
        checked_at=result.checked_at,
        ok=result.healthy,
        latency_ms=result.latency_ms,
        status_code=_status_code(result),
        error=result.error[:300],
    )


def _is_stale(target: HealthTarget, result: poller.ProbeResult) -> bool:
    # An older sweep finishing after a newer one must not rewind the counters.
    return target.last_checked_at is not None and result.checked_at <= target.last_checked_at


def _is_quiet(from_state: str, to_state: str) -> bool:
    # A new target's first good answer changes nothing anyone needs to hear about, so it is
    # written with the batch (a thousand new targets must not mean a thousand transactions).
    return from_state == State.UNKNOWN and to_state == State.HEALTHY


def health_results_apply(results: Sequence[poller.ProbeResult]) -> list[StateChange]:
    """Write results; returns the state changes (each of those in its own transaction)."""
    by_id = {r.target_id: r for r in results}
    deferred: list[int] = []
    with transaction.atomic():
        # Locked in primary-key order so two appliers can never deadlock on each other's rows.
        rows = (
            HealthTarget.objects.filter(pk__in=list(by_id))
            .order_by("pk")
            .select_for_update()
            .values_list(*_READ_FIELDS)
        )
        updates: list[tuple] = []
        for pk, state, failures, ok, slow, fast, last_checked_at, threshold, n, changed_at in rows:
            result = by_id[pk]
            if last_checked_at is not None and result.checked_at <= last_checked_at:
                continue  # stale: an older sweep finishing after a newer one
            evaluation = health_evaluate(
                state=state,
                failures=failures,
                ok=ok,
                slow=slow,
                fast=fast,
                healthy=result.healthy,
                latency_ms=result.latency_ms,
                threshold_ms=threshold,
                n=n,
            )
            if evaluation.state != state:
                if not _is_quiet(state, evaluation.state):
                    deferred.append(pk)
                    continue
                state, changed_at = evaluation.state, result.checked_at
            updates.append(
                (
                    pk,
                    evaluation.consecutive_failures,
                    evaluation.consecutive_ok,
                    evaluation.consecutive_slow,
                    evaluation.consecutive_fast,
                    result.checked_at,
                    result.latency_ms,
                    result.error[:300],
                    state,
                    changed_at,
                )
            )
        if updates:
            _bulk_write(updates, [_sample_row(row[0], by_id[row[0]]) for row in updates])
    changes = []
    for pk in deferred:
        try:
            change = _apply_state_change(pk, by_id[pk])
        except Exception:
            # One broken transition (say, a policy row deleted) must not stop the others; the
            # target keeps its old state and counters, so the next check tries again.
            log.exception("applying the state change of health target %s failed", pk)
            continue
        if change is not None:
            changes.append(change)
    return changes


def _unnest(model, names: list[str]) -> tuple[list, str]:
    """The fields and a "unnest(%s::type[], ...)" clause: one array parameter per column."""
    fields = [model._meta.pk if name == "pk" else model._meta.get_field(name) for name in names]
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
    return fields, f"unnest({arrays})"


def _bulk_write(rows: list[tuple], samples: list[tuple]) -> None:
    """Write the targets' (pk, *_QUIET_FIELDS) rows and insert the samples, in two statements.

    On PostgreSQL each column goes as one array and unnest() turns them back into rows: Django's
    bulk_update builds a CASE WHEN per field with a branch per row (4-7 s for a thousand targets
    in the benchmark's first run) and even a plain VALUES list with ten thousand placeholders
    spends a quarter of a second in the driver parsing them; this takes a few milliseconds.
    Elsewhere (SQLite, the local default) the ORM's bulk operations in batches.
    """
    if connection.vendor != "postgresql":
        objs = [HealthTarget(pk=row[0], **dict(zip(_QUIET_FIELDS, row[1:], strict=True))) for row in rows]
        HealthTarget.objects.bulk_update(objs, _QUIET_FIELDS, batch_size=200)
        HealthSample.objects.bulk_create(
            [HealthSample(**dict(zip(_SAMPLE_FIELDS, sample, strict=True))) for sample in samples], batch_size=500
        )
        return
    quote = connection.ops.quote_name
    fields, source = _unnest(HealthTarget, ["pk", *_QUIET_FIELDS])
    columns = [quote(f.column) for f in fields]
    assignments = ", ".join(f"{c} = v.{c}" for c in columns[1:])
    sample_fields, sample_source = _unnest(HealthSample, _SAMPLE_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(HealthTarget._meta.db_table)} AS t SET {assignments} "  # noqa: S608 - names from the model
            f"FROM {source} AS v({', '.join(columns)}) WHERE t.{columns[0]} = v.{columns[0]}",
            [list(column) for column in zip(*rows, strict=True)],
        )
        cursor.execute(
            f"INSERT INTO {quote(HealthSample._meta.db_table)} "  # noqa: S608 - names from the model
            f"({', '.join(quote(f.column) for f in sample_fields)}) SELECT * FROM {sample_source}",
            [list(column) for column in zip(*samples, strict=True)],
        )


_SAMPLE_FIELDS = ["target_id", "checked_at", "ok", "latency_ms", "status_code", "error"]


def _sample_row(target_id: int, result: poller.ProbeResult) -> tuple:
    return (target_id, result.checked_at, result.healthy, result.latency_ms, _status_code(result), result.error[:300])


@transaction.atomic
def _apply_state_change(target_id: int, result: poller.ProbeResult) -> StateChange | None:
    target = (
        HealthTarget.objects.select_for_update(of=("self",))
        .select_related("system__outage_severity", "degraded_severity")
        .filter(pk=target_id)
        .first()
    )
    if target is None or _is_stale(target, result):
        return None
    evaluation = _evaluate_target(target, result)
    from_state = target.state
    started_at = _streak_started_at(target, result)
    _apply_counters(target, evaluation, result)
    target.state = evaluation.state
    if evaluation.state != from_state:
        target.state_changed_at = result.checked_at
    target.save(update_fields=[*_BATCH_FIELDS, "state", "state_changed_at"])
    HealthSample.objects.bulk_create([_sample(target.pk, result)])
    if evaluation.state == from_state:
        return None
    incident = _on_transition(target, from_state, result, started_at=started_at)
    return StateChange(
        target_id=target.pk,
        target_name=target.name,
        from_state=from_state,
        to_state=evaluation.state,
        incident_reference=incident.reference if incident else "",
    )


def _streak_started_at(target: HealthTarget, result: poller.ProbeResult) -> datetime:
    """When the run of checks that causes this change began (the incident's start time)."""
    previous = list(
        target.samples.order_by("-checked_at").values_list("checked_at", flat=True)[
            : max(0, target.failures_before_down - 1)
        ]
    )
    return min([result.checked_at, *previous])


# -- what a state change does ------------------------------------------------------------------


def _severity(level: int) -> SeverityLevel:
    return SeverityLevel.objects.get(level=level)


def _outage_severity(system: System) -> SeverityLevel:
    return system.outage_severity or _severity(FALLBACK_SEVERITY_LEVEL)


def _degraded_severity(target: HealthTarget) -> SeverityLevel:
    degraded = target.degraded_severity or _severity(FALLBACK_SEVERITY_LEVEL)
    outage = target.system.outage_severity
    # Slow is never worse than down: a dashboard that is slow stays at its outage level.
    if outage is not None and outage.level > degraded.level:
        return outage
    return degraded


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _on_transition(
    target: HealthTarget, from_state: str, result: poller.ProbeResult, *, started_at: datetime
) -> Incident | None:
    n = target.failures_before_down
    data = {
        "target": target.pk,
        "target_name": target.name,
        "url": target.url,
        "from": from_state,
        "state": target.state,
        "latency_ms": result.latency_ms,
        "status_code": result.status_code,
        "error": result.error,
    }
    system = target.system
    if target.state == State.DOWN:
        incident = _open_or_attach(
            system=system,
            severity=_outage_severity(system),
            title=f"{system.name} down: {target.name} failing health checks",
            description=(
                f"Opened by the health monitor: {target.url} failed {n} checks in a row "
                f"(last: {result.error or 'no answer'})."
            ),
            action=f"Health check: {target.name} is DOWN after {n} failed checks in a row (last: {result.error}).",
            data=data,
            started_at=started_at,
        )
        if system.key == CIRCUIT_BREAKER_SYSTEM:
            # A seed trigger condition: prompt a person; the portal never stops trading itself.
            stop_prompt_record(
                incident=incident,
                reason_code=StopReason.CIRCUIT_BREAKER_MALFUNCTION,
                why=f"Circuit breaker unhealthy ({target.name} is down)",
                owner_team=TEAM,
            )
        return incident
    if target.state == State.DEGRADED:
        if from_state == State.DOWN:
            action = (
                f"Health check: {target.name} answers again, but slowly: {n} answers in a row "
                f"above {target.latency_threshold_ms} ms (last {_ms(result.latency_ms)})."
            )
        else:
            action = (
                f"Health check: {target.name} is DEGRADED: {n} answers in a row slower than "
                f"{target.latency_threshold_ms} ms (last {_ms(result.latency_ms)})."
            )
        return _open_or_attach(
            system=system,
            severity=_degraded_severity(target),
            title=f"{system.name} degraded: {target.name} slower than {target.latency_threshold_ms} ms",
            description=f"Opened by the health monitor: {target.url} answered slower than "
            f"{target.latency_threshold_ms} ms {n} times in a row.",
            action=action,
            data=data,
            started_at=started_at,
            # Down → degraded is a partial recovery, not a new failure: no page.
            page_on_attach=from_state != State.DOWN,
        )
    if target.state == State.HEALTHY and from_state in (State.DOWN, State.DEGRADED):
        what = "healthy" if from_state == State.DOWN else "fast"
        return _record_recovery(
            system=system,
            action=(
                f"Health check: {target.name} has recovered ({n} {what} answers in a row, last "
                f"{_ms(result.latency_ms)}). The incident stays open: verify and resolve it."
            ),
            data=data,
        )
    return None


def health_monitor_user():
    """The account automated incidents are reported by (inactive: nobody can log in as it)."""
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=MONITOR_USERNAME,
        defaults={"first_name": "Health", "last_name": "monitor", "is_active": False},
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _open_automated(system: System) -> Incident | None:
    return (
        Incident.objects.select_for_update(no_key=True, of=("self",))
        .select_related("severity", "commander")
        .filter(automated_system=system, state__in=OPEN_STATES)
        .first()
    )


def _open_or_attach(
    *,
    system: System,
    severity: SeverityLevel,
    title: str,
    description: str,
    action: str,
    data: dict,
    started_at: datetime | None = None,
    page_on_attach: bool = True,
) -> Incident:
    """Open the system's automated incident, or add to the one already open (one per system)."""
    existing = _open_automated(system)
    if existing is None:
        try:
            # A savepoint: if another poller opened one meanwhile, the unique constraint refuses
            # ours and only this part (our incident, its number and deadlines) rolls back.
            with transaction.atomic():
                incident = incident_open(
                    title=title[:200],
                    description=description,
                    severity=severity,
                    reported_by=health_monitor_user(),
                    detection_method=DetectionMethod.HEALTH_CHECK,
                    affected_systems=[system],
                    started_at=started_at,
                    opened_by_team=TEAM,
                    automated_system=system,
                )
        except IntegrityError:
            existing = _open_automated(system)
            if existing is None:
                raise
        else:
            timeline_record(incident, kind=TimelineEntry.Kind.HEALTH, action=action, owner_team=TEAM, data=data)
            return incident
    if severity.level < existing.severity.level:
        existing = incident_update(incident=existing, user=health_monitor_user(), severity=severity)
    timeline_record(existing, kind=TimelineEntry.Kind.HEALTH, action=action, owner_team=TEAM, data=data)
    # The incident's own pages went out when it opened; this new failure needs its own, or an
    # acknowledged incident would take a second outage without anyone hearing of it.
    if page_on_attach:
        _prompt_commander(existing, rule=ATTACHED_RULE, summary=action, now=timezone.now(), urgent=True)
    return existing


def _record_recovery(*, system: System, action: str, data: dict) -> Incident | None:
    """A timeline entry and a prompt to the commander; the incident is not resolved by this."""
    incident = _open_automated(system)
    if incident is None:
        return None
    now = timezone.now()
    timeline_record(incident, kind=TimelineEntry.Kind.HEALTH, action=action, owner_team=TEAM, data=data, at=now)
    _prompt_commander(incident, rule=RECOVERY_RULE, summary=action, now=now)
    return incident


def _prompt_commander(incident: Incident, *, rule: str, summary: str, now: datetime, urgent: bool = False) -> None:
    """Page the commander (else whoever is on call): an email for a recovery, a page by the
    incident's severity (SMS and phone for Sev1/2) for a new failure."""

    user = incident.commander or on_call_at(ON_CALL_ENGINEER, now)
    # The incident row is locked (FOR NO KEY UPDATE above), so the count cannot race.
    step = EscalationEvent.objects.filter(incident=incident, rule=rule).count() + 1
    label = "incident commander" if incident.commander_id else "on-call engineer (no commander)"
    prefix = "New failure on an open incident" if urgent else "Recovery: please verify and resolve"
    event = EscalationEvent.objects.create(
        incident=incident,
        rule=rule,
        step=min(step, 32767),
        fired_at=now,
        target_label=label,
        target_user=user,
        summary=f"{prefix}. {summary}"[:300],
    )
    if user is not None:
        # reminder=True: an email (and the webhooks), not an SMS or phone page.
        page_user(
            event=event,
            user=user,
            now=now,
            email_follow_up=snapshot_of(incident).email_follow_up,
            reminder=not urgent,
        )


# -- admin actions ---------------------------------------------------------------------------


def health_targets_check_now(*, targets: Iterable[HealthTarget]) -> int:
    """Make targets due at once (the admin's "check now")."""
    return HealthTarget.objects.filter(pk__in=[t.pk for t in targets]).update(next_check_at=None)


# -- retention -------------------------------------------------------------------------------


def health_samples_prune(*, now: datetime | None = None, batch: int = 10_000) -> int:
    """Delete samples older than the retention window, in batches (short locks)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.TMT_HEALTH_SAMPLE_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(HealthSample.objects.filter(checked_at__lt=cutoff).values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        # Nothing refers to a sample, so this is one plain DELETE (no cascade collection).
        deleted += HealthSample.objects.filter(pk__in=ids).delete()[0]
        if len(ids) < batch:
            return deleted


# -- heartbeats and the portal's own infrastructure ----------------------------------------------


def heartbeat_record(*, name: str, kind: Literal["worker", "beat"], now: datetime | None = None) -> None:
    """Upsert one heartbeat row in one statement (INSERT ... ON CONFLICT DO UPDATE)."""
    WorkerHeartbeat.objects.bulk_create(
        [WorkerHeartbeat(name=name[:200], kind=kind, seen_at=now or timezone.now())],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["kind", "seen_at"],
    )


@dataclass(frozen=True)
class Heartbeat:
    name: str
    kind: str
    seen_at: datetime
    age_s: float
    alive: bool


@dataclass(frozen=True)
class HeartbeatStatus:
    heartbeats: list[Heartbeat]
    stale_after_s: float

    @property
    def workers(self) -> list[Heartbeat]:
        return [h for h in self.heartbeats if h.kind == "worker"]

    @property
    def live_workers(self) -> int:
        return sum(1 for h in self.workers if h.alive)

    @property
    def beat(self) -> Heartbeat | None:
        beats = [h for h in self.heartbeats if h.kind == "beat"]
        return min(beats, key=lambda h: h.age_s) if beats else None

    @property
    def beat_alive(self) -> bool:
        return self.beat is not None and self.beat.alive


def heartbeat_status(*, now: datetime | None = None) -> HeartbeatStatus:
    now = now or timezone.now()
    stale = settings.TMT_HEARTBEAT_STALE_SECONDS
    rows = []
    for hb in WorkerHeartbeat.objects.order_by("kind", "name"):
        age = max(0.0, (now - hb.seen_at).total_seconds())
        rows.append(Heartbeat(name=hb.name, kind=hb.kind, seen_at=hb.seen_at, age_s=age, alive=age <= stale))
    return HeartbeatStatus(heartbeats=rows, stale_after_s=stale)


@dataclass(frozen=True)
class InfraCheck:
    key: str
    label: str
    ok: bool
    detail: str
    latency_ms: float | None = None


def database_check() -> InfraCheck:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return InfraCheck("database", "Portal database", False, f"unreachable: {exc}"[:300])
    latency = (time.perf_counter() - started) * 1000
    return InfraCheck("database", "Portal database", True, f"{connection.vendor} answers", round(latency, 1))


def broker_check(*, timeout: float = 2.0) -> InfraCheck:
    app = celery.current_app  # the project's app (tmt_ir.celery), set as current on import
    started = time.perf_counter()
    try:
        with app.connection_for_write(connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)
            if conn.transport.driver_type == "redis":
                # Connecting is not enough: a Redis that accepts but does not answer is no broker.
                conn.default_channel.client.ping()
            transport = conn.transport.driver_type
    except Exception as exc:  # noqa: BLE001 - any failure to reach the broker is the answer
        return InfraCheck(
            "broker", "Portal message broker (Celery)", False, f"unreachable: {type(exc).__name__}: {exc}"[:300]
        )
    latency = (time.perf_counter() - started) * 1000
    return InfraCheck("broker", "Portal message broker (Celery)", True, f"{transport} answers", round(latency, 1))


def _system(key: str) -> System | None:
    return System.objects.select_related("outage_severity").filter(key=key).first()


def _last_check_state(incident: Incident, check: str) -> str:
    entry = (
        incident.timeline.filter(kind=TimelineEntry.Kind.HEALTH, data__check=check)
        .order_by("-occurred_at", "-id")
        .values_list("data", flat=True)
        .first()
    )
    return (entry or {}).get("state", "")


@transaction.atomic
def infrastructure_alert(*, check: str, system_key: str, failing: bool, what: str, detail: str) -> str:
    """Open (or add to) the system's automated incident while a check fails; note the recovery.

    The incident's timeline is the state: the last entry for this check says down or healthy,
    so a check failing for an hour adds one entry, not 360.
    """
    system = _system(system_key)
    if system is None:
        return ""
    incident = _open_automated(system)
    last = _last_check_state(incident, check) if incident else ""
    data = {"check": check, "state": "down" if failing else "healthy", "detail": detail[:300]}
    if failing:
        if last == "down":
            return ""
        incident = _open_or_attach(
            system=system,
            severity=_outage_severity(system),
            title=f"{system.name}: {what}",
            description=f"Opened by the portal's own monitoring: {what}. {detail}",
            action=f"Infrastructure check: {what}. {detail}",
            data=data,
        )
        return f"{check}: alert on {incident.reference}"
    if incident is None or last != "down":
        return ""
    action = f"Infrastructure check: {check} has recovered. {detail} The incident stays open: verify and resolve it."
    timeline_record(incident, kind=TimelineEntry.Kind.HEALTH, action=action, owner_team=TEAM, data=data)
    _prompt_commander(incident, rule=RECOVERY_RULE, summary=action, now=timezone.now())
    return f"{check}: recovered on {incident.reference}"


def infrastructure_alerts_evaluate(
    *,
    checker: Literal["worker", "beat", "dispatcher"],
    process_started_at: datetime,
    now: datetime | None = None,
    judges_beat: bool = True,
) -> list[str]:
    """What each long-running process checks about the others every heartbeat.

    Every checker checks each duty (escalation firing, delivery, health polling, report
    rendering), and pages by itself while firing or delivery is silent. A worker also checks
    that beat's heartbeats still arrive (if it consumes the queue they arrive on) and that the
    broker answers. Nobody is judged before the checker has been up for one stale window.
    """
    now = now or timezone.now()
    stale = settings.TMT_HEARTBEAT_STALE_SECONDS
    past_grace = (now - process_started_at).total_seconds() > stale
    status = heartbeat_status(now=now)
    outcomes = duties_evaluate(process_started_at=process_started_at, now=now)
    if checker == "worker":
        beat = status.beat
        # Only after this worker has been up for a whole stale window: beat's heartbeats are
        # recorded by workers, so after a time with no worker the last one is old though beat
        # is fine (seen live: a false "beat is silent" at every worker start after an outage).
        if judges_beat and past_grace:
            detail = (
                f"Last beat heartbeat {beat.age_s:.0f} s ago ({beat.name})." if beat else "No beat heartbeat recorded."
            )
            outcomes.append(
                infrastructure_alert(
                    check="beat",
                    system_key="monitoring",
                    failing=not status.beat_alive,
                    what="Celery beat is silent: health checks and reminders are not scheduled",
                    detail=detail,
                )
            )
        broker = broker_check()
        outcomes.append(
            infrastructure_alert(
                check="broker",
                # The portal's own broker, not the trading systems' Message Broker: its outage
                # is the portal's monitoring failing, and is filed under Monitoring.
                system_key="monitoring",
                failing=not broker.ok,
                what="the portal's message broker (Celery) does not answer",
                detail=broker.detail,
            )
        )
    return [o for o in outcomes if o]


# -- duties: each thing that must keep happening, and who last did it ---------------------------

# A process silent this long is forgotten (its row deleted): it is long dead, and each restart
# of a process writes a row of its own.
DUTY_HEARTBEATS_KEPT = timedelta(hours=1)
_DUTY_CONSEQUENCE = {
    DutyHeartbeat.Duty.ESCALATION: "no escalation deadline is firing",
    DutyHeartbeat.Duty.DELIVERY: "no page, call or email is going out",
    DutyHeartbeat.Duty.HEALTH_POLLING: "the trading agents' health is not being checked",
    DutyHeartbeat.Duty.REPORT_RENDERING: "incident reports are not being rendered",
}


def duty_record(*, duty: str, process: str, now: datetime | None = None) -> None:
    """Upsert one duty heartbeat in one statement (INSERT ... ON CONFLICT DO UPDATE)."""
    DutyHeartbeat.objects.bulk_create(
        [DutyHeartbeat(duty=duty, process=process[:200], seen_at=now or timezone.now())],
        update_conflicts=True,
        unique_fields=["duty", "process"],
        update_fields=["seen_at"],
    )


@dataclass(frozen=True)
class DutyProcess:
    process: str
    seen_at: datetime
    age_s: float
    alive: bool


@dataclass(frozen=True)
class DutyStatus:
    duty: str
    label: str
    consequence: str
    processes: list[DutyProcess]
    overdue: int = 0

    @property
    def alive(self) -> bool:
        return any(p.alive for p in self.processes) and not self.overdue

    @property
    def detail(self) -> str:
        done = f"Last done {self.age_s:.0f} s ago." if self.age_s is not None else "Never done yet."
        if self.overdue:
            done += f" {self.overdue} overdue by more than {settings.TMT_DUTY_STALE_SECONDS:.0f} s."
        return done

    @property
    def last_seen_at(self) -> datetime | None:
        return max((p.seen_at for p in self.processes), default=None)

    @property
    def age_s(self) -> float | None:
        return min((p.age_s for p in self.processes), default=None)


def duty_status(*, now: datetime | None = None) -> list[DutyStatus]:
    now = now or timezone.now()
    stale = settings.TMT_DUTY_STALE_SECONDS
    seen: dict[str, list[DutyProcess]] = {}
    for row in DutyHeartbeat.objects.filter(seen_at__gte=now - DUTY_HEARTBEATS_KEPT):
        age = max(0.0, (now - row.seen_at).total_seconds())
        seen.setdefault(row.duty, []).append(
            DutyProcess(process=row.process, seen_at=row.seen_at, age_s=age, alive=age <= stale)
        )
    overdue = _paging_backlog(now - timedelta(seconds=stale))
    return [
        DutyStatus(
            duty=duty.value,
            label=duty.label,
            consequence=_DUTY_CONSEQUENCE[duty],
            processes=sorted(seen.get(duty.value, []), key=lambda p: p.age_s),
            overdue=overdue.get(duty.value, 0),
        )
        for duty in DutyHeartbeat.Duty
    ]


def _paging_backlog(cutoff: datetime) -> dict[str, int]:
    """Deadlines and pages due before `cutoff` and still waiting: a loop can write its
    heartbeat while its work is stuck (every sending thread hung, a row held by a lost
    connection), so the heartbeat alone is not enough to call a paging duty alive."""

    return {
        DutyHeartbeat.Duty.ESCALATION.value: Deadline.objects.filter(
            fired_at=None, cancelled_at=None, due_at__lt=cutoff
        ).count(),
        DutyHeartbeat.Duty.DELIVERY.value: Notification.objects.filter(
            state=Notification.State.PENDING, next_attempt_at__lt=cutoff
        ).count(),
    }


def duties_evaluate(*, process_started_at: datetime, now: datetime | None = None) -> list[str]:
    """Open an infrastructure incident for each silent duty, note each recovery, and page from
    this process while no dispatcher fires or delivers (so that very incident reaches someone).

    Not before the checker has been up for a whole stale window: a duty's last heartbeat is old
    after a restart of everything, though its process is starting too.
    """
    now = now or timezone.now()
    stale = settings.TMT_DUTY_STALE_SECONDS
    if (now - process_started_at).total_seconds() <= stale:
        return []
    # Rows of processes long gone (each restart is a new pid) would otherwise pile up.
    DutyHeartbeat.objects.filter(seen_at__lt=now - DUTY_HEARTBEATS_KEPT).delete()
    outcomes = []
    statuses = {status.duty: status for status in duty_status(now=now)}
    for status in statuses.values():
        outcomes.append(
            infrastructure_alert(
                check=f"duty:{status.duty}",
                system_key="monitoring",
                failing=not status.alive,
                what=f"{status.label} has stopped: {status.consequence}",
                detail=status.detail,
            )
        )
    outcomes.append(
        _page_without_dispatcher(
            fire=not statuses[DutyHeartbeat.Duty.ESCALATION].alive,
            deliver=not statuses[DutyHeartbeat.Duty.DELIVERY].alive,
        )
    )
    return [o for o in outcomes if o]


# The fallback sends for at most this long per check: well inside the takeover time, so no
# row it claimed is taken over (and sent again) while it still waits here.
FALLBACK_SEND_BUDGET = timedelta(seconds=8)


def _page_without_dispatcher(*, fire: bool, deliver: bool) -> str:
    """The last path for pages: fire due deadlines, or deliver due pages one at a time, from
    this process, for whichever of the two no dispatcher is doing. Claims make it safe beside
    a dispatcher that comes back meanwhile."""

    if not (fire or deliver):
        return ""
    fired = deadlines_fire_due() if fire else 0
    sent = 0
    until = timezone.now() + FALLBACK_SEND_BUDGET
    while deliver and timezone.now() < until:
        claimed = notifications_claim_due(limit=1)
        if not claimed:
            break
        notification_send(notification=claimed[0])
        sent += 1
    return f"no dispatcher: fired {fired} deadline(s), tried {sent} notification(s) here"


class HeartbeatThread(threading.Thread):
    """Runs in every `celery worker` and in `celery beat` (started from incidents/monitoring/tasks.py)."""

    def __init__(self, *, role: Literal["worker", "beat", "dispatcher"], name: str, judges_beat: bool = True) -> None:
        super().__init__(name=f"tmt-heartbeat-{role}", daemon=True)
        self.role = role
        self.judges_beat = judges_beat
        self.process_name = name
        self.started_at = timezone.now()
        self.stop_event = threading.Event()

    def tick(self) -> None:
        try:
            now = timezone.now()
            if self.role == "worker":
                heartbeat_record(name=self.process_name, kind="worker", now=now)
            for outcome in infrastructure_alerts_evaluate(
                checker=self.role, process_started_at=self.started_at, now=now, judges_beat=self.judges_beat
            ):
                log.warning("heartbeat check: %s", outcome)
        except Exception:
            log.exception("heartbeat tick failed (%s %s)", self.role, self.process_name)
        finally:
            # This thread's own connection: do not keep it open (or broken) between ticks.
            connections.close_all()

    def run(self) -> None:
        self.tick()
        while not self.stop_event.wait(settings.TMT_HEARTBEAT_SECONDS):
            self.tick()


def heartbeat_thread_start(
    *, role: Literal["worker", "beat", "dispatcher"], name: str, judges_beat: bool = True
) -> HeartbeatThread:
    thread = HeartbeatThread(role=role, name=name, judges_beat=judges_beat)
    thread.start()
    return thread
