"""API for publishing on the public status page: the status services behind the same
permissions as the publishing pages (status.publish_status, status.announce_maintenance)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from incidents.api.permissions import RolePermissions
from incidents.api.serializers import CheckedSlugRelatedField, StrictFieldsMixin
from incidents.models import Incident, System
from incidents.status import services
from incidents.status.models import Maintenance, PublicImpact, PublicIncident, PublicStatus, PublicUpdate

PUBLISH = ["status.publish_status"]
ANNOUNCE = ["status.announce_maintenance"]

_ERRORS = {
    400: OpenApiResponse(description="Invalid input; the body names each field's problem. Nothing was published."),
    403: OpenApiResponse(description="Your role may not publish on the status page (or announce maintenance)."),
    404: OpenApiResponse(description="No such published incident or maintenance."),
}


def _components(help_text: str = "Component (system) keys.") -> serializers.SlugRelatedField:
    return CheckedSlugRelatedField(
        slug_field="key", queryset=System.objects.all(), many=True, required=False, help_text=help_text
    )


# -- published incidents ------------------------------------------------------------------------------


class PublicUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = PublicUpdate
        fields = ["status", "message", "published_at"]
        read_only_fields = fields


class PublicIncidentSerializer(serializers.ModelSerializer):
    incident = serializers.SlugRelatedField(slug_field="reference", read_only=True)
    components = serializers.SlugRelatedField(source="systems", slug_field="key", many=True, read_only=True)
    updates = PublicUpdateSerializer(many=True, read_only=True)

    class Meta:
        model = PublicIncident
        fields = [
            "id",
            "incident",
            "title",
            "impact",
            "status",
            "components",
            "published_at",
            "resolved_at",
            "updates",
        ]
        read_only_fields = fields


class PublishSerializer(StrictFieldsMixin, serializers.Serializer):
    incident = CheckedSlugRelatedField(
        slug_field="reference", queryset=Incident.objects.all(), help_text="The internal incident's reference."
    )
    title = serializers.CharField(max_length=200, help_text="The public title, written for customers.")
    impact = serializers.ChoiceField(choices=PublicImpact.choices)
    # The page's one set of words ("resolved" is refused by the service: publish, then resolve).
    status = serializers.ChoiceField(choices=PublicStatus.choices)
    message = serializers.CharField(max_length=10_000, help_text="The first public update.")
    components = _components(help_text="Component (system) keys; left out: the incident's affected systems.")


class PublicUpdatePostSerializer(StrictFieldsMixin, serializers.Serializer):
    status = serializers.ChoiceField(choices=PublicStatus.choices, help_text='"resolved" moves it to the history.')
    message = serializers.CharField(max_length=10_000)


class ResolveSerializer(StrictFieldsMixin, serializers.Serializer):
    message = serializers.CharField(max_length=10_000, help_text="The closing public update.")


@extend_schema_view(
    create=extend_schema(
        summary="Publish an incident on the public status page (subscribers are told)",
        request=PublishSerializer,
        responses={201: PublicIncidentSerializer, **_ERRORS},
    ),
)
class PublicIncidentViewSet(mixins.CreateModelMixin, viewsets.GenericViewSet):
    permission_classes = [RolePermissions]
    serializer_class = PublicIncidentSerializer
    lookup_value_regex = r"\d+"
    action_permissions = {"create": PUBLISH, "updates": PUBLISH, "resolve": PUBLISH}

    def get_queryset(self):
        return PublicIncident.objects.select_related("incident").prefetch_related("systems", "updates")

    def _answer(self, public: PublicIncident, code: int = status.HTTP_200_OK) -> Response:
        return Response(PublicIncidentSerializer(self.get_queryset().get(pk=public.pk)).data, status=code)

    def create(self, request, *args, **kwargs):
        body = PublishSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        public = services.public_incident_publish(
            incident=data["incident"],
            user=request.user,
            title=data["title"],
            impact=data["impact"],
            status=data["status"],
            message=data["message"],
            systems=data.get("components"),
        )
        return self._answer(public, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Publish the next public update",
        request=PublicUpdatePostSerializer,
        responses={200: PublicIncidentSerializer, **_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def updates(self, request, pk=None):
        public = self.get_object()
        body = PublicUpdatePostSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.public_incident_update(public_incident=public, user=request.user, **body.validated_data)
        return self._answer(public)

    @extend_schema(
        summary="Resolve it on the page (it moves to the history)",
        request=ResolveSerializer,
        responses={200: PublicIncidentSerializer, **_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        public = self.get_object()
        body = ResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.public_incident_update(
            public_incident=public, user=request.user, status=PublicStatus.RESOLVED, **body.validated_data
        )
        return self._answer(public)


# -- maintenance -----------------------------------------------------------------------------------------


class MaintenanceNoticeSerializer(serializers.Serializer):
    state = serializers.CharField(read_only=True)
    message = serializers.CharField(read_only=True)
    published_at = serializers.DateTimeField(read_only=True)


class MaintenanceSerializer(serializers.ModelSerializer):
    components = serializers.SlugRelatedField(source="systems", slug_field="key", many=True, read_only=True)
    notices = MaintenanceNoticeSerializer(many=True, read_only=True)

    class Meta:
        model = Maintenance
        fields = [
            "id",
            "title",
            "message",
            "components",
            "starts_at",
            "ends_at",
            "state",
            "started_at",
            "completed_at",
            "notices",
        ]
        read_only_fields = fields


class MaintenanceScheduleSerializer(StrictFieldsMixin, serializers.Serializer):
    title = serializers.CharField(max_length=200)
    message = serializers.CharField(max_length=10_000)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    components = _components()


class MaintenanceAdvanceSerializer(StrictFieldsMixin, serializers.Serializer):
    step = serializers.ChoiceField(choices=["start", "complete", "cancel"])
    message = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default="", help_text="Blank: the step's usual notice."
    )


@extend_schema_view(
    create=extend_schema(
        summary="Schedule maintenance (subscribers are told)",
        request=MaintenanceScheduleSerializer,
        responses={201: MaintenanceSerializer, **_ERRORS},
    ),
)
class MaintenanceViewSet(mixins.CreateModelMixin, viewsets.GenericViewSet):
    permission_classes = [RolePermissions]
    serializer_class = MaintenanceSerializer
    lookup_value_regex = r"\d+"
    action_permissions = {"create": ANNOUNCE, "advance": ANNOUNCE}

    def get_queryset(self):
        return Maintenance.objects.prefetch_related("systems", "notices")

    def _answer(self, maintenance: Maintenance, code: int = status.HTTP_200_OK) -> Response:
        return Response(MaintenanceSerializer(self.get_queryset().get(pk=maintenance.pk)).data, status=code)

    def create(self, request, *args, **kwargs):
        body = MaintenanceScheduleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        maintenance = services.maintenance_schedule(
            user=request.user,
            title=data["title"],
            message=data["message"],
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
            systems=data.get("components", []),
        )
        return self._answer(maintenance, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Start, complete or cancel it, with a notice to subscribers",
        request=MaintenanceAdvanceSerializer,
        responses={200: MaintenanceSerializer, **_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def advance(self, request, pk=None):
        maintenance = self.get_object()
        body = MaintenanceAdvanceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.maintenance_advance(maintenance=maintenance, user=request.user, **body.validated_data)
        return self._answer(maintenance)
