"""`manage.py check_vault`: orphans, unreferenced thumbnails, incomplete multipart uploads,
missing blobs, checksum mismatches and stale temp files, on whichever storage the run uses
(file system, or S3 in the production-like run; multipart uploads on S3 in both runs).

The S3 bucket outlives a single test, so every check here is scoped to the test's own owner.
"""

import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from PIL import Image

from phr.vault import blobs, checker, tempfiles, thumbnails
from phr.vault.models import Document, Instance
from tests.support.multipart import incomplete_uploads, start_an_incomplete_upload
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
    stale = upload_temp_dir / f"{tempfiles.DEFAULT_UPLOAD_TEMP_PREFIX}abc123"
    fresh = upload_temp_dir / f"{tempfiles.DEFAULT_UPLOAD_TEMP_PREFIX}def456"
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


def age(path: Path, seconds: float = 2 * DAY) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def left_by_a_killed_form_upload(folder: Path, uploaded_name: str) -> Path:
    """The temp file of Django's TemporaryFileUploadHandler, in a process SIGKILLed with the
    upload half-received: the file's own cleanup never runs."""
    script = "\n".join(
        [
            "import os, signal, sys",
            "from django.conf import settings",
            "settings.configure(FILE_UPLOAD_TEMP_DIR=sys.argv[1])",
            "from django.core.files.uploadedfile import TemporaryUploadedFile",
            "upload = TemporaryUploadedFile(sys.argv[2], 'application/octet-stream', 0, None)",
            "upload.write(b'the first chunk of an upload')",
            "upload.flush()",
            "print(upload.temporary_file_path(), flush=True)",
            "os.kill(os.getpid(), signal.SIGKILL)",
        ]
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(folder), uploaded_name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    path = Path(killed.stdout.strip())
    assert path.parent == folder and path.exists(), killed.stdout
    return path


def received_by_the_dicom_listener(folder: Path, monkeypatch) -> Path:
    """A dataset pynetdicom wrote for the DICOM listener, with pynetdicom's own call; the
    listener points tempfile's default folder at the upload temp folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    with tempfile.NamedTemporaryFile(delete=False, mode="wb", suffix=".dcm") as received:
        received.write(b"DICM and a dataset cut short")
    return Path(received.name)


def test_temp_files_left_by_killed_uploads_and_the_listener_are_removed_past_grace(
    patient, upload_temp_dir, monkeypatch
):
    leftovers = [
        age(left_by_a_killed_form_upload(upload_temp_dir, "CD/DICOM/IM00001")),
        age(left_by_a_killed_form_upload(upload_temp_dir, "report.pdf")),
        age(received_by_the_dicom_listener(upload_temp_dir, monkeypatch)),
    ]
    assert leftovers[0].name.endswith(".upload") and leftovers[1].name.endswith(".upload.pdf")
    young = received_by_the_dicom_listener(upload_temp_dir, monkeypatch)
    # The folder may be shared: look-alikes that no code of ours makes, and a folder named
    # like one of ours, are never touched however old.
    not_ours = []
    for name in ("tmpabcdefgh.txt", "notes.upload", "tmpABCDEFGH.dcm", "tmpabcdefghi.dcm"):
        (upload_temp_dir / name).write_bytes(b"someone else's")
        not_ours.append(age(upload_temp_dir / name))
    folder_named_like_ours = upload_temp_dir / "tmpzzzzzzzz.dcm"
    folder_named_like_ours.mkdir()
    age(folder_named_like_ours)

    out, failure = failing_check(patient)
    assert f"Stale temp files: {len(leftovers)}\n" in out
    assert all(str(path) in out for path in leftovers)
    assert f"Temp files pending, within grace (kept): 1\n  - {young}" in out
    assert failure.returncode == 1

    out = check(patient, "--fix")
    assert f"Removed temp files: {len(leftovers)}" in out
    assert not any(path.exists() for path in leftovers)
    assert young.exists() and folder_named_like_ours.is_dir()
    assert all(path.exists() for path in not_ours)


def test_the_name_patterns_of_our_temp_files():
    ours = [
        "tmpab_c1234.upload",
        "tmpabc12345.upload.dcm",
        "tmpabc12345.upload.",
        "tmp_2zx9_q1.dcm",
    ]
    ours.append(f"{tempfiles.DEFAULT_UPLOAD_TEMP_PREFIX}anything")
    others = ["tmpabc1234.dcm", "tmpabc12345.dcm.part", "xtmpabc12345.dcm", "tmpabc12345.uploads"]
    assert [name for name in ours if not tempfiles.is_ours(name)] == []
    assert [name for name in others if tempfiles.is_ours(name)] == []


def stray_thumbnail(owner) -> str:
    """A thumbnail of bytes no image of the owner holds, as a deleted study could leave."""
    return default_storage.save(
        thumbnails.thumbnail_key(owner.pk, "e" * 64), ContentFile(b"\x89PNG of a gone image")
    )


def test_unreferenced_thumbnails_are_removed_past_grace_and_missing_ones_are_no_loss(
    patient, ct_study
):
    instance = Instance.objects.get(series__study=ct_study)
    drawn = thumbnails.thumbnail_for(instance)
    assert drawn == thumbnails.thumbnail_key(patient.pk, instance.sha256)
    stray = stray_thumbnail(patient)

    out = check(patient, "--fix")
    assert "1 blobs, 1 rows, 2 thumbnails" in out
    assert f"Unreferenced thumbnails pending, within grace (kept): 1\n  - {stray}" in out
    assert default_storage.exists(stray)

    out, failure = failing_check(patient, "--grace-seconds", "0")
    assert "Unreferenced thumbnails past the grace period: 1\n" in out
    assert stray in out and drawn not in out
    assert failure.returncode == 1

    out = check(patient, "--fix", "--grace-seconds", "0")
    assert f"Removed unreferenced thumbnails: 1\n  - {stray}" in out
    assert not default_storage.exists(stray)
    assert default_storage.exists(drawn)

    # A thumbnail that is gone is drawn again on the next page view: nothing was lost.
    default_storage.delete(drawn)
    out = check(patient, "--grace-seconds", "0")
    assert "Rows without a blob (missing): 0" in out
    assert out.rstrip().endswith("OK.")
    assert thumbnails.thumbnail_for(instance) == drawn


def test_incomplete_uploads_are_pending_within_grace_and_aborted_past_it(s3_storage, patient):
    key = blobs.instance_key(patient.pk, "d" * 64)
    upload_id = start_an_incomplete_upload(s3_storage, key)
    assert list(blobs.keys_under(f"vault/{patient.pk}")) == []  # invisible to listings

    out = check(patient, "--fix")
    assert "Incomplete multipart uploads pending, within grace (kept): 1\n" in out
    assert f"  - {key} (upload {upload_id[:16]}" in out
    assert out.rstrip().endswith("OK.")
    assert incomplete_uploads(s3_storage, f"vault/{patient.pk}/") == [(key, upload_id)]

    out, failure = failing_check(patient, "--grace-seconds", "0")
    assert "Incomplete multipart uploads past the grace period: 1\n" in out
    assert "Run with --fix to abort them." in out and key in out
    assert failure.returncode == 1

    # An hour old is young for a day's grace, and past the grace of half an hour.
    in_an_hour = timezone.now() + timedelta(hours=1)
    report = checker.check_vault(fix=True, owner_id=patient.pk, now=in_an_hour)
    assert [upload.key for upload in report.pending_uploads] == [key]
    report = checker.check_vault(fix=True, grace_seconds=1800, owner_id=patient.pk, now=in_an_hour)
    assert [upload.upload_id for upload in report.aborted_uploads] == [upload_id]
    assert report.ok
    assert incomplete_uploads(s3_storage, f"vault/{patient.pk}/") == []


def test_the_file_system_has_no_incomplete_uploads(file_system_storage, patient, ct_study):
    assert list(blobs.incomplete_uploads_under(f"vault/{patient.pk}")) == []
    assert "Incomplete multipart uploads past the grace period: 0" in check(patient)


def test_an_unknown_owner_is_refused(db):
    with pytest.raises(CommandError, match="No account uses"):
        call_command("check_vault", "--owner", "nobody@example.com", stdout=io.StringIO())
