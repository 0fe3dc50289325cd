"""phr.vault.safezip: reading a ZIP of a hospital CD without trusting the archive."""

from __future__ import annotations

import io
import os
import time
import zipfile

import pytest

from phr.vault.dicomfile import RejectedFile, read_header, sniff_kind
from phr.vault.safezip import (
    RejectedArchive,
    ZipLimits,
    nested_zip_skipped,
    open_cd_zip,
)
from tests.vault import hostile

MiB = 1024 * 1024


def unpack_into(path, destination, limits=None) -> list[str]:
    """What an importer does: validate, then extract every entry into `destination`."""
    written = []
    with open_cd_zip(path, limits) as archive:
        for entry in archive:
            target = destination / f"{len(written):05d}"
            with open(target, "wb") as out:
                archive.extract(entry, out)
            written.append(entry.name)
    return written


def cd_files() -> dict[str, bytes]:
    root = hostile.cd_tree()
    return {
        f"CD/{os.path.relpath(os.path.join(folder, name), root)}": (
            open(os.path.join(folder, name), "rb").read()
        )
        for folder, _, names in os.walk(root)
        for name in names
    }


# -- A real CD ------------------------------------------------------------------------------


def test_a_real_cd_zip_reads_entirely_and_byte_for_byte(tmp_path):
    expected = cd_files()
    assert {"CD/DICOMDIR", "CD/77654033/CR1/6154", "CD/98892003/MR700/4648"} <= set(expected)
    seen, headers, rejected = {}, [], set()

    with open_cd_zip(hostile.cd_zip(tmp_path), ZipLimits()) as archive:
        for entry in archive:
            with archive.extract_to_tempfile(entry) as extracted:
                seen[entry.name] = extracted.read()
                if sniff_kind(extracted) != "dicom":
                    continue
                try:
                    headers.append(read_header(extracted, entry.size, max_inflated_bytes=MiB))
                except RejectedFile:
                    rejected.add(entry.name)

    assert seen == expected  # every file, byte for byte; the directory entries were skipped
    # Every file is read; the index variant whose sequence length pydicom left wrong
    # (DICOMDIR-nooffset) is still recognised as an index, by its file meta alone.
    assert rejected == set()
    assert sum(header.is_dicomdir for header in headers) == 8
    patients = {header.patient_name for header in headers if not header.is_dicomdir}
    assert {"Doe^Archibald", "Doe^Peter"} <= patients


def test_a_zip_with_a_stub_in_front_still_reads(tmp_path):
    with open_cd_zip(hostile.with_stub(tmp_path)) as archive:
        names = {entry.name for entry in archive}
        dicomdir = next(entry for entry in archive if entry.name == "CD/DICOMDIR")
        with archive.extract_to_tempfile(dicomdir) as extracted:
            assert extracted.read() == (hostile.cd_tree() / "DICOMDIR").read_bytes()
    assert names == set(cd_files())


def test_an_open_file_can_be_read_too_and_is_left_open(tmp_path):
    with open(hostile.cd_zip(tmp_path), "rb") as upload:
        with open_cd_zip(upload) as archive:
            assert len(archive) == len(cd_files())
        assert not upload.closed


def test_a_nested_zip_is_handed_over_as_an_ordinary_entry_to_skip(tmp_path):
    with open_cd_zip(hostile.nested_zip(tmp_path)) as archive:
        entries = {entry.name: entry for entry in archive}
        with archive.extract_to_tempfile(entries["CD/inner.zip"]) as inner:
            assert sniff_kind(inner) == "zip"
        with archive.extract_to_tempfile(entries["CD/CT.dcm"]) as image:
            assert sniff_kind(image) == "dicom"

    skipped = nested_zip_skipped(entries["CD/inner.zip"])
    assert skipped.code == "nested_zip"
    assert '"CD/inner.zip" is a ZIP file inside your ZIP' in skipped.reason


def _half_a_zip(directory):
    whole = hostile.cd_zip(directory).read_bytes()
    path = directory / "half.zip"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def _compressed_with(directory, method):
    path = directory / "other_method.zip"
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("CD/CT.dcm", hostile.testdata("CT_small.dcm").read_bytes())
    return path


# -- Rejected before anything is extracted ------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "limits", "code"),
    [
        (lambda d: hostile.zip_of(d, {"../evil.dcm": b"x"}), None, "zip_slip"),
        (lambda d: hostile.zip_of(d, {"CD/../../evil.dcm": b"x"}), None, "zip_slip"),
        (lambda d: hostile.zip_of(d, {"/etc/passwd": b"x"}), None, "zip_slip"),
        (lambda d: hostile.zip_of(d, {"C:\\Windows\\evil.dcm": b"x"}), None, "zip_slip"),
        (lambda d: hostile.zip_of(d, {"C:evil.dcm": b"x"}), None, "zip_slip"),
        (lambda d: hostile.zip_of(d, {"CD\\..\\..\\evil.dcm": b"x"}), None, "zip_slip"),
        (lambda d: hostile.zip_of(d, {"\\\\server\\share\\evil.dcm": b"x"}), None, "zip_slip"),
        (hostile.symlink_entry, None, "symlink"),
        (hostile.overlap_same_header, None, "overlap"),
        (hostile.overlap_nested_header, None, "overlap"),
        (hostile.encrypted_entry, None, "encrypted"),
        (lambda d: hostile.many_entries(d, 11), ZipLimits(max_entries=10), "too_many_entries"),
        (lambda d: hostile.undercounted(d, 11), ZipLimits(max_entries=10), "too_many_entries"),
        (lambda d: hostile.undercounted(d, 5), None, "not_zip"),
        (lambda d: hostile.copy_of(d, "CT_small.dcm"), None, "not_zip"),
        (lambda d: hostile.empty_file(d), None, "not_zip"),
        (_half_a_zip, None, "not_zip"),
        (lambda d: _compressed_with(d, zipfile.ZIP_BZIP2), None, "unsupported"),
        (
            lambda d: hostile.zip_of(d, {"CD/a.dcm": os.urandom(2 * MiB)}),
            ZipLimits(max_entry_bytes=MiB),
            "zip_bomb",
        ),
        (
            lambda d: hostile.zip_of(d, {f"CD/{n}.dcm": os.urandom(MiB) for n in range(3)}),
            ZipLimits(max_total_bytes=2 * MiB),
            "zip_bomb",
        ),
    ],
    ids=[
        "dot_dot",
        "dot_dot_inside",
        "absolute",
        "drive_letter",
        "drive_relative",
        "backslash_dot_dot",
        "unc_path",
        "symlink",
        "overlap_same_header",
        "overlap_nested_header",
        "encrypted",
        "too_many_entries",
        "too_many_behind_a_lying_count",
        "count_disagrees",
        "dicom_not_zip",
        "empty",
        "cut_in_half",
        "bzip2",
        "entry_too_big",
        "total_too_big",
    ],
)
def test_hostile_archives_are_rejected_before_anything_is_extracted(tmp_path, build, limits, code):
    archive = build(tmp_path)
    destination = tmp_path / "extracted"
    destination.mkdir()

    with pytest.raises(RejectedArchive) as caught:
        unpack_into(archive, destination, limits)

    assert caught.value.code == code
    assert list(destination.iterdir()) == []
    assert caught.value.reason.endswith(".") and "0x" not in caught.value.reason


@pytest.fixture(scope="module")
def zeros_bomb(tmp_path_factory):
    """300 MiB of zeros in a ~1.3 MB ZIP, built once for the module."""
    return hostile.zeros_bomb(tmp_path_factory.mktemp("bomb"), 300 * MiB)


@pytest.mark.parametrize(
    "limits",
    [ZipLimits(), ZipLimits(max_entry_bytes=100 * MiB, max_ratio=10_000)],
    ids=["by_ratio", "by_entry_size"],
)
def test_a_zeros_bomb_is_refused_quickly_from_its_directory_alone(zeros_bomb, tmp_path, limits):
    destination = tmp_path / "extracted"
    destination.mkdir()
    started = time.perf_counter()

    with pytest.raises(RejectedArchive) as caught:
        unpack_into(zeros_bomb, destination, limits)

    assert caught.value.code == "zip_bomb"
    assert time.perf_counter() - started < 0.5
    assert list(destination.iterdir()) == []


def test_a_zeros_bomb_that_hides_its_size_is_stopped_while_inflating(zeros_bomb, tmp_path):
    data = bytearray(zeros_bomb.read_bytes())
    central = data.index(b"PK\x01\x02")
    for offset in (22, central + 24):  # uncompressed size, local and central: claim 1 MiB
        data[offset : offset + 4] = MiB.to_bytes(4, "little")
    hidden = tmp_path / "hidden.zip"
    hidden.write_bytes(bytes(data))

    with open_cd_zip(hidden) as archive, pytest.raises(RejectedArchive) as caught:
        archive.extract(next(iter(archive)), io.BytesIO())

    assert caught.value.code == "zip_bomb"


# -- Rejected while extracting: the bytes are counted, not the headers believed ------------------


def test_an_entry_bigger_than_its_header_says_is_stopped_at_the_declared_size(tmp_path):
    lying = hostile.lying_size(tmp_path, real=8 * MiB, declared=1000)
    destination = tmp_path / "extracted"
    destination.mkdir()

    with open_cd_zip(lying) as archive:
        (entry,) = archive
        assert entry.size == 1000
        out = io.BytesIO()
        with pytest.raises(RejectedArchive) as caught:
            archive.extract(entry, out)
        with pytest.raises(RejectedArchive):
            archive.extract_to_tempfile(entry, str(destination))

    assert caught.value.code == "zip_bomb"
    assert len(out.getvalue()) <= 1000
    assert list(destination.iterdir()) == []


def test_an_entry_smaller_than_its_header_says_is_damaged(tmp_path):
    lying = hostile.lying_size(tmp_path, real=1000, declared=5000)

    with open_cd_zip(lying) as archive, pytest.raises(RejectedArchive) as caught:
        archive.extract(next(iter(archive)), io.BytesIO())

    assert caught.value.code == "not_zip"
    assert "damaged" in caught.value.reason


def test_the_running_total_counts_every_extraction(tmp_path):
    path = hostile.zip_of(tmp_path, {"CD/a.dcm": os.urandom(MiB)})
    limits = ZipLimits(max_total_bytes=int(1.5 * MiB))

    with open_cd_zip(path, limits) as archive:
        (entry,) = archive
        assert len(archive.extract_to_tempfile(entry).read()) == MiB
        with pytest.raises(RejectedArchive) as caught:
            archive.extract(entry, io.BytesIO())  # extracting again can't dodge the total

    assert caught.value.code == "zip_bomb"


def test_extraction_checks_the_crc(tmp_path):
    data = bytearray(hostile.zip_of(tmp_path, {"CD/a.dcm": os.urandom(4096)}).read_bytes())
    data[100] ^= 0xFF  # flip bits inside the stored-or-deflated data
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))

    with open_cd_zip(damaged) as archive, pytest.raises(RejectedArchive) as caught:
        archive.extract(next(iter(archive)), io.BytesIO())

    assert caught.value.code == "not_zip"


def test_defaults_match_the_security_brief():
    limits = ZipLimits()
    assert (limits.max_entries, limits.max_ratio) == (20_000, 200)
    assert (limits.max_total_bytes, limits.max_entry_bytes) == (8 * 1024**3, 2 * 1024**3)


def test_entries_report_name_and_declared_size(tmp_path):
    path = hostile.zip_of(tmp_path, {"CD/a.dcm": b"abc", "CD/sub/": b""})
    with open_cd_zip(path) as archive:
        assert [(entry.name, entry.size) for entry in archive] == [("CD/a.dcm", 3)]
