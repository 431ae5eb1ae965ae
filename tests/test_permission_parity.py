"""A page and its API twin answer each person alike: both allowed or both refused.

TWINS is the table: each API route (its URL name and method), the page that does the same on the
web (URL name and method), and the permission or predicate that governs both. For every role of
the seed (roles.py) and a person with no role, the test asks both sides and checks each answer
against that rule: the page refuses with 403 (or the login page), the API with 403. Where the rule
depends on the person's relation to the object (the drill they facilitate, their own action item),
each relation is tried.

The table is complete: an API route with no row fails test_every_api_route_has_a_web_twin_or_a_reason,
unless NO_WEB_TWIN names it with the reason it has none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.db import transaction
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from drills import selectors as drills_selectors
from drills import services as drills_services
from drills.models import MANAGE_PERMISSION, VIEW_PERMISSION, CertificationKind, DrillKind
from incidents import services as incident_services
from incidents.forms import IncidentDetailsForm
from incidents.models import TRANSITION_NAMES, TRANSITION_PERMISSIONS, Incident, State
from incidents.models import VIEW_PERMISSION as VIEW_INCIDENT
from incidents.models.incident import STATUS_UPDATE_WORDS
from incidents.monitoring.models import VIEW_HEALTH_PERMISSION, HealthTarget
from incidents.roles import ROLE_PERMISSIONS, ensure_role_groups
from reports import selectors as reports_selectors
from reports import services as reports_services
from reports.models import ActionItem
from tests.factories import UserFactory, certify, open_incident, severity, system, tick_initial_assessment

pytestmark = pytest.mark.django_db

NO_ROLE = "(no role)"


@dataclass
class Call:
    path: str
    data: dict = field(default_factory=dict)


@dataclass
class Target:
    web: Call
    api: Call
    obj: object = None  # what the rule is asked about


@dataclass
class World:
    manager: object  # drives incidents through their states
    coach: object  # a trainer who schedules drills
    learner: object  # someone to certify


Rule = Callable[[object, object], bool]  # (the object, the person): as the apps' predicates take them
Make = Callable[[World, object, str], Target]


def perm(name: str) -> Rule:
    def rule(obj, user) -> bool:
        return user.has_perm(name)

    rule.__name__ = name
    return rule


def anyone(obj, user) -> bool:
    return True


@dataclass(frozen=True)
class Twin:
    api: str  # the route's URL name in the "api" namespace
    method: str
    web: str  # the page's URL name
    web_method: str
    rule: Rule
    make: Make
    relations: tuple[str, ...] = ("stranger",)


# -- building what each pair acts on -----------------------------------------------------------


def _incident(world: World, state: str = State.DETECTED, *, level: int = 3) -> Incident:
    incident = open_incident(level=level, reported_by=world.manager, financial_impact_usd=None)
    steps = (
        {
            State.ACKNOWLEDGED: ["acknowledge"],
            State.INVESTIGATING: ["acknowledge", "start_investigation"],
            State.CONTAINED: ["acknowledge", "start_investigation", "contain"],
            State.RESOLVED: ["acknowledge", "start_investigation", "contain", "resolve"],
        }[state]
        if state != State.DETECTED
        else []
    )
    for name in steps:
        if name == "contain":
            tick_initial_assessment(incident, world.manager)
        if name == "resolve":
            Incident.objects.filter(pk=incident.pk).update(resolution_actions="Restarted the agent")
            incident.refresh_from_db()
        incident_services.incident_transition(incident=incident, name=name, user=world.manager)
    incident.refresh_from_db()
    return incident


def _api(name: str, **kwargs) -> str:
    return reverse(f"api:{name}", kwargs=kwargs)


def _web(name: str, *args) -> str:
    return reverse(name, args=args)


def incident_read(api: str, web: str) -> Make:
    def make(world, subject, relation) -> Target:
        incident = _incident(world)
        ref = incident.reference
        return Target(web=Call(_web(web, ref)), api=Call(_api(api, reference=ref)), obj=incident)

    return make


def listing(api: str, web: str) -> Make:
    def make(world, subject, relation) -> Target:
        return Target(web=Call(_web(web)), api=Call(_api(api)))

    return make


def incident_create(world, subject, relation) -> Target:
    web = {
        "title": "Circuit breaker not tripping",
        "severity": severity(1).pk,
        "category": "operational",
        "affected_systems": [system("circuit_breaker").pk],
        "detection_method": "automated_alert",
        "financial_impact_usd": "15000",
        "user_impact": "Trading unprotected",
    }
    api = {"title": "Risk agent slow", "severity": 3, "detection_method": "automated_alert"}
    return Target(web=Call(_web("incidents:create"), web), api=Call(_api("incident-list"), api))


def incident_edit(world, subject, relation) -> Target:
    incident = _incident(world)
    form = model_to_dict(incident, fields=IncidentDetailsForm.Meta.fields)
    form = {key: "" if value is None else value for key, value in form.items()}
    form["affected_systems"] = [s.pk for s in incident.affected_systems.all()]
    form["started_at"] = timezone.localtime(incident.started_at).strftime("%Y-%m-%dT%H:%M")
    form["title"] = "Renamed on the page"
    return Target(
        web=Call(_web("incidents:edit", incident.reference), form),
        api=Call(_api("incident-detail", reference=incident.reference), {"title": "Renamed in the API"}),
    )


# The state each transition can run from, so an allowed person's request really runs it.
TRANSITION_FROM = {
    "acknowledge": State.DETECTED,
    "start_investigation": State.ACKNOWLEDGED,
    "contain": State.INVESTIGATING,
    "start_recovery": State.CONTAINED,
    "resolve": State.CONTAINED,
    "reopen": State.RESOLVED,
    "start_review": State.RESOLVED,
    "close": State.RESOLVED,  # a Sev3 closes without an approved review
    "cancel": State.DETECTED,
}


def transition(name: str) -> Make:
    def make(world, subject, relation) -> Target:
        incident = _incident(world, TRANSITION_FROM[name])
        if name == "contain":
            tick_initial_assessment(incident, world.manager)
        if name == "resolve":
            Incident.objects.filter(pk=incident.pk).update(resolution_actions="Restarted the agent")
        body = {"expected_state": incident.state, "reason": "False alarm: a test probe" if name == "cancel" else ""}
        return Target(
            web=Call(_web("incidents:transition", incident.reference), {"name": name, **body}),
            api=Call(_api(f"incident-{name.replace('_', '-')}", reference=incident.reference), body),
        )

    return make


def commander(world, subject, relation) -> Target:
    # Taking command oneself: the assign rule lets anyone who may change the incident do that.
    incident = _incident(world)
    return Target(
        web=Call(_web("incidents:commander", incident.reference), {"commander": subject.pk}),
        api=Call(_api("incident-commander", reference=incident.reference), {"commander": subject.username}),
    )


def role_assign(world, subject, relation) -> Target:
    # An empty role, for oneself ("own") or for someone who may hold it ("other's").
    incident = _incident(world)
    holder = subject if relation == "own" else world.manager
    return Target(
        web=Call(_web("incidents:role", incident.reference), {"role": "scribe", "holder": holder.pk}),
        api=Call(_api("incident-roles", reference=incident.reference), {"role": "scribe", "holder": holder.username}),
        obj=holder,
    )


def may_give_a_role(holder, user) -> bool:
    """Taking an empty role needs the change right; giving it to someone else, the commander's
    assigning right too (incidents.services.roles)."""
    return user.has_perm("incidents.change_incident") and (
        holder == user or user.has_perm("incidents.assign_commander")
    )


def timeline_note(world, subject, relation) -> Target:
    incident = _incident(world)
    return Target(
        web=Call(_web("incidents:add_note", incident.reference), {"text": "Checked the agent's logs"}),
        api=Call(_api("incident-timeline", reference=incident.reference), {"text": "Checked the agent's logs"}),
    )


def status_update(world, subject, relation) -> Target:
    incident = _incident(world)
    web = {
        "audience": "internal",
        "subject": "Market analysis degraded",
        "status": STATUS_UPDATE_WORDS[0],
        "impact": "Signals delayed",
        "details": "Investigating the agent",
        "contact": "Incident desk",
    }
    return Target(
        web=Call(_web("incidents:status_update", incident.reference), web),
        api=Call(_api("incident-status-updates", reference=incident.reference), {"details": "Investigating"}),
    )


def health_target(world, subject, relation) -> Target:
    target = HealthTarget.objects.order_by("pk").first()
    return Target(web=Call(_web("incidents:health")), api=Call(_api("health-target-detail", pk=target.pk)))


def _drill(world, subject, relation):
    return drills_services.drill_schedule(
        kind=DrillKind.objects.get(key="communication-test"),
        scheduled_start=timezone.now() + timedelta(days=7),
        facilitator=subject if relation == "facilitator" else world.coach,
        created_by=world.coach,
        participants=[subject] if relation == "participant" else [],
    )


def drill_schedule(world, subject, relation) -> Target:
    kind = DrillKind.objects.get(key="communication-test")
    start = timezone.now() + timedelta(days=7)
    web = {
        "kind": kind.pk,
        "scheduled_start": timezone.localtime(start).strftime("%Y-%m-%dT%H:%M"),
        "facilitator": world.coach.pk,
    }
    api = {"kind": kind.key, "scheduled_start": start.isoformat(), "facilitator": world.coach.username}
    return Target(web=Call(_web("drills:new"), web), api=Call(_api("drill-list"), api))


def drill_action(web: str, api: str, data: dict | None = None) -> Make:
    def make(world, subject, relation) -> Target:
        drill = _drill(world, subject, relation)
        return Target(
            web=Call(_web(web, drill.pk), data or {}), api=Call(_api(api, pk=drill.pk), data or {}), obj=drill
        )

    return make


def certification_record(world, subject, relation) -> Target:
    kind = CertificationKind.objects.filter(active=True).order_by("pk").first()
    issued = timezone.localdate() - timedelta(days=1)
    web = {"person": world.learner.pk, "kind": kind.pk, "issued_on": issued.isoformat(), "issued_by": world.coach.pk}
    api = {
        "person": world.learner.username,
        "kind": kind.key,
        "issued_on": issued.isoformat(),
        "issued_by": world.coach.username,
    }
    return Target(web=Call(_web("drills:certification_new"), web), api=Call(_api("certification-list"), api))


def certification_read(world, subject, relation) -> Target:
    person = subject if relation == "own" else world.learner
    record = person.certifications.order_by("pk").first()
    return Target(
        web=Call(_web("drills:person", person.pk)), api=Call(_api("certification-detail", pk=record.pk)), obj=person
    )


def _action_item(world, subject, relation) -> ActionItem:
    return reports_services.action_item_create(
        incident=_incident(world),
        user=world.manager,
        title="Add a latency alert",
        kind=ActionItem.Kind.values[0],
        owner=subject if relation == "own" else world.manager,
        due_date=timezone.localdate() + timedelta(days=14),
    )


def action_item_add(world, subject, relation) -> Target:
    incident = _incident(world)
    due = (timezone.localdate() + timedelta(days=14)).isoformat()
    kind = ActionItem.Kind.values[0]
    return Target(
        web=Call(
            _web("reports:action_item_add", incident.reference),
            {"title": "Add a latency alert", "kind": kind, "owner": world.manager.pk, "due_date": due},
        ),
        api=Call(
            _api("action-item-list"),
            {
                "incident": incident.reference,
                "title": "Add a latency alert",
                "kind": kind,
                "owner": world.manager.username,
                "due_date": due,
            },
        ),
    )


def action_item_read(world, subject, relation) -> Target:
    item = _action_item(world, subject, relation)
    return Target(web=Call(_web("reports:my_action_items")), api=Call(_api("action-item-detail", pk=item.pk)))


def action_item_step(action: str, api_body: dict) -> Make:
    def make(world, subject, relation) -> Target:
        item = _action_item(world, subject, relation)
        return Target(
            web=Call(_web("reports:action_item_update", item.pk), {"action": action, "note": "Alert added"}),
            api=Call(_api(f"action-item-{action}", pk=item.pk), api_body),
            obj=item,
        )

    return make


def may_move_action_item(item, user) -> bool:
    return user.has_perm("reports.view_actionitem") and reports_selectors.action_item_changeable_by(item, user)


def may_see_training_record(person, user) -> bool:
    return drills_selectors.training_record_visible_to(person.pk, user)


def _public_incident(world: World):
    from incidents.status import services as status_services

    return status_services.public_incident_publish(
        incident=_incident(world),
        user=world.manager,
        title="Orders delayed",
        impact="degraded_performance",
        status="investigating",
        message="We are looking into delayed orders.",
    )


def status_publish(world, subject, relation) -> Target:
    incident = _incident(world)
    body = {
        "title": "Orders delayed",
        "impact": "degraded_performance",
        "status": "investigating",
        "message": "We are looking into delayed orders.",
    }
    return Target(
        web=Call(_web("status_publish", incident.reference), body),
        api=Call(_api("status-incident-list"), {"incident": incident.reference, **body}),
    )


def status_public_update(resolve: bool) -> Make:
    def make(world, subject, relation) -> Target:
        public = _public_incident(world)
        message = "Orders flow again." if resolve else "We found the cause."
        return Target(
            web=Call(
                _web("status_public_update", public.pk),
                {"status": "resolved" if resolve else "identified", "message": message},
            ),
            api=Call(
                _api(f"status-incident-{'resolve' if resolve else 'updates'}", pk=public.pk),
                {"message": message} if resolve else {"status": "identified", "message": message},
            ),
        )

    return make


def maintenance_schedule(world, subject, relation) -> Target:
    starts = timezone.now() + timedelta(days=2)
    ends = starts + timedelta(hours=2)
    body = {"title": "Database upgrade", "message": "Orders paused for two hours."}
    web = {
        **body,
        "starts_at": timezone.localtime(starts).strftime("%Y-%m-%dT%H:%M"),
        "ends_at": timezone.localtime(ends).strftime("%Y-%m-%dT%H:%M"),
    }
    api = {**body, "starts_at": starts.isoformat(), "ends_at": ends.isoformat()}
    return Target(web=Call(_web("status_maintenance_new"), web), api=Call(_api("status-maintenance-list"), api))


def maintenance_advance(world, subject, relation) -> Target:
    from incidents.status import services as status_services

    starts = timezone.now() + timedelta(days=2)
    maintenance = status_services.maintenance_schedule(
        user=world.manager,
        title="Database upgrade",
        message="Paused",
        starts_at=starts,
        ends_at=starts + timedelta(hours=2),
    )
    return Target(
        web=Call(_web("status_maintenance_step", maintenance.pk, "start")),
        api=Call(_api("status-maintenance-advance", pk=maintenance.pk), {"step": "start"}),
    )


# -- the table ---------------------------------------------------------------------------------

TWINS: list[Twin] = [
    Twin(
        "incident-list", "GET", "incidents:list", "GET", perm(VIEW_INCIDENT), listing("incident-list", "incidents:list")
    ),
    Twin("incident-list", "POST", "incidents:create", "POST", perm("incidents.add_incident"), incident_create),
    Twin(
        "incident-detail",
        "GET",
        "incidents:detail",
        "GET",
        perm(VIEW_INCIDENT),
        incident_read("incident-detail", "incidents:detail"),
    ),
    Twin("incident-detail", "PATCH", "incidents:edit", "POST", perm("incidents.change_incident"), incident_edit),
    *[
        Twin(
            f"incident-{name.replace('_', '-')}",
            "POST",
            "incidents:transition",
            "POST",
            perm(TRANSITION_PERMISSIONS[name]),
            transition(name),
        )
        for name in TRANSITION_NAMES
    ],
    Twin("incident-commander", "POST", "incidents:commander", "POST", perm("incidents.change_incident"), commander),
    Twin(
        "incident-roles",
        "GET",
        "incidents:detail",
        "GET",
        perm(VIEW_INCIDENT),
        incident_read("incident-roles", "incidents:detail"),
    ),
    Twin(
        "incident-roles", "POST", "incidents:role", "POST", may_give_a_role, role_assign, relations=("own", "other's")
    ),
    # The incident page shows the timeline (status updates are on it) and the escalation panel
    # its clocks: whoever may open the page reads them in the API too.
    Twin(
        "incident-timeline",
        "GET",
        "incidents:detail",
        "GET",
        perm(VIEW_INCIDENT),
        incident_read("incident-timeline", "incidents:detail"),
    ),
    Twin("incident-timeline", "POST", "incidents:add_note", "POST", perm("incidents.add_timelineentry"), timeline_note),
    Twin(
        "incident-status-updates",
        "GET",
        "incidents:detail",
        "GET",
        perm(VIEW_INCIDENT),
        incident_read("incident-status-updates", "incidents:detail"),
    ),
    Twin(
        "incident-status-updates",
        "POST",
        "incidents:status_update",
        "POST",
        perm("escalation.add_statusupdate"),
        status_update,
    ),
    Twin(
        "incident-deadlines",
        "GET",
        "incidents:escalation_panel",
        "GET",
        perm(VIEW_INCIDENT),
        incident_read("incident-deadlines", "incidents:escalation_panel"),
    ),
    Twin(
        "incident-escalations",
        "GET",
        "incidents:escalation_panel",
        "GET",
        perm(VIEW_INCIDENT),
        incident_read("incident-escalations", "incidents:escalation_panel"),
    ),
    Twin(
        "health-target-list",
        "GET",
        "incidents:health",
        "GET",
        perm(VIEW_HEALTH_PERMISSION),
        listing("health-target-list", "incidents:health"),
    ),
    Twin("health-target-detail", "GET", "incidents:health", "GET", perm(VIEW_HEALTH_PERMISSION), health_target),
    Twin(
        "drill-list", "GET", "drills:programme", "GET", perm(VIEW_PERMISSION), listing("drill-list", "drills:programme")
    ),
    Twin("drill-list", "POST", "drills:new", "POST", perm(MANAGE_PERMISSION), drill_schedule),
    Twin(
        "drill-detail",
        "GET",
        "drills:detail",
        "GET",
        drills_selectors.drill_visible_to,
        drill_action("drills:detail", "drill-detail"),
        relations=("stranger", "participant"),
    ),
    Twin(
        "drill-start",
        "POST",
        "drills:start",
        "POST",
        drills_selectors.drill_runnable_by,
        drill_action("drills:start", "drill-start"),
        relations=("stranger", "facilitator"),
    ),
    Twin(
        "drill-cancel",
        "POST",
        "drills:cancel",
        "POST",
        drills_selectors.drill_runnable_by,
        drill_action("drills:cancel", "drill-cancel", {"reason": "Clashes with the release"}),
        relations=("stranger", "facilitator"),
    ),
    # Everyone's own certifications: the list is narrowed, never refused.
    Twin("certification-list", "GET", "drills:me", "GET", anyone, listing("certification-list", "drills:me")),
    Twin(
        "certification-list", "POST", "drills:certification_new", "POST", perm(MANAGE_PERMISSION), certification_record
    ),
    Twin(
        "certification-detail",
        "GET",
        "drills:person",
        "GET",
        may_see_training_record,
        certification_read,
        relations=("other's", "own"),
    ),
    Twin(
        "action-item-list",
        "GET",
        "reports:my_action_items",
        "GET",
        perm("reports.view_actionitem"),
        listing("action-item-list", "reports:my_action_items"),
    ),
    Twin(
        "action-item-list", "POST", "reports:action_item_add", "POST", perm("reports.add_actionitem"), action_item_add
    ),
    Twin(
        "action-item-detail",
        "GET",
        "reports:my_action_items",
        "GET",
        perm("reports.view_actionitem"),
        action_item_read,
    ),
    *[
        Twin(
            f"action-item-{action}",
            "POST",
            "reports:action_item_update",
            "POST",
            may_move_action_item,
            action_item_step(action, body),
            relations=("other's", "own"),
        )
        for action, body in (("start", {}), ("complete", {"note": "Alert added"}), ("decline", {"reason": "Covered"}))
    ],
    # The status page: who publishes on it, and who announces maintenance.
    Twin("status-incident-list", "POST", "status_publish", "POST", perm("status.publish_status"), status_publish),
    Twin(
        "status-incident-updates",
        "POST",
        "status_public_update",
        "POST",
        perm("status.publish_status"),
        status_public_update(resolve=False),
    ),
    Twin(
        "status-incident-resolve",
        "POST",
        "status_public_update",
        "POST",
        perm("status.publish_status"),
        status_public_update(resolve=True),
    ),
    Twin(
        "status-maintenance-list",
        "POST",
        "status_maintenance_new",
        "POST",
        perm("status.announce_maintenance"),
        maintenance_schedule,
    ),
    Twin(
        "status-maintenance-advance",
        "POST",
        "status_maintenance_step",
        "POST",
        perm("status.announce_maintenance"),
        maintenance_advance,
    ),
]

# API routes no page does, and why.
NO_WEB_TWIN = {
    ("api-root", "GET"): "the API's index of its routes; pages have the navigation bar",
    ("alerts", "POST"): "monitoring systems post alerts with an alert integration's token, not a person",
    ("schema", "GET"): "the API's OpenAPI contract, for scripts",
    ("docs", "GET"): "the contract's Swagger UI, for people writing scripts",
    ("action-item-reschedule", "POST"): (
        "no page reschedules an action item; the service asks the same owner-or-responder question "
        "(reports.selectors.action_item_changeable_by) as the page's start, done and won't do"
    ),
}


def api_routes() -> set[tuple[str, str]]:
    """Every (URL name, method) under the "api" namespace, as the URL resolver serves them."""
    routes: set[tuple[str, str]] = set()

    def walk(patterns, namespace: str | None) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, pattern.namespace or namespace)
                continue
            if namespace != "api":
                continue
            methods = getattr(pattern.callback, "actions", None)
            if methods is None:
                view = getattr(pattern.callback, "view_class", None) or pattern.callback.cls
                methods = [m for m in view.http_method_names if hasattr(view, m)]
            # HEAD and OPTIONS follow GET and the route itself; DRF also adds "head" to a viewset's
            # actions on its first GET, so leaving them out keeps the answer the same all run long.
            routes.update((pattern.name, method.upper()) for method in methods if method not in ("head", "options"))

    walk(get_resolver().url_patterns, None)
    return routes


def test_every_api_route_has_a_web_twin_or_a_reason():
    tabled = {(twin.api, twin.method) for twin in TWINS}
    assert len(tabled) == len(TWINS), "a route is in the table twice"
    served = api_routes()
    assert served - tabled - set(NO_WEB_TWIN) == set(), "API routes with neither a web twin nor a reason"
    assert (tabled | set(NO_WEB_TWIN)) - served == set(), "table rows for routes the API no longer has"
    assert tabled.isdisjoint(NO_WEB_TWIN)


# -- asking both sides -------------------------------------------------------------------------


@pytest.fixture
def world(db) -> World:
    ensure_role_groups()
    manager = certify(UserFactory(username="driver-im"))
    manager.groups.add(Group.objects.get(name="Incident Manager"))
    coach = UserFactory(username="driver-coach")
    coach.groups.add(Group.objects.get(name="Trainer"))
    return World(manager=manager, coach=coach, learner=certify(UserFactory(username="learner")))


@pytest.fixture
def subjects(world) -> dict[str, object]:
    people = {}
    for role in [*ROLE_PERMISSIONS, NO_ROLE]:
        # Certified, so the readiness gate never stands in for a permission.
        user = certify(UserFactory(username=f"subject-{len(people)}"))
        if role != NO_ROLE:
            user.groups.add(Group.objects.get(name=role))
        people[role] = user
    return people


def _rolled_back(send: Callable, call: Call, **kwargs):
    # Each side acts on the same object; whatever one does is undone before the other asks.
    with transaction.atomic():
        response = send(call.path, call.data, **kwargs)
        transaction.set_rollback(True)
    return response


def _web_answer(response) -> str:
    if response.status_code == 403:
        return "refused"
    if response.status_code == 302 and response["Location"].startswith(settings.LOGIN_URL):
        return "refused"
    problems = [m.message for m in get_messages(response.wsgi_request) if m.level >= messages.WARNING]
    if response.status_code not in (200, 302) or problems:
        # Let through, but it did not work: the probe is wrong, or a refusal by another name.
        return f"failed: {response.status_code} {problems}"
    return "allowed"


def _api_answer(response) -> str:
    if response.status_code == 403:
        return "refused"
    if response.status_code not in (200, 201):
        return f"failed: {response.status_code} {response.content[:200]!r}"
    return "allowed"


# The relations in which the object is the person's own (so it is made for each person).
PERSONAL = {"participant", "facilitator", "own"}


def _row(twin: Twin) -> str:
    return f"{twin.method} {twin.api} ~ {twin.web_method} {twin.web}"


def test_each_page_and_its_api_twin_answer_every_role_alike(world, subjects):
    """One test for the whole table: the people and the world are made once, and savepoints
    undo each request, so each pair's object is made once (or once a person, where it is theirs)."""
    clients = {}
    for role, subject in subjects.items():
        web, api = Client(), APIClient()
        web.force_login(subject)
        api.force_authenticate(subject)
        clients[role] = web, api
    answers: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    for twin in TWINS:
        shared: dict[str, Target] = {}
        for role, subject in subjects.items():
            web, api = clients[role]
            for relation in twin.relations:
                if relation in PERSONAL or twin.make is commander:
                    target = twin.make(world, subject, relation)
                else:
                    target = shared.get(relation) or shared.setdefault(relation, twin.make(world, subject, relation))
                answers[(_row(twin), role, relation)] = (
                    "allowed" if twin.rule(target.obj, subject) else "refused",
                    _web_answer(_rolled_back(getattr(web, twin.web_method.lower()), target.web)),
                    _api_answer(_rolled_back(getattr(api, twin.method.lower()), target.api, format="json")),
                )
    disagreements = {key: value for key, value in answers.items() if len(set(value)) > 1}
    assert not disagreements, "(pair, role, relation): (rule, page, API)\n" + "\n".join(
        f"{key}: {value}" for key, value in sorted(disagreements.items())
    )
    # Each rule in the table allows someone and refuses someone ("anyone" refuses nobody).
    for twin in TWINS:
        seen = {rule for (row, _, _), (rule, _, _) in answers.items() if row == _row(twin)}
        assert seen == {"allowed", "refused"} or (twin.rule is anyone and seen == {"allowed"}), _row(twin)


def test_trainers_see_neither_the_health_page_nor_emergency_stops_and_responders_see_both(world, subjects):
    from incidents.monitoring.models import EmergencyStop

    stop = EmergencyStop.objects.create(
        requested_by=world.manager, reason="Runaway orders", requested_at=timezone.now(), agent_url="http://cb"
    )
    health_link = f'href="{reverse("incidents:health")}"'
    for role in ("Trainer", NO_ROLE):
        client = Client()
        client.force_login(subjects[role])
        for url in ("incidents:health", "incidents:health_panel"):
            assert client.get(reverse(url)).status_code == 403, (role, url)
        assert client.get(reverse("incidents:emergency_stop_detail", args=[stop.pk])).status_code == 403
        assert health_link not in client.get(reverse("drills:me")).content.decode()  # not in the menu either
    for role in ("On-Call Engineer", "CEO", "System Administrator"):
        client = Client()
        client.force_login(subjects[role])
        page = client.get(reverse("incidents:health"))
        assert page.status_code == 200 and "Runaway orders" in page.content.decode(), role
        assert health_link in page.content.decode()
        assert client.get(reverse("incidents:emergency_stop_detail", args=[stop.pk])).status_code == 200


def test_managers_read_a_persons_training_record_and_only_trainers_keep_it(world, subjects):
    client = Client()
    client.force_login(subjects["CTO"])
    page = client.get(reverse("drills:person", args=[world.learner.pk]))
    assert page.status_code == 200 and page.context["can_manage"] is False
    assert reverse("drills:profile_update", args=[world.learner.pk]) not in page.content.decode()
    client.force_login(subjects["Trainer"])
    page = client.get(reverse("drills:person", args=[world.learner.pk]))
    assert page.status_code == 200 and page.context["can_manage"] is True
    assert reverse("drills:profile_update", args=[world.learner.pk]) in page.content.decode()
    client.force_login(subjects["On-Call Engineer"])
    assert client.get(reverse("drills:person", args=[world.learner.pk])).status_code == 403
    assert client.get(reverse("drills:person", args=[subjects["On-Call Engineer"].pk])).status_code == 200


def test_a_transition_without_its_permission_is_refused_alike_whatever_the_state(world, subjects):
    """Refused for the missing permission before anything is said about the state: a page that
    answered "not possible while detected" told more than the API's 403, and disagreed with it."""
    incident = _incident(world)  # detected: only acknowledge and cancel are possible
    for role, names in (("Trainer", ["reopen", "close", "resolve"]), ("On-Call Engineer", ["close"])):
        web, api = Client(), APIClient()
        web.force_login(subjects[role])
        api.force_authenticate(subjects[role])
        for name in names:
            page = web.post(
                _web("incidents:transition", incident.reference), {"name": name, "expected_state": "detected"}
            )
            answer = api.post(_api(f"incident-{name}", reference=incident.reference), {}, format="json")
            assert (page.status_code, answer.status_code) == (403, 403), (role, name)
    # With the permission, the state is what refuses: a message on the page, 409 in the API.
    web, api = Client(), APIClient()
    web.force_login(subjects["On-Call Engineer"])
    api.force_authenticate(subjects["On-Call Engineer"])
    page = web.post(_web("incidents:transition", incident.reference), {"name": "reopen", "expected_state": "detected"})
    assert page.status_code == 302 and "not possible" in " ".join(m.message for m in get_messages(page.wsgi_request))
    assert api.post(_api("incident-reopen", reference=incident.reference), {}, format="json").status_code == 409
    incident.refresh_from_db()
    assert incident.state == State.DETECTED
