"""Celery tasks for reports: thin, on the `reports` queue so a slow PDF never delays an escalation."""

from celery import shared_task

# The services are imported when a task runs, not when the worker starts: they pull in
# WeasyPrint, whose import takes seconds and would slow every worker's start-up (the escalation
# workers' too, since autodiscovery imports this module everywhere).


@shared_task(ignore_result=True)
def render_report(render_id: int) -> str:
    from .services import report_render_run

    return report_render_run(render_id=render_id)


@shared_task(ignore_result=True)
def render_approved_review(review_id: int) -> str:
    from .services import review_render_frozen_pdf

    return review_render_frozen_pdf(review_id=review_id)
