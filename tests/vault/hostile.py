"""Builders for hostile test files. Each writes one file into a directory and returns its path.

They start from pydicom's real bundled test files wherever they can and change only what the
attack needs, so a rejection proves the defence works rather than that the bytes were odd.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

MiB = 1024 * 1024
DEFLATED_IMAGE = "image_dfl.dcm"  # a real Deflated Explicit VR Little Endian file


def testdata(name: str) -> Path:
    """A pydicom test file that ships in the wheel (never one it would try to download)."""
    return Path(get_testdata_file(name))


def cd_tree() -> Path:
    """pydicom's real CD tree: DICOMDIR plus the 77654033 / 98892001 / 98892003 patient folders."""
    return testdata("DICOMDIR").parent


def copy_of(directory: Path, name: str) -> Path:
    return Path(shutil.copy(testdata(name), directory / name))


# -- Not DICOM, or not all there ----------------------------------------------------------------


def empty_file(directory: Path) -> Path:
    path = directory / "empty.dcm"
    path.write_bytes(b"")
    return path


def picture(directory: Path, fmt: str) -> Path:
    """A real PNG / JPEG / PDF written by Pillow: what a patient might upload by mistake."""
    path = directory / f"scan.{fmt.lower()}"
    Image.new("RGB", (16, 16), "white").save(path, fmt)
    return path


def dataset_without_preamble(directory: Path) -> Path:
    """A real DICOM dataset with no Part 10 header: no 'DICM' at 128, so pydicom needs force."""
    return copy_of(directory, "no_meta.dcm")


def cut_short(directory: Path, name: str, keep: int) -> Path:
    """A real file with only its first `keep` bytes (negative: all but the last -keep)."""
    data = testdata(name).read_bytes()
    path = directory / f"cut_{name}"
    path.write_bytes(data[:keep])
    return path


# -- Lying lengths --------------------------------------------------------------------------


def _length_field_offset(path: Path, keyword: str) -> int:
    """Where the 4-byte length of `keyword` sits (implicit VR, or an explicit 'long' VR)."""
    element = pydicom.dcmread(path).get_item(keyword)  # still raw: only its position is read
    return element.value_tell - 4


def _patched(source: Path, target: Path, offset: int, new: bytes, keep: int | None = None) -> Path:
    data = bytearray(source.read_bytes())
    data[offset : offset + len(new)] = new
    target.write_bytes(bytes(data[:keep]))
    return target


def huge_length_before_pixels(directory: Path) -> Path:
    """A real implicit-VR MR whose Institution Name declares ~4 GB; the file is ~4 KB."""
    source = testdata("MR_small_implicit.dcm")
    offset = _length_field_offset(source, "InstitutionName")
    target = directory / "huge_length.dcm"
    return _patched(source, target, offset, struct.pack("<L", 0xFFFFFFF0), keep=offset + 4096)


def huge_pixel_length(directory: Path) -> Path:
    """A real CT whose Pixel Data declares ~4 GB; everything before it is intact."""
    source = testdata("CT_small.dcm")
    offset = _length_field_offset(source, "PixelData")
    return _patched(source, directory / "huge_pixels.dcm", offset, struct.pack("<L", 0xFFFFFFF0))


def item_longer_than_sequence(directory: Path) -> Path:
    """A real CT whose first sequence item claims more bytes than its sequence holds."""
    source = testdata("CT_small.dcm")
    sequence = pydicom.dcmread(source)["OtherPatientIDsSequence"]
    start = sequence.file_tell  # the value: the first item's header starts here
    sequence_length = struct.unpack("<L", source.read_bytes()[start - 4 : start])[0]
    item_length = struct.pack("<L", sequence_length + 64)
    return _patched(source, directory / "item_overrun.dcm", start + 4, item_length)


def sequence_that_never_closes(directory: Path) -> Path:
    """A real JPEG 2000 file whose undefined-length sequence has its delimiter replaced by the
    start of another undefined-length item, so it is still open when the file ends."""
    source = testdata("JPEG2000.dcm")
    dataset = pydicom.dcmread(source, stop_before_pixels=True)
    following = min(elem.tag for elem in dataset if elem.tag > Tag("SourceImageSequence"))
    closing = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00" + struct.pack(
        "<HH", following.group, following.elem
    )
    offset = source.read_bytes().index(closing)
    item_start = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    return _patched(source, directory / "never_closes.dcm", offset, item_start)


def deeply_nested(directory: Path, depth: int) -> Path:
    """A real CT carrying sequences nested `depth` levels deep (written by pydicom)."""
    dataset = pydicom.dcmread(testdata("CT_small.dcm"))
    item = Dataset()
    for _ in range(depth):
        outer = Dataset()
        outer.ReferencedSeriesSequence = Sequence([item])
        item = outer
    dataset.ReferencedSeriesSequence = item.ReferencedSeriesSequence
    path = directory / "nested.dcm"
    dataset.save_as(path)
    return path


# -- Deflate ------------------------------------------------------------------------------------


def _deflated_parts() -> tuple[bytes, bytes]:
    """(preamble + file meta, inflated dataset) of pydicom's real deflated file."""
    data = testdata(DEFLATED_IMAGE).read_bytes()
    meta_group_length = struct.unpack("<L", data[140:144])[0]
    start = 144 + meta_group_length
    return data[:start], zlib.decompress(data[start:], -zlib.MAX_WBITS)


def deflate_bomb(directory: Path, inflated_mib: int) -> Path:
    """The real deflated file's header and dataset followed, in the same deflate stream, by
    trailing padding of `inflated_mib` MiB of zeros: ~1 KB of compressed data per MiB.

    After a full flush the compressor keeps no history, so every further MiB of zeros
    compresses to the same bytes: the bomb is written by repeating them, not by compressing.
    """
    meta, dataset = _deflated_parts()
    padding = b"\xfc\xff\xfc\xffOB\x00\x00" + struct.pack("<L", inflated_mib * MiB)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = deflater.compress(dataset + padding) + deflater.flush(zlib.Z_FULL_FLUSH)
    one_mib = deflater.compress(bytes(MiB)) + deflater.flush(zlib.Z_FULL_FLUSH)
    path = directory / "deflate_bomb.dcm"
    with open(path, "wb") as out:
        out.write(meta + head)
        for _ in range(inflated_mib):
            out.write(one_mib)
        out.write(deflater.flush())
    return path


def deflated_noise(directory: Path, noise_bytes: int) -> Path:
    """The real deflated file plus trailing padding of random bytes: a ratio near 1:1, so only
    an absolute cap on inflated bytes can stop it."""
    meta, dataset = _deflated_parts()
    padding = b"\xfc\xff\xfc\xffOB\x00\x00" + struct.pack("<L", noise_bytes)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    path = directory / "deflated_noise.dcm"
    body = deflater.compress(dataset + padding + os.urandom(noise_bytes)) + deflater.flush()
    path.write_bytes(meta + body)
    return path


def deflate_cut_short(directory: Path) -> Path:
    """The real deflated file with its deflate stream cut off half way."""
    meta, _ = _deflated_parts()
    size = testdata(DEFLATED_IMAGE).stat().st_size
    return cut_short(directory, DEFLATED_IMAGE, len(meta) + (size - len(meta)) // 2)


# -- Values and identity ------------------------------------------------------------------------


def _with_raw_values(directory: Path, name: str, raw_values: dict[str, tuple[str, bytes]]) -> Path:
    """A real CT with some values replaced by raw bytes that pydicom wouldn't let us set."""
    dataset = pydicom.dcmread(testdata("CT_small.dcm"))
    for keyword, (vr, value) in raw_values.items():
        tag = Tag(keyword)
        dataset[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    path = directory / name
    dataset.save_as(path)
    return path


def malformed_values(directory: Path) -> Path:
    return _with_raw_values(
        directory,
        "malformed_values.dcm",
        {
            "StudyDate": ("DA", b"2024-13-45"),
            "PatientBirthDate": ("DA", b"19XX0101"),
            "StudyTime": ("TM", b"256100"),
            "SeriesNumber": ("IS", b"abc "),
            "InstanceNumber": ("IS", b"1.5 "),
            "NumberOfFrames": ("IS", b"0 "),
            "SliceLocation": ("DS", b"nope"),
            "PixelSpacing": ("DS", b"1\\x "),
            "ImagePositionPatient": ("DS", b"1\\2 "),
            "WindowCenter": ("DS", b"nan "),
            "Rows": ("US", b"\x01"),  # one byte for a two-byte number
            "StudyDescription": ("LO", b"Head\x00\x00CT "),
        },
    )


def without(directory: Path, keyword: str) -> Path:
    dataset = pydicom.dcmread(testdata("CT_small.dcm"))
    del dataset[keyword]
    path = directory / f"without_{keyword}.dcm"
    dataset.save_as(path)
    return path


def executable_preamble(directory: Path) -> Path:
    """A real CT whose preamble starts like a Windows executable (CVE-2019-11687)."""
    dos_stub = b"MZ\x90\x00\x03\x00\x00\x00This program cannot be run in DOS mode."
    source = testdata("CT_small.dcm")
    return _patched(source, directory / "polyglot.dcm", 0, dos_stub)


# -- ZIP archives -------------------------------------------------------------------------------


def cd_zip(directory: Path) -> Path:
    """The real CD tree zipped the way a patient's computer would, directories included."""
    path = directory / "cd.zip"
    root = cd_tree()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder, _, files in os.walk(root):
            archive.write(folder, Path("CD") / Path(folder).relative_to(root))
            for name in files:
                archive.write(
                    Path(folder) / name, Path("CD") / Path(folder, name).relative_to(root)
                )
    return path


def zip_of(directory: Path, entries: dict[str | zipfile.ZipInfo, bytes], name="upload.zip") -> Path:
    path = directory / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    return path


def zeros_bomb(directory: Path, size: int) -> Path:
    """One entry of `size` zero bytes, streamed into zipfile."""
    path = directory / "bomb.zip"
    # level 1 still packs zeros ~230:1 and is several times faster to build than the default
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("CD/IMAGE.dcm", "w") as out,
    ):
        zeros = bytes(MiB)
        for done in range(0, size, MiB):
            out.write(zeros[: min(MiB, size - done)])
    return path


def _central_offset(data: bytes) -> int:
    return data.index(b"PK\x01\x02")


def lying_size(directory: Path, real: int, declared: int) -> Path:
    """One entry of `real` zero bytes whose local and central headers both say `declared`."""
    data = bytearray(zip_of(directory, {"CD/IMAGE.dcm": bytes(real)}).read_bytes())
    struct.pack_into("<L", data, 22, declared)  # local header: uncompressed size
    struct.pack_into("<L", data, _central_offset(data) + 24, declared)  # central: same
    path = directory / "lying.zip"
    path.write_bytes(bytes(data))
    return path


def symlink_entry(directory: Path) -> Path:
    link = zipfile.ZipInfo("CD/IMAGE.dcm")
    link.create_system = 3  # Unix, so the mode bits below mean what they say
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_of(directory, {link: b"/etc/passwd"})


def encrypted_entry(directory: Path) -> Path:
    """A real CT entry flagged as encrypted in both headers (zipfile can't write encryption)."""
    data = bytearray(
        zip_of(directory, {"CD/IMAGE.dcm": testdata("CT_small.dcm").read_bytes()}).read_bytes()
    )
    data[6] |= 0x01  # local header general purpose flags
    data[_central_offset(data) + 8] |= 0x01  # central directory flags
    path = directory / "encrypted.zip"
    path.write_bytes(bytes(data))
    return path


def _central_record(name: bytes, crc: int, size: int, offset: int) -> bytes:
    """A stored entry's central directory record, by hand."""
    fixed = struct.pack(
        "<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0x21, crc, size, size,
        len(name), 0, 0, 0, 0, 0o100644 << 16, offset,
    )  # fmt: skip
    return fixed + name


def _local_record(name: bytes, data: bytes) -> bytes:
    header = struct.pack(
        "<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0x21, zlib.crc32(data), len(data),
        len(data), len(name), 0,
    )  # fmt: skip
    return header + name + data


def _archive(local_part: bytes, records: list[bytes]) -> bytes:
    directory = b"".join(records)
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(records), len(records), len(directory),
        len(local_part), 0,
    )  # fmt: skip
    return local_part + directory + end


def overlap_same_header(directory: Path) -> Path:
    """Two central directory records pointing at the same local header and data."""
    image = testdata("CT_small.dcm").read_bytes()
    name = b"CD/IMAGE.dcm"
    record = _central_record(name, zlib.crc32(image), len(image), 0)
    path = directory / "overlap_same.zip"
    path.write_bytes(_archive(_local_record(name, image), [record, record]))
    return path


def overlap_nested_header(directory: Path) -> Path:
    """The 'overlapping files' bomb shape: entry B's header and data sit inside entry A's data."""
    image = testdata("CT_small.dcm").read_bytes()
    inner = _local_record(b"CD/B.dcm", image)
    outer = _local_record(b"CD/A.dcm", inner)
    inner_offset = len(outer) - len(inner)
    records = [
        _central_record(b"CD/A.dcm", zlib.crc32(inner), len(inner), 0),
        _central_record(b"CD/B.dcm", zlib.crc32(image), len(image), inner_offset),
    ]
    path = directory / "overlap_nested.zip"
    path.write_bytes(_archive(outer, records))
    return path


def nested_zip(directory: Path) -> Path:
    inner = zip_of(directory, {"IMAGE.dcm": testdata("CT_small.dcm").read_bytes()}, "inner.zip")
    return zip_of(
        directory,
        {"CD/inner.zip": inner.read_bytes(), "CD/CT.dcm": testdata("CT_small.dcm").read_bytes()},
        "outer.zip",
    )


def many_entries(directory: Path, count: int) -> Path:
    return zip_of(directory, {f"CD/{number:05d}.txt": b"x" for number in range(count)})


def undercounted(directory: Path, count: int) -> Path:
    """`count` entries, but the end record says there is just one."""
    data = bytearray(many_entries(directory, count).read_bytes())
    end = data.rindex(b"PK\x05\x06")
    struct.pack_into("<2H", data, end + 8, 1, 1)
    path = directory / "undercounted.zip"
    path.write_bytes(bytes(data))
    return path


def with_stub(directory: Path) -> Path:
    """A real CD ZIP with bytes prepended, as self-extracting archives have."""
    path = directory / "stub.zip"
    path.write_bytes(b"#!/bin/sh\nexit 0\n" + cd_zip(directory).read_bytes())
    return path
