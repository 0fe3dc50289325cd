"""WADO-RS frames and rendered (issue 17, part 1): frames as stored, never converted, each the
very bytes of that frame in the file (checked against pydicom's reading of the same file), and a
rendered preview a browser can show."""

import io
import re

import pytest
import requests
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames

from phr.sharing.models import DicomwebToken
from tests.sharing.conftest import stored

pytestmark = pytest.mark.django_db(transaction=True)

ANY_OCTETS = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def frames_url(live_server, study) -> str:
    series = study.series.get()
    instance = series.instances.get()
    return (
        f"{live_server.url}/dicomweb/studies/{study.study_instance_uid}/series/"
        f"{series.series_instance_uid}/instances/{instance.sop_instance_uid}"
    )


def get(url, token, accept):
    return requests.get(
        url, headers={"Authorization": f"Bearer {token}", "Accept": accept}, timeout=60
    )


def parts_of(response) -> list[tuple[str, bytes]]:
    boundary = re.search(r"boundary=([^;]+)", response.headers["Content-Type"]).group(1)
    found = []
    for part in response.content.split(f"--{boundary}".encode())[1:-1]:
        head, body = part.split(b"\r\n\r\n", 1)
        content_type = re.search(rb"Content-Type: ([^\r\n]+)", head).group(1).decode()
        found.append((content_type, body[: -len(b"\r\n")]))
    return found


@pytest.fixture
def token(patient):
    return DicomwebToken.issue(patient)[1]


def test_native_frames_are_the_files_bytes_of_each_frame(live_server, patient, token):
    study = stored(patient, "emri_small.dcm")
    source = dcmread(get_testdata_file("emri_small.dcm"))
    size = source.Rows * source.Columns * 2

    response = get(f"{frames_url(live_server, study)}/frames/5,2", token, ANY_OCTETS)

    assert response.status_code == 200
    parts = parts_of(response)
    assert [body for _, body in parts] == [
        source.PixelData[4 * size : 5 * size],
        source.PixelData[1 * size : 2 * size],
    ]
    assert parts[0][0].startswith("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1")


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("emri_small_jpeg_2k_lossless.dcm", "image/jp2"), ("emri_small_RLE.dcm", "image/dicom-rle")],
)
def test_compressed_frames_are_their_codestreams_as_stored(
    live_server, patient, token, name, media_type
):
    study = stored(patient, name)
    source = dcmread(get_testdata_file(name))
    expected = list(generate_frames(source.PixelData, number_of_frames=10))

    response = get(f"{frames_url(live_server, study)}/frames/1,10", token, ANY_OCTETS)
    assert response.status_code == 200
    assert [body for _, body in parts_of(response)] == [expected[0], expected[9]]

    # Asked as their own media type, they come labelled so.
    response = get(
        f"{frames_url(live_server, study)}/frames/3",
        token,
        f'multipart/related; type="{media_type}"',
    )
    assert response.status_code == 200
    [(content_type, body)] = parts_of(response)
    assert content_type.startswith(media_type) and body == expected[2]


def test_compressed_frames_asked_for_as_raw_pixels_are_refused_not_converted(
    live_server, patient, token
):
    study = stored(patient, "emri_small_jpeg_2k_lossless.dcm")
    response = get(
        f"{frames_url(live_server, study)}/frames/1",
        token,
        'multipart/related; type="application/octet-stream"',
    )
    assert response.status_code == 406
    assert "transfer-syntax=*" in response.json()["error"]


@pytest.mark.parametrize(
    ("frames", "status", "message"),
    [
        ("11", 404, "there is no frame 11"),
        ("0", 404, "there is no frame 0"),
        ("1,x", 400, "numbers"),
    ],
)
def test_frames_that_are_not_there_say_so(live_server, patient, token, frames, status, message):
    study = stored(patient, "emri_small.dcm")
    response = get(f"{frames_url(live_server, study)}/frames/{frames}", token, ANY_OCTETS)
    assert response.status_code == status
    assert message in response.json()["error"]


@pytest.mark.parametrize(("accept", "kind"), [("image/jpeg", "JPEG"), ("image/png", "PNG")])
def test_rendered_is_a_picture_of_the_image(live_server, patient, token, accept, kind):
    study = stored(patient, "CT_small.dcm")
    response = get(f"{frames_url(live_server, study)}/rendered", token, accept)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == accept
    picture = Image.open(io.BytesIO(response.content))
    assert picture.format == kind
    assert picture.size == (128, 128)  # CT_small's columns and rows
