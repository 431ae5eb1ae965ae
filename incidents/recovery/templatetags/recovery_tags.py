"""`{% rpo_summary %}`: each data class's recovery point at a glance, for pages of other apps
(the health page) that should show it without their views knowing about backups."""

from __future__ import annotations

from django import template

from incidents.recovery import selectors

register = template.Library()


@register.inclusion_tag("recovery/_rpo_summary.html", takes_context=True)
def rpo_summary(context) -> dict:
    return {"classes": selectors.rpo_classes(), "perms": context.get("perms")}
