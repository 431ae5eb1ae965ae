from django import template
from django.conf import settings
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html

register = template.Library()


@register.simple_tag(takes_context=True)
def live_body_attrs(context: template.Context) -> str:
    """The data-* attributes static/js/live.js reads from <body> (signed-in pages only)."""
    user = context.get("user")
    if user is None or not user.is_authenticated:
        return ""
    return format_html(
        'data-live-stream="{}" data-live-summary="{}" data-live-login="{}" data-live-poll="{}" data-live-sound="{}"',
        reverse("live:stream"),
        reverse("live:summary"),
        reverse("login"),
        settings.TMT_LIVE_POLL_SECONDS,
        static("sounds/alert.wav"),
    )
