"""What the vault indexes from a DICOM header, and how each value is made safe and plain.

Real-world files carry malformed values (dates like 2024-13-45, text in numeric fields, NaN):
every converter turns what it can't trust into None instead of failing the upload.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, time
from typing import Annotated, Any, get_type_hints

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.valuerep import DA, TM

MAX_TEXT = 256

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_INT = re.compile(r"[+-]?[0-9]{1,12}")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_MULTI = (MultiValue, list, tuple)
_INT_LIMIT = 2**31  # what a database integer column holds


def dataset_value(dataset, keyword) -> Any:
    """The element's value, or None when absent or too malformed for pydicom to convert."""
    try:
        return dataset.get(keyword)
    except Exception:  # a malformed value must not cost the patient the whole file
        return None


# Value representations whose bytes are plain ASCII whatever the file's character set.
_ASCII_VRS = frozenset({"AS", "CS", "DA", "DS", "IS", "TM", "UI"})


def indexed_value(dataset, tag, keyword, dictionary_vr) -> Any:
    """Like dataset_value, but reads ASCII and US values straight from the raw bytes.

    pydicom's general conversion costs ~15 us per element and a header has ~30 indexed ones,
    once per uploaded image; these VRs need no character set, so a decode and a split do.
    Text that may use the file's character set (names, descriptions) still goes through
    pydicom. Returns a str, a list of str for several values, or an int for US.
    """
    raw = dataset.get_item(tag, keep_deferred=True)
    if raw is None:
        return None
    if not isinstance(raw, RawDataElement):
        return dataset_value(dataset, keyword)  # already converted
    value = raw.value
    if value is None:
        return None  # longer than any indexed value can be: left unread (DEFER_SIZE)
    vr = raw.VR or dictionary_vr  # implicit VR files carry no VR
    if vr in _ASCII_VRS:
        parts = value.decode("ascii", "replace").rstrip("\x00 ").split("\\")
        return parts[0] if len(parts) == 1 else parts
    if vr == "US" and len(value) >= 2:
        return int.from_bytes(value[:2], "little" if raw.is_little_endian else "big")
    return dataset_value(dataset, keyword)


def _first(value):
    return (value[0] if len(value) else None) if isinstance(value, _MULTI) else value


def _text(value) -> str | None:
    if isinstance(value, _MULTI):
        value = "\\".join(str(part) for part in value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    # control characters (NUL above all) break databases and log lines, and mean nothing here
    text = _CONTROL.sub("", str(value)).strip() if value is not None else ""
    return text[:MAX_TEXT] or None


def _texts(value) -> tuple[str, ...] | None:
    texts = tuple(filter(None, map(_text, value if isinstance(value, _MULTI) else [value])))
    return texts or None


def as_uid(value) -> str | None:
    text = _text(_first(value))
    return text if text and len(text) <= 64 and _UID.fullmatch(text) else None


def _int(value) -> int | None:
    value = _first(value)
    if isinstance(value, float):  # pydicom keeps an IS like "1.5" as a float
        value = int(value) if value.is_integer() else None
    elif not isinstance(value, int) or isinstance(value, bool):
        text = _text(value)
        value = int(text) if text and _INT.fullmatch(text) else None
    # compare, don't use `in range(...)`: for int subclasses such as pydicom's IS, that scans
    return int(value) if value is not None and -_INT_LIMIT <= value < _INT_LIMIT else None


def _float(value) -> float | None:
    value = _first(value)
    if not isinstance(value, int | float) or isinstance(value, bool):
        text = _text(value)
        value = float(text) if text and _DECIMAL.fullmatch(text) else None
    return float(value) if value is not None and math.isfinite(value) else None


def _floats(count: int):
    def convert(value) -> tuple[float, ...] | None:
        numbers = tuple(map(_float, value)) if isinstance(value, _MULTI) else ()
        return numbers if len(numbers) == count and None not in numbers else None

    return convert


def _date(value) -> date | None:
    parsed = _parsed_by_pydicom(DA, _first(value))
    return date(parsed.year, parsed.month, parsed.day) if parsed else None


def _time(value) -> time | None:
    parsed = _parsed_by_pydicom(TM, _first(value))  # a leap second becomes :59
    return time(parsed.hour, parsed.minute, parsed.second, parsed.microsecond) if parsed else None


def _parsed_by_pydicom(kind, value):
    """pydicom's DA / TM parsing, with anything it can't parse (month 13, hour 25) as None."""
    try:
        return kind(value if isinstance(value, date | time) else _text(value) or "")
    except (ValueError, TypeError):
        return None


_Text = str | None
_Int = int | None
_Float = float | None
_Floats = tuple[float, ...] | None


@dataclass(frozen=True)
class DicomHeader:
    """What the vault indexes from one file. None means absent or too malformed to use.

    Each indexed field names its DICOM keyword and how its value is made safe and plain.
    """

    patient_name: Annotated[_Text, "PatientName", _text] = None
    patient_id: Annotated[_Text, "PatientID", _text] = None
    patient_birth_date: Annotated[date | None, "PatientBirthDate", _date] = None
    patient_sex: Annotated[_Text, "PatientSex", _text] = None
    study_instance_uid: Annotated[_Text, "StudyInstanceUID", as_uid] = None
    study_date: Annotated[date | None, "StudyDate", _date] = None
    study_time: Annotated[time | None, "StudyTime", _time] = None
    study_description: Annotated[_Text, "StudyDescription", _text] = None
    accession_number: Annotated[_Text, "AccessionNumber", _text] = None
    referring_physician_name: Annotated[_Text, "ReferringPhysicianName", _text] = None
    institution_name: Annotated[_Text, "InstitutionName", _text] = None
    modalities_in_study: Annotated[tuple[str, ...] | None, "ModalitiesInStudy", _texts] = None
    series_instance_uid: Annotated[_Text, "SeriesInstanceUID", as_uid] = None
    series_number: Annotated[_Int, "SeriesNumber", _int] = None
    modality: Annotated[_Text, "Modality", _text] = None
    series_description: Annotated[_Text, "SeriesDescription", _text] = None
    body_part_examined: Annotated[_Text, "BodyPartExamined", _text] = None
    sop_instance_uid: Annotated[_Text, "SOPInstanceUID", as_uid] = None
    sop_class_uid: Annotated[_Text, "SOPClassUID", as_uid] = None
    transfer_syntax_uid: _Text = None
    instance_number: Annotated[_Int, "InstanceNumber", _int] = None
    number_of_frames: Annotated[int, "NumberOfFrames", _int] = 1
    rows: Annotated[_Int, "Rows", _int] = None
    columns: Annotated[_Int, "Columns", _int] = None
    image_position_patient: Annotated[_Floats, "ImagePositionPatient", _floats(3)] = None
    image_orientation_patient: Annotated[_Floats, "ImageOrientationPatient", _floats(6)] = None
    slice_location: Annotated[_Float, "SliceLocation", _float] = None
    pixel_spacing: Annotated[_Floats, "PixelSpacing", _floats(2)] = None
    window_center: Annotated[_Float, "WindowCenter", _float] = None
    window_width: Annotated[_Float, "WindowWidth", _float] = None
    rescale_slope: Annotated[_Float, "RescaleSlope", _float] = None
    rescale_intercept: Annotated[_Float, "RescaleIntercept", _float] = None
    photometric_interpretation: Annotated[_Text, "PhotometricInterpretation", _text] = None
    bits_allocated: Annotated[_Int, "BitsAllocated", _int] = None
    has_pixel_data: bool = False
    is_dicomdir: bool = False


INDEXED = {  # field name -> (DICOM keyword, converter)
    name: hint.__metadata__
    for name, hint in get_type_hints(DicomHeader, include_extras=True).items()
    if hasattr(hint, "__metadata__")
}
WANTED_TAGS = [Tag(keyword) for keyword, _ in INDEXED.values()]
# field name -> (tag, keyword, dictionary VR, converter), for indexed_value
INDEXED_BY_TAG = {
    name: (Tag(keyword), keyword, dictionary_VR(keyword), convert)
    for name, (keyword, convert) in INDEXED.items()
}
REQUIRED = ("study_instance_uid", "series_instance_uid", "sop_instance_uid")
