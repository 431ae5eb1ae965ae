"""What the API reads and writes for incidents. Writes are validated here, then made by the services."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from incidents.escalation.models import Audience, Deadline, EscalationEvent, StatusUpdate
from incidents.monitoring.models import HealthTarget

from ..models import Incident, IncidentRole, SeverityLevel, System, TimelineEntry
from ..models.incident import MAX_FINANCIAL_IMPACT_USD, STATUS_UPDATE_WORDS
from ..selectors import incident_role_slots
from ..services import EDITABLE_FIELDS, NOTE_TIME, severity_suggest
from ..validators import happened_problem, incident_time_errors


class StrictFieldsMixin:
    """Refuse fields the endpoint does not take, naming them.

    DRF silently drops unknown keys, so a typo (`severty`) or a read-only field would look
    accepted while nothing changed — the worst answer for a script that a desk relies on.
    """

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown or read-only field."] for name in unknown})
        return super().to_internal_value(data)


_TEXT_CHECKS = (ProhibitNullCharactersValidator(), ProhibitSurrogateCharactersValidator())


class CheckedSlugRelatedField(serializers.SlugRelatedField):
    """A row by a text key, with the text checked before the lookup."""

    def to_internal_value(self, data):
        # The checks DRF's CharField makes, made before the lookup: PostgreSQL refuses a NUL in
        # the query and a lone surrogate cannot be encoded, which would be a 500, not a field error.
        if isinstance(data, str):
            try:
                for check in _TEXT_CHECKS:
                    check(data)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(exc.messages) from exc
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.STR)  # a serializer without a model gives the schema no type to derive
class UsernameField(CheckedSlugRelatedField):
    """A person by username: readable in a payload, stable across databases."""

    def __init__(self, **kwargs):
        kwargs.setdefault("slug_field", "username")
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", get_user_model().objects.filter(is_active=True))
        super().__init__(**kwargs)


def _severity_field(**kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="level",
        queryset=SeverityLevel.objects.all(),
        error_messages={"does_not_exist": "Choose one of the severity levels 1-4.", "invalid": "A level, 1-4."},
        help_text="Severity level: 1 (critical) to 4 (low).",
        **kwargs,
    )


def _systems_field(**kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="key",
        many=True,
        queryset=System.objects.all(),
        help_text="System keys, e.g. circuit_breaker.",
        **kwargs,
    )


def _refuse_time_errors(errors: dict[str, str]) -> None:
    if errors:
        raise serializers.ValidationError({field: [problem] for field, problem in errors.items()})


class IncidentListSerializer(serializers.ModelSerializer):
    """A row of the list: what the list query loads, so a page costs the same few queries."""

    severity = serializers.IntegerField(source="severity.level", read_only=True)
    severity_label = serializers.CharField(source="severity.label", read_only=True)
    state_label = serializers.CharField(source="get_state_display", read_only=True)
    affected_systems = serializers.SlugRelatedField(slug_field="key", many=True, read_only=True)
    commander = UsernameField(read_only=True, allow_null=True)
    url = serializers.HyperlinkedIdentityField(view_name="api:incident-detail", lookup_field="reference")

    class Meta:
        model = Incident
        fields = [
            "reference",
            "url",
            "title",
            "severity",
            "severity_label",
            "state",
            "state_label",
            "category",
            "detection_method",
            "affected_systems",
            "financial_impact_usd",
            "commander",
            "is_drill",
            "started_at",
            "detected_at",
            "acknowledged_at",
            "resolved_at",
            "closed_at",
            "updated_at",
        ]
        read_only_fields = fields


class RoleSerializer(serializers.Serializer):
    """One incident role and its holder (the commander's `since` and `assigned_by` are on the timeline)."""

    role = serializers.CharField(read_only=True)
    label = serializers.CharField(read_only=True)
    holder = UsernameField(read_only=True, allow_null=True)
    since = serializers.DateTimeField(read_only=True, allow_null=True)
    assigned_by = UsernameField(read_only=True, allow_null=True)


class RoleAssignSerializer(StrictFieldsMixin, serializers.Serializer):
    role = serializers.ChoiceField(choices=IncidentRole.choices, help_text="The role's key, e.g. scribe.")
    holder = UsernameField(allow_null=True, help_text="Username, or null to leave the role empty.")


class IncidentSerializer(IncidentListSerializer):
    reported_by = UsernameField(read_only=True)
    acknowledged_by = UsernameField(read_only=True, allow_null=True)
    roles = serializers.SerializerMethodField(help_text="Each incident role and who holds it.")

    @extend_schema_field(RoleSerializer(many=True))
    def get_roles(self, incident: Incident) -> list[dict]:
        return RoleSerializer(incident_role_slots(incident), many=True).data

    class Meta(IncidentListSerializer.Meta):
        fields = [
            *IncidentListSerializer.Meta.fields,
            "reported_by",
            "acknowledged_by",
            # The details and report fields people edit on the incident page.
            *(name for name in EDITABLE_FIELDS if name not in IncidentListSerializer.Meta.fields),
            "investigating_at",
            "contained_at",
            "recovering_at",
            "review_started_at",
            "cancelled_at",
            "cancel_reason",
            "alert_fingerprint",
            "created_at",
            "roles",
        ]
        read_only_fields = fields


class IncidentCreateSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    severity = _severity_field()
    affected_systems = _systems_field(required=False)
    financial_impact_usd = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=0,
        max_value=MAX_FINANCIAL_IMPACT_USD,
        required=False,
        allow_null=True,
    )
    started_at = serializers.DateTimeField(required=False, allow_null=True)
    take_command = serializers.BooleanField(
        default=True,
        write_only=True,
        help_text="Become the incident commander (as in the web form); refused quietly if the readiness "
        "gate does not allow it yet (certifications, mentoring, acknowledged procedures).",
    )

    class Meta:
        model = Incident
        fields = [
            "title",
            "severity",
            "category",
            "detection_method",
            "affected_systems",
            "financial_impact_usd",
            "user_impact",
            "description",
            "started_at",
            "take_command",
        ]

    def validate_title(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("Give the incident a short title.")
        return value

    def validate(self, attrs):
        _refuse_time_errors(incident_time_errors(started_at=attrs.get("started_at"), ended_at=None))
        # The seed's severity matrix: an impact sets a floor on the severity (same rule as the form).
        suggestion = severity_suggest(financial_impact_usd=attrs.get("financial_impact_usd"))
        if suggestion and attrs["severity"].level > suggestion.severity.level:
            raise serializers.ValidationError(
                {"severity": [f"{suggestion.reason} Choose {suggestion.severity.label} or higher."]}
            )
        return attrs


class IncidentUpdateSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    severity = _severity_field(required=False)
    affected_systems = _systems_field(required=False)
    financial_impact_usd = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=0,
        max_value=MAX_FINANCIAL_IMPACT_USD,
        required=False,
        allow_null=True,
    )
    started_at = serializers.DateTimeField(required=False)
    ended_at = serializers.DateTimeField(required=False, allow_null=True)

    class Meta:
        model = Incident
        fields = ["severity", "affected_systems", *EDITABLE_FIELDS]

    def validate(self, attrs):
        start = attrs.get("started_at", self.instance.started_at if self.instance else None)
        end = attrs.get("ended_at", self.instance.ended_at if self.instance else None)
        _refuse_time_errors(incident_time_errors(started_at=start, ended_at=end))
        return attrs


class TransitionSerializer(StrictFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=2000, help_text="Required to cancel (a false alarm, say why)."
    )
    expected_state = serializers.ChoiceField(
        choices=Incident._meta.get_field("state").choices,
        required=False,
        help_text="The state you saw; if the incident moved on meanwhile, the answer is 409.",
    )


class CommanderSerializer(StrictFieldsMixin, serializers.Serializer):
    commander = UsernameField(allow_null=True, help_text="Username, or null to leave the incident without one.")


class TimelineEntrySerializer(serializers.ModelSerializer):
    owner = UsernameField(read_only=True, allow_null=True)

    class Meta:
        model = TimelineEntry
        fields = ["id", "kind", "action", "owner", "owner_team", "occurred_at", "recorded_at", "from_state", "to_state"]
        read_only_fields = fields


class TimelineNoteSerializer(StrictFieldsMixin, serializers.Serializer):
    text = serializers.CharField(max_length=10_000, help_text="What happened, what was done.")
    occurred_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When it happened: not in the future, nor before the incident began."
    )
    owner_team = serializers.CharField(max_length=80, required=False, allow_blank=True, default="")

    def validate_text(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Write something.")
        return value.strip()

    def validate_occurred_at(self, value):
        # Not before the incident began either: the service knows the incident, and says so.
        if problem := happened_problem(value, what=NOTE_TIME):
            raise serializers.ValidationError(problem)
        return value


class StatusUpdateSerializer(serializers.ModelSerializer):
    posted_by = UsernameField(read_only=True)
    audience = serializers.SlugRelatedField(slug_field="key", read_only=True, allow_null=True)

    class Meta:
        model = StatusUpdate
        fields = [
            "sequence",
            "subject",
            "status",
            "severity_level",
            "impact",
            "eta",
            "next_update_at",
            "details",
            "contact",
            "is_public",
            "audience",
            "posted_by",
            "posted_at",
        ]
        read_only_fields = fields


class StatusUpdatePostSerializer(StrictFieldsMixin, serializers.Serializer):
    """Fields left out take the seed template's pre-filled values (as the web composer does)."""

    subject = serializers.CharField(max_length=300, required=False)
    status = serializers.ChoiceField(choices=STATUS_UPDATE_WORDS, required=False)
    impact = serializers.CharField(max_length=2000, required=False)
    eta = serializers.CharField(max_length=120, required=False, allow_blank=True)
    next_update_at = serializers.DateTimeField(required=False, allow_null=True)
    details = serializers.CharField(max_length=10_000)
    contact = serializers.CharField(max_length=200, required=False)
    is_public = serializers.BooleanField(
        default=False, help_text="Users only: also publish it on the public status page (needs status.publish_status)."
    )
    audience = CheckedSlugRelatedField(
        slug_field="key",
        queryset=Audience.objects.all(),
        required=False,
        allow_null=True,
        help_text="internal, stakeholders, regulators or users: only its distribution lists receive it.",
    )


class DeadlineSerializer(serializers.ModelSerializer):
    class Meta:
        model = Deadline
        fields = ["id", "kind", "rule", "step", "due_at", "fired_at", "cancelled_at", "cancel_reason"]
        read_only_fields = fields


class EscalationEventSerializer(serializers.ModelSerializer):
    target_user = UsernameField(read_only=True, allow_null=True)

    class Meta:
        model = EscalationEvent
        fields = ["id", "rule", "step", "due_at", "fired_at", "target_label", "target_user", "summary"]
        read_only_fields = fields


class HealthTargetSerializer(serializers.ModelSerializer):
    system = serializers.SlugRelatedField(slug_field="key", read_only=True)
    state_label = serializers.CharField(source="get_state_display", read_only=True)
    # What is checked, without secrets (header values and passwords live in the environment).
    endpoint = serializers.CharField(read_only=True)

    class Meta:
        model = HealthTarget
        fields = [
            "id",
            "name",
            "system",
            "kind",
            "endpoint",
            "url",
            "enabled",
            "state",
            "state_label",
            "state_changed_at",
            "last_checked_at",
            "last_latency_ms",
            "last_error",
            "interval",
            "timeout",
            "failures_before_down",
            "latency_threshold_ms",
        ]
        read_only_fields = fields
