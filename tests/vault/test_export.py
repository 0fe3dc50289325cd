"""Downloading studies: a ZIP that is a standard DICOM media set (DICOMDIR + the stored bytes),
streamed in bounded memory, and only ever to the studies' owner."""

import hashlib
import io
import tracemalloc
import zipfile
from pathlib import Path

from django.core.files.storage import default_storage
from django.core.management import call_command
from django.http import StreamingHttpResponse
from django.urls import reverse
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet, is_conformant_file_id
from pydicom.uid import generate_uid

from phr.vault import dicomdir
from phr.vault.export import StudyArchive, document_names
from phr.vault.ingest import ingest_file
from phr.vault.models import Document, Instance
from tests.conftest import login_with_totp, wait_for_fresh_totp_window
from tests.factories import UserFactory
from tests.sharing.conftest import make_share, open_with_code
from tests.support.vaultdata import ingest_path

# --- helpers -------------------------------------------------------------------------------


def download_all(client, studies):
    return client.post(reverse("vault:download"), {"study": [str(study.id) for study in studies]})


def zip_of(response) -> zipfile.ZipFile:
    assert response.status_code == 200
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def dicom_names(archive: zipfile.ZipFile) -> list[str]:
    return [name for name in archive.namelist() if name.startswith("DICOM/")]


def uids_and_hashes(owner) -> list[tuple[str, str, str, str]]:
    rows = Instance.objects.filter(owner=owner).values_list(
        "series__study__study_instance_uid", "series__series_instance_uid", "sop_instance_uid",
        "sha256",
    )  # fmt: skip
    return sorted(rows)


def make_pdf(path: Path, colour="white") -> Path:
    Image.new("RGB", (60, 80), colour).save(path, "PDF")
    return path


# --- the media set -------------------------------------------------------------------------


def test_zip_is_a_dicom_media_set_of_the_stored_bytes(
    patient_client, patient, cd_studies, tmp_path
):
    response = download_all(patient_client, cd_studies)
    archive = zip_of(response)
    names = dicom_names(archive)
    assert {"DICOMDIR", "README.txt"} <= set(archive.namelist())
    assert len(names) == Instance.objects.filter(owner=patient).count()
    assert all(is_conformant_file_id(Path(name)) for name in names)

    archive.extractall(tmp_path)
    dicomdir = dcmread(tmp_path / "DICOMDIR")
    fileset = FileSet(dicomdir)
    referenced = {Path(instance.path).relative_to(tmp_path).as_posix() for instance in fileset}
    assert referenced == set(names)  # every file is referenced, every reference is a file
    assert len(fileset) == len(names)

    # Each file is the stored blob byte for byte: its SHA-256 is the one ingest recorded.
    in_zip = sorted(
        (instance.SOPInstanceUID, hashlib.sha256(Path(instance.path).read_bytes()).hexdigest())
        for instance in fileset
    )
    stored = sorted(
        Instance.objects.filter(owner=patient).values_list("sop_instance_uid", "sha256")
    )
    assert in_zip == stored

    # The records carry the hierarchy a PACS imports by.
    assert set(fileset.find_values("StudyInstanceUID")) == {
        s.study_instance_uid for s in cd_studies
    }
    readme = archive.read("README.txt").decode()
    assert f"({len(names)} files)" in readme


def test_reimporting_the_zip_gives_identical_studies(patient_client, patient, cd_studies, tmp_path):
    archive = zip_of(download_all(patient_client, cd_studies))
    archive.extractall(tmp_path / "unzipped")
    fresh = UserFactory()

    call_command(
        "import_dicom",
        str(tmp_path / "unzipped"),
        user=fresh.email,
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )

    assert uids_and_hashes(fresh) == uids_and_hashes(patient)


def test_reimporting_the_zip_file_itself_gives_identical_studies(
    patient_client, patient, cd_studies, tmp_path
):
    zip_path = tmp_path / "download.zip"
    zip_path.write_bytes(b"".join(download_all(patient_client, cd_studies).streaming_content))
    fresh = UserFactory()
    out = io.StringIO()
    call_command("import_dicom", str(zip_path), user=fresh.email, stdout=out, stderr=io.StringIO())

    assert uids_and_hashes(fresh) == uids_and_hashes(patient)
    assert "— new" in out.getvalue()


def test_documents_go_in_their_own_folder_with_safe_distinct_names(
    patient_client, patient, ct_study, tmp_path
):
    for colour, name in [("white", "Befund Müller/2024.pdf"), ("black", "Befund Müller/2024.pdf")]:
        path = make_pdf(tmp_path / f"{colour}.pdf", colour)
        with (tmp_path / "copy").open("w+b") as copy:
            copy.write(path.read_bytes())
            copy.seek(0)
            result = ingest_file(patient, copy, filename=name, attach_to=ct_study)
        assert result.outcome == "document", result.message

    archive = zip_of(patient_client.get(reverse("vault:download_study", args=[ct_study.id])))

    documents = sorted(name for name in archive.namelist() if name.startswith("DOCUMENTS/"))
    assert documents == ["DOCUMENTS/2024 (2).pdf", "DOCUMENTS/2024.pdf"]
    stored = {document.sha256 for document in Document.objects.filter(owner=patient)}
    assert {hashlib.sha256(archive.read(name)).hexdigest() for name in documents} == stored
    assert "(3 files)" in archive.read("README.txt").decode()


def test_document_names_are_plain_ascii_with_the_right_extension():
    documents = [
        Document(filename="Befund Müller.PDF", content_type="application/pdf"),
        Document(filename="befund müller.pdf", content_type="application/pdf"),
        Document(filename="../../etc/passwd", content_type="image/png"),
        Document(filename="photo.jpeg", content_type="image/jpeg"),
        Document(filename="....", content_type="image/jpeg"),
    ]
    assert document_names(documents) == [
        "Befund Muller.pdf",
        "befund muller (2).pdf",
        "passwd.png",
        "photo.jpeg",
        "document.jpg",
    ]


def test_a_file_whose_header_cannot_be_read_is_still_indexed(
    patient, ct_study, tmp_path, monkeypatch
):
    def broken(*args, **kwargs):
        raise ValueError("simulated parser quirk")

    monkeypatch.setattr("phr.vault.dicomdir.read_partial", broken)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(StudyArchive([ct_study]).chunks())))
    archive.extractall(tmp_path)

    fileset = FileSet(tmp_path / "DICOMDIR")
    instance = ct_study.series.get().instances.get()
    assert [i.SOPInstanceUID for i in fileset] == [instance.sop_instance_uid]
    assert fileset.find_values("StudyInstanceUID") == [ct_study.study_instance_uid]


def test_a_report_missing_values_its_record_needs_is_still_indexed(patient, tmp_path, monkeypatch):
    """An SR without the flag its SR DOCUMENT record requires gets an IMAGE record instead."""
    study = ingest_path(patient, get_testdata_file("test-SR.dcm")).study
    real_read = dicomdir.read_partial

    def read_without_completion_flag(*args, **kwargs):
        header = real_read(*args, **kwargs)
        del header.CompletionFlag
        return header

    monkeypatch.setattr("phr.vault.dicomdir.read_partial", read_without_completion_flag)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(StudyArchive([study]).chunks())))
    archive.extractall(tmp_path)

    leaf = dcmread(tmp_path / "DICOMDIR").DirectoryRecordSequence[-1]
    assert leaf.DirectoryRecordType == "IMAGE"
    instance = study.series.get().instances.get()
    assert leaf.ReferencedSOPInstanceUIDInFile == instance.sop_instance_uid
    assert leaf.ReferencedSOPClassUIDInFile == instance.sop_class_uid  # the file's real class
    assert len(FileSet(tmp_path / "DICOMDIR")) == 1


def test_a_missing_blob_is_left_out_and_told_in_the_readme(patient, ct_study):
    instance = ct_study.series.get().instances.get()
    default_storage.delete(instance.storage_key)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(StudyArchive([ct_study]).chunks())))

    assert dicom_names(archive) == []
    assert "could not be read from storage" in archive.read("README.txt").decode()


# --- streaming -----------------------------------------------------------------------------


def test_download_streams_with_a_safe_file_name(patient_client, ct_study):
    response = patient_client.get(reverse("vault:download_study", args=[ct_study.id]))

    assert isinstance(response, StreamingHttpResponse)
    assert response.streaming
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="2004-01-19-CT.zip"'
    assert response["Cache-Control"] == "no-store"
    assert "CompressedSamples" not in response["Content-Disposition"]  # the patient's name
    assert len(dicom_names(zip_of(response))) == 1


def test_export_memory_stays_small_whatever_the_size_of_the_files(patient, tmp_path):
    """Every pydicom test file ingest accepts, plus a long series of real 320 KB images (fresh
    UIDs), exported in several studies: peak memory must stay far below their total size."""
    data = Path(get_testdata_file("CT_small.dcm")).parent
    for path in sorted(data.iterdir()):
        if path.is_file():
            ingest_path(patient, path)
    template = dcmread(get_testdata_file("examples_overlay.dcm"))
    for number in range(1, 61):
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.InstanceNumber = number
        template.save_as(tmp_path / "slice.dcm")
        assert ingest_path(patient, tmp_path / "slice.dcm").outcome == "stored"
    studies = list(patient.studies.all())
    total = sum(Instance.objects.filter(owner=patient).values_list("size", flat=True))
    assert len(studies) > 10 and total > 20_000_000

    # What exporting costs whatever its size: the storage client's own buffers (boto3's
    # download machinery on S3: 0.5-0.7 MB, more once other tests have used the client), a
    # chunk, zipfile's state. Measured on the smallest study, and taken off the big export's.
    smallest = min(studies, key=lambda study: study.num_instances)
    _, baseline = streamed_and_peak(StudyArchive([smallest]))
    streamed, peak = streamed_and_peak(StudyArchive(studies))

    assert streamed > total
    # Measured 1.4 MB more than the smallest study's, for 21.5 MB of files: the DICOMDIR records
    # (about 6 KB per image, held until the DICOMDIR is written at the end).
    growth = peak - baseline
    assert growth < total / 8, f"peak {peak:,} ({growth:,} over one study) for {total:,} bytes"


def streamed_and_peak(archive: StudyArchive) -> tuple[int, int]:
    """Bytes the archive streams, and the peak of Python's allocations while it does."""
    tracemalloc.start()
    try:
        streamed = sum(len(chunk) for chunk in archive.chunks())
        return streamed, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_big_files_get_zip64_records_a_reader_accepts(patient, ct_study, tmp_path, monkeypatch):
    """Studies over 4 GB need ZIP64; lowering zipfile's limit makes these small files take
    that path, and both zipfile and our own ZIP reader must still accept the stream."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1024)
    data = b"".join(StudyArchive([ct_study]).chunks())
    monkeypatch.undo()

    assert b"PK\x06\x06" in data  # the ZIP64 end of central directory record
    zip_path = tmp_path / "big.zip"
    zip_path.write_bytes(data)
    instance = ct_study.series.get().instances.get()
    with zipfile.ZipFile(zip_path) as archive:
        name = "DICOM/ST000001/SE000001/IM000001"
        assert hashlib.sha256(archive.read(name)).hexdigest() == instance.sha256
    fresh = UserFactory()
    call_command(
        "import_dicom", str(zip_path), user=fresh.email, stdout=io.StringIO(), stderr=io.StringIO()
    )
    assert uids_and_hashes(fresh) == uids_and_hashes(patient)


# --- who may download ----------------------------------------------------------------------


def test_owner_gets_the_zip(patient_client, ct_study):
    response = patient_client.get(reverse("vault:download_study", args=[ct_study.id]))
    assert response.status_code == 200


def test_another_patient_gets_404(client, other_patient, ct_study):
    wait_for_fresh_totp_window()
    login_with_totp(client, other_patient)
    assert client.get(reverse("vault:download_study", args=[ct_study.id])).status_code == 404
    assert download_all(client, [ct_study]).status_code == 404


def test_anonymous_visitor_is_sent_to_login(client, ct_study):
    for response in (
        client.get(reverse("vault:download_study", args=[ct_study.id])),
        download_all(client, [ct_study]),
    ):
        assert response.status_code == 302
        assert response.url.startswith(reverse("account_login"))


def test_doctor_holding_a_share_downloads_one_study_but_not_the_whole_vault(
    client, patient, ct_study
):
    """One route per study's ZIP for the patient and the doctor alike (it logs the doctor's
    download); downloading several studies at once stays the patient's own."""
    _share, plain = make_share(patient, [ct_study], allow_download=True)
    open_with_code(client, plain.code)
    assert client.get(reverse("vault:download_study", args=[ct_study.id])).status_code == 200

    response = download_all(client, [ct_study])
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))


def test_unenrolled_patient_is_sent_to_enrolment(client, unenrolled_patient):
    client.force_login(unenrolled_patient)
    result = ingest_path(unenrolled_patient, get_testdata_file("CT_small.dcm"))
    response = client.get(reverse("vault:download_study", args=[result.study.id]))
    assert response.status_code == 302
    assert response.url == reverse("mfa_activate_totp")


def test_a_mix_of_own_and_someone_elses_studies_is_404_not_a_partial_zip(
    patient_client, ct_study, other_patient
):
    theirs = ingest_path(other_patient, get_testdata_file("MR_small.dcm")).study
    response = download_all(patient_client, [ct_study, theirs])
    assert response.status_code == 404
    assert not response.streaming


def test_malformed_study_ids_are_404(patient_client, ct_study):
    response = patient_client.post(reverse("vault:download"), {"study": [str(ct_study.id), "x"]})
    assert response.status_code == 404


def test_download_of_several_studies_is_a_post_with_csrf(patient_client, ct_study):
    assert patient_client.get(reverse("vault:download")).status_code == 405
    patient_client.handler.enforce_csrf_checks = True
    assert download_all(patient_client, [ct_study]).status_code == 403  # no CSRF token


def test_nothing_ticked_goes_back_to_the_vault(patient_client):
    response = patient_client.post(reverse("vault:download"))
    assert response.status_code == 302
    assert response.url == reverse("vault:home")


def test_several_studies_are_named_by_date_and_count(patient_client, cd_studies):
    response = download_all(patient_client, cd_studies)
    assert response["Content-Disposition"] == 'attachment; filename="2020-09-13-7-studies.zip"'
