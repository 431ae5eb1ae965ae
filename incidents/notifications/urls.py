"""Acknowledging from the page: the link's page (no login: the token stands for the person) and
the SMS/voice provider's signed webhooks."""

from django.urls import path

from incidents.notifications import views

app_name = "notifications"
urlpatterns = [
    path("ack/<str:token>/", views.ack_link, name="ack_link"),
    path("provider/sms/", views.provider_sms, name="provider_sms"),
    path("provider/voice/", views.provider_voice, name="provider_voice"),
]
