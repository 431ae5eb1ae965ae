"""The public status page and its JSON twin: no login (@login_not_required on the views)."""

from django.urls import path

from incidents.status import views

urlpatterns = [
    path("status/", views.status_page, name="status"),
    path("status.json", views.status_json, name="status_json"),
]
