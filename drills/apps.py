from django.apps import AppConfig


class DrillsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "drills"
    verbose_name = "Drills and training"

    def ready(self) -> None:
        from incidents.hooks import hooks
        from incidents.notifications.hooks import notification_hooks

        from . import services

        # The readiness gate (selectors.readiness_of): an expired certification, unfinished
        # mentoring or unacknowledged procedures keep someone from commanding a real incident.
        hooks.commander_problems.append(services.commander_readiness_problems)
        hooks.commander_guards.append(services.commander_readiness_enforce)
        # Drills page only their participants.
        notification_hooks.drill_recipients = services.drill_page_recipients
