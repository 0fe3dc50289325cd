"""Small PNG previews of a series, rendered on the server from its middle image.

A thumbnail is rendered once and kept in storage under `thumbs/<owner>/<sha256>.png`: the
key follows the stored bytes, so it never goes stale, and deleting a study removes it with the
blobs. When a picture can't be made (no pixel data, a compression we can't decode, an image
too large to decode safely) the page shows a modality icon instead; a failed render is
remembered for a day so a broken file isn't decoded again on every page view.
"""

import io
import logging
import tempfile
import warnings
import zlib

import numpy as np
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.pixels import apply_color_lut, apply_rescale, pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from phr.vault.modalities import NON_IMAGE_MODALITIES
from phr.vault.models import Instance, Series

log = logging.getLogger(__name__)

BOX = 128
# Decoding is bounded: rows x columns x frames x samples beyond this is never decoded. Real
# studies stay far below (a 3000 x 3000 mammogram is 9 million).
MAX_DECODE_PIXELS = 100_000_000
# A deflated file is inflated in bounded steps, never past this.
MAX_INFLATED_BYTES = 256 * 1024 * 1024
INFLATE_CHUNK = 1024 * 1024
FAILED_SECONDS = 24 * 3600

_ICONS = {
    "CT": "ct",
    "MR": "mr",
    "US": "us",
    "NM": "nm",
    "PT": "nm",
    **dict.fromkeys(("CR", "DX", "RG", "MG", "RF", "XA", "IO", "PX", "BMD"), "xray"),
    **dict.fromkeys(NON_IMAGE_MODALITIES, "report"),
}


def icon_path(modality: str) -> str:
    """The static path of the icon shown when there is no picture for this modality."""
    return f"img/modality/{_ICONS.get((modality or '').upper(), 'generic')}.svg"


def thumbnail_key(owner_id, sha256: str) -> str:
    return f"thumbs/{owner_id}/{sha256}.png"


def thumbnail_is_referenced(key: str) -> bool:
    """Whether an image still has this thumbnail: an instance of the key's owner holds the
    bytes it was drawn from. Any other key under `thumbs/` is a leftover."""
    folder, _, filename = key.rpartition("/")
    owner, sha256 = folder.removeprefix("thumbs/"), filename.removesuffix(".png")
    try:
        owners = Instance.objects.filter(owner_id=owner, sha256=sha256).values_list(
            "owner_id", flat=True
        )
        # Compared as keys: "thumbs/007/…" is not owner 7's thumbnail, though 7 == int("007").
        return any(thumbnail_key(found, sha256) == key for found in owners[:1])
    except (TypeError, ValueError, ValidationError):
        return False  # not an owner id at all: nobody's thumbnail


def referenced_thumbnail_keys(owner_id=None) -> set[str]:
    """The thumbnail key of every instance (of one owner, or everybody's), drawn or not yet."""
    query = Instance.objects.all()
    if owner_id is not None:
        query = query.filter(owner_id=owner_id)
    pairs = query.order_by().values_list("owner_id", "sha256").distinct()
    return {thumbnail_key(owner, sha256) for owner, sha256 in pairs.iterator(chunk_size=2000)}


def cover_instance(series: Series) -> Instance | None:
    """The middle image of the series, in slice order: usually the most telling one."""
    instances = series.instances.all()
    count = instances.count()
    return instances[count // 2] if count else None


def thumbnail_for(instance: Instance) -> str | None:
    """The storage key of this instance's PNG thumbnail, rendering it on first use.

    None means there is no picture to show: the caller shows the modality icon.
    """
    key = thumbnail_key(instance.owner_id, instance.sha256)
    if default_storage.exists(key):
        return key
    if not _worth_decoding(instance):
        return None
    failed = f"thumb-failed:{instance.owner_id}:{instance.sha256}"
    if cache.get(failed):
        return None
    try:
        with default_storage.open(instance.storage_key, "rb") as fileobj:
            png = render_png(fileobj)
    except Exception:
        # Hostile or damaged files end up here as much as unsupported ones: never a 500.
        log.warning("thumbnail render failed for instance %s", instance.pk, exc_info=True)
        png = None
    if png is None:
        cache.set(failed, True, FAILED_SECONDS)
        return None
    saved = default_storage.save(key, ContentFile(png))
    if saved != key:
        # Another request rendered it at the same moment; the file system kept both.
        default_storage.delete(saved)
    return key


def _worth_decoding(instance: Instance) -> bool:
    """Decide from the index alone, without opening the file, when there is nothing to draw."""
    if instance.display.get("has_pixels") is False or not (instance.rows and instance.columns):
        return False
    return instance.rows * instance.columns * instance.number_of_frames <= MAX_DECODE_PIXELS


# --- rendering -----------------------------------------------------------------------------


def render_png(fileobj) -> bytes | None:
    """A PNG of the middle frame that fits a BOX x BOX square, or None if it can't be drawn."""
    return render(fileobj, box=BOX, frame=None, image_format="PNG")


def render(fileobj, *, box: int, frame: int | None, image_format: str) -> bytes | None:
    """Frame `frame` (0-based; None: the middle one) windowed as the file says, to fit a
    `box` square, as PNG or JPEG; None if it can't be drawn."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every small oddity in old files
        source, header = _open_dataset(fileobj)
        if header is None or not _within_bounds(header):
            return None
        frames = _int(header.get("NumberOfFrames"), 1)
        decoded = Dataset()
        index = frames // 2 if frame is None else min(frame, frames - 1)
        pixels = pixel_array(source, index=index, ds_out=decoded)
        # The header adds what the pixel module leaves out: rescale and window values.
        for element in header:
            if element.tag not in decoded and element.tag.group != 0x7FE0:
                decoded.add(element)
        image = _to_8bit(pixels, decoded)
    if image is None:
        return None
    picture = Image.fromarray(image)
    picture.thumbnail((box, box), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if image_format == "PNG":
        picture.save(out, "PNG", optimize=True)
    else:
        if picture.mode not in ("L", "RGB"):  # JPEG has no alpha and no 16-bit grey
            picture = picture.convert("RGB")
        picture.save(out, "JPEG", quality=90)
    return out.getvalue()


def _open_dataset(fileobj) -> tuple:
    """What to hand pixel_array (the file itself, or an inflated dataset), and the header."""
    fileobj.seek(0)
    read_preamble(fileobj, False)
    meta = _read_file_meta_info(fileobj)
    if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        # pydicom inflates a whole deflated file in memory at once; inflate it ourselves.
        dataset = _inflate_dataset(fileobj, meta)
        return dataset, dataset
    fileobj.seek(0)
    header = dcmread(fileobj, stop_before_pixels=True, defer_size=4096)
    fileobj.seek(0)
    return fileobj, header


def _within_bounds(header: Dataset) -> bool:
    rows, columns = _int(header.get("Rows"), 0), _int(header.get("Columns"), 0)
    frames = _int(header.get("NumberOfFrames"), 1)
    samples = _int(header.get("SamplesPerPixel"), 1)
    total = rows * columns * frames * samples
    return 0 < total <= MAX_DECODE_PIXELS


def _int(value, default: int) -> int:
    try:
        return max(int(value), 0) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _inflate_dataset(fileobj, meta) -> Dataset | None:
    """The deflated dataset that follows the file meta, never inflated past MAX_INFLATED_BYTES."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        total = 0
        while not inflater.eof:
            pending = inflater.unconsumed_tail or fileobj.read(INFLATE_CHUNK)
            if not pending:
                break
            produced = inflater.decompress(pending, INFLATE_CHUNK)
            total += len(produced)
            if total > MAX_INFLATED_BYTES:
                return None
            spool.write(produced)
        spool.seek(0)
        dataset = read_dataset(spool, is_implicit_VR=False, is_little_endian=True)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta = meta
    dataset.set_original_encoding(False, True)
    return dataset


def _to_8bit(pixels: np.ndarray, ds: Dataset) -> np.ndarray | None:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
        return _scale_full_range(pixels, 16 if pixels.max() > 255 else 8)
    if pixels.ndim == 3:
        # pixel_array has already turned YBR into RGB.
        if pixels.shape[-1] != 3:
            return None
        return _scale_full_range(pixels, _int(ds.get("BitsStored"), 8))
    if pixels.ndim != 2:
        return None
    values = apply_rescale(pixels, ds).astype(np.float64)
    image = _windowed(values, *_file_window(ds))
    if image is None or image.min() == image.max():
        # No window in the file, or one that turns this image into a blank square (a bone
        # slice under a brain window): show the image's full range instead.
        image = _windowed(values, float(values.min()), float(values.max()))
    if image is None:
        return None  # one flat value: nothing worth showing
    if photometric == "MONOCHROME1":
        image = 255 - image  # MONOCHROME1 means "low values are white" (many X-rays)
    return image


def _scale_full_range(pixels: np.ndarray, bits: int) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    top = float(2 ** max(1, min(bits, 32)) - 1)
    return np.clip(pixels.astype(np.float64) / top * 255.0, 0, 255).astype(np.uint8)


def _file_window(ds: Dataset) -> tuple[float, float]:
    """The window the radiographer chose, as (low, high); (0, 0) when the file has none."""
    center, width = _first_number(ds.get("WindowCenter")), _first_number(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 1:
        return center - width / 2, center + width / 2
    return 0.0, 0.0


def _windowed(values: np.ndarray, low: float, high: float) -> np.ndarray | None:
    if high <= low:
        return None
    return np.clip((values - low) / (high - low) * 255.0, 0, 255).astype(np.uint8)


def _first_number(value) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)):
        try:
            value = value[0]
        except (TypeError, IndexError):
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None
