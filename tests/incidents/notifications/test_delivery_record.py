"""A delivery when the database, a channel or a provider misbehaves: the outcome is still
recorded once, the other rows still go out, and the log says what happened."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from incidents.notifications import services as notifications
from incidents.notifications.acks import page_text
from incidents.notifications.hooks import notification_hooks
from incidents.notifications.models import Notification, NotificationAttempt, WebhookEndpoint
from tests.factories import UserFactory, open_incident, person
from tests.incidents.notifications.rows import acknowledged_follow_up, attempts_of, claimed, fire_event, outbox_row

pytestmark = pytest.mark.django_db


# -- recording after the send ---------------------------------------------------------------------


def test_a_record_that_hits_a_dropped_connection_is_retried_with_growing_pauses(monkeypatch, caplog):
    pauses: list = []
    monkeypatch.setattr(notifications.time, "sleep", pauses.append)
    tries = []

    def write():
        tries.append(1)
        if len(tries) < 3:
            raise OperationalError("server closed the connection unexpectedly")
        return "sent"

    with caplog.at_level(logging.WARNING, logger=notifications.log.name):
        assert notifications._recorded(write) == "sent"
    assert pauses == [0.2, 0.5]
    warnings = [r for r in caplog.records if r.name == notifications.log.name]
    assert [r.getMessage() for r in warnings] == [
        "recording a delivery failed; retrying in 0.2 s",
        "recording a delivery failed; retrying in 0.5 s",
    ]
    assert all(r.exc_info and r.exc_info[0] is OperationalError for r in warnings)


def test_a_record_that_keeps_failing_gives_up_after_the_last_pause(monkeypatch):
    pauses: list = []
    monkeypatch.setattr(notifications.time, "sleep", pauses.append)

    def write():
        raise OperationalError("the database is gone")

    with pytest.raises(OperationalError):
        notifications._recorded(write)
    assert pauses == list(notifications.RECORD_RETRY_PAUSES_S)


def test_a_send_recorded_twice_counts_once():
    # The first write committed, but its connection broke before it said so: the retry finds the
    # row no longer "sending" under this claim and records nothing more.
    row = claimed(Notification.Channel.SMS, "+447700901001")
    assert notifications._record_sent(row, timezone.now()) == "sent"
    assert notifications._record_sent(row, timezone.now()) == notifications.SUPERSEDED
    row.refresh_from_db()
    assert (row.state, row.attempts) == (Notification.State.SENT, 1)
    assert [outcome for outcome, _ in attempts_of(row)] == [NotificationAttempt.Outcome.SENT]


def test_a_row_taken_over_is_logged_by_its_id(caplog):
    row = claimed(Notification.Channel.SMS, "+447700901002")
    Notification.objects.filter(pk=row.pk).update(claimed_at=row.claimed_at + timedelta(seconds=21))
    with caplog.at_level(logging.WARNING, logger=notifications.log.name):
        assert notifications._record_sent(row, timezone.now()) == notifications.SUPERSEDED
    assert [r.getMessage() for r in caplog.records if r.name == notifications.log.name] == [
        f"notification {row.pk} was taken over while this delivery sent it"
    ]


# -- the rows of one delivery ---------------------------------------------------------------------


def test_a_skipped_row_does_not_stop_the_rows_after_it(sms_provider):
    follow_up = acknowledged_follow_up(open_incident(level=1))
    sms = claimed(Notification.Channel.SMS, "+447700901003")
    assert notifications._deliver([follow_up, sms], now=timezone.now()) == ["skipped: no longer needed", "sent"]
    assert [p["to"] for p in sms_provider.received] == ["+447700901003"]


def test_an_unexpected_error_is_an_attempt_like_any_other_and_logged(settings, monkeypatch, caplog):
    settings.TMT_NOTIFY_MAX_ATTEMPTS = 5
    settings.TMT_NOTIFY_BACKOFF_SECONDS = 10

    def broken_channel(notification):
        raise ValueError("no such template")

    monkeypatch.setitem(notifications._CHANNELS, Notification.Channel.SMS, broken_channel)
    early = claimed(Notification.Channel.SMS, "+447700901004", attempts=0)
    last = claimed(Notification.Channel.SMS, "+447700901005", attempts=4)
    with caplog.at_level(logging.ERROR, logger=notifications.log.name):
        outcomes = notifications._deliver([early, last], now=timezone.now())
    assert outcomes == [
        "retry in 10s: unexpected error: ValueError: no such template",
        "failed: unexpected error: ValueError: no such template",
    ]
    assert Notification.objects.get(pk=last.pk).state == Notification.State.FAILED
    logged = [r for r in caplog.records if r.name == notifications.log.name]
    assert [r.getMessage() for r in logged] == [
        f"unexpected error sending notification {early.pk}",
        f"unexpected error sending notification {last.pk}",
    ]
    assert all(r.exc_info and r.exc_info[0] is ValueError for r in logged)


def test_a_provider_slower_than_the_timeout_is_tried_again(settings, sms_provider):
    settings.TMT_NOTIFY_HTTP_TIMEOUT = 0.5
    settings.TMT_NOTIFY_BACKOFF_SECONDS = 10
    sms_provider.delay_s = 2.0
    row = claimed(Notification.Channel.SMS, "+447700901006")
    assert notifications.notification_send(notification=row).startswith("retry in 10s: ReadTimeout")


# -- claiming -------------------------------------------------------------------------------------


def test_rows_due_at_the_same_moment_are_claimed_oldest_row_first():
    # One firing writes all its rows with the same due time: the first written goes first.
    now = timezone.now()
    first = outbox_row(Notification.State.PENDING, due=now - timedelta(seconds=1))
    second = outbox_row(Notification.State.PENDING, due=now - timedelta(seconds=1))
    Notification.objects.filter(pk=first.pk).update(address="moved@tmt.example")  # a new row version, later on disk
    assert [row.pk for row in notifications.notifications_claim_due(limit=1, now=now)] == [first.pk]
    assert [row.pk for row in notifications.notifications_claim_due(limit=1, now=now)] == [second.pk]


@pytest.mark.parametrize("claim", ["due", "by id"])
def test_a_claimed_row_is_sent_without_another_database_query(django_assert_num_queries, settings, monkeypatch, claim):
    # The page text, its reference and whether it is still needed come from the claim's own query,
    # so a database that drops out after the claim cannot keep the page from going out.
    settings.TMT_SITE_URL = "https://portal.tmt.example"
    incident = open_incident(level=1)
    event = fire_event(incident, rule="ack_follow_up")
    row = outbox_row(Notification.State.PENDING, due=timezone.now() - timedelta(seconds=1), incident=incident)
    Notification.objects.filter(pk=row.pk).update(event=event, channel=Notification.Channel.SMS)
    if claim == "due":
        (held,) = notifications.notifications_claim_due(limit=5)
    else:
        handed_over: list = []
        with monkeypatch.context() as sending:
            sending.setattr(notifications, "_deliver", lambda rows, *, now: handed_over.extend(rows) or [])
            notifications.notifications_deliver(notification_ids=[row.pk])
        (held,) = handed_over
    with django_assert_num_queries(0):
        page_text(held)
        notifications._reference(held)
        notifications._no_longer_needed(held)
        assert held.incident.severity.level == 1


# -- what a page says -----------------------------------------------------------------------------


def test_the_sms_names_the_incident_and_links_to_it_in_few_characters(settings):
    settings.TMT_SITE_URL = "https://ops.tmt.example/IRX/"
    incident = open_incident(level=1, title="T" * 79 + "UV")
    user = person(UserFactory(email=""), sms="+447700901007")
    event = fire_event(incident, summary="S" * 119 + "RQ")
    assert notifications.page_user(event=event, user=user, now=timezone.now(), email_follow_up=timedelta(minutes=5))
    sms = Notification.objects.get(event=event, channel=Notification.Channel.SMS)
    assert sms.body == (
        f"TMT {incident.reference} Sev1: {'T' * 79}U. {'S' * 119}R "
        f"https://ops.tmt.example/IRX/incidents/{incident.reference}/"
    )


def test_an_escalation_goes_to_each_active_chat_hook_that_takes_its_severity_in_order():
    incident = open_incident(level=2, title="Risk checks timing out")
    event = fire_event(incident)
    hooks = {
        name: WebhookEndpoint.objects.create(name=name, url=f"https://chat.example/{name}", **fields)
        for name, fields in [
            ("all", {"max_severity_level": 4}),
            ("sev1-only", {"max_severity_level": 1}),
            ("sev2-and-up", {"max_severity_level": 2}),
            ("retired", {"max_severity_level": 4, "active": False}),
        ]
    }
    now = timezone.now()
    notifications.notify_webhooks(event=event, now=now)
    rows = list(Notification.objects.filter(event=event, channel=Notification.Channel.WEBHOOK).order_by("pk"))
    assert [row.address for row in rows] == [hooks["all"].url, hooks["sev2-and-up"].url]
    assert {row.subject for row in rows} == {"[INCIDENT] TMT System - Sev2 - Risk checks timing out"}
    # What the chat shows under the subject: what happened, then the incident.
    heading = f"{event.summary}\n\nIncident: {incident.reference}\nTitle: Risk checks timing out\n"
    for row in rows:
        assert row.body.startswith(heading)
        assert row.next_attempt_at == now


def test_a_drill_escalation_stays_off_the_chat_hooks():
    WebhookEndpoint.objects.create(name="all", url="https://chat.example/all", max_severity_level=4)
    event = fire_event(open_incident(level=1, is_drill=True))
    notifications.notify_webhooks(event=event, now=timezone.now())
    assert not Notification.objects.filter(event=event).exists()


def test_a_major_page_to_someone_with_only_an_email_goes_at_once_and_a_minor_one_by_email_only():
    now = timezone.now()
    major = fire_event(open_incident(level=1))
    email_only = UserFactory(email="oncall@tmt.example")
    assert notifications.page_user(event=major, user=email_only, now=now, email_follow_up=timedelta(minutes=5))
    (email,) = Notification.objects.filter(event=major)
    assert (email.channel, email.next_attempt_at) == (Notification.Channel.EMAIL, now), "no SMS to follow up"
    minor = fire_event(open_incident(level=3))
    with_phone = person(UserFactory(email="desk@tmt.example"), phone="+447700901010", sms="+447700901011")
    assert notifications.page_user(event=minor, user=with_phone, now=now, email_follow_up=timedelta(minutes=5))
    assert [(n.channel, n.next_attempt_at) for n in Notification.objects.filter(event=minor)] == [
        (Notification.Channel.EMAIL, now)
    ]


def test_without_a_drills_app_a_drill_incidents_page_goes_to_the_person_chosen(monkeypatch):
    # The core does not depend on the drills app: with no one to choose participants, the page
    # goes where the engine sent it.
    monkeypatch.setattr(notification_hooks, "drill_recipients", None)
    now = timezone.now()
    event = fire_event(open_incident(level=3, is_drill=True))
    chosen = UserFactory(email="oncall@tmt.example")

    assert notifications.page_user(event=event, user=chosen, now=now, email_follow_up=timedelta(minutes=5))

    assert list(Notification.objects.filter(event=event).values_list("recipient", "channel")) == [
        (chosen.pk, Notification.Channel.EMAIL)
    ]


def test_every_row_of_a_page_carries_the_incidents_subject():
    # The email's Subject, and what the outbox lists for the SMS and the call.
    incident = open_incident(level=1, title="Order gateway rejecting all orders")
    event = fire_event(incident)
    paged = person(UserFactory(email="oncall@tmt.example"), phone="+447700901020", sms="+447700901021")

    assert notifications.page_user(event=event, user=paged, now=timezone.now(), email_follow_up=timedelta(minutes=5))

    subjects = dict(Notification.objects.filter(event=event).values_list("channel", "subject"))
    expected = "[INCIDENT] TMT System - Sev1 - Order gateway rejecting all orders"
    assert subjects == {"sms": expected, "phone": expected, "email": expected}


def test_someone_with_no_way_to_reach_them_is_on_the_record_as_the_engines_entry_at_the_firing_time():
    incident = open_incident(level=2)
    event = fire_event(incident)
    fired_at = timezone.now() - timedelta(minutes=3)
    nowhere = UserFactory(first_name="Noel", last_name="Nowhere", email="")

    assert not notifications.page_user(event=event, user=nowhere, now=fired_at, email_follow_up=timedelta(minutes=5))

    assert not Notification.objects.filter(event=event).exists()
    entry = incident.timeline.get(action__startswith="Cannot reach")
    assert entry.action == "Cannot reach Noel Nowhere: no phone, SMS number or email on file"
    assert (entry.kind, entry.owner_team, entry.occurred_at) == ("notification", "Escalation engine", fired_at)


def test_a_pages_email_names_the_commander_or_says_none_and_links_under_the_sites_path(settings):
    settings.TMT_SITE_URL = "https://ops.tmt.example/IRX/"
    commander = UserFactory(first_name="Cleo", last_name="Commander")
    led = open_incident(reported_by=commander, level=3, commander=commander)
    unled = open_incident(level=3)
    paged = UserFactory(email="oncall@tmt.example")

    bodies = {}
    for incident in (led, unled):
        event = fire_event(incident)
        notifications.page_user(event=event, user=paged, now=timezone.now(), email_follow_up=timedelta(minutes=5))
        bodies[incident.pk] = Notification.objects.get(event=event).body

    assert "\nCommander: Cleo Commander\n" in bodies[led.pk]
    assert "\nCommander: not assigned\n" in bodies[unled.pk]
    assert bodies[led.pk].endswith(f"\nOpen: https://ops.tmt.example/IRX/incidents/{led.reference}/\n")
