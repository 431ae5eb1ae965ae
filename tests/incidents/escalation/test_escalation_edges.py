"""The escalation rules at their edges: each seeded threshold just below, at and just above it;
what must not happen (no page, no rule firing outside its severity); and the checks made again at
fire time, with the race they guard against made to happen."""

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.utils import timezone

from incidents import services
from incidents.escalation import services as escalation
from incidents.escalation.models import Deadline, EscalationEvent, RegulatoryCategory
from incidents.models import Incident
from incidents.notifications import services as notifications
from incidents.notifications.models import Notification
from tests.factories import open_incident, resolve, system
from tests.factories import severity as severity_level

pytestmark = pytest.mark.django_db


def fire_at(at):
    return escalation.deadlines_fire_due(now=at)


def fired_rules(incident) -> list[str]:
    return list(EscalationEvent.objects.filter(incident=incident).order_by("id").values_list("rule", flat=True))


def pending_rules(incident) -> set[str]:
    return set(
        Deadline.objects.filter(incident=incident, fired_at=None, cancelled_at=None).values_list("rule", flat=True)
    )


# -- thresholds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("impact", "paged"),
    [("4999.99", False), ("5000.00", False), ("5000.01", True)],
    ids=["just-below", "at", "just-above"],
)
def test_head_of_risk_is_paged_only_for_an_impact_above_5000(team, impact, paged):
    incident = open_incident(reported_by=team["oncall1"], level=3, financial_impact_usd=Decimal(impact))
    fire_at(timezone.now())
    assert ("role:head-of-risk-financial" in fired_rules(incident)) is paged


@pytest.mark.parametrize(
    ("after", "paged"),
    [(timedelta(hours=2) - timedelta(seconds=1), False), (timedelta(hours=2), True)],
    ids=["1h59m59s", "2h"],
)
def test_ceo_is_paged_when_a_sev1_has_lasted_two_hours(team, after, paged):
    incident = open_incident(reported_by=team["oncall1"], level=1, financial_impact_usd=None)
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    fire_at(incident.detected_at + after)
    assert ("role:ceo-sev1-2h" in fired_rules(incident)) is paged


@pytest.mark.parametrize(("level", "paged"), [(1, False), (2, True), (3, False)])
def test_the_prolonged_sev2_rule_pages_the_cto_for_a_sev2_only(team, level, paged):
    incident = open_incident(reported_by=team["oncall1"], level=level, financial_impact_usd=None)
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    fire_at(incident.detected_at + timedelta(hours=2, seconds=1))
    assert ("role:cto-prolonged-sev2" in fired_rules(incident)) is paged


def test_the_prolonged_sev2_rule_waits_the_full_two_hours(team):
    incident = open_incident(reported_by=team["oncall1"], level=2, financial_impact_usd=None)
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    fire_at(incident.detected_at + timedelta(hours=2) - timedelta(seconds=1))
    assert "role:cto-prolonged-sev2" not in fired_rules(incident)
    fire_at(incident.detected_at + timedelta(hours=2))
    assert "role:cto-prolonged-sev2" in fired_rules(incident)


def test_a_page_failing_transiently_is_tried_five_times_then_fails(team, sms_provider, settings):
    settings.TMT_NOTIFY_BACKOFF_SECONDS = 10
    sms_provider.respond_with = lambda payload: 503
    incident = open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None)
    fire_at(timezone.now())
    page = Notification.objects.get(incident=incident, channel="sms", event__rule="ack")
    for attempt in range(1, 5):
        notifications.notification_deliver(notification_id=page.pk, now=page.next_attempt_at)
        page.refresh_from_db()
        assert (page.state, page.attempts) == ("pending", attempt), f"after attempt {attempt}"
    notifications.notification_deliver(notification_id=page.pk, now=page.next_attempt_at)
    page.refresh_from_db()
    assert (page.state, page.attempts) == ("failed", 5)
    assert len(sms_provider.received) == 5
    # A failed page is never tried again, however long one waits.
    notifications.notification_deliver(notification_id=page.pk, now=timezone.now() + timedelta(days=1))
    assert len(sms_provider.received) == 5


# -- what must not happen ----------------------------------------------------------------------


def test_executives_pages_still_go_out_after_someone_acknowledges(team, sms_provider):
    """Acknowledging stops the on-call chain, not the news: the CTO (a Sev1) and the Head of
    Risk (over $5,000) are told even when the engineer acknowledged before their pages left."""
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=Decimal("20000"))
    fire_at(timezone.now())
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    for row in Notification.objects.filter(incident=incident, channel__in=["sms", "phone"]):
        notifications.notification_deliver(notification_id=row.pk, now=row.next_attempt_at)
    assert sms_provider.to(team["cto"].person.sms_number)
    assert sms_provider.to(team["head_of_risk"].person.sms_number)
    executives = Notification.objects.filter(incident=incident, event__rule__startswith="role:", channel="sms")
    assert set(executives.values_list("state", flat=True)) == {"sent"}


def test_no_follow_up_for_a_false_alarm_cancelled_meanwhile(team, sms_provider, mailoutbox):
    incident = open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None)
    fire_at(timezone.now())
    follow_up = Notification.objects.get(incident=incident, channel="email", event__rule="ack")
    services.incident_transition(incident=incident, name="cancel", user=team["oncall1"], reason="false alarm")
    notifications.notification_deliver(notification_id=follow_up.pk, now=follow_up.next_attempt_at)
    follow_up.refresh_from_db()
    assert follow_up.state == "skipped"
    assert mailoutbox == []


def test_a_drill_arms_no_executive_trigger(team):
    incident = open_incident(reported_by=team["oncall1"], level=1, financial_impact_usd=Decimal("20000"), is_drill=True)
    assert not any(rule.startswith("role:") for rule in pending_rules(incident))
    fire_at(incident.detected_at + timedelta(hours=3))
    assert not any(rule.startswith("role:") for rule in fired_rules(incident))


# -- what the record says ------------------------------------------------------------------------


def test_a_fired_deadline_is_marked_fired_and_not_claimed_again(team):
    incident = open_incident(reported_by=team["oncall1"], level=3, financial_impact_usd=None)
    assert fire_at(timezone.now()) == 1
    row = Deadline.objects.get(incident=incident, rule="ack", step=0)
    assert row.fired_at is not None and row.cancelled_at is None
    # Claimed once: a second run finds nothing due at that moment, not the same row again.
    assert escalation._claim_due(cutoff=timezone.now(), limit=25) == []


@pytest.mark.parametrize("meanwhile", ["fired_at", "cancelled_at"], ids=["claimed-by-another", "cancelled"])
def test_without_skip_locked_a_row_claimed_or_cancelled_meanwhile_is_not_claimed(team, monkeypatch, meanwhile):
    # Where the database has no SKIP LOCKED (SQLite), a conditional UPDATE is the claim: a row
    # another dispatcher claimed, or an acknowledgement cancelled, after the SELECT is left alone.
    monkeypatch.setattr(connection.features, "has_select_for_update_skip_locked", False)
    ours = Deadline.objects.get(incident=open_incident(reported_by=team["oncall1"], level=3), rule="ack", step=0)
    taken = Deadline.objects.get(incident=open_incident(reported_by=team["oncall1"], level=3), rule="ack", step=0)
    then = timezone.now() - timedelta(milliseconds=300)
    real_filter = Deadline.objects.filter

    def filter_after_the_other_write(*args, **kwargs):
        if kwargs.get("pk") == taken.pk:  # our claim's UPDATE: the other write got there first
            real_filter(pk=taken.pk).update(**{meanwhile: then})
        return real_filter(*args, **kwargs)

    with monkeypatch.context() as race:
        race.setattr(Deadline.objects, "filter", filter_after_the_other_write)
        claimed = escalation._claim_due(cutoff=timezone.now(), limit=25)

    assert [row.pk for row in claimed] == [ours.pk]
    assert claimed[0].fired_at is not None
    assert Deadline.objects.get(pk=ours.pk).fired_at == claimed[0].fired_at
    left = Deadline.objects.get(pk=taken.pk)
    assert (left.fired_at, left.cancelled_at) == ((then, None) if meanwhile == "fired_at" else (None, then))


# -- checks made again at fire time --------------------------------------------------------------


def test_no_page_for_a_row_the_cancel_did_not_see(team):
    """A firing racing the cancel can insert a row after the cancel cancelled the pending ones;
    when it comes due, the incident is closed and nobody is paged."""
    incident = open_incident(reported_by=team["oncall1"], level=1, financial_impact_usd=None)
    services.incident_transition(incident=incident, name="cancel", user=team["oncall1"], reason="false alarm")
    late = Deadline.objects.create(
        incident=incident, kind=Deadline.Kind.ROLE_ESCALATION, rule="role:cto-sev1", step=0, due_at=timezone.now()
    )
    fired = fire_at(timezone.now())
    late.refresh_from_db()
    assert late.cancelled_at is not None and late.fired_at is None
    assert late.cancel_reason == "incident cancelled"
    assert fired == 0  # the run reports no page fired
    assert fired_rules(incident) == [] and not Notification.objects.filter(incident=incident).exists()


def test_no_chain_step_for_an_incident_acknowledged_after_its_row_was_armed(team):
    incident = open_incident(reported_by=team["oncall1"], level=2, financial_impact_usd=None)
    fire_at(incident.detected_at)
    services.incident_transition(incident=incident, name="acknowledge", user=team["oncall1"])
    late = Deadline.objects.create(
        incident=incident, kind=Deadline.Kind.ACKNOWLEDGE, rule="ack", step=1, due_at=timezone.now()
    )
    fire_at(timezone.now())
    assert [rule for rule in fired_rules(incident)] == ["ack"]  # step 0 only
    assert not Notification.objects.filter(incident=incident, event__step=1).exists()
    late.refresh_from_db()
    assert late.fired_at is not None  # claimed and done with: not fired again


def test_a_trigger_is_checked_again_when_its_row_fires(team):
    """The impact was lowered in a transaction that committed after this row was armed: the
    Head of Risk is not paged for an impact that is no longer over $5,000."""
    incident = open_incident(reported_by=team["oncall1"], level=3, financial_impact_usd=Decimal("6000"))
    assert "role:head-of-risk-financial" in pending_rules(incident)
    Incident.objects.filter(pk=incident.pk).update(financial_impact_usd=Decimal("4000"))
    fire_at(timezone.now())
    assert "role:head-of-risk-financial" not in fired_rules(incident)
    assert not Notification.objects.filter(incident=incident, recipient=team["head_of_risk"]).exists()


def test_re_evaluation_keeps_the_chain_on_its_next_step_from_its_own_history(team):
    """A change of impact re-arms the unacknowledged chain from the step it reached, at the time
    that step's delay gives: not from the start, and not from another incident's chain."""
    ahead = open_incident(reported_by=team["oncall2"], level=2)
    t0 = ahead.detected_at
    for minutes in (0, 16, 22, 28):  # each step falls due 5 min after the last one fired (now)
        fire_at(t0 + timedelta(minutes=minutes))
    assert EscalationEvent.objects.filter(incident=ahead, rule="ack", step=3).exists()
    incident = open_incident(reported_by=team["oncall2"], level=2)
    fire_at(incident.detected_at)
    fire_at(incident.detected_at + timedelta(minutes=15, seconds=1))
    step1_at = EscalationEvent.objects.get(incident=incident, rule="ack", step=1).fired_at

    escalation.escalation_reevaluate(incident=Incident.objects.get(pk=incident.pk), now=step1_at)

    row = Deadline.objects.get(incident=incident, rule="ack", fired_at=None, cancelled_at=None)
    assert (row.step, row.due_at) == (2, step1_at + timedelta(minutes=5))


@pytest.mark.parametrize(("category", "paged"), [("compliance", True), ("operational", False)])
def test_the_head_of_risk_is_paged_for_a_compliance_incident_and_for_no_other(team, category, paged):
    incident = open_incident(reported_by=team["oncall1"], level=3, category=category, financial_impact_usd=None)
    fire_at(timezone.now())
    assert ("role:head-of-risk-compliance" in fired_rules(incident)) is paged


@pytest.mark.parametrize(
    ("grace", "reminded"),
    [(timedelta(minutes=10), False), (timedelta(minutes=10, seconds=1), True)],
    ids=["reminder-would-fall-at-the-raise", "a-second-later"],
)
def test_no_reminder_when_it_would_fall_at_the_moment_of_the_raise(team, grace, reminded):

    RegulatoryCategory.objects.create(
        key="edge", name="Edge", window="immediate", immediate_grace=grace, reminder_before=timedelta(minutes=10)
    )
    incident = open_incident(reported_by=team["oncall1"], level=3)
    now = timezone.now()
    obligation = escalation.regulatory_raise(incident=incident, category_key="edge", now=now)
    steps = set(Deadline.objects.filter(rule=f"regulatory:{obligation.pk}").values_list("step", flat=True))
    assert steps == ({1, 2} if reminded else {2})


@pytest.mark.parametrize("batch", [3, 4, 5], ids=["batches-of-3", "exactly-one-batch-then-none", "one-part-batch"])
def test_one_run_fires_every_due_row_whatever_the_batch_size(team, batch):
    """Rows are claimed a batch at a time; a full batch means there may be more, so the run goes
    on until a batch comes back short (or its time budget runs out)."""
    incidents = [open_incident(reported_by=team["oncall1"], level=2) for _ in range(4)]
    due = Deadline.objects.filter(incident__in=incidents, due_at__lte=timezone.now(), fired_at=None)
    count = due.count()
    assert count == 4  # each chain's first step is due at open

    fired = escalation.deadlines_fire_due(now=timezone.now(), batch=batch)

    assert fired == count
    assert not due.filter(fired_at=None).exists()


def test_a_run_past_its_time_budget_stops_after_the_batch_in_hand(team):
    incidents = [open_incident(reported_by=team["oncall1"], level=2) for _ in range(3)]
    fired = escalation.deadlines_fire_due(now=timezone.now(), batch=1, budget=timedelta(0))
    assert fired == 1  # the next run takes the rest
    assert Deadline.objects.filter(incident__in=incidents, rule="ack", step=0, fired_at=None).count() == 2


def test_an_rto_page_fired_for_another_incident_does_not_stop_this_ones(team):

    first = open_incident(reported_by=team["oncall1"], level=2, systems=("database",))
    row = Deadline.objects.get(incident=first, rule="rto_breach:database")
    fire_at(row.due_at)
    assert EscalationEvent.objects.filter(incident=first, rule="rto_breach:database").exists()
    second = open_incident(reported_by=team["oncall1"], level=2, systems=("market_analysis",))

    services.incident_update(
        incident=second, user=team["oncall1"], affected_systems=[system("market_analysis"), system("database")]
    )

    assert Deadline.objects.filter(incident=second, rule="rto_breach:database", cancelled_at=None).exists()


def test_re_evaluation_reads_the_chains_own_steps_not_another_rules(team):
    incident = open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None)
    t0 = incident.detected_at
    # Another rule's step 2 fired before the chain's step 1 (a status escalation, say).
    escalation.deadline_schedule(incident, kind=Deadline.Kind.STATUS_UPDATE, rule="status:1", step=2, due_at=t0)
    fire_at(t0)
    assert {("ack", 0), ("status:1", 2)} <= set(EscalationEvent.objects.values_list("rule", "step"))

    escalation.escalation_reevaluate(incident=Incident.objects.get(pk=incident.pk), now=t0 + timedelta(minutes=1))

    row = Deadline.objects.get(incident=incident, rule="ack", fired_at=None, cancelled_at=None)
    assert (row.step, row.due_at) == (1, t0 + timedelta(minutes=15))


def _post_status_update(incident, user):
    from incidents.escalation import status_updates

    draft = status_updates.status_update_draft(incident=incident)
    status_updates.status_update_post(
        incident=incident,
        user=user,
        subject=draft.subject,
        status=draft.status,
        impact="Orders delayed",
        details="Failing over",
        contact=draft.contact,
    )


def test_a_new_status_cycle_leaves_fired_and_cancelled_rows_as_they_were(team):
    incident = open_incident(reported_by=team["im"], level=1, commander=team["oncall3"])
    reminder = Deadline.objects.get(incident=incident, rule="status:1", step=1)
    fire_at(reminder.due_at)
    _post_status_update(incident, team["oncall3"])  # cycle 2: the pending escalation is reset
    escalate = Deadline.objects.get(incident=incident, rule="status:1", step=2)
    assert escalate.cancel_reason == "status update clock reset"

    _post_status_update(incident, team["oncall3"])  # cycle 3

    reminder.refresh_from_db()
    assert reminder.fired_at is not None and reminder.cancelled_at is None and reminder.cancel_reason == ""
    again = Deadline.objects.get(pk=escalate.pk)
    assert (again.cancelled_at, again.cancel_reason) == (escalate.cancelled_at, escalate.cancel_reason)


def test_an_overdue_reminder_is_not_pushed_back_by_a_change_of_cadence(team):
    # The dispatcher was down: this cycle's reminder fell due 5 minutes ago and has not fired.
    incident = open_incident(reported_by=team["im"], level=2, commander=team["oncall3"], financial_impact_usd=None)
    reminder = Deadline.objects.get(incident=incident, rule="status:1", step=1)
    overdue = timezone.now() - timedelta(minutes=5)
    Deadline.objects.filter(pk=reminder.pk).update(due_at=overdue)

    services.incident_update(incident=incident, user=team["im"], severity=severity_level(1))  # a 30-min cadence

    row = Deadline.objects.get(incident=incident, rule="status:1", step=1, fired_at=None, cancelled_at=None)
    assert (row.pk, row.due_at) == (reminder.pk, overdue)


def test_removing_systems_leaves_fired_and_cancelled_rto_rows_as_they_were(team):
    incident = open_incident(reported_by=team["oncall1"], level=2, systems=("circuit_breaker", "execution_engine"))
    breach = Deadline.objects.get(incident=incident, rule="rto_breach:circuit_breaker")
    fire_at(breach.due_at)
    services.incident_update(incident=incident, user=team["oncall1"], affected_systems=[system("execution_engine")])
    removed = Deadline.objects.get(incident=incident, rule="rto_breach:execution_engine")
    services.incident_update(incident=incident, user=team["oncall1"], affected_systems=[system("database")])
    removed.refresh_from_db()
    assert removed.cancel_reason == "system no longer affected"

    services.incident_update(incident=incident, user=team["oncall1"], affected_systems=[system("market_analysis")])

    breach.refresh_from_db()
    assert breach.fired_at is not None and breach.cancelled_at is None  # fired: its record stands
    again = Deadline.objects.get(pk=removed.pk)
    assert (again.cancelled_at, again.cancel_reason) == (removed.cancelled_at, "system no longer affected")


def test_a_compliance_notice_raised_after_the_resolution_arms_no_trigger(team):
    incident = open_incident(reported_by=team["oncall1"], level=2, financial_impact_usd=None)
    resolve(incident, team["oncall1"])

    escalation.regulatory_raise(incident=Incident.objects.get(pk=incident.pk), category_key="compliance-violation")

    assert not Deadline.objects.filter(
        incident=incident, kind=Deadline.Kind.ROLE_ESCALATION, fired_at=None, cancelled_at=None
    ).exists()


def test_a_sev4_is_due_an_acknowledgement_at_the_next_business_days_opening(team):
    # Detected on Friday 27 November 2026 at 18:00 in London: due Monday at 09:00, what the
    # incident page shows and what the chain's next step waits for.
    friday_evening = datetime(2026, 11, 27, 18, 0, tzinfo=ZoneInfo("Europe/London"))
    incident = open_incident(
        reported_by=team["oncall2"], level=4, financial_impact_usd=None, detected_at=friday_evening
    )
    monday_opening = datetime(2026, 11, 30, 9, 0, tzinfo=ZoneInfo("Europe/London"))
    assert escalation.response_due_at(incident) == monday_opening
    assert escalation._ack_step_due(incident, 1, previous_at=friday_evening) == monday_opening


def test_a_firing_that_raised_an_obligation_does_not_break_the_next_one_in_its_batch(team):
    # The outage notice is raised by one firing; a role page due a second later in the same
    # batch still checks the compliance flag and goes out.
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    outage = Deadline.objects.get(incident=incident, rule="outage_4h")
    ceo = Deadline.objects.get(incident=incident, rule="role:ceo-sev1-2h")
    Deadline.objects.filter(pk=ceo.pk).update(due_at=outage.due_at + timedelta(seconds=1))

    escalation.deadlines_fire_due(now=outage.due_at + timedelta(seconds=1))

    assert {"outage_4h", "role:ceo-sev1-2h"} <= set(fired_rules(incident))


def test_only_a_compliance_obligation_flags_an_incident_for_the_head_of_risk(team):
    # An outage notice is not a compliance matter: a compliance trigger's row armed by a race
    # finds no flag when it fires.
    incident = open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=None)
    escalation.regulatory_raise(incident=incident, category_key="outage_over_4h")
    trigger = next(t for t in escalation.snapshot_of(incident).triggers if t.condition == "compliance")
    now = timezone.now()
    Deadline.objects.create(
        incident=incident, kind=Deadline.Kind.ROLE_ESCALATION, rule=f"role:{trigger.key}", step=0, due_at=now
    )

    escalation.deadlines_fire_due(now=now)

    assert not EscalationEvent.objects.filter(incident=incident, rule=f"role:{trigger.key}").exists()


def test_a_step_that_fired_is_never_armed_again(team):
    incident = open_incident(reported_by=team["oncall2"], level=2)
    fire_at(incident.detected_at)  # the first page fires
    before = Deadline.objects.count()

    again = escalation.deadline_schedule(
        incident, kind=Deadline.Kind.ACKNOWLEDGE, rule="ack", step=0, due_at=timezone.now()
    )

    assert again is None and Deadline.objects.count() == before
