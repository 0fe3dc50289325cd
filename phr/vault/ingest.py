"""The one ingest service: every way a file reaches the vault (browser upload, ZIP of a CD,
`import_dicom`, and later hospital push) goes through `ingest_file`.

The pipeline, one small step each:
  1. preflight: size and kind (by magic bytes, never by file name);
  2. parse the DICOM header safely (phr.vault.dicomfile: Part 10 only, bounded);
  3. normalise: zero the 128-byte preamble in place, hash the stored bytes;
  4. dedup: same SOP Instance UID and same hash is "already in your vault";
  5. store the blob under a key derived from owner + hash;
  6. index Study/Series/Instance in one transaction (phr.vault.indexing);
  7. on any failure after 5, remove the blob unless a row references it.
"""

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection

from phr.vault import blobs
from phr.vault.dicomfile import (
    RejectedFile,
    read_header,
    sniff_kind,
    zero_preamble_and_hash,
)
from phr.vault.indexing import db_uuid, index_instance, stored_hashes
from phr.vault.models import Document, Instance, Source, Study
from phr.vault.patient_label import label_mismatch_warning
from phr.vault.safezip import RejectedArchive, ZipLimits, open_cd_zip

log = logging.getLogger(__name__)

DOCUMENT_KINDS = {
    "pdf": ("application/pdf", ".pdf"),
    "jpeg": ("image/jpeg", ".jpg"),
    "png": ("image/png", ".png"),
}
HASH_CHUNK = 1024 * 1024


class Outcome:
    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    DOCUMENT = "document"
    SKIPPED = "skipped"
    REJECTED = "rejected"
    ERROR = "error"


@dataclass(frozen=True)
class Delivery:
    """Files a hospital deposited: they go to the owner's Inbox, labelled with the sender."""

    organisation: object  # phr.hospital.models.Organisation
    received_at: datetime
    # STOW-RS to /studies/{uid}: every instance must belong to that study.
    study_uid: str | None = None


class IngestFailure(Exception):
    """Storage or database failed part-way; nothing half-stored was kept. Safe to retry."""


@dataclass
class IngestResult:
    filename: str
    outcome: str
    message: str
    code: str = ""
    study: Study | None = None
    study_created: bool = False
    instance: Instance | None = None
    document: Document | None = None
    extra: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        data = {"file": self.filename, "outcome": self.outcome, "message": self.message}
        if self.code:
            data["code"] = self.code
        if self.study is not None:
            data["study"] = study_summary(self.study)
            data["study_created"] = self.study_created
        return data


def study_summary(study: Study) -> dict:
    # The counters were bumped in the database, by parallel uploads too: read back the totals.
    _refresh_counters(study)
    return {
        "id": str(study.id),
        "title": study.title,
        "date": study.study_date.isoformat() if study.study_date else None,
        "modalities": study.modalities,
        "series": study.num_series,
        "images": study.num_instances,
        "label_warning": label_mismatch_warning(study.owner, study),
    }


def _refresh_counters(study: Study) -> None:
    """refresh_from_db() for the four fields a summary shows, in raw SQL because it runs once
    per uploaded image and the ORM's query building costs ten times the query itself."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT num_series, num_instances, modalities, description FROM vault_study "
            "WHERE id = %s",
            [db_uuid(study.pk)],
        )
        row = cursor.fetchone()
    if row is not None:  # deleted meanwhile: the summary shows what we last knew
        study.num_series, study.num_instances, study.modalities, study.description = row


# --- entry point -------------------------------------------------------------------------------


def ingest_file(
    owner,
    fileobj,
    *,
    filename: str,
    source: str = Source.UPLOAD,
    attach_to: Study | None = None,
    delivery: Delivery | None = None,
) -> IngestResult:
    """Take one file into `owner`'s vault (or Inbox, for a hospital's `delivery`). `fileobj`
    must be a seekable, writable temp file of ours: the preamble is zeroed in place."""
    filename = display_name(filename)
    size = _size_of(fileobj)
    if size == 0:
        return _rejected(filename, RejectedFile("empty"))
    if size > settings.PHR_MAX_FILE_BYTES:
        return _rejected(filename, RejectedFile("too_large"))

    kind = sniff_kind(fileobj)
    if kind == "dicom":
        return _ingest_dicom(owner, fileobj, filename, size, source, delivery)
    if delivery is not None:
        # Hospitals send DICOM objects only; a report travels as an encapsulated PDF.
        return _rejected(filename, RejectedFile("not_dicom"))
    if kind in DOCUMENT_KINDS:
        return _ingest_document(owner, fileobj, filename, kind, source, attach_to)
    if filename.lower().endswith((".dcm", ".dicom")):
        return _rejected(filename, RejectedFile("not_dicom"))
    if kind == "zip":
        message = "A ZIP inside your ZIP isn't opened. Please unzip it and add what is inside."
        return IngestResult(filename, Outcome.SKIPPED, message, "nested_zip")
    return IngestResult(filename, Outcome.SKIPPED, _skip_reason(filename), "not_medical")


def display_name(filename: str) -> str:
    """The name shown back to the patient: the last path part, without control characters."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or "unnamed file"


def _skip_reason(filename: str) -> str:
    lowered = filename.lower()
    if lowered.endswith((".exe", ".dll", ".msi", ".bat", ".cmd", ".app", ".sh", ".jar")):
        return "A viewer program from the disc; you don't need it here."
    if lowered in {"autorun.inf", "desktop.ini", ".ds_store", "thumbs.db"}:
        return "A disc or system file; not needed."
    if lowered.endswith((".htm", ".html", ".css", ".js", ".xml", ".txt", ".ini", ".cfg", ".ico")):
        return "Part of the disc's viewer; not needed."
    return "Not a medical image or a report we can keep, so it was left out."


def _size_of(fileobj) -> int:
    fileobj.seek(0, os.SEEK_END)
    size = fileobj.tell()
    fileobj.seek(0)
    return size


def _rejected(filename: str, error: RejectedFile) -> IngestResult:
    return IngestResult(filename, Outcome.REJECTED, error.reason, error.code)


# --- DICOM ---------------------------------------------------------------------------------------


def _ingest_dicom(owner, fileobj, filename, size, source, delivery) -> IngestResult:
    try:
        header = read_header(fileobj, size, max_inflated_bytes=settings.PHR_MAX_INFLATED_BYTES)
    except RejectedFile as error:
        return _rejected(filename, error)
    if delivery and delivery.study_uid and header.study_instance_uid != delivery.study_uid:
        return IngestResult(
            filename,
            Outcome.REJECTED,
            "This image belongs to another study than the one it was sent to.",
            "study_mismatch",
            extra={"uids": (header.sop_class_uid or "", header.sop_instance_uid)},
        )
    if header.is_dicomdir:
        return IngestResult(
            filename,
            Outcome.SKIPPED,
            "The disc's table of contents (DICOMDIR). We read the images themselves, "
            "so it isn't needed.",
            "dicomdir",
        )

    sha256, size = zero_preamble_and_hash(fileobj)
    hashes_with_same_uid = stored_hashes(owner.pk, header.sop_instance_uid)
    if sha256 in hashes_with_same_uid:
        return _duplicate(
            filename,
            Instance.objects.select_related("series__study").get(pk=hashes_with_same_uid[sha256]),
        )
    is_conflict = bool(hashes_with_same_uid)

    key, wrote = _store_blob(blobs.instance_key(owner.pk, sha256), fileobj, size)
    try:
        instance, study_created = index_instance(
            owner, header, sha256, size, key, source, is_conflict, delivery
        )
    except IntegrityError:
        # Another upload of the very same file won the race: report it as already stored.
        _forget_blob(key, wrote)
        existing = (
            Instance.objects.filter(
                owner=owner, sop_instance_uid=header.sop_instance_uid, sha256=sha256
            )
            .select_related("series__study")
            .first()
        )
        if existing:
            return _duplicate(filename, existing)
        raise IngestFailure("the index refused the new rows") from None
    except Exception as error:
        _forget_blob(key, wrote)
        raise IngestFailure(str(error)) from error

    if is_conflict:
        message = (
            "Stored, but another image in your vault has the same ID with different content. "
            "Both are kept."
        )
        return IngestResult(
            filename,
            Outcome.CONFLICT,
            message,
            "uid_conflict",
            instance.series.study,
            study_created,
            instance,
        )
    return IngestResult(
        filename, Outcome.STORED, "Stored.", "", instance.series.study, study_created, instance
    )


def _duplicate(filename: str, existing: Instance) -> IngestResult:
    return IngestResult(
        filename,
        Outcome.DUPLICATE,
        "Already in your vault.",
        "duplicate",
        existing.series.study,
        False,
        existing,
    )


def _store_blob(key: str, fileobj, size: int) -> tuple[str, bool]:
    try:
        return blobs.store(key, fileobj, size)
    except Exception as error:
        _remove_partial_blob(key, size)
        raise IngestFailure(f"storage refused the file: {error}") from error


def _remove_partial_blob(key: str, size: int) -> None:
    """The file system writes in place: a save that fails part-way (disk full, a file-size
    limit) leaves the first bytes under the key. Bytes of the wrong length are never valid
    content for a hash-named key, so they go at once rather than waiting for check_vault."""
    try:
        if default_storage.exists(key) and default_storage.size(key) != size:
            blobs.delete_if_unreferenced(key)
    except Exception:
        log.exception("could not remove the partial blob %s", key)


def _forget_blob(key: str, wrote: bool) -> None:
    """Undo step 5 after a failed step 6; never remove bytes that a row still points at."""
    if not wrote:
        return
    try:
        blobs.delete_if_unreferenced(key)
    except Exception:
        # The checker (check_vault) reports and removes what we could not remove here.
        log.exception("could not remove blob %s after a failed ingest", key)


# --- documents -----------------------------------------------------------------------------------


def _ingest_document(owner, fileobj, filename, kind, source, attach_to) -> IngestResult:
    content_type, extension = DOCUMENT_KINDS[kind]
    sha256, size = _hash(fileobj)
    existing = Document.objects.filter(owner=owner, sha256=sha256).first()
    if existing:
        return IngestResult(
            filename, Outcome.DUPLICATE, "Already in your vault.", "duplicate", document=existing
        )

    key, wrote = _store_blob(blobs.document_key(owner.pk, sha256, extension), fileobj, size)
    try:
        document = Document.objects.create(
            owner=owner,
            study=attach_to,
            filename=filename,
            content_type=content_type,
            size=size,
            sha256=sha256,
            storage_key=key,
            source=source,
        )
    except IntegrityError:
        _forget_blob(key, wrote)
        existing = Document.objects.filter(owner=owner, sha256=sha256).first()
        if existing:
            return IngestResult(
                filename,
                Outcome.DUPLICATE,
                "Already in your vault.",
                "duplicate",
                document=existing,
            )
        raise IngestFailure("the index refused the new document") from None
    except Exception as error:
        _forget_blob(key, wrote)
        raise IngestFailure(str(error)) from error
    kind_name = "report" if kind == "pdf" else "picture"
    return IngestResult(
        filename,
        Outcome.DOCUMENT,
        f"Kept as a {kind_name} in your documents.",
        "",
        document=document,
    )


def _hash(fileobj) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    fileobj.seek(0)
    while chunk := fileobj.read(HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    fileobj.seek(0)
    return digest.hexdigest(), size


# --- ZIP of a CD ---------------------------------------------------------------------------------


def ingest_zip(
    owner, zipfile, *, filename: str, source: str = Source.UPLOAD, attach_to: Study | None = None
):
    """Yield one IngestResult per file of a CD's ZIP, each through `ingest_file`.

    The whole central directory is checked before anything is stored (traversal, symlinks,
    overlapping entries, entry count); unpacked bytes are counted as they are read, so a ZIP
    whose headers lie stops at the first entry that inflates past its limits.
    """
    try:
        archive = open_cd_zip(zipfile, _zip_limits())
    except RejectedArchive as error:
        yield IngestResult(filename, Outcome.REJECTED, error.reason, error.code)
        return
    with archive:
        for entry in archive:
            try:
                extracted = archive.extract_to_tempfile(entry, settings.FILE_UPLOAD_TEMP_DIR)
            except RejectedArchive as error:
                yield IngestResult(entry.name, Outcome.REJECTED, error.reason, error.code)
                return
            with extracted:
                yield ingest_file(
                    owner, extracted, filename=entry.name, source=source, attach_to=attach_to
                )


def _zip_limits() -> ZipLimits:
    return ZipLimits(
        max_entries=settings.PHR_MAX_ZIP_ENTRIES,
        max_total_bytes=settings.PHR_MAX_ZIP_BYTES,
        max_entry_bytes=settings.PHR_MAX_FILE_BYTES,
    )
