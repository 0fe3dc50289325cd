"""What a viewer must show for one frame of a DICOM file: the reference the browser tests
compare the viewer's decoded values with, value by value.

The reference is pydicom's decode (with pylibjpeg's libjpeg and openjpeg) taken to the values a
doctor reads:
- greyscale: after the Modality LUT (rescale, or the Modality LUT Sequence), with an enhanced
  multi-frame file's own per-frame (or shared) Pixel Value Transformation, which pydicom 3
  itself does not apply, and RT Dose's Dose Grid Scaling (values in Gy);
- colour: RGB (pydicom converts YBR), palette colour through its lookup tables; samples of more
  than 8 bits brought to the 8 bits a screen shows, keeping the top bits.
"""

import base64
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.pixels import apply_color_lut, apply_modality_lut

# Transfer syntaxes whose decode must match the reference exactly.
LOSSY = {
    "1.2.840.10008.1.2.4.50",  # JPEG baseline (8-bit)
    "1.2.840.10008.1.2.4.51",  # JPEG extended (12-bit)
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossy allowed)
}


@dataclass
class Expected:
    values: np.ndarray  # (rows, columns) greyscale, (rows, columns, 3) colour
    window: tuple | None  # (width, centre) the viewer should open with; None: not checked
    invert: bool  # MONOCHROME1: shown white-on-black inverted


def frame_count(ds) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def _frame_item(ds, frame, keyword):
    """The functional group `keyword` that applies to `frame`: its per-frame one, else shared."""
    for groups in (ds.get("PerFrameFunctionalGroupsSequence"), None):
        item = groups[frame] if groups is not None and len(groups) > frame else None
        if item is not None and keyword in item:
            return item[keyword][0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and keyword in shared[0]:
        return shared[0][keyword][0]
    return None


def _modality_values(ds, frame, stored):
    transform = _frame_item(ds, frame, "PixelValueTransformationSequence")
    if transform is not None and "RescaleSlope" in transform:
        slope = float(transform.RescaleSlope)
        intercept = float(transform.get("RescaleIntercept", 0))
        return stored.astype(np.float64) * slope + intercept
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    if ds.get("Modality") == "RTDOSE" and "DoseGridScaling" in ds:
        values = values * float(ds.DoseGridScaling)
    return values


def _little_endian_tables(ds):
    """pydicom 3.0.2 reads the (unsegmented) Palette Color LUT Data of a big-endian file in
    little-endian order: OBXXXX1A_expb.dcm's red table starts 0x0000, 0x0001, where dcmtk's
    dcmdump reads 0x0000, 0x0100, as in the same image's little-endian file. Where the two
    disagree we follow dcmtk: the tables are handed to pydicom in the order it reads."""
    if ds.original_encoding[1] is not False:
        return ds
    for colour in ("Red", "Green", "Blue"):
        keyword = f"{colour}PaletteColorLookupTableData"
        if keyword in ds:
            ds[keyword].value = np.frombuffer(ds[keyword].value, ">u2").astype("<u2").tobytes()
    return ds


def _first(value):
    """The first of a multi-valued window (the default one), or the only one."""
    return float(value[0]) if isinstance(value, pydicom.multival.MultiValue) else float(value)


def _window(ds, frame, values):
    voi = _frame_item(ds, frame, "FrameVOILUTSequence") or ds
    if "WindowCenter" in voi and "WindowWidth" in voi:
        return _first(voi.WindowWidth), _first(voi.WindowCenter)
    if "VOILUTSequence" in ds:
        return None  # shown through the LUT, not a window
    # No window in the file: the full range, in the standard's terms (PS3.3 C.11.2.1.2.1, a
    # linear window of width w and centre c spans c - 0.5 - (w - 1) / 2 to c - 0.5 + (w - 1) / 2),
    # from the lowest value to the highest.
    low, high = float(values.min()), float(values.max())
    return high - low + 1, low + (high - low + 1) / 2


def expected_frame(path, frame=0) -> Expected:
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array[frame] if frame_count(ds) > 1 else ds.pixel_array
    photometric = ds.PhotometricInterpretation
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(stored, _little_endian_tables(ds))
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return Expected(rgb.astype(np.int64) >> (bits - 8), None, False)
    if ds.SamplesPerPixel > 1:
        bits = int(ds.BitsStored)
        return Expected(stored.astype(np.int64) >> max(0, bits - 8), None, False)
    values = _modality_values(ds, frame, stored)
    return Expected(values, _window(ds, frame, values), photometric == "MONOCHROME1")


def shown_values(pixels) -> np.ndarray:
    """The viewer's values (window.viewerTestHook.pixels()) as the renderer maps them to
    modality values: rescaled unless the loader did, through the modality LUT if it has one."""
    data = np.frombuffer(base64.b64decode(pixels["base64"]), dtype=_DTYPES[pixels["type"]])
    rows, columns = pixels["rows"], pixels["columns"]
    if pixels["color"]:
        components = data.size // (rows * columns)
        return data.reshape(rows, columns, components)[..., :3].astype(np.int64)
    values = data.astype(np.float64).reshape(rows, columns)
    lut = pixels["modalityLUT"]
    if lut:
        table = np.asarray(lut["lut"], dtype=np.float64)
        index = np.clip(values - lut["firstValueMapped"], 0, len(table) - 1).astype(np.int64)
        return table[index]
    if not pixels["scaled"]:
        values = values * pixels["slope"] + pixels["intercept"]
    return values


_DTYPES = {
    "Uint8Array": np.uint8,
    "Uint8ClampedArray": np.uint8,
    "Int8Array": np.int8,
    "Uint16Array": np.uint16,
    "Int16Array": np.int16,
    "Uint32Array": np.uint32,
    "Int32Array": np.int32,
    "Float32Array": np.float32,
    "Float64Array": np.float64,
}
