"""Paging under the faults it exists for, with real processes and a provider that counts.

The dispatcher runs as `manage.py run_dispatcher` processes on the test's PostgreSQL database;
the provider honours idempotency keys as the README's contract asks, so "received once" means
one accepted request per notification, and a re-send after a crash shows up as a replay.
"""

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from incidents.escalation.models import EscalationEvent, EscalationStep
from incidents.models import SeverityLevel, TimelineEntry
from incidents.monitoring.models import DutyHeartbeat
from incidents.notifications.models import Notification
from tests.celery_fixtures import wait_for
from tests.factories import make_roster, open_incident
from tests.processes import OwnRedis, kill, start_celery, start_dispatcher, stop

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("postgres"),
]

URGENT = ["sms", "phone"]
ON_TIME_S = 2.0


def chain_every(seconds: float, *, pages: int = 3) -> None:
    """Every severity's acknowledgement chain: `pages` pages, at open and then every `seconds`."""
    SeverityLevel.objects.update(response_time=timedelta(seconds=seconds), response_next_business_day=False)
    EscalationStep.objects.filter(order__gte=pages).delete()
    EscalationStep.objects.filter(order__gt=1).update(delay=timedelta(seconds=seconds))


def wait_for_dispatchers(*names: str) -> None:
    wait_for(
        lambda: set(DutyHeartbeat.objects.filter(duty="delivery").values_list("process", flat=True)).issuperset(names),
        timeout=30,
        what=f"dispatchers {names} to start",
    )


def urgent_pages():
    return Notification.objects.filter(channel__in=URGENT)


def all_urgent_pages_sent(expected_events: int):
    def check() -> bool:
        events = EscalationEvent.objects.count()
        return (
            events >= expected_events and urgent_pages().exists() and not urgent_pages().exclude(state="sent").exists()
        )

    return check


def lateness_s(provider) -> list[float]:
    """Seconds from each page's deadline falling due to the provider receiving it."""
    due = {
        f"tmt-notification-{pk}": due_at.timestamp() for pk, due_at in urgent_pages().values_list("pk", "event__due_at")
    }
    return sorted(p["_received_at"] - due[p["_key"]] for p in provider.received)


def assert_each_page_received_once(provider) -> None:
    """Every page accepted once: none lost, and no person paged twice for one step (two keys
    for the same event, channel and number), whatever the provider dropped as replays."""
    sent = {
        f"tmt-notification-{pk}": (event, channel, address)
        for pk, event, channel, address in urgent_pages().values_list("pk", "event", "channel", "address")
    }
    keys = [p["_key"] for p in provider.received]
    assert len(keys) == len(set(keys)), "the provider accepted one key twice"
    assert sorted(keys) == sorted(sent), "a page was lost"
    pages = [sent[key] for key in keys]
    assert len(pages) == len(set(pages)), "a person was paged twice for one step"


def assert_each_step_fired_once() -> None:
    per_step = EscalationEvent.objects.values("incident", "rule", "step").annotate(n=Count("id"))
    assert {row["n"] for row in per_step} == {1}
    entries = (
        TimelineEntry.objects.filter(kind="escalation")
        .values("incident", "data__rule", "data__step")
        .annotate(n=Count("id"))
    )
    assert {row["n"] for row in entries} == {1}, "a step was recorded on the timeline twice"


def test_pages_go_out_once_and_on_time_while_redis_is_down(tmp_path, sms_provider):
    team = make_roster()
    chain_every(3)
    with OwnRedis(tmp_path) as redis:
        broker = {"CELERY_BROKER_URL": redis.url, "TMT_SMS_PROVIDER_URL": sms_provider.url}
        dispatcher = start_dispatcher(tmp_path, "dispatcher-a", **broker)
        # The Procfile's Celery worker on the same broker: it must survive the outage too.
        worker = start_celery(
            [
                "worker",
                "-Q",
                "default,health,reports",
                "--pool=threads",
                "-c",
                "2",
                "-n",
                "w@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            tmp_path,
            "worker",
            **broker,
        )
        try:
            wait_for_dispatchers("dispatcher-a")
            redis.kill()
            incidents = [
                open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None) for _ in range(8)
            ]
            # Three steps each (at open, +3 s, +6 s), all falling due with no broker at all.
            wait_for(all_urgent_pages_sent(len(incidents) * 3), timeout=40, what="every page")
            assert dispatcher.poll() is None
            redis.start()
            time.sleep(3)
            assert worker.poll() is None, "the Celery worker died of the broker outage"
        finally:
            stop(dispatcher, worker)
    assert urgent_pages().count() == len(incidents) * 3 * 2
    assert_each_page_received_once(sms_provider)
    assert sms_provider.replays == 0, "a page was re-sent though nothing was killed"
    assert_each_step_fired_once()
    late = lateness_s(sms_provider)
    assert late[0] >= 0, "a page went out before it was due"
    assert late[-1] <= ON_TIME_S, f"pages late by up to {late[-1]:.2f} s with Redis down"


def test_a_sigkilled_dispatcher_loses_and_doubles_no_page(tmp_path, sms_provider):
    team = make_roster()
    sms_provider.delay_s = 0.25  # every send is in flight for a while, so the kill catches some
    env = {"TMT_SMS_PROVIDER_URL": sms_provider.url}
    doomed = start_dispatcher(tmp_path, "dispatcher-doomed", **env)
    survivor = start_dispatcher(tmp_path, "dispatcher-survivor", **env)
    try:
        wait_for_dispatchers("dispatcher-doomed", "dispatcher-survivor")
        incidents = [open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None) for _ in range(30)]
        wait_for(lambda: len(sms_provider.received) >= 10, timeout=20, what="the first pages")
        kill(doomed)
        killed_at = time.monotonic()
        in_flight = Notification.objects.filter(state="sending").count()
        # Each Sev1 pages the on-call engineer and the CTO at open: two events.
        wait_for(all_urgent_pages_sent(len(incidents) * 2), timeout=45, what="every page")
        catch_up_s = time.monotonic() - killed_at
    finally:
        stop(doomed, survivor)
    assert urgent_pages().count() == len(incidents) * 2 * 2
    assert_each_page_received_once(sms_provider)
    assert_each_step_fired_once()
    assert catch_up_s <= 30, f"caught up {catch_up_s:.1f} s after the kill"
    # Only what the killed dispatcher had in flight (its 8 threads) may be re-sent, under its key.
    assert sms_provider.replays <= 8
    assert not Notification.objects.filter(state__in=["sending", "pending"], channel__in=URGENT).exists()
    print(f"in flight at the kill: {in_flight}, replays dropped by the provider: {sms_provider.replays}")


@pytest.fixture
def one_dispatcher(tmp_path, sms_provider):
    """One `run_dispatcher` process paging the test's provider, once it is working."""
    dispatcher = start_dispatcher(tmp_path, "dispatcher-a", TMT_SMS_PROVIDER_URL=sms_provider.url)
    try:
        wait_for_dispatchers("dispatcher-a")
        yield dispatcher
    finally:
        stop(dispatcher)


def test_dropped_database_connections_neither_lose_nor_double_pages(one_dispatcher, sms_provider):
    team = make_roster()
    chain_every(2)
    incidents = [open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None) for _ in range(8)]
    # While the chain's steps fall due (at open, +2 s, +4 s), cut every connection the
    # dispatcher has, its wake-up listener's included, every 700 ms.
    dropped = 0
    until = time.monotonic() + 5
    while time.monotonic() < until:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            dropped += cursor.fetchone()[0]
        time.sleep(0.7)
    wait_for(all_urgent_pages_sent(len(incidents) * 3), timeout=40, what="every page")
    assert one_dispatcher.poll() is None, "the dispatcher died of a dropped connection"
    assert dropped >= 5, "the test dropped too few connections to show anything"
    assert_each_page_received_once(sms_provider)
    # A send whose record hit a dropped connection is recorded on a new one, not re-sent.
    assert sms_provider.replays == 0
    assert_each_step_fired_once()
    late = lateness_s(sms_provider)
    assert late[-1] <= ON_TIME_S, f"pages late by up to {late[-1]:.2f} s with connections dropped"


@pytest.mark.usefixtures("one_dispatcher")
def test_no_page_is_sent_for_a_deadline_not_yet_due(sms_provider):
    """The must-not side: a dispatcher running beside a future deadline pages nobody early."""
    team = make_roster()
    chain_every(6)
    opened = timezone.now()
    open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None)
    wait_for(lambda: len(sms_provider.received) == 2, timeout=10, what="the pages at open")
    waited = (timezone.now() - opened).total_seconds()
    assert waited < 3, f"the pages at open took {waited:.1f} s: too late to watch step 1"
    time.sleep(5.5 - waited)
    assert len(sms_provider.received) == 2, "step 1 paged before its 6 s were up"
    wait_for(lambda: len(sms_provider.received) == 4, timeout=5, what="step 1 at 6 s")
