from datetime import timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html

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


@register.filter(name="clock")
def clock_cell(clock) -> str:
    """A clock as static/js/clocks.js ticks it: done (in time or late), or counting down to its
    due time. A filter, not an include, because a list of incidents shows a clock per row and
    system, and an include costs its own template context each time; _clock.html is this."""
    if clock.due_at is None:
        return format_html('<span class="muted">—</span>')
    if clock.done_at:
        if clock.status == "met":
            return format_html(
                '<span class="clock clock-met" data-done="1" title="target {}">done in {}</span>',
                clock.target_label,
                duration_short(clock.elapsed),
            )
        return format_html(
            '<span class="clock clock-missed" data-done="1" title="target {}">done in {}, {} late</span>',
            clock.target_label,
            duration_short(clock.elapsed),
            duration_short(clock.late_by),
        )
    due = timezone.localtime(clock.due_at)
    words = "overdue by" if clock.status == "overdue" else "due in"
    return format_html(
        '<span class="clock clock-{}" data-due="{}" title="due {} {} (target {})">{} {}</span>',
        clock.status,
        due.isoformat(),
        due.strftime("%Y-%m-%d %H:%M:%S"),
        due.tzname() or "",
        clock.target_label,
        words,
        duration_short(clock.remaining),
    )
