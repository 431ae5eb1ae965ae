from django.urls import path

from . import escalation_views, health_views, roster_views, views

app_name = "incidents"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("incidents/", views.incident_list, name="list"),
    path("roster/", roster_views.roster_calendar, name="roster"),
    # Health polling and the trading emergency stop (issue #4).
    path("health/", health_views.health_page, name="health"),
    path("health/panel/", health_views.health_panel, name="health_panel"),
    path("health/emergency-stop/", health_views.emergency_stop, name="emergency_stop"),
    path("health/emergency-stop/<int:stop_id>/", health_views.emergency_stop_detail, name="emergency_stop_detail"),
    path("incidents/new/", views.incident_create, name="create"),
    path("incidents/new/suggest-severity/", views.severity_suggestion, name="suggest_severity"),
    path("incidents/<str:reference>/", views.incident_detail, name="detail"),
    path("incidents/<str:reference>/edit/", views.incident_edit, name="edit"),
    path("incidents/<str:reference>/transition/", views.incident_transition, name="transition"),
    path("incidents/<str:reference>/notes/", views.incident_add_note, name="add_note"),
    path("incidents/<str:reference>/commander/", views.incident_commander, name="commander"),
    path("incidents/<str:reference>/checklist/<int:item_id>/", views.checklist_toggle, name="checklist_toggle"),
    path("incidents/<str:reference>/evidence/", views.evidence_upload, name="evidence_upload"),
    path("incidents/<str:reference>/escalation/", escalation_views.escalation_panel, name="escalation_panel"),
    path("incidents/<str:reference>/status-update/", escalation_views.status_update_compose, name="status_update"),
    path("incidents/<str:reference>/obligations/", escalation_views.obligation_raise, name="obligation_raise"),
    path(
        "incidents/<str:reference>/obligations/<int:obligation_id>/submit/",
        escalation_views.obligation_submit,
        name="obligation_submit",
    ),
    path(
        "incidents/<str:reference>/obligations/<int:obligation_id>/sign-off/",
        escalation_views.obligation_sign_off,
        name="obligation_sign_off",
    ),
    path(
        "incidents/<str:reference>/evidence/<int:evidence_id>/",
        views.evidence_download,
        name="evidence_download",
    ),
]
