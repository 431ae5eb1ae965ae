from django.urls import path

from . import views

app_name = "recovery"
urlpatterns = [
    path("", views.backups_page, name="backups"),
    path("run/", views.backup_start, name="start"),
    path("incident/<str:reference>/run/", views.incident_backup_start, name="incident_start"),
    path("runs/<int:run_id>/", views.run_detail, name="run"),
    path("runs/<int:run_id>/progress/", views.run_progress, name="progress"),
]
