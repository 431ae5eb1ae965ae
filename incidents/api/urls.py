"""/api/v1/ routes, the OpenAPI schema and its Swagger UI."""

from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from drills.api import CertificationViewSet, DrillViewSet
from reports.api import ActionItemViewSet

from . import alerts, views

router = DefaultRouter()
router.register("incidents", views.IncidentViewSet, basename="incident")
router.register("health-targets", views.HealthTargetViewSet, basename="health-target")
router.register("drills", DrillViewSet, basename="drill")
router.register("certifications", CertificationViewSet, basename="certification")
router.register("action-items", ActionItemViewSet, basename="action-item")

urlpatterns = [
    path("v1/alerts/", alerts.AlertIngestView.as_view(), name="alerts"),
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The browsable docs are for people: a login page rather than a bare 403 when signed out.
    path("docs/", login_required(SpectacularSwaggerView.as_view(url_name="api:schema")), name="docs"),
]
