"""The knowledge base under /runbooks/ (namespace "runbooks")."""

from django.urls import path

from incidents.runbooks import views

app_name = "runbooks"
urlpatterns = [
    path("", views.runbook_list, name="list"),
    path("new/", views.runbook_new, name="new"),
    path("propose/", views.propose_choose, name="propose_choose"),
    path("incident/<str:reference>/", views.incident_panel, name="incident_panel"),
    path("incident/<str:reference>/start/", views.run_start, name="run_start"),
    path("run/<int:run_id>/", views.run_detail, name="run"),
    path("run/<int:run_id>/step/<int:step_id>/", views.step_record, name="step_record"),
    path("<slug:key>/", views.runbook_detail, name="detail"),
    path("<slug:key>/propose/", views.propose, name="propose"),
    path("<slug:key>/r<int:number>/", views.revision_detail, name="revision"),
    path("<slug:key>/r<int:number>/approve/", views.revision_approve, name="revision_approve"),
]
