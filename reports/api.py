"""API for action items: the reports services behind role permissions."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from incidents.api.permissions import RolePermissions
from incidents.api.serializers import StrictFieldsMixin, UsernameField
from incidents.models import Incident

from . import services
from .models import ActionItem

_ERRORS = {
    400: OpenApiResponse(description="Invalid input; the body names each field's problem."),
    403: OpenApiResponse(description="Only the owner or a responder may change this action item."),
    404: OpenApiResponse(description="No such action item."),
}


class ActionItemSerializer(serializers.ModelSerializer):
    incident = serializers.SlugRelatedField(slug_field="reference", read_only=True, allow_null=True)
    owner = UsernameField(read_only=True)
    created_by = UsernameField(read_only=True)

    class Meta:
        model = ActionItem
        fields = [
            "id",
            "incident",
            "title",
            "description",
            "kind",
            "owner",
            "due_date",
            "state",
            "closing_note",
            "created_by",
            "created_at",
            "completed_at",
        ]
        read_only_fields = fields


class ActionItemCreateSerializer(StrictFieldsMixin, serializers.Serializer):
    incident = serializers.SlugRelatedField(
        slug_field="reference", queryset=Incident.objects.all(), required=False, allow_null=True, default=None
    )
    title = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=ActionItem.Kind.choices)
    owner = UsernameField()
    due_date = serializers.DateField()
    description = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")


class ActionItemRescheduleSerializer(StrictFieldsMixin, serializers.Serializer):
    due_date = serializers.DateField()
    owner = UsernameField(required=False, allow_null=True, default=None)


class ActionItemCompleteSerializer(StrictFieldsMixin, serializers.Serializer):
    note = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")


class ActionItemDeclineSerializer(StrictFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(max_length=10_000)


@extend_schema_view(
    list=extend_schema(summary="Action items (filter owner=<username> for someone's list)"),
    retrieve=extend_schema(summary="One action item"),
    create=extend_schema(
        summary="Add an action item",
        request=ActionItemCreateSerializer,
        responses={201: ActionItemSerializer, 400: _ERRORS[400], 403: _ERRORS[403]},
    ),
)
class ActionItemViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    permission_classes = [RolePermissions]
    serializer_class = ActionItemSerializer
    filterset_fields = {
        "state": ["exact"],
        "kind": ["exact"],
        "owner__username": ["exact"],
        "incident__reference": ["exact"],
    }
    # The owner may move their own item along; the service checks who may change which item.
    action_permissions = {name: ["reports.view_actionitem"] for name in ("start", "complete", "decline", "reschedule")}

    def get_queryset(self):
        return ActionItem.objects.select_related("incident", "owner", "created_by").order_by("due_date", "id")

    def create(self, request, *args, **kwargs):
        body = ActionItemCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        item = services.action_item_create(**body.validated_data, user=request.user)
        return Response(ActionItemSerializer(self.get_queryset().get(pk=item.pk)).data, status=status.HTTP_201_CREATED)

    def _answer(self, item: ActionItem) -> Response:
        return Response(ActionItemSerializer(self.get_queryset().get(pk=item.pk)).data)

    @extend_schema(summary="Start working on it", request=None, responses={200: ActionItemSerializer, **_ERRORS})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._answer(services.action_item_start(item=self.get_object(), user=request.user))

    @extend_schema(
        summary="Mark it done", request=ActionItemCompleteSerializer, responses={200: ActionItemSerializer, **_ERRORS}
    )
    @action(detail=True, methods=["post"])
    def complete(self, request, pk=None):
        body = ActionItemCompleteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._answer(
            services.action_item_complete(item=self.get_object(), user=request.user, **body.validated_data)
        )

    @extend_schema(
        summary="Decide it won't be done",
        request=ActionItemDeclineSerializer,
        responses={200: ActionItemSerializer, **_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def decline(self, request, pk=None):
        body = ActionItemDeclineSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._answer(
            services.action_item_decline(item=self.get_object(), user=request.user, **body.validated_data)
        )

    @extend_schema(
        summary="Move the due date or hand it over",
        request=ActionItemRescheduleSerializer,
        responses={200: ActionItemSerializer, **_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def reschedule(self, request, pk=None):
        body = ActionItemRescheduleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._answer(
            services.action_item_reschedule(item=self.get_object(), user=request.user, **body.validated_data)
        )
