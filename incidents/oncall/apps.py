from django.apps import AppConfig


class OncallConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "incidents.oncall"
    label = "oncall"
    verbose_name = "On-call"

    def ready(self) -> None:
        from incidents.hooks import hooks

        from . import selectors

        hooks.incident_page_context.append(selectors.incident_roles_on_call)
