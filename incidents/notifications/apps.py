from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "incidents.notifications"
    label = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from incidents.hooks import hooks

        from . import role_pages, selectors

        hooks.incident_page_context.append(selectors.failed_pages_context)
        hooks.after_role_change.append(role_pages.role_assignment_page)
