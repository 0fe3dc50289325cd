"""Export everything: one ZIP with the media set, the documents and the machine-readable record;
importing it into another account gives identical studies."""

import csv
import hashlib
import io
import json
import tempfile
import zipfile

from django.test import Client
from django.urls import reverse

from phr.vault.ingest import ingest_zip
from phr.vault.models import Instance
from tests.vault.test_delete_study import reauthenticate


def download_everything(client) -> zipfile.ZipFile:
    reauthenticate(client)
    response = client.get(reverse("rights:export"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="my-vault-')
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def identity(owner) -> set[tuple[str, str, str]]:
    return set(
        Instance.objects.filter(owner=owner).values_list(
            "series__study__study_instance_uid", "sop_instance_uid", "sha256"
        )
    )


def test_export_needs_recent_reauthentication(patient_client, full_vault):
    response = patient_client.get(reverse("rights:export"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_reauthenticate"))


def test_the_zip_holds_everything(patient_client, patient, full_vault):
    archive = download_everything(patient_client)
    names = set(archive.namelist())

    assert {"DICOMDIR", "README.txt", "RECORD/studies.json", "RECORD/shares.csv"} <= names
    assert "DOCUMENTS/Report.pdf" in names
    record = json.loads(archive.read("RECORD/studies.json"))
    images = [
        image
        for study in record["studies"]
        for series in study["series"]
        for image in series["images"]
    ]
    # Every image of every study (the Inbox one too), byte-identical to what the vault keeps.
    assert len(images) == Instance.objects.filter(owner=patient).count()
    for image in images:
        assert hashlib.sha256(archive.read(image["file"])).hexdigest() == image["sha256"]
    assert {d["original_name"] for d in record["documents"]} == {"Report.pdf"}

    shares = json.loads(archive.read("RECORD/shares.json"))
    [share] = shares
    assert share["label"] == full_vault["share"].label
    assert {"Share created", "Opened"} <= {event["what"] for event in share["access_log"]}
    log_rows = list(
        csv.DictReader(io.StringIO(archive.read("RECORD/access_log.csv").decode("utf-8-sig")))
    )
    assert any(row["what"] == "Opened" and row["ip"] == "203.0.113.9" for row in log_rows)

    deposits = json.loads(archive.read("RECORD/deposits.json"))
    assert {code["label"] for code in deposits["deposit_codes"]} == {"Knee MRI"}
    assert [s["sent_by"] for s in deposits["studies_sent_by_hospitals"]] == ["St Mary's Hospital"]
    account = json.loads(archive.read("RECORD/account.json"))
    assert account["email"] == patient.email


def test_importing_the_zip_into_another_account_gives_identical_studies(
    patient_client, patient, other_patient, full_vault
):
    archive = download_everything(patient_client)
    with tempfile.TemporaryFile() as spool:
        spool.write(archive.fp.getvalue())
        spool.seek(0)
        results = list(ingest_zip(other_patient, spool, filename="my-vault.zip"))

    assert not [r for r in results if r.outcome in ("rejected", "error")]
    assert identity(other_patient) == identity(patient)
    assert other_patient.documents.get().sha256 == full_vault["report"].sha256


def test_no_cell_of_the_spreadsheets_is_a_formula(patient_client, patient, ct_study):
    """A doctor's browser name and a share's label are other people's text: in a spreadsheet a
    cell starting with = + - @ (or a tab or carriage return) would run as a formula."""
    from tests.sharing.conftest import make_share, open_with_code

    _share, secrets = make_share(patient, [ct_study], label="@SUM(1+1)*cmd|' /C calc'!A0")
    doctor = Client(REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT='=HYPERLINK("http://x.example")')
    assert open_with_code(doctor, secrets.code).status_code == 302

    archive = download_everything(patient_client)
    for name in ("RECORD/shares.csv", "RECORD/access_log.csv"):
        rows = list(csv.reader(io.StringIO(archive.read(name).decode("utf-8-sig"))))
        cells = [cell for row in rows for cell in row]
        assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")], name
    log = csv.DictReader(io.StringIO(archive.read("RECORD/access_log.csv").decode("utf-8-sig")))
    opened = [row for row in log if row["what"] == "Opened"]
    assert opened[0]["browser"] == '\'=HYPERLINK("http://x.example")'  # kept, as text
