"""The DICOMDIR of an export: one directory record per file, built from the few header elements
the records need, read as each file streams into the ZIP (phr.vault.export).

A record holds only the keys PS3.3 Annex F lists for its type, in valid VR form (dicom3tools'
dciodvfy checks it in tests/vault/test_dicomdir.py). Files keep their bytes: only the in-memory
copy of a header is cleaned. Files a DICOMDIR can't list (a second file with the same SOP
Instance UID, IDs that aren't UIDs) go beside it; `unlistable` says which and why.
"""

import logging
import re
from datetime import datetime

from pydicom.datadict import keyword_dict, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_partial
from pydicom.fileset import DIRECTORY_RECORDERS, FileSet, RecordNode
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

log = logging.getLogger(__name__)

# The File-set ID (CS, at most 16 characters) a PACS may show when it imports the set.
FILE_SET_ID = "PHR_EXPORT"

# PS3.5 9.1: digits and dots, no leading zeros in a component, at most 64 characters; and a
# root under ISO or ITU-T (PS3.5 B.1), as dciodvfy requires.
_UID = re.compile(r"[012]((\.0)|(\.[1-9][0-9]*))*")
# The identifiers that place a file in the directory's patient/study/series/instance tree.
_TREE_UIDS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid")

# A report's record summarises its title only: of the report's content, the items that modify
# the title (PS3.3 F.5.24 and F.5.27, SR and key object documents).
_TITLE_MODIFIER = "HAS CONCEPT MOD"


def is_uid(value: str | None) -> bool:
    return bool(value) and len(value) <= 64 and _UID.fullmatch(value) is not None


def unlistable(instance, series, study) -> str | None:
    """Why a file can't have a record (None when it can): its tree IDs must be valid UIDs."""
    ids = (study.study_instance_uid, series.series_instance_uid, instance.sop_instance_uid)
    if not all(is_uid(value) for value in ids):
        return "its IDs are not valid DICOM UIDs"
    return None


# --- reading a header --------------------------------------------------------------------------


def _record_tags() -> list[int]:
    """The elements pydicom's directory records are made of (read from its record functions,
    so a pydicom upgrade that adds one can't silently drop it), plus what picks the record type
    and where a report keeps its verification time."""
    keywords = {
        "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "EncapsulatedDocument",
        "VerifyingObserverSequence",
    }  # fmt: skip
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


def header_of(blob, entry) -> Dataset:
    """The header elements the directory records need, cleaned and with any that a record
    requires but the file left blank filled in. `entry` is the export's plan for the file.

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
    _clean(header)
    return _fill_required(header, entry)


# --- cleaning: the standard's forms ------------------------------------------------------------

_OLD_DATE = re.compile(r"(\d{4})\.(\d{2})\.(\d{2})")  # ACR-NEMA's yyyy.mm.dd (PS3.5, retired)
_DATE = re.compile(r"\d{8}")
_TIME = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")
_DATE_TIME = re.compile(r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?")


def standard_date(value: str) -> str | None:
    """A DA value in the standard's form (YYYYMMDD, a real day), or None."""
    value = (value or "").strip()
    if old := _OLD_DATE.fullmatch(value):
        value = "".join(old.groups())
    if not _DATE.fullmatch(value):
        return None
    try:
        datetime.strptime(value, "%Y%m%d")
    except ValueError:
        return None
    return value


def standard_time(value: str) -> str | None:
    """A TM value in the standard's form (HHMMSS.FFFFFF, any tail left off), or None.
    ACR-NEMA's HH:MM:SS loses its colons."""
    value = (value or "").strip()
    if re.fullmatch(r"\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?", value):
        value = value.replace(":", "")
    if not _TIME.fullmatch(value):
        return None
    hours, minutes, seconds = int(value[:2]), int(value[2:4] or 0), float(value[4:] or 0)
    return value if hours < 24 and minutes < 60 and seconds < 61 else None


def standard_date_time(value: str) -> str | None:
    value = (value or "").strip()
    if not _DATE_TIME.fullmatch(value):
        return None
    return value if standard_date((value[:8] + "0101")[:8]) else None


_STANDARD_FORM = {"DA": standard_date, "TM": standard_time, "DT": standard_date_time}


def _clean(header: Dataset) -> None:
    """Dates and times in the standard's form (a value that has none is left out, and a
    record that requires it gets a stand-in); a report's content cut to its title modifiers;
    a verified report's verification time where its record wants it."""
    for element in list(header):
        form = _STANDARD_FORM.get(element.VR)
        if form is None or element.VM == 0:
            continue
        value = form(str(element.value if element.VM == 1 else element.value[0]))
        if value is None:
            del header[element.tag]
        else:
            element.value = value
    if "ContentSequence" in header:
        modifiers = [
            item
            for item in header.ContentSequence
            if item.get("RelationshipType") == _TITLE_MODIFIER
        ]
        if modifiers:
            header.ContentSequence = modifiers
        else:
            del header.ContentSequence
    if header.get("VerificationFlag") == "VERIFIED" and "VerificationDateTime" not in header:
        times = [
            value
            for observer in header.get("VerifyingObserverSequence", [])
            if (value := standard_date_time(str(observer.get("VerificationDateTime") or "")))
        ]
        if times:
            header.VerificationDateTime = max(times)
    if "VerifyingObserverSequence" in header:
        del header.VerifyingObserverSequence  # no record type lists it


def _fill_required(ds: Dataset, entry) -> Dataset:
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


# --- the records -------------------------------------------------------------------------------


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
        # The export lists one file per SOP Instance UID (export.py plans the others beside).
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
