"""An action item's life on the record, word for word and at each limit: what adding,
starting, finishing, declining and rescheduling one write on the incident's timeline (and as
whom), each field's refusal by its full text, and which of its reminders are armed or cancelled."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from incidents.escalation.models import Deadline
from incidents.models import TimelineEntry
from reports import services as report_services
from reports.models import ActionItem, ReportPolicy
from tests.factories import UserFactory, make_roster

from .helpers import resolved_incident

pytestmark = pytest.mark.django_db

IN_FIVE_DAYS = timedelta(days=5)


@pytest.fixture
def team():
    return make_roster()


@pytest.fixture
def incident(team):
    return resolved_incident(team["oncall1"])


def add(incident, user, **overrides) -> ActionItem:
    fields = {
        "title": "Alert on descriptor usage",
        "kind": ActionItem.Kind.MONITORING,
        "owner": user,
        "due_date": timezone.localdate() + IN_FIVE_DAYS,
    } | overrides
    return report_services.action_item_create(incident=incident, user=user, **fields)


def entries(incident) -> list:
    return list(incident.timeline.filter(data__has_key="action_item").order_by("id"))


def reminders(item) -> list[Deadline]:
    return list(Deadline.objects.filter(rule__startswith=f"action:{item.pk}:").order_by("rule", "step"))


def name(user) -> str:
    return user.get_full_name() or user.get_username()


def test_adding_an_item_records_what_whose_and_when_it_is_due(incident, team):
    lead, owner = team["oncall1"], team["oncall2"]
    due = timezone.localdate() + IN_FIVE_DAYS

    item = add(incident, lead, title="  Alert on descriptor usage ", owner=owner, description="  Page at 80 %.\n")

    assert (item.title, item.description, item.created_by) == ("Alert on descriptor usage", "Page at 80 %.", lead)
    [entry] = entries(incident)
    assert entry.action == (
        f"Action item added (monitoring improvement): Alert on descriptor usage — owner {name(owner)}, "
        f"due {due:%Y-%m-%d}"
    )
    assert entry.owner == lead and entry.data == {"action_item": item.pk}


def test_an_item_is_due_by_the_end_of_its_day_in_the_firms_time_zone(incident, team, settings):
    item = add(incident, team["oncall1"])
    end_of_day = datetime.combine(item.due_date + timedelta(days=1), time(0), tzinfo=ZoneInfo("Europe/London"))
    assert settings.TMT_BUSINESS_TIME_ZONE == "Europe/London"
    policy = ReportPolicy.load()
    assert [(d.step, d.due_at) for d in reminders(item)] == [
        (1, end_of_day - policy.action_item_reminder_before),
        (2, end_of_day),
        (3, end_of_day + policy.action_item_escalate_after),
    ]


def test_an_item_added_after_its_due_day_arms_only_the_reminders_still_ahead(incident, team):
    # Backdated, as the demo data and imports add items: due yesterday, added a week ago.
    week_ago = timezone.now() - timedelta(days=7)
    yesterday = timezone.localdate() - timedelta(days=1)
    before = timezone.now()

    item = add(incident, team["oncall1"], due_date=yesterday, now=week_ago)

    rows = reminders(item)
    assert [d.step for d in rows] == [2, 3]  # the reminder before the due day is past for good
    assert before <= rows[0].due_at <= timezone.now()  # overdue now: sent at once
    assert rows[1].due_at > timezone.now()


@pytest.mark.parametrize("length", [199, 200])
def test_a_title_of_up_to_200_characters_is_taken(incident, team, length):
    assert len(add(incident, team["oncall1"], title="t" * length).title) == length


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({"title": "t" * 201}, {"title": ["At most 200 characters."]}),
        ({"title": None}, {"title": ["Say what needs doing."]}),
        ({"kind": "later"}, {"kind": ["Choose immediate, long-term or monitoring improvement."]}),
        ({"owner": None}, {"owner": ["Choose an active user as the owner."]}),
        ({"due_date": None}, {"due_date": ["Enter a due date."]}),
        ({"due_date": "2030-01-01"}, {"due_date": ["Enter a due date."]}),
        ({"description": "d" * 20_001}, {"description": ["At most 20,000 characters."]}),
    ],
    ids=["title-201", "no-title", "kind", "no-owner", "no-date", "date-as-text", "description-20001"],
)
def test_each_bad_field_is_refused_by_name_and_nothing_is_added(incident, team, overrides, errors):
    with pytest.raises(ValidationError) as refused:
        add(incident, team["oncall1"], **overrides)
    assert refused.value.message_dict == errors
    assert not ActionItem.objects.exists() and not entries(incident)


def test_an_inactive_owner_is_refused(incident, team):
    gone = team["oncall3"]
    gone.is_active = False
    gone.save()
    with pytest.raises(ValidationError) as refused:
        add(incident, team["oncall1"], owner=gone)
    assert refused.value.message_dict == {"owner": ["Choose an active user as the owner."]}


def test_a_description_of_20000_characters_is_taken(incident, team):
    assert len(add(incident, team["oncall1"], description="d" * 20_000).description) == 20_000


def test_a_due_date_is_judged_against_the_time_given(incident, team):
    week_ago = timezone.now() - timedelta(days=7)
    three_days_ago = timezone.localdate() - timedelta(days=3)
    assert add(incident, team["oncall1"], due_date=three_days_ago, now=week_ago).due_date == three_days_ago
    with pytest.raises(ValidationError) as refused:
        add(incident, team["oncall1"], due_date=three_days_ago)
    assert refused.value.message_dict == {"due_date": ["The due date cannot be in the past."]}


def test_someone_who_may_not_add_items_is_told_so(incident):
    with pytest.raises(PermissionDenied) as refused:
        add(incident, UserFactory(username="no_role"))
    assert str(refused.value) == "You do not have permission to add action items."
    assert not ActionItem.objects.exists()


def test_starting_finishing_and_declining_are_recorded_as_whoever_did_them(incident, team):
    lead, owner = team["oncall1"], team["oncall2"]
    item = add(incident, lead, title="Runbook", owner=owner)

    report_services.action_item_start(item=item, user=owner)
    done = report_services.action_item_complete(item=item, user=lead, note="  Published ")
    other = add(incident, lead, title="Dashboards", owner=owner)
    report_services.action_item_decline(item=other, user=owner, reason=" Superseded ")

    assert done.closing_note == "Published" and done.completed_at is not None
    actions = [(e.action, e.owner) for e in entries(incident)]
    assert actions[1:3] == [("Action item in progress: Runbook", owner), ("Action item done: Runbook. Published", lead)]
    assert actions[-1] == ("Action item won't be done: Dashboards. Reason: Superseded", owner)


def test_finishing_without_a_note_says_only_that_it_is_done(incident, team):
    item = add(incident, team["oncall1"], title="Runbook")
    report_services.action_item_complete(item=item, user=team["oncall1"])
    assert entries(incident)[-1].action == "Action item done: Runbook"


def test_finishing_or_declining_cancels_the_pending_reminders_with_the_reason(incident, team):
    lead = team["oncall1"]
    done, declined, untouched = (add(incident, lead, title=title) for title in ("one", "two", "three"))
    report_services.action_item_complete(item=done, user=lead)
    report_services.action_item_decline(item=declined, user=lead, reason="Superseded")

    assert {d.cancel_reason for d in reminders(done)} == {"done"}
    assert {d.cancel_reason for d in reminders(declined)} == {"won't do"}
    assert all(d.cancelled_at is None for d in reminders(untouched))


def test_a_reminder_already_sent_or_cancelled_keeps_its_record(incident, team):
    lead = team["oncall1"]
    item = add(incident, lead)
    sent, earlier, pending = reminders(item)
    fired_at = timezone.now() - timedelta(hours=1)
    Deadline.objects.filter(pk=sent.pk).update(fired_at=fired_at)
    Deadline.objects.filter(pk=earlier.pk).update(cancelled_at=fired_at, cancel_reason="incident closed")

    report_services.action_item_complete(item=item, user=lead)

    sent, earlier, pending = reminders(item)
    assert sent.fired_at == fired_at and sent.cancelled_at is None
    assert (earlier.cancelled_at, earlier.cancel_reason) == (fired_at, "incident closed")
    assert pending.cancel_reason == "done"


def test_an_item_added_without_a_description_has_none(incident, team):
    assert add(incident, team["oncall1"]).description == ""


@pytest.mark.parametrize("limit", ["note", "reason"])
def test_a_closing_text_of_20000_characters_is_taken(incident, team, limit):
    item = add(incident, team["oncall1"])
    if limit == "note":
        closed = report_services.action_item_complete(item=item, user=team["oncall1"], note="n" * 20_000)
    else:
        closed = report_services.action_item_decline(item=item, user=team["oncall1"], reason="r" * 20_000)
    assert len(closed.closing_note) == 20_000


def test_a_declined_item_is_closed_at_the_time_given(incident, team):
    at = timezone.now() - timedelta(hours=3)
    declined = report_services.action_item_decline(
        item=add(incident, team["oncall1"]), user=team["oncall1"], reason="Superseded", now=at
    )
    assert declined.completed_at == at


def test_a_reschedule_is_judged_against_the_time_given(incident, team):
    week_ago = timezone.now() - timedelta(days=7)
    lead = team["oncall1"]
    item = add(incident, lead, due_date=timezone.localdate() - timedelta(days=5), now=week_ago)
    three_days_ago = timezone.localdate() - timedelta(days=3)
    moved = report_services.action_item_reschedule(item=item, user=lead, due_date=three_days_ago, now=week_ago)
    assert moved.due_date == three_days_ago


@pytest.mark.parametrize("limit", ["note", "reason"])
def test_a_closing_text_over_20000_characters_is_refused(incident, team, limit):
    item = add(incident, team["oncall1"])
    with pytest.raises(ValidationError) as refused:
        if limit == "note":
            report_services.action_item_complete(item=item, user=team["oncall1"], note="n" * 20_001)
        else:
            report_services.action_item_decline(item=item, user=team["oncall1"], reason="r" * 20_001)
    assert refused.value.message_dict == {limit: ["At most 20,000 characters."]}
    item.refresh_from_db()
    assert item.state == ActionItem.State.OPEN


def test_someone_neither_owner_nor_responder_is_refused_with_the_reason(incident, team, trainer):
    item = add(incident, team["oncall1"])
    for change in (
        lambda: report_services.action_item_start(item=item, user=trainer),
        lambda: report_services.action_item_reschedule(
            item=item, user=trainer, due_date=timezone.localdate() + timedelta(days=9)
        ),
    ):
        with pytest.raises(PermissionDenied) as refused:
            change()
        assert str(refused.value) == "Only the owner or a responder may update this action item."
    item.refresh_from_db()
    assert item.state == ActionItem.State.OPEN and len(entries(incident)) == 1


def test_rescheduling_records_the_new_owner_and_date_and_moves_the_reminders(incident, team):
    lead, new_owner = team["oncall1"], team["oncall3"]
    item = add(incident, lead, title="Runbook")
    old_rule = reminders(item)[0].rule
    new_date = timezone.localdate() + timedelta(days=20)

    report_services.action_item_reschedule(item=item, user=lead, due_date=new_date, owner=new_owner)

    assert entries(incident)[-1].action == (
        f"Action item rescheduled: Runbook — owner {name(new_owner)}, due {new_date:%Y-%m-%d}"
    )
    assert entries(incident)[-1].owner == lead
    assert {d.cancel_reason for d in reminders(item) if d.rule == old_rule} == {"rescheduled"}
    assert [d.step for d in reminders(item) if d.rule != old_rule and d.cancelled_at is None] == [1, 2, 3]


def test_rescheduling_to_the_same_date_and_owner_changes_nothing(incident, team):
    lead = team["oncall1"]
    item = add(incident, lead)
    report_services.action_item_reschedule(item=item, user=lead, due_date=item.due_date)
    report_services.action_item_reschedule(item=item, user=lead, due_date=item.due_date, owner=lead)
    assert len(entries(incident)) == 1 and all(d.cancelled_at is None for d in reminders(item))


def test_rescheduling_a_finished_item_is_refused_with_its_state(incident, team):
    lead = team["oncall1"]
    item = report_services.action_item_complete(item=add(incident, lead), user=lead)
    with pytest.raises(ValidationError) as refused:
        report_services.action_item_reschedule(item=item, user=lead, due_date=timezone.localdate() + timedelta(days=9))
    assert refused.value.messages == ["This action item is done."]


def test_rescheduling_into_the_past_is_refused_by_field(incident, team):
    lead = team["oncall1"]
    item = add(incident, lead)
    with pytest.raises(ValidationError) as refused:
        report_services.action_item_reschedule(item=item, user=lead, due_date=timezone.localdate() - timedelta(days=1))
    assert refused.value.message_dict == {"due_date": ["The due date cannot be in the past."]}
    assert len(entries(incident)) == 1


def test_an_item_without_an_incident_is_rescheduled_with_no_reminders_and_no_entry(team):
    # A drill's finding: an action item with no incident to remind on.
    lead = team["oncall1"]
    item = ActionItem.objects.create(
        title="Fix the runbook",
        kind=ActionItem.Kind.IMMEDIATE,
        owner=lead,
        due_date=timezone.localdate() + IN_FIVE_DAYS,
        created_by=lead,
    )
    new_date = timezone.localdate() + timedelta(days=9)
    moved = report_services.action_item_reschedule(item=item, user=lead, due_date=new_date)
    assert moved.due_date == new_date and not Deadline.objects.exists()
    assert not TimelineEntry.objects.filter(data__action_item=item.pk).exists()
