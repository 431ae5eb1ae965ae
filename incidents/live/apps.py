from django.apps import AppConfig


class LiveConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "incidents.live"
    label = "live"
    verbose_name = "Live pages"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from incidents.hooks import hooks
        from incidents.monitoring.models import HealthTarget

        from . import publish

        hooks.after_record.append(publish.on_timeline_entry)
        # A target's state is written by one save (the poller's state change, an admin edit);
        # monitoring has no hook list of its own, and this is the one place its page goes stale.
        post_save.connect(publish.on_health_target_saved, sender=HealthTarget, dispatch_uid="live-health")
