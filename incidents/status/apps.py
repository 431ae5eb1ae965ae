from django.apps import AppConfig


class StatusConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "incidents.status"
    label = "status"
    verbose_name = "Status page"
