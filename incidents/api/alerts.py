"""POST /api/v1/alerts/: monitoring's alerts open or join automated incidents.

Authenticated by an alert integration's token only (a person's API token or session is refused
with 401): the integration says which format the body is in and how its labels map to systems
and severities. The whole body is validated before anything is written.
"""

from __future__ import annotations

import math
import time

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import permissions, serializers, status, throttling
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from incidents.api.models import AlertIntegration
from incidents.api.services.alerts import JOINED, OPENED, RECORDED, RESOLVED_NOTED, alerts_ingest

from .alert_payloads import (
    STATUSES,
    AlertmanagerPayloadSerializer,
    GenericAlertSerializer,
    GrafanaPayloadSerializer,
    parse_alerts,
)
from .authentication import AlertIntegrationAuthentication


class IsAlertIntegration(permissions.BasePermission):
    message = "Send an alert integration's token (Admin → Alert integrations), not a personal one."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, AlertIntegration)


class AlertIntegrationThrottle(throttling.SimpleRateThrottle):
    """A request budget per integration (scope "alerts"), counted in fixed windows.

    SimpleRateThrottle keeps every request's timestamp in one cached list, which at this
    endpoint's rates (hundreds a second, budgets per hour) is a list of 100,000 floats pickled
    on every request; a counter per window costs the same at any rate. A window boundary may
    let up to twice the budget through in a short spell, which is fine for a runaway guard.
    """

    scope = "alerts"

    def __init__(self) -> None:
        # Read per request rather than at import, so a changed setting (or a test's) applies.
        self.num_requests, self.duration = self.parse_rate(api_settings.DEFAULT_THROTTLE_RATES[self.scope])
        self.wait_seconds = 0.0

    def get_cache_key(self, request, view) -> str | None:
        if not isinstance(request.auth, AlertIntegration):
            return None
        return f"throttle_alerts_{request.auth.pk}"

    def allow_request(self, request, view) -> bool:
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = time.time()
        window = int(now // self.duration)
        key = f"{key}_{window}"
        self.cache.add(key, 0, self.duration)
        try:
            count = self.cache.incr(key)
        except ValueError:  # expired between add and incr
            self.cache.set(key, 1, self.duration)
            count = 1
        if count > self.num_requests:
            self.wait_seconds = (window + 1) * self.duration - now
            return False
        return True

    def wait(self) -> float:
        return math.ceil(self.wait_seconds)


class GenericAlertSchema(OpenApiSerializerExtension):
    """The generic format refuses unknown fields; the schema says so (additionalProperties)."""

    target_class = GenericAlertSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        return {**schema, "additionalProperties": False}


class AlertOutcomeSerializer(serializers.Serializer):
    fingerprint = serializers.CharField()
    status = serializers.ChoiceField(choices=STATUSES)
    outcome = serializers.ChoiceField(
        choices=[
            (OPENED, "Opened a new automated incident"),
            (JOINED, "Added to the open incident this fingerprint opened"),
            (RESOLVED_NOTED, "Resolved at the source: noted on the open incident, which stays open"),
            (RECORDED, "Resolved, with no incident open for it: recorded only"),
        ]
    )
    incident = serializers.CharField(
        source="incident.reference", allow_null=True, help_text="The incident's reference, e.g. TMT-INC-2026-11-27-004."
    )
    severity = serializers.IntegerField(
        source="incident.severity", allow_null=True, help_text="The incident's severity level (1-4)."
    )


class AlertIngestResponseSerializer(serializers.Serializer):
    alerts = AlertOutcomeSerializer(many=True, help_text="One per alert received, in the order sent.")


_PAYLOAD = PolymorphicProxySerializer(
    component_name="AlertPayload",
    serializers=[AlertmanagerPayloadSerializer, GrafanaPayloadSerializer, GenericAlertSerializer],
    resource_type_field_name=None,
)


class _AlertSchema(AutoSchema):
    def _get_request_body(self, direction="request"):
        # drf-spectacular marks a body required only when one serializer has required fields,
        # which a oneOf of three has not; every format here needs a body.
        body = super()._get_request_body(direction)
        if body:
            body["required"] = True
        return body


_ALERTMANAGER_EXAMPLE = {
    "version": "4",
    "status": "firing",
    "receiver": "tmt-portal",
    "groupKey": '{}:{alertname="CircuitBreakerDown"}',
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "CircuitBreakerDown", "severity": "critical", "system": "cb"},
            "annotations": {
                "summary": "Circuit breaker agent not answering",
                "description": "No /health answer for 2 minutes.",
            },
            "startsAt": "2026-11-27T09:30:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22cb%22%7D+%3D%3D+0",
            "fingerprint": "5f1a9e0c2b7d4e31",
        }
    ],
}


class AlertIngestView(APIView):
    authentication_classes = [AlertIntegrationAuthentication]
    permission_classes = [IsAlertIntegration]
    throttle_classes = [AlertIntegrationThrottle]
    schema = _AlertSchema()

    @extend_schema(
        operation_id="alerts_ingest",
        summary="Receive alerts from monitoring",
        description=(
            "The body is the native webhook JSON of the integration's kind: Prometheus "
            "Alertmanager (version 4), Grafana alerting, or the generic format (one alert). "
            "A firing alert opens an automated incident, or joins the open incident its "
            "fingerprint opened (a re-sent alert never opens a second one; a worse severity "
            "raises it). A resolved alert is noted on that incident, which stays open for a "
            "person to resolve. Authenticate with the integration's token."
        ),
        request=_PAYLOAD,
        responses={
            202: AlertIngestResponseSerializer,
            400: OpenApiResponse(description="Field-level errors (an alert's by its position); nothing was written."),
            401: OpenApiResponse(description="Missing, wrong or revoked integration token."),
            403: OpenApiResponse(description="Not an integration's credentials."),
            415: OpenApiResponse(description="The body must be JSON (Content-Type: application/json)."),
            429: OpenApiResponse(description="The integration's request budget is spent; see Retry-After."),
        },
        examples=[OpenApiExample("Alertmanager", value=_ALERTMANAGER_EXAMPLE, request_only=True)],
        tags=["alerts"],
    )
    def post(self, request):
        integration: AlertIntegration = request.auth
        alerts = parse_alerts(
            kind=integration.kind,
            data=request.data,
            system_label=integration.system_label,
            severity_label=integration.severity_label,
        )
        result = alerts_ingest(integration=integration, alerts=alerts)
        # Built by hand in AlertIngestResponseSerializer's shape (which the schema documents and
        # tests hold it to): the serializer cost as much CPU as a query on this hot path.
        body = {
            "alerts": [
                {
                    "fingerprint": o.fingerprint,
                    "status": o.status,
                    "outcome": o.outcome,
                    "incident": o.incident.reference if o.incident else None,
                    "severity": o.incident.severity if o.incident else None,
                }
                for o in result.outcomes
            ]
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)
