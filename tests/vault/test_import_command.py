"""`manage.py import_dicom`: a CD folder (or ZIP) imported through the same ingest service as an
upload, with a progress bar, a summary by study, and an exit status a script can trust."""

import io
import shutil
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet

from phr.vault.models import Instance, Source, Study
from tests.support.vaultdata import dicomdir_tree


def run_import(path, email, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_dicom", str(path), user=email, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def run_failing_import(path, email) -> tuple[str, str, CommandError]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("import_dicom", str(path), user=email, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), failure.value


def stored_blobs(folder="") -> list[str]:
    """Every key in storage, through the storage API (file system or S3 alike)."""
    subfolders, files = default_storage.listdir(folder)
    keys = [f"{folder}{name}" for name in files]
    for sub in subfolders:
        keys += stored_blobs(f"{folder}{sub}/")
    return keys


def study_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " — " in line]


def cd_study_uids() -> set[str]:
    """What the CD's own DICOMDIRs say is on it: an oracle independent of our ingest."""
    tree = dicomdir_tree()
    uids = set()
    for dicomdir in (tree / "DICOMDIR", tree / "TINY_ALPHA" / "DICOMDIR"):
        uids.update(FileSet(dicomdir).find_values("StudyInstanceUID"))
    return uids


def test_cd_import_prints_a_summary_by_study_and_counts(patient):
    out, err = run_import(dicomdir_tree(), patient.email)

    studies = Study.objects.filter(owner=patient)
    assert {study.study_instance_uid for study in studies} == cd_study_uids()
    assert all(study.source == Source.IMPORT for study in studies)
    lines = study_lines(out)
    assert len(lines) == studies.count()
    assert all(line.endswith("— new") for line in lines)
    assert "MR Brain-MRA, 5 May 2003, 3 series, 11 images — new" in lines
    assert "CT, HEAD/BRAIN WO CONTRAST, 3 Sep 1995, 1 series, 4 images — new" in lines

    stored = Instance.objects.filter(owner=patient).count()
    count_line = next(line for line in out.splitlines() if line.startswith("91 files: "))
    assert f"{stored} stored" in count_line
    # Every variant of the disc's index (pydicom's CD has seven) is skipped, none "damaged":
    # nothing on this CD failed, so the exit is zero.
    assert "rejected" not in count_line
    assert "could not be imported" not in out
    assert "] 91/91 files" in err
    assert "\r[" + "#" * 30 + "]" in err


def test_second_run_reports_everything_already_there_and_stores_nothing(patient):
    run_import(dicomdir_tree(), patient.email)
    instances, blobs = Instance.objects.count(), sorted(stored_blobs())

    out, _err = run_import(dicomdir_tree(), patient.email)

    lines = study_lines(out)
    assert lines and all(line.endswith("— already in your vault") for line in lines)
    assert " stored" not in next(line for line in out.splitlines() if line.startswith("91 files"))
    assert Instance.objects.count() == instances
    assert sorted(stored_blobs()) == blobs


def test_clean_import_exits_zero(patient, tmp_path):
    cd = tmp_path / "cd"
    cd.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), cd / "IM0001")
    (cd / "AUTORUN.INF").write_text("[autorun]\nopen=viewer.exe\n")

    out, err = run_import(cd, patient.email)

    assert study_lines(out) == ["CT e+1, 19 Jan 2004, 1 series, 1 image — new"]
    assert "2 files: 1 stored, 1 skipped" in out
    assert "] 2/2 files" in err


def test_a_single_file_can_be_imported_with_another_source(patient):
    out, _err = run_import(get_testdata_file("MR_small.dcm"), patient.email, source="hospital")
    assert "— new" in out
    assert Study.objects.get(owner=patient).source == Source.HOSPITAL


def test_more_images_for_a_study_already_there_are_counted(patient, tmp_path):
    run_import(get_testdata_file("SC_rgb_rle.dcm"), patient.email)
    out, _err = run_import(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"), patient.email)  # same study
    assert study_lines(out)[0].endswith("— 1 image added")


def test_unknown_user_is_a_clear_error(db, tmp_path):
    with pytest.raises(CommandError, match="No account uses the email address") as failure:
        run_import(tmp_path, "nobody@example.com")
    assert failure.value.returncode == 1
    assert Instance.objects.count() == 0


def test_missing_path_is_a_clear_error(patient, tmp_path):
    with pytest.raises(CommandError, match="Nothing found at"):
        run_import(tmp_path / "no-such-cd", patient.email)


def test_a_damaged_file_is_named_with_its_reason_and_the_exit_is_non_zero(patient, tmp_path):
    cd = tmp_path / "cd"
    cd.mkdir()
    whole = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (cd / "IM0001").write_bytes(whole)
    (cd / "IM0002").write_bytes(whole[: len(whole) // 2])  # a copy that stopped halfway

    out, _err, failure = run_failing_import(cd, patient.email)

    assert "2 files: 1 stored, 1 rejected" in out
    assert "These files could not be imported:" in out
    assert "IM0002" in out and "damaged" in out
    assert failure.returncode == 1
    assert "1 file could not be imported" in str(failure)
