"""Regulatory regimes as data: each regime's clocks, the working-day rule, the stage chain,
classification, sign-off before submission."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from incidents import services
from incidents.escalation import regimes
from incidents.escalation import services as escalation
from incidents.escalation.models import (
    Deadline,
    EscalationEvent,
    RegimeStage,
    RegulatoryCategory,
    RegulatoryClassification,
    RegulatoryObligation,
    RegulatoryRegime,
)
from incidents.escalation.regime_clock import stage_due_at
from incidents.models import BusinessHoliday, TimelineEntry
from tests.factories import open_incident, tick_initial_assessment

pytestmark = pytest.mark.django_db

LONDON = ZoneInfo("Europe/London")
# Friday 27 August 2027, then the summer bank holiday on Monday 30 August.
FRIDAY = date(2027, 8, 27)
BANK_HOLIDAY = date(2027, 8, 30)


def at(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=LONDON)


def days(n: int) -> date:
    return FRIDAY + timedelta(days=n)


@pytest.fixture
def bank_holiday(db):
    return BusinessHoliday.objects.create(date=BANK_HOLIDAY, name="Summer bank holiday")


def regime(key: str) -> RegulatoryRegime:
    return RegulatoryRegime.objects.get(key=key)


def stage(regime_key: str, key: str) -> RegimeStage:
    return RegimeStage.objects.select_related("regime").get(regime__key=regime_key, key=key)


def classify(incident, user, *, key="dora", when, aware=None, reportable=True, criteria=("clients", "duration")):
    return regimes.regulatory_classify(
        incident=incident,
        regime=regime(key),
        user=user,
        reportable=reportable,
        criteria_met=list(criteria),
        aware_at=aware or when - timedelta(minutes=30),
        now=when,
    )


def obligations(incident, key="dora") -> dict[str, RegulatoryObligation]:
    rows = RegulatoryObligation.objects.filter(incident=incident, regime__key=key).select_related("stage")
    return {o.stage.key: o for o in rows}


def signed_and_submitted(obligation, *, drafter, signer, when, reference):
    regimes.regulatory_draft(obligation=obligation, user=drafter, now=when - timedelta(minutes=20))
    escalation.regulatory_sign_off(obligation=obligation, user=signer, now=when - timedelta(minutes=10))
    return escalation.regulatory_submit(obligation=obligation, user=drafter, reference=reference, now=when)


@pytest.fixture
def second_head_of_risk(team):
    from django.contrib.auth.models import Group

    from tests.factories import UserFactory

    user = UserFactory(username="head_of_risk_2")
    user.groups.add(Group.objects.get(name="Head of Risk Management"))
    return user


# -- DORA: the initial notification and the working-day rule -------------------------------


def test_dora_initial_on_friday_night_before_bank_holiday_moves_to_tuesday_noon(team, bank_holiday):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(FRIDAY, 22, 30))
    owed = obligations(incident)
    # +4 h is Saturday 02:30; Saturday, Sunday and the bank holiday are not working days, and
    # Art. 5 lets the report go by 12:00 noon of the next working day.
    assert owed["initial"].due_at == at(days(4), 12, 0)
    assert owed["initial"].clock_started_at == at(FRIDAY, 22, 30)
    assert owed["intermediate"].due_at is None and owed["final"].due_at is None
    due_pages = Deadline.objects.filter(rule=f"regulatory:{owed['initial'].pk}").order_by("step")
    assert [(d.step, d.due_at) for d in due_pages] == [(1, at(days(4), 11, 0)), (2, at(days(4), 12, 0))]


@pytest.mark.parametrize(
    ("classified", "due"),
    [
        (at(FRIDAY, 19, 59, 59), at(FRIDAY, 23, 59, 59)),  # still Friday: stays
        (at(FRIDAY, 20, 0), at(days(4), 12, 0)),  # Saturday 00:00: moves past the holiday
        (at(FRIDAY, 20, 0, 1), at(days(4), 12, 0)),
        (at(days(4), 8, 0), at(days(4), 12, 0)),  # Tuesday morning: a working day, no move
        (at(days(3), 20, 0), at(days(4), 0, 0)),  # on the holiday, falling due just after it: stays
        (at(days(3), 19, 59), at(days(4), 12, 0)),  # due at 23:59 on the holiday: moved
    ],
)
def test_dora_initial_at_the_edge_of_a_non_working_day(team, bank_holiday, classified, due):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=classified)
    assert obligations(incident)["initial"].due_at == due


@pytest.mark.parametrize(
    ("aware", "due"),
    [
        (at(days(-1), 14, 1), at(FRIDAY, 14, 0)),  # 24 h after awareness is later: 4 h rules
        (at(days(-1), 14, 0), at(FRIDAY, 14, 0)),  # both the same moment
        (at(days(-1), 12, 0), at(FRIDAY, 12, 0)),  # aware 22 h before classifying: the 24 h cap
    ],
)
def test_dora_initial_is_no_later_than_24_hours_after_awareness(team, aware, due):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(FRIDAY, 10, 0), aware=aware)
    assert obligations(incident)["initial"].due_at == due


def test_dora_awareness_cap_falling_on_the_holiday_before_classification_moves_too(team, bank_holiday):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    # Aware Sunday 10:00, classified Tuesday 09:00: 24 h after awareness is Monday 10:00 (the
    # bank holiday, and earlier than Tuesday 13:00), so it moves to Tuesday at noon.
    classify(incident, team["head_of_risk"], when=at(days(4), 9, 0), aware=at(days(2), 10, 0))
    assert obligations(incident)["initial"].due_at == at(days(4), 12, 0)


def test_dora_intermediate_runs_from_the_initial_submission_and_final_from_the_intermediate(
    team, bank_holiday, second_head_of_risk
):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(FRIDAY, 22, 30))
    owed = obligations(incident)
    with pytest.raises(ValidationError) as refused:
        escalation.regulatory_submit(obligation=owed["intermediate"], user=team["im"], reference="X")
    assert refused.value.messages == ["This report's clock has not started: submit the previous stage first."]
    # Submitted Tuesday 11:15 (before the noon deadline): 72 h later is Friday 11:15.
    signed_and_submitted(
        owed["initial"], drafter=team["im"], signer=team["head_of_risk"], when=at(days(4), 11, 15), reference="CA-1"
    )
    owed = obligations(incident)
    assert owed["initial"].status == "submitted"
    assert owed["intermediate"].clock_started_at == at(days(4), 11, 15)
    assert owed["intermediate"].due_at == at(days(7), 11, 15)
    started = TimelineEntry.objects.get(incident=incident, action__contains="clock started")
    assert started.action == f"{owed['intermediate'].label}: clock started, due 2027-09-03 10:15 UTC"
    assert (started.owner_team, started.occurred_at, started.data) == (
        "Escalation engine",
        at(days(4), 11, 15),
        {"obligation": owed["intermediate"].pk},
    )
    assert owed["final"].due_at is None
    assert Deadline.objects.filter(rule=f"regulatory:{owed['intermediate'].pk}", step=2).get().due_at == at(
        days(7), 11, 15
    )
    # The intermediate submitted on Thursday 2 September at 09:00: one month on is Saturday
    # 2 October, which moves to Monday 4 October at noon.
    signed_and_submitted(
        owed["intermediate"],
        drafter=team["im"],
        signer=second_head_of_risk,
        when=at(days(6), 9, 0),
        reference="CA-1-INT",
    )
    final = obligations(incident)["final"]
    assert final.clock_started_at == at(days(6), 9, 0)
    assert final.due_at == at(date(2027, 10, 4), 12, 0)


def test_dora_intermediate_due_on_a_weekend_moves_to_monday_noon(team, second_head_of_risk):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(days(-3), 9, 0))  # Tuesday
    signed_and_submitted(
        obligations(incident)["initial"],
        drafter=team["im"],
        signer=team["head_of_risk"],
        when=at(days(-2), 13, 0),  # Wednesday 13:00 + 72 h = Saturday 13:00
        reference="CA-2",
    )
    assert obligations(incident)["intermediate"].due_at == at(days(3), 12, 0)


@pytest.mark.parametrize(
    ("cap", "due"),
    [
        (timedelta(hours=30), at(days(-2), 15, 0)),  # aware Tuesday 09:00 + 30 h, before the 72 h
        (None, at(days(3), 12, 0)),  # no cap: Wednesday 13:00 + 72 h is Saturday, moved to Monday noon
    ],
)
def test_an_awareness_cap_configured_on_a_later_stage_caps_its_clock_too(team, cap, due):
    # The seed caps only the initial notification, but the cap is editable on every stage.
    RegimeStage.objects.filter(regime__key="dora", key="intermediate").update(no_later_than_after_awareness=cap)
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(days(-3), 9, 30), aware=at(days(-3), 9, 0))
    signed_and_submitted(
        obligations(incident)["initial"],
        drafter=team["im"],
        signer=team["head_of_risk"],
        when=at(days(-2), 13, 0),
        reference="CA-3",
    )
    assert obligations(incident)["intermediate"].due_at == due


def test_a_missed_dora_initial_pages_the_head_of_risk(team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(days(-3), 9, 0))
    initial = obligations(incident)["initial"]
    escalation.deadlines_fire_due(now=initial.due_at + timedelta(seconds=1))
    event = EscalationEvent.objects.get(rule=f"regulatory:{initial.pk}", step=2)
    assert event.target_user == team["head_of_risk"]
    assert "DORA major ICT-related incident reporting: Initial notification" in event.summary


# -- UK -----------------------------------------------------------------------------------


def test_uk_initial_is_24_hours_and_does_not_move_off_a_weekend(team, bank_holiday):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], key="uk-oir", when=at(FRIDAY, 22, 30), criteria=["consumer_harm"])
    owed = obligations(incident, "uk-oir")
    assert owed["initial"].due_at == at(days(1), 22, 30)
    assert owed["final"].due_at is None  # runs from the resolution


def test_uk_final_is_30_working_days_from_resolution(team, bank_holiday):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], key="uk-oir", when=at(days(-3), 9, 0), criteria=["consumer_harm"])
    for name in ["acknowledge", "start_investigation"]:
        services.incident_transition(incident=incident, name=name, user=team["oncall1"])
    tick_initial_assessment(incident, team["oncall1"])
    services.incident_transition(incident=incident, name="contain", user=team["oncall1"])
    incident = services.incident_update(incident=incident, user=team["oncall1"], resolution_actions="Failover")
    services.incident_transition(incident=incident, name="resolve", user=team["oncall1"], at=at(FRIDAY, 16, 0))
    final = obligations(incident, "uk-oir")["final"]
    assert final.clock_started_at == at(FRIDAY, 16, 0)
    # 30 working days after Friday 27 August, skipping the bank holiday (Tuesday 31 August is the
    # first): Monday 11 October, at the close of business.
    assert final.due_at == at(date(2027, 10, 11), 17, 30)


@pytest.mark.parametrize(
    ("anchor", "due"),
    [
        (at(days(-1), 9, 0), at(date(2027, 10, 8), 17, 30)),  # Thursday: Friday is the first
        (at(FRIDAY, 23, 59), at(date(2027, 10, 11), 17, 30)),  # late Friday: Tuesday is the first
        (at(days(1), 10, 0), at(date(2027, 10, 11), 17, 30)),  # Saturday: the same
    ],
)
def test_uk_final_counts_working_days_from_the_anchor_day(bank_holiday, anchor, due):
    assert stage_due_at(stage("uk-oir", "final"), anchor_at=anchor) == due


# -- what must not happen -----------------------------------------------------------------


def test_a_non_reportable_classification_owes_nothing(team):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    classification = classify(incident, team["head_of_risk"], when=at(FRIDAY, 10, 0), reportable=False, criteria=[])
    assert classification.reportable is False
    assert not RegulatoryObligation.objects.filter(incident=incident).exists()
    assert not Deadline.objects.filter(incident=incident, kind=Deadline.Kind.REGULATORY).exists()
    assert incident.timeline.filter(action__startswith="Classified under DORA").exists()


def test_reclassifying_creates_no_second_set(team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(FRIDAY, 10, 0))
    with pytest.raises(ValidationError, match="Already classified under DORA"):
        classify(incident, team["im"], when=at(FRIDAY, 11, 0), criteria=["data_losses"])
    assert RegulatoryObligation.objects.filter(incident=incident).count() == 3
    classification = RegulatoryClassification.objects.get(incident=incident)
    assert classification.classified_by == team["head_of_risk"]
    assert classification.criteria_met == ["clients", "duration"]


def test_raising_a_non_reportable_classification_starts_the_reports_then(team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["im"], when=at(FRIDAY, 9, 0), reportable=False, criteria=[])
    classify(incident, team["head_of_risk"], when=at(FRIDAY, 10, 0), aware=at(FRIDAY, 8, 0))
    assert RegulatoryClassification.objects.filter(incident=incident).count() == 1
    assert obligations(incident)["initial"].due_at == at(FRIDAY, 14, 0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"criteria_met": ["not_a_criterion"]}, "criteria_met"),
        ({"criteria_met": []}, "criteria_met"),
        ({"aware_at": at(FRIDAY, 11, 0)}, "aware_at"),  # after the classification (in the future then)
        ({"aware_at": datetime(1969, 12, 31, tzinfo=LONDON)}, "aware_at"),
    ],
)
def test_bad_classification_is_a_field_error_and_writes_nothing(team, kwargs, field):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    args = {"criteria_met": ["clients"], "aware_at": at(FRIDAY, 9, 0), **kwargs}
    with pytest.raises(ValidationError) as exc:
        regimes.regulatory_classify(
            incident=incident,
            regime=regime("dora"),
            user=team["head_of_risk"],
            reportable=True,
            now=at(FRIDAY, 10, 0),
            **args,
        )
    assert field in exc.value.message_dict
    assert not RegulatoryClassification.objects.exists() and not RegulatoryObligation.objects.exists()


def test_a_drill_is_not_classified(team):
    incident = open_incident(reported_by=team["oncall1"], level=1, is_drill=True)
    with pytest.raises(ValidationError, match="Drill"):
        classify(incident, team["head_of_risk"], when=at(FRIDAY, 10, 0))
    assert not RegulatoryObligation.objects.exists()


# -- sign-off -----------------------------------------------------------------------------


def test_sign_off_is_refused_to_anyone_but_the_head_of_risk(team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(FRIDAY, 10, 0))
    initial = obligations(incident)["initial"]
    regimes.regulatory_draft(obligation=initial, user=team["im"], now=at(FRIDAY, 10, 30))
    for user in (team["im"], team["cto"], team["oncall1"]):
        with pytest.raises(PermissionDenied):
            escalation.regulatory_sign_off(obligation=initial, user=user)
    initial.refresh_from_db()
    assert initial.signed_off_at is None


def test_the_drafter_cannot_sign_off_their_own_report(team, second_head_of_risk):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(FRIDAY, 10, 0))
    initial = obligations(incident)["initial"]
    regimes.regulatory_draft(obligation=initial, user=team["head_of_risk"], now=at(FRIDAY, 10, 30))
    with pytest.raises(
        PermissionDenied, match=r"^The report's drafter cannot sign it off; another Head of Risk must\.$"
    ):
        escalation.regulatory_sign_off(obligation=initial, user=team["head_of_risk"])
    initial.refresh_from_db()
    assert initial.signed_off_at is None
    escalation.regulatory_sign_off(obligation=initial, user=second_head_of_risk, now=at(FRIDAY, 10, 40))
    initial.refresh_from_db()
    assert initial.signed_off_by == second_head_of_risk


def test_a_staged_report_is_not_submitted_before_sign_off_nor_signed_before_a_draft(team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(FRIDAY, 10, 0))
    initial = obligations(incident)["initial"]
    with pytest.raises(ValidationError) as refused:
        escalation.regulatory_sign_off(obligation=initial, user=team["head_of_risk"])
    assert refused.value.messages == ["Draft the report before signing it off."]
    regimes.regulatory_draft(obligation=initial, user=team["im"], now=at(FRIDAY, 10, 30))
    with pytest.raises(ValidationError) as refused:
        escalation.regulatory_submit(obligation=initial, user=team["im"], reference="CA-9")
    assert refused.value.messages == ["The Head of Risk Management signs the report off before it is submitted."]
    initial.refresh_from_db()
    assert initial.submitted_at is None
    assert obligations(incident)["intermediate"].due_at is None


def test_changing_a_signed_draft_withdraws_the_sign_off(team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(FRIDAY, 10, 0))
    initial = obligations(incident)["initial"]
    regimes.regulatory_draft(obligation=initial, user=team["im"], now=at(FRIDAY, 10, 30))
    escalation.regulatory_sign_off(obligation=initial, user=team["head_of_risk"], now=at(FRIDAY, 10, 40))
    initial.refresh_from_db()
    regimes.regulatory_draft(
        obligation=initial,
        user=team["im"],
        content={**initial.content, "cause": "A bad deploy."},
        now=at(FRIDAY, 11, 0),
    )
    initial.refresh_from_db()
    assert initial.signed_off_at is None and initial.content["cause"] == "A bad deploy."


def test_the_draft_is_written_from_the_incident(team):
    incident = open_incident(
        reported_by=team["oncall1"], level=1, title="Order router rejecting orders", user_impact="Orders rejected"
    )
    classify(incident, team["head_of_risk"], when=at(FRIDAY, 10, 0))
    initial = regimes.regulatory_draft(obligation=obligations(incident)["initial"], user=team["im"])
    assert set(initial.content) == set(regimes.CONTENT_FIELDS)
    assert "Order router rejecting orders" in initial.content["summary"]
    assert initial.content["impact"].startswith("Orders rejected")
    assert "Classified under DORA" in initial.content["timeline"]


# -- the procedures' windows: the default regime --------------------------------------------


def test_the_procedures_categories_are_on_the_default_regime(team):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity")
    assert obligation.regime.is_default and obligation.regime.key == "procedures"
    assert obligation.stage.key == obligation.category.window
    assert obligation.clock_started_at == obligation.raised_at
    assert obligation.due_at == obligation.raised_at + timedelta(hours=24)


def test_awareness_before_the_incident_began_is_refused(team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    with pytest.raises(ValidationError) as exc:
        regimes.regulatory_classify(
            incident=incident,
            regime=regime("dora"),
            user=team["head_of_risk"],
            reportable=True,
            criteria_met=["clients"],
            aware_at=incident.started_at - timedelta(days=2),
        )
    assert "before the incident began" in exc.value.message_dict["aware_at"][0]


def test_classifying_an_incident_already_resolved_starts_the_uk_final_at_its_resolution(team, bank_holiday):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    for name in ["acknowledge", "start_investigation"]:
        services.incident_transition(incident=incident, name=name, user=team["oncall1"])
    tick_initial_assessment(incident, team["oncall1"])
    services.incident_transition(incident=incident, name="contain", user=team["oncall1"])
    incident = services.incident_update(incident=incident, user=team["oncall1"], resolution_actions="Failover")
    services.incident_transition(incident=incident, name="resolve", user=team["oncall1"], at=at(FRIDAY, 16, 0))
    classify(incident, team["head_of_risk"], key="uk-oir", when=at(days(3), 9, 0), criteria=["consumer_harm"])
    final = obligations(incident, "uk-oir")["final"]
    assert final.clock_started_at == at(FRIDAY, 16, 0)
    assert final.due_at == at(date(2027, 10, 11), 17, 30)


def test_a_reopened_and_re_resolved_incident_keeps_the_uk_final_clock(team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], key="uk-oir", when=at(days(-3), 9, 0), criteria=["consumer_harm"])
    for name in ["acknowledge", "start_investigation"]:
        services.incident_transition(incident=incident, name=name, user=team["oncall1"])
    tick_initial_assessment(incident, team["oncall1"])
    services.incident_transition(incident=incident, name="contain", user=team["oncall1"])
    incident = services.incident_update(incident=incident, user=team["oncall1"], resolution_actions="Failover")
    services.incident_transition(incident=incident, name="resolve", user=team["oncall1"], at=at(days(-2), 16, 0))
    first_due = obligations(incident, "uk-oir")["final"].due_at
    services.incident_transition(incident=incident, name="reopen", user=team["im"], reason="Came back")
    incident.refresh_from_db()
    services.incident_transition(incident=incident, name="contain", user=team["oncall1"])
    services.incident_transition(incident=incident, name="resolve", user=team["oncall1"], at=at(FRIDAY, 16, 0))
    final = obligations(incident, "uk-oir")["final"]
    assert final.due_at == first_due and final.clock_started_at == at(days(-2), 16, 0)
    assert Deadline.objects.filter(rule=f"regulatory:{final.pk}", step=2, cancelled_at=None).count() == 1


# -- the stage chain: only the next stage of the same classification starts -----------------


def test_a_submission_starts_only_its_own_classifications_next_stage(team):
    other = open_incident(reported_by=team["oncall1"], level=1)
    classify(other, team["head_of_risk"], when=at(days(-3), 9, 0))  # waiting first, with the lower rows
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(days(-3), 9, 30))

    signed_and_submitted(
        obligations(incident)["initial"],
        drafter=team["im"],
        signer=team["head_of_risk"],
        when=at(days(-3), 11, 0),
        reference="CA-7",
    )

    assert obligations(incident)["intermediate"].clock_started_at == at(days(-3), 11, 0)
    assert obligations(other)["intermediate"].clock_started_at is None
    assert obligations(other)["intermediate"].due_at is None


def test_the_uk_initial_report_does_not_start_the_final_reports_clock(team):
    # The final report runs from the resolution, not from the initial report's submission.
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], key="uk-oir", when=at(days(-3), 9, 0), criteria=["consumer_harm"])
    signed_and_submitted(
        obligations(incident, "uk-oir")["initial"],
        drafter=team["im"],
        signer=team["head_of_risk"],
        when=at(days(-3), 12, 0),
        reference="FCA-1",
    )
    final = obligations(incident, "uk-oir")["final"]
    assert final.clock_started_at is None and final.due_at is None


def test_the_last_stage_submitted_starts_nothing_further(team, second_head_of_risk):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(days(-3), 9, 0))
    for key, when, signer in [
        ("initial", at(days(-3), 11, 0), team["head_of_risk"]),
        ("intermediate", at(days(-2), 11, 0), second_head_of_risk),
        ("final", at(days(5), 11, 0), team["head_of_risk"]),
    ]:
        signed_and_submitted(obligations(incident)[key], drafter=team["im"], signer=signer, when=when, reference=key)
    assert {key: o.status for key, o in obligations(incident).items()} == {
        "initial": "submitted",
        "intermediate": "submitted",
        "final": "submitted",
    }
    assert RegulatoryObligation.objects.filter(incident=incident).count() == 3
    assert not Deadline.objects.filter(
        incident=incident, kind=Deadline.Kind.REGULATORY, fired_at=None, cancelled_at=None
    ).exists()


def test_a_report_submitted_before_sign_off_was_required_cannot_be_signed_off_after(team):
    RegimeStage.objects.filter(regime__key="dora", key="initial").update(requires_sign_off=False)
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(days(-3), 9, 0))
    initial = escalation.regulatory_submit(
        obligation=obligations(incident)["initial"], user=team["im"], reference="CA-9", now=at(days(-3), 10, 0)
    )
    RegimeStage.objects.filter(regime__key="dora", key="initial").update(requires_sign_off=True)

    with pytest.raises(ValidationError) as refused:
        escalation.regulatory_sign_off(obligation=initial, user=team["head_of_risk"])

    assert refused.value.messages == ["This report was submitted without sign-off; it cannot be signed off now."]
    initial.refresh_from_db()
    assert initial.signed_off_at is None and initial.signed_off_by is None


def test_a_submission_leaves_a_page_cancelled_before_it_as_it_was(team):
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], when=at(days(-3), 9, 0))
    initial = obligations(incident)["initial"]
    reminder = Deadline.objects.get(rule=f"regulatory:{initial.pk}", step=1)
    cancelled_at = at(days(-3), 9, 30)
    Deadline.objects.filter(pk=reminder.pk).update(cancelled_at=cancelled_at, cancel_reason="re-evaluated")

    signed_and_submitted(
        initial, drafter=team["im"], signer=team["head_of_risk"], when=at(days(-3), 11, 0), reference="CA-10"
    )

    reminder.refresh_from_db()
    assert (reminder.cancelled_at, reminder.cancel_reason) == (cancelled_at, "re-evaluated")
    due = Deadline.objects.get(rule=f"regulatory:{initial.pk}", step=2)
    assert (due.cancelled_at, due.cancel_reason) == (at(days(-3), 11, 0), "submitted")


def _resolved(incident, user, when):
    for name in ["acknowledge", "start_investigation"]:
        services.incident_transition(incident=incident, name=name, user=user)
    tick_initial_assessment(incident, user)
    services.incident_transition(incident=incident, name="contain", user=user)
    incident = services.incident_update(incident=incident, user=user, resolution_actions="Failover")
    services.incident_transition(incident=incident, name="resolve", user=user, at=when)
    return incident


def test_a_resolution_starts_only_its_own_incidents_clocks_that_run_from_a_resolution(team):
    other = open_incident(reported_by=team["oncall1"], level=1)
    classify(other, team["head_of_risk"], key="uk-oir", when=at(days(-3), 9, 0), criteria=["consumer_harm"])
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], key="uk-oir", when=at(days(-3), 9, 0), criteria=["consumer_harm"])
    classify(incident, team["head_of_risk"], when=at(days(-3), 9, 0))  # DORA too

    _resolved(incident, team["oncall1"], at(days(-2), 16, 0))

    assert obligations(incident, "uk-oir")["final"].clock_started_at == at(days(-2), 16, 0)
    assert obligations(other, "uk-oir")["final"].clock_started_at is None  # still open
    # DORA's later stages run from the previous submission, not from the resolution.
    assert obligations(incident)["intermediate"].clock_started_at is None


def test_a_seed_category_is_signed_off_after_submission_even_if_its_stage_asks_for_sign_off(team):
    # The seed's procedure: submit first, the Head of Risk signs off after. A sign-off flag set
    # on the default regime's stage does not hold the submission back.
    RegimeStage.objects.filter(regime__is_default=True).update(requires_sign_off=True)
    incident = open_incident(reported_by=team["oncall1"], level=1)
    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity")

    submitted = escalation.regulatory_submit(obligation=obligation, user=team["im"], reference="DI-1")
    signed = escalation.regulatory_sign_off(obligation=submitted, user=team["head_of_risk"])

    assert submitted.submitted_at is not None and signed.signed_off_by == team["head_of_risk"]


def test_a_category_whose_window_the_default_regime_lacks_takes_no_other_regimes_stage(team):
    # The default regime's stage for this window was removed in the admin; another regime has a
    # stage under the same key. The obligation stays on the default regime, with no stage.
    window = RegulatoryCategory.objects.get(key="data-integrity").window
    RegimeStage.objects.filter(regime__is_default=True, key=window).delete()
    RegimeStage.objects.create(
        regime=regime("uk-oir"), order=9, key=window, name="Borrowed", anchor="classification", within=timedelta(days=1)
    )
    incident = open_incident(reported_by=team["oncall1"], level=2)

    obligation = escalation.regulatory_raise(incident=incident, category_key="data-integrity")

    assert obligation.regime.is_default and obligation.stage is None
    assert obligation.due_at == obligation.raised_at + timedelta(hours=24)


def test_a_submission_starts_the_stage_right_after_it_not_an_earlier_one_still_waiting(team):
    # The UK regime edited to carry an intermediate report (from the initial's submission) and
    # a follow-up after the final. The initial is not submitted, so the intermediate's clock has
    # not started; the final runs from the resolution and can be submitted all the same. Its
    # submission starts the follow-up, nothing else.
    uk = regime("uk-oir")
    RegimeStage.objects.filter(regime=uk, key="final").update(order=3)
    for order, key in [(2, "intermediate"), (4, "follow-up")]:
        RegimeStage.objects.create(
            regime=uk, order=order, key=key, name=key.title(), anchor="previous_submission", within=timedelta(days=7)
        )
    incident = open_incident(reported_by=team["oncall1"], level=1)
    classify(incident, team["head_of_risk"], key="uk-oir", when=at(days(-3), 9, 0), criteria=["consumer_harm"])
    _resolved(incident, team["oncall1"], at(days(-2), 16, 0))

    signed_and_submitted(
        obligations(incident, "uk-oir")["final"],
        drafter=team["im"],
        signer=team["head_of_risk"],
        when=at(days(1), 10, 0),
        reference="UK-FINAL",
    )

    owed = obligations(incident, "uk-oir")
    assert owed["follow-up"].clock_started_at == at(days(1), 10, 0)
    assert owed["follow-up"].due_at == at(days(8), 10, 0)
    assert owed["intermediate"].clock_started_at is None and owed["intermediate"].due_at is None
