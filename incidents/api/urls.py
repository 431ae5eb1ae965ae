"""/api/v1/ routes of the API app, the OpenAPI schema and its Swagger UI.

`router` is shared: tmt_ir/urls.py registers the other apps' viewsets on it (drills, reports)
and includes its URLs under v1/ (after that, since a router builds its URL list once)."""

from django.contrib.auth.decorators import login_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from . import alerts, views

router = DefaultRouter()
router.register("incidents", views.IncidentViewSet, basename="incident")
router.register("health-targets", views.HealthTargetViewSet, basename="health-target")

urlpatterns = [
    path("v1/alerts/", alerts.AlertIngestView.as_view(), name="alerts"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The browsable docs are for people: a login page rather than a bare 403 when signed out.
    # The split view serves Swagger UI's start-up script from its own URL (?script), since the
    # Content-Security-Policy runs no inline script.
    path(
        "docs/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api:schema", template_name="api/swagger_ui.html")),
        name="docs",
    ),
]
