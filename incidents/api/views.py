"""Incident endpoints: the same services and role permissions as the web pages.

Incidents are addressed by their reference (`TMT-INC-2026-11-27-001`), as people say them.
"""

from __future__ import annotations

import re
from datetime import UTC

import django_filters
from django import forms
from django.db.models import Exists, OuterRef
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from incidents.api.services.idempotency import (
    IDEMPOTENCY_KEY_LIFETIME,
    incident_open_once,
    request_hash,
)
from incidents.escalation import status_updates
from incidents.escalation.models import Deadline, EscalationEvent, StatusUpdate
from incidents.monitoring.models import VIEW_HEALTH_PERMISSION, HealthTarget

from .. import selectors, services
from ..forms import IncidentFilter as IncidentPageFilter
from ..models import TRANSITION_NAMES, TRANSITION_PERMISSIONS, VIEW_PERMISSION, Incident, IncidentRole
from ..validators import EARLIEST_YEAR, LATEST_YEAR
from . import serializers as s
from .permissions import RolePermissions

_ERRORS = {
    400: OpenApiResponse(description="Invalid input; the body names each field's problem."),
    403: OpenApiResponse(description="Your role may not do this."),
    404: OpenApiResponse(description="No such incident."),
}
_CONFLICT = {409: OpenApiResponse(description="Not possible in the incident's current state, or it changed meanwhile.")}


class BoundedIsoDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO date-time within years the portal can hold, in UTC.

    PostgreSQL refuses a time-zone offset beyond ±15:59 that Python accepts (up to ±23:59), and
    year 1 shifted by an offset overflows Python's datetime: both were 500s.
    """

    def clean(self, value):
        parsed = super().clean(value)
        if parsed is None:
            return None
        if not EARLIEST_YEAR <= parsed.year <= LATEST_YEAR:
            raise forms.ValidationError(f"Enter a date-time between the years {EARLIEST_YEAR} and {LATEST_YEAR}.")
        return parsed.astimezone(UTC)


class BoundedIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField


class IncidentFilter(IncidentPageFilter):
    """The incident list's filters (search and "any open" come from the page's), with values a
    script knows: a severity level rather than a row id, a system key, ISO date-times."""

    q = django_filters.CharFilter(method="search", help_text="Reference or title contains this.")
    severity = django_filters.NumberFilter(field_name="severity__level", help_text="Severity level 1-4.")
    system = django_filters.CharFilter(method="filter_system", help_text="A system key, e.g. circuit_breaker.")
    is_drill = django_filters.BooleanFilter()
    detected_after = BoundedIsoDateTimeFilter(field_name="detected_at", lookup_expr="gte")
    detected_before = BoundedIsoDateTimeFilter(field_name="detected_at", lookup_expr="lt")
    alert_fingerprint = django_filters.CharFilter()

    class Meta(IncidentPageFilter.Meta):
        fields = [*IncidentPageFilter.Meta.fields, "is_drill", "alert_fingerprint"]

    def filter_system(self, queryset, name, value):
        # EXISTS rather than a join, as on the page: no duplicate rows, no DISTINCT.
        through = Incident.affected_systems.through
        return queryset.filter(Exists(through.objects.filter(incident_id=OuterRef("pk"), system__key=value)))


IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
# Printable ASCII, no surrounding spaces, at most 255 characters (a UUID fits, as does the
# IETF draft's quoted form "…").
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"


def _idempotency_key(request) -> str | None:
    raw = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if raw is None:
        return None
    if not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, raw):
        raise ValidationError(
            {
                IDEMPOTENCY_KEY_HEADER: [
                    "Send 1 to 255 printable ASCII characters, with no spaces around them (a UUID, say)."
                ]
            }
        )
    return raw


def _transition_action(name: str):
    """`POST /incidents/{reference}/<name>/`: one endpoint per lifecycle transition."""

    def run(self, request, reference=None):
        incident = self.get_object()
        body = s.TransitionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.incident_transition(
            incident=incident,
            name=name,
            user=request.user,
            expected_state=body.validated_data.get("expected_state"),
            reason=body.validated_data.get("reason", ""),
        )
        return Response(s.IncidentSerializer(self._reload(incident), context=self.get_serializer_context()).data)

    run.__name__ = name
    # extend_schema outside action(): action() replaces the function's kwargs, where
    # drf-spectacular keeps the annotation (the schema had lost these operations' bodies and 409s).
    return extend_schema(
        request=s.TransitionSerializer,
        responses={200: s.IncidentSerializer, **_ERRORS, **_CONFLICT},
        summary=name.replace("_", " ").capitalize(),
        description="Run this lifecycle transition (same guards and permissions as the incident page).",
    )(action(detail=True, methods=["post"], url_path=name.replace("_", "-"))(run))


@extend_schema_view(
    list=extend_schema(summary="List incidents", description="Newest first; filter by state, severity, system, ..."),
    retrieve=extend_schema(summary="One incident", responses={200: s.IncidentSerializer, 404: _ERRORS[404]}),
    create=extend_schema(
        summary="Log an incident",
        description=(
            "Send an `Idempotency-Key` to make retrying safe: a second request with the same key "
            f"and body, within {IDEMPOTENCY_KEY_LIFETIME.total_seconds() / 3600:.0f} hours, opens "
            "nothing and answers with the incident the first one opened (and `Idempotent-Replayed: true`)."
        ),
        request=s.IncidentCreateSerializer,
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_KEY_HEADER,
                location=OpenApiParameter.HEADER,
                required=False,
                description="Your unique key for this incident (a UUID, say), kept per user.",
                pattern=IDEMPOTENCY_KEY_PATTERN,
            )
        ],
        responses={
            201: s.IncidentSerializer,
            400: _ERRORS[400],
            403: _ERRORS[403],
            422: OpenApiResponse(description="This Idempotency-Key was already used with another body."),
        },
    ),
    partial_update=extend_schema(
        summary="Change an incident's details",
        request=s.IncidentUpdateSerializer,
        responses={200: s.IncidentSerializer, **_ERRORS},
    ),
)
class IncidentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    lookup_field = "reference"
    lookup_value_regex = r"[A-Za-z0-9-]+"
    permission_classes = [RolePermissions]
    filterset_class = IncidentFilter
    queryset = Incident.objects.all()
    # Changing details is PATCH only: a PUT would have to resend every field a person may have
    # edited meanwhile on the incident page.
    http_method_names = ["get", "post", "patch", "head", "options"]
    action_permissions = {
        # Each transition's own permission (close: close_incident), as the service checks it.
        **{name: [TRANSITION_PERMISSIONS[name]] for name in TRANSITION_NAMES},
        "commander": ["incidents.change_incident"],
        # As the page: reading needs the incident; changing needs the change right, and the
        # service then asks what the page's does (assigning someone else needs assign_commander).
        "roles": {"GET": [VIEW_PERMISSION], "POST": ["incidents.change_incident"]},
        # Whoever may open the incident's page reads what it shows: the timeline (status updates
        # are on it too) and the escalation clocks. Writing needs the add permission.
        "timeline": {"GET": [VIEW_PERMISSION], "POST": ["incidents.add_timelineentry"]},
        "status_updates": {"GET": [VIEW_PERMISSION], "POST": ["escalation.add_statusupdate"]},
        "deadlines": [VIEW_PERMISSION],
        "escalations": [VIEW_PERMISSION],
    }

    def get_queryset(self):
        if self.action == "list":
            return selectors.incident_list_queryset().select_related(None).select_related("severity", "commander")
        return Incident.objects.select_related(
            "severity", "commander", "reported_by", "acknowledged_by"
        ).prefetch_related("affected_systems")

    def get_serializer_class(self):
        return {
            "list": s.IncidentListSerializer,
            "create": s.IncidentCreateSerializer,
            "partial_update": s.IncidentUpdateSerializer,
        }.get(self.action, s.IncidentSerializer)

    def _reload(self, incident: Incident) -> Incident:
        return self.get_queryset().get(pk=incident.pk)

    def create(self, request, *args, **kwargs):
        key = _idempotency_key(request)
        not_ready: list[str] = []

        def open_incident() -> Incident:
            body = self.get_serializer(data=request.data)
            body.is_valid(raise_exception=True)
            data = dict(body.validated_data)
            take_command = data.pop("take_command")
            # As in the web form: the person logging the incident commands it, unless the readiness
            # gate says they may not yet (then it opens without a commander and says why).
            if take_command:
                not_ready.extend(selectors.commander_problems(user=request.user, at=timezone.now()))
            return services.incident_open(
                **data,
                reported_by=request.user,
                commander=request.user if take_command and not not_ready else None,
            )

        if key is None:
            incident, replayed = open_incident(), False
        else:
            # A retry is answered before its body is validated again: what was accepted once
            # (a start time "now", a system since retired) gets the same incident back.
            opened = incident_open_once(
                user=request.user, key=key, body_hash=request_hash(request.data), open_incident=open_incident
            )
            incident, replayed = opened.incident, opened.replayed
        answer = s.IncidentSerializer(self._reload(incident), context=self.get_serializer_context()).data
        # str(): the URL is DRF's Hyperlink (a str subclass), which strict WSGI servers refuse in a header.
        headers = {"Location": str(answer["url"])}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        elif not_ready:
            headers["Warning"] = '199 - "opened without a commander: you cannot command yet"'
        return Response(answer, status=status.HTTP_201_CREATED, headers=headers)

    def partial_update(self, request, *args, **kwargs):
        incident = self.get_object()
        body = s.IncidentUpdateSerializer(incident, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        severity = fields.pop("severity", None)
        systems = fields.pop("affected_systems", None)
        services.incident_update(
            incident=incident, user=request.user, severity=severity, affected_systems=systems, **fields
        )
        return Response(s.IncidentSerializer(self._reload(incident), context=self.get_serializer_context()).data)

    locals().update({name: _transition_action(name) for name in TRANSITION_NAMES})

    @extend_schema(
        summary="Assign or clear the incident commander",
        request=s.CommanderSerializer,
        responses={200: s.IncidentSerializer, **_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def commander(self, request, reference=None):
        incident = self.get_object()
        body = s.CommanderSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        # Through the roles service, as the roles route does: paged, and checked for eligibility.
        commander = body.validated_data["commander"]
        if commander is None:
            services.incident_role_release(incident=incident, role=IncidentRole.COMMANDER, by=request.user)
        else:
            services.incident_role_assign(
                incident=incident, role=IncidentRole.COMMANDER, holder=commander, by=request.user
            )
        return Response(s.IncidentSerializer(self._reload(incident), context=self.get_serializer_context()).data)

    @extend_schema(
        methods=["GET"], summary="The incident's roles and their holders", responses=s.RoleSerializer(many=True)
    )
    @extend_schema(
        methods=["POST"],
        summary="Give an incident role to someone, or leave it empty",
        description=(
            "Anyone who may change the incident may take an empty role (or command) and leave their own; "
            "assigning someone else needs the incident manager's right. The new holder is paged, "
            "unless they took the role themselves. The risk liaison must be a Risk Manager."
        ),
        request=s.RoleAssignSerializer,
        responses={200: s.RoleSerializer(many=True), **_ERRORS, **_CONFLICT},
    )
    @action(detail=True, methods=["get", "post"], filterset_class=None)
    def roles(self, request, reference=None):
        incident = self.get_object()
        if request.method == "POST":
            body = s.RoleAssignSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            role, holder = body.validated_data["role"], body.validated_data["holder"]
            if holder is None:
                services.incident_role_release(incident=incident, role=role, by=request.user)
            else:
                services.incident_role_assign(incident=incident, role=role, holder=holder, by=request.user)
            incident = self._reload(incident)
        return Response(s.RoleSerializer(selectors.incident_role_slots(incident), many=True).data)

    @extend_schema(
        methods=["GET"], summary="The incident's timeline", responses={200: s.TimelineEntrySerializer(many=True)}
    )
    @extend_schema(
        methods=["POST"],
        summary="Add a note to the timeline",
        request=s.TimelineNoteSerializer,
        responses={201: s.TimelineEntrySerializer, **_ERRORS},
    )
    @action(detail=True, methods=["get", "post"], filterset_class=None)
    def timeline(self, request, reference=None):
        incident = self.get_object()
        if request.method == "POST":
            body = s.TimelineNoteSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            entry = services.timeline_add_note(
                incident=incident,
                author=request.user,
                text=body.validated_data["text"],
                occurred_at=body.validated_data.get("occurred_at"),
                owner_team=body.validated_data["owner_team"],
            )
            return Response(s.TimelineEntrySerializer(entry).data, status=status.HTTP_201_CREATED)
        entries = incident.timeline.select_related("owner").order_by("occurred_at", "id")
        return self._paginated(entries, s.TimelineEntrySerializer)

    @extend_schema(
        methods=["GET"], summary="Status updates posted", responses={200: s.StatusUpdateSerializer(many=True)}
    )
    @extend_schema(
        methods=["POST"],
        summary="Post a status update to the distribution list",
        description="Fields left out take the seed template's pre-filled values, as in the web composer.",
        request=s.StatusUpdatePostSerializer,
        responses={201: s.StatusUpdateSerializer, **_ERRORS},
    )
    @action(detail=True, methods=["get", "post"], url_path="status-updates", filterset_class=None)
    def status_updates(self, request, reference=None):
        incident = self.get_object()
        if request.method == "POST":
            body = s.StatusUpdatePostSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            draft = status_updates.status_update_draft(
                incident=incident, audience=body.validated_data.get("audience")
            ).__dict__
            fields = {name: draft[name] for name in ("subject", "status", "impact", "eta", "next_update_at", "contact")}
            fields.update(body.validated_data)
            update = status_updates.status_update_post(incident=incident, user=request.user, **fields)
            return Response(s.StatusUpdateSerializer(update).data, status=status.HTTP_201_CREATED)
        updates = StatusUpdate.objects.filter(incident=incident).select_related("posted_by").order_by("sequence")
        return self._paginated(updates, s.StatusUpdateSerializer)

    @extend_schema(
        summary="Escalation clocks (pending, fired, cancelled)", responses={200: s.DeadlineSerializer(many=True)}
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def deadlines(self, request, reference=None):
        incident = self.get_object()
        return self._paginated(
            Deadline.objects.filter(incident=incident).order_by("due_at", "id"), s.DeadlineSerializer
        )

    @extend_schema(
        summary="Escalations fired and whom they paged", responses={200: s.EscalationEventSerializer(many=True)}
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def escalations(self, request, reference=None):
        incident = self.get_object()
        events = (
            EscalationEvent.objects.filter(incident=incident).select_related("target_user").order_by("fired_at", "id")
        )
        return self._paginated(events, s.EscalationEventSerializer)

    def _paginated(self, queryset, serializer_class):
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True).data)


class HealthTargetFilter(django_filters.FilterSet):
    system = django_filters.CharFilter(field_name="system__key")
    state = django_filters.ChoiceFilter(choices=HealthTarget._meta.get_field("state").choices)

    class Meta:
        model = HealthTarget
        fields = ["system", "state", "enabled"]


@extend_schema_view(
    list=extend_schema(summary="Health targets and their current state"),
    retrieve=extend_schema(summary="One health target"),
)
class HealthTargetViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [RolePermissions]
    action_permissions = {"list": [VIEW_HEALTH_PERMISSION], "retrieve": [VIEW_HEALTH_PERMISSION]}  # as the page
    queryset = HealthTarget.objects.select_related("system").order_by("name")
    serializer_class = s.HealthTargetSerializer
    filterset_class = HealthTargetFilter
