"""Pixel truth: every image file in pydicom's test data and in pydicom-data that pydicom can
decode is opened in the viewer (real Chromium), and each checked frame (first, middle, last)
is compared with pydicom's decode value by value (tests/support/pixels.py says what the
reference is), with the window the viewer opens it in.

Tolerances are the decoders' own rounding, never an observed error: lossless syntaxes must
match exactly; lossy ones are decoded by another library in the browser than in pydicom (see
LOSSY_TOLERANCE), and may differ by what their rounding allows, never by an offset.
"""

import subprocess
from pathlib import Path

import data_store
import numpy as np
import pydicom
import pytest
from django.urls import reverse
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import UID, generate_uid

from tests.browser.test_viewer_browser import sign_in, state
from tests.support.pixels import LOSSY, expected_frame, frame_count, shown_values
from tests.support.vaultdata import ingest_path

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMEOUT = 30_000
PYDICOM_TEST_FILES = Path(get_testdata_file("CT_small.dcm")).parent
PYDICOM_DATA_FILES = Path(data_store.__file__).parent / "data"

# Files with pixel data that pydicom itself cannot decode: no reference to compare with.
# (test_the_files_left_out_are_those_pydicom_cannot_decode keeps this list honest.)
PYDICOM_CANNOT_DECODE = {
    "JPEG-lossy.dcm": "a JPEG whose stream the decoders reject",
    "JPEG2000-embedded-sequence-delimiter.dcm": "a J2K stream cut short by a delimiter",
    "MR_truncated.dcm": "fewer pixel bytes than the image needs",
    "badVR.dcm": "an unreadable Value Representation",
    "meta_missing_tsyntax.dcm": "no transfer syntax",
    "nested_priv_SQ.dcm": "no Bits Allocated",
}

# Lossy transfer syntax -> (largest difference in any value, largest mean absolute difference).
# The mean of the signed differences must stay within 0.5 in every case: rounding goes both
# ways, an offset does not.
LOSSY_TOLERANCE = {
    # The two reference decoders, pylibjpeg's libjpeg and dcmtk's dcmdjpeg, themselves differ by
    # up to 5 (color3d_jpeg_baseline.dcm, 4:2:2 chroma upsampling; mean 0.03) on 8-bit JPEG and
    # by up to 1 on 12-bit (JPGExtended.dcm, mean 0.01): the browser's decoder may differ as much.
    "1.2.840.10008.1.2.4.50": (5, 1.0),
    "1.2.840.10008.1.2.4.51": (1, 0.5),
    # CharLS against libjpeg's JPEG-LS: the same algorithm, exact.
    "1.2.840.10008.1.2.4.81": (0, 0),
    # OpenJPEG in both (pylibjpeg-openjpeg, Cornerstone's wasm build): the same decoder, exact.
    "1.2.840.10008.1.2.4.91": (0, 0),
}


def image_files():
    files = []
    for root in (PYDICOM_TEST_FILES, PYDICOM_DATA_FILES):
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name not in PYDICOM_CANNOT_DECODE and has_pixels(path):
                files.append(path)
    return files


def has_pixels(path):
    try:
        ds = pydicom.dcmread(path, defer_size=256)
    except Exception:
        return False
    return "PixelData" in ds


# Files that pydicom reads but dcmtk, the reference where the two disagree, cannot: the viewer
# must say that it can't show them.
DCMTK_CANNOT_READ = {
    # dcmdump: "Non-standard VR ... premature end of stream"
    "SC_rgb_jpeg.dcm": "its data set is in implicit VR under an explicit-VR transfer syntax",
}


def file_id(path):
    for root in (PYDICOM_TEST_FILES, PYDICOM_DATA_FILES):
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return path.name


FILES = [pytest.param(path, id=file_id(path)) for path in image_files()]


def frames_to_check(count):
    return sorted({0, count // 2, count - 1})


def test_the_files_left_out_are_those_pydicom_cannot_decode():
    for name in PYDICOM_CANNOT_DECODE:
        path = PYDICOM_TEST_FILES / name
        assert path.exists() and has_pixels(path), name
        with pytest.raises(Exception):  # noqa: B017 (whatever pydicom raises)
            _ = pydicom.dcmread(path).pixel_array
    assert len(FILES) > 140


IDENTIFIERS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def valid_uid(ds, keyword):
    return keyword in ds and UID(ds[keyword].value).is_valid


def with_identifiers(ds, folder):
    for keyword in IDENTIFIERS:
        if not valid_uid(ds, keyword):
            setattr(ds, keyword, generate_uid())
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = folder / "with-identifiers.dcm"
    ds.save_as(path)
    return path


def show_frame(page, index):
    page.locator("#viewport-0").focus()
    page.keyboard.press("Home")
    for _ in range(index):
        page.keyboard.press("ArrowDown")
    page.wait_for_function(
        "n => { const s = window.viewerTestHook.state(0); return s.ready && s.index === n; }",
        arg=index,
        timeout=TIMEOUT,
    )


def assert_frame_matches(path, ds, frame, page):
    expected = expected_frame(path, frame)
    pixels = page.evaluate("() => window.viewerTestHook.pixels(0)")
    shown = shown_values(pixels)
    where = f"{file_id(path)} frame {frame}"
    assert shown.shape == expected.values.shape, (where, shown.shape, expected.values.shape)
    difference = shown - expected.values
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax in LOSSY:
        largest, mean_abs = LOSSY_TOLERANCE[syntax]
    else:
        largest, mean_abs = 0, 0
    if pixels["type"] == "Float32Array":
        # Values rescaled into 32-bit floats carry their rounding: half a unit in the last place.
        largest += float(np.abs(expected.values).max()) * 2.0**-24
    elif not pixels["scaled"] and not float(pixels["slope"]).is_integer():
        # Cornerstone's CPU renderer draws floating-point values as 65,536 steps over their
        # range (StackViewport._loadAndDisplayImageCPU): one step is its rounding.
        # The values it steps over were 32-bit floats first, with their own rounding.
        largest += pixels["slope"] + float(np.abs(expected.values).max()) * 2.0**-24
        mean_abs += pixels["slope"]
    worst = float(np.abs(difference).max())
    assert worst <= largest, f"{where}: values differ by up to {worst} (allowed {largest})"
    assert float(np.abs(difference).mean()) <= mean_abs + 1e-9, where
    assert abs(float(difference.mean())) <= 0.5, f"{where}: offset {difference.mean()}"
    assert pixels["invert"] == expected.invert, where
    if expected.window:
        voi = state(page)["voi"]
        width, centre = expected.window
        assert voi and np.isclose(voi["width"], width) and np.isclose(voi["center"], centre), (
            where,
            voi,
            expected.window,
        )


@pytest.mark.parametrize("path", FILES)
def test_the_viewer_shows_the_values_the_file_holds(
    path, page, client, patient, settings, tmp_path
):
    settings.PHR_VIEWER_TEST_HOOK = True
    ds = pydicom.dcmread(path)
    result = ingest_path(patient, path, filename=path.name)
    if not all(valid_uid(ds, keyword) for keyword in IDENTIFIERS):
        # Refused, kindly, as the vault files every image under its study and series (by valid
        # UIDs: bad_sequence.dcm's are hex digests): view a copy that has them (same pixels).
        assert result.outcome == "rejected" and "identifiers" in result.message, result
        result = ingest_path(patient, with_identifiers(ds, tmp_path), filename=path.name)
    assert result.outcome == "stored", result.message
    errors = []
    page.on("console", lambda message: errors.append(message.text))
    sign_in(page, client, patient)

    page.goto(reverse("viewer:study", args=[result.study.id]))
    if path.name in DCMTK_CANNOT_READ:
        # Neither can the viewer: it says so where the image would be.
        page.wait_for_function("() => window.viewerTestHook?.state(0).error", timeout=TIMEOUT)
        message = state(page)["error"]
        assert "can't be shown" in message and "couldn't be decoded" in message, message
        return
    page.wait_for_function(
        "() => window.viewerTestHook?.state(0).ready",
        timeout=TIMEOUT,
    )
    shown = state(page)

    assert shown["error"] is None, shown["error"]
    count = frame_count(ds)
    assert shown["count"] == count
    for frame in frames_to_check(count):
        if frame:
            show_frame(page, frame)
        assert_frame_matches(path, ds, frame, page)
    assert not [e for e in errors if "Content Security Policy" in e], errors


# --- HTJ2K, made here with OpenJPH's own encoder ----------------------------------------------

OJPH_COMPRESS = "/usr/bin/ojph_compress"  # Debian's openjph-tools, installed by `make test`
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"


def htj2k_copy(source, folder):
    """The source file with its pixels compressed, losslessly, by ojph_compress into High-
    Throughput JPEG 2000: colour with the reversible colour transform (YBR_RCT)."""
    ds = pydicom.dcmread(source)
    pixels = ds.pixel_array
    colour = ds.SamplesPerPixel == 3
    codestream = folder / "frame.j2c"
    options = ["-reversible", "true"]
    if colour:  # 8-bit RGB, as a PPM image: the input ojph_compress colour-transforms
        image = folder / "frame.ppm"
        image.write_bytes(f"P6 {ds.Columns} {ds.Rows} 255\n".encode() + pixels.tobytes())
    else:  # planar little-endian samples: what it reads as a raw ("YUV") image
        image = folder / "frame.yuv"
        pixels.astype(pixels.dtype.newbyteorder("<")).tofile(image)
        options += [
            "-dims", f"{{{ds.Columns},{ds.Rows}}}", "-num_comps", "1",
            "-signed", str(bool(ds.PixelRepresentation)).lower(),
            "-bit_depth", str(ds.BitsStored), "-downsamp", "{1,1}",
        ]  # fmt: skip
    subprocess.run(
        [OJPH_COMPRESS, "-i", str(image), "-o", str(codestream), *options],
        check=True,
        capture_output=True,
    )
    ds.PixelData = encapsulate([codestream.read_bytes()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = HTJ2K_LOSSLESS
    if colour:
        ds.PhotometricInterpretation = "YBR_RCT"
        ds.PlanarConfiguration = 0
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = folder / "htj2k.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm"])
def test_an_htj2k_file_shows_its_source_values(name, page, client, patient, settings, tmp_path):
    settings.PHR_VIEWER_TEST_HOOK = True
    source = next(p.values[0] for p in FILES if p.values[0].name == name)
    path = htj2k_copy(source, tmp_path)
    result = ingest_path(patient, path, filename=name)
    assert result.outcome == "stored", result.message
    sign_in(page, client, patient)
    page.goto(reverse("viewer:study", args=[result.study.id]))
    page.wait_for_function("() => window.viewerTestHook?.state(0).ready", timeout=TIMEOUT)

    shown = shown_values(page.evaluate("() => window.viewerTestHook.pixels(0)"))
    expected = expected_frame(source).values  # the source's values: lossless, so exactly
    assert shown.shape == expected.shape
    assert float(np.abs(shown - expected).max()) == 0, name
