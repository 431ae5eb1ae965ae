"""Review deadline (72 h after resolution) and action-item reminders, fired by the escalation engine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from incidents import services
from incidents.escalation.models import Deadline, EscalationEvent
from incidents.escalation.services import deadlines_fire_due
from incidents.notifications.models import Notification
from reports import services as report_services
from reports.models import ActionItem, ReportPolicy
from tests.factories import make_roster, open_incident

from .helpers import resolve, submitted_review

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return make_roster()


def _review_deadlines(incident):
    return list(
        Deadline.objects.filter(incident=incident, kind=Deadline.Kind.REVIEW, rule__startswith="review:").order_by(
            "step"
        )
    )


def _emails_to(user, event):
    return Notification.objects.filter(event=event, recipient=user, channel=Notification.Channel.EMAIL)


def _channels(event) -> set[str]:
    return set(Notification.objects.filter(event=event).exclude(channel="webhook").values_list("channel", flat=True))


def test_resolving_schedules_the_review_deadline_with_reminders(team):
    lead = team["oncall1"]
    incident = resolve(open_incident(reported_by=lead, commander=lead), lead)
    deadlines = _review_deadlines(incident)
    due = incident.resolved_at + timedelta(hours=72)  # the seeded review phase target
    assert [(d.step, d.due_at) for d in deadlines] == [
        (1, due - timedelta(hours=24)),
        (2, due),
        (3, due + timedelta(hours=24)),
    ]

    # 49 h on, nobody has started the review: the commander is reminded.
    deadlines_fire_due(now=incident.resolved_at + timedelta(hours=49))
    event = EscalationEvent.objects.get(incident=incident, rule=deadlines[0].rule, step=1)
    assert event.summary.startswith("Post-incident review due") and "not started" in event.summary
    assert event.target_user == lead and _emails_to(lead, event).exists()
    assert event.target_label == "review author"
    assert _channels(event) == {"email"}  # a reminder, not a page, whatever the severity
    assert incident.timeline.filter(kind="escalation", action=event.summary).exists()

    # The author has it in draft at 73 h: the author gets the "now due" reminder.
    author = team["oncall2"]
    report_services.review_start(incident=incident, user=author)
    deadlines_fire_due(now=incident.resolved_at + timedelta(hours=73))
    event = EscalationEvent.objects.get(incident=incident, rule=deadlines[0].rule, step=2)
    assert "now due" in event.summary and "r1 is draft" in event.summary and event.target_user == author

    # A day overdue: escalated to the incident manager.
    deadlines_fire_due(now=incident.resolved_at + timedelta(hours=97))
    event = EscalationEvent.objects.get(incident=incident, rule=deadlines[0].rule, step=3)
    assert event.target_user == team["im"] and "escalated to the incident manager" in event.summary
    assert event.target_label == "incident manager" and _channels(event) == {"email"}


def test_approval_cancels_the_pending_review_reminders(team):
    lead = team["oncall1"]
    incident = resolve(open_incident(reported_by=lead, commander=lead), lead)
    report_services.review_approve(review=submitted_review(incident, lead), user=team["im"])
    assert all(d.cancelled_at and d.cancel_reason == "review r1 approved" for d in _review_deadlines(incident))
    assert deadlines_fire_due(now=incident.resolved_at + timedelta(days=10)) == 0


def test_reopening_cancels_them_and_resolving_again_starts_fresh_ones(team):
    lead = team["oncall1"]
    incident = resolve(open_incident(reported_by=lead), lead)
    first_rule = _review_deadlines(incident)[0].rule
    services.incident_transition(incident=incident, name="reopen", user=lead)
    assert all(d.cancelled_at for d in _review_deadlines(incident))
    services.incident_transition(incident=incident, name="contain", user=lead)
    services.incident_transition(incident=incident, name="resolve", user=lead, at=timezone.now() + timedelta(seconds=5))
    pending = [d for d in _review_deadlines(incident) if d.pending]
    assert len(pending) == 3 and {d.rule for d in pending} != {first_rule}


def test_drills_get_no_review_reminders(team):
    lead = team["oncall1"]
    incident = resolve(open_incident(reported_by=lead, is_drill=True), lead)
    assert _review_deadlines(incident) == []


def test_an_incident_resolved_long_ago_gets_only_the_reminder_that_still_applies(team):
    lead = team["oncall1"]
    past = timezone.now() - timedelta(hours=80)
    incident = resolve(open_incident(reported_by=lead, detected_at=past - timedelta(hours=1)), lead, at=past)
    assert [d.step for d in _review_deadlines(incident)] == [2, 3]


def test_action_item_reminders_before_and_after_the_due_date(team):
    lead, owner = team["oncall1"], team["oncall2"]
    incident = resolve(open_incident(reported_by=lead), lead)
    due_date = timezone.localdate() + timedelta(days=5)
    item = report_services.action_item_create(
        incident=incident,
        user=lead,
        title="Alert on descriptor usage",
        kind=ActionItem.Kind.MONITORING,
        owner=owner,
        due_date=due_date,
    )
    deadlines = list(Deadline.objects.filter(rule__startswith=f"action:{item.pk}:").order_by("step"))
    policy = ReportPolicy.load()
    assert [d.step for d in deadlines] == [1, 2, 3]
    end_of_due_day = deadlines[1].due_at
    assert deadlines[0].due_at == end_of_due_day - policy.action_item_reminder_before
    assert deadlines[2].due_at == end_of_due_day + policy.action_item_escalate_after

    deadlines_fire_due(now=deadlines[0].due_at + timedelta(minutes=1))
    before = EscalationEvent.objects.get(rule=deadlines[0].rule, step=1)
    assert before.target_user == owner and before.summary.startswith(f"Action item due {due_date:%Y-%m-%d}")
    assert _emails_to(owner, before).exists()
    deadlines_fire_due(now=end_of_due_day + timedelta(minutes=1))
    after = EscalationEvent.objects.get(rule=deadlines[0].rule, step=2)
    assert after.target_user == owner and after.summary.startswith("Action item overdue since")

    report_services.action_item_complete(item=item, user=owner, note="Alert live")
    assert Deadline.objects.get(rule=deadlines[0].rule, step=3).cancel_reason == "done"


def test_rescheduling_moves_the_reminders(team):
    lead = team["oncall1"]
    incident = resolve(open_incident(reported_by=lead), lead)
    item = report_services.action_item_create(
        incident=incident,
        user=lead,
        title="Runbook",
        kind=ActionItem.Kind.LONG_TERM,
        owner=lead,
        due_date=timezone.localdate() + timedelta(days=5),
    )
    new_date = timezone.localdate() + timedelta(days=20)
    report_services.action_item_reschedule(item=item, user=lead, due_date=new_date, owner=team["oncall3"])
    pending = Deadline.objects.filter(rule__startswith=f"action:{item.pk}:", fired_at=None, cancelled_at=None)
    assert {d.rule for d in pending} == {f"action:{item.pk}:{new_date.isoformat()}"}
    assert pending.count() == 3


def test_action_items_validate_and_check_who_may_change_them(team, trainer):
    lead = team["oncall1"]
    incident = resolve(open_incident(reported_by=lead), lead)
    with pytest.raises(ValidationError) as exc:
        report_services.action_item_create(
            incident=incident,
            user=lead,
            title=" ",
            kind="later",
            owner=None,
            due_date=timezone.localdate() - timedelta(days=1),
        )
    assert set(exc.value.message_dict) == {"title", "kind", "owner", "due_date"}
    item = report_services.action_item_create(
        incident=incident,
        user=lead,
        title="Runbook",
        kind=ActionItem.Kind.LONG_TERM,
        owner=team["oncall2"],
        due_date=timezone.localdate() + timedelta(days=5),
    )
    with pytest.raises(PermissionDenied):
        report_services.action_item_start(item=item, user=trainer)  # neither owner nor responder
    with pytest.raises(ValidationError) as exc:
        report_services.action_item_decline(item=item, user=team["oncall2"], reason="")
    assert exc.value.message_dict == {"reason": ["Say why this will not be done."]}
    item = report_services.action_item_start(item=item, user=team["oncall2"])
    item = report_services.action_item_decline(
        item=item, user=team["oncall2"], reason="Superseded by the platform migration"
    )
    assert item.state == ActionItem.State.WONT_DO and item.closing_note == "Superseded by the platform migration"
    with pytest.raises(ValidationError, match="won't do"):
        report_services.action_item_complete(item=item, user=lead)
    actions = list(incident.timeline.filter(data__has_key="action_item").values_list("action", flat=True))
    assert actions[-1] == "Action item won't be done: Runbook. Reason: Superseded by the platform migration"


def test_an_action_item_still_open_after_its_due_date_escalates_to_the_incident_manager(team):
    lead, owner = team["oncall1"], team["oncall2"]
    incident = resolve(open_incident(reported_by=lead), lead)
    item = report_services.action_item_create(
        incident=incident,
        user=lead,
        title="Rotate the feed credentials",
        kind=ActionItem.Kind.MONITORING,
        owner=owner,
        due_date=timezone.localdate(),
    )
    escalate = Deadline.objects.get(rule__startswith=f"action:{item.pk}:", step=3)

    deadlines_fire_due(now=escalate.due_at)

    event = EscalationEvent.objects.get(rule=escalate.rule, step=3)
    assert event.target_user == team["im"] and event.target_label == "incident manager"
    assert event.summary.startswith("Action item still open ")
    assert event.summary.endswith(
        f"days after its due date: “Rotate the feed credentials” (monitoring improvement, owner "
        f"{owner.get_full_name()}); escalated to {team['im'].get_full_name()}"
    )
    assert _channels(event) == {"email"}


def test_a_reminder_that_no_longer_applies_is_spent_quietly(team):
    # A review reminder armed for an incident that owes no review any more (reopened): the engine
    # asks, hears nothing applies, records nothing and does not try again.
    lead = team["oncall1"]
    incident = resolve(open_incident(reported_by=lead), lead)
    row = _review_deadlines(incident)[0]
    due = row.due_at
    services.incident_transition(incident=incident, name="reopen", user=team["im"], reason="Came back")
    Deadline.objects.filter(pk=row.pk).update(cancelled_at=None, cancel_reason="")

    deadlines_fire_due(now=due)

    row.refresh_from_db()
    assert row.fired_at is not None and row.due_at == due  # spent, not put back for a retry
    assert not EscalationEvent.objects.filter(incident=incident, rule=row.rule).exists()
