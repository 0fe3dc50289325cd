"""Series thumbnails: rendered on the server from real files of every common encoding, cached in
storage, and replaced by a modality icon when there is nothing that can be drawn."""

import io

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.templatetags.static import static
from django.urls import reverse
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from phr.vault import thumbnails
from tests.support.vaultdata import dicomdir_tree, ingest_path

CR_MONOCHROME1 = dicomdir_tree() / "77654033" / "CR1" / "6154"

DRAWABLE = [
    "CT_small.dcm",  # CT, explicit VR little endian, rescale
    "MR_small.dcm",  # MR with its own window
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL
    "JPEG2000.dcm",  # JPEG 2000, NM 256 x 1024
    "SC_rgb_rle.dcm",  # RLE lossless, RGB
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "examples_ybr_color.dcm",  # multi-frame (30) ultrasound, JPEG YBR_FULL_422
    "rtdose.dcm",  # multi-frame (15), 32-bit
    "examples_palette.dcm",  # PALETTE COLOR
    "image_dfl.dcm",  # deflated transfer syntax
    str(CR_MONOCHROME1),  # X-ray, MONOCHROME1
]


def _path(name: str) -> str:
    return name if name.startswith("/") else get_testdata_file(name)


def ingest_series(owner, name):
    result = ingest_path(owner, _path(name))
    assert result.outcome == "stored", (name, result.message)
    return result.instance.series


def thumbnail_url(series) -> str:
    return reverse("vault:series_thumbnail", args=[series.id])


def png_of(response) -> Image.Image:
    body = b"".join(response.streaming_content)
    image = Image.open(io.BytesIO(body))
    image.load()
    return image


@pytest.mark.parametrize("name", DRAWABLE, ids=lambda name: name.rsplit("/", 1)[-1])
def test_thumbnail_is_a_real_png_of_the_image(patient_client, patient, name):
    series = ingest_series(patient, name)
    response = patient_client.get(thumbnail_url(series))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert set(response["Cache-Control"].split(", ")) == {"private", "max-age=86400"}
    instance = thumbnails.cover_instance(series)
    assert response["ETag"] == f'"thumb-{instance.sha256}"'
    image = png_of(response)
    assert image.format == "PNG"
    assert max(image.size) <= thumbnails.BOX
    # Not a single flat colour: there is a picture in there.
    assert any(low != high for low, high in image.convert("RGB").getextrema())
    assert default_storage.exists(thumbnails.thumbnail_key(patient.pk, instance.sha256))


def test_large_images_are_scaled_into_the_box_keeping_their_shape(patient_client, patient):
    series = ingest_series(patient, "JPEG2000.dcm")  # 256 wide, 1024 tall
    image = png_of(patient_client.get(thumbnail_url(series)))
    assert image.size == (32, 128)


def test_multi_frame_thumbnail_shows_the_middle_frame(patient_client, patient, monkeypatch):
    series = ingest_series(patient, "examples_ybr_color.dcm")
    asked = []
    real_pixel_array = thumbnails.pixel_array

    def spy(source, **kwargs):
        asked.append(kwargs.get("index"))
        return real_pixel_array(source, **kwargs)

    monkeypatch.setattr(thumbnails, "pixel_array", spy)
    assert patient_client.get(thumbnail_url(series)).status_code == 200
    assert asked == [15]  # 30 frames: only the middle one is decoded


def test_monochrome1_is_inverted():
    pixels = np.array([[0, 100], [200, 300]], dtype=np.uint16)
    as_mono2, as_mono1 = Dataset(), Dataset()
    as_mono2.PhotometricInterpretation = "MONOCHROME2"
    as_mono1.PhotometricInterpretation = "MONOCHROME1"
    dark_is_low = thumbnails._to_8bit(pixels, as_mono2)
    dark_is_high = thumbnails._to_8bit(pixels, as_mono1)
    assert dark_is_low[0, 0] == 0 and dark_is_low[1, 1] == 255
    assert (dark_is_low.astype(int) + dark_is_high.astype(int) == 255).all()


def test_a_window_that_blanks_the_image_falls_back_to_its_full_range():
    # A bone slice under a brain window would be a white square; show the range it has.
    pixels = np.array([[1000, 1100], [1200, 1300]], dtype=np.int16)
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = 40, 80
    image = thumbnails._to_8bit(pixels, ds)
    assert image.min() == 0 and image.max() == 255


def test_the_middle_image_of_a_series_is_the_cover(patient_client, patient):
    from tests.support.vaultdata import ingest_tree

    ingest_tree(patient, dicomdir_tree() / "77654033" / "CT2")
    series = patient.studies.get().series.get()
    assert series.num_instances == 4
    ordered = list(series.instances.all())
    assert thumbnails.cover_instance(series) == ordered[2]
    assert patient_client.get(thumbnail_url(series)).status_code == 200


@pytest.mark.parametrize(
    ("name", "icon"),
    [
        ("rtplan.dcm", "report.svg"),  # no pixel data at all
        ("reportsi.dcm", "report.svg"),  # a structured report
        ("JPEG-lossy.dcm", "nm.svg"),  # 12-bit JPEG extended: no decoder here
    ],
)
def test_nothing_to_draw_gives_the_modality_icon(patient_client, patient, name, icon):
    series = ingest_series(patient, name)
    response = patient_client.get(thumbnail_url(series))
    assert response.status_code == 302
    assert response.url == static(f"img/modality/{icon}")
    assert "private" in response["Cache-Control"]
    instance = thumbnails.cover_instance(series)
    assert not default_storage.exists(thumbnails.thumbnail_key(patient.pk, instance.sha256))
    # The icon itself is served (by the static files app in development and tests).
    assert patient_client.get(response.url).status_code == 200


def test_a_failed_render_is_not_retried_on_every_view(patient_client, patient, monkeypatch):
    series = ingest_series(patient, "JPEG-lossy.dcm")
    assert patient_client.get(thumbnail_url(series)).status_code == 302

    def must_not_decode(fileobj):
        raise AssertionError("decoded again")

    monkeypatch.setattr(thumbnails, "render_png", must_not_decode)
    assert patient_client.get(thumbnail_url(series)).status_code == 302


def test_images_too_large_to_decode_safely_get_the_icon(patient_client, patient, monkeypatch):
    series = ingest_series(patient, "CT_small.dcm")  # 128 x 128
    monkeypatch.setattr(thumbnails, "MAX_DECODE_PIXELS", 128 * 127)
    response = patient_client.get(thumbnail_url(series))
    assert response.status_code == 302
    assert response.url == static("img/modality/ct.svg")


def test_decoder_refuses_a_header_beyond_the_bound(monkeypatch):
    # The file's own header is checked too, not only what the index says.
    monkeypatch.setattr(thumbnails, "MAX_DECODE_PIXELS", 1000)
    with open(get_testdata_file("MR_small.dcm"), "rb") as fileobj:
        assert thumbnails.render_png(fileobj) is None


def test_second_request_is_served_from_the_cache(patient_client, patient, monkeypatch):
    series = ingest_series(patient, "CT_small.dcm")
    first = patient_client.get(thumbnail_url(series))
    instance = thumbnails.cover_instance(series)
    key = thumbnails.thumbnail_key(patient.pk, instance.sha256)
    assert key == f"thumbs/{patient.pk}/{instance.sha256}.png"
    assert default_storage.exists(key)

    def must_not_render(fileobj):
        raise AssertionError("rendered twice")

    monkeypatch.setattr(thumbnails, "render_png", must_not_render)
    second = patient_client.get(thumbnail_url(series))
    assert second.status_code == 200
    assert b"".join(second.streaming_content) == b"".join(first.streaming_content)


def test_browser_revalidation_gets_304(patient_client, patient):
    series = ingest_series(patient, "MR_small.dcm")
    etag = patient_client.get(thumbnail_url(series))["ETag"]
    response = patient_client.get(thumbnail_url(series), headers={"if-none-match": etag})
    assert response.status_code == 304
    assert response["ETag"] == etag


def test_thumbnails_are_cached_per_owner(patient_client, patient, other_patient):
    # The same file in two vaults: each owner's thumbnail lives under their own prefix, so
    # deleting one vault never removes a thumbnail the other still shows.
    mine = ingest_series(patient, "CT_small.dcm")
    ingest_series(other_patient, "CT_small.dcm")
    patient_client.get(thumbnail_url(mine))
    sha256 = thumbnails.cover_instance(mine).sha256
    assert default_storage.exists(thumbnails.thumbnail_key(patient.pk, sha256))
    assert not default_storage.exists(thumbnails.thumbnail_key(other_patient.pk, sha256))
