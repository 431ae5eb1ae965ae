"""Checklists as data: templates seeded from the procedures, copied onto an incident by phase."""

from django.conf import settings
from django.db import models

from .incident import Category, State


class ChecklistTemplate(models.Model):
    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    attach_on_state = models.CharField(
        max_length=20,
        choices=State.choices,
        help_text="Copied onto an incident when it enters this state.",
    )
    category = models.CharField(
        max_length=20,
        choices=Category.choices,
        blank=True,
        help_text="Only for incidents of this category. Blank: every incident.",
    )
    gates_containment = models.BooleanField(
        default=False,
        help_text="Every item must be ticked before the incident can be marked contained.",
    )
    order = models.PositiveSmallIntegerField(default=0)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name


class ChecklistTemplateItem(models.Model):
    template = models.ForeignKey(ChecklistTemplate, on_delete=models.CASCADE, related_name="items")
    text = models.CharField(max_length=300)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["template", "order", "id"]
        constraints = [
            # Items are copied onto incidents keyed by order: two items with one order would
            # make every incident entering this phase fail to save.
            models.UniqueConstraint(fields=["template", "order"], name="checklist_template_item_order_once"),
        ]

    def __str__(self) -> str:
        return self.text


class IncidentChecklistItem(models.Model):
    """A copy of a template item on one incident; the template may change later, this does not."""

    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="checklist_items")
    template = models.ForeignKey(ChecklistTemplate, on_delete=models.PROTECT, related_name="+")
    section = models.CharField(max_length=120)
    text = models.CharField(max_length=300)
    order = models.PositiveSmallIntegerField(default=0)
    gates_containment = models.BooleanField(default=False)
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["incident", "template__order", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "template", "order"], name="checklist_item_once"),
        ]

    def __str__(self) -> str:
        return self.text

    @property
    def done(self) -> bool:
        return self.done_at is not None
