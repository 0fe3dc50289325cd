"""The DICOM listener's temp files, created ahead of need (phr/hospital/spare_files.py)."""

import io
import os
import tempfile
import time

import pytest
from django.core.management import call_command
from pynetdicom import dimse_messages

from phr.hospital import spare_files
from phr.hospital.spare_files import PYNETDICOM_REQUEST, SpareFiles


@pytest.fixture
def temp_folder(tmp_path, monkeypatch):
    folder = tmp_path / "temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def spares():
    pool = SpareFiles()
    pool.install()
    yield pool
    pool.uninstall()


def made_ahead(folder, count: int) -> set[str]:
    """The spare files in `folder`, once there are `count` of them."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = {str(path) for path in folder.glob("tmp*.dcm")}
        if len(found) >= count:
            return found
        time.sleep(0.01)
    raise AssertionError(f"no {count} spare files in {folder}: {sorted(folder.iterdir())}")


def test_pynetdicom_gets_a_file_made_before_it_asked(temp_folder, spares):
    ready = made_ahead(temp_folder, 2)
    received = dimse_messages.NamedTemporaryFile(**PYNETDICOM_REQUEST)
    assert received.name in ready
    received.write(b"\0" * 128 + b"DICM")
    received.close()
    with open(received.name, "rb") as written:
        assert written.read()[128:] == b"DICM"
    # Another is made to take its place.
    assert len(made_ahead(temp_folder, 3) - {received.name}) == 2


def test_uninstall_gives_pynetdicom_its_own_files_back_and_deletes_the_spares(temp_folder):
    pool = SpareFiles()
    pool.install()
    made_ahead(temp_folder, 2)
    pool.uninstall()
    assert dimse_messages.NamedTemporaryFile is tempfile.NamedTemporaryFile
    assert list(temp_folder.iterdir()) == []


def test_a_spare_made_for_another_temp_folder_is_not_handed_out(temp_folder, spares, tmp_path):
    made_ahead(temp_folder, 2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tempfile.tempdir = str(elsewhere)  # restored by the temp_folder fixture's monkeypatch
    received = dimse_messages.NamedTemporaryFile(**PYNETDICOM_REQUEST)
    received.close()
    assert received.name.startswith(str(elsewhere))


def test_other_requests_are_passed_through(temp_folder, spares):
    made_ahead(temp_folder, 2)
    other = dimse_messages.NamedTemporaryFile(suffix=".other")
    assert other.name.endswith(".other")
    other.close()  # delete=True (the default): gone
    assert not list(temp_folder.glob("*.other"))


def test_a_temp_folder_that_is_gone_is_reported_once_and_pynetdicom_says_why(
    tmp_path, monkeypatch, caplog
):
    gone = tmp_path / "gone"
    monkeypatch.setattr(tempfile, "tempdir", str(gone))  # never created
    monkeypatch.setattr(spare_files, "RETRY_SECONDS", 0.05)
    pool = SpareFiles()
    pool.install()
    try:
        time.sleep(0.5)  # several retries
        with pytest.raises(FileNotFoundError):
            dimse_messages.NamedTemporaryFile(**PYNETDICOM_REQUEST)
    finally:
        pool.uninstall()
    warnings = [r for r in caplog.records if "could not create spare files" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.django_db
def test_a_spare_swept_by_check_vault_is_not_handed_out(upload_temp_dir, monkeypatch):
    # An idle listener's spares reach check_vault's grace period; its daily --fix deletes them
    # as leftovers. The next image must get a file that exists, not a deleted one.
    monkeypatch.setattr(tempfile, "tempdir", str(upload_temp_dir))  # as dicom_listener does
    pool = SpareFiles()
    pool.install()
    try:
        made = made_ahead(upload_temp_dir, 2)
        call_command("check_vault", "--fix", "--grace-seconds", "0", stdout=io.StringIO())
        assert not any(os.path.exists(name) for name in made)

        received = dimse_messages.NamedTemporaryFile(**PYNETDICOM_REQUEST)
        received.close()
    finally:
        pool.uninstall()
    assert os.path.exists(received.name)
    assert received.name not in made


def test_a_spare_older_than_max_age_is_thrown_away(temp_folder, monkeypatch, spares):
    made = made_ahead(temp_folder, 2)
    monkeypatch.setattr(spare_files, "MAX_AGE_SECONDS", 0.05)
    time.sleep(0.1)

    received = dimse_messages.NamedTemporaryFile(**PYNETDICOM_REQUEST)
    received.close()
    assert received.name not in made
    assert not any(os.path.exists(name) for name in made)
