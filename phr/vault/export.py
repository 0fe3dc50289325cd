"""Studies as a standard DICOM media set in a ZIP, streamed while it is built.

What the ZIP holds (the layout a PACS or a desktop viewer imports from a CD):

    DICOM/ST000001/SE000001/IM000001   each file exactly as stored, byte for byte
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
from pydicom.datadict import keyword_dict, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_partial
from pydicom.fileset import DIRECTORY_RECORDERS, FileSet, RecordNode
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from phr.vault.models import Document, Instance, Series, Study

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
DICOM_ROOT = "DICOM"
DOCUMENTS_ROOT = "DOCUMENTS"
# The File-set ID (CS, at most 16 characters) a PACS may show when it imports the set.
FILE_SET_ID = "PHR_EXPORT"
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
        self.files = list(_plan_dicom_files(self.studies))
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
            dicomdir.add(_header_of(blob, entry), entry.file_id)
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
        return render_readme(self.studies, written, self.missing)


# --- planning --------------------------------------------------------------------------------


def _plan_dicom_files(studies: list[Study]) -> Iterator[_DicomFile]:
    """File IDs valid for a DICOMDIR: at most 8 levels of at most 8 characters, A-Z 0-9 _."""
    for study_no, study in enumerate(studies, start=1):
        for series_no, series in enumerate(study.series.order_by("number", "created_at"), 1):
            instances = series.instances.order_by("instance_number", "slice_position", "created_at")
            for image_no, instance in enumerate(instances, start=1):
                file_id = (
                    DICOM_ROOT,
                    f"ST{study_no:06d}",
                    f"SE{series_no:06d}",
                    f"IM{image_no:06d}",
                )
                numbers = (study_no, series_no, image_no)
                yield _DicomFile(instance, series, study, file_id, numbers)


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


# --- DICOMDIR --------------------------------------------------------------------------------


def _record_tags() -> list[int]:
    """The elements pydicom's directory records are made of (read from its record functions,
    so a pydicom upgrade that adds one can't silently drop it), plus what picks the record type.
    """
    keywords = {"SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "EncapsulatedDocument"}
    for recorder in DIRECTORY_RECORDERS.values():
        code = recorder.__code__
        for name in (*code.co_names, *code.co_consts):
            names = name if isinstance(name, tuple) else (name,)  # ["A", "B"] is a tuple const
            keywords.update(n for n in names if isinstance(n, str) and n in keyword_dict)
    return sorted(tag_for_keyword(keyword) for keyword in keywords)


RECORD_TAGS = _record_tags()


def _before_bulk_data(tag, vr, length) -> bool:
    """Everything a record needs sits before group 5000 (curves, waveforms, overlays, pixels)."""
    return tag.group >= 0x5000


def _header_of(blob, entry: _DicomFile) -> Dataset:
    """The few header elements the directory records need, with any that a record requires but
    the file left blank filled in. Only this in-memory copy changes, never the stored bytes.

    Reading only those elements, and deferring big values (an encapsulated PDF), keeps memory
    at a few kilobytes per file whatever the file carries.
    """
    try:
        header = read_partial(
            blob, stop_when=_before_bulk_data, specific_tags=RECORD_TAGS, defer_size=1024
        )
    except Exception:  # ingest accepted the file; a parser quirk must not break the download
        log.warning("export: header of %s unreadable; indexed from the database", entry.name)
        header = Dataset()
    return _fill_required(header, entry)


def _fill_required(ds: Dataset, entry: _DicomFile) -> Dataset:
    """Directory records need values (PS3.3 F.5) that real files often leave empty, such as
    Study ID and Series Number; stand-ins are what DICOMDIR writers like dcmmkdir do too."""
    instance, series, study = entry.instance, entry.series, entry.study
    study_no, series_no, image_no = entry.numbers
    series_number = series_no if series.number is None else series.number
    instance_number = image_no if instance.instance_number is None else instance.instance_number
    study_date = study.study_date.strftime("%Y%m%d") if study.study_date else "19000101"
    study_time = study.study_time.strftime("%H%M%S") if study.study_time else "000000"
    stand_ins = {
        "SOPInstanceUID": instance.sop_instance_uid,
        "SOPClassUID": instance.sop_class_uid,
        "PatientID": study.patient_id or "UNKNOWN",
        "PatientName": study.patient_name,
        "StudyInstanceUID": study.study_instance_uid,
        "StudyDate": study_date,
        "StudyTime": study_time,
        "StudyID": str(study_no),
        "SeriesInstanceUID": series.series_instance_uid,
        "Modality": series.modality or "OT",
        "SeriesNumber": series_number,
        "InstanceNumber": instance_number,
        "ContentDate": ds.get("StudyDate") or study_date,
        "ContentTime": ds.get("StudyTime") or study_time,
    }
    for keyword, value in stand_ins.items():
        if keyword not in ds or ds[keyword].VM == 0:
            setattr(ds, keyword, value)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", ()):
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = instance.transfer_syntax_uid or ExplicitVRLittleEndian
    return ds


class DicomdirBuilder:
    """pydicom's FileSet, used for its directory records and its DICOMDIR encoder only.

    FileSet's public path doesn't fit a streamed export of stored bytes: `add()` saves a copy of
    every dataset to a staging folder and checks for duplicates with a scan that makes adding n
    files O(n^2) (about 30 s for 1,000 images, minutes for a big CT), and `write()` copies the
    staged copies into a folder. So we build the record tree ourselves, with pydicom's own
    record definitions and one dictionary lookup per level, and encode it with FileSet's writer.
    This leans on three private members (_recordify, _tree, _write_dicomdir): requirements pin
    pydicom, and tests/vault/test_export.py re-reads the result with the public FileSet API.
    """

    def __init__(self):
        self._fileset = FileSet()
        self._fileset.ID = FILE_SET_ID
        self._parents: dict[tuple, RecordNode] = {}

    def add(self, header: Dataset, file_id: tuple[str, ...]) -> None:
        try:
            records = list(self._fileset._recordify(header))
        except (ValueError, AttributeError, KeyError, TypeError):
            # A leaf type whose required values the file lacks (a half-filled SR): keep the
            # file findable under its study and series as a plain image record.
            log.warning(
                "export: %s indexed as IMAGE: its record type needs missing values", file_id
            )
            records = _image_records(self._fileset, header)
        records[-1].ReferencedFileID = list(file_id)
        parent: RecordNode = self._fileset._tree
        path: tuple = ()
        for record in records[:-1]:
            node = RecordNode(record)
            path = (*path, node.key)  # Patient ID, then Study and Series Instance UIDs
            if path not in self._parents:
                node.parent = parent
                self._parents[path] = node
            parent = self._parents[path]
        # Leaves are never merged: two stored files with one SOP Instance UID (a conflict the
        # vault keeps side by side) each get a record, so each is referenced.
        RecordNode(records[-1]).parent = parent

    def to_bytes(self) -> bytes:
        out = DicomBytesIO()
        self._fileset._write_dicomdir(out)
        return out.getvalue()


def _image_records(fileset: FileSet, header: Dataset) -> list[Dataset]:
    """PATIENT/STUDY/SERIES/IMAGE records for `header`, whatever its SOP class."""
    plain = Dataset()
    plain.file_meta = header.file_meta
    for keyword in (
        "SpecificCharacterSet", "PatientID", "PatientName", "StudyInstanceUID", "StudyDate",
        "StudyTime", "StudyID", "StudyDescription", "AccessionNumber", "SeriesInstanceUID",
        "Modality", "SeriesNumber", "InstanceNumber", "SOPInstanceUID",
    ):  # fmt: skip
        if keyword in header:
            setattr(plain, keyword, header[keyword].value)
    plain.SOPClassUID = SecondaryCaptureImageStorage  # pydicom picks the record type by class
    records = list(fileset._recordify(plain))
    records[-1].ReferencedSOPClassUIDInFile = header.SOPClassUID  # the file's real class
    return records


# --- README ----------------------------------------------------------------------------------


def render_readme(studies, file_count: int, missing: list[str]) -> str:
    lines = [
        f"Medical images exported on {timezone.localdate():%d %B %Y} ({file_count} files).",
        "",
        "What is in this folder",
        "  DICOMDIR    the index that medical viewers and hospital systems (PACS) read first",
        "  DICOM/      the images, exactly as they are kept in the vault",
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
    if missing:
        lines += [
            "",
            f"{len(missing)} file(s) could not be read from storage and are not included:",
            *(f"  {name}" for name in missing),
        ]
    return "\n".join(lines) + "\n"
