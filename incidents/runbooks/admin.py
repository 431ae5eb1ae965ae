"""Read-only in the admin: revisions are written through the knowledge base's pages (proposal,
four-eyes approval), never edited."""

from django.contrib import admin

from incidents.admin import ReadOnlyAdmin
from incidents.runbooks.models import Runbook, RunbookRevision, RunbookRun


@admin.register(Runbook)
class RunbookAdmin(ReadOnlyAdmin):
    list_display = ("title", "procedure", "system", "current_revision")
    search_fields = ("title", "key")


@admin.register(RunbookRevision)
class RunbookRevisionAdmin(ReadOnlyAdmin):
    list_display = ("runbook", "number", "state", "author", "approved_by", "approved_at")
    list_filter = ("state",)


@admin.register(RunbookRun)
class RunbookRunAdmin(ReadOnlyAdmin):
    list_display = ("runbook", "incident", "revision", "started_by", "started_at")
