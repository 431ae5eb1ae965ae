"""Evidence files: which are taken, each refusal word for word, and what is stored and recorded."""

from __future__ import annotations

import hashlib
import mimetypes

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from incidents import services
from incidents.models import EvidenceAttachment, IncidentChecklistItem, PortalAction, TimelineEntry
from tests.factories import display_name, open_incident

pytestmark = pytest.mark.django_db

ACCEPTED = ", ".join(
    [".csv", ".gif", ".gz", ".har", ".jpeg", ".jpg", ".json", ".log", ".pdf", ".png"]
    + [".sql", ".tar", ".tgz", ".txt", ".webp", ".xml", ".yaml", ".yml", ".zip"]
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


def upload(name: str, content: bytes = b"03:01 circuit breaker timeout\n") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


def refusal(uploaded) -> str:
    with pytest.raises(ValidationError) as refused:
        services.evidence_validate(uploaded)
    return refused.value.message_dict["file"][0]


@pytest.mark.parametrize("name", ["agent.log", "AGENT.LOG", "orders.csv", "capture.har", "run.tar", "notes.yml"])
def test_text_and_archive_types_are_taken(name):
    services.evidence_validate(upload(name))


@pytest.mark.parametrize(("name", "shown"), [("tool.exe", ".exe"), ("log.txt.sh", ".sh"), ("README", "none")])
def test_other_types_are_refused_naming_the_type_and_what_is_accepted(name, shown):
    assert refusal(upload(name)) == f"Files of type “{shown}” are not accepted. Accepted: {ACCEPTED}."


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("screen.png", PNG),
        ("screen.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 12),
        ("screen.gif", b"GIF87a" + b"\x00" * 10),
        ("screen.gif", b"GIF89a" + b"\x00" * 10),
        ("report.pdf", b"%PDF-1.7\n"),
        ("logs.tgz", b"\x1f\x8b\x08\x00"),
        ("logs.zip", b"PK\x03\x04" + b"\x00" * 12),
        ("empty-archive.zip", b"PK\x05\x06" + b"\x00" * 18),
    ],
)
def test_a_binary_type_is_taken_when_its_content_is_of_that_type(name, content):
    services.evidence_validate(upload(name, content))


@pytest.mark.parametrize(("name", "ext"), [("screen.png", ".png"), ("report.pdf", ".pdf"), ("logs.gz", ".gz")])
def test_a_renamed_file_is_refused_by_its_content(name, ext):
    assert refusal(upload(name, b"MZ\x90\x00 a renamed executable")) == f"The file's content is not a {ext} file."


def test_the_size_limit_takes_the_limit_and_refuses_one_byte_more(settings):
    settings.EVIDENCE_MAX_BYTES = 2 * 1048576
    services.evidence_validate(upload("big.log", b"x" * (2 * 1048576)))
    assert refusal(upload("big.log", b"x" * (2 * 1048576 + 1))) == "The file is 2.0 MB; the limit is 2 MB."
    assert refusal(upload("bigger.log", b"x" * (3 * 1048576 - 60000))) == "The file is 2.9 MB; the limit is 2 MB."


def test_sizes_are_shown_in_mebibytes_rounded(settings):
    settings.EVIDENCE_MAX_BYTES = 2 * 1048576
    # 2.05 MiB and a byte: 2.1 when divided by 1,048,576, 2.0 by anything larger.
    assert refusal(upload("big.log", b"x" * 2149581)) == "The file is 2.1 MB; the limit is 2 MB."
    settings.EVIDENCE_MAX_BYTES = 2621441  # 2.5 MiB and a byte: shown as 3 MB
    assert refusal(upload("big.log", b"x" * 2621442)) == "The file is 2.5 MB; the limit is 3 MB."


def test_an_empty_file_is_refused():
    assert refusal(upload("agent.log", b"")) == "The file is empty."
    services.evidence_validate(upload("agent.log", b"x"))


def test_an_attached_file_is_stored_whole_with_its_digest_and_recorded(engineer):
    incident = open_incident(reported_by=engineer, level=2)
    attachment = services.evidence_attach(
        incident=incident, uploaded=upload("screen.png", PNG), user=engineer, description="  Before the restart  "
    )
    stored = EvidenceAttachment.objects.get(pk=attachment.pk)
    digest = hashlib.sha256(PNG).hexdigest()
    assert (stored.original_name, stored.content_type, stored.size_bytes, stored.sha256) == (
        "screen.png",
        "image/png",
        len(PNG),
        digest,
    )
    assert (stored.description, stored.uploaded_by, stored.incident) == ("Before the restart", engineer, incident)
    with stored.file.open("rb") as f:
        assert f.read() == PNG, "the check of the first bytes must not cost the stored file its start"
    entry = incident.timeline.order_by("-id").first()
    assert (entry.kind, entry.owner) == (TimelineEntry.Kind.EVIDENCE, engineer)
    assert entry.action == f"Evidence added: screen.png (SHA-256 {digest[:12]}…)"
    assert entry.data == {"evidence": stored.pk, "sha256": digest}
    who = display_name(engineer)
    ticked = IncidentChecklistItem.objects.filter(incident=incident, action_key=PortalAction.EVIDENCE_ATTACHED)
    assert ticked and {item.ticked_by_portal_when for item in ticked} == {f"{who} attached screen.png"}
    assert all(item.done_by == engineer for item in ticked)


def test_a_file_of_a_type_the_system_cannot_name_is_stored_as_bytes(engineer, monkeypatch):
    monkeypatch.setattr(mimetypes, "guess_type", lambda name: (None, None))
    incident = open_incident(reported_by=engineer)
    attachment = services.evidence_attach(incident=incident, uploaded=upload("capture.har"), user=engineer)
    stored = EvidenceAttachment.objects.get(pk=attachment.pk)
    assert (stored.content_type, stored.description) == ("application/octet-stream", "")


def test_a_long_file_name_is_kept_to_200_characters(engineer):
    incident = open_incident(reported_by=engineer)
    name = "n" * 197 + "x.log"
    attachment = services.evidence_attach(incident=incident, uploaded=upload(name), user=engineer)
    assert attachment.original_name == name[:200]
    assert EvidenceAttachment.objects.get(pk=attachment.pk).original_name == "n" * 197 + "x.l"


def test_a_refused_file_stores_and_records_nothing(engineer):
    incident = open_incident(reported_by=engineer)
    entries = incident.timeline.count()
    with pytest.raises(ValidationError):
        services.evidence_attach(incident=incident, uploaded=upload("tool.exe"), user=engineer)
    assert not EvidenceAttachment.objects.exists() and incident.timeline.count() == entries
