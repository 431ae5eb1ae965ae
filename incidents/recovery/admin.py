"""Admin: what is backed up (edited), the runs and breaches (read-only: written by the services)."""

from __future__ import annotations

from django.contrib import admin

from incidents.admin import ReadOnlyAdmin

from .models import BackupArtefact, BackupDatabase, BackupFolder, BackupRun, RpoBreach


@admin.register(BackupDatabase)
class BackupDatabaseAdmin(admin.ModelAdmin):
    list_display = ["name", "system", "host", "port", "dbname", "user", "password_env", "enabled"]
    list_filter = ["enabled", "system"]
    fields = ["name", "system", "host", "port", "dbname", "user", "password_env", "enabled"]


@admin.register(BackupFolder)
class BackupFolderAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "path", "system", "enabled"]
    list_filter = ["kind", "enabled", "system"]


class BackupArtefactInline(admin.TabularInline):
    model = BackupArtefact
    fields = [
        "source_name",
        "state",
        "captured_at",
        "storage_name",
        "size_bytes",
        "sha256",
        "backup_s",
        "verify_s",
        "error",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(BackupRun)
class BackupRunAdmin(ReadOnlyAdmin):
    list_display = ["pk", "state", "trigger", "incident", "requested_by", "created_at", "finished_at", "location"]
    list_filter = ["state", "trigger"]
    inlines = [BackupArtefactInline]


@admin.register(RpoBreach)
class RpoBreachAdmin(ReadOnlyAdmin):
    list_display = ["rpo_class", "detected_at", "cleared_at", "incident", "detail"]
    list_filter = ["rpo_class"]
