"""GET /viewer/study/<id>/files/?ids=a,b,c: many images of a study in one request, how the
viewer loads a whole series. File-system storage here: the files back to back, in the order
asked, with their lengths in a header; the S3 answer (presigned URLs) is in test_s3.py."""

import uuid

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from gunicorn.config import LimitRequestLine
from pydicom.data import get_testdata_file

from phr.vault.models import Instance
from tests.support.vaultdata import ingest_path
from viewer.catalogue import FILES_PER_STREAMED_BATCH, MAX_BATCH

# The batch endpoint's file-system form; its S3 form is tested in test_s3.py.
pytestmark = pytest.mark.usefixtures("file_system_storage")


def files_url(study, instances):
    ids = ",".join(str(instance.id) for instance in instances)
    return f"{reverse('viewer:study_files', args=[study.id])}?ids={ids}"


def stored_bytes(instance) -> bytes:
    with default_storage.open(instance.storage_key, "rb") as handle:
        return handle.read()


def biggest_series(studies):
    with_pixels = [
        series
        for study in studies
        for series in study.series.all()
        if series.instances.filter(rows__isnull=False).count() > 1
    ]
    return max(with_pixels, key=lambda s: s.num_instances)


def test_owner_gets_the_files_back_to_back_in_the_order_asked(patient_client, cd_studies):
    series = biggest_series(cd_studies)
    instances = list(series.instances.order_by("-instance_number"))  # any order: the one asked
    response = patient_client.get(files_url(series.study, instances))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Cache-Control"] == "private, no-store"
    expected = [stored_bytes(instance) for instance in instances]
    assert response["X-Instance-Sizes"] == ",".join(str(len(data)) for data in expected)
    assert response["Content-Length"] == str(sum(len(data) for data in expected))
    assert b"".join(response.streaming_content) == b"".join(expected)


def test_the_study_page_lists_where_to_ask_and_how_many_at_once(patient_client, ct_study):
    data = patient_client.get(reverse("viewer:study_images", args=[ct_study.id])).json()
    assert data["study"]["files_url"] == reverse("viewer:study_files", args=[ct_study.id])
    assert data["study"]["files_per_batch"] == FILES_PER_STREAMED_BATCH
    # Links are for nginx to serve; without it, the viewer asks Django for batches.
    assert not any("link" in image for series in data["series"] for image in series["images"])


def test_ids_may_come_without_their_dashes(patient_client, cd_studies):
    # How the viewer sends them, so that a full batch fits in a request line.
    series = biggest_series(cd_studies)
    instances = list(series.instances.all())
    ids = ",".join(instance.id.hex for instance in instances)
    response = patient_client.get(
        f"{reverse('viewer:study_files', args=[series.study.id])}?ids={ids}"
    )
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"".join(map(stored_bytes, instances))


def test_a_full_batch_fits_in_the_request_line_gunicorn_accepts(ct_study):
    ids = ",".join(uuid.uuid4().hex for _ in range(MAX_BATCH))
    line = f"GET {reverse('viewer:study_files', args=[ct_study.id])}?ids={ids} HTTP/1.1"
    assert len(line) <= LimitRequestLine.default


def test_an_image_of_another_study_is_404_for_the_whole_batch(patient_client, patient, ct_study):
    mine = ct_study.series.get().instances.get()
    elsewhere = ingest_path(patient, get_testdata_file("MR_small.dcm"))
    response = patient_client.get(files_url(ct_study, [mine, elsewhere.instance]))
    assert response.status_code == 404


def test_another_patient_gets_404(client, other_patient, ct_study):
    client.force_login(other_patient)
    instance = ct_study.series.get().instances.get()
    assert client.get(files_url(ct_study, [instance])).status_code == 404


def test_an_anonymous_visitor_gets_404(client, ct_study):
    instance = ct_study.series.get().instances.get()
    assert client.get(files_url(ct_study, [instance])).status_code == 404


@pytest.mark.parametrize(
    "ids",
    ["", "not-a-uuid", "{a},{a}", ",".join(str(uuid.uuid4()) for _ in range(MAX_BATCH + 1))],
)
def test_a_malformed_list_is_400(patient_client, ct_study, ids):
    instance = ct_study.series.get().instances.get()
    ids = ids.format(a=instance.id)
    response = patient_client.get(f"{reverse('viewer:study_files', args=[ct_study.id])}?ids={ids}")
    assert response.status_code == 400


def test_a_missing_file_is_404_so_that_each_image_is_asked_for_alone(patient_client, ct_study):
    instance = Instance.objects.get(series__study=ct_study)
    default_storage.delete(instance.storage_key)
    assert patient_client.get(files_url(ct_study, [instance])).status_code == 404
