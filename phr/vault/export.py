"""Studies as a standard DICOM media set in a ZIP, streamed while it is built.

What the ZIP holds (the layout a PACS or a desktop viewer imports from a CD):

    DICOM/ST000001/SE000001/IM000001   each file exactly as stored, byte for byte
    NOT_IN_DICOMDIR/ST000001/...        files a DICOMDIR can't list (phr.vault.dicomdir), if any
    DOCUMENTS/report.pdf                reports and pictures, under their own (cleaned) names
    DICOMDIR                            the index of the DICOM files
    README.txt                          what this is, for whoever opens the ZIP

Nothing is assembled in memory or on disk: zipfile writes into a sink that is emptied after every
chunk, and each blob is read from storage once, a chunk at a time. The DICOMDIR comes last because
its records need every file's header: we read each header as that file streams past, so the
first bytes leave at once and a 2,000-image CT is not read twice. A reader finds entries through
the ZIP's central directory, so their order doesn't matter.

The service knows nothing about requests or users: the caller decides what may be exported (the
patient's own download now, a doctor's share later) and hands over the studies and documents.
"""

import logging
import re
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.utils import timezone

from phr.vault.dicomdir import DicomdirBuilder, header_of, unlistable
from phr.vault.models import Document, Instance, Series, Study

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
DICOM_ROOT = "DICOM"
# Beside the DICOMDIR, for what it can't list: named so that whoever opens the ZIP sees why.
OUTSIDE_ROOT = "NOT_IN_DICOMDIR"
DOCUMENTS_ROOT = "DOCUMENTS"
# The extension each kept document gets (the first), and the others its name may already have.
DOCUMENT_EXTENSIONS = {
    "application/pdf": (".pdf",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/png": (".png",),
}


@dataclass
class _DicomFile:
    instance: Instance
    series: Series
    study: Study
    file_id: tuple[str, ...]  # e.g. ("DICOM", "ST000001", "SE000001", "IM000001")
    numbers: tuple[int, int, int]  # study, series, image: stand-ins for missing numbers
    outside: str | None = None  # why the DICOMDIR can't list it (then it lies in OUTSIDE_ROOT)

    @property
    def name(self) -> str:
        return "/".join(self.file_id)


class AccessEnded(Exception):
    """The right a download was started under ended while it streamed."""


class StudyArchive:
    """One export: `filename` for the download, iterate `chunks()` for the ZIP bytes.

    `still_allowed`, if given, is asked before each file: a doctor's download of a big study
    lasts minutes, and a share the patient revokes meanwhile stops it at the next file (raising
    AccessEnded, which cuts the connection: the doctor's browser reports a failed download
    rather than saving a ZIP that merely looks complete).
    """

    def __init__(
        self,
        studies: Iterable[Study],
        documents: Iterable[Document] = (),
        still_allowed: Callable[[], bool] | None = None,
    ):
        self.still_allowed = still_allowed
        self.studies = list(studies)
        self.documents = list(documents)
        self.files = _plan_dicom_files(self.studies)
        self.filename = archive_filename(self.studies)
        self.missing: list[str] = []  # blobs storage couldn't give us, told in the README
        # Small generated files to add, as (name, bytes): the full export's machine-readable
        # record (phr.rights.export). Written after the blobs, before the DICOMDIR.
        self.extra: list[tuple[str, bytes]] = []

    def chunks(self) -> Iterator[bytes]:
        sink = _Sink()
        archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        dicomdir = DicomdirBuilder()
        for entry in self.files:
            self._check_still_allowed()
            yield from self._write_dicom_file(archive, sink, dicomdir, entry)
        for name, document in zip(document_names(self.documents), self.documents, strict=True):
            self._check_still_allowed()
            yield from self._write_document(archive, sink, f"{DOCUMENTS_ROOT}/{name}", document)
        for name, data in self.extra:
            archive.writestr(_info(name, zipfile.ZIP_DEFLATED), data)
            yield sink.take()
        archive.writestr(_info("DICOMDIR", zipfile.ZIP_DEFLATED), dicomdir.to_bytes())
        archive.writestr(_info("README.txt", zipfile.ZIP_DEFLATED), self.readme().encode())
        archive.close()
        yield sink.take()

    def _check_still_allowed(self) -> None:
        if self.still_allowed is not None and not self.still_allowed():
            raise AccessEnded("access to the studies ended during the download")

    def _write_dicom_file(self, archive, sink, dicomdir, entry: _DicomFile) -> Iterator[bytes]:
        instance = entry.instance
        blob = _open_blob(instance.storage_key)
        if blob is None:
            self.missing.append(entry.name)
            return
        with blob:
            # Index first, while the file is open: a file we can't index still goes into the ZIP
            # (the bytes are what matter), described from what ingest recorded about it.
            if entry.outside is None:
                dicomdir.add(header_of(blob, entry), entry.file_id)
                blob.seek(0)
            info = _info(entry.name, zipfile.ZIP_STORED, size=instance.size)
            yield from _copy(blob, archive, info, sink)

    def _write_document(self, archive, sink, name: str, document: Document) -> Iterator[bytes]:
        blob = _open_blob(document.storage_key)
        if blob is None:
            self.missing.append(name)
            return
        with blob:
            yield from _copy(blob, archive, _info(name, zipfile.ZIP_DEFLATED, document.size), sink)

    def readme(self) -> str:
        missing = len(self.missing)
        written = len(self.files) + len(self.documents) - missing
        outside = [(entry.name, entry.outside) for entry in self.files if entry.outside]
        return render_readme(self.studies, written, self.missing, outside)


# --- planning --------------------------------------------------------------------------------


def _plan_dicom_files(studies: list[Study]) -> list[_DicomFile]:
    """File IDs valid for a DICOMDIR: at most 8 levels of at most 8 characters, A-Z 0-9 _.

    One file per SOP Instance UID is listed, the one the vault kept first; a later file with
    the same UID and other bytes (a conflict ingest kept) and a file whose IDs aren't UIDs go
    beside the DICOMDIR, under the same numbers."""
    files = []
    for study_no, study in enumerate(studies, start=1):
        for series_no, series in enumerate(study.series.order_by("number", "created_at"), 1):
            instances = series.instances.order_by("instance_number", "slice_position", "created_at")
            for image_no, instance in enumerate(instances, start=1):
                numbers = (study_no, series_no, image_no)
                names = (f"ST{study_no:06d}", f"SE{series_no:06d}", f"IM{image_no:06d}")
                outside = unlistable(instance, series, study)
                root = OUTSIDE_ROOT if outside else DICOM_ROOT
                files.append(_DicomFile(instance, series, study, (root, *names), numbers, outside))
    _move_second_copies_outside(files)
    return files


def _move_second_copies_outside(files: list[_DicomFile]) -> None:
    first: dict[str, _DicomFile] = {}
    for entry in sorted(files, key=lambda e: (e.instance.created_at, e.instance.pk)):
        if entry.outside:
            continue
        listed = first.setdefault(entry.instance.sop_instance_uid, entry)
        if listed is not entry:
            entry.outside = f"the same image ID (SOP Instance UID) as {listed.name}, other bytes"
            entry.file_id = (OUTSIDE_ROOT, *entry.file_id[1:])


def archive_filename(studies: list[Study]) -> str:
    """ASCII, and never the patient's name: '2024-03-12-CT.zip', '2024-03-12-3-studies.zip'."""
    dates = sorted(study.study_date for study in studies if study.study_date)
    day = dates[-1].isoformat() if dates else "undated"
    if len(studies) == 1:
        modalities = re.sub(r"[^A-Z0-9]+", "-", studies[0].modalities.upper()).strip("-")
        return f"{day}-{modalities or 'study'}.zip"
    return f"{day}-{len(studies)}-studies.zip"


def document_names(documents: list[Document]) -> list[str]:
    """Safe, distinct names: plain ASCII, no folders, the right extension, 'name (2).pdf'."""
    names, taken = [], set()
    for document in documents:
        stem, extension = _clean_name(document)
        name, copy = f"{stem}{extension}", 1
        while name.lower() in taken:
            copy += 1
            name = f"{stem} ({copy}){extension}"
        taken.add(name.lower())
        names.append(name)
    return names


def _clean_name(document: Document) -> tuple[str, str]:
    name = re.split(r"[\\/]", document.filename)[-1]
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9 ._()-]+", "_", name).strip(" ._")
    known = DOCUMENT_EXTENSIONS.get(document.content_type, ())
    stem, dot, given = name.rpartition(".")
    given = f".{given.lower()}" if dot else ""
    if given and (given in known or not known):
        return (stem[:100].strip(" ._") or "document"), given
    return (name[:100].strip(" ._") or "document"), (known[0] if known else "")


# --- streaming -------------------------------------------------------------------------------


class _Sink:
    """A write-only, unseekable file for zipfile; keeps what was written until it is taken.

    Without tell() and seek() zipfile streams: sizes and CRCs go in a data descriptor after
    each entry instead of being patched into the header afterwards.
    """

    def __init__(self):
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        parts, self._parts = self._parts, []
        return parts[0] if len(parts) == 1 else b"".join(parts)


def _info(name: str, compression: int, size: int = 0) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    # Known up front, so zipfile picks ZIP64 headers for big files: on a stream it can't go
    # back and rewrite a header once the file turns out larger than 4 GB.
    info.file_size = size
    return info


def _copy(blob, archive: zipfile.ZipFile, info: zipfile.ZipInfo, sink: _Sink) -> Iterator[bytes]:
    with archive.open(info, "w") as target:
        while chunk := blob.read(CHUNK):
            target.write(chunk)
            if data := sink.take():  # a compressor may hold a chunk back
                yield data
    yield sink.take()  # the rest, and the data descriptor with the entry's size and CRC


def _open_blob(key: str):
    """The blob, open at its start, or None when storage can't give it (check_vault reports
    rows without blobs; the export carries on and says so in the README)."""
    try:
        blob = default_storage.open(key, "rb")
    except Exception:
        log.exception("export: blob %s could not be opened", key)
        return None
    try:
        # S3 opens lazily: make a missing object fail here, not halfway through a ZIP entry.
        blob.read(1)
        blob.seek(0)
    except Exception:
        log.exception("export: blob %s could not be read", key)
        blob.close()
        return None
    return blob


# --- README ----------------------------------------------------------------------------------


def render_readme(studies, file_count: int, missing: list[str], outside=()) -> str:
    lines = [
        f"Medical images exported on {timezone.localdate():%d %B %Y} ({file_count} files).",
        "",
        "What is in this folder",
        "  DICOMDIR    the index that medical viewers and hospital systems (PACS) read first",
        "  DICOM/      the images, exactly as they are kept in the vault",
        f"  {OUTSIDE_ROOT}/  images the DICOMDIR can't list, if there are any (see below)",
        "  DOCUMENTS/  reports and pictures that came with them, if there are any",
    ]
    lines += ["", "Studies"]
    for study in studies:
        day = study.study_date.strftime("%d %b %Y") if study.study_date else "date unknown"
        lines.append(
            f"  - {day}: {study.title} ({study.num_series} series, {study.num_instances} images)"
        )
    lines += [
        "",
        "How to open it",
        "  Unzip it first. Then open the unzipped folder, or its DICOMDIR file, with a DICOM",
        "  viewer (for example Horos, OsiriX, RadiAnt, MicroDicom or Weasis). A hospital can",
        "  import the same folder into its PACS. The image files have no extension: that is",
        "  how the DICOM standard names files on a disc.",
    ]
    if outside:
        lines += [
            "",
            f"{OUTSIDE_ROOT}/ holds {len(outside)} image file(s) that the DICOMDIR can't list,",
            "exactly as they are kept in the vault; a viewer opens them one by one:",
            *(f"  {name}: {reason}" for name, reason in outside),
        ]
    if missing:
        lines += [
            "",
            f"{len(missing)} file(s) could not be read from storage and are not included:",
            *(f"  {name}" for name in missing),
        ]
    return "\n".join(lines) + "\n"
