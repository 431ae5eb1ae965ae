import re
from datetime import UTC, datetime, time, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from incidents.escalation.models import (
    Deadline,
    EscalationEvent,
    EscalationPolicy,
    EscalationStep,
    EscalationTrigger,
    RegulatoryCategory,
    RegulatoryObligation,
    StatusUpdate,
)
from incidents.models import BusinessHoliday
from incidents.monitoring.models import WorkerHeartbeat
from incidents.notifications.models import (
    DistributionList,
    Notification,
    NotificationAttempt,
    WebhookEndpoint,
)
from incidents.oncall.models import (
    OnCallOverride,
    OnCallRotation,
    Person,
    RoleContact,
    RotationMember,
)
from tests.factories import UserFactory, make_roster, open_incident

ROSTER_URL = "/roster/"


@pytest.fixture
def su_client(client, db):
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@tmt.example", "x-pass-123"))
    return client


@pytest.fixture
def team(db):
    return make_roster()


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _management(prefix: str, total: int, initial: int = 0) -> dict:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def _split(prefix: str, value: datetime) -> dict:
    value = value.astimezone(UTC)
    return {
        f"{prefix}_0": value.date().isoformat(),
        f"{prefix}_1": value.time().strftime("%H:%M:%S"),
    }


def _name(user) -> str:
    return escape(user.get_full_name() or user.get_username())


def _cell(html: str, day) -> str:
    match = re.search(rf'<li [^>]*data-date="{day.isoformat()}"[^>]*>(.*?)</li>', html, re.S)
    assert match, f"no calendar cell for {day}"
    return match.group(1)


def _section(html: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}">(.*?)</div>', html, re.S)
    assert match, testid
    return match.group(1)


def _policy_data(policy: EscalationPolicy, **changes) -> dict:
    steps = list(policy.steps.order_by("order"))
    data = {
        "name": policy.name,
        "continue_with": policy.continue_with_id or "",
        "status_update_escalate_after": "00:15:00",
        **_management("steps", len(steps), len(steps)),
    }
    if policy.is_default:
        data["is_default"] = "on"
    for i, step in enumerate(steps):
        data |= {
            f"steps-{i}-id": step.pk,
            f"steps-{i}-policy": policy.pk,
            f"steps-{i}-order": step.order,
            f"steps-{i}-delay": "00:05:00",
            f"steps-{i}-target": step.target,
            f"steps-{i}-role": step.role_id,
        }
    return data | changes


# -- admin: escalation policy ----------------------------------------------------------------


def test_admin_refuses_a_new_policy_without_steps(su_client):
    before = EscalationPolicy.objects.count()
    response = su_client.post(
        _url(EscalationPolicy, "add"),
        {"name": "Empty", "status_update_escalate_after": "00:10:00", **_management("steps", 1)},
    )
    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert "An escalation chain needs at least one step." in formset.non_form_errors()
    assert "An escalation chain needs at least one step." in response.content.decode()
    assert EscalationPolicy.objects.count() == before


def test_admin_refuses_deleting_every_step_of_a_policy(su_client):
    policy = EscalationPolicy.objects.get(is_default=True)
    data = _policy_data(policy)
    for i in range(policy.steps.count()):
        data[f"steps-{i}-DELETE"] = "on"
    response = su_client.post(_url(EscalationPolicy, "change", policy.pk), data)
    assert response.status_code == 200
    assert "at least one step" in response.content.decode()
    assert policy.steps.count() == 3


def test_admin_saves_a_valid_policy_with_steps(su_client, roles):
    response = su_client.post(
        _url(EscalationPolicy, "add"),
        {
            "name": "Weekend",
            "status_update_escalate_after": "00:10:00",
            **_management("steps", 1),
            "steps-0-order": "1",
            "steps-0-delay": "00:00:00",
            "steps-0-target": "on_call",
            "steps-0-role": roles["On-Call Engineer"].pk,
        },
    )
    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.errors
    assert EscalationPolicy.objects.get(name="Weekend").steps.count() == 1


def test_admin_refuses_a_policy_loop_as_a_field_error(su_client):
    first = EscalationPolicy.objects.get(is_default=True)
    second = EscalationPolicy.objects.create(
        name="Backup", continue_with=first, status_update_escalate_after=timedelta(minutes=5)
    )
    EscalationStep.objects.create(
        policy=second,
        order=1,
        delay=timedelta(0),
        target="role",
        role=Group.objects.get(name="CTO"),
    )
    response = su_client.post(_url(EscalationPolicy, "change", first.pk), _policy_data(first, continue_with=second.pk))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "loop" in " ".join(errors["continue_with"])
    first.refresh_from_db()
    assert first.continue_with is None

    to_itself = su_client.post(
        _url(EscalationPolicy, "change", second.pk), _policy_data(second, continue_with=second.pk)
    )
    assert "continue_with" in to_itself.context["adminform"].form.errors
    second.refresh_from_db()
    assert second.continue_with == first


def test_admin_refuses_two_steps_with_the_same_order(su_client):
    policy = EscalationPolicy.objects.get(is_default=True)
    steps = list(policy.steps.order_by("order"))
    response = su_client.post(
        _url(EscalationPolicy, "change", policy.pk),
        _policy_data(policy, **{"steps-1-order": steps[0].order}),
    )
    assert response.status_code == 200
    assert "duplicate data for order" in str(response.context["inline_admin_formsets"][0].formset.non_form_errors())
    assert sorted(policy.steps.values_list("order", flat=True)) == [1, 2, 3]

    # Swapping two steps' orders in one save must not hit the database constraint (a 500).
    swapped = su_client.post(
        _url(EscalationPolicy, "change", policy.pk),
        _policy_data(policy, **{"steps-0-order": steps[1].order, "steps-1-order": steps[0].order}),
    )
    assert swapped.status_code == 302
    assert list(policy.steps.order_by("order").values_list("pk", flat=True)) == [
        steps[1].pk,
        steps[0].pk,
        steps[2].pk,
    ]


def test_rotation_members_can_swap_places_in_one_save(su_client, team):
    rotation = team["rotation"]
    members = list(rotation.members.order_by("position"))
    data = _rotation_data(rotation) | {"members-0-position": "1", "members-1-position": "0"}
    assert su_client.post(_url(OnCallRotation, "change", rotation.pk), data).status_code == 302
    assert [m.user for m in rotation.members.order_by("position")] == [
        team["oncall2"],
        team["oncall1"],
        team["oncall3"],
    ]
    assert {m.pk for m in rotation.members.all()} == {m.pk for m in members}

    # Swapping the people instead of the positions, and a duplicate, which is refused.
    data = _rotation_data(rotation)
    data |= {"members-0-user": data["members-1-user"], "members-1-user": data["members-0-user"]}
    assert su_client.post(_url(OnCallRotation, "change", rotation.pk), data).status_code == 302
    assert [m.user for m in rotation.members.order_by("position")] == [
        team["oncall1"],
        team["oncall2"],
        team["oncall3"],
    ]
    data = _rotation_data(rotation) | {"members-1-user": team["oncall1"].pk}
    refused = su_client.post(_url(OnCallRotation, "change", rotation.pk), data)
    assert refused.status_code == 200
    assert [m.user for m in rotation.members.order_by("position")] == [
        team["oncall1"],
        team["oncall2"],
        team["oncall3"],
    ]


def test_admin_refuses_a_second_default_policy_and_a_negative_delay(su_client, roles):
    response = su_client.post(
        _url(EscalationPolicy, "add"),
        {
            "name": "Also default",
            "is_default": "on",
            "status_update_escalate_after": "00:10:00",
            **_management("steps", 1),
            "steps-0-order": "1",
            "steps-0-delay": "-1 00:00:00",
            "steps-0-target": "on_call",
            "steps-0-role": roles["On-Call Engineer"].pk,
        },
    )
    assert response.status_code == 200
    assert "default" in " ".join(response.context["adminform"].form.errors["is_default"])
    assert response.context["inline_admin_formsets"][0].formset.errors[0]["delay"]
    assert not EscalationPolicy.objects.filter(name="Also default").exists()


def test_the_default_policy_is_switched_by_the_action_never_left_unset(su_client):
    default = EscalationPolicy.objects.get(is_default=True)
    data = _policy_data(default)
    del data["is_default"]
    response = su_client.post(_url(EscalationPolicy, "change", default.pk), data)
    assert response.status_code == 200
    assert "There must be a default policy" in " ".join(response.context["adminform"].form.errors["is_default"])
    assert su_client.get(_url(EscalationPolicy, "delete", default.pk)).status_code == 403

    other = EscalationPolicy.objects.create(name="Night", status_update_escalate_after=timedelta(minutes=5))
    response = su_client.post(
        _url(EscalationPolicy, "changelist"),
        {"action": "make_default", "_selected_action": [other.pk]},
    )
    assert response.status_code == 302
    assert list(EscalationPolicy.objects.filter(is_default=True)) == [other]


def test_admin_trigger_needs_the_fields_its_condition_uses(su_client, roles):
    response = su_client.post(
        _url(EscalationTrigger, "add"),
        {
            "key": "money",
            "name": "Money",
            "role": roles["CTO"].pk,
            "condition": "financial_impact",
            "active": "on",
        },
    )
    assert response.status_code == 200
    assert "amount_usd" in response.context["adminform"].form.errors
    assert not EscalationTrigger.objects.filter(key="money").exists()


def test_admin_distribution_list_refuses_a_bad_email(su_client):
    response = su_client.post(
        _url(DistributionList, "add"),
        {"name": "Execs", "max_severity_level": "2", "emails": "ceo@tmt.example\nnot-an-address"},
    )
    assert response.status_code == 200
    assert "not-an-address" in " ".join(response.context["adminform"].form.errors["emails"])
    assert not DistributionList.objects.exists()


# -- admin: roster ---------------------------------------------------------------------------


def test_admin_refuses_an_override_ending_before_it_starts(su_client, team):
    start = timezone.now().replace(microsecond=0) + timedelta(days=1)
    data = {"rotation": team["rotation"].pk, "user": team["oncall3"].pk, "reason": "swap"}
    for ends in (start - timedelta(hours=2), start):
        response = su_client.post(
            _url(OnCallOverride, "add"), data | _split("starts_at", start) | _split("ends_at", ends)
        )
        assert response.status_code == 200
        assert "The end must be after the start." in response.context["adminform"].form.errors["ends_at"]
    assert not OnCallOverride.objects.exists()

    ok = su_client.post(
        _url(OnCallOverride, "add"),
        data | _split("starts_at", start) | _split("ends_at", start + timedelta(hours=8)),
    )
    assert ok.status_code == 302
    assert OnCallOverride.objects.get().created_by.username == "boss"


def _rotation_data(rotation: OnCallRotation) -> dict:
    rotation.refresh_from_db()
    members = list(rotation.members.order_by("position"))
    data = {
        "name": rotation.name,
        "role": rotation.role_id,
        "shift": rotation.shift,
        "handover_time": rotation.handover_time.strftime("%H:%M"),
        "timezone": rotation.timezone,
        "starts_on": rotation.starts_on.isoformat(),
        "active": "on",
        **_management("members", len(members), len(members)),
        **_management("overrides", 0),
    }
    for i, member in enumerate(members):
        data |= {
            f"members-{i}-id": member.pk,
            f"members-{i}-rotation": rotation.pk,
            f"members-{i}-position": member.position,
            f"members-{i}-user": member.user_id,
        }
    return data


def test_rotation_admin_refuses_a_backwards_override_and_a_bad_time_zone(su_client, team):
    rotation = team["rotation"]
    start = timezone.now().replace(microsecond=0) + timedelta(days=2)
    data = _rotation_data(rotation) | {
        "timezone": "Mars/Olympus_Mons",
        **_management("overrides", 1),
        "overrides-0-user": team["oncall3"].pk,
        "overrides-0-reason": "holiday",
        **_split("overrides-0-starts_at", start),
        **_split("overrides-0-ends_at", start - timedelta(days=1)),
    }
    response = su_client.post(_url(OnCallRotation, "change", rotation.pk), data)
    assert response.status_code == 200
    assert "not a known time zone" in " ".join(response.context["adminform"].form.errors["timezone"])
    overrides = [f for f in response.context["inline_admin_formsets"] if f.formset.model is OnCallOverride][0]
    assert "The end must be after the start." in overrides.formset.errors[0]["ends_at"]
    rotation.refresh_from_db()
    assert rotation.timezone == "UTC"
    assert not OnCallOverride.objects.exists()

    fixed = data | {"timezone": "Europe/London"} | _split("overrides-0-ends_at", start + timedelta(days=1))
    response = su_client.post(_url(OnCallRotation, "change", rotation.pk), fixed)
    assert response.status_code == 302
    rotation.refresh_from_db()
    assert rotation.timezone == "Europe/London"
    assert OnCallOverride.objects.get().created_by.username == "boss"


def test_admin_refuses_a_phone_number_not_in_e164(su_client):
    user = UserFactory(username="newbie")
    response = su_client.post(
        _url(Person, "add"),
        {"user": user.pk, "phone": "07700 900123", "sms_number": "", "timezone": "UTC"},
    )
    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["phone"])
    assert "E.164" in errors
    assert not Person.objects.filter(user=user).exists()

    ok = su_client.post(
        _url(Person, "add"),
        {"user": user.pk, "phone": "+447700900123", "sms_number": "", "timezone": "UTC"},
    )
    assert ok.status_code == 302
    assert Person.objects.get(user=user).phone == "+447700900123"


def test_admin_role_contact_deputy_must_differ(su_client, team):
    contact = RoleContact.objects.get(role__name="CTO")
    response = su_client.post(
        _url(RoleContact, "change", contact.pk),
        {"role": contact.role_id, "primary": team["cto"].pk, "deputy": team["cto"].pk},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["deputy"]
    contact.refresh_from_db()
    assert contact.deputy is None


# -- admin: every page, and the engine's rows are read-only ----------------------------------


def _engine_rows(team):
    incident = open_incident(reported_by=team["oncall1"], level=2)
    deadline = Deadline.objects.filter(incident=incident).first()
    event = EscalationEvent.objects.create(
        incident=incident,
        deadline=deadline,
        rule="ack",
        step=0,
        fired_at=timezone.now(),
        target_label="on-call",
        target_user=team["oncall1"],
        summary="Paged the on-call engineer",
    )
    notification = Notification.objects.create(
        incident=incident,
        event=event,
        channel="sms",
        recipient=team["oncall1"],
        address="+447000101",
        subject="Sev2",
        body="Please acknowledge",
        next_attempt_at=timezone.now(),
    )
    NotificationAttempt.objects.create(notification=notification, attempted_at=timezone.now(), outcome="sent")
    StatusUpdate.objects.create(
        incident=incident,
        sequence=1,
        subject="Update",
        status="Investigating",
        severity_level=2,
        impact="Slow",
        details="Looking",
        contact="IM",
        posted_by=team["im"],
        posted_at=timezone.now(),
    )
    RegulatoryObligation.objects.create(
        incident=incident,
        category=RegulatoryCategory.objects.first(),
        raised_at=timezone.now(),
        due_at=timezone.now() + timedelta(hours=1),
    )
    WorkerHeartbeat.objects.create(name="celery@host", kind="worker", seen_at=timezone.now())
    OnCallOverride.objects.create(
        rotation=team["rotation"],
        user=team["oncall3"],
        starts_at=timezone.now(),
        ends_at=timezone.now() + timedelta(hours=1),
    )
    BusinessHoliday.objects.create(date=timezone.localdate() + timedelta(days=40), name="Bank holiday")
    hook = WebhookEndpoint.objects.create(name="Chat", url="https://chat.example/hook")
    DistributionList.objects.create(name="Execs", emails="ceo@tmt.example").webhooks.add(hook)
    return incident


ESCALATION_MODELS = [
    Person,
    RoleContact,
    OnCallRotation,
    OnCallOverride,
    BusinessHoliday,
    EscalationPolicy,
    EscalationTrigger,
    RegulatoryCategory,
    WebhookEndpoint,
    DistributionList,
    Deadline,
    EscalationEvent,
    Notification,
    NotificationAttempt,
    StatusUpdate,
    RegulatoryObligation,
    WorkerHeartbeat,
]
READ_ONLY = [
    Deadline,
    EscalationEvent,
    Notification,
    NotificationAttempt,
    StatusUpdate,
    RegulatoryObligation,
    WorkerHeartbeat,
]


def test_every_roster_and_escalation_admin_page_loads(su_client, team):
    incident = _engine_rows(team)
    for model in ESCALATION_MODELS:
        assert su_client.get(_url(model, "changelist")).status_code == 200, model
        assert su_client.get(_url(model, "changelist"), {"q": incident.reference}).status_code == 200, model
        obj = model._default_manager.first()
        assert su_client.get(_url(model, "change", obj.pk)).status_code == 200, model
        expected = 403 if model in READ_ONLY else 200
        assert su_client.get(_url(model, "add")).status_code == expected, model
    for model, params in [
        (Deadline, {"state": "pending", "kind": "acknowledge"}),
        (EscalationEvent, {"kind": "ack"}),
        (Notification, {"state": "pending", "channel": "sms"}),
        (NotificationAttempt, {"outcome": "sent"}),
        (RegulatoryObligation, {"status": "overdue"}),
        (OnCallOverride, {"when": "now"}),
    ]:
        response = su_client.get(_url(model, "changelist"), params)
        assert response.status_code == 200, model


def test_engine_rows_cannot_be_changed_or_deleted_in_the_admin(su_client, team):
    _engine_rows(team)
    for model in READ_ONLY:
        obj = model._default_manager.first()
        assert su_client.post(_url(model, "change", obj.pk), {}).status_code == 403, model
        assert su_client.get(_url(model, "delete", obj.pk)).status_code == 403, model
        changelist = su_client.get(_url(model, "changelist")).content.decode()
        assert "delete_selected" not in changelist, model
    attempt = NotificationAttempt.objects.get()
    su_client.post(
        _url(NotificationAttempt, "changelist"),
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert NotificationAttempt.objects.filter(pk=attempt.pk).exists()


def test_notification_changelist_runs_a_constant_number_of_queries(su_client, team):
    incident = _engine_rows(team)

    def page_queries(model) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert su_client.get(_url(model, "changelist")).status_code == 200
        return len(ctx.captured_queries)

    few = {model: page_queries(model) for model in (Notification, NotificationAttempt, OnCallOverride, RoleContact)}
    for i in range(15):
        user = UserFactory()
        n = Notification.objects.create(
            incident=incident,
            channel="email",
            recipient=user,
            address=f"u{i}@tmt.example",
            subject=f"S{i}",
            body="b",
            next_attempt_at=timezone.now(),
        )
        NotificationAttempt.objects.create(notification=n, attempted_at=timezone.now(), outcome="transient")
        OnCallOverride.objects.create(
            rotation=team["rotation"],
            user=user,
            created_by=team["im"],
            starts_at=timezone.now() + timedelta(days=i),
            ends_at=timezone.now() + timedelta(days=i, hours=2),
        )
    RoleContact.objects.create(role=Group.objects.get(name="Trainer"), primary=team["ceo"], deputy=team["cto"])
    for model, count in few.items():
        assert page_queries(model) == count, model


def test_only_the_incident_manager_may_edit_the_roster(team):
    for key in ("oncall1", "cto", "ceo", "head_of_risk"):
        user = get_user_model().objects.get(pk=team[key].pk)
        assert user.has_perm("oncall.view_oncallrotation"), key
        assert not user.has_perm("oncall.change_oncallrotation"), key
        assert not user.has_perm("oncall.add_oncalloverride"), key
    im = get_user_model().objects.get(pk=team["im"].pk)
    assert im.has_perm("oncall.add_oncalloverride")
    assert im.has_perm("oncall.change_oncallrotation")
    assert im.has_perm("oncall.change_rolecontact")


# -- the on-call calendar --------------------------------------------------------------------


def test_roster_shows_who_is_on_call_today_tomorrow_and_the_role_contacts(client, team):
    client.force_login(team["oncall2"])
    today = timezone.now().astimezone(UTC).date()
    response = client.get(ROSTER_URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert _name(team["oncall1"]) in _cell(html, today)
    assert _name(team["oncall2"]) in _cell(html, today + timedelta(days=1))
    assert _name(team["oncall3"]) in _cell(html, today + timedelta(days=2))
    assert _name(team["oncall1"]) in _cell(html, today + timedelta(days=3))
    now_block = _section(html, "on-call-now")
    assert _name(team["oncall1"]) in now_block
    assert "until" in now_block
    assert (today + timedelta(days=1)).strftime("%-d %b") in now_block  # hand-over at midnight UTC
    assert _name(team["oncall2"]) in _section(html, "deputy")
    contacts = html[html.index('data-testid="role-contacts"') :]
    for role, key in [
        ("CTO", "cto"),
        ("Incident Manager", "im"),
        ("Head of Risk Management", "head_of_risk"),
    ]:
        assert role in contacts
        assert _name(team[key]) in contacts
        assert team[key].person.phone in contacts
    assert _name(team["im_deputy"]) in contacts
    assert len(re.findall(r'<li [^>]*data-date="', html)) == 28
    assert 'href="/roster/"' in html  # the nav link


def test_an_override_replaces_the_scheduled_person_and_is_shown_as_a_cover(client, team):
    client.force_login(team["oncall1"])
    today = timezone.now().astimezone(UTC).date()
    tomorrow = datetime.combine(today + timedelta(days=1), time(0), tzinfo=UTC)
    OnCallOverride.objects.create(
        rotation=team["rotation"],
        user=team["oncall3"],
        starts_at=tomorrow,
        ends_at=tomorrow + timedelta(days=1),
        reason="holiday",
    )
    # A cover for part of a day is listed on that day without replacing the hand-over person.
    afternoon = tomorrow + timedelta(days=3, hours=14)
    OnCallOverride.objects.create(
        rotation=team["rotation"],
        user=team["im"],
        starts_at=afternoon,
        ends_at=afternoon + timedelta(hours=2),
        reason="dentist",
    )
    html = client.get(ROSTER_URL).content.decode()
    covered = _cell(html, today + timedelta(days=1))
    assert f"{_name(team['oncall3'])}</span>" in covered
    assert "(cover: holiday)" in covered
    assert _name(team["oncall2"]) not in covered
    assert re.search(r'class="[^"]*covered[^"]*" data-date="' + (today + timedelta(days=1)).isoformat(), html)
    assert "cover" not in _cell(html, today)
    partial = _cell(html, today + timedelta(days=4))
    assert _name(team["oncall2"]) in partial  # 4 days on: oncall2's shift
    assert _name(team["im"]) in partial and "dentist" in partial

    # ?start= moves the window: the covered day is now the first cell.
    moved = client.get(ROSTER_URL, {"start": (today + timedelta(days=1)).isoformat()}).content.decode()
    assert re.findall(r'data-date="([^"]+)"', moved)[0] == (today + timedelta(days=1)).isoformat()
    assert "(cover: holiday)" in _cell(moved, today + timedelta(days=1))


def test_an_override_in_effect_now_is_who_is_on_call_now(client, team):
    client.force_login(team["oncall1"])
    now = timezone.now()
    OnCallOverride.objects.create(
        rotation=team["rotation"],
        user=team["oncall3"],
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
        reason="swap",
    )
    html = client.get(ROSTER_URL).content.decode()
    block = _section(html, "on-call-now")
    assert _name(team["oncall3"]) in block
    assert "cover: swap" in block
    assert _name(team["oncall1"]) not in block


def test_roster_is_forbidden_without_a_role_and_needs_a_login(client, team):
    nobody = UserFactory(username="nobody")
    client.force_login(nobody)
    assert client.get(ROSTER_URL).status_code == 403
    client.logout()
    anonymous = client.get(ROSTER_URL)
    assert anonymous.status_code == 302
    assert reverse("login") in anonymous.url


def test_every_role_on_or_around_the_roster_may_see_it(client, team):
    for role in (
        "Trainer",
        "Risk Manager",
        "System Administrator",
        "CEO",
        "CTO",
        "Head of Risk Management",
        "Incident Manager",
    ):
        user = UserFactory(username=f"u-{role}")
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        assert client.get(ROSTER_URL).status_code == 200, role


@pytest.mark.parametrize(
    "start",
    [
        "not-a-date",
        "2024-02-30",
        "0001-01-01",
        "9999-12-31",
        "2024-13-01",
        "x" * 500,
        "2024-01-01\x00",
    ],
)
def test_a_bad_start_date_is_ignored_with_a_message(client, team, start):
    client.force_login(team["oncall1"])
    response = client.get(ROSTER_URL, {"start": start})
    assert response.status_code == 200
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("showing from today" in m for m in shown) or "showing from today" in response.content.decode()
    today = timezone.localdate()
    assert re.findall(r'data-date="([^"]+)"', response.content.decode())[0] == today.isoformat()


def test_roster_page_runs_a_constant_number_of_queries(client, team, django_assert_max_num_queries):
    client.force_login(team["oncall1"])

    def page_queries(**params) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(ROSTER_URL, params).status_code == 200
        return len(ctx.captured_queries)

    few = page_queries()
    now = timezone.now()
    for i in range(2, 5):
        rotation = OnCallRotation.objects.create(
            name=f"Rotation {i}",
            role=Group.objects.get(name="Risk Manager"),
            shift=OnCallRotation.Shift.WEEKLY,
            timezone="America/New_York",
            starts_on=now.date(),
        )
        for position in range(4):
            member = UserFactory()
            Person.objects.create(user=member, phone=f"+1212555{i}{position:03d}")
            RotationMember.objects.create(rotation=rotation, user=member, position=position)
        for day in range(0, 28, 2):
            OnCallOverride.objects.create(
                rotation=rotation,
                user=UserFactory(),
                starts_at=now + timedelta(days=day),
                ends_at=now + timedelta(days=day, hours=10),
                reason=f"cover {day}",
            )
    assert page_queries() == few
    assert page_queries(start=(now.date() + timedelta(days=60)).isoformat()) == few
    with django_assert_max_num_queries(12):
        response = client.get(ROSTER_URL)
    html = response.content.decode()
    assert len(re.findall(r'<li [^>]*data-date="', html)) == 4 * 28
    assert html.count("America/New_York") >= 3
