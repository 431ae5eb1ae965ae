"""Scheduling, running and completing drills: the services and what they leave behind."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from drills import services
from drills.models import (
    Drill,
    DrillFinding,
    DrillParticipant,
    MentoredResponse,
    ParticipantRole,
    Reminder,
)
from incidents import selectors as incident_selectors
from incidents.escalation import services as escalation
from incidents.escalation.models import Deadline, EscalationEvent, RegulatoryObligation
from incidents.notifications.models import Notification, WebhookEndpoint
from reports.models import ActionItem
from tests.factories import deliver_outbox, person

from .conftest import kind, schedule

pytestmark = pytest.mark.django_db


# -- scheduling: bad input ---------------------------------------------------------------------


def test_a_drill_in_the_past_is_refused_and_nothing_is_saved(trainer_user):
    with pytest.raises(ValidationError) as caught:
        schedule(trainer_user, scheduled_start=timezone.now() - timedelta(hours=2))
    assert "must start in the future" in caught.value.message_dict["scheduled_start"][0]
    assert not Drill.objects.exists()
    assert not Reminder.objects.exists()


def test_a_participant_twice_is_refused_and_nothing_is_saved(trainer_user, team):
    with pytest.raises(ValidationError) as caught:
        schedule(trainer_user, participants=[team["oncall1"], team["oncall2"], team["oncall1"]])
    assert "is listed twice" in caught.value.message_dict["participants"][0]
    assert not Drill.objects.exists() and not DrillParticipant.objects.exists()

    drill = schedule(trainer_user, participants=[team["oncall1"]])
    with pytest.raises(ValidationError) as caught:
        services.drill_participant_add(drill=drill, user=trainer_user, participant=team["oncall1"], role="mentor")
    assert caught.value.message_dict["user"] == [f"{team['oncall1'].get_full_name()} is already a participant."]
    assert drill.participants.count() == 1


def test_only_a_trainer_schedules(team):
    with pytest.raises(PermissionDenied):
        schedule(team["oncall1"])


def test_scheduling_copies_the_kinds_defaults_and_target_times(trainer_user, team):
    drill = schedule(trainer_user, key="trading-emergency-stop", participants=[team["oncall2"]], days=10)
    stop = kind("trading-emergency-stop")
    assert drill.scenario == stop.default_scenario
    assert drill.duration == stop.default_duration == timedelta(minutes=30)
    assert [(t.name, t.target, t.measure) for t in drill.targets.all()] == [
        ("Time to verified emergency stop", timedelta(minutes=5), "emergency_stop"),
        ("Page acknowledged", timedelta(minutes=5), "manual"),
    ]
    # Reminders 7 days and 1 day before, to the facilitator and each participant.
    assert Reminder.objects.filter(drill=drill).count() == 2 * 2
    assert drill.title.startswith("Trading emergency stop — ")


# -- running: the exercise incident ------------------------------------------------------------


def test_a_drill_incident_stays_out_of_metrics_and_regulatory_obligations(trainer_user, team):
    since = timezone.now() - timedelta(days=1)
    before = incident_selectors.dashboard_summary(since=since)
    drill = schedule(trainer_user, key="security-incident", participants=[team["oncall2"], team["oncall3"]])
    drill = services.drill_start(drill=drill, user=trainer_user)
    incident = drill.incident
    assert incident.is_drill and incident.title.startswith("[DRILL] ")
    assert incident.category == "security" and incident.severity.level == 1
    assert incident.timeline.filter(action__contains="DRILL DRILL-").exists()

    # Worked through to resolution like a real one ...
    from incidents import services as incident_services
    from tests.factories import tick_initial_assessment

    oncall = team["oncall2"]
    incident_services.incident_acknowledge(incident=incident, user=oncall)
    incident_services.incident_transition(incident=incident, name="start_investigation", user=oncall)
    tick_initial_assessment(incident, oncall)
    incident_services.incident_transition(incident=incident, name="contain", user=oncall)
    incident_services.incident_update(incident=incident, user=oncall, resolution_actions="Rotated the API key")
    incident.refresh_from_db()
    incident_services.incident_transition(incident=incident, name="resolve", user=oncall)
    escalation.deadlines_fire_due(now=incident.started_at + timedelta(hours=5))

    # ... but it counts in no figure and owes no regulator anything.
    after = incident_selectors.dashboard_summary(since=since)
    assert (after["opened"], after["resolved"], after["mtta"], after["mttr"]) == (
        before["opened"],
        before["resolved"],
        before["mtta"],
        before["mttr"],
    )
    assert not RegulatoryObligation.objects.filter(incident=incident).exists()
    assert escalation.regulatory_raise(incident=incident, category_key="major-security-breach") is None
    assert not Deadline.objects.filter(incident=incident, kind__in=["outage", "regulatory", "role_escalation"]).exists()
    assert not EscalationEvent.objects.filter(incident=incident, rule__startswith="role:").exists()
    assert incident in incident_selectors.incident_list_queryset().filter(is_drill=True)
    # The reports' metrics (MTTA/MTTR, SLA, RTO) count real incidents only, and say how many drills they left out.
    from reports import selectors as report_selectors

    period = report_selectors.default_period(timezone.localdate())
    assert incident not in report_selectors.real_incidents(period)
    assert report_selectors.metrics(period)["drills_excluded"] == 1


def test_a_drill_incident_pages_only_the_participants(trainer_user, team):
    WebhookEndpoint.objects.create(name="Ops chat", url="http://127.0.0.1:9/hook", max_severity_level=4)
    # oncall1 is on call today but not in the drill; oncall2 and oncall3 are.
    drill = schedule(trainer_user, key="trading-emergency-stop", participants=[team["oncall2"], team["oncall3"]])
    drill = services.drill_start(drill=drill, user=trainer_user)
    escalation.deadlines_fire_due(now=timezone.now())

    event = EscalationEvent.objects.get(incident=drill.incident, rule="ack", step=0)
    assert event.target_user == team["oncall1"]  # the engine's own choice, redirected:
    paged = set(Notification.objects.filter(incident=drill.incident).values_list("recipient__username", flat=True))
    assert paged == {"oncall2", "oncall3"}
    assert not Notification.objects.filter(incident=drill.incident, channel="webhook").exists()
    assert not Notification.objects.filter(recipient__username__in=["oncall1", "cto", "ceo"]).exists()
    assert drill.incident.timeline.filter(action__startswith="DRILL: ").exists()

    # Once the drill is over, its incident pages nobody.
    services.drill_cancel(drill=drill, user=trainer_user, reason="Fire alarm in the building")
    paged_before = Notification.objects.filter(incident=drill.incident).count()
    escalation.deadlines_fire_due(now=timezone.now() + timedelta(hours=1))
    assert Notification.objects.filter(incident=drill.incident).count() == paged_before


def test_a_planned_drill_starts_once_and_its_reminders_are_withdrawn(trainer_user, team):
    drill = schedule(trainer_user, participants=[team["oncall2"]])
    services.drill_start(drill=drill, user=trainer_user)
    assert not Reminder.objects.filter(drill=drill, cancelled_at=None).exists()
    with pytest.raises(ValidationError, match="cannot be started"):
        services.drill_start(drill=drill, user=trainer_user)
    assert Drill.objects.get(pk=drill.pk).state == "in_progress"


def test_cancelling_needs_a_reason(trainer_user):
    drill = schedule(trainer_user)
    with pytest.raises(ValidationError) as caught:
        services.drill_cancel(drill=drill, user=trainer_user, reason="   ")
    assert "reason" in caught.value.message_dict
    assert Drill.objects.get(pk=drill.pk).state == "planned"


# -- completing --------------------------------------------------------------------------------


def _started(trainer_user, participants, key="disaster-recovery"):
    drill = schedule(trainer_user, key=key, participants=participants)
    return services.drill_start(drill=drill, user=trainer_user)


def test_completing_records_attendance_targets_and_findings_as_action_items(trainer_user, team, newbie):
    drill = _started(trainer_user, [team["oncall2"], newbie, team["oncall3"]])
    rows = {p.user.username: p for p in drill.participants.all()}
    target = drill.targets.get(name="Database restored (RTO)")
    due = timezone.localdate() + timedelta(days=14)
    services.drill_complete(
        drill=drill,
        user=trainer_user,
        result="partial",
        outcome_summary="Restored, but slowly",
        went_well="Backups were intact",
        could_improve="Runbook for the restore is out of date",
        attendance=[
            services.AttendanceInput(
                participant_id=rows["oncall2"].pk, attended=True, role=ParticipantRole.INCIDENT_COMMANDER
            ),
            services.AttendanceInput(
                participant_id=rows["newbie"].pk, attended=True, role=ParticipantRole.SYSTEM_ADMINISTRATOR
            ),
            services.AttendanceInput(participant_id=rows["oncall3"].pk, attended=False),
        ],
        target_actuals={target.pk: timedelta(minutes=42)},
        findings=[
            services.FindingInput(
                title="Update the database restore runbook",
                owner=team["oncall2"],
                due_date=due,
                description="Step 4 refers to the old backup host",
            ),
        ],
    )
    drill.refresh_from_db()
    assert drill.state == "completed" and drill.result == "partial"
    assert drill.went_well == "Backups were intact"
    attended = {p.user.username: (p.attended, p.attended_role) for p in drill.participants.all()}
    assert attended == {
        "oncall2": (True, "incident_commander"),
        "newbie": (True, "system_administrator"),
        "oncall3": (False, ""),
    }
    target.refresh_from_db()
    assert target.actual == timedelta(minutes=42) and target.met is False

    finding = DrillFinding.objects.get(drill=drill)
    item = finding.action_item
    assert isinstance(item, ActionItem)
    assert (item.title, item.owner, item.due_date, item.state) == (
        "Update the database restore runbook",
        team["oncall2"],
        due,
        "open",
    )
    assert item.incident == drill.incident and "Finding from drill DRILL-" in item.description
    # The new member attended with a certified mentor: one mentored response.
    response = MentoredResponse.objects.get(mentee=newbie)
    assert (response.mentor, response.drill, response.source) == (team["oncall2"], drill, "drill")
    # The exercise is over, so is its incident.
    drill.incident.refresh_from_db()
    assert drill.incident.state == "cancelled" and "completed (objectives partly met)" in drill.incident.cancel_reason


def test_a_bad_finding_refuses_the_whole_completion(trainer_user, team):
    drill = _started(trainer_user, [team["oncall2"]])
    with pytest.raises(ValidationError) as caught:
        services.drill_complete(
            drill=drill,
            user=trainer_user,
            result="met",
            findings=[
                services.FindingInput(title="Fine", owner=team["oncall2"], due_date=timezone.localdate()),
                services.FindingInput(title="", owner=None, due_date=timezone.localdate() - timedelta(days=1)),
            ],
        )
    errors = caught.value.message_dict
    assert set(errors) == {"findings-1-title", "findings-1-owner", "findings-1-due_date"}
    drill.refresh_from_db()
    assert drill.state == "in_progress"
    assert not ActionItem.objects.exists() and not DrillFinding.objects.exists()


def test_outcome_only_after_the_start_and_only_once(trainer_user, team):
    drill = schedule(trainer_user)
    with pytest.raises(ValidationError, match="Start the drill"):
        services.drill_complete(drill=drill, user=trainer_user, result="met")
    services.drill_start(drill=drill, user=trainer_user)
    services.drill_complete(drill=drill, user=trainer_user, result="met")
    with pytest.raises(ValidationError, match="already completed"):
        services.drill_complete(drill=drill, user=trainer_user, result="met")


def test_rescheduling_moves_the_reminders_and_bumps_the_calendar_sequence(trainer_user, team):
    drill = schedule(trainer_user, participants=[team["oncall2"]], days=10)
    old_due = set(Reminder.objects.filter(drill=drill).values_list("due_at", flat=True))
    later = drill.scheduled_start + timedelta(days=3)
    services.drill_update(drill=drill, user=trainer_user, scheduled_start=later)
    drill.refresh_from_db()
    assert drill.calendar_sequence == 1 and drill.scheduled_start == later
    live = set(Reminder.objects.filter(drill=drill, cancelled_at=None).values_list("due_at", flat=True))
    assert live and not live & old_due
    with pytest.raises(ValidationError) as caught:
        services.drill_update(drill=drill, user=trainer_user, scheduled_start=timezone.now() - timedelta(days=1))
    assert "scheduled_start" in caught.value.message_dict


def test_due_drill_reminders_go_out_once_by_email_and_sms(trainer_user, team, sms_provider):
    drill = schedule(trainer_user, participants=[team["oncall2"]], days=2)
    at = drill.scheduled_start - timedelta(hours=23)
    assert services.reminders_send_due(now=at) == 2  # the 24-hour reminder: facilitator and participant
    assert services.reminders_send_due(now=at) == 0
    assert not mail.outbox and not sms_provider.received  # queued in the outbox, not sent inline
    assert all(result.startswith("sent") for result in deliver_outbox(now=at))
    assert deliver_outbox(now=at) == []
    subjects = [m.subject for m in mail.outbox]
    assert len(subjects) == 2 and all(s.startswith(f"[DRILL] {drill.title}") for s in subjects)
    assert [p["to"] for p in sms_provider.received] == [team["oncall2"].person.sms_address]
    sent = Reminder.objects.get(drill=drill, recipient=team["oncall2"], sent_at__isnull=False)
    assert sent.channels == "email,sms"
    # Delivered like any page: an idempotency key, and no incident to name.
    assert sms_provider.received[0]["reference"].startswith("notification/")
    assert Notification.objects.filter(incident=None, recipient=team["oncall2"]).count() == 2


# -- the exercise incident ends with the drill -----------------------------------------------------


def _dashboard(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.get("/").content.decode()


def _open_sev1_count(html: str) -> int:
    import re

    return int(re.search(r'data-testid="open-sev1">(\d+)<', html).group(1))


def test_completing_a_drill_ends_its_sev1_incident_and_it_never_counts_on_the_dashboard(trainer_user, team):
    # The trainer runs the drill but may not move real incidents through their phases.
    assert not trainer_user.has_perm("incidents.transition_incident")
    drill = _started(trainer_user, [team["oncall2"]], key="security-incident")
    incident = drill.incident
    assert (incident.severity.level, incident.state) == (1, "detected")

    # While it runs: not a Sev1 on the live dashboard, not in its open incidents, but findable.
    html = _dashboard(team["oncall1"])
    assert _open_sev1_count(html) == 0
    assert f'href="{incident.get_absolute_url()}"' in html.split('data-testid="open-drills"')[1]
    assert incident not in incident_selectors.open_incidents()
    # A real Sev1 still counts (one more, exactly).
    from tests.factories import open_incident

    real = open_incident(reported_by=team["oncall1"], level=1)
    assert _open_sev1_count(_dashboard(team["oncall1"])) == 1

    services.drill_complete(drill=drill, user=trainer_user, result="partial")
    incident.refresh_from_db()
    assert incident.state == "cancelled" and not incident.is_open
    assert incident.cancel_reason == f"Drill {drill.reference} completed (objectives partly met): exercise over."
    entry = incident.timeline.filter(kind="state_change").last()
    assert (entry.from_state, entry.to_state, entry.owner) == ("detected", "cancelled", trainer_user)
    assert entry.action.startswith("Exercise over: Detected → Cancelled. Reason: Drill ")
    # Its clocks stop: nothing left to fire or page.
    assert not Deadline.objects.filter(incident=incident, fired_at=None, cancelled_at=None).exists()
    html = _dashboard(team["oncall1"])
    assert _open_sev1_count(html) == 1 and 'data-testid="open-drills"' not in html
    assert [i.pk for i in incident_selectors.open_incidents()] == [real.pk]


def test_cancelling_a_running_drill_cancels_its_incident_with_the_reason(trainer_user, team):
    drill = _started(trainer_user, [team["oncall2"]], key="communication-test")
    services.drill_cancel(drill=drill, user=trainer_user, reason="Market turmoil: the team is needed for real")
    incident = drill.incident
    incident.refresh_from_db()
    assert incident.state == "cancelled"
    assert incident.cancel_reason == f"Drill {drill.reference} cancelled: Market turmoil: the team is needed for real"
    assert not Deadline.objects.filter(incident=incident, fired_at=None, cancelled_at=None).exists()


def test_a_drill_incident_the_team_resolved_stays_resolved_with_a_note(trainer_user, team):
    from tests.reports.helpers import resolve

    drill = _started(trainer_user, [team["oncall2"]], key="recovery-procedures")
    incident = resolve(drill.incident, team["oncall2"], resolution="Restarted the agent")

    services.drill_complete(drill=drill, user=trainer_user, result="met")
    incident.refresh_from_db()
    assert incident.state == "resolved" and incident.cancel_reason == ""
    assert incident.timeline.filter(kind="note", action__contains="completed (all objectives met)").exists()


def test_a_drill_page_names_the_participant_paged_not_the_real_on_call_engineer(trainer_user, team):
    for key, first, last in [
        ("oncall1", "Rory", "Realduty"),
        ("oncall2", "Pat", "Player"),
        ("oncall3", "Sam", "Stand"),
    ]:
        team[key].first_name, team[key].last_name = first, last
        team[key].save()
    # oncall1 is on call today but not in the drill; the engine chooses them, the page goes to the participants.
    drill = schedule(trainer_user, key="trading-emergency-stop", participants=[team["oncall2"], team["oncall3"]])
    drill = services.drill_start(drill=drill, user=trainer_user)
    escalation.deadlines_fire_due(now=timezone.now())

    pages = list(Notification.objects.filter(incident=drill.incident).select_related("recipient"))
    assert {p.channel for p in pages} == {"sms", "phone", "email"}
    assert {p.recipient.username for p in pages} == {"oncall2", "oncall3"}
    for page in pages:
        assert f"{page.recipient.get_full_name()} (drill participant)" in page.body, page.body
        assert "Rory Realduty" not in page.body + page.subject
    # The record keeps what happened: the engine's choice, and why it was not paged.
    assert drill.incident.timeline.filter(action__startswith="DRILL: Rory Realduty is not taking part").exists()


def test_a_drill_page_to_the_on_call_engineer_taking_part_names_them(trainer_user, team):
    drill = schedule(trainer_user, key="communication-test", participants=[team["oncall1"], team["oncall2"]])
    drill = services.drill_start(drill=drill, user=trainer_user)
    escalation.deadlines_fire_due(now=timezone.now())
    pages = list(Notification.objects.filter(incident=drill.incident))
    assert pages and {p.recipient_id for p in pages} == {team["oncall1"].pk}
    assert all(team["oncall1"].get_full_name() in p.body and "drill participant" not in p.body for p in pages)


def test_a_findings_reminder_goes_to_its_owner_outside_the_drill_once_the_drill_is_over(trainer_user, team):
    # The follow-up work is not part of the exercise: its owner is reminded, though not a
    # participant, and after the drill that paged only its participants is over.
    drill = _started(trainer_user, [team["oncall2"]])
    due = timezone.localdate() + timedelta(days=14)
    services.drill_complete(
        drill=drill,
        user=trainer_user,
        result="met",
        findings=[services.FindingInput(title="Rotate the restore keys", owner=team["im"], due_date=due)],
    )
    reminder = Deadline.objects.get(incident=drill.incident, kind=Deadline.Kind.REVIEW, step=1)

    escalation.deadlines_fire_due(now=reminder.due_at)

    event = EscalationEvent.objects.get(deadline=reminder)
    assert event.target_user == team["im"]
    assert list(Notification.objects.filter(event=event).values_list("recipient__username", "channel")) == [
        ("im", "email")
    ]
    assert not drill.incident.timeline.filter(action__startswith="DRILL: ").exists()


def test_two_participants_sharing_a_desk_phone_get_one_call_and_their_own_texts(trainer_user, team):
    desk = team["oncall2"].person.phone
    person(team["oncall3"], phone=desk, sms=team["oncall3"].person.sms_number)
    drill = schedule(trainer_user, key="trading-emergency-stop", participants=[team["oncall2"], team["oncall3"]])
    drill = services.drill_start(drill=drill, user=trainer_user)

    escalation.deadlines_fire_due(now=timezone.now())

    pages = Notification.objects.filter(incident=drill.incident)
    assert sorted(pages.values_list("recipient__username", "channel")) == [
        ("oncall2", "email"),
        ("oncall2", "phone"),
        ("oncall2", "sms"),
        ("oncall3", "email"),
        ("oncall3", "sms"),
    ]
    assert pages.get(channel="phone").address == desk


def test_a_drill_page_that_reaches_one_participant_keeps_the_chains_pace(trainer_user, team):
    """A participant with no way to reach them does not count the step as unreached: the others
    were paged, so the next step waits its response time instead of following at once."""
    User.objects.filter(pk=team["oncall3"].pk).update(email="")
    person(team["oncall3"])  # no phone, no SMS number
    drill = schedule(trainer_user, key="trading-emergency-stop", participants=[team["oncall2"], team["oncall3"]])
    drill = services.drill_start(drill=drill, user=trainer_user)
    now = timezone.now()

    escalation.deadlines_fire_due(now=now)

    assert set(Notification.objects.filter(incident=drill.incident).values_list("recipient__username", flat=True)) == {
        "oncall2"
    }
    assert drill.incident.timeline.filter(action__startswith=f"Cannot reach {team['oncall3'].get_full_name()}").exists()
    next_step = Deadline.objects.get(incident=drill.incident, kind="acknowledge", step=1)
    assert next_step.due_at > now
