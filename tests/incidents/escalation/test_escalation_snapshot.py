"""The frozen escalation policy: one reader with every default, and what it freezes at open."""

from datetime import timedelta

import pytest

from incidents.escalation.models import EscalationPolicy, EscalationTrigger
from incidents.escalation.snapshot import (
    DEFAULT_EMAIL_FOLLOW_UP_S,
    DEFAULT_STATUS_ESCALATE_AFTER_S,
    EscalationSnapshot,
    Trigger,
    snapshot_of,
)
from tests.factories import make_roster, open_incident


def test_an_empty_snapshot_reads_every_default():
    snapshot = EscalationSnapshot.from_json({})
    assert snapshot.status_escalate_after == timedelta(seconds=DEFAULT_STATUS_ESCALATE_AFTER_S) == timedelta(minutes=15)
    assert snapshot.email_follow_up == timedelta(seconds=DEFAULT_EMAIL_FOLLOW_UP_S) == timedelta(minutes=1)
    assert snapshot.chain == () and snapshot.triggers == () and snapshot.outage_after_s is None
    assert EscalationSnapshot.from_json(None) == snapshot


def test_a_snapshot_round_trips_through_json_and_ignores_keys_it_does_not_know():
    data = {
        "policy": "Default",
        "chain": [{"delay_s": 300.0, "target": "on_call", "role": "On-Call Engineer", "extra": 1}],
        "status_escalate_after_s": 600.0,
        "email_follow_up_s": 30.0,
        "outage_after_s": 14400.0,
        "severities": {"1": {"label": "Sev1", "major": True, "response_s": 900.0, "later_field": "x"}},
        "triggers": [
            {"key": "impact", "name": "Impact", "role": "CTO", "condition": "financial_impact", "amount_usd": "5000"}
        ],
        "added_in_a_later_version": True,
    }
    snapshot = EscalationSnapshot.from_json(data)
    assert snapshot.chain[0].delay_s == 300.0 and snapshot.chain[0].role == "On-Call Engineer"
    assert snapshot.severities["1"].response_s == 900.0 and snapshot.severities["1"].status_interval is None
    assert snapshot.trigger("impact").amount == 5000 and snapshot.trigger("missing") is None
    assert snapshot.trigger("impact").rule == "role:impact"
    assert EscalationSnapshot.from_json(snapshot.to_json()) == snapshot


def test_a_zero_stored_value_is_kept_not_replaced_by_the_default():
    snapshot = EscalationSnapshot.from_json({"email_follow_up_s": 0.0, "status_escalate_after_s": 0.0})
    assert snapshot.email_follow_up == timedelta(0) and snapshot.status_escalate_after == timedelta(0)


@pytest.mark.django_db
def test_the_policy_frozen_at_open_does_not_follow_a_later_admin_edit():
    team = make_roster()
    policy = EscalationPolicy.objects.get(is_default=True)
    incident = open_incident(reported_by=team["oncall1"], level=1)
    frozen = snapshot_of(incident)
    assert frozen.policy == policy.name
    assert frozen.email_follow_up == policy.email_follow_up_after
    assert {t.key for t in frozen.triggers} == set(
        EscalationTrigger.objects.filter(active=True).values_list("key", flat=True)
    )
    assert all(isinstance(t, Trigger) for t in frozen.triggers)
    policy.email_follow_up_after = policy.email_follow_up_after + timedelta(minutes=5)
    policy.save()
    incident.refresh_from_db()
    assert snapshot_of(incident).email_follow_up == frozen.email_follow_up
