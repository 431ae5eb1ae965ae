from django.apps import AppConfig


class EscalationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "incidents.escalation"
    label = "escalation"
    verbose_name = "Escalation"

    def ready(self) -> None:
        from incidents.hooks import hooks
        from incidents.notifications.hooks import notification_hooks

        from . import services

        hooks.snapshot_parts.append(services.escalation_snapshot_build)
        hooks.after_open.append(services.escalation_arm)
        hooks.after_transition.append(services.escalation_on_transition)
        hooks.after_reclassify.append(services.escalation_reevaluate)
        hooks.response_due_at = services.response_due_at
        notification_hooks.page_failed.append(services.escalation_advance_after_failure)
        notification_hooks.escalate_now = services.escalation_escalate_now
