"""The dashboard, the incident list and the incident pages."""

from django.urls import path

from . import views

# Included under the "incidents" namespace by tmt_ir/urls.py, with the sub-apps' pages.
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("incidents/", views.incident_list, name="list"),
    path("incidents/new/", views.incident_create, name="create"),
    path("search/", views.quick_search, name="search"),
    path("incidents/new/suggest-severity/", views.severity_suggestion, name="suggest_severity"),
    path("incidents/<str:reference>/", views.incident_detail, name="detail"),
    path("incidents/<str:reference>/edit/", views.incident_edit, name="edit"),
    path("incidents/<str:reference>/transition/", views.incident_transition, name="transition"),
    path("incidents/<str:reference>/resolve/", views.incident_resolve, name="resolve"),
    path("incidents/<str:reference>/notes/", views.incident_add_note, name="add_note"),
    path("incidents/<str:reference>/commander/", views.incident_commander, name="commander"),
    path("incidents/<str:reference>/roles/", views.incident_role, name="role"),
    path("incidents/<str:reference>/checklist/<int:item_id>/", views.checklist_toggle, name="checklist_toggle"),
    path("incidents/<str:reference>/evidence/", views.evidence_upload, name="evidence_upload"),
    path(
        "incidents/<str:reference>/evidence/<int:evidence_id>/",
        views.evidence_download,
        name="evidence_download",
    ),
]
