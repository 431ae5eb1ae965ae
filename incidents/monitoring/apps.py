from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "incidents.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from incidents.hooks import hooks
        from incidents.monitoring import selectors

        # The incident page's halt, stop prompts and state captures.
        hooks.incident_page_context.append(selectors.incident_halt_context)
