"""What each channel hands over, field by field, and how each kind of failure is recorded.

The email goes to a real SMTP server, the webhook and the SMS/voice request to real HTTP servers
on loopback: what is asserted here is what a mail system, a chat tool or the SMS provider
received, and what the outbox row, its attempts and the incident's timeline say afterwards."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from incidents import wakeups
from incidents.models import TimelineEntry
from incidents.notifications import services as notifications
from incidents.notifications.hooks import notification_hooks
from incidents.notifications.models import Notification, NotificationAttempt
from tests.factories import open_incident
from tests.incidents.notifications.rows import (
    BODY,
    SUBJECT,
    acknowledged_follow_up,
    attempts_of,
    claimed,
    fire_event,
    outbox_row,
)
from tests.processes import free_port
from tests.smtp import body

pytestmark = pytest.mark.django_db


class ChatHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        server: ChatServer = self.server  # type: ignore[assignment]
        content = self.rfile.read(int(self.headers["Content-Length"]))
        server.received.append((dict(self.headers), content))
        status, text = server.answer
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, *args) -> None:
        pass


class ChatServer(ThreadingHTTPServer):
    """A chat tool's incoming webhook: records each request, answers with `answer`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.received: list[tuple[dict, bytes]] = []
        self.answer: tuple[int, str] = (200, "ok")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/incidents"


@pytest.fixture
def chat():
    server = ChatServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def wakes(monkeypatch):
    """The moments the page dispatcher was asked to wake for (a NOTIFY is only sent at commit).

    Opening an incident arms its deadlines, which wake the deadline channel: not counted here."""
    asked: list = []

    def wake(channel, *, due_at=None):
        if channel == wakeups.NOTIFICATIONS:
            asked.append(due_at)

    monkeypatch.setattr(wakeups, "wake", wake)
    return asked


def failure_entries(incident) -> list[TimelineEntry]:
    return list(incident.timeline.filter(kind=TimelineEntry.Kind.NOTIFICATION, data__failed=True))


# -- email ----------------------------------------------------------------------------------------


def test_an_email_page_carries_its_id_key_and_incident_to_the_mail_server(settings, mailbox):
    settings.DEFAULT_FROM_EMAIL = "TMT Incidents <incidents@tmt.example>"
    incident = open_incident(level=1)
    row = claimed(Notification.Channel.EMAIL, "oncall@tmt.example", incident=incident)
    assert notifications.notification_send(notification=row) == "sent"
    (message,) = mailbox.wait_for("oncall@tmt.example", 1)
    assert message["Message-ID"] == f"<tmt-notification-{row.pk}@tmt.example>"
    assert message["Idempotency-Key"] == f"tmt-notification-{row.pk}"
    assert message["X-TMT-Incident"] == incident.reference
    assert message["Subject"] == SUBJECT
    assert message["To"] == "oncall@tmt.example"
    assert body(message).strip() == BODY


@pytest.mark.parametrize(
    ("sender", "domain"),
    [
        ("incidents@tmt.example", "tmt.example"),
        ("tmt-incidents", "localhost"),
        ("Desk <desk@ops.tmt.example>", "ops.tmt.example"),
        ('"ops@desk"@tmt.example', "tmt.example"),  # a quoted local part may hold an @
    ],
)
def test_the_message_id_is_in_the_senders_domain_or_localhost(settings, mailbox, sender, domain):
    settings.DEFAULT_FROM_EMAIL = sender
    row = claimed(Notification.Channel.EMAIL, "trainee@tmt.example")
    assert notifications.notification_send(notification=row) == "sent"
    (message,) = mailbox.wait_for("trainee@tmt.example", 1)
    assert message["Message-ID"] == f"<tmt-notification-{row.pk}@{domain}>"


def test_an_email_about_no_incident_names_none(mailbox):
    row = claimed(Notification.Channel.EMAIL, "trainee@tmt.example", subject="Drill on Thursday")
    assert notifications.notification_send(notification=row) == "sent"
    (message,) = mailbox.wait_for("trainee@tmt.example", 1)
    assert message["X-TMT-Incident"] is None and message["Subject"] == "Drill on Thursday"


def test_an_apps_email_headers_are_added(mailbox, monkeypatch):
    monkeypatch.setattr(notification_hooks, "email_headers", [lambda n: {"List-Unsubscribe": f"<https://x/{n.pk}>"}])
    row = claimed(Notification.Channel.EMAIL, "subscriber@example.com")
    assert notifications.notification_send(notification=row) == "sent"
    (message,) = mailbox.wait_for("subscriber@example.com", 1)
    assert message["List-Unsubscribe"] == f"<https://x/{row.pk}>"


def test_a_recipient_the_mail_server_refuses_fails_for_good_on_the_first_try(mailbox, wakes):
    mailbox.refuse("gone@tmt.example")
    incident = open_incident(level=2)
    row = claimed(Notification.Channel.EMAIL, "gone@tmt.example", incident=incident)
    outcome = notifications.notification_send(notification=row)
    assert outcome.startswith("failed: recipient refused: ") and "gone@tmt.example" in outcome
    row.refresh_from_db()
    assert (row.state, row.attempts) == (Notification.State.FAILED, 1)
    assert row.last_error.startswith("recipient refused: ")
    assert [outcome for outcome, _ in attempts_of(row)] == [NotificationAttempt.Outcome.PERMANENT]
    assert not wakes, "nothing to retry"


def test_a_mail_server_that_is_down_is_tried_again_later(settings, wakes):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.TMT_NOTIFY_BACKOFF_SECONDS = 30
    row = claimed(Notification.Channel.EMAIL, "oncall@tmt.example", incident=open_incident(level=2))
    before = timezone.now()
    outcome = notifications.notification_send(notification=row)
    assert outcome.startswith("retry in 30s: mail server: ")
    row.refresh_from_db()
    assert (row.state, row.attempts) == (Notification.State.PENDING, 1)
    assert row.last_error.startswith("mail server: ")
    assert before + timedelta(seconds=30) <= row.next_attempt_at <= timezone.now() + timedelta(seconds=30)
    assert [outcome for outcome, _ in attempts_of(row)] == [NotificationAttempt.Outcome.TRANSIENT]
    assert wakes == [row.next_attempt_at]
    assert not failure_entries(row.incident), "a retry is not a failure on the incident's record"


# -- chat webhooks --------------------------------------------------------------------------------


def test_a_chat_webhook_gets_the_page_and_the_incident_in_slacks_shape(settings, chat):
    settings.TMT_SITE_URL = "https://portal.tmt.example/"
    incident = open_incident(level=1, title="Circuit breaker not tripping")
    event = fire_event(incident, summary="Paged Alice Smith (on-call engineer)")
    row = claimed(Notification.Channel.WEBHOOK, chat.url, incident=incident, event=event)
    assert notifications.notification_send(notification=row) == "sent"
    ((headers, content),) = chat.received
    assert headers["Idempotency-Key"] == f"tmt-notification-{row.pk}"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(content) == {
        "text": f"*{SUBJECT}*\n{BODY}",
        "incident": {
            "id": incident.reference,
            "title": "Circuit breaker not tripping",
            "severity": 1,
            "state": incident.state,
            "url": f"https://portal.tmt.example/incidents/{incident.reference}/",
        },
        "event": "Paged Alice Smith (on-call engineer)",
    }


def test_a_portal_served_under_a_path_links_to_the_incident_under_that_path(settings, chat):
    settings.TMT_SITE_URL = "https://ops.tmt.example/IRX"
    incident = open_incident(level=2)
    row = claimed(Notification.Channel.WEBHOOK, chat.url, incident=incident)
    assert notifications.notification_send(notification=row) == "sent"
    ((_, content),) = chat.received
    assert json.loads(content)["incident"]["url"] == f"https://ops.tmt.example/IRX/incidents/{incident.reference}/"


def test_a_chat_message_keeps_the_first_2500_characters_of_the_body(chat):
    incident = open_incident(level=2)
    row = claimed(Notification.Channel.WEBHOOK, chat.url, incident=incident, body="x" * 2499 + "yz")
    assert notifications.notification_send(notification=row) == "sent"
    ((_, content),) = chat.received
    payload = json.loads(content)
    assert payload["text"].endswith("\n" + "x" * 2499 + "y")
    assert payload["event"] is None


def test_an_apps_own_webhook_body_is_sent_as_prepared_with_the_key(chat, monkeypatch):
    seen: list[int] = []

    def not_mine(notification):
        seen.append(notification.pk)
        return None

    def prepared(notification):
        return b'{"event": "incident.published"}', {"Content-Type": "application/json", "X-Signed": "sig"}

    monkeypatch.setattr(notification_hooks, "webhook_request", [not_mine, prepared])
    row = claimed(Notification.Channel.WEBHOOK, chat.url)
    assert notifications.notification_send(notification=row) == "sent"
    ((headers, content),) = chat.received
    assert seen == [row.pk]
    assert content == b'{"event": "incident.published"}'
    assert headers["X-Signed"] == "sig" and headers["Idempotency-Key"] == f"tmt-notification-{row.pk}"


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (399, None),
        (400, False),
        (404, False),
        (407, False),
        (408, True),
        (409, False),
        (428, False),
        (429, True),
        (430, False),
        (499, False),
        (500, True),
        (503, True),
    ],
)
def test_which_answers_are_tried_again_and_which_fail_for_good(settings, chat, status, retried):
    settings.TMT_NOTIFY_BACKOFF_SECONDS = 10
    settings.TMT_NOTIFY_MAX_ATTEMPTS = 5  # the second of five tries: a transient failure is retried
    chat.answer = (status, "channel_not_found " + "." * 300)
    row = claimed(Notification.Channel.WEBHOOK, chat.url, incident=open_incident(level=2), attempts=1)
    outcome = notifications.notification_send(notification=row)
    row.refresh_from_db()
    if retried is None:  # neither an error nor a refusal: the chat tool took it
        assert outcome == "sent" and row.state == Notification.State.SENT
    elif retried:
        # The second failed try waits twice the backoff.
        assert outcome == f"retry in 20s: HTTP {status}"
        assert (row.state, row.attempts, row.last_error) == (Notification.State.PENDING, 2, f"HTTP {status}")
    else:
        expected = f"HTTP {status}: channel_not_found " + "." * 182  # the answer cut at 200 characters
        assert outcome == f"failed: {expected}"
        assert (row.state, row.attempts, row.last_error) == (Notification.State.FAILED, 2, expected)


def test_a_chat_tool_that_cannot_be_reached_is_tried_again(settings):
    settings.TMT_NOTIFY_BACKOFF_SECONDS = 10
    row = claimed(Notification.Channel.WEBHOOK, f"http://127.0.0.1:{free_port()}/hook", incident=open_incident())
    assert notifications.notification_send(notification=row).startswith("retry in 10s: ConnectError: ")
    row.refresh_from_db()
    assert row.state == Notification.State.PENDING and row.last_error.startswith("ConnectError: ")


# -- SMS and voice through the provider -----------------------------------------------------------


def test_the_provider_is_given_the_number_channel_text_and_reference(settings, sms_provider):
    settings.TMT_SMS_PROVIDER_TOKEN = "prov-token"
    incident = open_incident(level=1)
    sms = claimed(Notification.Channel.SMS, "+447700900101", incident=incident)
    call = claimed(Notification.Channel.PHONE, "+447700900102", incident=incident)
    reminder = claimed(Notification.Channel.SMS, "+447700900103", body="Drill at 10:00.")
    for row in (sms, call, reminder):
        assert notifications.notification_send(notification=row) == "sent"
    received = {p["to"]: p for p in sms_provider.received}
    assert {k: received["+447700900101"][k] for k in ("channel", "body", "reference", "_key")} == {
        "channel": "sms",
        "body": BODY,
        "reference": f"{incident.reference}/{sms.pk}",
        "_key": f"tmt-notification-{sms.pk}",
    }
    assert received["+447700900102"]["channel"] == "voice"
    assert received["+447700900102"]["reference"] == f"{incident.reference}/{call.pk}"
    assert received["+447700900103"]["reference"] == f"notification/{reminder.pk}"
    assert sms_provider.authorizations == ["Bearer prov-token"] * 3


def test_no_token_sends_no_authorization(settings, sms_provider):
    settings.TMT_SMS_PROVIDER_TOKEN = ""
    row = claimed(Notification.Channel.SMS, "+447700900104")
    assert notifications.notification_send(notification=row) == "sent"
    assert sms_provider.authorizations == [None]


def test_with_no_provider_configured_an_sms_fails_for_good_saying_so(settings):
    settings.TMT_SMS_PROVIDER_URL = ""
    row = claimed(Notification.Channel.SMS, "+447700900105", attempts=0)
    assert notifications.notification_send(notification=row) == (
        "failed: no SMS/voice provider configured (TMT_SMS_PROVIDER_URL)"
    )


# -- the record of a failure ----------------------------------------------------------------------


def test_each_transient_failure_doubles_the_wait(settings, wakes):
    settings.TMT_NOTIFY_BACKOFF_SECONDS = 10
    settings.TMT_NOTIFY_MAX_ATTEMPTS = 9
    for attempts, wait in ((0, 10), (1, 20), (2, 40), (3, 80)):
        row = claimed(Notification.Channel.SMS, f"+4477009002{attempts:02}", attempts=attempts)
        before = timezone.now()
        outcome = notifications._record_failure(row, "HTTP 503", permanent=False)
        after = timezone.now()
        assert outcome == f"retry in {wait}s: HTTP 503"
        row.refresh_from_db()
        assert (row.state, row.attempts) == (Notification.State.PENDING, attempts + 1)
        assert before + timedelta(seconds=wait) <= row.next_attempt_at <= after + timedelta(seconds=wait)
        (attempt,) = NotificationAttempt.objects.filter(notification=row)
        assert (attempt.outcome, attempt.detail) == (NotificationAttempt.Outcome.TRANSIENT, "HTTP 503")
        assert before <= attempt.attempted_at <= after
        assert wakes[-1] == row.next_attempt_at
    assert len(wakes) == 4


def test_a_failures_detail_is_kept_to_500_characters(wakes):
    detail = "d" * 499 + "ef"
    row = claimed(Notification.Channel.SMS, "+447700900301")
    notifications._record_failure(row, detail, permanent=False)
    row.refresh_from_db()
    assert row.last_error == "d" * 499 + "e"
    assert attempts_of(row) == [(NotificationAttempt.Outcome.TRANSIENT, "d" * 499 + "e")]
    failed = claimed(Notification.Channel.SMS, "+447700900302")
    assert notifications._record_failure(failed, detail, permanent=True) == f"failed: {detail}"
    failed.refresh_from_db()
    assert failed.last_error == "d" * 499 + "e"
    assert attempts_of(failed) == [(NotificationAttempt.Outcome.PERMANENT, "d" * 499 + "e")]


def test_a_page_that_fails_for_good_is_on_the_incidents_record(settings, wakes):
    incident = open_incident(level=1)
    event = fire_event(incident)
    row = claimed(Notification.Channel.SMS, "+447700900401", incident=incident, event=event, attempts=4)
    before = timezone.now()
    detail = "HTTP 400: " + "n" * 300
    assert notifications._record_failure(row, detail, permanent=True) == f"failed: {detail}"
    row.refresh_from_db()
    assert (row.state, row.attempts, row.last_error) == (Notification.State.FAILED, 5, detail)
    (entry,) = failure_entries(incident)
    assert entry.action == f"SMS to +447700900401 FAILED after 5 attempt(s): {detail[:200]}"
    assert entry.owner_team == "Escalation engine"
    assert entry.data == {"notification": row.pk, "failed": True}
    assert before <= entry.occurred_at <= timezone.now()
    (attempt,) = NotificationAttempt.objects.filter(notification=row)
    assert attempt.attempted_at == entry.occurred_at and attempt.outcome == NotificationAttempt.Outcome.PERMANENT
    assert not wakes


@pytest.fixture
def chain_moves(monkeypatch):
    moved: list = []
    monkeypatch.setattr(notification_hooks, "page_failed", [lambda *, event, now: moved.append((event.pk, now))])
    return moved


def test_the_chain_moves_on_only_when_every_page_to_the_person_failed(chain_moves):
    incident = open_incident(level=1)
    event = fire_event(incident)
    sms = claimed(Notification.Channel.SMS, "+447700900501", incident=incident, event=event)
    call = claimed(Notification.Channel.PHONE, "+447700900502", incident=incident, event=event)
    notifications._record_failure(sms, "HTTP 400: bad number", permanent=True)
    assert chain_moves == [], "the call may still reach them"
    before = timezone.now()
    notifications._record_failure(call, "HTTP 400: bad number", permanent=True)
    ((event_pk, at),) = chain_moves
    assert event_pk == event.pk and before <= at <= timezone.now()


def test_a_failed_chat_message_does_not_move_the_chain_on(chain_moves):
    incident = open_incident(level=1)
    event = fire_event(incident)
    hook = claimed(Notification.Channel.WEBHOOK, "https://chat.example/hook", incident=incident, event=event)
    claimed(Notification.Channel.SMS, "+447700900601", incident=incident, event=event, state=Notification.State.FAILED)
    notifications._record_failure(hook, "HTTP 404: no such channel", permanent=True)
    assert chain_moves == []
    assert failure_entries(incident)[0].action.startswith("Webhook to https://chat.example/hook FAILED")


def test_a_chat_message_left_pending_does_not_hold_the_chain_on_a_person_nobody_reached(chain_moves):
    incident = open_incident(level=1)
    event = fire_event(incident)
    claimed(Notification.Channel.WEBHOOK, "https://chat.example/hook", incident=incident, event=event)
    email = claimed(Notification.Channel.EMAIL, "oncall@tmt.example", incident=incident, event=event)
    notifications._record_failure(email, "recipient refused", permanent=True)
    assert [pk for pk, _ in chain_moves] == [event.pk]


def test_with_no_sms_or_call_every_email_to_the_person_must_fail_first(chain_moves):
    incident = open_incident(level=1)
    event = fire_event(incident)
    work = claimed(Notification.Channel.EMAIL, "oncall@tmt.example", incident=incident, event=event)
    home = claimed(Notification.Channel.EMAIL, "oncall@home.example", incident=incident, event=event)
    notifications._record_failure(work, "recipient refused", permanent=True)
    assert chain_moves == [], "the other address may still reach them"
    notifications._record_failure(home, "recipient refused", permanent=True)
    assert [pk for pk, _ in chain_moves] == [event.pk]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("postgres")
def test_a_persons_two_pages_failing_at_once_move_the_chain_on_once(chain_moves, monkeypatch):
    # The SMS and the call fail in two sending threads at the same moment. Each, alone, would see
    # the other still "sending" and leave the chain waiting on a person nobody reached; the event's
    # row lock makes the second wait for the first and see it failed.
    incident = open_incident(level=1)
    event = fire_event(incident)
    sms = claimed(Notification.Channel.SMS, "+447700900901", incident=incident, event=event)
    call = claimed(Notification.Channel.PHONE, "+447700900902", incident=incident, event=event)
    judged: list[bool] = []
    unreachable = notifications._event_unreachable

    def other_waits_on_a_lock() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            return cursor.fetchone()[0] > 0

    def judged_then_wait_for_the_other(event):
        # Neither commits until both have judged (the race, as without the lock) or the other is
        # waiting on the event's lock (as with it), however slow the machine.
        answer = unreachable(event)
        judged.append(answer)
        deadline = time.monotonic() + 20
        while len(judged) < 2 and not other_waits_on_a_lock() and time.monotonic() < deadline:
            time.sleep(0.02)
        return answer

    monkeypatch.setattr(notifications, "_event_unreachable", judged_then_wait_for_the_other)

    def fail(row):
        try:
            notifications._record_failure(row, "HTTP 400: number not reachable", permanent=True)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fail, args=(row,)) for row in (sms, call)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [pk for pk, _ in chain_moves] == [event.pk]
    assert set(Notification.objects.filter(event=event).values_list("state", flat=True)) == {"failed"}


def test_a_transient_failure_does_not_move_the_chain_on(chain_moves, wakes):
    incident = open_incident(level=1)
    sms = claimed(Notification.Channel.SMS, "+447700900701", incident=incident, event=fire_event(incident))
    notifications._record_failure(sms, "HTTP 503", permanent=False)
    assert chain_moves == [] and not failure_entries(incident)


def test_a_failure_of_a_row_taken_over_meanwhile_records_nothing(chain_moves, wakes):
    incident = open_incident(level=1)
    event = fire_event(incident)
    for permanent in (False, True):
        row = claimed(Notification.Channel.SMS, f"+44770090080{int(permanent)}", incident=incident, event=event)
        # Another delivery took it over: its claim, not ours, is on the row now.
        Notification.objects.filter(pk=row.pk).update(claimed_at=row.claimed_at + timedelta(seconds=21))
        assert notifications._record_failure(row, "HTTP 503", permanent=permanent) == notifications.SUPERSEDED
        row.refresh_from_db()
        assert (row.state, row.attempts, row.last_error) == (Notification.State.SENDING, 0, "")
        assert attempts_of(row) == []
    assert chain_moves == [] and wakes == [] and not failure_entries(incident)


def test_a_skip_of_a_row_taken_over_meanwhile_records_nothing():
    incident = open_incident(level=1)
    incident_event = fire_event(incident, rule="ack_timeout")
    row = claimed(Notification.Channel.EMAIL, "oncall@tmt.example", incident=incident, event=incident_event)
    Notification.objects.filter(pk=row.pk).update(claimed_at=row.claimed_at + timedelta(seconds=21))
    assert notifications._record_skipped(row, timezone.now()) == notifications.SUPERSEDED
    row.refresh_from_db()
    assert row.state == Notification.State.SENDING and attempts_of(row) == []


def test_a_follow_up_after_the_acknowledgement_is_skipped_and_says_why(settings, mailbox):
    incident = open_incident(level=1)
    event = fire_event(incident, rule="ack_follow_up")
    row = claimed(Notification.Channel.EMAIL, "oncall@tmt.example", incident=incident, event=event)
    incident.acknowledged_at = timezone.now()
    incident.save(update_fields=["acknowledged_at"])
    row.incident.acknowledged_at = incident.acknowledged_at
    now = timezone.now()
    assert notifications._deliver([row], now=now) == ["skipped: no longer needed"]
    row.refresh_from_db()
    assert row.state == Notification.State.SKIPPED
    (attempt,) = NotificationAttempt.objects.filter(notification=row)
    assert (attempt.outcome, attempt.detail, attempt.attempted_at) == (
        NotificationAttempt.Outcome.SKIPPED,
        "not sent: the incident was acknowledged or closed meanwhile",
        now,
    )
    assert mailbox.to("oncall@tmt.example") == []


def test_a_follow_up_skipped_by_the_dispatcher_is_logged_at_that_moment(mailbox):
    row = acknowledged_follow_up(open_incident(level=1))
    before = timezone.now()
    assert notifications.notification_send(notification=row) == "skipped: no longer needed"
    (attempt,) = NotificationAttempt.objects.filter(notification=row)
    assert before <= attempt.attempted_at <= timezone.now()


def test_a_page_for_another_rule_is_sent_even_after_the_acknowledgement(mailbox):
    incident = open_incident(level=1)
    event = fire_event(incident, rule="sev1_executives")
    row = claimed(Notification.Channel.EMAIL, "cto@tmt.example", incident=incident, event=event)
    row.incident.acknowledged_at = timezone.now()
    assert notifications._deliver([row], now=timezone.now()) == ["sent"]
    mailbox.wait_for("cto@tmt.example", 1)


def test_a_batch_forgets_the_rows_of_a_firing_rolled_back_so_they_can_be_added_again():
    incident = open_incident(level=1)

    def row(address):
        return Notification(
            incident=incident,
            channel=Notification.Channel.EMAIL,
            address=address,
            subject="s",
            body="b",
            next_attempt_at=timezone.now(),
        )

    batch = notifications.NotificationBatch()
    batch.add(row("first@tmt.example"))
    mark = batch.mark()
    batch.add(row("second@tmt.example"))
    batch.add(row("second@tmt.example"))  # the same address twice in one firing: once
    assert [r.address for r in batch.rows] == ["first@tmt.example", "second@tmt.example"]
    batch.discard_since(mark)
    batch.add(row("second@tmt.example"))
    assert [r.address for r in batch.rows] == ["first@tmt.example", "second@tmt.example"]


# -- claiming -------------------------------------------------------------------------------------


@pytest.fixture(params=["skip locked", "conditional update"])
def claim_kind(request, monkeypatch):
    """Both ways of claiming: SKIP LOCKED (PostgreSQL), and the conditional UPDATE a database
    without it (SQLite, the local default) uses, run here on PostgreSQL by hiding the feature."""
    if request.param == "conditional update":
        monkeypatch.setattr(connection.features, "has_select_for_update_skip_locked", False)
    return request.param


@pytest.mark.usefixtures("claim_kind")
def test_a_row_is_claimed_when_due_and_not_a_moment_before(settings):
    settings.TMT_NOTIFY_TAKEOVER_SECONDS = 20
    now = timezone.now()
    pending, sending = Notification.State.PENDING, Notification.State.SENDING
    due_now = outbox_row(pending, due=now)
    outbox_row(pending, due=now + timedelta(milliseconds=1))
    stale = outbox_row(sending, due=now - timedelta(minutes=1), claimed_at=now - timedelta(seconds=20, milliseconds=1))
    outbox_row(sending, due=now - timedelta(minutes=1), claimed_at=now - timedelta(seconds=20))
    for done in (Notification.State.SENT, Notification.State.FAILED, Notification.State.SKIPPED):
        outbox_row(done, due=now - timedelta(minutes=5), claimed_at=now - timedelta(minutes=5))
    rows = notifications.notifications_claim_due(limit=10, now=now)
    assert sorted(row.pk for row in rows) == sorted([due_now.pk, stale.pk])
    for row in rows:
        assert (row.state, row.claimed_at) == (sending, now)
        row.refresh_from_db()
        assert (row.state, row.claimed_at) == (sending, now)
    assert notifications.notifications_claim_due(limit=10, now=now) == [], "a claim is not claimed again"


@pytest.mark.usefixtures("claim_kind")
def test_a_claim_takes_no_more_than_its_limit_the_most_urgent_first():
    now = timezone.now()
    incident = open_incident(level=1)
    pending = Notification.State.PENDING
    # Written in another order than they fell due: the claim goes by due time, then by row.
    new_email = outbox_row(pending, due=now - timedelta(seconds=10), incident=incident)
    old_email = outbox_row(pending, due=now - timedelta(seconds=30), incident=incident)
    call = outbox_row(pending, due=now - timedelta(seconds=5), incident=incident, channel=Notification.Channel.PHONE)
    sms = outbox_row(pending, due=now - timedelta(seconds=6), incident=incident, channel=Notification.Channel.SMS)
    first = notifications.notifications_claim_due(limit=3, now=now)
    assert [row.pk for row in first] == [sms.pk, call.pk, old_email.pk]
    assert Notification.objects.get(pk=new_email.pk).state == pending, "past the limit: left for the next claim"
    assert [row.pk for row in notifications.notifications_claim_due(limit=3, now=now)] == [new_email.pk]


def test_without_skip_locked_a_row_another_dispatcher_claimed_meanwhile_is_not_claimed_again(monkeypatch):
    monkeypatch.setattr(connection.features, "has_select_for_update_skip_locked", False)
    now = timezone.now()
    row = outbox_row(Notification.State.PENDING, due=now - timedelta(seconds=1))
    theirs = now - timedelta(milliseconds=300)
    real_filter = Notification.objects.filter

    def filter_after_another_claim(*args, **kwargs):
        if kwargs.get("pk") == row.pk:  # our claim's UPDATE: the other dispatcher got there first
            real_filter(pk=row.pk).update(state=Notification.State.SENDING, claimed_at=theirs)
        return real_filter(*args, **kwargs)

    with monkeypatch.context() as race:
        race.setattr(Notification.objects, "filter", filter_after_another_claim)
        assert notifications.notifications_claim_due(limit=5, now=now) == []
    assert Notification.objects.get(pk=row.pk).claimed_at == theirs


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("postgres")
def test_a_row_another_dispatcher_holds_is_skipped_not_waited_for():
    now = timezone.now()
    held = outbox_row(Notification.State.PENDING, due=now - timedelta(seconds=2))
    free = outbox_row(Notification.State.PENDING, due=now - timedelta(seconds=1))
    locked, release = threading.Event(), threading.Event()

    def other_dispatcher():
        try:
            with transaction.atomic():
                list(Notification.objects.select_for_update().filter(pk=held.pk))
                locked.set()
                release.wait(20)
        finally:
            connections.close_all()

    other = threading.Thread(target=other_dispatcher)
    other.start()
    try:
        assert locked.wait(20)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")  # waiting on the lock fails the test, not hangs it
        assert [row.pk for row in notifications.notifications_claim_due(limit=5, now=now)] == [free.pk]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")  # a session setting: later tests must not inherit it
        release.set()
        other.join(20)
    assert Notification.objects.get(pk=held.pk).state == Notification.State.PENDING
    assert [row.pk for row in notifications.notifications_claim_due(limit=5, now=now)] == [held.pk]


def test_deliver_by_id_reports_each_outcome_and_what_it_left(mailbox, settings):
    settings.TMT_SMS_PROVIDER_URL = ""
    now = timezone.now()
    pending = Notification.State.PENDING
    email = outbox_row(pending, due=now)
    sms = outbox_row(pending, due=now, channel=Notification.Channel.SMS)
    later = outbox_row(pending, due=now + timedelta(minutes=1))
    Notification.objects.filter(pk=email.pk).update(attempts=1, last_error="HTTP 503")  # an earlier try failed
    outcome = notifications.notifications_deliver(notification_ids=[email.pk, sms.pk, email.pk, later.pk], now=now)
    assert outcome == "sent 1, failed 1, not due or already handled 1"
    assert notifications.notifications_deliver(notification_ids=[email.pk], now=now) == "not due or already handled 1"
    assert notifications.notifications_deliver(notification_ids=[], now=now) == "nothing"
    email.refresh_from_db()
    assert (email.state, email.claimed_at, email.attempts, email.last_error) == (Notification.State.SENT, now, 2, "")
