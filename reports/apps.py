from django.apps import AppConfig


class ReportsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "reports"
    verbose_name = "Reports and reviews"

    def ready(self) -> None:
        from incidents.escalation.hooks import escalation_hooks
        from incidents.hooks import hooks

        from . import selectors, services

        # "closed" needs an approved post-incident review (major incidents); resolving renders
        # the report and arms the review deadline.
        hooks.close_guards.append(selectors.incident_has_approved_review)
        hooks.after_transition.append(services.report_on_incident_transition)
        escalation_hooks.follow_up_reminders.append(selectors.follow_up_reminder)
        # The review phase ends with the approval; the incident page warns when it is overdue.
        hooks.review_done_at = selectors.review_approved_at
        hooks.incident_page_context.append(selectors.review_overdue_context)
