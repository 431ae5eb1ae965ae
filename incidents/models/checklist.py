"""Checklists as data: templates seeded from the procedures, copied onto an incident by phase."""

from django.conf import settings
from django.db import models

from .incident import Category, State


class PortalAction(models.TextChoices):
    """What the portal does itself, and so may tick on the checklist for the people doing it."""

    INCIDENT_LOGGED = "incident_logged", "The incident is logged (its ticket exists)"
    ACKNOWLEDGED = "acknowledged", "Someone acknowledged the incident"
    EMERGENCY_STOP = "emergency_stop", "An emergency stop was sent and the circuit breaker accepted it"
    EVIDENCE_ATTACHED = "evidence_attached", "Evidence was attached"
    STATUS_UPDATE_POSTED = "status_update_posted", "A status update was posted"
    COMMANDER_ASSIGNED = "commander_assigned", "An incident commander was assigned"


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
    # A key, not the item's text: an admin may reword an item without it ceasing to be ticked.
    action_key = models.CharField(
        "ticked by the portal when",
        max_length=30,
        choices=PortalAction.choices,
        blank=True,
        default="",
        db_default="",
        help_text="The portal ticks this item on an incident when it does this itself. Blank: only people tick it.",
    )

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
    # Copied from the template item with the text. db_default: rows bulk-loaded without these
    # columns (bench/pages.py's COPY) still get them.
    action_key = models.CharField(max_length=30, choices=PortalAction.choices, blank=True, default="", db_default="")
    # Set when the portal ticked the item: what it saw done, and by whom ("Priya Raman
    # acknowledged"); `done_by` is that person, if one did it. Empty for a person's tick.
    ticked_by_portal_when = models.CharField(max_length=300, blank=True, default="", db_default="")

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

    @property
    def ticked_by_portal(self) -> bool:
        return self.done and bool(self.ticked_by_portal_when)
