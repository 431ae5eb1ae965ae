"""The health page and the trading emergency stop."""

from django.urls import path

from incidents.monitoring import halt_views, views

# Included under the "incidents" namespace by tmt_ir/urls.py.
urlpatterns = [
    path("health/", views.health_page, name="health"),
    path("health/panel/", views.health_panel, name="health_panel"),
    path("health/emergency-stop/", views.emergency_stop, name="emergency_stop"),
    path("health/emergency-stop/<int:stop_id>/", views.emergency_stop_detail, name="emergency_stop_detail"),
    path("health/halt/<int:halt_id>/", halt_views.trading_halt, name="trading_halt"),
    path("health/halt/<int:halt_id>/resume/", halt_views.resume_request, name="trading_resume_request"),
    path("health/halt/resume/<int:request_id>/approve/", halt_views.resume_approve, name="trading_resume_approve"),
    path("health/halt/<int:halt_id>/positions/", halt_views.position_closure, name="position_closure"),
    path("incidents/<str:reference>/capture-state/", halt_views.capture_state, name="capture_state"),
]
