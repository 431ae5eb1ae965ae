from django.apps import AppConfig


class EscalationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "incidents.escalation"
    label = "escalation"
    verbose_name = "Escalation"
