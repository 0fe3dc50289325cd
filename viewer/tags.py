"""The DICOM header of one image as rows for the viewer's tag panel.

Read on demand only (the doctor opened the panel), with pydicom, which we already depend on:
it names every tag from the standard dictionary and decodes character sets properly, which a
hand-written table in the browser could not. Pixel data is never read.
"""

from django.core.files.storage import default_storage
from pydicom import dcmread
from pydicom.dataset import Dataset

from phr.vault.models import Instance

MAX_VALUE_CHARS = 200
MAX_SEQUENCE_ITEMS = 20
MAX_DEPTH = 4
# Values over this size are left on disk (pydicom reads them only if asked).
DEFER_SIZE = 4096


def header_rows(instance: Instance) -> list[dict]:
    with default_storage.open(instance.storage_key, "rb") as handle:
        dataset = dcmread(handle, stop_before_pixels=True, defer_size=DEFER_SIZE)
        rows = _rows(dataset.file_meta, 0) if dataset.file_meta else []
        rows += _rows(dataset, 0)
    return rows


def _rows(dataset: Dataset, depth: int) -> list[dict]:
    rows = []
    for element in dataset:
        row = {
            "tag": f"{element.tag.group:04X},{element.tag.element:04X}",
            "name": element.name,
            "vr": element.VR,
            "depth": depth,
        }
        if element.VR == "SQ":
            items = element.value or []
            row["value"] = f"{len(items)} item{'s' if len(items) != 1 else ''}"
            rows.append(row)
            if depth < MAX_DEPTH:
                for item in list(items)[:MAX_SEQUENCE_ITEMS]:
                    rows.extend(_rows(item, depth + 1))
            continue
        row["value"] = _value_text(element)
        rows.append(row)
    return rows


def _value_text(element) -> str:
    if element.VR in {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}:
        # Deferred values are not read: their length is what the header declared.
        length = element.value_length if element.is_buffered or element.value is None else None
        length = length if length is not None else len(element.value or b"")
        return f"(binary data, {length} bytes)"
    try:
        value = element.repval if element.VM > 8 else str(element.value)
    except Exception:  # a malformed value in an old file must not hide the whole header
        value = "(unreadable value)"
    if len(value) > MAX_VALUE_CHARS:
        value = value[: MAX_VALUE_CHARS - 1] + "…"
    return value
