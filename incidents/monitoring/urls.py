"""The health page and the trading emergency stop."""

from django.urls import path

from incidents.monitoring import views

# Included under the "incidents" namespace by tmt_ir/urls.py.
urlpatterns = [
    path("health/", views.health_page, name="health"),
    path("health/panel/", views.health_panel, name="health_panel"),
    path("health/emergency-stop/", views.emergency_stop, name="emergency_stop"),
    path("health/emergency-stop/<int:stop_id>/", views.emergency_stop_detail, name="emergency_stop_detail"),
]
