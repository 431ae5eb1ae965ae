"""What raising, submitting and signing off a regulatory notification records and refuses: the due
time of each window at its edge, the timeline entry as the regulator's auditor reads it, the
person on each row, one obligation per incident and category, and the messages people see."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from incidents import business_days, services
from incidents.escalation import services as escalation
from incidents.escalation.models import Deadline, EscalationEvent, RegulatoryCategory, RegulatoryObligation
from incidents.models import TimelineEntry
from incidents.notifications.models import Notification
from tests.factories import open_incident

pytestmark = pytest.mark.django_db

RAISED = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)  # a Wednesday


def category(key: str, window: str, grace=None, *, compliance=False) -> RegulatoryCategory:
    return RegulatoryCategory.objects.create(
        key=key,
        name=key.replace("-", " ").title(),
        window=window,
        immediate_grace=grace,
        reminder_before=timedelta(minutes=10),
        is_compliance=compliance,
    )


@pytest.mark.parametrize(
    ("window", "grace", "due"),
    [
        ("immediate", timedelta(minutes=45), RAISED + timedelta(minutes=45)),
        ("immediate", None, RAISED + timedelta(hours=1)),  # "immediate" with no grace set: one hour
        ("within_24h", None, RAISED + timedelta(hours=24)),
        ("business_day", None, None),  # the next business day's close (holidays are rows)
    ],
    ids=["immediate-45min", "immediate-default-1h", "24h", "business-day"],
)
def test_each_window_sets_its_due_time_from_the_raise(team, window, grace, due):
    incident = open_incident(reported_by=team["oncall1"], level=3)
    category(f"test-{window}", window, grace)

    obligation = escalation.regulatory_raise(incident=incident, category_key=f"test-{window}", now=RAISED)
    due = due or business_days.end_of_next_business_day(RAISED)

    assert obligation.due_at == due
    assert due > RAISED
    # The page that it is due falls at that moment, the reminder before it.
    steps = dict(Deadline.objects.filter(rule=f"regulatory:{obligation.pk}").values_list("step", "due_at"))
    assert steps[2] == due and steps[1] == due - timedelta(minutes=10)


def test_the_raise_records_who_raised_it_on_the_default_regimes_stage_and_the_timeline(team):
    incident = open_incident(reported_by=team["oncall1"], level=3)

    obligation = escalation.regulatory_raise(
        incident=incident, category_key="data-integrity", user=team["im"], now=RAISED
    )

    obligation.refresh_from_db()
    assert obligation.raised_by == team["im"]
    assert obligation.regime.is_default
    assert obligation.stage.key == "within_24h" and obligation.stage.regime == obligation.regime
    entry = TimelineEntry.objects.get(incident=incident, data__obligation=obligation.pk)
    due = timezone.localtime(obligation.due_at)
    assert entry.action == (
        f"Regulatory notification required: Data integrity issues (within 24 hours, due {due:%Y-%m-%d %H:%M %Z})"
    )
    assert (entry.owner, entry.owner_team) == (team["im"], "")


def test_a_raise_by_the_engine_names_the_engine(team):
    incident = open_incident(reported_by=team["oncall1"], level=3)
    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity")
    entry = TimelineEntry.objects.get(incident=incident, data__obligation=obligation.pk)
    assert (entry.owner, entry.owner_team) == (None, "Escalation engine")


def test_one_obligation_per_incident_and_category_and_none_shared_between_incidents(team):
    first = open_incident(reported_by=team["oncall1"], level=3)
    second = open_incident(reported_by=team["oncall1"], level=3)
    one = escalation.regulatory_raise(incident=first, category_key="data-integrity")
    assert escalation.regulatory_raise(incident=first, category_key="data-integrity") == one
    other = escalation.regulatory_raise(incident=second, category_key="data-integrity")
    assert other != one and other.incident == second
    losses = escalation.regulatory_raise(incident=first, category_key="significant-trading-losses")
    assert losses != one and losses.category.key == "significant-trading-losses"
    assert RegulatoryObligation.objects.filter(incident=first).count() == 2


def test_a_cancelled_incident_takes_no_new_notification(team):
    incident = open_incident(reported_by=team["oncall1"], level=3)
    services.incident_transition(incident=incident, name="cancel", user=team["oncall1"], reason="False alarm")
    with pytest.raises(ValidationError) as refused:
        escalation.regulatory_raise(incident=incident, category_key="data-integrity")
    assert refused.value.messages == ["A closed or cancelled incident takes no new regulatory notifications."]
    assert not RegulatoryObligation.objects.filter(incident=incident).exists()


def test_a_compliance_category_pages_the_head_of_risk_only_while_the_incident_is_open(team):
    open_one = open_incident(reported_by=team["oncall1"], level=3)
    escalation.regulatory_raise(incident=open_one, category_key="compliance-violation")
    assert Deadline.objects.filter(incident=open_one, rule__startswith="role:", fired_at=None).exists()


def submitted(team, **kwargs):
    incident = open_incident(reported_by=team["oncall1"], level=3)
    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity")
    return escalation.regulatory_submit(obligation=obligation, user=team["im"], reference="FCA-1", **kwargs)


def test_a_submission_records_who_and_when_and_stops_the_pages(team):
    now = timezone.now()
    obligation = submitted(team, now=now)
    obligation.refresh_from_db()
    assert (obligation.submitted_by, obligation.submitted_at, obligation.submission_reference) == (
        team["im"],
        now,
        "FCA-1",
    )
    assert not Deadline.objects.filter(rule=f"regulatory:{obligation.pk}", cancelled_at=None, fired_at=None).exists()


@pytest.mark.parametrize("reference", ["", "   "])
def test_a_submission_without_a_reference_is_refused_on_the_field(team, reference):
    incident = open_incident(reported_by=team["oncall1"], level=3)
    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity")
    with pytest.raises(ValidationError) as refused:
        escalation.regulatory_submit(obligation=obligation, user=team["im"], reference=reference)
    assert refused.value.message_dict == {"reference": ["Give the regulator's reference or submission number."]}
    obligation.refresh_from_db()
    assert obligation.submitted_at is None


def test_a_second_submission_is_refused_and_keeps_the_first(team):
    obligation = submitted(team)
    with pytest.raises(ValidationError) as refused:
        escalation.regulatory_submit(obligation=obligation, user=team["oncall1"], reference="FCA-2")
    assert refused.value.messages == ["This notification was already submitted."]
    obligation.refresh_from_db()
    assert (obligation.submitted_by, obligation.submission_reference) == (team["im"], "FCA-1")


def test_sign_off_is_refused_before_submission_and_to_anyone_but_the_head_of_risk(team):
    incident = open_incident(reported_by=team["oncall1"], level=3)
    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity")
    with pytest.raises(ValidationError) as refused:
        escalation.regulatory_sign_off(obligation=obligation, user=team["head_of_risk"])
    assert refused.value.messages == ["Submit the notification before signing it off."]
    escalation.regulatory_submit(obligation=obligation, user=team["im"], reference="FCA-1")
    with pytest.raises(PermissionDenied, match="^Only the Head of Risk Management signs off"):
        escalation.regulatory_sign_off(obligation=obligation, user=team["im"])
    signed = escalation.regulatory_sign_off(obligation=obligation, user=team["head_of_risk"])
    assert signed.signed_off_by == team["head_of_risk"]
    assert TimelineEntry.objects.filter(
        incident=incident,
        action="Regulatory notification signed off: Data integrity issues",
        owner=team["head_of_risk"],
    ).exists()


def test_a_submission_cancels_only_its_own_pending_pages_and_says_so_on_the_timeline(team):
    incident = open_incident(reported_by=team["oncall1"], level=3)
    mine = escalation.regulatory_raise(incident=incident, category_key="data-integrity", now=RAISED)
    other = escalation.regulatory_raise(incident=incident, category_key="significant-trading-losses", now=RAISED)
    escalation.deadlines_fire_due(now=mine.due_at - timedelta(hours=3))  # the reminders fire
    at = mine.due_at - timedelta(hours=2)

    escalation.regulatory_submit(obligation=mine, user=team["im"], reference="FCA-7", now=at)

    rows = {(d.rule, d.step): d for d in Deadline.objects.filter(rule__startswith="regulatory:")}
    due_page = rows[(f"regulatory:{mine.pk}", 2)]
    assert (due_page.cancelled_at, due_page.cancel_reason) == (at, "submitted")
    reminder = rows[(f"regulatory:{mine.pk}", 1)]
    assert reminder.fired_at is not None and reminder.cancelled_at is None  # what happened stays
    assert rows[(f"regulatory:{other.pk}", 2)].cancelled_at is None  # another notification still owed
    entry = TimelineEntry.objects.get(incident=incident, action__startswith="Regulatory notification submitted")
    assert entry.action == "Regulatory notification submitted: Data integrity issues, reference FCA-7 (submitted)"
    assert (entry.owner, entry.data) == (team["im"], {"obligation": mine.pk})


def test_a_submission_keeps_its_evidence_file_and_refuses_a_file_of_the_wrong_kind(team):

    incident = open_incident(reported_by=team["oncall1"], level=3)
    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity")
    with pytest.raises(ValidationError) as refused:
        escalation.regulatory_submit(
            obligation=obligation,
            user=team["im"],
            reference="FCA-1",
            evidence=SimpleUploadedFile("receipt.exe", b"MZ"),
        )
    assert "file" in refused.value.message_dict
    obligation.refresh_from_db()
    assert obligation.submitted_at is None and not obligation.submission_evidence

    receipt = SimpleUploadedFile("receipt.pdf", b"%PDF-1.4 the regulator's receipt", content_type="application/pdf")
    escalation.regulatory_submit(obligation=obligation, user=team["im"], reference="FCA-1", evidence=receipt)

    obligation.refresh_from_db()
    assert obligation.submission_evidence.name.endswith(".pdf")
    with obligation.submission_evidence.open("rb") as stored:
        assert stored.read() == b"%PDF-1.4 the regulator's receipt"


@pytest.mark.parametrize(("step", "verb"), [(1, "due soon"), (2, "now due")])
def test_the_reminder_and_the_due_page_go_to_the_head_of_risk_and_the_commander(team, step, verb):

    incident = open_incident(reported_by=team["im"], level=2, commander=team["oncall3"])
    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity", now=RAISED)
    fire_at = obligation.due_at - timedelta(hours=3) if step == 1 else obligation.due_at
    escalation.deadlines_fire_due(now=fire_at)

    event = EscalationEvent.objects.get(incident=incident, rule=f"regulatory:{obligation.pk}", step=step)
    due = timezone.localtime(obligation.due_at)
    assert event.summary == f"Regulatory notification {verb}: Data integrity issues (due {due:%Y-%m-%d %H:%M %Z})"
    assert event.target_user == team["head_of_risk"]
    told = set(Notification.objects.filter(event=event).values_list("recipient__username", flat=True))
    assert told == {"head_of_risk", "oncall3"}
    reminders = set(Notification.objects.filter(event=event).values_list("channel", flat=True))
    if step == 1:
        assert reminders == {"email"}  # a reminder is an email, not a page at night
    else:
        assert "sms" in reminders


def test_no_page_for_a_notification_already_submitted_by_its_due_time(team):

    incident = open_incident(reported_by=team["im"], level=3)
    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity", now=RAISED)
    # Submitted, but the due row is still there (armed again by a racing transaction).
    escalation.regulatory_submit(obligation=obligation, user=team["im"], reference="FCA-1")
    Deadline.objects.filter(rule=f"regulatory:{obligation.pk}").update(cancelled_at=None)

    escalation.deadlines_fire_due(now=obligation.due_at)

    assert not EscalationEvent.objects.filter(rule=f"regulatory:{obligation.pk}").exists()
