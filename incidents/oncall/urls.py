"""The on-call roster page."""

from django.urls import path

from incidents.oncall import views

# Included under the "incidents" namespace by tmt_ir/urls.py.
urlpatterns = [
    path("roster/", views.roster_calendar, name="roster"),
]
