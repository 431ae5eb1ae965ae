"""What an incident freezes of the escalation policy at open: the default policy's own times,
the chain it continues into, and the built-in values when no policy is the default."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group

from incidents.escalation import services as escalation
from incidents.escalation.models import (
    Deadline,
    EscalationEvent,
    EscalationPolicy,
    EscalationStep,
    RegulatoryCategory,
)
from incidents.escalation.snapshot import DEFAULT_EMAIL_FOLLOW_UP_S, DEFAULT_STATUS_ESCALATE_AFTER_S, EscalationSnapshot
from incidents.models import Incident, SeverityLevel
from incidents.notifications.models import Notification
from tests.factories import open_incident

pytestmark = pytest.mark.django_db


def default_policy() -> EscalationPolicy:
    return EscalationPolicy.objects.get(is_default=True)


def pending_ack(incident):
    return Deadline.objects.filter(incident=incident, rule="ack", fired_at=None, cancelled_at=None)


def backup_policy() -> EscalationPolicy:
    backup = EscalationPolicy.objects.create(name="Backup", status_update_escalate_after=timedelta(minutes=5))
    EscalationStep.objects.create(
        policy=backup, order=1, delay=timedelta(minutes=5), target="role", role=Group.objects.get(name="CTO")
    )
    return backup


def test_the_default_policys_own_follow_up_and_status_escalation_times_are_used(team):
    policy = default_policy()
    policy.email_follow_up_after = timedelta(minutes=7)
    policy.status_update_escalate_after = timedelta(minutes=11)
    policy.save()
    assert (DEFAULT_EMAIL_FOLLOW_UP_S, DEFAULT_STATUS_ESCALATE_AFTER_S) != (7 * 60, 11 * 60)
    incident = open_incident(reported_by=team["im"], level=1, commander=team["oncall3"])

    escalation.deadlines_fire_due(now=incident.detected_at)

    first_page = Notification.objects.get(incident=incident, recipient=team["oncall1"], channel="email")
    sms = Notification.objects.get(incident=incident, recipient=team["oncall1"], channel="sms")
    assert first_page.next_attempt_at == sms.next_attempt_at + timedelta(minutes=7)
    reminder = Deadline.objects.get(incident=incident, rule="status:1", step=1)
    escalation.deadlines_fire_due(now=reminder.due_at)
    reminded_at = EscalationEvent.objects.get(incident=incident, rule="status:1", step=1).fired_at
    escalated = Deadline.objects.get(incident=incident, rule="status:1", step=2)
    assert escalated.due_at == reminded_at + timedelta(minutes=11)


def test_the_chain_goes_on_into_the_policy_the_default_continues_with(team):
    policy = default_policy()
    steps = policy.steps.count()
    policy.continue_with = backup_policy()
    policy.save()

    chain = escalation.snapshot_of(open_incident(reported_by=team["im"], level=1)).chain

    assert len(chain) == steps + 1
    assert (chain[-1].role, chain[-1].target, chain[-1].delay_s) == ("CTO", "role", 300)


def test_a_loop_of_policies_saved_around_the_admin_ends_at_the_first_policy_seen_again(team):
    policy = default_policy()
    steps = policy.steps.count()
    backup = backup_policy()
    backup.continue_with = policy
    backup.save()
    EscalationPolicy.objects.filter(pk=policy.pk).update(continue_with=backup)  # no validation on this path

    chain = escalation.snapshot_of(open_incident(reported_by=team["im"], level=1)).chain

    assert len(chain) == steps + 1  # each policy's steps once


def test_with_no_default_policy_an_incident_still_opens_on_the_built_in_values(team):
    EscalationPolicy.objects.update(is_default=False)

    incident = open_incident(reported_by=team["im"], level=1)

    snapshot = escalation.snapshot_of(incident)
    built_in = EscalationSnapshot()
    assert (snapshot.policy, snapshot.chain) == (built_in.policy, ())
    assert (snapshot.status_escalate_after_s, snapshot.email_follow_up_s) == (
        DEFAULT_STATUS_ESCALATE_AFTER_S,
        DEFAULT_EMAIL_FOLLOW_UP_S,
    )
    assert not Deadline.objects.filter(incident=incident, kind=Deadline.Kind.ACKNOWLEDGE).exists()  # nobody to page


def test_a_frozen_trigger_whose_condition_this_version_no_longer_knows_pages_nobody(team):
    # An incident opened before an upgrade that retired a kind of trigger keeps it in its
    # snapshot; when its row comes due, the unknown condition does not apply.
    incident = open_incident(reported_by=team["im"], level=1, financial_impact_usd=None)
    row = Deadline.objects.get(incident=incident, rule="role:cto-sev1")
    for trigger in incident.escalation_snapshot["triggers"]:
        if trigger["key"] == "cto-sev1":
            trigger["condition"] = "retired-condition"
    incident.save(update_fields=["escalation_snapshot"])

    escalation.deadlines_fire_due(now=row.due_at)

    assert not EscalationEvent.objects.filter(incident=incident, rule="role:cto-sev1").exists()
    assert not Notification.objects.filter(incident=incident, recipient=team["cto"]).exists()


def test_each_severity_is_kept_as_it_was_at_open(team):
    incident = open_incident(reported_by=team["im"], level=1)
    level = SeverityLevel.objects.get(level=1)
    at_open = (level.label, level.response_time)
    due = escalation.response_due_at(incident)
    level.name, level.response_time = "Renamed", level.response_time + timedelta(minutes=30)
    level.save()

    frozen = escalation.snapshot_of(Incident.objects.get(pk=incident.pk)).severities["1"]

    assert (frozen.label, timedelta(seconds=frozen.response_s)) == at_open
    assert escalation.response_due_at(Incident.objects.get(pk=incident.pk)) == due


def test_an_incident_with_nothing_frozen_follows_the_live_severity(team):
    # Rows from before the policy was frozen at open (an import, an older version) have none.
    incident = open_incident(reported_by=team["im"], level=2)
    Incident.objects.filter(pk=incident.pk).update(escalation_snapshot={})
    incident = Incident.objects.get(pk=incident.pk)
    live = SeverityLevel.objects.get(level=2)

    assert escalation.response_due_at(incident) == incident.detected_at + live.response_time
    assert escalation.status_interval(incident) == live.status_update_interval


def test_with_the_outage_rules_time_cleared_no_outage_deadline_is_armed(team):
    RegulatoryCategory.objects.filter(key=escalation.OUTAGE_CATEGORY).update(raise_after_open=None)

    incident = open_incident(reported_by=team["im"], level=1)

    assert escalation.snapshot_of(incident).outage_after_s is None
    assert not Deadline.objects.filter(incident=incident, kind=Deadline.Kind.OUTAGE).exists()


def test_the_first_steps_own_delay_comes_after_the_response_time(team):
    first = default_policy().steps.order_by("order").first()
    first.delay = timedelta(minutes=5)
    first.save()
    incident = open_incident(reported_by=team["im"], level=2)

    escalation.deadlines_fire_due(now=incident.detected_at)

    step1 = Deadline.objects.get(incident=incident, rule="ack", step=1)
    assert step1.due_at == escalation.response_due_at(incident) + timedelta(minutes=5)


def test_a_severity_with_no_response_time_pages_once_and_arms_no_next_step(team):
    SeverityLevel.objects.filter(level=3).update(response_time=None, response_next_business_day=False)
    incident = open_incident(reported_by=team["im"], level=3)

    escalation.deadlines_fire_due(now=incident.detected_at)

    assert EscalationEvent.objects.filter(incident=incident, rule="ack", step=0).exists()
    assert not Deadline.objects.filter(incident=incident, rule="ack", step=1).exists()
    # Nor does an edit re-arm one: there is still no response time to run out.
    escalation.escalation_reevaluate(incident=Incident.objects.get(pk=incident.pk))
    assert not pending_ack(incident).exists()


def test_the_chain_pages_its_last_step_and_nothing_after_also_when_re_evaluated_on_the_way(team):
    incident = open_incident(reported_by=team["im"], level=2)
    steps = len(escalation.snapshot_of(incident).chain)
    escalation.deadlines_fire_due(now=incident.detected_at)
    for _ in range(steps - 1):
        pending = pending_ack(incident).get()
        escalation.deadlines_fire_due(now=pending.due_at)

    # An edit re-arms the chain from what has fired: the last step is still to come.
    escalation.escalation_reevaluate(incident=Incident.objects.get(pk=incident.pk))
    last = pending_ack(incident).get()
    assert last.step == steps
    escalation.deadlines_fire_due(now=last.due_at)

    fired = EscalationEvent.objects.filter(incident=incident, rule="ack").order_by("step")
    assert list(fired.values_list("step", flat=True)) == list(range(steps + 1))
    assert not pending_ack(incident).exists()
