from django.apps import AppConfig


class StatusConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "incidents.status"
    label = "status"
    verbose_name = "Status page"

    def ready(self) -> None:
        from incidents.escalation.hooks import escalation_hooks
        from incidents.notifications.hooks import notification_hooks
        from incidents.status import services

        # Subscribers' webhooks are signed with their own key; their mails carry List-Unsubscribe.
        notification_hooks.webhook_request.append(services.webhook_request)
        notification_hooks.email_headers.append(services.email_headers)
        # The composer's "also publish" box for users' updates goes through this app's services.
        escalation_hooks.publish_public.append(services.public_publish_status_update)
        escalation_hooks.may_publish_public.append(services.may_publish)
