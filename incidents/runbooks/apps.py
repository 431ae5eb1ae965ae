from django.apps import AppConfig


class RunbooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "incidents.runbooks"
    label = "runbooks"
    verbose_name = "Runbooks and knowledge base"

    def ready(self) -> None:
        from incidents.hooks import hooks
        from incidents.runbooks import selectors

        # The incident page's runbooks panel (its affected systems' runbooks first, its runs).
        hooks.incident_page_context.append(selectors.incident_page_context)
