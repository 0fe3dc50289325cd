"""`manage.py check_vault`: orphans, missing blobs, checksum mismatches and stale temp files,
on whichever storage the run uses (file system, or S3 in the production-like run).

The S3 bucket outlives a single test, so every check here is scoped to the test's own owner.
"""

import io
import os
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from phr.vault import checker
from phr.vault.models import Document, Instance
from tests.support.vaultdata import ingest_path

DAY = 24 * 3600


def check(owner, *args) -> str:
    out = io.StringIO()
    call_command("check_vault", "--owner", owner.email, *args, stdout=out)
    return out.getvalue()


def failing_check(owner, *args) -> tuple[str, CommandError]:
    out = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("check_vault", "--owner", owner.email, *args, stdout=out)
    return out.getvalue(), failure.value


def stray_blob(owner) -> str:
    """Bytes under the owner's vault that no row points at, as a failed ingest would leave."""
    return default_storage.save(
        f"vault/{owner.pk}/dicom/ff/{'f' * 64}.dcm", ContentFile(b"left by a failed ingest")
    )


def replace_bytes(key: str, data: bytes) -> None:
    default_storage.delete(key)
    assert default_storage.save(key, ContentFile(data)) == key


def test_a_clean_vault_passes(patient, cd_studies):
    out = check(patient)

    instances = Instance.objects.filter(owner=patient).count()
    assert instances > 10
    assert f"{instances} blobs, {instances} rows" in out
    assert "Rows without a blob (missing): 0" in out
    assert "Checksum mismatches: 0" in out
    assert out.rstrip().endswith("OK.")


def test_an_orphan_is_kept_within_grace_and_removed_with_fix(patient, ct_study):
    key = stray_blob(patient)

    out = check(patient, "--fix")
    assert "Orphan blobs pending, within grace (kept): 1" in out
    assert key in out
    assert default_storage.exists(key)

    out, failure = failing_check(patient, "--grace-seconds", "0")
    assert "Orphan blobs past the grace period: 1" in out
    assert "Run with --fix" in out
    assert failure.returncode == 1
    assert default_storage.exists(key)

    # Without --owner the whole vault is walked; other owners' keys may be there too on S3.
    assert key in checker.check_vault(grace_seconds=0).orphans

    out = check(patient, "--fix", "--grace-seconds", "0")
    assert f"Removed orphan blobs: 1\n  - {key}" in out
    assert not default_storage.exists(key)
    instance = Instance.objects.get(series__study=ct_study)
    assert default_storage.exists(instance.storage_key)


def test_fix_never_removes_a_blob_whose_row_arrived_after_the_rows_were_read(
    patient, ct_study, monkeypatch
):
    # As if the ingest committed its rows between the checker reading rows and listing blobs.
    monkeypatch.setattr(checker, "referenced_rows", lambda owner_id=None: {})
    instance = Instance.objects.get(series__study=ct_study)

    report = checker.check_vault(fix=True, grace_seconds=0, owner_id=patient.pk)

    assert report.removed_orphans == []
    assert report.ok
    assert default_storage.exists(instance.storage_key)


def test_a_row_without_its_blob_is_reported_and_never_fixed(patient, ct_study):
    instance = Instance.objects.get(series__study=ct_study)
    default_storage.delete(instance.storage_key)

    out, failure = failing_check(patient, "--fix", "--grace-seconds", "0")

    assert "Rows without a blob (missing): 1" in out
    assert f"{instance.storage_key} (instance {instance.pk})" in out
    assert "restore these blobs from a backup" in out
    assert failure.returncode == 1
    assert "1 problem(s)" in str(failure)
    assert Instance.objects.filter(pk=instance.pk).exists()


def test_altered_bytes_are_a_checksum_mismatch(patient, ct_study):
    instance = Instance.objects.get(series__study=ct_study)
    with default_storage.open(instance.storage_key, "rb") as blob:
        original = blob.read()
    altered = original[:-1] + bytes([original[-1] ^ 0xFF])  # one bit-rotten byte, same size
    replace_bytes(instance.storage_key, altered)

    out, failure = failing_check(patient, "--fix", "--grace-seconds", "0")

    assert "Checksum mismatches: 1" in out
    assert f"{instance.storage_key} (instance {instance.pk}): expected sha256 " in out
    assert instance.sha256[:16] in out
    assert failure.returncode == 1
    # Reported, never "repaired": the bytes and the row are left for a person to judge.
    with default_storage.open(instance.storage_key, "rb") as blob:
        assert blob.read() == altered
    assert Instance.objects.filter(pk=instance.pk, sha256=instance.sha256).exists()


def test_a_truncated_document_is_a_mismatch_too(patient, tmp_path):
    picture = tmp_path / "report.pdf"
    Image.new("RGB", (60, 80), "white").save(picture, "PDF")
    document = ingest_path(patient, picture).document
    assert isinstance(document, Document)
    replace_bytes(document.storage_key, picture.read_bytes()[:100])

    report = checker.check_vault(owner_id=patient.pk)

    [mismatch] = report.mismatches
    assert (mismatch.key, mismatch.found_size) == (document.storage_key, 100)
    assert mismatch.rows == (f"document {document.pk}",)
    assert not report.ok


def test_stale_temp_files_of_ours_are_reported_and_removed(patient, upload_temp_dir):
    stale = upload_temp_dir / f"{checker.DEFAULT_UPLOAD_TEMP_PREFIX}abc123"
    fresh = upload_temp_dir / f"{checker.DEFAULT_UPLOAD_TEMP_PREFIX}def456"
    not_ours = upload_temp_dir / "tmp-someone-else"
    for path in (stale, fresh, not_ours):
        path.write_bytes(b"part of an upload")
    two_days_ago = time.time() - 2 * DAY
    os.utime(stale, (two_days_ago, two_days_ago))
    os.utime(not_ours, (two_days_ago, two_days_ago))

    out, failure = failing_check(patient)
    assert f"Stale temp files: 1\n  Run with --fix to remove them.\n  - {stale}" in out
    assert "Temp files pending, within grace (kept): 1" in out
    assert failure.returncode == 1

    out = check(patient, "--fix")
    assert f"Removed temp files: 1\n  - {stale}" in out
    assert not stale.exists()
    assert fresh.exists() and not_ours.exists()


def test_an_unknown_owner_is_refused(db):
    with pytest.raises(CommandError, match="No account uses"):
        call_command("check_vault", "--owner", "nobody@example.com", stdout=io.StringIO())
