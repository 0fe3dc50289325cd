"""phr.vault.dicomfile: what kind of file is this, and can its header be read safely?"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import tracemalloc
from datetime import date
from datetime import time as clock_time

import pydicom
import pytest

from phr.vault import dicomfile
from phr.vault.dicomfile import (
    MISSING_IDS_REASON,
    DicomHeader,
    RejectedFile,
    is_preamble_clean,
    read_header,
    sniff_kind,
    zero_preamble_and_hash,
)
from tests.vault import hostile

CAP = 64 * 1024 * 1024  # max_inflated_bytes for files that aren't testing the cap
PLAIN_TYPES = (str, int, float, bool, date, clock_time, tuple, type(None))


def header_of(path, max_inflated_bytes=CAP) -> DicomHeader:
    with open(path, "rb") as fileobj:
        return read_header(fileobj, path.stat().st_size, max_inflated_bytes=max_inflated_bytes)


def rejection(path, max_inflated_bytes=CAP) -> RejectedFile:
    with pytest.raises(RejectedFile) as caught:
        header_of(path, max_inflated_bytes)
    return caught.value


def measured(call):
    """(result or exception, seconds, peak traced bytes) of call()."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        outcome = call()
    except RejectedFile as exc:
        outcome = exc
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return outcome, elapsed, peak


# -- Reading real files -------------------------------------------------------------------------


def test_reads_the_indexed_values_of_a_real_ct_as_plain_python():
    header = header_of(hostile.testdata("CT_small.dcm"))

    assert header.patient_name == "CompressedSamples^CT1"
    assert header.study_date == date(2004, 1, 19)
    assert header.study_time == clock_time(7, 27, 30)
    assert header.modality == "CT"
    assert (header.rows, header.columns, header.bits_allocated) == (128, 128, 16)
    assert header.number_of_frames == 1
    assert header.image_position_patient == (-158.135803, -179.035797, -75.699997)
    assert header.pixel_spacing == (0.661468, 0.661468)
    assert header.slice_location == pytest.approx(-77.2040634155)
    assert header.rescale_slope == 1.0
    assert header.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert header.has_pixel_data and not header.is_dicomdir
    for field in dataclasses.fields(header):
        value = getattr(header, field.name)
        # exact types: pydicom's str/int/float subclasses must not leak into the vault
        assert type(value) in PLAIN_TYPES, (field.name, type(value))
        if isinstance(value, tuple):
            assert all(type(part) in (float, str) for part in value), field.name


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_implicit.dcm",  # implicit VR little endian
        "MR_small_bigendian.dcm",  # explicit VR big endian
        "JPEG2000.dcm",  # encapsulated pixel data, undefined-length sequences
        "MR_small_RLE.dcm",
        "SC_rgb_jpeg.dcm",  # says explicit VR but is written implicit: pydicom copes, so must we
        "liver_1frame.dcm",  # multi-frame segmentation, nested sequences
        "image_dfl.dcm",  # deflated: inflated by us, in bounded steps
        "waveform_ecg.dcm",  # no pixel data at all
    ],
)
@pytest.mark.filterwarnings("ignore:Expected explicit VR")  # pydicom's, for SC_rgb_jpeg
def test_reads_real_files_in_every_encoding_like_pydicom_does(name):
    path = hostile.testdata(name)
    expected = pydicom.dcmread(path, stop_before_pixels=True)

    header = header_of(path)

    assert header.sop_instance_uid == expected.SOPInstanceUID
    assert header.study_instance_uid == expected.StudyInstanceUID
    assert header.modality == expected.Modality
    assert header.has_pixel_data == ("PixelData" in pydicom.dcmread(path))


def pydicom_test_files():
    folder = hostile.testdata("CT_small.dcm").parent
    return sorted(path for path in folder.rglob("*") if path.is_file() and sniff_dicom(path))


def sniff_dicom(path) -> bool:
    with open(path, "rb") as fileobj:
        return sniff_kind(fileobj) == "dicom"


@pytest.mark.filterwarnings("ignore")  # pydicom's, about the oddities in its own test files
def test_raw_value_reading_agrees_with_pydicom_on_every_test_file(monkeypatch):
    """indexed_value decodes ASCII and US values itself, for speed: on each of pydicom's test
    files it must index exactly what pydicom's own conversion gives."""
    compared = 0
    for path in pydicom_test_files():
        try:
            fast = header_of(path)
        except RejectedFile:
            continue
        with monkeypatch.context() as patched:
            patched.setattr(
                dicomfile,
                "indexed_value",
                lambda dataset, tag, keyword, vr: dicomfile.dataset_value(dataset, keyword),
            )
            assert header_of(path) == fast, path.name
        compared += 1
    assert compared > 50


def test_recognises_the_cds_dicomdir_index():
    header = header_of(hostile.cd_tree() / "DICOMDIR")

    assert header.is_dicomdir
    assert header.sop_class_uid == "1.2.840.10008.1.3.10"
    assert not header.has_pixel_data


@pytest.mark.parametrize(
    "name",
    [
        "DICOMDIR", "DICOMDIR-bigEnd", "DICOMDIR-empty.dcm", "DICOMDIR-implicit",
        "DICOMDIR-nooffset", "DICOMDIR-nopatient", "DICOMDIR-reordered",
    ],
)  # fmt: skip
def test_every_kind_of_dicomdir_is_recognised_as_an_index_not_called_damaged(name):
    # A disc's index is skipped, never reported as a damaged file, however it was written:
    # the patient can do nothing about it, and needs nothing from it.
    header = header_of(hostile.cd_tree().parent / "dicomdirtests" / name)
    assert header.is_dicomdir


def test_malformed_values_become_none_instead_of_errors(tmp_path):
    header = header_of(hostile.malformed_values(tmp_path))

    assert header.study_date is None  # "2024-13-45"
    assert header.patient_birth_date is None  # "19XX0101"
    assert header.study_time is None  # "256100": hour 25
    assert header.series_number is None  # "abc"
    assert header.instance_number is None  # "1.5"
    assert header.number_of_frames == 1  # "0" frames means the default
    assert header.slice_location is None  # "nope"
    assert header.pixel_spacing is None  # "1\x"
    assert header.image_position_patient is None  # only 2 of 3 values
    assert header.window_center is None  # "nan"
    assert header.rows is None  # one byte for a two-byte number
    assert header.study_description == "HeadCT"  # NULs dropped: databases refuse them
    assert header.patient_name == "CompressedSamples^CT1"  # the rest is still read


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_a_file_without_its_identifiers_is_rejected_kindly(tmp_path, keyword):
    rejected = rejection(hostile.without(tmp_path, keyword))

    assert rejected.code == "unreadable"
    assert rejected.reason == MISSING_IDS_REASON


# -- What kind of file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (lambda d: hostile.copy_of(d, "CT_small.dcm"), "dicom"),
        (lambda d: hostile.executable_preamble(d), "dicom"),
        (lambda d: hostile.picture(d, "PNG"), "png"),
        (lambda d: hostile.picture(d, "JPEG"), "jpeg"),
        (lambda d: hostile.picture(d, "PDF"), "pdf"),
        (lambda d: hostile.zip_of(d, {"a.txt": b"a"}), "zip"),
        (lambda d: hostile.dataset_without_preamble(d), "other"),
        (lambda d: hostile.empty_file(d), "other"),
    ],
    ids=["dicom", "polyglot", "png", "jpeg", "pdf", "zip", "no_preamble", "empty"],
)
def test_sniff_kind_goes_by_content_and_leaves_the_position_alone(tmp_path, build, kind):
    path = build(tmp_path)
    disguised = path.rename(tmp_path / "IMAGE.dcm")  # the name must not matter

    with open(disguised, "rb") as fileobj:
        fileobj.seek(3)
        assert sniff_kind(fileobj) == kind
        assert fileobj.tell() == 3


def test_an_empty_file_is_rejected_as_empty(tmp_path):
    assert rejection(hostile.empty_file(tmp_path)).code == "empty"


@pytest.mark.parametrize(
    "build",
    [
        lambda d: hostile.dataset_without_preamble(d),  # pydicom would need force=True
        lambda d: hostile.picture(d, "PNG"),
        lambda d: hostile.picture(d, "PDF"),
        lambda d: hostile.cut_short(d, "CT_small.dcm", 100),  # not even a whole preamble
    ],
    ids=["no_preamble", "png", "pdf", "100_bytes"],
)
def test_files_without_a_part_10_header_are_not_dicom(tmp_path, build):
    rejected = rejection(build(tmp_path))

    assert rejected.code == "not_dicom"
    assert rejected.reason == "This isn't a DICOM image file. " + (
        "Please choose the image files from your CD (they are often in a folder called DICOM)."
    )


# -- Truncation and lying lengths -------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda d: hostile.copy_of(d, "MR_truncated.dcm"),  # pydicom's own truncated file
        lambda d: hostile.copy_of(d, "rtplan_truncated.dcm"),
        lambda d: hostile.cut_short(d, "CT_small.dcm", 132),  # right after "DICM"
        lambda d: hostile.cut_short(d, "CT_small.dcm", 200),  # inside the file meta
        lambda d: hostile.cut_short(d, "CT_small.dcm", 336),  # right after the file meta
        lambda d: hostile.cut_short(d, "CT_small.dcm", 1003),  # inside an element header
        lambda d: hostile.cut_short(d, "CT_small.dcm", -1000),  # inside the pixel data
        lambda d: hostile.cut_short(d, "JPEG2000.dcm", -100),  # inside a fragment
        lambda d: hostile.sequence_that_never_closes(d),
    ],
    ids=[
        "MR_truncated",
        "rtplan_truncated",
        "after_dicm",
        "in_meta",
        "after_meta",
        "in_header",
        "in_pixels",
        "in_fragment",
        "sequence_never_closes",
    ],
)
def test_files_that_end_too_soon_are_truncated(tmp_path, build):
    rejected = rejection(build(tmp_path))

    assert rejected.code == "truncated"
    assert rejected.reason.startswith("This file is damaged: it ends before the image data does.")


def test_a_4gb_length_in_a_4kb_file_is_rejected_at_once_in_bounded_memory(tmp_path):
    path = hostile.huge_length_before_pixels(tmp_path)
    assert path.stat().st_size < 8 * 1024

    outcome, seconds, peak = measured(lambda: header_of(path))

    assert isinstance(outcome, RejectedFile) and outcome.code == "bad_length"
    assert seconds < 1.0
    assert peak < 4 * 1024 * 1024  # pydicom alone allocates the declared 4 GB for one read()


@pytest.mark.parametrize(
    "build",
    [
        lambda d: hostile.huge_pixel_length(d),  # past the end, even though pydicom stops before
        lambda d: hostile.item_longer_than_sequence(d),  # overruns its container, not the file
    ],
    ids=["pixel_data", "item"],
)
def test_lengths_that_do_not_fit_are_bad_lengths(tmp_path, build):
    assert rejection(build(tmp_path)).code == "bad_length"


def test_a_file_of_too_many_elements_is_refused(monkeypatch):
    monkeypatch.setattr(dicomfile, "MAX_ELEMENTS", 50)  # CT_small has ~100; the real cap 500k

    assert rejection(hostile.testdata("CT_small.dcm")).code == "too_complex"


def test_absurdly_deep_nesting_is_refused(tmp_path):
    assert rejection(hostile.deeply_nested(tmp_path, depth=40)).code == "too_complex"
    assert header_of(hostile.deeply_nested(tmp_path, depth=8)).modality == "CT"


# -- Deflate ----------------------------------------------------------------------------------


def test_a_deflate_bomb_is_stopped_at_the_cap_in_bounded_memory(tmp_path):
    path = hostile.deflate_bomb(tmp_path, inflated_mib=1024)  # 1 GiB from ~1 MB
    cap = 32 * 1024 * 1024

    outcome, seconds, peak = measured(lambda: header_of(path, max_inflated_bytes=cap))

    assert isinstance(outcome, RejectedFile) and outcome.code == "deflate_bomb"
    assert peak < 64 * 1024 * 1024
    assert seconds < 5


def test_a_deflate_bomb_is_stopped_by_its_ratio_even_under_a_generous_cap(tmp_path):
    path = hostile.deflate_bomb(tmp_path, inflated_mib=256)  # ~1000:1

    outcome, _, peak = measured(lambda: header_of(path, max_inflated_bytes=100 * 1024**3))

    assert isinstance(outcome, RejectedFile) and outcome.code == "deflate_bomb"
    assert peak < 64 * 1024 * 1024


def test_deflated_data_past_the_cap_is_refused_even_at_an_ordinary_ratio(tmp_path):
    path = hostile.deflated_noise(tmp_path, noise_bytes=3 * 1024 * 1024)

    assert rejection(path, max_inflated_bytes=2 * 1024 * 1024).code == "deflate_bomb"
    assert header_of(path, max_inflated_bytes=8 * 1024 * 1024).modality == "OT"


def test_a_deflate_stream_cut_short_is_truncated(tmp_path):
    assert rejection(hostile.deflate_cut_short(tmp_path)).code == "truncated"


# -- The preamble -----------------------------------------------------------------------------


def test_zeroing_an_executable_preamble_then_hashing_in_one_pass(tmp_path):
    path = hostile.executable_preamble(tmp_path)
    original = path.read_bytes()
    assert original.startswith(b"MZ")

    with open(path, "r+b") as fileobj:
        assert not is_preamble_clean(fileobj)
        digest, size = zero_preamble_and_hash(fileobj)
        assert is_preamble_clean(fileobj)

    cleaned = bytes(128) + original[128:]
    assert path.read_bytes() == cleaned  # only the preamble changed, in place
    assert (digest, size) == (hashlib.sha256(cleaned).hexdigest(), len(cleaned))
    assert header_of(path).sop_instance_uid == pydicom.dcmread(path).SOPInstanceUID


def test_zeroing_refuses_a_file_that_is_not_dicom(tmp_path):
    path = hostile.picture(tmp_path, "PNG")
    original = path.read_bytes()

    with open(path, "r+b") as fileobj, pytest.raises(RejectedFile) as caught:
        zero_preamble_and_hash(fileobj)

    assert caught.value.code == "not_dicom"
    assert path.read_bytes() == original


def test_every_rejection_reason_is_a_plain_sentence_saying_what_to_do():
    for code in ("empty", "not_dicom", "truncated", "bad_length", "deflate_bomb", "unreadable"):
        reason = RejectedFile(code).reason
        assert reason.endswith(".") and "please" in reason.lower(), code
        assert not any(word in reason for word in ("pydicom", "0x", "Error", "length")), code
