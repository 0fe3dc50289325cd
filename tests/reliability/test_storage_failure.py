"""Storage fails in the middle of an upload: the patient is asked to try again, no row is
written, and once storage is back `check_vault` finds nothing left over.

Two kinds of storage, each with real faults:
  - the file system: a disk that fills up mid-write (a tiny tmpfs), the kernel's file-size
    limit (EFBIG after the first bytes, runs anywhere), and a read-only folder (skipped as
    root, where permissions don't stop writes);
  - S3: a real SeaweedFS of this module's own, killed right before the blob write and in the
    middle of a multipart upload, then restarted with its data. The cut multipart upload stays
    on the server, invisible to listings: `check_vault` must report it and `--fix` abort it.

These run on both backends: the storage is the test's own, the database the configured one.
"""

import contextlib
import subprocess
import threading
import uuid

import pytest
from django.core.files.storage import default_storage

from bench.common import synthesize_ct
from tests.reliability import faults
from tests.reliability.support import (
    assert_only_leftovers,
    assert_try_again,
    check_vault,
    only_result,
    orphan_count,
    rows_of,
    stored_keys,
    upload,
)
from tests.support.multipart import incomplete_uploads

LIMIT = 64 * 1024  # the blobs written here are about twice this, or far more


def assert_clean(owner) -> None:
    clean, report = check_vault(owner, "--grace-seconds", "0")
    assert clean, report
    assert orphan_count(report) == 0, report


def assert_retry_is_stored(client, data: bytes, name: str) -> None:
    again = only_result(upload(client, data, name))
    assert again["outcome"] == "stored", again
    assert rows_of(client.user) == (1, 1, 1)
    assert len(stored_keys(client.user)) == 1
    assert_clean(client.user)


# --- the file system -----------------------------------------------------------------------------


@pytest.fixture
def media_root(settings, tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": faults.hooked(
            {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": root, "base_url": None},
            }
        ),
    }
    return root


@contextlib.contextmanager
def disk_full(root, owner, tmp_path):
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={LIMIT},mode=0755", "tmpfs", str(root)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"can't mount a small tmpfs to fill up here: {mounted.stderr.strip()}")
    try:
        # The operator frees space: the same mount, now with room.
        yield lambda: subprocess.run(["mount", "-o", "remount,size=16m", str(root)], check=True)
    finally:
        if subprocess.run(["umount", str(root)], capture_output=True).returncode:
            subprocess.run(["umount", "--lazy", str(root)], check=True)


@contextlib.contextmanager
def file_size_limit(root, owner, tmp_path):
    limited = True

    @contextlib.contextmanager
    def during_the_write(storage, name):
        with faults.file_size_limit(LIMIT) if limited else contextlib.nullcontext():
            yield

    def lift():
        nonlocal limited
        limited = False

    with faults.around_blob_write(during_the_write):
        yield lift


@contextlib.contextmanager
def read_only_folder(root, owner, tmp_path):
    if not faults.writes_are_refused_in_read_only_folders(tmp_path / "probe"):
        pytest.skip(
            "running as root: a read-only folder doesn't stop root's writes (the disk-full "
            "and file-size-limit cases cover this process)"
        )
    folder = root / "vault" / str(owner.pk)
    folder.mkdir(parents=True)
    folder.chmod(0o500)
    try:
        yield lambda: folder.chmod(0o700)
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("fault", [disk_full, file_size_limit, read_only_folder])
def test_a_file_system_write_error_asks_to_try_again_and_keeps_no_rows(
    fault, media_root, patient_client, ct_files, tmp_path
):
    patient = patient_client.user
    data = ct_files[0].read_bytes()
    assert len(data) > 2 * LIMIT

    with fault(media_root, patient, tmp_path) as lift:
        assert_try_again(upload(patient_client, data, "CD/DICOM/IM00001"))
        assert rows_of(patient) == (0, 0, 0)
        lift()
        fixed, report = check_vault(patient, "--fix", "--grace-seconds", "0")
        assert fixed, report
        assert_clean(patient)
        assert_retry_is_stored(patient_client, data, "CD/DICOM/IM00001")


@pytest.mark.parametrize(
    "fault",
    [
        disk_full,
        file_size_limit,
        read_only_folder,
    ],
)
def test_a_file_system_write_error_leaves_no_half_written_blob(
    fault, media_root, patient_client, ct_files, tmp_path
):
    """IngestFailure promises "nothing half-stored was kept", without anyone running --fix."""
    patient = patient_client.user
    with fault(media_root, patient, tmp_path):
        assert_try_again(upload(patient_client, ct_files[0].read_bytes(), "IM00001"))
        assert stored_keys(patient) == []
        assert_clean(patient)


# --- S3 ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_s3():
    """A SeaweedFS of this module's own: the run's configured one must never be stopped."""
    server = faults.RestartableSeaweed(bucket="reliability").start()
    yield server
    server.crash()  # its data is thrown away: no need to wait for a graceful stop
    server.cleanup()


@pytest.fixture
def on_own_s3(settings, own_s3):
    if not own_s3.running:
        own_s3.restart()
    # A bucket per test: on SQLite a rolled-back test hands the next one the same owner id.
    bucket = f"reliability-{uuid.uuid4().hex[:12]}"
    own_s3.client().create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": faults.hooked(
            {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {**own_s3.storage_options(), "bucket_name": bucket},
            }
        ),
    }
    yield own_s3
    if not own_s3.running:
        own_s3.restart()


@pytest.fixture(scope="module")
def big_ct(tmp_path_factory):
    """One 2900 x 2900 slice (about 17 MB): past boto's 8 MB threshold, so a multipart upload
    of three parts, sent in parallel."""
    return synthesize_ct(tmp_path_factory.mktemp("big"), slices=1, size=2900)[0]


def test_s3_dying_right_before_the_blob_write(on_own_s3, patient_client, ct_files):
    patient = patient_client.user
    data = ct_files[0].read_bytes()

    @contextlib.contextmanager
    def crash_first(storage, name):
        # The ingest has already asked the server whether the blob exists: it was up.
        on_own_s3.crash()
        yield

    with faults.around_blob_write(crash_first):
        assert_try_again(upload(patient_client, data, "IM00001"))
    assert rows_of(patient) == (0, 0, 0)

    on_own_s3.restart()
    assert stored_keys(patient) == []
    assert_clean(patient)
    assert_retry_is_stored(patient_client, data, "IM00001")


def test_s3_dying_in_the_middle_of_a_multipart_upload(on_own_s3, patient_client, big_ct):
    patient = patient_client.user
    data = big_ct.read_bytes()
    crashed = threading.Lock()
    parts_done = []

    def after_a_part(**kwargs):
        # Runs in boto's transfer threads: the other parts are on the wire at this moment.
        parts_done.append(kwargs.get("event_name"))
        if crashed.acquire(blocking=False):
            on_own_s3.crash()

    @contextlib.contextmanager
    def crash_after_the_first_part(storage, name):
        events = storage.bucket.meta.client.meta.events
        events.register("after-call.s3.UploadPart", after_a_part)
        try:
            yield
        finally:
            events.unregister("after-call.s3.UploadPart", after_a_part)

    with faults.around_blob_write(crash_after_the_first_part):
        assert_try_again(upload(patient_client, data, "BIG.dcm"))
    assert parts_done, "the server was to die after a part had been uploaded"
    assert rows_of(patient) == (0, 0, 0)

    on_own_s3.restart()
    assert stored_keys(patient) == []
    # boto's own abort after the failure met a dead server, so the parts that made it are
    # usually still there: no listing of objects shows them, check_vault must.
    left = incomplete_uploads(default_storage, "vault/")
    clean, report = check_vault(patient, "--grace-seconds", "0")
    section = f"Incomplete multipart uploads past the grace period: {len(left)}\n"
    assert section in report, report
    assert all(f"  - {key} (upload {upload_id[:16]}" in report for key, upload_id in left)
    assert clean == (not left), report
    assert_only_leftovers(report)

    fixed, report = check_vault(patient, "--fix", "--grace-seconds", "0")
    assert fixed, report
    assert incomplete_uploads(default_storage, "vault/") == []
    assert_clean(patient)
    assert_retry_is_stored(patient_client, data, "BIG.dcm")
