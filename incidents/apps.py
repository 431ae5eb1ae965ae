from django.apps import AppConfig
from django.db.models.signals import post_migrate


class IncidentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "incidents"
    verbose_name = "Incidents"

    def ready(self) -> None:
        from incidents.roles import ensure_role_groups

        # Permissions only exist after post_migrate creates them, so the role groups are
        # (re)synchronised there rather than in a data migration.
        post_migrate.connect(ensure_role_groups, dispatch_uid="incidents.ensure_role_groups")
