"""The export's DICOMDIR validates (issue 17, part 3): checked by dicom3tools' dciodvfy, the
reference validator, and read by dcmtk's dcmdump, on an export of every test file we ingest.
Records hold only the keys the standard lists for their type, in valid form; one record per
SOP Instance UID; files a DICOMDIR can't list lie beside it, named in the README."""

import hashlib
import io
import subprocess
import zipfile
from pathlib import Path

import data_store
import pydicom
import pytest
from django.core.management import call_command
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet

from phr.vault import dicomdir
from phr.vault.export import OUTSIDE_ROOT, StudyArchive
from phr.vault.models import Instance
from tests.factories import UserFactory
from tests.support.vaultdata import ingest_path

pytestmark = pytest.mark.django_db

DCIODVFY = "/usr/bin/dciodvfy"
DCMDUMP = "/usr/bin/dcmdump"
TEST_FILE_FOLDERS = (
    Path(get_testdata_file("CT_small.dcm")).parent,
    Path(data_store.__file__).parent / "data",
)


def exported(studies, folder: Path) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(b"".join(StudyArchive(studies).chunks())))
    archive.extractall(folder)
    return archive


def validator_errors(dicomdir: Path) -> list[str]:
    if not Path(DCIODVFY).exists():
        pytest.fail(f"{DCIODVFY} is missing: `make test` installs Debian's dicom3tools")
    answer = subprocess.run([DCIODVFY, str(dicomdir)], capture_output=True, text=True)
    lines = (answer.stdout + answer.stderr).splitlines()
    assert any("BasicDirectory" in line or "Directory" in line for line in lines), lines[:5]
    return [line for line in lines if line.startswith("Error")]


def dcmdump_problems(dicomdir: Path) -> list[str]:
    answer = subprocess.run([DCMDUMP, "-q", str(dicomdir)], capture_output=True, text=True)
    problems = [line for line in answer.stderr.splitlines() if line.startswith(("E:", "F:"))]
    return problems + ([f"exit {answer.returncode}"] if answer.returncode else [])


def test_the_dicomdir_of_every_test_file_we_ingest_validates(patient, tmp_path):
    outcomes = {}
    for folder in TEST_FILE_FOLDERS:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                outcome = ingest_path(patient, path).outcome
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes["stored"] > 100 and outcomes["conflict"] > 10  # both kinds are exported

    archive = exported(list(patient.studies.all()), tmp_path)

    assert validator_errors(tmp_path / "DICOMDIR") == []
    assert dcmdump_problems(tmp_path / "DICOMDIR") == []
    # Every stored file is in the ZIP, once: in the DICOMDIR or beside it.
    in_zip = sorted(
        hashlib.sha256(archive.read(name)).hexdigest()
        for name in archive.namelist()
        if name.startswith(("DICOM/", f"{OUTSIDE_ROOT}/"))
    )
    stored = sorted(Instance.objects.filter(owner=patient).values_list("sha256", flat=True))
    assert in_zip == stored
    # One record per SOP Instance UID.
    listed = [i.SOPInstanceUID for i in FileSet(tmp_path / "DICOMDIR")]
    assert len(listed) == len(set(listed))


def test_a_second_file_with_the_same_image_id_lies_beside_the_dicomdir(patient, tmp_path):
    original = ingest_path(patient, get_testdata_file("CT_small.dcm"))
    changed = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    changed.SeriesDescription = "the same image, sent again with another description"
    changed.save_as(tmp_path / "again.dcm")
    again = ingest_path(patient, tmp_path / "again.dcm")
    assert again.outcome == "conflict"

    archive = exported([original.study], tmp_path / "zip")

    fileset = FileSet(tmp_path / "zip" / "DICOMDIR")
    assert [i.SOPInstanceUID for i in fileset] == [original.instance.sop_instance_uid]
    first = Path(next(iter(fileset)).path)
    assert hashlib.sha256(first.read_bytes()).hexdigest() == original.instance.sha256
    beside = [name for name in archive.namelist() if name.startswith(f"{OUTSIDE_ROOT}/")]
    assert len(beside) == 1
    assert hashlib.sha256(archive.read(beside[0])).hexdigest() == again.instance.sha256
    readme = archive.read("README.txt").decode()
    assert beside[0] in readme and "same image ID" in readme
    assert validator_errors(tmp_path / "zip" / "DICOMDIR") == []

    # Nothing is lost on the way back in: adding the unzipped folder to another vault keeps
    # both copies, as this one does.
    fresh = UserFactory()
    call_command("import_dicom", str(tmp_path / "zip"), user=fresh.email, stdout=io.StringIO())
    assert sorted(Instance.objects.filter(owner=fresh).values_list("sha256", flat=True)) == sorted(
        [original.instance.sha256, again.instance.sha256]
    )


def test_a_file_whose_ids_are_not_uids_lies_beside_the_dicomdir(patient, tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    # Digits and dots, but no OID root (ISO or ITU-T, 0-2): as in pydicom's OBXXXX1A.dcm.
    ds.StudyInstanceUID = "999.999.2.19941105.112000"
    ds.save_as(tmp_path / "bad-uid.dcm")
    result = ingest_path(patient, tmp_path / "bad-uid.dcm")
    assert result.outcome == "stored", result.message

    archive = exported([result.study], tmp_path / "zip")

    assert not [name for name in archive.namelist() if name.startswith("DICOM/")]
    beside = [name for name in archive.namelist() if name.startswith(f"{OUTSIDE_ROOT}/")]
    assert len(beside) == 1
    assert hashlib.sha256(archive.read(beside[0])).hexdigest() == result.instance.sha256
    assert "not valid DICOM UIDs" in archive.read("README.txt").decode()
    assert len(FileSet(tmp_path / "zip" / "DICOMDIR")) == 0


@pytest.mark.parametrize(
    ("date", "time", "want_date", "want_time"),
    [
        ("1997.04.24", "14:04:38", "19970424", "140438"),  # ACR-NEMA's forms (PS3.5, retired)
        ("19970424", "140438.25", "19970424", "140438.25"),  # already standard: kept as is
    ],
)
def test_dates_and_times_are_written_in_the_standard_form(
    patient, tmp_path, date, time, want_date, want_time
):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyDate, ds.StudyTime = date, time
    ds.save_as(tmp_path / "old.dcm")
    result = ingest_path(patient, tmp_path / "old.dcm")

    exported([result.study], tmp_path / "zip")

    study = next(
        r for r in dcmread(tmp_path / "zip" / "DICOMDIR").DirectoryRecordSequence
        if r.DirectoryRecordType == "STUDY"
    )  # fmt: skip
    assert (study.StudyDate, study.StudyTime) == (want_date, want_time)
    assert validator_errors(tmp_path / "zip" / "DICOMDIR") == []


def test_a_report_record_keeps_only_its_title_modifiers_not_the_whole_report(patient, tmp_path):
    result = ingest_path(patient, get_testdata_file("test-SR.dcm"))
    report = dcmread(get_testdata_file("test-SR.dcm"))
    assert len(report.ContentSequence) > 1

    exported([result.study], tmp_path / "zip")

    leaf = dcmread(tmp_path / "zip" / "DICOMDIR").DirectoryRecordSequence[-1]
    assert leaf.DirectoryRecordType == "SR DOCUMENT"
    items = leaf.get("ContentSequence", [])
    assert all(item.RelationshipType == "HAS CONCEPT MOD" for item in items)
    assert leaf.ConceptNameCodeSequence[0].CodeValue == report.ConceptNameCodeSequence[0].CodeValue
    if report.VerificationFlag == "VERIFIED":
        assert leaf.VerificationDateTime
    assert validator_errors(tmp_path / "zip" / "DICOMDIR") == []


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("19970424", "19970424"),
        ("1997.04.24", "19970424"),
        ("19970231", None),  # no such day
        ("1997-04-24", None),  # ISO's form is not DICOM's
        ("", None),
    ],
)
def test_a_date_in_the_standard_form_or_none(value, want):
    assert dicomdir.standard_date(value) == want


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("140438", "140438"),
        ("14", "14"),
        ("140438.123456", "140438.123456"),
        ("14:04:38", "140438"),
        ("14:04", "1404"),
        ("250000", None),
        ("140438.1234567", None),
    ],
)
def test_a_time_in_the_standard_form_or_none(value, want):
    assert dicomdir.standard_time(value) == want


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("1.2.840.10008.1.2.1", True),
        ("2.25.329800735698586629295641978511506172918", True),
        ("999.999.2.19941105.112000", False),  # no ISO or ITU-T root
        ("1.2.03", False),  # a leading zero
        ("1." + "2" * 63, False),  # 65 characters
    ],
)
def test_which_ids_are_uids(value, valid):
    assert dicomdir.is_uid(value) is valid
