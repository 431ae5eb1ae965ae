"""Evidence attachments (the seed's "Preserve Evidence"): added, never replaced."""

from django.conf import settings
from django.db import models

from .timeline import AppendOnlyModel


def short_filename(filename: str, limit: int = 100) -> str:
    """Keep a client's file name within the file system's limits, extension intact."""
    stem, dot, ext = filename.rpartition(".")
    if not dot:
        return filename[:limit]
    return f"{stem[: limit - len(ext) - 1]}.{ext[:16]}"


def evidence_path(instance: "EvidenceAttachment", filename: str) -> str:
    # The hash prefix keeps two uploads with the same name apart; storage adds a suffix if a
    # byte-identical file is uploaded twice, so nothing is ever overwritten.
    return f"evidence/{instance.incident.reference}/{instance.sha256[:16]}-{short_filename(filename)}"


def obligation_evidence_path(instance, filename: str) -> str:
    # A regulatory obligation's submitted evidence (the escalation app's RegulatoryObligation).
    return f"regulatory/{instance.incident.reference}/{instance.category.key}-{short_filename(filename)}"


class EvidenceAttachment(AppendOnlyModel):
    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="evidence")
    file = models.FileField(upload_to=evidence_path, max_length=300)
    original_name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField("SHA-256", max_length=64, db_index=True)
    description = models.CharField(max_length=300, blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["uploaded_at", "id"]

    def __str__(self) -> str:
        return self.original_name
