"""The incident page's escalation panel, status updates and regulatory obligations."""

from django.urls import path

from incidents.escalation import regulatory_views, views

# Included under the "incidents" namespace by tmt_ir/urls.py.
urlpatterns = [
    path("incidents/<str:reference>/escalation/", views.escalation_panel, name="escalation_panel"),
    path("incidents/<str:reference>/status-update/", views.status_update_compose, name="status_update"),
    path("incidents/<str:reference>/obligations/", views.obligation_raise, name="obligation_raise"),
    path(
        "incidents/<str:reference>/obligations/<int:obligation_id>/submit/",
        views.obligation_submit,
        name="obligation_submit",
    ),
    path(
        "incidents/<str:reference>/obligations/<int:obligation_id>/sign-off/",
        views.obligation_sign_off,
        name="obligation_sign_off",
    ),
    path("regulatory/", regulatory_views.regulatory_overview, name="regulatory"),
    path("incidents/<str:reference>/regulatory/", regulatory_views.incident_regulatory, name="incident_regulatory"),
    path(
        "incidents/<str:reference>/regulatory/<int:obligation_id>/",
        regulatory_views.obligation_report,
        name="obligation_report",
    ),
    path(
        "incidents/<str:reference>/regulatory/<int:obligation_id>.json",
        regulatory_views.obligation_report_json,
        name="obligation_report_json",
    ),
]
