"""On object storage, Django only authorises: the image is a 302 to a presigned URL that the
object store (a real SeaweedFS here) serves."""

import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse
from pydicom.data import get_testdata_file

from tests.support.vaultdata import ingest_path
from viewer.catalogue import LINKS_PER_BATCH

pytestmark = pytest.mark.s3


@pytest.fixture
def on_s3(settings, embedded_run_seaweed):
    # A SeaweedFS of the tests' own in both runs: these tests check URLs against its address.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {**embedded_run_seaweed.storage_options(), "querystring_expire": 300},
        },
    }
    return embedded_run_seaweed


def test_image_is_a_no_store_redirect_to_a_presigned_url_with_the_same_bytes(
    on_s3, patient_client, patient
):
    path = get_testdata_file("CT_small.dcm")
    instance = ingest_path(patient, path).instance

    response = patient_client.get(reverse("viewer:instance", args=[instance.id]))

    assert response.status_code == 302
    assert response["Cache-Control"] == "no-store"
    location = response["Location"]
    assert location.startswith(on_s3.endpoint)
    # Signed and short-lived (SigV2 or SigV4 query strings, depending on the client config).
    assert "Signature=" in location and "Expires=" in location
    with urllib.request.urlopen(location, timeout=10) as fetched:  # noqa: S310 (loopback)
        data = fetched.read()
    original = Path(path).read_bytes()
    assert data[128:] == original[128:]  # the same file (its preamble zeroed at ingest)
    assert data[:128] == b"\0" * 128


def test_nobody_else_gets_a_url(on_s3, client, patient, other_patient):
    instance = ingest_path(patient, get_testdata_file("CT_small.dcm")).instance
    client.force_login(other_patient)
    response = client.get(reverse("viewer:instance", args=[instance.id]))
    assert response.status_code == 404
    assert "Location" not in response


def test_viewer_page_may_fetch_from_the_object_store(on_s3, patient_client, patient):
    study = ingest_path(patient, get_testdata_file("CT_small.dcm")).study
    response = patient_client.get(reverse("viewer:study", args=[study.id]))
    connect_src = next(
        part for part in response["Content-Security-Policy"].split(";") if "connect-src" in part
    )
    assert on_s3.endpoint in connect_src and "'self'" in connect_src


def test_a_batch_is_presigned_urls_that_serve_the_same_bytes(on_s3, patient_client, patient):
    ct = ingest_path(patient, get_testdata_file("CT_small.dcm"))
    mr = ingest_path(patient, get_testdata_file("MR_small.dcm"))
    instance = ct.instance
    url = reverse("viewer:study_files", args=[ct.study.id])
    response = patient_client.get(f"{url}?ids={instance.id}")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"  # the URLs expire
    (location,) = response.json()["urls"]
    assert location.startswith(on_s3.endpoint) and "Signature=" in location
    with urllib.request.urlopen(location, timeout=10) as fetched:  # noqa: S310 (loopback)
        data = fetched.read()
    assert data[128:] == Path(get_testdata_file("CT_small.dcm")).read_bytes()[128:]
    # Nothing of another study, even the patient's own.
    assert patient_client.get(f"{url}?ids={mr.instance.id}").status_code == 404
    # Links are cheap to hand out: the viewer asks for more of them per batch.
    listing = patient_client.get(reverse("viewer:study_images", args=[ct.study.id])).json()
    assert listing["study"]["files_per_batch"] == LINKS_PER_BATCH


def test_on_s3_the_list_carries_no_nginx_links_even_if_configured(
    on_s3, patient_client, patient, settings
):
    # nginx could not serve an object in the bucket: the viewer must ask for presigned URLs.
    settings.PHR_SECURE_LINK_PREFIX = "/vault-files/"
    settings.PHR_SECURE_LINK_SECRET = "test-secret-0123456789abcdef0123456789"
    study = ingest_path(patient, get_testdata_file("CT_small.dcm")).study
    listing = patient_client.get(reverse("viewer:study_images", args=[study.id])).json()
    images = [image for series in listing["series"] for image in series["images"]]
    assert images and not any("link" in image for image in images)


def test_a_doctors_presigned_urls_live_a_minute_at_most(on_s3, patient):
    from django.test import Client

    from tests.sharing.conftest import make_share, open_with_code

    study = ingest_path(patient, get_testdata_file("CT_small.dcm")).study
    doctor = Client()
    _share, secrets = make_share(patient, [study])
    open_with_code(doctor, secrets.code)
    instance = study.series.get().instances.get()
    before = int(time.time())
    single = doctor.get(reverse("viewer:instance", args=[instance.id]))["Location"]
    batch = doctor.get(
        f"{reverse('viewer:study_files', args=[study.id])}?ids={instance.id}"
    ).json()["urls"]
    for url in [single, *batch]:
        assert seconds_valid(url, before) <= 60
        with urllib.request.urlopen(url, timeout=10) as fetched:  # noqa: S310 (loopback)
            assert fetched.read()[128:132] == b"DICM"


def seconds_valid(url: str, signed_at: int) -> int:
    """How long a presigned URL is valid: SigV4's X-Amz-Expires, or SigV2's Expires (a time)."""
    query = parse_qs(urlsplit(url).query)
    if "X-Amz-Expires" in query:
        return int(query["X-Amz-Expires"][0])
    return int(query["Expires"][0]) - signed_at
