from django.urls import path

from . import views

app_name = "drills"

urlpatterns = [
    path("", views.programme, name="programme"),
    path("new/", views.drill_new, name="new"),
    path("new/kind-defaults/", views.kind_defaults, name="kind_defaults"),
    path("<int:pk>/", views.drill_detail, name="detail"),
    path("<int:pk>/edit/", views.drill_edit, name="edit"),
    path("<int:pk>/participants/", views.participant_add, name="participant_add"),
    path(
        "<int:pk>/participants/<int:participant_id>/remove/",
        views.participant_remove,
        name="participant_remove",
    ),
    path("<int:pk>/start/", views.drill_start, name="start"),
    path("<int:pk>/emergency-stop/", views.drill_emergency_stop, name="emergency_stop"),
    path("<int:pk>/complete/", views.drill_complete, name="complete"),
    path("<int:pk>/cancel/", views.drill_cancel, name="cancel"),
    path("<int:pk>/findings/", views.finding_add, name="finding_add"),
    path("me/", views.my_training, name="me"),
    path("training/", views.trainer_dashboard, name="dashboard"),
    path("training/compliance.csv", views.matrix_csv, name="matrix_csv"),
    path("training/people/<int:user_id>/", views.person_record, name="person"),
    path("training/people/<int:user_id>/waive-mentoring/", views.mentoring_waive, name="mentoring_waive"),
    path("training/people/<int:user_id>/profile/", views.profile_update, name="profile_update"),
    path("training/certifications/new/", views.certification_new, name="certification_new"),
    path(
        "training/certifications/<int:pk>/evidence/",
        views.certification_evidence,
        name="certification_evidence",
    ),
    path("training/mentoring/new/", views.mentoring_new, name="mentoring_new"),
    path("procedures/", views.procedures, name="procedures"),
    path("procedures/new/", views.procedure_new, name="procedure_new"),
    path("procedures/<int:version>/", views.procedure_detail, name="procedure"),
    path("procedures/<int:version>/acknowledge/", views.procedure_ack, name="procedure_ack"),
    path("procedures/<int:version>/publish/", views.procedure_publish, name="procedure_publish"),
    path("readiness/overrides/", views.overrides, name="overrides"),
    path("calendar/mine.ics", views.ical_mine, name="ical_mine"),
    path("calendar/programme.ics", views.ical_programme, name="ical_programme"),
    path("calendar/token/", views.ical_token, name="ical_token"),
    path("calendar/feed/<str:token>/mine.ics", views.ical_feed_mine, name="ical_feed_mine"),
    path("calendar/feed/<str:token>/programme.ics", views.ical_feed_programme, name="ical_feed_programme"),
]
