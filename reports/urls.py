from django.urls import path

from . import regulatory, views

app_name = "reports"

urlpatterns = [
    path("", views.reviews, name="reviews"),
    path("metrics/", views.metrics, name="metrics"),
    path("metrics.csv", views.metrics_csv, name="metrics_csv"),
    path("action-items/", views.my_action_items, name="my_action_items"),
    path("action-items/<int:pk>/", views.action_item_update, name="action_item_update"),
    path("<str:reference>/", views.report_page, name="report"),
    path("<str:reference>/pdf/", views.report_pdf, name="pdf"),
    path("<str:reference>/regulatory/<int:obligation_id>.pdf", regulatory.regulatory_pdf, name="regulatory_pdf"),
    path("<str:reference>/pdf/status/", views.report_pdf_status, name="pdf_status"),
    path("<str:reference>/pdf/render/", views.report_render, name="render"),
    path("<str:reference>/action-items/", views.action_item_add, name="action_item_add"),
    path("<str:reference>/review/", views.review_start, name="review_start"),
    path("<str:reference>/review/r<int:revision>/", views.review_edit, name="review_edit"),
    path("<str:reference>/review/r<int:revision>/submit/", views.review_submit, name="review_submit"),
    path(
        "<str:reference>/review/r<int:revision>/request-changes/",
        views.review_request_changes,
        name="review_request_changes",
    ),
    path("<str:reference>/review/r<int:revision>/approve/", views.review_approve, name="review_approve"),
    path("<str:reference>/review/r<int:revision>/pdf/", views.review_pdf, name="review_pdf"),
]
