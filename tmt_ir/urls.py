from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path

from incidents import status_views
from incidents.api import token_views as api_token_views

admin.site.site_header = "TMT Incident Response — admin"
admin.site.site_title = "TMT IR admin"

urlpatterns = [
    path(
        "accounts/login/",
        login_not_required(auth_views.LoginView.as_view(redirect_authenticated_user=True)),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # The public status page and its JSON twin (issue #4): no login (@login_not_required).
    path("status/", status_views.status_page, name="status"),
    path("status.json", status_views.status_json, name="status_json"),
    # REST API, OpenAPI schema and Swagger UI (issue #7); DRF views answer 401/403 themselves.
    path("api/", include(("incidents.api.urls", "api"))),
    path("account/api-tokens/", api_token_views.api_tokens, name="api_tokens"),
    path("account/api-tokens/<int:token_id>/revoke/", api_token_views.api_token_revoke_view, name="api_token_revoke"),
    path("reports/", include("reports.urls")),  # reports (issue #5): report PDF, review, metrics
    path("drills/", include("drills.urls")),  # drills, exercises and training (issue #6)
    path("", include("incidents.urls")),
]


# API clients get JSON for a URL no route matches, people the 404 page.
handler404 = "incidents.api.exceptions.not_found"
