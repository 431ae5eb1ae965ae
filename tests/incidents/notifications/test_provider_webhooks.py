"""The provider's signed webhooks: SMS replies (ACK / 4 / ESC) and voice keypresses (4)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.test import Client
from django.utils import timezone

from incidents import services
from incidents.escalation.models import Deadline, EscalationEvent
from incidents.escalation.services import deadlines_fire_due
from incidents.models import State, TimelineEntry
from incidents.notifications import signatures
from incidents.notifications.models import ProviderReply

pytestmark = pytest.mark.django_db

SECRET = "test-webhook-secret"  # what page_incident sets


def _post(path: str, payload: dict, *, secret: str = SECRET, t: int | None = None, header: str | None = None):
    body = json.dumps(payload).encode()
    signed = header if header is not None else signatures.sign(body, secret=secret, timestamp=t)
    return Client().post(
        path, body, content_type="application/json", headers={signatures.HEADER: signed} if signed else {}
    )


def sms(sender: str, text: str, **kwargs):
    return _post("/provider/sms/", {"id": f"SM{uuid.uuid4().hex}", "from": sender, "body": text}, **kwargs)


def keypress(sender: str, digits: str, **kwargs):
    return _post("/provider/voice/", {"id": f"CA{uuid.uuid4().hex}", "from": sender, "digits": digits}, **kwargs)


def _snapshot(incident) -> tuple:
    incident.refresh_from_db()
    return (
        incident.state,
        TimelineEntry.objects.filter(incident=incident).count(),
        ProviderReply.objects.count(),
        list(Deadline.objects.filter(incident=incident).values_list("pk", "due_at", "cancelled_at").order_by("pk")),
    )


@pytest.mark.parametrize("text", ["ACK", "4", " ack ", "Ack"])
def test_an_sms_reply_acknowledges_and_the_timeline_says_so(page_incident, text):
    paged = page_incident()
    answer = sms(paged.number, text)
    assert answer.status_code == 200, answer.content
    assert answer.json() == {
        "result": "acknowledged",
        "incident": paged.incident.reference,
        "reply": f"{paged.incident.reference} acknowledged. Thank you.",
    }
    paged.incident.refresh_from_db()
    assert paged.incident.state == State.ACKNOWLEDGED and paged.incident.acknowledged_by == paged.user
    entry = TimelineEntry.objects.get(incident=paged.incident, to_state=State.ACKNOWLEDGED)
    assert entry.action.startswith(f"Acknowledged by {paged.user.get_full_name()} by SMS reply")
    assert ProviderReply.objects.get().notification.recipient == paged.user


def test_a_number_written_with_spaces_is_still_recognised(page_incident):
    paged = page_incident()
    spaced = f"{paged.number[:3]} {paged.number[3:7]} {paged.number[7:]}"
    assert sms(spaced, "ACK").status_code == 200


def test_pressing_4_on_the_call_acknowledges_by_voice_keypress(page_incident):
    paged = page_incident()
    answer = keypress(paged.phone, "4")
    assert answer.status_code == 200, answer.content
    entry = TimelineEntry.objects.get(incident=paged.incident, to_state=State.ACKNOWLEDGED)
    assert entry.action.startswith(f"Acknowledged by {paged.user.get_full_name()} by voice keypress")


def test_esc_pages_the_next_level_now(page_incident, team):
    paged = page_incident(level=2)
    assert not EscalationEvent.objects.filter(incident=paged.incident, rule="ack", step=1).exists()
    answer = sms(paged.number, "ESC")
    assert answer.status_code == 200, answer.content
    assert answer.json()["result"] == "escalated"
    paged.incident.refresh_from_db()
    assert paged.incident.state == State.DETECTED  # escalating is not acknowledging
    entry = TimelineEntry.objects.filter(incident=paged.incident, action__startswith="Escalated now by").get()
    assert f"by {paged.user.get_full_name()} by SMS reply: step 1" in entry.action
    # The step is due now: the dispatcher's next look fires it (woken at commit).
    deadlines_fire_due()
    assert EscalationEvent.objects.filter(incident=paged.incident, rule="ack", step=1).exists()


def test_esc_with_no_level_left_is_refused_and_writes_nothing(page_incident):
    paged = page_incident(level=2)
    Deadline.objects.filter(incident=paged.incident, rule="ack", fired_at=None).update(cancelled_at=timezone.now())
    before = _snapshot(paged.incident)
    answer = sms(paged.number, "ESC")
    assert answer.status_code == 409 and "every escalation level has been paged" in answer.json()["detail"]
    assert _snapshot(paged.incident) == before


def test_a_replayed_message_is_refused_and_escalates_once(page_incident):
    paged = page_incident(level=2)
    payload = {"id": "SM-replayed", "from": paged.number, "body": "ESC"}
    assert _post("/provider/sms/", payload).status_code == 200
    before = _snapshot(paged.incident)
    again = _post("/provider/sms/", payload)
    assert again.status_code == 409 and again.json()["error"] == "duplicate"
    assert _snapshot(paged.incident) == before
    assert TimelineEntry.objects.filter(incident=paged.incident, action__startswith="Escalated now").count() == 1


def test_a_reply_naming_an_incident_answers_that_incidents_page(page_incident):
    first = page_incident(title="First incident")
    second = page_incident(title="Second incident")
    assert first.number == second.number
    # Without a reference the most recent page (the second incident's) is answered.
    assert sms(first.number, f"ACK {first.incident.reference}").status_code == 200
    first.incident.refresh_from_db()
    second.incident.refresh_from_db()
    assert first.incident.state == State.ACKNOWLEDGED and second.incident.state == State.DETECTED
    assert sms(first.number, "4").json()["incident"] == second.incident.reference


def test_a_reply_for_an_already_acknowledged_incident_says_who_and_writes_nothing(page_incident, team):
    paged = page_incident()
    services.incident_acknowledge(incident=paged.incident, user=team["im"])
    before = _snapshot(paged.incident)
    answer = sms(paged.number, "ACK")
    assert answer.status_code == 200 and answer.json()["result"] == "already_acknowledged"
    assert f"already acknowledged by {team['im'].get_full_name()} at" in answer.json()["reply"]
    assert _snapshot(paged.incident) == before


def test_an_sms_reply_from_an_unknown_number_is_refused_and_writes_nothing(page_incident):
    paged = page_incident()
    before = _snapshot(paged.incident)
    answer = sms("+447700900999", "ACK")
    assert answer.status_code == 404
    assert answer.json()["detail"] == "The number +447700900999 belongs to nobody in the portal."
    assert _snapshot(paged.incident) == before


@pytest.mark.parametrize(
    "how",
    ["wrong secret", "tampered body", "no header", "no timestamp", "digest only", "stale", "from the future"],
)
def test_a_reply_with_a_bad_signature_is_refused_and_writes_nothing(page_incident, how):
    paged = page_incident()
    before = _snapshot(paged.incident)
    payload = {"id": "SM1", "from": paged.number, "body": "ACK"}
    body = json.dumps(payload).encode()
    good = signatures.sign(body, secret=SECRET)
    if how == "wrong secret":
        answer = _post("/provider/sms/", payload, secret="not-the-secret")
    elif how == "tampered body":
        answer = _post("/provider/sms/", {**payload, "body": "ESC"}, header=good)
    elif how == "no header":
        answer = _post("/provider/sms/", payload, header="")
    elif how == "no timestamp":
        answer = _post("/provider/sms/", payload, header=good.split(",", 1)[1])
    elif how == "digest only":
        answer = _post("/provider/sms/", payload, header=good.split(",", 1)[0])
    elif how == "stale":
        answer = _post("/provider/sms/", payload, t=int(time.time()) - 3600)
    else:
        answer = _post("/provider/sms/", payload, t=int(time.time()) + 3600)
    assert answer.status_code == 403 and answer.json()["error"] == "bad_signature", answer.content
    assert _snapshot(paged.incident) == before


def test_a_keypress_for_a_closed_incident_is_refused_and_writes_nothing(page_incident, team):
    paged = page_incident()
    services.incident_transition(incident=paged.incident, name="cancel", user=team["im"], reason="False alarm")
    before = _snapshot(paged.incident)
    answer = keypress(paged.phone, "4")
    assert answer.status_code == 409
    assert answer.json()["detail"] == f"{paged.incident.reference} is cancelled: there is nothing to acknowledge."
    assert _snapshot(paged.incident) == before


@pytest.mark.parametrize("text", ["YES", "ACK ACK ACK", ""])
def test_a_reply_the_portal_does_not_understand_is_refused_with_help(page_incident, text):
    paged = page_incident()
    before = _snapshot(paged.incident)
    answer = sms(paged.number, text)
    assert answer.status_code == 400
    assert _snapshot(paged.incident) == before


def test_other_keys_do_nothing(page_incident):
    paged = page_incident()
    before = _snapshot(paged.incident)
    answer = keypress(paged.phone, "9")
    assert answer.status_code == 400 and "Press 4 to acknowledge." in answer.json()["detail"]
    assert _snapshot(paged.incident) == before


def test_webhooks_are_off_without_a_secret(page_incident, settings):
    paged = page_incident()
    settings.TMT_SMS_PROVIDER_WEBHOOK_SECRET = ""
    before = _snapshot(paged.incident)
    assert sms(paged.number, "ACK").status_code == 503
    assert _snapshot(paged.incident) == before


def test_a_body_that_is_not_a_json_object_is_refused(page_incident):
    page_incident()
    for body in (b"[1]", b"not json", b"\xff\xfe"):
        answer = Client().post(
            "/provider/sms/",
            body,
            content_type="application/json",
            headers={signatures.HEADER: signatures.sign(body, secret=SECRET)},
        )
        assert answer.status_code == 400, body


# -- the signature's time window, at its edges ------------------------------------------------


@pytest.mark.parametrize(
    ("offset_s", "accepted"),
    [(-301, False), (-300, True), (-299, True), (0, True), (299, True), (300, True), (301, False)],
)
def test_signature_timestamp_window_edges(offset_s, accepted):
    body = b'{"id": "SM1"}'
    now = 1_800_000_000
    header = signatures.sign(body, secret=SECRET, timestamp=now + offset_s)
    if accepted:
        assert signatures.verify(body, header, secret=SECRET, window_s=300, now=now) == now + offset_s
    else:
        with pytest.raises(signatures.SignatureError, match="refused as a replay"):
            signatures.verify(body, header, secret=SECRET, window_s=300, now=now)


def test_the_window_setting_reaches_the_webhook(page_incident, settings):
    paged = page_incident()
    settings.TMT_SMS_PROVIDER_SIGNATURE_WINDOW_SECONDS = 60
    assert sms(paged.number, "9", t=int(time.time()) - 120).status_code == 403
    # Inside the window the signature passes (and the key is then refused for what it is).
    assert keypress(paged.phone, "9", t=int(time.time()) - 30).status_code == 400


def test_a_rotated_secret_may_send_two_digests():
    body = b"{}"
    old = signatures.sign(body, secret="old", timestamp=100)
    new = signatures.sign(body, secret="new", timestamp=100).split(",")[1]
    assert signatures.verify(body, f"{old},{new}", secret="new", window_s=10, now=100) == 100


@pytest.mark.parametrize("stamp", ["²", "١٧٠٠٠٠٠٠٠٠", "+1700000000", " 17"])
def test_a_timestamp_of_other_digits_is_refused_as_a_bad_signature_not_a_500(stamp):
    from incidents.notifications.signatures import SignatureError, verify

    with pytest.raises(SignatureError):
        verify(b"{}", f"t={stamp},v1=00", secret="s", window_s=300, now=1_700_000_000)
