"""Celery tasks for reports: thin, on the `reports` queue so a slow PDF never delays an escalation."""

from celery import shared_task

from . import services

# WeasyPrint, whose import takes seconds, is imported by the renderers when they run (reports.pdf),
# not here: autodiscovery imports this module in every worker.


@shared_task(ignore_result=True)
def render_report(render_id: int) -> str:
    return services.report_render_run(render_id=render_id)


@shared_task(ignore_result=True)
def render_approved_review(review_id: int) -> str:
    return services.review_render_frozen_pdf(review_id=review_id)
