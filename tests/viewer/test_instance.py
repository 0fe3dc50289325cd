"""GET /viewer/instances/<id>/: the image bytes, authorised on every request, with Range,
a strong ETag and an immutable private cache (file-system storage)."""

from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from pydicom.data import get_testdata_file

from tests.support.vaultdata import ingest_path

# About streaming from the file system: pinned even in the production-like run; the S3
# redirect has its own tests (test_s3.py).
pytestmark = pytest.mark.usefixtures("file_system_storage")


@pytest.fixture
def instance(ct_study):
    return ct_study.series.get().instances.get()


def url(instance):
    return reverse("viewer:instance", args=[instance.id])


def stored_bytes(instance) -> bytes:
    with default_storage.open(instance.storage_key, "rb") as handle:
        return handle.read()


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_owner_gets_the_whole_file_with_cache_headers(patient_client, instance):
    response = patient_client.get(url(instance))
    assert response.status_code == 200
    data = body(response)
    assert data == stored_bytes(instance)
    assert data[128:132] == b"DICM" and data[:128] == b"\0" * 128
    assert response["Content-Type"] == "application/dicom"
    assert response["Content-Length"] == str(instance.size)
    assert response["ETag"] == f'"{instance.sha256}"'
    assert response["Cache-Control"] == "private, max-age=31536000, immutable"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=0-131", 0, 131), ("bytes=128-", 128, None), ("bytes=-100", -100, None)],
)
def test_a_single_range_is_206_with_exactly_those_bytes(
    patient_client, instance, header, first, last
):
    whole = stored_bytes(instance)
    response = patient_client.get(url(instance), HTTP_RANGE=header)
    assert response.status_code == 206
    expected = whole[first : (last + 1 if last is not None else None)]
    assert body(response) == expected
    start = first if first >= 0 else len(whole) + first
    assert response["Content-Range"] == f"bytes {start}-{start + len(expected) - 1}/{len(whole)}"
    assert response["Content-Length"] == str(len(expected))
    assert response["ETag"] == f'"{instance.sha256}"'


def test_a_range_past_the_end_is_416(patient_client, instance):
    response = patient_client.get(url(instance), HTTP_RANGE=f"bytes={instance.size}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{instance.size}"


def test_a_range_running_past_the_end_is_cut_at_the_end(patient_client, instance):
    response = patient_client.get(url(instance), HTTP_RANGE=f"bytes={instance.size - 10}-99999999")
    assert response.status_code == 206
    assert body(response) == stored_bytes(instance)[-10:]


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "items=0-10", "bytes=9-2", "bytes=-"])
def test_ranges_we_do_not_serve_get_the_whole_file(patient_client, instance, header):
    response = patient_client.get(url(instance), HTTP_RANGE=header)
    assert response.status_code == 200
    assert body(response) == stored_bytes(instance)


def test_if_range_with_another_etag_gets_the_whole_file(patient_client, instance):
    response = patient_client.get(url(instance), HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"other"')
    assert response.status_code == 200
    response = patient_client.get(
        url(instance), HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=f'"{instance.sha256}"'
    )
    assert response.status_code == 206


def test_if_none_match_is_304(patient_client, instance):
    response = patient_client.get(url(instance), HTTP_IF_NONE_MATCH=f'"{instance.sha256}"')
    assert response.status_code == 304
    assert response["ETag"] == f'"{instance.sha256}"'
    assert response["Cache-Control"] == "private, max-age=31536000, immutable"


def test_head_gives_the_headers(patient_client, instance):
    response = patient_client.head(url(instance))
    assert response.status_code == 200
    assert response["Content-Length"] == str(instance.size)


def test_another_patient_gets_404(client, other_patient, instance):
    client.force_login(other_patient)
    assert client.get(url(instance)).status_code == 404
    assert client.get(url(instance), HTTP_RANGE="bytes=0-9").status_code == 404


def test_an_anonymous_visitor_gets_404(client, instance):
    assert client.get(url(instance)).status_code == 404


def test_an_unknown_id_is_404_like_anothers(patient_client):
    missing = "00000000-0000-0000-0000-000000000000"
    assert patient_client.get(reverse("viewer:instance", args=[missing])).status_code == 404


def test_behind_nginx_django_only_authorises_and_hands_over(patient_client, instance, settings):
    settings.PHR_ACCEL_REDIRECT_PREFIX = "/protected-media/"
    response = patient_client.get(url(instance))
    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == f"/protected-media/{instance.storage_key}"
    assert response.content == b""
    assert response["Content-Type"] == "application/dicom"
    assert response["Cache-Control"] == "private, max-age=31536000, immutable"


def test_a_multiframe_file_is_one_url(patient_client, patient):
    result = ingest_path(patient, get_testdata_file("examples_ybr_color.dcm"))
    instance = result.instance
    response = patient_client.get(url(instance))
    assert body(response) == Path(default_storage.path(instance.storage_key)).read_bytes()
