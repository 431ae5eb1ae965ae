"""What a firing leaves behind, word for word: the escalation event (whom, what it says, which
rule and step, when it was due), the timeline entry the team reads, the channels each page goes
by, and the step it arms next. The status-update reminder and its escalation, the role pages with
their deputy and manager fallbacks, and the acknowledgement chain's pages."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from incidents import services
from incidents.escalation import services as escalation
from incidents.escalation.models import Deadline, EscalationEvent
from incidents.models import TimelineEntry
from incidents.notifications.models import Notification, WebhookEndpoint
from incidents.oncall.models import RoleContact, RotationMember
from tests.factories import open_incident

pytestmark = pytest.mark.django_db


def fired(incident, rule: str, step: int) -> EscalationEvent:
    return EscalationEvent.objects.get(incident=incident, rule=rule, step=step)


def channels(event: EscalationEvent, user) -> set[str]:
    return set(Notification.objects.filter(event=event, recipient=user).values_list("channel", flat=True))


def entry_for(event: EscalationEvent) -> TimelineEntry:
    return TimelineEntry.objects.get(
        incident=event.incident, kind=TimelineEntry.Kind.ESCALATION, data__rule=event.rule, data__step=event.step
    )


def name(user) -> str:
    return user.get_full_name()


def fire_first_pages(incident):
    escalation.deadlines_fire_due(now=incident.detected_at)


def fire_fallbacks(incident, *rules: str) -> None:
    """The first pages, then the given fallback rows of a role page, a minute after detection."""
    fire_first_pages(incident)
    now = incident.detected_at + timedelta(minutes=1)
    for rule in rules:
        escalation.deadline_schedule(incident, kind=Deadline.Kind.ROLE_ESCALATION, rule=rule, step=1, due_at=now)
    escalation.deadlines_fire_due(now=now)


# -- the record of one firing -------------------------------------------------------------------


def test_a_firing_writes_its_event_and_the_timeline_entry_that_says_the_same(team):
    incident = open_incident(reported_by=team["oncall2"], level=2)
    row = Deadline.objects.get(incident=incident, rule="ack", step=0)

    fire_first_pages(incident)

    event = fired(incident, "ack", 0)
    summary = f"New High (Severity 2) incident: paging on-call On-Call Engineer: {name(team['oncall1'])}"
    assert event.summary == summary
    assert event.target_label == "on-call On-Call Engineer" and event.target_user == team["oncall1"]
    assert event.deadline == row and event.due_at == row.due_at
    entry = entry_for(event)
    assert entry.action == summary and entry.owner is None and entry.owner_team == "Escalation engine"
    assert entry.occurred_at == event.fired_at
    assert entry.data == {
        "rule": "ack",
        "step": 0,
        "due_at": row.due_at.isoformat(),
        "target": "on-call On-Call Engineer",
    }
    # Urgent: by SMS and phone at once, an email to follow.
    assert channels(event, team["oncall1"]) == {"sms", "phone", "email"}


def test_a_firing_tells_each_chat_hook_once(team):
    WebhookEndpoint.objects.create(name="Ops chat", url="https://chat.example.test/hook", max_severity_level=2)
    WebhookEndpoint.objects.create(name="Sev1 only", url="https://chat.example.test/sev1", max_severity_level=1)
    incident = open_incident(reported_by=team["oncall2"], level=2)

    fire_first_pages(incident)

    event = fired(incident, "ack", 0)
    hooks = Notification.objects.filter(event=event, channel="webhook")
    assert list(hooks.values_list("address", flat=True)) == ["https://chat.example.test/hook"]


def test_a_later_step_of_the_chain_says_why_and_which_step(team):
    incident = open_incident(reported_by=team["oncall2"], level=2)
    fire_first_pages(incident)
    step1 = Deadline.objects.get(incident=incident, rule="ack", step=1)
    chain = escalation.snapshot_of(incident).chain

    escalation.deadlines_fire_due(now=step1.due_at)

    event = fired(incident, "ack", 1)
    assert event.summary == (
        f"Not acknowledged within the response time: step 1 of {len(chain)} pages "
        f"on-call On-Call Engineer: {name(team['oncall1'])}"
    )
    assert entry_for(event).action == event.summary


def test_a_chain_step_with_nobody_on_call_says_so_and_goes_straight_on(team):
    RotationMember.objects.filter(rotation=team["rotation"]).delete()
    incident = open_incident(reported_by=team["oncall2"], level=2)

    fire_first_pages(incident)

    event = fired(incident, "ack", 0)
    assert event.summary == (
        "New High (Severity 2) incident: paging on-call On-Call Engineer: "
        "nobody (no on-call On-Call Engineer configured)"
    )
    assert event.target_user is None and not Notification.objects.filter(event=event).exclude(channel="webhook")
    step1 = Deadline.objects.get(incident=incident, rule="ack", step=1, fired_at=None)
    assert step1.due_at == event.fired_at  # not after the response time: at once


# -- the status-update cadence ------------------------------------------------------------------


def test_an_overdue_status_update_reminds_the_commander_by_email_then_escalates(team):
    incident = open_incident(reported_by=team["im"], level=1, commander=team["oncall3"])
    snapshot = escalation.snapshot_of(incident)
    step1 = Deadline.objects.get(incident=incident, rule="status:1", step=1)

    escalation.deadlines_fire_due(now=step1.due_at)

    reminder = fired(incident, "status:1", 1)
    assert reminder.summary == f"Status update overdue: reminder to {name(team['oncall3'])}"
    assert reminder.target_user == team["oncall3"]
    assert channels(reminder, team["oncall3"]) == {"email"}  # a reminder, not a page, even for a Sev1
    assert entry_for(reminder).action == reminder.summary
    step2 = Deadline.objects.get(incident=incident, rule="status:1", step=2)
    assert step2.kind == Deadline.Kind.STATUS_UPDATE
    assert step2.due_at == reminder.fired_at + snapshot.status_escalate_after
    assert not Deadline.objects.filter(incident=incident, rule="status:1", step=3).exists()

    escalation.deadlines_fire_due(now=step2.due_at)

    escalated = fired(incident, "status:1", 2)
    assert escalated.summary == (f"Status update still overdue: escalated to the incident manager {name(team['im'])}")
    assert escalated.target_user == team["im"] and channels(escalated, team["im"]) == {"email"}
    assert not Deadline.objects.filter(incident=incident, rule="status:1", step=3).exists()


def test_an_overdue_status_update_with_no_commander_reminds_whoever_is_on_call(team):
    incident = open_incident(reported_by=team["im"], level=1)
    incident.commander = None
    incident.save(update_fields=["commander"])
    step1 = Deadline.objects.get(incident=incident, rule="status:1", step=1)

    escalation.deadlines_fire_due(now=step1.due_at)

    assert fired(incident, "status:1", 1).target_user == team["oncall1"]


def test_the_status_escalation_pages_the_incident_manager_named_when_it_fires_or_says_nobody(team):
    incident = open_incident(reported_by=team["im"], level=1, commander=team["oncall3"])
    step1 = Deadline.objects.get(incident=incident, rule="status:1", step=1)
    escalation.deadlines_fire_due(now=step1.due_at)
    # The incident manager changed after the reminder: the one named now is paged.
    RoleContact.objects.filter(role__name="Incident Manager").update(primary=team["im_deputy"], deputy=None)
    step2 = Deadline.objects.get(incident=incident, rule="status:1", step=2)

    escalation.deadlines_fire_due(now=step2.due_at)

    assert fired(incident, "status:1", 2).target_user == team["im_deputy"]

    other = open_incident(reported_by=team["im"], level=1, commander=team["oncall3"])
    RotationMember.objects.filter(rotation=team["rotation"]).delete()
    other.commander = None
    other.save(update_fields=["commander"])
    RoleContact.objects.filter(role__name="Incident Manager").delete()
    first = Deadline.objects.get(incident=other, rule="status:1", step=1)
    escalation.deadlines_fire_due(now=first.due_at)
    assert fired(other, "status:1", 1).summary == "Status update overdue: reminder to nobody"
    second = Deadline.objects.get(incident=other, rule="status:1", step=2)
    escalation.deadlines_fire_due(now=second.due_at)
    nobody = fired(other, "status:1", 2)
    assert nobody.summary == "Status update still overdue: escalated to the incident manager nobody"
    assert nobody.target_user is None and not Notification.objects.filter(event=nobody).exclude(channel="webhook")


# -- role pages and their fallbacks -------------------------------------------------------------


def test_a_role_page_names_the_trigger_the_role_and_the_person(team):
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    trigger = escalation.snapshot_of(incident).trigger("cto-sev1")

    fire_first_pages(incident)

    event = fired(incident, "role:cto-sev1", 0)
    assert event.summary == f"{trigger.name}: paging CTO {name(team['cto'])}"
    assert event.target_label == "CTO" and event.target_user == team["cto"]
    assert channels(event, team["cto"]) == {"sms", "phone", "email"}
    assert entry_for(event).data["target"] == "CTO"
    # Reached: no fallback armed.
    assert not Deadline.objects.filter(incident=incident, rule__startswith="role:cto-sev1:").exists()


def test_a_role_page_goes_to_whoever_is_the_roles_primary_when_it_fires_not_its_deputy(team):
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    # The CTO's contact changed after the incident opened: the page follows the contact now.
    RoleContact.objects.filter(role=Group.objects.get(name="CTO")).update(primary=team["im_deputy"], deputy=team["ceo"])
    fire_first_pages(incident)
    event = fired(incident, "role:cto-sev1", 0)
    assert event.target_user == team["im_deputy"]
    assert not Notification.objects.filter(event=event, recipient=team["ceo"]).exists()


def test_the_deputy_and_the_manager_fallbacks_say_whom_they_page_and_why(team):
    RoleContact.objects.filter(role__name="CTO").update(deputy=team["im_deputy"])
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    trigger = escalation.snapshot_of(incident).trigger("cto-sev1")
    fire_fallbacks(incident, "role:cto-sev1:deputy", "role:cto-sev1:manager")

    deputy = fired(incident, "role:cto-sev1:deputy", 1)
    assert deputy.summary == f"{trigger.name}: paging CTO deputy {name(team['im_deputy'])}"
    assert deputy.target_label == "CTO deputy" and deputy.target_user == team["im_deputy"]
    manager = fired(incident, "role:cto-sev1:manager", 1)
    assert manager.summary == (
        f"{trigger.name}: paging the incident manager, as the CTO could not be reached: {name(team['im'])}"
    )
    assert manager.target_user == team["im"]


def test_a_deputy_page_with_no_deputy_goes_to_nobody_and_on_to_the_manager(team):
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    trigger = escalation.snapshot_of(incident).trigger("cto-sev1")
    fire_fallbacks(incident, "role:cto-sev1:deputy")

    deputy = fired(incident, "role:cto-sev1:deputy", 1)
    # Not the primary again: the deputy was asked for because the primary could not be reached.
    assert deputy.target_user is None
    assert deputy.summary == f"{trigger.name}: paging CTO deputy nobody (no contact for CTO configured)"
    manager = Deadline.objects.get(incident=incident, rule="role:cto-sev1:manager")
    assert manager.due_at == deputy.fired_at and manager.fired_at is None


def test_the_manager_fallback_with_no_incident_manager_configured_says_so(team):
    RoleContact.objects.filter(role__name="Incident Manager").delete()
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    trigger = escalation.snapshot_of(incident).trigger("cto-sev1")
    fire_fallbacks(incident, "role:cto-sev1:manager")

    manager = fired(incident, "role:cto-sev1:manager", 1)
    assert manager.target_user is None
    assert manager.summary == (
        f"{trigger.name}: paging the incident manager, as the CTO could not be reached: "
        "nobody (no contact for Incident Manager configured)"
    )
    # The last fallback: nothing further is armed.
    assert list(Deadline.objects.filter(incident=incident, rule__startswith="role:cto-sev1:", fired_at=None)) == []


def test_a_role_page_whose_trigger_no_longer_applies_records_nothing(team):
    incident = open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=Decimal("9000"))
    row = Deadline.objects.get(incident=incident, rule="role:head-of-risk-financial")
    # The impact was corrected down while the row waited (the row outlived the re-evaluation).
    type(incident).objects.filter(pk=incident.pk).update(financial_impact_usd=Decimal("4000"))

    escalation.deadlines_fire_due(now=row.due_at)

    assert not EscalationEvent.objects.filter(incident=incident, rule="role:head-of-risk-financial").exists()
    assert not Notification.objects.filter(incident=incident, recipient=team["head_of_risk"]).exists()


# -- RTO breaches -------------------------------------------------------------------------------


def test_an_rto_breach_names_the_system_its_rto_and_the_incident_manager(team):
    incident = open_incident(reported_by=team["oncall1"], level=2, systems=("circuit_breaker",))
    row = Deadline.objects.get(incident=incident, rule="rto_breach:circuit_breaker")

    escalation.deadlines_fire_due(now=row.due_at)

    event = fired(incident, "rto_breach:circuit_breaker", 0)
    system = incident.affected_systems.get(key="circuit_breaker")
    assert event.summary == (
        f"{system.name} not restored within its RTO of 5 min: paging the incident manager {name(team['im'])}"
    )
    assert event.target_label == "incident manager" and event.target_user == team["im"]
    assert channels(event, team["im"]) == {"sms", "phone", "email"}


def test_an_rto_breach_with_no_incident_manager_configured_says_so(team):
    RoleContact.objects.filter(role__name="Incident Manager").delete()
    incident = open_incident(reported_by=team["oncall1"], level=2, systems=("circuit_breaker",))
    row = Deadline.objects.get(incident=incident, rule="rto_breach:circuit_breaker")

    escalation.deadlines_fire_due(now=row.due_at)

    event = fired(incident, "rto_breach:circuit_breaker", 0)
    assert event.summary.endswith("paging the incident manager nobody (no Incident Manager contact configured)")
    assert event.target_user is None and not Notification.objects.filter(event=event).exclude(channel="webhook")


def test_a_regulatory_page_to_two_people_sharing_a_mailbox_goes_once_to_it(team):
    # The commander reads the Head of Risk's shared mailbox: one email to it, and the firing
    # is not refused for the repeated address.
    commander = team["oncall3"]
    commander.email = team["head_of_risk"].email
    commander.save()
    incident = open_incident(reported_by=team["im"], level=2, commander=commander)
    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity")
    due = Deadline.objects.get(rule=f"regulatory:{obligation.pk}", step=2)

    escalation.deadlines_fire_due(now=due.due_at)

    event = fired(incident, f"regulatory:{obligation.pk}", 2)
    emails = Notification.objects.filter(event=event, channel="email", address=commander.email)
    assert emails.count() == 1
    assert channels(event, commander) >= {"sms"} and channels(event, team["head_of_risk"]) >= {"sms"}


def test_a_role_page_that_reaches_nobody_goes_to_the_deputy_at_once(team):
    # The CTO has no phone, SMS number or email on file: nothing to send, so the deputy now.
    RoleContact.objects.filter(role__name="CTO").update(deputy=team["im_deputy"])
    cto = team["cto"]
    cto.person.delete()
    cto.email = ""
    cto.save()
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)

    fire_first_pages(incident)

    page = fired(incident, "role:cto-sev1", 0)
    assert page.target_user == cto
    deputy = Deadline.objects.get(incident=incident, rule="role:cto-sev1:deputy", fired_at=None)
    assert deputy.due_at == page.fired_at


def test_a_deputy_page_that_reaches_nobody_goes_on_to_the_incident_manager(team):
    deputy = team["im_deputy"]
    RoleContact.objects.filter(role__name="CTO").update(deputy=deputy)
    deputy.person.delete()
    deputy.email = ""
    deputy.save()
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    fire_fallbacks(incident, "role:cto-sev1:deputy")

    assert fired(incident, "role:cto-sev1:deputy", 1).target_user == deputy
    manager = Deadline.objects.get(incident=incident, rule="role:cto-sev1:manager", fired_at=None)
    assert manager.due_at == fired(incident, "role:cto-sev1:deputy", 1).fired_at


def test_a_summary_longer_than_the_record_holds_is_cut_and_the_page_still_goes(team):
    cto = team["cto"]
    cto.first_name, cto.last_name = "C" * 150, "T" * 150  # a 301-character name
    cto.save()
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)

    fire_first_pages(incident)

    event = fired(incident, "role:cto-sev1", 0)
    assert len(event.summary) == 300 and event.summary.startswith(
        escalation.snapshot_of(incident).trigger("cto-sev1").name
    )
    assert channels(event, cto) == {"sms", "phone", "email"}


def test_a_trigger_that_applies_again_after_its_row_was_spent_is_armed_and_pages(team):
    incident = open_incident(reported_by=team["oncall2"], level=2, financial_impact_usd=Decimal("9000"))
    row = Deadline.objects.get(incident=incident, rule="role:head-of-risk-financial")
    type(incident).objects.filter(pk=incident.pk).update(financial_impact_usd=Decimal("4000"))
    escalation.deadlines_fire_due(now=row.due_at)  # spent: the trigger did not apply then
    assert not EscalationEvent.objects.filter(incident=incident, rule="role:head-of-risk-financial").exists()

    # The impact is confirmed above $5,000 after all: the Head of Risk must still be told.
    services.incident_update(
        incident=type(incident).objects.get(pk=incident.pk), user=team["oncall2"], financial_impact_usd=Decimal("7000")
    )
    escalation.deadlines_fire_due(now=timezone.now())

    event = EscalationEvent.objects.get(incident=incident, rule="role:head-of-risk-financial")
    assert event.target_user == team["head_of_risk"]


def test_a_target_longer_than_its_column_is_cut_to_200_characters_and_still_paged(team):
    # A role's name may take the group name's 150 characters; the manager fallback's label
    # around it then comes to 201, one more than its column holds.
    long_name = ("Chief Technology Officer for Trading, Market Data and Execution Infrastructure " * 2)[:150]
    Group.objects.filter(name="CTO").update(name=long_name)
    incident = open_incident(reported_by=team["oncall2"], level=1, financial_impact_usd=None)
    fire_fallbacks(incident, "role:cto-sev1:manager")

    manager = fired(incident, "role:cto-sev1:manager", 1)
    label = f"the incident manager, as the {long_name} could not be reached:"
    assert len(label) == 201
    assert manager.target_label == label[:200]
    assert manager.target_user == team["im"] and channels(manager, team["im"]) == {"sms", "phone", "email"}
