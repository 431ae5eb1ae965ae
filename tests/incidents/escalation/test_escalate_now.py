""" "Escalate now" (ESC in reply to a page): the acknowledgement chain's next step falls due at
once, the dispatcher is woken, and the timeline says who asked, how, and whom it pages. Refused
with nothing written when the incident is closed or acknowledged, or nobody is left to page."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from incidents import services, wakeups
from incidents.escalation import services as escalation
from incidents.escalation.models import Deadline, EscalationEvent
from incidents.models import Incident, TimelineEntry
from incidents.notifications.acks import ReplyRefused
from incidents.notifications.models import Notification
from incidents.oncall.models import RotationMember
from tests.factories import open_incident, resolve
from tests.races import in_another_connection

pytestmark = pytest.mark.django_db


def pending_ack(incident) -> dict[int, object]:
    rows = Deadline.objects.filter(incident=incident, rule="ack", fired_at=None, cancelled_at=None)
    return {row.step: row.due_at for row in rows}


def escalations_written(incident) -> int:
    return TimelineEntry.objects.filter(incident=incident, kind=TimelineEntry.Kind.ESCALATION).count()


@pytest.fixture
def paged(team):
    """A Sev2 whose first page went out at open; step 1 waits for the response time."""
    incident = open_incident(reported_by=team["oncall2"], level=2)
    escalation.deadlines_fire_due(now=incident.detected_at)
    assert EscalationEvent.objects.filter(incident=incident, rule="ack", step=0).exists()
    return incident


def test_the_next_step_falls_due_now_and_the_timeline_says_who_asked(team, paged, woken):
    other = open_incident(reported_by=team["oncall2"], level=2)  # its first page not yet sent: step 0
    others_before = pending_ack(other)
    now = paged.detected_at + timedelta(minutes=2)
    chain_length = len(escalation.snapshot_of(paged).chain)
    woken.clear()

    answer = escalation.escalation_escalate_now(incident=paged, user=team["oncall1"], via="by SMS reply", now=now)

    # Step 1 pages the on-call engineer again (chain[0]), the one on call today: oncall1.
    who = f"on-call On-Call Engineer: {team['oncall1'].get_full_name()}"
    assert answer == f"{paged.reference} escalated: paging {who} now."
    assert pending_ack(paged) == {1: now}
    assert pending_ack(other) == others_before  # another incident's chain keeps its time
    assert wakeups.DEADLINES in woken
    entry = TimelineEntry.objects.filter(incident=paged, action__startswith="Escalated now").get()
    assert entry.action == (
        f"Escalated now by {team['oncall1'].get_full_name()} by SMS reply: step 1 of {chain_length} pages {who}"
    )
    assert entry.kind == TimelineEntry.Kind.ESCALATION
    assert entry.owner == team["oncall1"]
    assert entry.occurred_at == now
    assert entry.data == {"rule": "ack", "step": 1, "escalated_now": True}


def test_the_step_it_moved_fires_at_once_and_pages_the_next_level(team, paged):
    now = paged.detected_at + timedelta(minutes=2)
    escalation.escalation_escalate_now(incident=paged, user=team["oncall1"], via="by SMS reply", now=now)

    # A run at that moment fires it: thirteen minutes before the response time would have.
    escalation.deadlines_fire_due(now=now)

    event = EscalationEvent.objects.get(incident=paged, rule="ack", step=1)
    assert event.target_user == team["oncall1"]
    sent = set(Notification.objects.filter(event=event, recipient=team["oncall1"]).values_list("channel", flat=True))
    assert sent == {"sms", "phone", "email"}
    assert 2 in pending_ack(paged)  # and the chain goes on from there


def test_the_earliest_pending_step_is_the_one_moved(team, paged):
    # Two steps waiting at once (re-armed while another was pending): the next level is the
    # lower one, and only it moves.
    step1 = Deadline.objects.get(incident=paged, rule="ack", step=1)
    later = step1.due_at + timedelta(minutes=15)
    Deadline.objects.create(incident=paged, kind=Deadline.Kind.ACKNOWLEDGE, rule="ack", step=2, due_at=later)
    now = paged.detected_at + timedelta(minutes=2)

    escalation.escalation_escalate_now(incident=paged, user=team["oncall1"], via="from the page", now=now)

    assert pending_ack(paged) == {1: now, 2: later}
    assert "step 1 of" in TimelineEntry.objects.get(incident=paged, action__startswith="Escalated now").action


@pytest.mark.parametrize("then", ["fired", "cancelled"])
def test_a_fired_or_cancelled_step_is_not_escalated_again(team, paged, then):
    Deadline.objects.filter(incident=paged, rule="ack", step=1).update(**{f"{then}_at": timezone.now()})
    with pytest.raises(ReplyRefused) as refused:
        escalation.escalation_escalate_now(incident=paged, user=team["oncall1"], via="by SMS reply")
    assert refused.value.code == "nothing_to_escalate" and refused.value.status == 409
    assert refused.value.message == (
        f"{paged.reference}: every escalation level has been paged already; call the incident manager."
    )
    assert escalations_written(paged) == 1  # only the first page's


def test_nobody_on_call_for_the_next_level_still_moves_it_and_says_so(team, paged):
    RotationMember.objects.filter(rotation=team["rotation"]).delete()
    now = paged.detected_at + timedelta(minutes=2)

    answer = escalation.escalation_escalate_now(incident=paged, user=team["oncall1"], via="by SMS reply", now=now)

    assert answer == f"{paged.reference} escalated: paging on-call On-Call Engineer now."
    assert pending_ack(paged) == {1: now}  # its firing records that nobody could be paged


@pytest.mark.parametrize("then", ["resolve", "cancel"])
def test_a_closed_incident_is_not_escalated(team, paged, then, woken):
    if then == "cancel":
        services.incident_transition(incident=paged, name="cancel", user=team["im"], reason="False alarm")
    else:
        resolve(paged, team["oncall1"])
    paged.refresh_from_db()
    Deadline.objects.filter(incident=paged).update(cancelled_at=None)  # only the state stands in the way
    before, written = pending_ack(paged), escalations_written(paged)
    woken.clear()

    with pytest.raises(ReplyRefused) as refused:
        escalation.escalation_escalate_now(incident=paged, user=team["oncall1"], via="by SMS reply")

    state = paged.get_state_display().lower()
    assert refused.value.code == "incident_closed" and refused.value.status == 409
    assert refused.value.message == f"{paged.reference} is {state}: nothing to escalate."
    assert pending_ack(paged) == before and escalations_written(paged) == written
    assert wakeups.DEADLINES not in woken


def test_an_acknowledged_incident_is_not_escalated(team, paged, woken):
    services.incident_transition(incident=paged, name="acknowledge", user=team["oncall1"])
    paged.refresh_from_db()
    Deadline.objects.filter(incident=paged).update(cancelled_at=None)
    before, written = pending_ack(paged), escalations_written(paged)
    woken.clear()

    with pytest.raises(ReplyRefused) as refused:
        escalation.escalation_escalate_now(incident=paged, user=team["oncall2"], via="by SMS reply")

    acknowledged_at = timezone.localtime(paged.acknowledged_at)
    assert refused.value.code == "acknowledged" and refused.value.status == 409
    assert refused.value.message == (
        f"{paged.reference} was already acknowledged by {team['oncall1'].get_full_name()} at "
        f"{acknowledged_at:%Y-%m-%d %H:%M:%S %Z}. Not escalated."
    )
    assert pending_ack(paged) == before and escalations_written(paged) == written
    assert wakeups.DEADLINES not in woken


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("postgres")
def test_a_step_the_dispatcher_fires_meanwhile_keeps_its_due_time_and_pages_once(team, paged, monkeypatch):
    # The step is read as pending; before it is moved, the dispatcher (another connection)
    # claims and fires it at its own due time. The move must leave the fired row's record alone.
    step1 = Deadline.objects.get(incident=paged, rule="ack", step=1)
    now = paged.detected_at + timedelta(minutes=2)
    lookup = escalation.resolve_target
    raced = []

    def lookup_while_the_dispatcher_fires(*args, **kwargs):
        if not raced:
            raced.append(True)
            in_another_connection(lambda: escalation.deadlines_fire_due(now=step1.due_at))
        return lookup(*args, **kwargs)

    monkeypatch.setattr(escalation, "resolve_target", lookup_while_the_dispatcher_fires)
    with transaction.atomic():  # as a pager reply does: under the incident's lock
        locked = Incident.objects.select_for_update(no_key=True).get(pk=paged.pk)
        answer = escalation.escalation_escalate_now(incident=locked, user=team["oncall1"], via="by SMS reply", now=now)
    pages = Notification.objects.filter(incident=paged).count()

    escalation.deadlines_fire_due(now=now)  # the dispatcher's next run finds nothing more to page

    # The next level is being paged, as the reply says; by the dispatcher, at the step's time.
    who = f"on-call On-Call Engineer: {team['oncall1'].get_full_name()}"
    assert answer == f"{paged.reference} escalated: paging {who} now."
    fired = Deadline.objects.get(pk=step1.pk)
    assert fired.fired_at is not None and fired.cancelled_at is None
    assert fired.due_at == step1.due_at
    assert EscalationEvent.objects.filter(incident=paged, rule="ack", step=1).count() == 1
    assert Notification.objects.filter(incident=paged).count() == pages
