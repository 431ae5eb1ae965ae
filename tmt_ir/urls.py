from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path

import incidents.escalation.urls
import incidents.monitoring.urls
import incidents.oncall.urls
import incidents.urls
from drills.api import CertificationViewSet, DrillViewSet
from incidents.api import token_views as api_token_views
from incidents.api import urls as api_urls
from incidents.status.api import MaintenanceViewSet, PublicIncidentViewSet
from reports.api import ActionItemViewSet

# The other apps' endpoints join the API app's router (the API app imports none of them).
api_urls.router.register("drills", DrillViewSet, basename="drill")
api_urls.router.register("certifications", CertificationViewSet, basename="certification")
api_urls.router.register("action-items", ActionItemViewSet, basename="action-item")
api_urls.router.register("status/incidents", PublicIncidentViewSet, basename="status-incident")
api_urls.router.register("status/maintenance", MaintenanceViewSet, basename="status-maintenance")

incident_pages = [
    *incidents.urls.urlpatterns,
    *incidents.oncall.urls.urlpatterns,
    *incidents.monitoring.urls.urlpatterns,
    *incidents.escalation.urls.urlpatterns,
]

admin.site.site_header = "TMT Incident Response — admin"
admin.site.site_title = "TMT IR admin"


@login_not_required
def favicon(request: HttpRequest) -> HttpResponseRedirect:
    # Browsers ask every site for /favicon.ico, whatever its pages link (the admin links none).
    return HttpResponseRedirect(static("favicon.svg"))


urlpatterns = [
    path("favicon.ico", favicon),
    path(
        "accounts/login/",
        login_not_required(auth_views.LoginView.as_view(redirect_authenticated_user=True)),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("incidents.status.urls")),
    # Acknowledging from a page: the one-tap link and the provider's signed webhooks.
    path("", include("incidents.notifications.urls")),
    # REST API, OpenAPI schema and Swagger UI; DRF views answer 401/403 themselves.
    path("api/", include(([*api_urls.urlpatterns, path("v1/", include(api_urls.router.urls))], "api"))),
    path("account/api-tokens/", api_token_views.api_tokens, name="api_tokens"),
    path("account/api-tokens/<int:token_id>/revoke/", api_token_views.api_token_revoke_view, name="api_token_revoke"),
    path("reports/", include("reports.urls")),
    path("drills/", include("drills.urls")),
    path("backups/", include("incidents.recovery.urls")),
    path("runbooks/", include("incidents.runbooks.urls")),
    # The live pages' event stream and unacknowledged-incident summary.
    path("live/", include("incidents.live.urls")),
    # The incident pages and those of the sub-apps share the "incidents" namespace.
    path("", include((incident_pages, "incidents"))),
]


# API clients get JSON for the errors Django answers itself (a URL no route matches, a body too
# large, an unhandled exception), people the error pages.
handler400 = "incidents.api.exceptions.bad_request"
handler403 = "incidents.api.exceptions.permission_denied"
handler404 = "incidents.api.exceptions.not_found"
handler500 = "incidents.api.exceptions.server_error"
