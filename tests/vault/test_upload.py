"""The upload endpoint: one file per request, every outcome with its message, nothing
half-stored after a failure."""

import io
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.urls import reverse
from PIL import Image
from pydicom.data import get_testdata_file

from phr.vault import blobs
from phr.vault.models import Document, Instance, Series, Study
from tests.support.vaultdata import dicomdir_tree

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


def upload(client, data: bytes, filename: str, **headers):
    return client.post(
        reverse("vault:upload_file"),
        data=data,
        content_type="application/octet-stream",
        headers={"X-Upload-Filename": quote(filename), **headers},
    )


def only_result(response) -> dict:
    results = response.json()["results"]
    assert len(results) == 1
    return results[0]


def stored_keys(owner) -> list[str]:
    """Every blob key of `owner` (on S3 the bucket outlives each test: hence the owner's own
    prefix)."""
    return list(blobs.keys_under(f"vault/{owner.pk}"))


def test_a_dicom_file_is_stored_and_indexed(patient_client):
    response = upload(patient_client, CT_SMALL.read_bytes(), "CD/DICOM/IM0001")
    assert response.status_code == 200
    result = only_result(response)
    assert result["outcome"] == "stored"
    assert result["file"] == "IM0001"  # only the last part of the path is echoed back
    assert result["study_created"] is True
    assert result["study"]["images"] == 1
    assert result["study"]["modalities"] == "CT"

    instance = Instance.objects.get()
    assert instance.owner == patient_client.user
    assert instance.rows == 128 and instance.columns == 128
    assert instance.display["pixel_spacing"]
    assert default_storage.exists(instance.storage_key)
    assert instance.storage_key.endswith(f"{instance.sha256}.dcm")
    assert "IM0001" not in instance.storage_key  # keyed by hash, never by uploaded name


def test_uploading_the_same_file_again_is_reported_and_stores_nothing(patient_client):
    upload(patient_client, CT_SMALL.read_bytes(), "a.dcm")
    again = only_result(upload(patient_client, CT_SMALL.read_bytes(), "copy-of-a.dcm"))
    assert again["outcome"] == "duplicate"
    assert again["message"] == "Already in your vault."
    assert Instance.objects.count() == 1
    assert Study.objects.get().num_instances == 1
    assert len(stored_keys(patient_client.user)) == 1


def test_same_uid_with_different_bytes_is_kept_separately_and_flagged(patient_client):
    original = CT_SMALL.read_bytes()
    upload(patient_client, original, "a.dcm")
    altered = original[:-2] + b"\x00\x01"  # same headers and UIDs, one pixel differs
    result = only_result(upload(patient_client, altered, "b.dcm"))
    assert result["outcome"] == "conflict"
    assert "Both are kept" in result["message"]
    assert Instance.objects.count() == 2
    assert Instance.objects.filter(is_conflict=True).count() == 1


def test_the_preamble_is_replaced_with_zeros(patient_client):
    data = bytearray(CT_SMALL.read_bytes())
    data[:2] = b"MZ"  # a preamble posing as a Windows executable (CVE-2019-11687)
    assert only_result(upload(patient_client, bytes(data), "polyglot.dcm"))["outcome"] == "stored"
    instance = Instance.objects.get()
    with default_storage.open(instance.storage_key, "rb") as stored:
        content = stored.read()
    assert content[:128] == bytes(128)
    assert content[128:] == bytes(data[128:])


def test_a_truncated_dicom_file_is_rejected_and_nothing_is_stored(patient_client):
    data = CT_SMALL.read_bytes()
    result = only_result(upload(patient_client, data[: len(data) // 2], "cut.dcm"))
    assert result["outcome"] == "rejected"
    assert "damaged" in result["message"] or "ends" in result["message"]
    assert Instance.objects.count() == 0
    assert stored_keys(patient_client.user) == []


def test_a_text_file_named_dcm_is_rejected_with_a_clear_reason(patient_client):
    result = only_result(upload(patient_client, b"hello, I am not an image\n" * 20, "IMG0001.dcm"))
    assert result["outcome"] == "rejected"
    assert result["code"] == "not_dicom"
    assert Instance.objects.count() == 0


def test_an_empty_file_is_rejected(patient_client):
    result = only_result(upload(patient_client, b"", "empty.dcm"))
    assert result["outcome"] == "rejected"
    assert result["code"] == "empty"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("VIEWER.EXE", b"MZ" + bytes(200), "viewer program"),
        ("autorun.inf", b"[autorun]\nopen=viewer.exe\n", "disc or system file"),
        ("index.html", b"<html></html>", "disc's viewer"),
    ],
)
def test_cd_extras_are_skipped_with_a_reason(patient_client, name, content, reason):
    result = only_result(upload(patient_client, content, name))
    assert result["outcome"] == "skipped"
    assert reason in result["message"]


def test_dicomdir_is_recognised_and_not_stored(patient_client):
    data = (dicomdir_tree() / "DICOMDIR").read_bytes()
    result = only_result(upload(patient_client, data, "DICOMDIR"))
    assert result["outcome"] == "skipped"
    assert result["code"] == "dicomdir"
    assert Instance.objects.count() == 0


def test_a_pdf_report_is_kept_as_a_document_attached_to_the_chosen_study(patient_client, ct_study):
    pdf = io.BytesIO()
    Image.new("RGB", (60, 80), "white").save(pdf, "PDF")
    response = upload(
        patient_client, pdf.getvalue(), "Report.pdf", **{"X-Attach-To-Study": str(ct_study.id)}
    )
    result = only_result(response)
    assert result["outcome"] == "document"
    document = Document.objects.get()
    assert document.study == ct_study
    assert document.filename == "Report.pdf"
    assert document.content_type == "application/pdf"
    assert default_storage.exists(document.storage_key)


def test_documents_cannot_be_attached_to_someone_elses_study(patient_client, other_patient):
    from tests.support.vaultdata import ingest_path

    their_study = ingest_path(other_patient, CT_SMALL).study
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, "PNG")
    upload(
        patient_client, png.getvalue(), "photo.png", **{"X-Attach-To-Study": str(their_study.id)}
    )
    assert Document.objects.get(owner=patient_client.user).study is None


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(patient_client, settings):
    settings.PHR_MAX_FILE_BYTES = 1000
    response = upload(patient_client, CT_SMALL.read_bytes(), "big.dcm")
    assert response.status_code == 413
    assert only_result(response)["code"] == "too_large"
    assert Instance.objects.count() == 0


def test_the_whole_cd_uploads_and_uploading_it_again_adds_nothing(patient_client):
    files = sorted(path for path in dicomdir_tree().rglob("*") if path.is_file())
    first = [only_result(upload(patient_client, path.read_bytes(), str(path))) for path in files]
    for path, result in zip(files, first, strict=True):
        if path.name.startswith("DICOMDIR"):  # the disc's index, in several variants: skipped
            assert (result["outcome"], result["code"]) == ("skipped", "dicomdir"), path
        elif path.name.startswith("README"):
            assert result["outcome"] == "skipped"
        else:
            assert result["outcome"] == "stored", (path, result)
    counts = (Study.objects.count(), Series.objects.count(), Instance.objects.count())
    keys = sorted(stored_keys(patient_client.user))

    second = [only_result(upload(patient_client, path.read_bytes(), str(path))) for path in files]
    assert {result["outcome"] for result in second} == {"duplicate", "skipped"}
    assert (Study.objects.count(), Series.objects.count(), Instance.objects.count()) == counts
    assert sorted(stored_keys(patient_client.user)) == keys
    for study in Study.objects.all():
        assert study.num_instances == Instance.objects.filter(series__study=study).count()
        assert study.num_series == study.series.count()


def test_two_patients_uploading_the_same_study_get_independent_records(
    patient_client, other_patient
):
    from tests.support.vaultdata import ingest_path

    ingest_path(other_patient, CT_SMALL)
    assert (
        only_result(upload(patient_client, CT_SMALL.read_bytes(), "a.dcm"))["outcome"] == "stored"
    )
    assert Study.objects.count() == 2
    keys = set(Instance.objects.values_list("storage_key", flat=True))
    assert len(keys) == 2


def test_storage_failure_gives_try_again_and_leaves_no_rows(patient_client, settings, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the media folder should be")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": blocker / "media"},
        },
    }
    response = upload(patient_client, CT_SMALL.read_bytes(), "a.dcm")
    assert response.status_code == 503
    result = only_result(response)
    assert result["outcome"] == "error"
    assert "try" in result["message"].lower() and "Nothing was lost" in result["message"]
    assert (Study.objects.count(), Series.objects.count(), Instance.objects.count()) == (0, 0, 0)


@pytest.fixture
def failing_instance_insert(db):
    """Make the database itself refuse new instance rows, after the blob has been written."""
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER refuse_instances BEFORE INSERT ON vault_instance "
                "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION refuse_instances() RETURNS trigger AS $$ "
                "BEGIN RAISE EXCEPTION 'injected fault'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_instances BEFORE INSERT ON vault_instance "
                "FOR EACH ROW EXECUTE FUNCTION refuse_instances()"
            )
    yield
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            cursor.execute("DROP TRIGGER refuse_instances")
        else:
            cursor.execute("DROP TRIGGER refuse_instances ON vault_instance")
            cursor.execute("DROP FUNCTION refuse_instances()")


def test_database_failure_after_the_blob_is_written_removes_the_blob(
    patient_client, failing_instance_insert
):
    response = upload(patient_client, CT_SMALL.read_bytes(), "a.dcm")
    assert response.status_code == 503
    assert only_result(response)["outcome"] == "error"
    assert (Study.objects.count(), Series.objects.count(), Instance.objects.count()) == (0, 0, 0)
    assert stored_keys(patient_client.user) == [], "the blob written before the failure is gone"


def test_upload_needs_a_signed_in_enrolled_patient(client, unenrolled_patient):
    response = upload(client, CT_SMALL.read_bytes(), "a.dcm")
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))
    client.force_login(unenrolled_patient)
    response = upload(client, CT_SMALL.read_bytes(), "a.dcm")
    assert response.url == reverse("mfa_activate_totp")
    assert Instance.objects.count() == 0


def test_upload_is_csrf_protected(patient, client):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(patient)
    response = upload(strict, CT_SMALL.read_bytes(), "a.dcm")
    assert response.status_code == 403
    assert Instance.objects.count() == 0


def test_the_add_studies_page_offers_folder_files_and_drop(patient_client):
    html = patient_client.get(reverse("vault:upload")).content.decode()
    assert "webkitdirectory" in html
    assert 'id="drop-zone"' in html
    assert "vault/upload.js" in html
