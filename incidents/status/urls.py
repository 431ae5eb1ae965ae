"""The public status page and its twins, the subscription pages (no login: @login_not_required on
the views), and the publishing pages (login and a communications role)."""

from django.urls import path

from incidents.status import views

urlpatterns = [
    path("status/", views.status_page, name="status"),
    path("status.json", views.status_json, name="status_json"),
    path("status/embed.js", views.embed_js, name="status_embed"),
    path("status/feed.atom", views.status_feed, name="status_feed"),
    path("status/subscribe/", views.subscribe, name="status_subscribe"),
    path("status/subscribe/confirm/<str:token>/", views.subscribe_confirm, name="status_confirm"),
    path("status/unsubscribe/<str:token>/", views.unsubscribe, name="status_unsubscribe"),
    path("status/manage/", views.manage, name="status_manage"),
    path("status/manage/incidents/<str:reference>/publish/", views.publish, name="status_publish"),
    path("status/manage/public/<int:pk>/update/", views.public_update, name="status_public_update"),
    path("status/manage/maintenance/", views.maintenance_new, name="status_maintenance_new"),
    path("status/manage/maintenance/<int:pk>/<str:step>/", views.maintenance_step, name="status_maintenance_step"),
]
