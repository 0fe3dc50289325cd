"""Series bundles on a real S3 server: a series' files back to back in one object, handed to the
viewer as one presigned URL with each file's place in it (phr/vault/bundles.py)."""

import hashlib
import time
import urllib.request
from datetime import timedelta

import pydicom
import pytest
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from phr.rights.erasure import erase_account
from phr.sharing.services import create_share
from phr.vault import blobs, bundles
from phr.vault.checker import check_vault
from phr.vault.lifecycle import delete_study
from tests.support.vaultdata import ingest_path, longest_stack

pytestmark = pytest.mark.s3


def batch(client, series, instances=None):
    """The viewer's batch answer for these instances (default: the whole series, in order)."""
    instances = instances or list(
        series.instances.order_by("slice_position", "instance_number", "created_at", "id")
    )
    ids = ",".join(instance.id.hex for instance in instances)
    response = client.get(f"{reverse('viewer:study_files', args=[series.study.id])}?ids={ids}")
    assert response.status_code == 200
    return instances, response.json()


def fetch(url, offset=None, size=None) -> bytes:
    request = urllib.request.Request(url)  # noqa: S310 (the tests' own SeaweedFS on loopback)
    if offset is not None:
        request.add_header("Range", f"bytes={offset}-{offset + size - 1}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == (206 if offset is not None else 200)
        return response.read()


def stored_bytes(instance) -> bytes:
    with default_storage.open(instance.storage_key, "rb") as stored:
        return stored.read()


def test_a_series_comes_as_ranges_of_its_bundle_each_the_files_own_bytes(
    s3_storage, patient_client, cd_studies
):
    series = longest_stack(cd_studies)

    instances, answer = batch(patient_client, series)

    assert len(set(answer["urls"])) == 1, "one presigned URL, the bundle's"
    (url,) = set(answer["urls"])
    assert "Signature=" in url and ".bundle" in url
    assert answer["cacheable"] is False
    offsets = [offset for offset, _size in answer["ranges"]]
    assert offsets == sorted(offsets), "back to back in the viewer's order"
    for instance, (offset, size) in zip(instances, answer["ranges"], strict=True):
        data = fetch(url, offset, size)
        assert len(data) == instance.size
        assert hashlib.sha256(data).hexdigest() == instance.sha256
    # Nothing but the series: the bundle is exactly its files.
    assert len(fetch(url)) == sum(instance.size for instance in instances)


def test_a_few_files_of_a_series_come_from_the_same_bundle(s3_storage, patient_client, cd_studies):
    series = longest_stack(cd_studies)
    everything = list(series.instances.order_by("slice_position", "instance_number"))
    last, first = everything[-1], everything[0]

    _, answer = batch(patient_client, series, [last, first])  # in the order asked

    assert [size for _offset, size in answer["ranges"]] == [last.size, first.size]
    assert hashlib.sha256(fetch(answer["urls"][0], *answer["ranges"][0])).hexdigest() == (
        last.sha256
    )


def test_a_series_too_small_for_a_bundle_gets_a_url_per_file(s3_storage, patient_client, patient):
    study = ingest_path(patient, get_testdata_file("CT_small.dcm")).study
    series = study.series.get()

    _, answer = batch(patient_client, series)

    assert "ranges" not in answer
    assert ".bundle" not in answer["urls"][0]
    assert not list(blobs.keys_under(bundles.BUNDLES_ROOT))


def test_with_bundles_off_every_file_gets_its_own_url(
    s3_storage, patient_client, cd_studies, settings
):
    settings.PHR_SERIES_BUNDLES = "off"
    series = longest_stack(cd_studies)

    instances, answer = batch(patient_client, series)

    assert "ranges" not in answer and len(set(answer["urls"])) == len(instances)
    assert not list(blobs.keys_under(bundles.BUNDLES_ROOT))


def add_image_to(series, patient, tmp_path):
    """A new image of the same series (a copy of one of its files under a new SOP UID)."""
    source = series.instances.order_by("instance_number").first()
    with default_storage.open(source.storage_key, "rb") as stored:
        dataset = pydicom.dcmread(stored)
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.InstanceNumber = 999
    path = tmp_path / "new-image.dcm"
    dataset.save_as(path, enforce_file_format=True)
    result = ingest_path(patient, path)
    assert result.outcome == "stored" and result.instance.series_id == series.id
    return result.instance


def test_a_new_image_gets_a_new_bundle_and_the_old_one_is_a_leftover(
    s3_storage, patient_client, patient, cd_studies, tmp_path
):
    series = longest_stack(cd_studies)
    _, before = batch(patient_client, series)
    old_key = bundles.bundles_of([series.id])[series.id].key

    added = add_image_to(series, patient, tmp_path)
    instances, after = batch(patient_client, series)

    new_key = bundles.bundles_of([series.id])[series.id].key
    assert new_key != old_key
    assert set(after["urls"]) != set(before["urls"])
    place = after["ranges"][[instance.id for instance in instances].index(added.id)]
    assert hashlib.sha256(fetch(after["urls"][0], *place)).hexdigest() == added.sha256
    # The old bundle is no longer named by anything: the checker removes it, and only it.
    report = check_vault(fix=True, grace_seconds=0)
    assert report.removed_bundles == [old_key]
    assert default_storage.exists(new_key) and not default_storage.exists(old_key)
    assert report.bundles_seen == 2 and report.ok


def test_a_damaged_file_means_no_bundle_and_urls_per_file(
    s3_storage, patient_client, cd_studies, caplog
):
    series = longest_stack(cd_studies)
    damaged = series.instances.order_by("instance_number").last()
    default_storage.delete(damaged.storage_key)
    with open(get_testdata_file("CT_small.dcm"), "rb") as other_bytes:
        default_storage.save(damaged.storage_key, other_bytes)

    instances, answer = batch(patient_client, series)

    assert "ranges" not in answer and len(set(answer["urls"])) == len(instances)
    assert not list(blobs.keys_under(bundles.BUNDLES_ROOT))
    assert "doesn't hold the bytes its image row names" in caplog.text


def test_deleting_the_study_removes_its_bundle(s3_storage, patient_client, cd_studies):
    series = longest_stack(cd_studies)
    batch(patient_client, series)
    key = bundles.bundles_of([series.id])[series.id].key
    assert default_storage.exists(key)

    delete_study(series.study)

    assert not default_storage.exists(key)


def test_erasing_the_account_removes_its_bundles(s3_storage, patient_client, patient, cd_studies):
    series = longest_stack(cd_studies)
    batch(patient_client, series)
    assert list(blobs.keys_under(f"{bundles.BUNDLES_ROOT}/{patient.pk}"))

    record = erase_account(patient)

    assert record.blobs_left_behind == 0
    assert not list(blobs.keys_under(bundles.BUNDLES_ROOT))


def test_nobody_else_gets_the_bundle(s3_storage, client, cd_studies, other_patient):
    series = longest_stack(cd_studies)
    client.force_login(other_patient)
    ids = ",".join(instance.id.hex for instance in series.instances.all())
    response = client.get(f"{reverse('viewer:study_files', args=[series.study.id])}?ids={ids}")
    assert response.status_code == 404
    assert not list(blobs.keys_under(bundles.BUNDLES_ROOT))


@pytest.mark.django_db(transaction=True)
def test_by_default_the_bundle_is_built_in_the_background_for_the_next_view(
    s3_storage, patient_client, cd_studies, settings
):
    settings.PHR_SERIES_BUNDLES = "background"
    series = longest_stack(cd_studies)
    key = bundles.bundles_of([series.id])[series.id].key

    instances, first_view = batch(patient_client, series)
    assert "ranges" not in first_view, "the first view doesn't wait for the bundle"
    deadline = time.monotonic() + 60
    while not default_storage.exists(key):
        assert time.monotonic() < deadline, "the bundle was never built"
        time.sleep(0.1)
    _, next_view = batch(patient_client, series)

    assert len(next_view["ranges"]) == len(instances) and key in next_view["urls"][0]
    assert fetch(next_view["urls"][0]) == b"".join(map(stored_bytes, instances))
    # Let the thread finish, so that it holds no database connection when the test ends.
    while cache.get(bundles.building_key(series.id)):
        assert time.monotonic() < deadline, "the bundle's thread never ended"
        time.sleep(0.05)


def test_sharing_a_study_has_its_bundles_built_for_the_doctors_first_look(
    s3_storage, patient, cd_studies, django_capture_on_commit_callbacks
):
    series = longest_stack(cd_studies)
    key = bundles.bundles_of([series.id])[series.id].key

    with django_capture_on_commit_callbacks(execute=True):
        create_share(
            patient,
            [series.study],
            label="Dr Example",
            expires_at=timezone.now() + timedelta(days=7),
        )

    assert default_storage.exists(key)


def test_a_damaged_file_late_in_a_big_bundle_leaves_no_parts_behind(
    s3_storage, patient_client, patient, tmp_path
):
    # Four 8 MB images: the bundle goes up as a multipart upload, and the damaged last file is
    # found only once the first parts are stored. They must not stay (they hold the patient's
    # bytes, and no listing of objects shows them).
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series_uid = generate_uid()
    for number in range(1, 5):
        template.Rows = template.Columns = 2048
        template.PixelData = bytes([number]) * (2048 * 2048 * 2)
        template.SeriesInstanceUID, template.InstanceNumber = series_uid, number
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = tmp_path / f"{number}.dcm"
        template.save_as(path, enforce_file_format=True)
        result = ingest_path(patient, path)
    series = result.instance.series
    damaged = result.instance
    default_storage.delete(damaged.storage_key)
    with open(tmp_path / "1.dcm", "rb") as other_bytes:  # another image's bytes
        default_storage.save(damaged.storage_key, other_bytes)

    _, answer = batch(patient_client, series)

    assert "ranges" not in answer
    assert not list(blobs.keys_under(bundles.BUNDLES_ROOT))
    assert not list(blobs.incomplete_uploads_under(bundles.BUNDLES_ROOT))


def test_a_doctor_gets_the_bundles_of_shared_studies_only(s3_storage, patient, cd_studies):
    series = longest_stack(cd_studies)
    others = [study for study in cd_studies if study.pk != series.study_id]
    elsewhere = max(
        (s for study in others for s in study.series.all()), key=lambda s: s.num_instances
    )
    assert elsewhere.num_instances >= bundles.MIN_FILES  # a series that would have a bundle
    _share, secrets = create_share(
        patient, [series.study], label="Dr Example", expires_at=timezone.now() + timedelta(days=7)
    )
    doctor = Client()
    assert doctor.post("/access", {"code": secrets.code, "pin": ""}).status_code == 302

    _, answer = batch(doctor, series)
    ids = ",".join(instance.id.hex for instance in elsewhere.instances.all())
    outside = doctor.get(f"{reverse('viewer:study_files', args=[elsewhere.study.id])}?ids={ids}")

    assert answer["ranges"] and ".bundle" in answer["urls"][0]
    assert outside.status_code == 404  # SECURITY 10: no oracle, and no bundle handed out
    assert not default_storage.exists(bundles.bundles_of([elsewhere.id])[elsewhere.id].key)
