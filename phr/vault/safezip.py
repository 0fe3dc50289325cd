"""Read a ZIP of a hospital CD without trusting anything the archive says about itself.

The whole central directory is checked before a single byte is extracted. Each entry is then
inflated by us in bounded steps, counting the bytes that really come out, because the sizes
written in the headers are exactly what a zip bomb lies about.
"""

from __future__ import annotations

import itertools
import os
import re
import stat
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

GIB = 1024**3
CHUNK = 1024 * 1024
RATIO_FLOOR = 8 * 1024 * 1024  # small entries (a blank image) may compress extremely well

_STORED, _DEFLATED = 0, 8
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # local file header
_ZIP64_SENTINEL = 0xFFFFFFFF
_ENCRYPTED_FLAGS = 0x0001 | 0x0040  # traditional and strong encryption
_UTF8_FLAG = 0x0800
_DRIVE = re.compile(r"[A-Za-z]:")

_REASONS = {
    "not_zip": "This isn't a ZIP file we can open, or it is damaged. Please make the ZIP again "
    "from the CD and upload the new one.",
    "zip_slip": "This ZIP has file names that point outside the folder they should unpack "
    "into, so we didn't open it. Please make the ZIP again from the CD.",
    "symlink": "This ZIP contains shortcuts (links) to other files, which we don't accept. "
    "Please make the ZIP again from the CD's files only.",
    "overlap": "This ZIP is built in a way that is used to hide huge amounts of data, so we "
    "didn't open it. Please make the ZIP again from the CD.",
    "too_many_entries": "This ZIP holds more files than a CD should, so we didn't open it. "
    "Please upload the CD in smaller parts.",
    "encrypted": "This ZIP is password-protected, and we can't open protected files. Please "
    "make it again without a password.",
    "unsupported": "This ZIP uses a compression method we can't open. Please make it again "
    "with your computer's standard 'Compress' or 'Send to ZIP' option.",
    "zip_bomb": "This ZIP unpacks into far more data than a CD holds, so we stopped to keep "
    "your vault safe. Please make the ZIP again from the CD.",
}
SPLIT_REASON = (
    "This ZIP is split into several parts, which we can't open. Please make it again as a "
    "single ZIP file."
)
DAMAGED_ENTRY_REASON = (
    "A file inside this ZIP is damaged, so we stopped. Please make the ZIP again from the CD."
)


class RejectedArchive(Exception):
    """An archive (or one entry of it) we won't read: `.reason` for the patient, `.code` for us."""

    def __init__(self, code: str, reason: str | None = None):
        self.code = code
        self.reason = reason or _REASONS.get(code, _REASONS["not_zip"])
        super().__init__(self.reason)


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int = 20_000
    max_total_bytes: int = 8 * GIB
    max_entry_bytes: int = 2 * GIB
    max_ratio: int = 200


@dataclass(frozen=True)
class ZipEntry:
    """One file of the archive. `size` is what the archive declares; extraction checks it."""

    name: str
    size: int
    compressed_size: int = field(repr=False)
    method: int = field(repr=False)
    crc: int = field(repr=False)
    header_offset: int = field(repr=False)
    data_offset: int = field(repr=False)

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


class _Central(NamedTuple):
    """The parts of a central directory record we use, with zip64 sizes resolved."""

    raw_name: bytes
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    external_attr: int
    header_offset: int


def nested_zip_skipped(entry: ZipEntry) -> RejectedArchive:
    """What to record for an entry that is itself a ZIP: archives inside archives stay shut."""
    return RejectedArchive(
        "nested_zip",
        f'"{entry.name}" is a ZIP file inside your ZIP. We don\'t open ZIPs within ZIPs, so we '
        "skipped it; please unzip it and upload what is inside.",
    )


def open_cd_zip(
    source: str | os.PathLike[str] | BinaryIO, limits: ZipLimits | None = None
) -> CdZip:
    """Open and fully validate a CD archive, or raise RejectedArchive before extracting anything.

    `source` is a path (the CdZip then owns the file) or a seekable binary file (left open).
    """
    limits = limits or ZipLimits()
    owned = not hasattr(source, "read")
    fp = open(source, "rb") if owned else source  # noqa: SIM115 -- the CdZip closes it
    try:
        entries = _validated_entries(fp, limits)
    except BaseException:
        if owned:
            fp.close()
        raise
    return CdZip(fp, [entry for entry in entries if not entry.is_dir], limits, owned)


class CdZip:
    """A validated archive. Iterate for its files; extract each into a temp file."""

    def __init__(self, fp: BinaryIO, entries: list[ZipEntry], limits: ZipLimits, owned: bool):
        self._fp, self._entries, self._limits, self._owned = fp, entries, limits, owned
        self._extracted_bytes = 0  # across all entries, to enforce max_total_bytes

    def __iter__(self) -> Iterator[ZipEntry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __enter__(self) -> CdZip:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._fp.close()

    def extract_to_tempfile(self, entry: ZipEntry, temp_dir: str | None = None) -> BinaryIO:
        """The entry's bytes in a new anonymous temp file (gone once closed), at position 0."""
        out = tempfile.TemporaryFile(dir=temp_dir)  # noqa: SIM115 -- handed to the caller
        try:
            self.extract(entry, out)
        except BaseException:
            out.close()
            raise
        out.seek(0)
        return out

    def extract(self, entry: ZipEntry, out: BinaryIO) -> int:
        """Write the entry's bytes to out, counting them as they come out of the decompressor."""
        limit = min(entry.size, self._limits.max_entry_bytes, _ratio_limit(entry, self._limits))
        written, crc = 0, 0
        for chunk in self._decoded_chunks(entry):
            written += len(chunk)
            self._extracted_bytes += len(chunk)
            if written > limit or self._extracted_bytes > self._limits.max_total_bytes:
                raise RejectedArchive("zip_bomb")
            crc = zlib.crc32(chunk, crc)
            out.write(chunk)
        if written != entry.size or crc != entry.crc:
            raise RejectedArchive("not_zip", DAMAGED_ENTRY_REASON)
        return written

    def _decoded_chunks(self, entry: ZipEntry) -> Iterator[bytes]:
        """The entry's data at most CHUNK bytes at a time, however well it is compressed."""
        inflater = zlib.decompressobj(-zlib.MAX_WBITS) if entry.method == _DEFLATED else None
        position, left, pending = entry.data_offset, entry.compressed_size, b""
        while inflater is None or not inflater.eof:
            if not pending and left:
                self._fp.seek(position)  # seek each time: the caller may use the file between
                pending = self._fp.read(min(CHUNK, left))
                if not pending:
                    raise RejectedArchive("not_zip", DAMAGED_ENTRY_REASON)
                position, left = position + len(pending), left - len(pending)
            if inflater is None:
                produced, pending = pending, b""
            else:
                produced = _inflate_step(inflater, pending)
                pending = inflater.unconsumed_tail
            if produced:
                yield produced
            elif not pending and not left:
                break  # nothing more can come out
        if inflater is not None and not inflater.eof:
            raise RejectedArchive("not_zip", DAMAGED_ENTRY_REASON)


def _inflate_step(inflater, data: bytes) -> bytes:
    try:
        return inflater.decompress(data, CHUNK)  # max_length: a bomb can't burst in memory
    except zlib.error as exc:
        raise RejectedArchive("not_zip", DAMAGED_ENTRY_REASON) from exc


def _ratio_limit(entry: ZipEntry, limits: ZipLimits) -> int:
    return max(RATIO_FLOOR, limits.max_ratio * entry.compressed_size)


def _validated_entries(fp: BinaryIO, limits: ZipLimits) -> list[ZipEntry]:
    try:
        return _checked_entries(fp, fp.seek(0, os.SEEK_END), limits)
    except struct.error as exc:  # a record cut short: the archive is damaged
        raise RejectedArchive("not_zip") from exc


def _checked_entries(fp: BinaryIO, size: int, limits: ZipLimits) -> list[ZipEntry]:
    start, end, declared_count, shift = _find_central_directory(fp, size)
    if declared_count > limits.max_entries:
        raise RejectedArchive("too_many_entries")
    records = _read_central_directory(fp, start, end, limits.max_entries)
    if len(records) != declared_count:
        raise RejectedArchive("not_zip")
    entries = [_checked_entry(fp, record, shift) for record in records]
    _reject_overlaps(entries, start)
    _reject_oversized(entries, limits)
    return entries


def _find_central_directory(fp: BinaryIO, size: int) -> tuple[int, int, int, int]:
    """(start, end, declared entry count, bytes prepended to the archive)."""
    tail_start = max(0, size - _EOCD.size - 0xFFFF)  # the record, then at most a 64 KB comment
    fp.seek(tail_start)
    tail = fp.read()
    found = tail.rfind(b"PK\x05\x06")
    if found < 0 or found + _EOCD.size > len(tail):
        raise RejectedArchive("not_zip")
    _, disk, directory_disk, disk_count, count, length, offset, _ = _EOCD.unpack_from(tail, found)
    end = tail_start + found
    if end >= _EOCD64_LOCATOR.size + _EOCD64.size:
        fp.seek(end - _EOCD64_LOCATOR.size)
        if fp.read(4) == b"PK\x06\x07":  # zip64: the real numbers are in another record
            end -= _EOCD64_LOCATOR.size + _EOCD64.size
            fp.seek(end)
            signature, _, _, _, disk, directory_disk, disk_count, count, length, offset = (
                _EOCD64.unpack(fp.read(_EOCD64.size))
            )
            if signature != b"PK\x06\x06":
                raise RejectedArchive("not_zip")
    if disk or directory_disk or disk_count != count:
        raise RejectedArchive("not_zip", SPLIT_REASON)
    shift = end - length - offset  # as zipfile does: tolerate a stub prepended to the archive
    if shift < 0:
        raise RejectedArchive("not_zip")
    return offset + shift, end, count, shift


def _read_central_directory(fp, start: int, end: int, max_entries: int) -> list[_Central]:
    """Every record, counted as read: the declared count is not trusted to stop the loop."""
    records, position = [], start
    while position < end:
        if len(records) >= max_entries:
            raise RejectedArchive("too_many_entries")
        fp.seek(position)
        fixed = fp.read(_CENTRAL.size)
        if len(fixed) < _CENTRAL.size or not fixed.startswith(b"PK\x01\x02"):
            raise RejectedArchive("not_zip")
        (_, _, _, _, _, flags, method, _, _, crc, packed, size, name_length, extra_length,
         comment_length, _, _, external_attr, offset) = _CENTRAL.unpack(fixed)  # fmt: skip
        raw_name, extra = fp.read(name_length), fp.read(extra_length)
        size, packed, offset = _zip64_values(extra, size, packed, offset)
        records.append(_Central(raw_name, flags, method, crc, packed, size, external_attr, offset))
        position += _CENTRAL.size + name_length + extra_length + comment_length
    if position != end:
        raise RejectedArchive("not_zip")
    return records


def _zip64_values(extra: bytes, *values: int) -> tuple[int, ...]:
    """Replace 0xFFFFFFFF placeholders with the zip64 extra field's values, in order."""
    wanted = [value == _ZIP64_SENTINEL for value in values]
    position = 0
    while any(wanted) and position + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, position)
        if kind == 0x0001:
            found = iter(struct.unpack_from(f"<{length // 8}Q", extra, position + 4))
            try:
                return tuple(next(found) if w else v for v, w in zip(values, wanted, strict=True))
            except StopIteration:
                break
        position += 4 + length
    if any(wanted):
        raise RejectedArchive("not_zip")
    return values


def _checked_entry(fp: BinaryIO, record: _Central, shift: int) -> ZipEntry:
    encoding = "utf-8" if record.flags & _UTF8_FLAG else "cp437"
    name = record.raw_name.decode(encoding, "replace")
    if record.flags & _ENCRYPTED_FLAGS:
        raise RejectedArchive("encrypted")
    if _escapes_destination(name):
        raise RejectedArchive("zip_slip")
    if stat.S_ISLNK(record.external_attr >> 16):
        raise RejectedArchive("symlink")
    if record.method not in (_STORED, _DEFLATED):  # others inflate without an output cap
        raise RejectedArchive("unsupported")
    if record.method == _STORED and record.compressed_size != record.size:
        raise RejectedArchive("not_zip")
    header_offset = record.header_offset + shift
    fp.seek(header_offset)
    local = fp.read(_LOCAL.size)
    if len(local) < _LOCAL.size or not local.startswith(b"PK\x03\x04"):
        raise RejectedArchive("not_zip")
    name_length, extra_length = _LOCAL.unpack(local)[-2:]
    if fp.read(name_length) != record.raw_name:  # tools that read local headers must agree
        raise RejectedArchive("not_zip")
    return ZipEntry(
        name=name,
        size=record.size,
        compressed_size=record.compressed_size,
        method=record.method,
        crc=record.crc,
        header_offset=header_offset,
        data_offset=header_offset + _LOCAL.size + name_length + extra_length,
    )


def _escapes_destination(name: str) -> bool:
    """Absolute paths, drive letters, '..' parts or NULs, with either slash, on any OS."""
    parts = re.split(r"[\\/]", name)
    return (
        name.startswith(("/", "\\"))
        or _DRIVE.match(name) is not None
        or ".." in parts
        or "\x00" in name
    )


def _reject_overlaps(entries: list[ZipEntry], directory_start: int) -> None:
    """Each entry's local header and data must own their bytes: the 'overlapping files' zip
    bomb makes many entries share one compressed kernel."""
    spans = sorted((e.header_offset, e.data_offset + e.compressed_size) for e in entries)
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        if next_start < end:
            raise RejectedArchive("overlap")
    if spans and spans[-1][1] > directory_start:
        raise RejectedArchive("overlap")


def _reject_oversized(entries: list[ZipEntry], limits: ZipLimits) -> None:
    """Refuse early on what the archive admits to; extraction still counts the real bytes."""
    for entry in entries:
        if entry.size > min(limits.max_entry_bytes, _ratio_limit(entry, limits)):
            raise RejectedArchive("zip_bomb")
    if sum(entry.size for entry in entries) > limits.max_total_bytes:
        raise RejectedArchive("zip_bomb")
