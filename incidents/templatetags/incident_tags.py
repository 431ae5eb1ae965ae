from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def duration_short(value: timedelta | None) -> str:
    """4m 12s, 2h 05m, 3d 4h: compact enough for a table cell."""
    if value is None:
        return ""
    seconds = int(abs(value.total_seconds()))
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


@register.filter
def person(user, empty: str = "—") -> str:
    """A person's full name, else their username; `empty` when there is nobody."""
    if user is None:
        return empty
    return user.get_full_name() or user.get_username()
