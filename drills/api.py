"""API for drills and certifications: the drills services behind role permissions."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from incidents.api.permissions import RolePermissions
from incidents.api.serializers import StrictFieldsMixin, UsernameField

from . import selectors, services
from .models import (
    MANAGE_PERMISSION,
    VIEW_PERMISSION,
    Certification,
    CertificationKind,
    Drill,
    DrillKind,
    DrillParticipant,
)

_ERRORS = {
    400: OpenApiResponse(description="Invalid input; the body names each field's problem."),
    403: OpenApiResponse(description="Only a trainer (or the drill's facilitator) may do this."),
    404: OpenApiResponse(description="Not found."),
}


class DrillSerializer(serializers.ModelSerializer):
    reference = serializers.CharField(read_only=True)
    kind = serializers.SlugRelatedField(slug_field="key", read_only=True)
    facilitator = UsernameField(read_only=True)
    incident = serializers.SlugRelatedField(slug_field="reference", read_only=True, allow_null=True)
    participants = serializers.SerializerMethodField()

    class Meta:
        model = Drill
        fields = [
            "id",
            "reference",
            "kind",
            "title",
            "scenario",
            "objectives",
            "scheduled_start",
            "duration",
            "facilitator",
            "participants",
            "state",
            "started_at",
            "incident",
            "completed_at",
            "result",
            "outcome_summary",
            "cancel_reason",
            "time_to_stop",
        ]
        read_only_fields = fields

    def get_participants(self, drill: Drill) -> list[str]:
        return [p.user.username for p in drill.participants.all()]


class DrillScheduleSerializer(StrictFieldsMixin, serializers.Serializer):
    kind = serializers.SlugRelatedField(slug_field="key", queryset=DrillKind.objects.filter(active=True))
    scheduled_start = serializers.DateTimeField()
    facilitator = UsernameField()
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    scenario = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")
    objectives = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")
    duration = serializers.DurationField(required=False, allow_null=True, default=None, help_text="Blank: the kind's.")
    participants = serializers.ListField(child=UsernameField(), required=False, default=list, max_length=200)


class DrillCancelSerializer(StrictFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


@extend_schema_view(
    list=extend_schema(summary="Drills and exercises"),
    retrieve=extend_schema(
        summary="One drill",
        responses={
            200: DrillSerializer,
            403: OpenApiResponse(description="Not on the team, nor its facilitator or a participant."),
            404: _ERRORS[404],
        },
    ),
    create=extend_schema(
        summary="Schedule a drill",
        request=DrillScheduleSerializer,
        responses={201: DrillSerializer, 400: _ERRORS[400], 403: _ERRORS[403]},
    ),
)
class DrillViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    permission_classes = [RolePermissions]
    serializer_class = DrillSerializer
    filterset_fields = ["state", "kind__key"]
    # As on the pages: scheduling is the trainers' permission, not a model "add" permission;
    # the programme is the team's; one drill is seen by the team and by its facilitator and
    # participants, and run (started, cancelled) by a trainer or its facilitator, which
    # drills.selectors decides for both.
    action_permissions = {
        "list": [VIEW_PERMISSION],
        "create": [MANAGE_PERMISSION],
        "retrieve": [],
        "start": [],
        "cancel": [],
    }

    def get_queryset(self):
        return (
            Drill.objects.select_related("kind", "facilitator", "incident")
            .prefetch_related(Prefetch("participants", queryset=DrillParticipant.objects.select_related("user")))
            .order_by("-scheduled_start", "-id")
        )

    def get_object(self) -> Drill:
        drill = super().get_object()
        if self.action in ("start", "cancel"):
            if not selectors.drill_runnable_by(drill, self.request.user):
                raise PermissionDenied("Only a trainer or the drill's facilitator may do this.")
        elif not selectors.drill_visible_to(drill, self.request.user):
            raise PermissionDenied("Only the team, the drill's facilitator and its participants see it.")
        return drill

    def create(self, request, *args, **kwargs):
        body = DrillScheduleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        drill = services.drill_schedule(**body.validated_data, created_by=request.user)
        return Response(DrillSerializer(self.get_queryset().get(pk=drill.pk)).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Start the drill", request=None, responses={200: DrillSerializer, **_ERRORS})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        drill = services.drill_start(drill=self.get_object(), user=request.user)
        return Response(DrillSerializer(self.get_queryset().get(pk=drill.pk)).data)

    @extend_schema(
        summary="Cancel the drill", request=DrillCancelSerializer, responses={200: DrillSerializer, **_ERRORS}
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        body = DrillCancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        drill = services.drill_cancel(drill=self.get_object(), user=request.user, reason=body.validated_data["reason"])
        return Response(DrillSerializer(self.get_queryset().get(pk=drill.pk)).data)


class CertificationSerializer(serializers.ModelSerializer):
    person = UsernameField(read_only=True)
    kind = serializers.SlugRelatedField(slug_field="key", read_only=True)
    kind_name = serializers.CharField(source="kind.name", read_only=True)
    issued_by = UsernameField(read_only=True)
    recorded_by = UsernameField(read_only=True)

    class Meta:
        model = Certification
        fields = [
            "id",
            "person",
            "kind",
            "kind_name",
            "issued_on",
            "expires_on",
            "issued_by",
            "evidence_note",
            "recorded_by",
            "recorded_at",
        ]
        read_only_fields = fields


class CertificationRecordSerializer(StrictFieldsMixin, serializers.Serializer):
    person = UsernameField()
    kind = serializers.SlugRelatedField(slug_field="key", queryset=CertificationKind.objects.filter(active=True))
    issued_on = serializers.DateField()
    expires_on = serializers.DateField(
        required=False, allow_null=True, default=None, help_text="Blank: the kind's validity."
    )
    issued_by = UsernameField()
    evidence_note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


@extend_schema_view(
    list=extend_schema(summary="Certifications (yours, or everyone's for trainers and managers)"),
    retrieve=extend_schema(
        summary="One certification",
        responses={
            200: CertificationSerializer,
            403: OpenApiResponse(description="Someone else's: only trainers and managers see those."),
            404: _ERRORS[404],
        },
    ),
    create=extend_schema(
        summary="Record a certification",
        request=CertificationRecordSerializer,
        responses={201: CertificationSerializer, 400: _ERRORS[400], 403: _ERRORS[403]},
    ),
)
class CertificationViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = CertificationSerializer
    permission_classes = [RolePermissions]
    filterset_fields = ["kind__key", "person__username"]
    # Everyone may read their own records, trainers and managers everyone's (as the training
    # record pages): the queryset narrows what each sees.
    action_permissions = {"list": [], "retrieve": [], "create": [MANAGE_PERMISSION]}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return Certification.objects.none()
        # The list shows what the user may see; one record is found among all, and get_object
        # refuses someone else's (403), as their training record page does.
        if self.action == "list":
            records = selectors.certifications_visible_to(self.request.user)
        else:
            records = Certification.objects.all()
        return records.select_related("person", "kind", "issued_by", "recorded_by").order_by(
            "person__username", "kind__order", "-issued_on", "-id"
        )

    def get_object(self) -> Certification:
        record = super().get_object()
        if not selectors.training_record_visible_to(record.person_id, self.request.user):
            raise PermissionDenied("Only trainers and managers see other people's certifications.")
        return record

    def create(self, request, *args, **kwargs):
        body = CertificationRecordSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        record = services.certification_record(**body.validated_data, recorded_by=request.user)
        return Response(CertificationSerializer(record).data, status=status.HTTP_201_CREATED)
