import re
from datetime import timedelta

import pytest
from django import forms
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents import services
from incidents.models import (
    EvidenceAttachment,
    Incident,
    IncidentChecklistItem,
    IncidentDaySequence,
    State,
    System,
    TimelineEntry,
)
from incidents.roles import INCIDENT_MANAGER
from reports.models import ActionItem, PostIncidentReview
from tests.factories import UserFactory, certify, open_incident, severity, tick_initial_assessment

APPS = {"incidents", "reports"}


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("boss", "boss@tmt.example", "x-pass-123")


@pytest.fixture
def su_client(client, superuser):
    client.force_login(superuser)
    return client


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _form_data(response) -> dict:
    """The POST a browser would send for an unchanged admin change form."""
    data: dict = {}

    def add(form):
        for bound in form:
            value = bound.value()
            widget = bound.field.widget
            if isinstance(widget, forms.MultiWidget):
                for i, part in enumerate(widget.decompress(value)):
                    data[f"{bound.html_name}_{i}"] = "" if part is None else part.isoformat()
            elif isinstance(value, list | tuple):
                data[bound.html_name] = [str(v) for v in value]
            elif isinstance(value, bool):
                if value:
                    data[bound.html_name] = "on"
            elif value is not None:
                data[bound.html_name] = str(value)

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.forms:
            add(form)
    return data


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _all_kinds_of_rows(user):
    """At least one row of every model registered for incidents and reports."""
    incident = open_incident(reported_by=user)
    services.evidence_attach(
        incident=incident,
        uploaded=SimpleUploadedFile("orders.log", b"12:00 order rejected\n", "text/plain"),
        user=user,
        description="Order gateway log",
    )
    author = UserFactory()
    PostIncidentReview.objects.create(incident=incident, author=author, root_cause_analysis="Feed lag")
    ActionItem.objects.create(
        incident=incident,
        title="Alert on feed lag",
        kind=ActionItem.Kind.MONITORING,
        owner=author,
        due_date=timezone.localdate() + timedelta(days=7),
        created_by=user,
    )
    return incident


def test_django_fsm_admin_templates_are_installed():
    # FSMAdminMixin's change form and transition form are app templates of django_fsm.
    assert apps.is_installed("django_fsm"), "add 'django_fsm' to INSTALLED_APPS in tmt_ir/settings.py"


def test_every_changelist_change_and_add_page_loads(su_client, superuser, rf):
    _all_kinds_of_rows(superuser)
    request = rf.get("/")
    request.user = superuser
    registered = [m for m in admin.site._registry if m._meta.app_label in APPS]
    assert {m.__name__ for m in registered} >= {
        "Incident",
        "TimelineEntry",
        "EvidenceAttachment",
        "IncidentChecklistItem",
        "IncidentDaySequence",
        "SeverityLevel",
        "System",
        "RecoveryPointObjective",
        "PhaseTarget",
        "ChecklistTemplate",
        "ChecklistTemplateItem",
        "PostIncidentReview",
        "ActionItem",
    }
    for model in registered:
        assert su_client.get(_url(model, "changelist")).status_code == 200, model
        obj = model._default_manager.first()
        # Models added by later features have their own admin tests with rows of their own
        # (e.g. tests/incidents/oncall/test_roster.py); here a change page is loaded where a row exists.
        if obj is not None:
            assert su_client.get(_url(model, "change", obj.pk)).status_code == 200, model
        if admin.site._registry[model].has_add_permission(request):
            assert su_client.get(_url(model, "add")).status_code == 200, model


def test_changelist_search_and_filters_load(su_client, superuser):
    incident = _all_kinds_of_rows(superuser)
    response = su_client.get(
        _url(Incident, "changelist"),
        {"q": incident.reference, "open": "yes", "severity__id__exact": incident.severity_id},
    )
    assert response.status_code == 200
    assert incident.reference in response.content.decode()
    for model in (TimelineEntry, EvidenceAttachment, ActionItem, PostIncidentReview):
        assert su_client.get(_url(model, "changelist"), {"q": incident.reference}).status_code == 200


def test_incident_changelist_runs_a_constant_number_of_queries(su_client, superuser, django_assert_max_num_queries):
    def page_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert su_client.get(_url(Incident, "changelist")).status_code == 200
        return len(ctx.captured_queries)

    commander = UserFactory()
    for i in range(3):
        open_incident(reported_by=superuser, title=f"Incident {i}", commander=commander)
    few = page_queries()
    for i in range(27):
        open_incident(
            reported_by=superuser,
            title=f"More {i}",
            level=1 + i % 4,
            commander=UserFactory(),
            systems=("market_analysis", "database"),
        )
    assert Incident.objects.count() == 30
    with django_assert_max_num_queries(12):
        response = su_client.get(_url(Incident, "changelist"))
    assert response.status_code == 200
    assert page_queries() == few


def test_fsm_button_moves_the_incident_through_the_service(su_client, superuser):
    incident = open_incident()
    page = su_client.get(_url(Incident, "change", incident.pk))
    assert re.search(r'name="_fsm_transition_to"\s+value="acknowledge"', page.content.decode())
    entries = TimelineEntry.objects.filter(incident=incident).count()

    data = _form_data(page) | {"_fsm_transition_to": "acknowledge"}
    response = su_client.post(_url(Incident, "change", incident.pk), data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    incident.refresh_from_db()
    assert incident.state == State.ACKNOWLEDGED
    assert incident.acknowledged_by == superuser
    new = list(TimelineEntry.objects.filter(incident=incident).order_by("id")[entries:])
    assert len(new) == 1  # the transition; the unchanged form wrote nothing
    assert new[0].kind == TimelineEntry.Kind.STATE_CHANGE
    assert new[0].owner == superuser
    assert (new[0].from_state, new[0].to_state) == (State.DETECTED, State.ACKNOWLEDGED)
    assert any("acknowledged" in m for m in _messages(response))


@pytest.mark.parametrize("name", ["close", "resolve", "delete", "save"])
def test_a_transition_not_allowed_shows_an_error_and_changes_nothing(su_client, name):
    incident = open_incident()
    page = su_client.get(_url(Incident, "change", incident.pk))
    entries = TimelineEntry.objects.filter(incident=incident).count()

    data = _form_data(page) | {"_fsm_transition_to": name}
    response = su_client.post(_url(Incident, "change", incident.pk), data)

    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.state == State.DETECTED
    assert TimelineEntry.objects.filter(incident=incident).count() == entries
    assert any("not" in m.lower() or "unknown" in m.lower() for m in _messages(response))


def test_a_stale_page_cannot_move_an_incident_someone_else_moved(su_client, superuser, manager):
    incident = open_incident()
    for name in ("acknowledge", "start_investigation"):
        services.incident_transition(incident=incident, name=name, user=superuser)
    tick_initial_assessment(incident, superuser)
    services.incident_update(incident=incident, user=superuser, resolution_actions="Restarted the agent")
    for name in ("contain", "resolve"):
        services.incident_transition(incident=incident, name=name, user=superuser)
    page = su_client.get(_url(Incident, "change", incident.pk))
    assert 'value="reopen"' in page.content.decode()
    # Meanwhile a colleague starts the review; "reopen" is possible from both states.
    services.incident_transition(incident=incident, name="start_review", user=manager)
    entries = TimelineEntry.objects.filter(incident=incident).count()

    data = _form_data(page) | {"_fsm_transition_to": "reopen"}
    response = su_client.post(_url(Incident, "change", incident.pk), data)

    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.state == State.IN_REVIEW
    assert TimelineEntry.objects.filter(incident=incident).count() == entries
    assert any("changed by someone else" in m for m in _messages(response))


def test_the_cancel_button_leads_to_the_reason_form(su_client):
    incident = open_incident()
    page = su_client.get(_url(Incident, "change", incident.pk))
    data = _form_data(page) | {"_fsm_transition_to": "cancel"}
    response = su_client.post(_url(Incident, "change", incident.pk), data)
    assert response.status_code == 302
    assert response.url == _url(Incident, "transition", incident.pk, "cancel")
    incident.refresh_from_db()
    assert incident.state == State.DETECTED


def test_cancel_through_the_admin_form_needs_a_reason(su_client, superuser):
    incident = open_incident()
    url = _url(Incident, "transition", incident.pk, "cancel")
    form_page = su_client.get(url)
    assert form_page.status_code == 200
    assert 'name="reason"' in form_page.content.decode()

    refused = su_client.post(url, {"reason": "   "})
    assert refused.status_code == 200
    assert refused.context["transition_form"].errors["reason"]
    incident.refresh_from_db()
    assert incident.state == State.DETECTED

    done = su_client.post(url, {"reason": "False alarm: a monitoring probe misfired"})
    assert done.status_code == 302
    incident.refresh_from_db()
    assert incident.state == State.CANCELLED
    assert incident.cancel_reason == "False alarm: a monitoring probe misfired"
    last = TimelineEntry.objects.filter(incident=incident).order_by("id").last()
    assert last.owner == superuser
    assert last.to_state == State.CANCELLED
    assert "monitoring probe misfired" in last.action


def test_unknown_transition_urls_are_404_not_500(su_client):
    incident = open_incident()
    response = su_client.get(_url(Incident, "transition", incident.pk, "delete"))
    assert response.status_code == 404


def test_timeline_entries_cannot_be_changed_or_deleted_through_the_admin(su_client):
    incident = open_incident()
    entry = TimelineEntry.objects.filter(incident=incident).first()
    action = entry.action

    assert su_client.get(_url(TimelineEntry, "delete", entry.pk)).status_code == 403
    assert su_client.post(_url(TimelineEntry, "delete", entry.pk), {"post": "yes"}).status_code == 403
    assert su_client.post(_url(TimelineEntry, "change", entry.pk), {"action": "rewritten"}).status_code == 403
    assert su_client.get(_url(TimelineEntry, "add")).status_code == 403
    changelist = su_client.get(_url(TimelineEntry, "changelist"))
    assert "delete_selected" not in changelist.content.decode()
    bulk = su_client.post(
        _url(TimelineEntry, "changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    entry.refresh_from_db()
    assert entry.action == action
    assert TimelineEntry.objects.filter(pk=entry.pk).exists()


def test_evidence_and_incidents_cannot_be_deleted_through_the_admin(su_client, superuser):
    incident = _all_kinds_of_rows(superuser)
    evidence = EvidenceAttachment.objects.get(incident=incident)
    assert su_client.get(_url(EvidenceAttachment, "delete", evidence.pk)).status_code == 403
    assert su_client.post(_url(EvidenceAttachment, "change", evidence.pk), {}).status_code == 403
    assert su_client.get(_url(Incident, "delete", incident.pk)).status_code == 403
    page = su_client.get(_url(Incident, "change", incident.pk)).content.decode()
    assert evidence.sha256 in page
    assert "orders.log" in page


def test_adding_an_incident_opens_it_through_the_service(su_client, superuser):
    response = su_client.post(
        _url(Incident, "add"),
        {
            "title": "Risk agent returns stale limits",
            "severity": severity(2).pk,
            "category": "operational",
            "detection_method": "user_report",
            "description": "Limits are an hour old.",
            "affected_systems": [System.objects.get(key="risk_management").pk],
            "financial_impact_usd": "1500",
            "user_impact": "",
            "started_at_0": "",
            "started_at_1": "",
            "commander": "",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    incident = Incident.objects.get(title="Risk agent returns stale limits")
    assert incident.reference.startswith("TMT-INC-")
    assert incident.reported_by == superuser
    assert incident.state == State.DETECTED
    assert [s.key for s in incident.affected_systems.all()] == ["risk_management"]
    opening = TimelineEntry.objects.filter(incident=incident).order_by("id").first()
    assert opening.kind == TimelineEntry.Kind.STATE_CHANGE
    assert opening.to_state == State.DETECTED
    assert opening.owner == superuser
    assert IncidentChecklistItem.objects.filter(incident=incident).exists()
    assert IncidentDaySequence.objects.filter(day=incident.reference_day).exists()
    assert response.url == _url(Incident, "changelist")


def test_add_form_with_bad_input_writes_nothing(su_client):
    before = Incident.objects.count()
    response = su_client.post(
        _url(Incident, "add"),
        {"title": "", "severity": "", "category": "nonsense", "financial_impact_usd": "-5"},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert {"title", "severity", "category", "detection_method", "financial_impact_usd"} <= set(errors)
    assert Incident.objects.count() == before


def test_editing_an_incident_goes_through_the_service(su_client, superuser):
    incident = open_incident()
    page = su_client.get(_url(Incident, "change", incident.pk))
    commander = UserFactory(username="cmdr")
    commander.groups.add(Group.objects.get(name=INCIDENT_MANAGER))  # someone who may hold a role
    certify(commander)
    data = _form_data(page) | {
        "title": "Market analysis agent down",
        "severity": severity(1).pk,
        "affected_systems": [System.objects.get(key="database").pk],
        "commander": commander.pk,
        "_save": "Save",
    }
    response = su_client.post(_url(Incident, "change", incident.pk), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    incident.refresh_from_db()
    assert incident.title == "Market analysis agent down"
    assert incident.severity.level == 1
    assert incident.commander == commander
    assert [s.key for s in incident.affected_systems.all()] == ["database"]
    actions = list(
        TimelineEntry.objects.filter(incident=incident, kind=TimelineEntry.Kind.UPDATE)
        .order_by("id")
        .values_list("action", "owner")
    )
    assert any(a.startswith("Severity changed") and o == superuser.pk for a, o in actions)
    assert any("title" in a and "affected systems" in a and o == superuser.pk for a, o in actions)
    assert any(a.startswith("Incident commander") and o == superuser.pk for a, o in actions)


def test_state_and_service_timestamps_are_read_only(su_client):
    incident = open_incident()
    page = su_client.get(_url(Incident, "change", incident.pk))
    form = page.context["adminform"].form
    for name in (
        "state",
        "reference",
        "detected_at",
        "acknowledged_at",
        "resolved_at",
        "reported_by",
    ):
        assert name not in form.fields
    data = _form_data(page) | {
        "state": "closed",
        "detected_at": "2020-01-01 00:00",
        "_save": "Save",
    }
    su_client.post(_url(Incident, "change", incident.pk), data)
    fresh = Incident.objects.get(pk=incident.pk)
    assert fresh.state == State.DETECTED
    assert fresh.detected_at == incident.detected_at


def test_a_staff_manager_uses_the_admin_with_role_permissions(client, manager):
    manager.is_staff = True
    manager.save()
    client.force_login(manager)
    incident = open_incident()
    assert client.get(_url(Incident, "changelist")).status_code == 200
    page = client.get(_url(Incident, "change", incident.pk))
    assert page.status_code == 200
    response = client.post(
        _url(Incident, "change", incident.pk),
        _form_data(page) | {"_fsm_transition_to": "acknowledge"},
    )
    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.state == State.ACKNOWLEDGED
    assert TimelineEntry.objects.filter(incident=incident).order_by("id").last().owner == manager
    # Policy numbers are editable for an Incident Manager.
    sev = severity(3)
    assert client.get(_url(type(sev), "change", sev.pk)).status_code == 200


def test_reviews_have_no_transition_buttons_and_refuse_bare_transitions(su_client, superuser):
    incident = _all_kinds_of_rows(superuser)
    review = PostIncidentReview.objects.get(incident=incident)
    page = su_client.get(_url(PostIncidentReview, "change", review.pk))
    assert page.status_code == 200
    assert "_fsm_transition_to" not in page.content.decode()
    response = su_client.post(_url(PostIncidentReview, "change", review.pk), {"_fsm_transition_to": "submit"})
    assert response.status_code == 403
    assert su_client.get(_url(PostIncidentReview, "transition", review.pk, "submit")).status_code == 404
    review.refresh_from_db()
    assert review.state == PostIncidentReview.State.DRAFT


def test_policy_numbers_are_editable_in_the_changelist(su_client):
    sev = severity(2)
    page = su_client.get(_url(type(sev), "changelist"))
    assert 'name="form-0-response_time"' in page.content.decode()


def test_checklist_action_ticks_through_the_service(su_client, superuser):
    incident = open_incident()
    item = incident.checklist_items.first()
    response = su_client.post(
        _url(IncidentChecklistItem, "changelist"),
        {"action": "mark_done", "_selected_action": [item.pk], "index": "0"},
    )
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.done_by == superuser
    assert TimelineEntry.objects.filter(incident=incident, kind=TimelineEntry.Kind.CHECKLIST).exists()


def test_a_commander_who_cannot_see_incidents_is_a_field_error_in_the_admin(su_client):
    incident = open_incident()
    page = su_client.get(_url(Incident, "change", incident.pk))
    outsider = UserFactory(username="outsider")
    data = _form_data(page) | {"commander": outsider.pk, "_save": "Save"}
    answer = su_client.post(_url(Incident, "change", incident.pk), data)
    assert answer.status_code == 200
    assert "cannot see incidents" in str(answer.context["adminform"].form.errors["commander"])
    incident.refresh_from_db()
    assert incident.commander is None
