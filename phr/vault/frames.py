"""Single frames out of a stored file, as stored (PS3.18 WADO-RS frames): the bytes of a frame
of native pixel data, or a compressed frame's codestream, never decoded or converted.

The file is read up to its pixel data's header, then only what the frames need: an offset for
native pixel data, the fragments in turn for encapsulated data. A 2 GB multi-frame image costs
the frames asked for, not the file.
"""

import struct
import warnings
from dataclasses import dataclass

from django.core.files.storage import default_storage
from pydicom import dcmread
from pydicom.encaps import generate_frames

# The media type of each compressed transfer syntax's frames (PS3.18 Table 8.7.3-2).
COMPRESSED_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # little endian, not deflated
NATIVE_MEDIA_TYPE = "application/octet-stream"
PIXEL_DATA = 0x7FE00010


class FramesRefused(Exception):
    """The frames can't be given: `status` (HTTP) and a message that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Frames:
    transfer_syntax: str
    media_type: str  # of each frame as stored
    parts: list[bytes]


def media_type_of(transfer_syntax: str) -> str | None:
    if transfer_syntax in NATIVE:
        return NATIVE_MEDIA_TYPE
    return COMPRESSED_MEDIA_TYPES.get(transfer_syntax)


def read_frames(storage_key: str, transfer_syntax: str, numbers: list[int]) -> Frames:
    """Frames `numbers` (1-based, in that order) of the stored file."""
    media_type = media_type_of(transfer_syntax)
    if media_type is None:
        raise FramesRefused(
            406, "Frames of this file's transfer syntax are not offered: retrieve the instance."
        )
    with default_storage.open(storage_key, "rb") as blob, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = dcmread(blob, stop_before_pixels=True)
        count = int(header.get("NumberOfFrames") or 1)
        past = [n for n in numbers if not 1 <= n <= count]
        if past:
            message = f"This image has {count} frame(s): there is no frame {past[0]}."
            raise FramesRefused(404, message)
        if not _at_pixel_data(blob):
            raise FramesRefused(404, "This file has no pixel data.")
        if media_type == NATIVE_MEDIA_TYPE:
            parts = _native(blob, header, transfer_syntax, count, numbers)
        else:
            parts = _encapsulated(blob, count, numbers)
    return Frames(transfer_syntax, media_type, parts)


def _at_pixel_data(blob) -> bool:
    """Whether the next element is (7FE0,0010): dcmread(stop_before_pixels) stops there."""
    start = blob.tell()
    head = blob.read(4)
    blob.seek(start)
    if len(head) < 4:
        return False
    group, element = struct.unpack("<HH", head)
    return (group << 16 | element) == PIXEL_DATA


def _value_start(blob, implicit: bool) -> int:
    """Past the pixel data element's header: tag, (VR, reserved,) length."""
    blob.seek(blob.tell() + (8 if implicit else 12))
    return blob.tell()


def _native(blob, header, transfer_syntax: str, count: int, numbers: list[int]) -> list[bytes]:
    bits = int(header.get("BitsAllocated") or 0)
    samples = int(header.get("SamplesPerPixel") or 1)
    frame_bits = int(header.Rows) * int(header.Columns) * samples * bits
    if frame_bits % 8:
        raise FramesRefused(406, "Frames of 1-bit images that share bytes are not offered.")
    start = _value_start(blob, implicit=transfer_syntax == "1.2.840.10008.1.2")
    frame_bytes = frame_bits // 8
    parts = []
    for number in numbers:
        blob.seek(start + (number - 1) * frame_bytes)
        data = blob.read(frame_bytes)
        if len(data) != frame_bytes:
            raise FramesRefused(404, f"Frame {number} is cut short in this file.")
        parts.append(data)
    return parts


def _encapsulated(blob, count: int, numbers: list[int]) -> list[bytes]:
    _value_start(blob, implicit=False)
    wanted = set(numbers)
    found = {}
    for number, frame in enumerate(generate_frames(blob, number_of_frames=count), start=1):
        if number in wanted:
            found[number] = frame
        if len(found) == len(wanted):
            break
    return [found[n] for n in numbers]
