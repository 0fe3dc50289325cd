"""Inspect one uploaded file: what kind it is and, for DICOM, a header read that is safe.

Uploads are treated as hostile. No declared length is trusted: before pydicom parses anything,
every element length is walked against the real file size (reading tags and lengths, never
values), and pydicom then reads through a window that can't ask for more bytes than the file
holds. Deflated files are inflated by us in bounded steps into a spooled temporary file,
because pydicom would inflate the whole stream into memory at once.
"""

from __future__ import annotations

import hashlib
import struct
import tempfile
import warnings
import zlib
from typing import BinaryIO

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from phr.vault.dicomheader import (
    INDEXED_BY_TAG,
    REQUIRED,
    WANTED_TAGS,
    DicomHeader,
    as_uid,
    dataset_value,
    indexed_value,
)

DEFLATED_TS = "1.2.840.10008.1.2.1.99"
IMPLICIT_LE_TS = "1.2.840.10008.1.2"
EXPLICIT_BE_TS = "1.2.840.10008.1.2.2"
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

MAX_ELEMENTS = 500_000  # element headers per file: caps time (a big enhanced MR has ~200k)
MAX_DEPTH = 24  # sequence nesting; real files rarely go past 6 levels
DEFLATE_RATIO = 200  # inflated:compressed beyond which a deflated file is a bomb...
DEFLATE_RATIO_FLOOR = 8 * 1024 * 1024  # ...once past this size (small files vary widely)
CHUNK = 1024 * 1024
SPOOL_IN_MEMORY = 4 * 1024 * 1024
DEFER_SIZE = 4096  # no indexed value is legitimately this long; longer ones stay unread

_REASONS = {
    "empty": "This file is empty. Please copy it from the CD again and upload the new copy.",
    "not_dicom": "This isn't a DICOM image file. Please choose the image files from your CD "
    "(they are often in a folder called DICOM).",
    "truncated": "This file is damaged: it ends before the image data does. It may not have "
    "copied completely, so please copy it from the CD again and upload the new copy.",
    "bad_length": "This file is damaged: its contents don't add up, so we can't open it "
    "safely. Please try another copy, or ask the hospital for a new CD.",
    "too_large": "This file is larger than the vault accepts for a single file. Please ask the "
    "hospital for a copy of the study on a CD or as a ZIP of its separate image files.",
    "deflate_bomb": "This file unpacks into far more data than a medical image should, so we "
    "stopped reading it to keep your vault safe. Please ask the hospital for a new copy.",
    "too_complex": "This file is put together in an unusually complicated way, so we couldn't "
    "check it safely. Please ask the hospital for a new copy.",
    "unreadable": "We couldn't read this DICOM file. Please try another copy, or ask the "
    "hospital for a new CD.",
}
MISSING_IDS_REASON = (
    "This DICOM file is missing the identifiers that say which study and series it belongs "
    "to, so we can't file it. Please ask the hospital for a new copy."
)

_META_START = 132  # 128-byte preamble + b"DICM"
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_MAGIC = ((b"%PDF-", "pdf"), (b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"))
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # the second is an empty archive


class RejectedFile(Exception):
    """A file we won't store: `.reason` is for the patient, `.code` is for us."""

    def __init__(self, code: str, reason: str | None = None):
        self.code = code
        self.reason = reason or _REASONS.get(code, _REASONS["unreadable"])
        super().__init__(self.reason)


# -- Values: anything malformed becomes None rather than an error --------------------------


def sniff_kind(fileobj: BinaryIO) -> str:
    """'dicom', 'pdf', 'jpeg', 'png', 'zip' or 'other', by magic bytes (never by file name)."""
    head = _peek_start(fileobj, _META_START)
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), "other")


def is_preamble_clean(fileobj: BinaryIO) -> bool:
    """True when the 128-byte preamble is all zeros, so it can't smuggle an executable header."""
    return _peek_start(fileobj, 128) == bytes(128)


def zero_preamble_and_hash(fileobj: BinaryIO) -> tuple[str, int]:
    """Zero the preamble in place (CVE-2019-11687), then return (sha256 hex, size) in one pass.

    A free-form preamble lets one file be both a DICOM and, say, a Windows executable (`MZ`).
    Non-DICOM files are refused rather than have their first bytes overwritten.
    """
    if sniff_kind(fileobj) != "dicom":
        raise RejectedFile("not_dicom")
    fileobj.seek(0)
    fileobj.write(bytes(128))
    fileobj.flush()
    fileobj.seek(0)
    digest, size = hashlib.sha256(), 0
    while chunk := fileobj.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def read_header(fileobj: BinaryIO, size: int, *, max_inflated_bytes: int) -> DicomHeader:
    """Safely read the indexed header values of a DICOM Part 10 file, or raise RejectedFile."""
    if size <= 0:
        raise RejectedFile("empty")
    if sniff_kind(fileobj) != "dicom":
        raise RejectedFile("not_dicom")
    try:
        # pydicom warns about every oddity of real-world files; none of it helps the patient
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _read_checked_header(fileobj, size, max_inflated_bytes)
    except RejectedFile:
        raise
    except Exception as exc:  # whatever a hostile file trips inside pydicom is a rejection
        raise RejectedFile("unreadable") from exc


def _read_checked_header(fileobj: BinaryIO, size: int, max_inflated_bytes: int) -> DicomHeader:
    dataset_start = _LengthWalker(fileobj, size, little_endian=True).walk_meta(_META_START)
    meta = read_dataset(_Window(fileobj, size, _META_START), False, True, stop_when=_past_meta)
    syntax = as_uid(dataset_value(meta, "TransferSyntaxUID"))
    if as_uid(dataset_value(meta, "MediaStorageSOPClassUID")) == DICOMDIR_SOP_CLASS:
        # A disc's index: skipped whatever state its records are in (we read the images
        # themselves), so never called damaged.
        return _build_header(meta, Dataset(), syntax, False)
    if dataset_start >= size:
        raise RejectedFile("truncated")  # a header and nothing after it
    if syntax != DEFLATED_TS:
        # Every other syntax, compressed ones included, is explicit VR little endian; a missing
        # one is guessed from the first element by the walker and by pydicom alike.
        implicit, little = syntax == IMPLICIT_LE_TS, syntax != EXPLICIT_BE_TS
        dataset, has_pixels = _parse_dataset(fileobj, dataset_start, size, implicit, little)
        return _build_header(meta, dataset, syntax, has_pixels)
    limit = min(
        max_inflated_bytes, max(DEFLATE_RATIO_FLOOR, DEFLATE_RATIO * (size - dataset_start))
    )
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        inflated_size = _inflate(fileobj, dataset_start, size, spool, limit)
        dataset, has_pixels = _parse_dataset(spool, 0, inflated_size, False, True)
        return _build_header(meta, dataset, syntax, has_pixels)


def _past_meta(tag, vr, length) -> bool:
    return tag >> 16 != 2


def _at_pixels(tag, vr, length) -> bool:
    return tag in _PIXEL_TAGS


def _peek_start(fileobj: BinaryIO, length: int) -> bytes:
    position = fileobj.tell()
    fileobj.seek(0)
    head = fileobj.read(length)
    fileobj.seek(position)
    return head


def _parse_dataset(fp: BinaryIO, start: int, size: int, implicit: bool, little: bool):
    """Walk every length first; only then let pydicom read the tags we index."""
    walker = _LengthWalker(fp, size, little)
    walker.walk_dataset(start, size, implicit)
    window = _Window(fp, size, start)
    # stop_when is needed even with specific_tags: pydicom reads encapsulated pixels otherwise
    dataset = read_dataset(
        window,
        implicit,
        little,
        stop_when=_at_pixels,
        defer_size=DEFER_SIZE,
        specific_tags=WANTED_TAGS,
    )
    return dataset, walker.has_pixel_data


class _Window:
    """Reads from fp[:size] that never ask for more than what is left.

    A buffered file allocates the full requested size before reading, so one read(0xFFFFFFF0)
    driven by a lying length would allocate 4 GB even though the file holds a few KB.

    It keeps the position itself: pydicom asks for it at every element, and a real file's
    tell() (a received C-STORE dataset is one) costs ten times an in-memory one's.
    """

    def __init__(self, fp: BinaryIO, size: int, start: int):
        self._fp, self._size = fp, size
        self._position = fp.seek(start)

    def read(self, n: int = -1) -> bytes:
        left = max(0, self._size - self._position)
        data = self._fp.read(left if n is None or n < 0 else min(n, left))
        self._position += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self._position = self._fp.seek(offset, whence)
        return self._position

    def tell(self) -> int:
        return self._position


class _LengthWalker:
    """Checks every declared length fits inside its container, reading as pydicom does.

    Only tags and lengths are read, never values, so memory is constant and time is linear in
    the number of elements, which is capped.
    """

    def __init__(self, fp: BinaryIO, size: int, little_endian: bool):
        self._fp, self._size = fp, size
        self._order = "<" if little_endian else ">"
        self._elements = 0
        self.has_pixel_data = False

    def walk_meta(self, pos: int) -> int:
        """Walk group 0002 (always explicit VR little endian); return where the dataset starts."""
        while pos + 4 <= self._size and self._read(pos, 2, self._size) == b"\x02\x00":
            _, _, length, pos = self._header(pos, self._size, implicit=False)
            pos = self._skip(pos, length, self._size)
        return pos

    def walk_dataset(self, pos, limit, implicit, depth=0, delimited=False) -> int:
        implicit = self._first_element_implicit(pos, limit, implicit, depth)
        while pos < limit:
            tag, vr, length, pos = self._header(pos, limit, implicit)
            if tag == _ITEM_END:
                return pos  # pydicom ends a dataset here wherever it appears; so do we
            self.has_pixel_data |= depth == 0 and tag in _PIXEL_TAGS
            if length == _UNDEFINED:
                # UN of undefined length is a sequence (PS3.5 6.2.2); pixel data is fragments
                is_sequence = vr in (b"SQ", b"UN") or (vr is None and self._seq_next(tag, pos))
                pos = self._walk_items(pos, limit, implicit, depth + 1, True, is_sequence)
            elif vr == b"SQ" or (vr is None and _dictionary_vr(tag) == "SQ"):
                end = self._skip(pos, length, limit)
                self._walk_items(pos, end, implicit, depth + 1, False, True)
                pos = end
            else:
                pos = self._skip(pos, length, limit)
        if delimited:
            raise self._overrun(limit, 0)  # never closed
        return pos

    def _walk_items(self, pos, limit, implicit, depth, delimited, datasets) -> int:
        """Items of a sequence (each a dataset) or of encapsulated pixel data (raw bytes)."""
        if depth > MAX_DEPTH:
            raise RejectedFile("too_complex")
        while pos < limit:
            self._count()
            group, element, length = struct.unpack(self._order + "HHL", self._read(pos, 8, limit))
            pos, tag = pos + 8, group << 16 | element
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                raise RejectedFile("unreadable")
            if length == _UNDEFINED and datasets:
                pos = self.walk_dataset(pos, limit, implicit, depth, delimited=True)
            else:
                end = self._skip(pos, length, limit)
                if datasets:
                    self.walk_dataset(pos, end, implicit, depth)
                pos = end
        if delimited:
            raise self._overrun(limit, 0)  # never closed
        return pos

    def _header(self, pos, limit, implicit) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, length, value position) of the element at pos."""
        raw = self._read(pos, 8, limit)
        self._count()
        group, element = struct.unpack(self._order + "HH", raw[:4])
        tag, vr = group << 16 | element, raw[4:6]
        # pydicom reads an element whose VR is outside 'AA'..'ZZ' as implicit VR; so must we
        if implicit or group == 0xFFFE or not (b"AA" <= vr <= b"ZZ"):
            return tag, None, self._unpack("L", raw[4:]), pos + 8
        if vr in _LONG_VRS:
            return tag, vr, self._unpack("L", self._read(pos + 8, 4, limit)), pos + 12
        return tag, vr, self._unpack("H", raw[6:]), pos + 8

    def _first_element_implicit(self, pos, limit, implicit, depth) -> bool:
        """pydicom trusts the first element's VR bytes over the transfer syntax (some writers
        switch to implicit VR inside sequences), so the walk must too, to check what it reads."""
        if (depth > 0 and implicit) or pos + 6 > limit:
            return implicit
        vr = self._read(pos + 4, 2, limit)
        return not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B)

    def _seq_next(self, tag, pos) -> bool:
        """pydicom's test for an implicit VR undefined length: by the dictionary, or for an
        unknown tag, by whether an item comes next."""
        known = _dictionary_vr(tag)
        if known is not None:
            return known == "SQ"
        self._fp.seek(pos)
        return self._fp.read(4) == struct.pack(self._order + "HH", _ITEM >> 16, _ITEM & 0xFFFF)

    def _skip(self, pos, length, limit) -> int:
        if length == _UNDEFINED or pos + length > limit:
            raise self._overrun(limit, length)
        return pos + length

    def _read(self, pos, length, limit) -> bytes:
        if pos + length > limit:
            raise self._overrun(limit, length)
        self._fp.seek(pos)
        data = self._fp.read(length)
        if len(data) < length:
            raise RejectedFile("truncated")
        return data

    def _unpack(self, fmt, raw) -> int:
        return struct.unpack(self._order + fmt, raw)[0]

    def _count(self) -> None:
        self._elements += 1
        if self._elements > MAX_ELEMENTS:
            raise RejectedFile("too_complex")

    def _overrun(self, limit, length) -> RejectedFile:
        """Running off the end of the file is a cut-short copy, unless the length is absurd;
        running out of an enclosing item or sequence means the structure itself is wrong."""
        cut_short = limit == self._size and length < self._size
        return RejectedFile("truncated" if cut_short else "bad_length")


def _dictionary_vr(tag) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:  # private or unknown tag
        return None


def _inflate(fp, start, size, out, limit) -> int:
    """Inflate the raw deflate stream fp[start:size] into out, refusing to pass limit bytes.

    max_length caps each step's output, so one small compressed chunk can't expand into
    gigabytes in memory before it is counted.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    fp.seek(start)
    left, total, pending = size - start, 0, b""
    try:
        while not inflater.eof:
            if not pending and left > 0:
                pending = fp.read(min(CHUNK, left))
                left = left - len(pending) if pending else 0
            produced = inflater.decompress(pending, CHUNK)
            pending = inflater.unconsumed_tail
            if not produced and not pending and left <= 0:
                break  # no input left and nothing more comes out
            total += len(produced)
            if total > limit:
                raise RejectedFile("deflate_bomb")
            out.write(produced)
    except zlib.error as exc:
        raise RejectedFile("unreadable") from exc
    if not inflater.eof:
        raise RejectedFile("truncated")
    return total


def _build_header(meta, dataset, transfer_syntax, has_pixel_data) -> DicomHeader:
    found = {
        name: convert(indexed_value(dataset, tag, keyword, vr))
        for name, (tag, keyword, vr, convert) in INDEXED_BY_TAG.items()
    }
    media_class = as_uid(dataset_value(meta, "MediaStorageSOPClassUID"))
    found["number_of_frames"] = max(found["number_of_frames"] or 1, 1)
    found["sop_class_uid"] = found["sop_class_uid"] or media_class
    is_dicomdir = media_class == DICOMDIR_SOP_CLASS  # a CD's index: no study of its own
    if not is_dicomdir and not all(found[name] for name in REQUIRED):
        raise RejectedFile("unreadable", MISSING_IDS_REASON)
    return DicomHeader(
        **found,
        transfer_syntax_uid=transfer_syntax,
        has_pixel_data=has_pixel_data,
        is_dicomdir=is_dicomdir,
    )
