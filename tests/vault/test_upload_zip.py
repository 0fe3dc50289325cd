"""ZIP uploads of a CD: the whole disc through one request, and every hostile archive refused
with its reason before anything is stored."""

import pytest
from django.urls import reverse

from phr.vault.models import Instance, Study
from tests.vault import hostile
from tests.vault.test_upload import stored_keys, upload

pytestmark = pytest.mark.django_db


def upload_zip(client, path, **headers):
    response = client.post(
        reverse("vault:upload_file"),
        data=path.read_bytes(),
        content_type="application/octet-stream",
        headers={"X-Upload-Filename": path.name, **headers},
    )
    assert response.status_code == 200
    return response.json()["results"]


def test_a_zip_of_the_cd_is_stored_file_by_file_and_is_idempotent(patient_client, tmp_path):
    results = upload_zip(patient_client, hostile.cd_zip(tmp_path))
    outcomes = [result["outcome"] for result in results]
    assert outcomes.count("stored") == Instance.objects.count() > 80
    assert {"stored", "skipped"} <= set(outcomes)
    studies = Study.objects.count()

    again = upload_zip(patient_client, hostile.cd_zip(tmp_path))
    assert "stored" not in {result["outcome"] for result in again}
    assert sum(result["outcome"] == "duplicate" for result in again) == outcomes.count("stored")
    assert Study.objects.count() == studies


@pytest.mark.parametrize(
    ("builder", "code"),
    [
        (
            lambda d: hostile.zip_of(
                d, {"../evil.dcm": hostile.testdata("CT_small.dcm").read_bytes()}
            ),
            "zip_slip",
        ),
        (lambda d: hostile.zip_of(d, {"/etc/passwd": b"root:x:0:0"}), "zip_slip"),
        (hostile.symlink_entry, "symlink"),
        (hostile.encrypted_entry, "encrypted"),
        (hostile.overlap_same_header, "overlap"),
        (lambda d: hostile.zeros_bomb(d, 64 * 1024 * 1024), "zip_bomb"),
    ],
    ids=["dot-dot", "absolute", "symlink", "encrypted", "overlap", "bomb"],
)
def test_hostile_archives_are_refused_before_anything_is_stored(
    patient_client, tmp_path, settings, builder, code
):
    settings.PHR_MAX_FILE_BYTES = 8 * 1024 * 1024  # per-entry cap, so the bomb is over it
    results = upload_zip(patient_client, builder(tmp_path))
    assert [result["code"] for result in results] == [code]
    assert results[0]["outcome"] == "rejected"
    assert results[0]["message"]
    assert Instance.objects.count() == 0
    assert stored_keys(patient_client.user) == []


def test_a_zip_whose_headers_lie_about_the_size_stops_while_inflating(patient_client, tmp_path):
    path = hostile.lying_size(tmp_path, real=4 * 1024 * 1024, declared=1024)
    results = upload_zip(patient_client, path)
    assert results[-1]["outcome"] == "rejected"
    assert results[-1]["code"] == "zip_bomb"
    assert stored_keys(patient_client.user) == []


def test_a_zip_inside_the_zip_is_skipped_with_a_reason(patient_client, tmp_path):
    inner = hostile.zip_of(
        tmp_path, {"IM1.dcm": hostile.testdata("CT_small.dcm").read_bytes()}, name="inner.zip"
    )
    outer = hostile.zip_of(
        tmp_path,
        {
            "CD/inner.zip": inner.read_bytes(),
            "CD/IM2.dcm": hostile.testdata("MR_small.dcm").read_bytes(),
        },
        name="outer.zip",
    )
    results = {result["file"]: result for result in upload_zip(patient_client, outer)}
    assert results["inner.zip"]["outcome"] == "skipped"
    assert results["inner.zip"]["code"] == "nested_zip"
    assert results["IM2.dcm"]["outcome"] == "stored"
    assert Instance.objects.count() == 1


def test_a_corrupt_zip_is_refused_kindly(patient_client):
    response = upload(patient_client, b"PK\x03\x04" + b"garbage" * 100, "broken.zip")
    result = response.json()["results"][0]
    assert result["outcome"] == "rejected"
    assert result["code"] == "not_zip"
