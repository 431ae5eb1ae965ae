from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "incidents.recovery"
    label = "recovery"
    verbose_name = "Backups and recovery points"

    def ready(self) -> None:
        from incidents.hooks import hooks

        from . import selectors

        hooks.incident_page_context.append(selectors.incident_page_context)
