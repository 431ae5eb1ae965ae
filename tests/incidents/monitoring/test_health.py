"""Health polling against the real agent simulator over HTTP: states, incidents, heartbeats, page."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents.devtools.simulator import FleetConfig, SimulatorServer, agent_ports_from_base
from incidents.escalation.models import EscalationEvent
from incidents.models import OPEN_STATES, DetectionMethod, Incident, System, TimelineEntry
from incidents.monitoring import poller
from incidents.monitoring import services as health
from incidents.monitoring.admin import HealthTargetForm
from incidents.monitoring.models import DutyHeartbeat, HealthSample, HealthTarget, WorkerHeartbeat
from incidents.notifications.models import Notification
from tests.celery_fixtures import wait_for
from tests.factories import UserFactory, open_incident, severity
from tests.health_targets import point_trading_database_at_portal

AGENT_TARGETS = {
    "circuit_breaker": "Circuit Breaker Agent",
    "market_analysis": "Market Analysis Agent",
    "risk_management": "Risk Management Agent",
    "execution_engine": "Execution Engine",
}
# The seeded targets: the agents, the execution engine and the trading database.
SEEDED_TARGETS = len(AGENT_TARGETS) + 1


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    server = SimulatorServer(agent_ports=agent_ports_from_base(0), control_port=None)
    server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture
def agents(simulator: SimulatorServer, db) -> Iterator[SimulatorServer]:
    """The seeded targets, pointed at the simulator, checked every second with a 0.5 s timeout."""
    simulator.reset()
    for agent, name in AGENT_TARGETS.items():
        HealthTarget.objects.filter(name=name).update(
            url=simulator.endpoints.agent_url(agent) + "/health",
            interval=timedelta(seconds=1),
            timeout=timedelta(milliseconds=500),
        )
    point_trading_database_at_portal(interval=timedelta(seconds=1), timeout=timedelta(milliseconds=900))
    yield simulator
    simulator.reset()


def target(agent: str) -> HealthTarget:
    return HealthTarget.objects.select_related("system").get(name=AGENT_TARGETS[agent])


def sweep(times: int = 1) -> health.PollSummary:
    """What beat does every second, with every target due (no waiting for the interval)."""
    summary = health.PollSummary()
    for _ in range(times):
        HealthTarget.objects.update(next_check_at=None)
        summary = health.health_poll_due()
    return summary


def automated(system_key: str):
    return Incident.objects.filter(automated_system__key=system_key)


# -- the state machine, against the real simulator ----------------------------------------------


def test_down_after_n_failures_opens_exactly_one_incident(agents):
    sweep()
    assert target("circuit_breaker").state == HealthTarget.State.HEALTHY

    agents.inject_fault("circuit_breaker", "down")
    sweep(2)
    cb = target("circuit_breaker")
    assert cb.state == HealthTarget.State.HEALTHY, "two failures are not enough (failures_before_down=3)"
    assert cb.consecutive_failures == 2
    assert not automated("circuit_breaker").exists()

    summary = sweep()
    cb = target("circuit_breaker")
    assert cb.state == HealthTarget.State.DOWN
    assert "unreachable" in cb.last_error
    assert [(c.target_name, c.to_state) for c in summary.changes] == [("Circuit Breaker Agent", "down")]
    incident = automated("circuit_breaker").get()
    assert incident.severity.level == 1, "a down circuit breaker is Sev1 (its outage severity)"
    assert incident.detection_method == DetectionMethod.HEALTH_CHECK
    assert incident.state in OPEN_STATES
    assert list(incident.affected_systems.values_list("key", flat=True)) == ["circuit_breaker"]
    assert incident.reported_by.username == health.MONITOR_USERNAME
    assert not incident.reported_by.is_active
    # The start time is the first failed check of the run, not the third.
    first_failure = HealthSample.objects.filter(target=cb, ok=False).order_by("checked_at").first()
    assert incident.started_at == first_failure.checked_at

    sweep(4)  # still down: no second incident, no repeated entries
    assert automated("circuit_breaker").count() == 1
    assert incident.timeline.filter(kind=TimelineEntry.Kind.HEALTH).count() == 1
    assert Incident.objects.count() == 1, "the other agents stay healthy"


def test_flapping_agent_opens_none(agents):
    sweep()
    agents.inject_fault("market_analysis", "flapping")
    sweep(12)
    ma = target("market_analysis")
    assert ma.state == HealthTarget.State.HEALTHY
    outcomes = list(HealthSample.objects.filter(target=ma).order_by("checked_at").values_list("ok", flat=True))
    assert outcomes[1:] == [False, True] * 6, "the simulator alternated failing and healthy"
    assert not Incident.objects.exists()
    assert not TimelineEntry.objects.exists()


def test_recovery_adds_an_entry_and_prompts_the_commander_without_resolving(agents, engineer):
    sweep()
    agents.inject_fault("risk_management", "down")
    sweep(3)
    incident = automated("risk_management").get()
    incident.commander = engineer
    incident.save(update_fields=["commander"])

    agents.clear_fault("risk_management")
    sweep(2)
    assert target("risk_management").state == HealthTarget.State.DOWN, "recovery needs N good answers too"
    sweep()
    rm = target("risk_management")
    assert rm.state == HealthTarget.State.HEALTHY

    incident.refresh_from_db()
    assert incident.is_open, "recovery does not resolve the incident by itself"
    entries = list(incident.timeline.filter(kind=TimelineEntry.Kind.HEALTH).order_by("occurred_at", "id"))
    assert [e.data["state"] for e in entries] == ["down", "healthy"]
    assert "has recovered" in entries[-1].action
    assert "verify and resolve" in entries[-1].action
    prompt = EscalationEvent.objects.get(incident=incident, rule=health.RECOVERY_RULE)
    assert prompt.target_user == engineer
    emails = Notification.objects.filter(event=prompt, channel=Notification.Channel.EMAIL)
    assert list(emails.values_list("address", flat=True)) == [engineer.email]


def slow_enough_to_answer(agent: str) -> None:
    # Slow answers (600 ms) must still come in before the timeout to count as slow, not failed.
    HealthTarget.objects.filter(name=AGENT_TARGETS[agent]).update(timeout=timedelta(milliseconds=900))


def test_latency_above_threshold_degrades_to_sev2_then_down_raises_the_same_incident(agents):
    slow_enough_to_answer("risk_management")
    sweep()
    agents.inject_fault("risk_management", "slow:620")
    sweep(2)
    assert target("risk_management").state == HealthTarget.State.HEALTHY
    sweep()
    rm = target("risk_management")
    assert rm.state == HealthTarget.State.DEGRADED
    incident = automated("risk_management").get()
    assert incident.severity.level == 2, "the seed's 'Execution latency >500ms' example"
    assert "slower than 500 ms" in incident.title

    agents.inject_fault("risk_management", "down")
    sweep(3)
    assert target("risk_management").state == HealthTarget.State.DOWN
    incident.refresh_from_db()
    assert automated("risk_management").count() == 1
    assert incident.severity.level == 1, "down raises it to the system's outage severity"
    assert incident.timeline.filter(kind=TimelineEntry.Kind.UPDATE, action__contains="Severity changed").exists()


def test_slow_answers_on_a_degraded_target_need_n_fast_answers_to_recover(agents):
    slow_enough_to_answer("market_analysis")
    agents.inject_fault("market_analysis", "slow:560")
    sweep(3)
    assert target("market_analysis").state == HealthTarget.State.DEGRADED
    agents.clear_fault("market_analysis")
    sweep(2)
    assert target("market_analysis").state == HealthTarget.State.DEGRADED
    sweep()
    assert target("market_analysis").state == HealthTarget.State.HEALTHY


def test_two_targets_of_one_system_share_its_one_open_incident(agents):
    cb = target("circuit_breaker")
    HealthTarget.objects.create(
        name="Circuit Breaker status API",
        url=cb.url.replace("/health", "/api/v1/emergency-status"),
        system=cb.system,
        interval=timedelta(seconds=1),
        timeout=timedelta(milliseconds=500),
    )
    agents.inject_fault("circuit_breaker", "down")
    sweep(3)
    incident = automated("circuit_breaker").get()
    entries = incident.timeline.filter(kind=TimelineEntry.Kind.HEALTH)
    assert sorted(e.data["target_name"] for e in entries) == ["Circuit Breaker Agent", "Circuit Breaker status API"]
    # The second failure on the open incident pages again (its first pages may be acknowledged).
    [page] = EscalationEvent.objects.filter(incident=incident, rule=health.ATTACHED_RULE)
    assert page.summary.startswith("New failure on an open incident. Health check:")


def test_lost_race_to_open_adds_to_the_winners_incident(agents, monkeypatch):
    """The partial unique constraint decides: the loser's savepoint rolls back, it attaches."""
    system = System.objects.get(key="circuit_breaker")
    winner = health._open_or_attach(
        system=system, severity=severity(1), title="first", description="", action="first", data={}
    )
    real = health._open_automated
    calls = []

    def blind_once(s):
        # The loser looked before the winner committed: it saw no open incident.
        calls.append(s)
        return None if len(calls) == 1 else real(s)

    monkeypatch.setattr(health, "_open_automated", blind_once)
    loser = health._open_or_attach(
        system=system, severity=severity(1), title="second", description="", action="second", data={}
    )
    assert loser.pk == winner.pk
    assert automated("circuit_breaker").count() == 1
    assert sorted(winner.timeline.filter(kind=TimelineEntry.Kind.HEALTH).values_list("action", flat=True)) == [
        "first",
        "second",
    ]
    # Incident numbers stay gap-free: the rolled-back open gave its number back.
    assert Incident.objects.count() == 1
    assert open_incident(systems=("dashboard",)).reference_number == winner.reference_number + 1


# -- bad input never crashes the poller ----------------------------------------------------------


def test_malformed_health_response_is_recorded_as_unhealthy(agents):
    agents.inject_fault("market_analysis", "malformed")
    sweep()
    sample = HealthSample.objects.get(target=target("market_analysis"))
    assert not sample.ok
    assert sample.error == "unhealthy: malformed response"
    assert sample.status_code == 200


def test_urls_that_are_not_http_are_recorded_not_fetched(agents):
    ma = target("market_analysis")
    # Written past the admin's validation (a bulk update), as a bad row could be.
    HealthTarget.objects.filter(pk=ma.pk).update(url="ftp://127.0.0.1/health")
    HealthTarget.objects.filter(name=AGENT_TARGETS["risk_management"]).update(url="not a url at all")
    summary = sweep(3)
    assert summary.polled == SEEDED_TARGETS
    assert HealthSample.objects.filter(error="invalid URL: only http:// and https:// URLs are polled").count() == 6
    assert target("market_analysis").state == HealthTarget.State.DOWN
    assert target("circuit_breaker").state == HealthTarget.State.HEALTHY


@pytest.mark.parametrize(
    ("status", "body", "healthy", "error"),
    [
        (200, b'{"status": "healthy"}', True, ""),
        (200, b'{"status": "OK"}', True, ""),
        (200, b'{"status": "degraded", "detail": "disk 95%"}', False, "unhealthy: status 'degraded' (disk 95%)"),
        (200, b'{"agent": "x"}', False, "unhealthy: malformed response"),
        (200, b'["healthy"]', False, "unhealthy: malformed response"),
        (200, b"<html>oops</html>", False, "unhealthy: malformed response"),
        (200, b"\xff\xfe", False, "unhealthy: malformed response"),
        (
            200,
            b'{"status": "healthy", "pad": "' + b"x" * 70_000 + b'"}',
            False,
            "unhealthy: malformed response (body over 64 KiB)",
        ),
        (
            503,
            b'{"status": "unhealthy", "detail": "injected fault: flapping"}',
            False,
            "unhealthy: HTTP 503 (injected fault: flapping)",
        ),
        (500, b"", False, "unhealthy: HTTP 500"),
        (302, b"", False, "unhealthy: HTTP 302"),
    ],
)
def test_classify_health_answers(status, body, healthy, error):
    assert poller.classify(status, body) == (healthy, error)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://localhost:8001/health", ""),
        ("https://agent.example/health", ""),
        ("ftp://agent.example/health", "invalid URL: only http:// and https:// URLs are polled"),
        ("javascript:alert(1)", "invalid URL: only http:// and https:// URLs are polled"),
        ("http:///health", "invalid URL: no host"),
        ("http://host:99999/health", "invalid URL: not a valid http:// or https:// URL"),
    ],
)
def test_url_problems(url, problem):
    assert poller.url_problem(url) == problem


def test_admin_form_refuses_bad_targets(db):
    system = System.objects.get(key="circuit_breaker")
    base = {
        "name": "New agent",
        "url": "http://127.0.0.1:9/health",
        "system": system.pk,
        "interval": "00:00:10",
        "timeout": "00:00:02",
        "failures_before_down": 3,
        "latency_threshold_ms": 500,
        "degraded_severity": severity(2).pk,
        "enabled": "on",
    }
    assert HealthTargetForm(data=base).is_valid()
    cases = {
        "url": ({"url": "ftp://127.0.0.1/health"}, "Only http:// and https:// URLs are polled."),
        "timeout": ({"timeout": "00:00:15"}, "The timeout must be shorter than the interval."),
        "interval": ({"interval": "00:00:00.5", "timeout": "00:00:00.2"}, "Poll at most once a second."),
        "failures_before_down": ({"failures_before_down": 0}, "Ensure this value is greater than or equal to 1."),
    }
    for field, (change, message) in cases.items():
        form = HealthTargetForm(data={**base, **change})
        assert not form.is_valid()
        assert message in form.errors[field], (field, form.errors)
    negative = HealthTargetForm(data={**base, "timeout": "-00:00:01"})
    assert not negative.is_valid()
    assert "timeout" in negative.errors


def test_one_hung_target_never_delays_the_others():
    """Poller level, on the simulator's fleet: 40 targets, two of them hanging past the timeout."""
    fleet = FleetConfig(size=40, base_latency_ms=20, slow_targets=frozenset({3, 30}), slow_latency_ms=1500)
    server = SimulatorServer(agent_ports={}, control_port=None, fleet=fleet, fleet_port=0)
    endpoints = server.start_in_thread()
    try:
        probes = [
            poller.Probe(target_id=n, url=url, timeout_s=0.5) for n, url in enumerate(endpoints.fleet_health_urls())
        ]
        started = time.perf_counter()
        results = poller.poll(probes, concurrency=10)
        elapsed = time.perf_counter() - started
        # Let the simulator finish the hung answers nobody waits for, so it stops cleanly.
        time.sleep(max(0.0, 1.6 - elapsed))
    finally:
        server.stop()
    assert [r.target_id for r in results] == list(range(40))
    hung = [r for r in results if not r.healthy]
    assert [r.target_id for r in hung] == [3, 30]
    assert all(r.error == "timeout: no answer within 0.5 s" for r in hung)
    assert all(r.latency_ms < 300 for r in results if r.healthy), "waiting for a slot is not latency"
    assert elapsed < 1.5, f"a sweep took {elapsed:.2f} s: the hung targets held up the others"


def test_poll_from_a_thread_that_runs_an_event_loop():
    """The browser tests run sweeps while Playwright's loop runs in the same thread."""
    import asyncio

    async def inside_a_loop():
        return poller.poll([poller.Probe(target_id=1, url="http://127.0.0.1:9/health", timeout_s=0.5)])

    [result] = asyncio.run(inside_a_loop())
    assert not result.healthy
    assert result.error.startswith("unreachable")


# -- claiming, retention --------------------------------------------------------------------------


def test_a_claimed_target_is_not_polled_again_until_its_interval_passed(agents):
    now = timezone.now()
    HealthTarget.objects.update(next_check_at=None)
    first = health.health_targets_claim(now=now)
    assert len(first) == SEEDED_TARGETS
    assert health.health_targets_claim(now=now) == [], "an overlapping sweep finds nothing due"
    assert len(health.health_targets_claim(now=now + timedelta(seconds=1))) == SEEDED_TARGETS


def test_disabled_targets_are_not_polled(agents):
    HealthTarget.objects.filter(name=AGENT_TARGETS["market_analysis"]).update(enabled=False)
    assert sweep().polled == SEEDED_TARGETS - 1


def test_results_older_than_the_last_check_are_ignored(agents):
    sweep()
    cb = target("circuit_breaker")
    stale = poller.ProbeResult(
        target_id=cb.pk,
        checked_at=cb.last_checked_at - timedelta(seconds=5),
        healthy=False,
        latency_ms=1.0,
        status_code=None,
        error="unreachable: old news",
    )
    assert health.health_results_apply([stale]) == []
    cb.refresh_from_db()
    assert cb.consecutive_failures == 0
    assert not HealthSample.objects.filter(error="unreachable: old news").exists()


def test_samples_older_than_the_retention_are_pruned(agents, settings):
    settings.TMT_HEALTH_SAMPLE_RETENTION_DAYS = 8
    cb = target("circuit_breaker")
    now = timezone.now()
    HealthSample.objects.bulk_create(
        [HealthSample(target=cb, checked_at=now - timedelta(days=d, minutes=1), ok=True) for d in (1, 7, 8, 9, 30)]
    )
    assert health.health_samples_prune(now=now, batch=2) == 3
    assert sorted((now - s).days for s in HealthSample.objects.values_list("checked_at", flat=True)) == [1, 7]


# -- heartbeats and the portal's own infrastructure ------------------------------------------------


def every_duty_done(now) -> None:
    for duty in DutyHeartbeat.Duty:
        health.duty_record(duty=duty, process="test@host", now=now)


def test_silent_beat_opens_one_monitoring_incident_and_its_return_is_noted(db, settings):
    settings.TMT_HEARTBEAT_STALE_SECONDS = 60
    now = timezone.now()
    long_ago = now - timedelta(hours=1)
    every_duty_done(now)
    health.heartbeat_record(name="worker@a", kind="worker", now=now)
    health.heartbeat_record(name="beat@a", kind="beat", now=now - timedelta(seconds=300))

    outcomes = health.infrastructure_alerts_evaluate(checker="worker", process_started_at=long_ago, now=now)
    incident = automated("monitoring").get()
    assert outcomes == [f"beat: alert on {incident.reference}"], "the broker (real Redis) answers"
    assert incident.severity.level == System.objects.get(key="monitoring").outage_severity.level
    assert "Celery beat is silent" in incident.title
    assert health.infrastructure_alerts_evaluate(checker="worker", process_started_at=long_ago, now=now) == []

    health.heartbeat_record(name="beat@a", kind="beat", now=now)
    outcomes = health.infrastructure_alerts_evaluate(checker="worker", process_started_at=long_ago, now=now)
    assert outcomes == [f"beat: recovered on {incident.reference}"]
    states = [e.data["state"] for e in incident.timeline.filter(kind=TimelineEntry.Kind.HEALTH).order_by("id")]
    assert states == ["down", "healthy"]
    incident.refresh_from_db()
    assert incident.is_open


def test_a_new_worker_does_not_judge_beat_before_the_grace_period(db):
    now = timezone.now()
    assert health.infrastructure_alerts_evaluate(checker="worker", process_started_at=now, now=now) == []
    # Workers record beat's heartbeats: after a time without workers the last one is old even
    # though beat is fine, so a worker that just started must not call beat silent.
    health.heartbeat_record(name="beat@a", kind="beat", now=now - timedelta(minutes=5))
    assert health.infrastructure_alerts_evaluate(checker="worker", process_started_at=now, now=now) == []
    assert health.infrastructure_alerts_evaluate(checker="beat", process_started_at=now, now=now) == []
    assert not Incident.objects.exists()


@pytest.mark.parametrize(
    ("silent_s", "alert"), [(29.9, False), (30.0, False), (30.1, True)], ids=["below", "at", "above"]
)
def test_a_duty_silent_for_more_than_30_s_opens_an_infrastructure_incident(db, settings, silent_s, alert):
    settings.TMT_DUTY_STALE_SECONDS = 30
    now = timezone.now()
    every_duty_done(now)
    health.duty_record(duty="health_polling", process="worker@gone", now=now - timedelta(seconds=silent_s))
    DutyHeartbeat.objects.filter(duty="health_polling", process="test@host").delete()
    outcomes = health.infrastructure_alerts_evaluate(
        checker="beat", process_started_at=now - timedelta(hours=1), now=now
    )
    if not alert:
        assert outcomes == [] and not Incident.objects.exists()
        return
    incident = automated("monitoring").get()
    assert outcomes == [f"duty:health_polling: alert on {incident.reference}"]
    assert incident.title.endswith("Health polling has stopped: the trading agents' health is not being checked")
    # No page was sent from beat's own process: firing and delivery are alive.
    assert not any(o.startswith("no dispatcher") for o in outcomes)


def test_a_second_process_keeps_a_duty_alive_when_the_first_dies(db, settings):
    settings.TMT_DUTY_STALE_SECONDS = 30
    now = timezone.now()
    every_duty_done(now)
    health.duty_record(duty="delivery", process="dispatcher@dead", now=now - timedelta(minutes=5))
    assert health.duties_evaluate(process_started_at=now - timedelta(hours=1), now=now) == []
    delivery = next(d for d in health.duty_status(now=now) if d.duty == "delivery")
    assert delivery.alive and [p.alive for p in delivery.processes] == [True, False]


def test_no_duty_is_judged_before_the_checker_has_been_up_for_the_stale_window(db, settings):
    settings.TMT_DUTY_STALE_SECONDS = 30
    now = timezone.now()
    assert health.duties_evaluate(process_started_at=now - timedelta(seconds=29), now=now) == []
    assert not Incident.objects.exists()


def test_with_no_dispatcher_alive_the_checker_pages_by_itself(db, settings, sms_provider):
    from tests.factories import make_roster

    team = make_roster()
    settings.TMT_DUTY_STALE_SECONDS = 30
    now = timezone.now()
    every_duty_done(now)
    DutyHeartbeat.objects.filter(duty__in=["escalation", "delivery"]).update(seen_at=now - timedelta(seconds=31))
    outcomes = health.infrastructure_alerts_evaluate(
        checker="beat", process_started_at=now - timedelta(hours=1), now=now
    )
    incident = automated("monitoring").get()
    assert outcomes[:2] == [
        f"duty:escalation: alert on {incident.reference}",
        f"duty:delivery: alert on {incident.reference}",
    ]
    assert outcomes[2].startswith("no dispatcher: fired")
    # The alert's own first page went out from this process, as no dispatcher would send it.
    assert EscalationEvent.objects.filter(incident=incident, rule="ack", step=0).exists()
    oncall = team["oncall1"].person
    assert {p["to"] for p in sms_provider.received} >= {oncall.sms_number, oncall.phone}


def test_beat_heartbeat_task_records_kind_beat(db):
    from incidents.monitoring.tasks import record_beat_heartbeat

    assert record_beat_heartbeat("beat@host") == "beat heartbeat from beat@host"
    assert WorkerHeartbeat.objects.get(name="beat@host").kind == "beat"
    record_beat_heartbeat("beat@host")
    assert WorkerHeartbeat.objects.count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_heartbeat_thread_records_the_worker_and_stops(settings):
    settings.TMT_HEARTBEAT_SECONDS = 0.05
    thread = health.heartbeat_thread_start(role="worker", name="worker@thread-test")
    try:
        wait_for(
            lambda: WorkerHeartbeat.objects.filter(name="worker@thread-test").exists(), timeout=10, what="a heartbeat"
        )
    finally:
        thread.stop_event.set()
        thread.join(5)
    assert not thread.is_alive()


# -- the real worker runs the sweep -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_poll_task_runs_on_a_real_worker(simulator, celery_worker, postgres):
    from incidents.monitoring.tasks import poll_health_targets

    simulator.reset()
    simulator.inject_fault("circuit_breaker", "down")
    try:
        for agent, name in AGENT_TARGETS.items():
            HealthTarget.objects.filter(name=name).update(
                url=simulator.endpoints.agent_url(agent) + "/health",
                interval=timedelta(seconds=1),
                timeout=timedelta(milliseconds=500),
            )
        point_trading_database_at_portal()
        for _ in range(3):
            HealthTarget.objects.update(next_check_at=None)
            before = HealthSample.objects.count()
            poll_health_targets.delay()
            wait_for(lambda b=before: HealthSample.objects.count() >= b + SEEDED_TARGETS, what="a sweep on the worker")
        assert target("circuit_breaker").state == HealthTarget.State.DOWN
        assert automated("circuit_breaker").count() == 1
    finally:
        simulator.reset()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_sweeps_open_one_incident(simulator, postgres):
    """Several pollers applying the same outage at once: the constraint keeps it to one."""
    simulator.reset()
    simulator.inject_fault("circuit_breaker", "down")
    try:
        cb = HealthTarget.objects.get(name=AGENT_TARGETS["circuit_breaker"])
        extra = [
            HealthTarget.objects.create(
                name=f"Circuit breaker replica {n}",
                url=simulator.endpoints.agent_url("circuit_breaker") + "/health",
                system=cb.system,
                failures_before_down=1,
                interval=timedelta(seconds=1),
                timeout=timedelta(milliseconds=500),
            )
            for n in range(6)
        ]
        results = poller.poll([poller.Probe(t.pk, t.url, 0.5) for t in extra])
        barrier = threading.Barrier(len(results))
        errors = []

        def apply(result):
            try:
                barrier.wait()
                health.health_results_apply([result])
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=apply, args=(r,)) for r in results]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        incident = automated("circuit_breaker").get()
        assert incident.timeline.filter(kind=TimelineEntry.Kind.HEALTH).count() == 6
        assert Incident.objects.count() == 1
    finally:
        simulator.reset()


# -- the health page -------------------------------------------------------------------------


def test_health_page_shows_states_sparklines_uptime_and_infrastructure(agents, engineer_client):
    sweep()
    agents.inject_fault("circuit_breaker", "down")
    sweep(3)
    health.heartbeat_record(name="worker@web", kind="worker")
    response = engineer_client.get(reverse("incidents:health"))
    assert response.status_code == 200
    html = response.content.decode()
    rows = {r.target.name: r for r in response.context["rows"]}
    assert rows["Circuit Breaker Agent"].target.state == "down"
    assert rows["Circuit Breaker Agent"].uptime_24h == 25.0
    assert rows["Market Analysis Agent"].uptime_7d == 100.0
    assert rows["Circuit Breaker Agent"].incident == automated("circuit_breaker").get()
    assert len(rows["Circuit Breaker Agent"].sparkline.failures) == 3
    assert "<polyline" in html and "<circle" in html
    assert "Celery beat" in html and "no heartbeat recorded" in html
    assert "worker@web" in html
    assert "No heartbeat from Celery beat yet" in html
    assert 'data-duty="escalation"' in html and "Escalation firing has stopped (never done yet)" in html
    assert 'data-testid="emergency-stop-button"' in html, "an on-call engineer may stop trading"
    panel = engineer_client.get(reverse("incidents:health_panel"), HTTP_HX_REQUEST="true")
    assert panel.status_code == 200
    assert b"<html" not in panel.content


def test_health_page_query_count_does_not_grow_with_targets(agents, engineer_client):
    sweep(2)
    engineer_client.get(reverse("incidents:health"))  # warm the session and permission caches
    with CaptureQueriesContext(connection) as few:
        engineer_client.get(reverse("incidents:health"))
    cb = target("circuit_breaker")
    HealthTarget.objects.bulk_create(
        [
            HealthTarget(
                name=f"extra {n}",
                url=cb.url,
                system=cb.system,
                interval=timedelta(seconds=1),
                timeout=timedelta(milliseconds=500),
            )
            for n in range(12)
        ]
    )
    sweep(2)
    with CaptureQueriesContext(connection) as many:
        response = engineer_client.get(reverse("incidents:health"))
    assert len(response.context["rows"]) == SEEDED_TARGETS + 12
    assert len(many.captured_queries) == len(few.captured_queries)


def test_health_page_needs_a_login_and_a_team_role(client, db):
    assert client.get(reverse("incidents:health")).status_code == 302
    client.force_login(UserFactory(username="outsider"))
    assert client.get(reverse("incidents:health")).status_code == 403


def test_silent_beat_is_flagged_on_the_page(db, engineer_client, settings):
    health.heartbeat_record(name="beat@x", kind="beat", now=timezone.now() - timedelta(minutes=5))
    html = engineer_client.get(reverse("incidents:health")).content.decode()
    assert "Celery beat is silent (last heartbeat 300 s ago)" in html
    assert "No live Celery worker" in html


def test_only_workers_on_the_heartbeat_queue_judge_beat(db, monkeypatch):
    from types import SimpleNamespace

    from incidents.monitoring import tasks

    now = timezone.now()
    every_duty_done(now)
    health.heartbeat_record(name="beat@a", kind="beat", now=now - timedelta(minutes=5))
    outcomes = health.infrastructure_alerts_evaluate(
        checker="worker", process_started_at=now - timedelta(hours=1), now=now, judges_beat=False
    )
    assert outcomes == []
    assert not Incident.objects.exists()

    started = []
    monkeypatch.setattr(health, "heartbeat_thread_start", lambda **kwargs: started.append(kwargs))
    for queues, judges in [(["default", "health"], True), (["health", "reports"], False)]:
        consumer = SimpleNamespace(
            hostname="w@h", task_consumer=SimpleNamespace(queues=[SimpleNamespace(name=q) for q in queues])
        )
        tasks._start_worker_heartbeat(sender=consumer)
        assert started[-1] == {"role": "worker", "name": "w@h", "judges_beat": judges}


def test_admin_pages_for_health(admin_client, agents):
    sweep()
    cb = target("circuit_breaker")
    for name in ("healthtarget", "healthsample", "emergencystop", "maintenancewindow"):
        assert admin_client.get(reverse(f"admin:monitoring_{name}_changelist")).status_code == 200, name
    assert admin_client.get(reverse("admin:monitoring_healthtarget_change", args=[cb.pk])).status_code == 200
    assert admin_client.get(reverse("admin:monitoring_healthsample_add")).status_code == 403, "samples are read-only"

    response = admin_client.post(
        reverse("admin:monitoring_healthtarget_changelist"),
        {"action": "check_now", "_selected_action": [cb.pk]},
    )
    assert response.status_code == 302
    cb.refresh_from_db()
    assert cb.next_check_at is None

    now = timezone.now()
    response = admin_client.post(
        reverse("admin:monitoring_maintenancewindow_add"),
        {
            "title": "Broker upgrade",
            "description": "",
            "systems": [System.objects.get(key="message_broker").pk],
            "starts_at_0": (now + timedelta(days=1)).strftime("%Y-%m-%d"),
            "starts_at_1": "10:00:00",
            "ends_at_0": (now + timedelta(days=1)).strftime("%Y-%m-%d"),
            "ends_at_1": "09:00:00",
        },
    )
    assert response.status_code == 200, "an end before the start is a field error"
    assert "The end must be after the start." in response.content.decode()


def test_a_duty_whose_heartbeat_is_fresh_but_whose_work_is_overdue_is_stopped(db, settings):
    from tests.factories import make_roster

    team = make_roster()
    settings.TMT_DUTY_STALE_SECONDS = 30
    now = timezone.now()
    every_duty_done(now)
    incident = open_incident(reported_by=team["oncall1"], level=3, financial_impact_usd=None)
    page = Notification.objects.create(
        incident=incident,
        channel="email",
        address="a@example.com",
        subject="s",
        body="b",
        next_attempt_at=now - timedelta(seconds=29.9),
    )
    delivery = {d.duty: d for d in health.duty_status(now=now)}["delivery"]
    assert delivery.alive, "just under 30 s overdue is still on time"
    Notification.objects.filter(pk=page.pk).update(next_attempt_at=now - timedelta(seconds=30.1))
    delivery = {d.duty: d for d in health.duty_status(now=now)}["delivery"]
    assert not delivery.alive and delivery.overdue == 1
    assert "1 overdue by more than 30 s" in delivery.detail


def test_with_only_firing_silent_the_checker_fires_but_leaves_delivery_to_the_dispatcher(db, settings, sms_provider):
    from tests.factories import make_roster

    make_roster()
    settings.TMT_DUTY_STALE_SECONDS = 30
    now = timezone.now()
    every_duty_done(now)
    DutyHeartbeat.objects.filter(duty="escalation").update(seen_at=now - timedelta(seconds=31))
    outcomes = health.infrastructure_alerts_evaluate(
        checker="beat", process_started_at=now - timedelta(hours=1), now=now
    )
    incident = automated("monitoring").get()
    assert outcomes[0] == f"duty:escalation: alert on {incident.reference}"
    assert outcomes[1].startswith("no dispatcher: fired") and outcomes[1].endswith("tried 0 notification(s) here")
    assert EscalationEvent.objects.filter(incident=incident, rule="ack", step=0).exists()
    assert sms_provider.received == [], "the working delivery loop sends the pages, not beat"
