"""Deleting an account: shares and deposit codes stop, every row and blob goes (both storage
backends, incomplete S3 uploads included), every session of the patient ends, an anonymous
record stays, and the patient gets a confirmation email."""

from django.contrib.sessions.models import Session
from django.core import mail
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from pydicom.data import get_testdata_file

from accounts.models import User
from phr.hospital.models import ApiToken, DepositCode
from phr.rights import erasure
from phr.rights.models import ErasureRecord
from phr.sharing.models import AccessEvent, Share
from phr.vault import blobs, thumbnails
from phr.vault.models import Document, Instance, Series, Study
from tests.hospital.conftest import dicom_bytes, multipart_body, stow
from tests.sharing.conftest import open_with_code
from tests.support.multipart import incomplete_uploads, start_an_incomplete_upload
from tests.support.vaultdata import ingest_path
from tests.vault.test_delete_study import reauthenticate


def stored_keys(prefix: str) -> set[str]:
    return set(blobs.keys_under(prefix))


def test_delete_needs_reauthentication_and_the_word(patient_client, patient, full_vault):
    url = reverse("rights:delete")
    assert patient_client.post(url, {"confirm": "DELETE"}).status_code == 302
    assert User.objects.filter(pk=patient.pk).exists()
    reauthenticate(patient_client)
    response = patient_client.post(url, {"confirm": "yes"})
    assert response.status_code == 200
    assert "Type the word DELETE" in response.content.decode()
    assert User.objects.filter(pk=patient.pk).exists()


def test_delete_account_erases_everything(
    patient_client, patient, other_patient, ct_study, full_vault, client
):
    owner_id, email = patient.pk, patient.email
    others_keys = set(
        Instance.objects.filter(owner=other_patient).values_list("storage_key", flat=True)
    )
    assert stored_keys(f"vault/{owner_id}") and stored_keys(f"thumbs/{owner_id}")
    images = Instance.objects.filter(owner=patient).count()
    # The patient is signed in on another device too, and another patient elsewhere.
    other_device, bystander = Client(), Client()
    other_device.force_login(patient)
    bystander.force_login(other_patient)

    reauthenticate(patient_client)
    response = patient_client.post(reverse("rights:delete"), {"confirm": "delete"})

    assert response.status_code == 302 and response.url == reverse("rights:deleted")
    assert not User.objects.filter(pk=owner_id).exists()
    for model in (Study, Document, Share, DepositCode):
        assert not model.objects.filter(owner_id=owner_id).exists(), model
    assert not Instance.objects.filter(owner_id=owner_id).exists()
    assert not Series.objects.filter(study__owner_id=owner_id).exists()
    assert not AccessEvent.objects.filter(share_id=full_vault["share"].pk).exists()
    assert stored_keys(f"vault/{owner_id}") == set()
    assert stored_keys(f"thumbs/{owner_id}") == set()
    assert all(default_storage.exists(key) for key in others_keys)

    record = ErasureRecord.objects.get()
    assert record.images == images and record.shares_stopped == 1
    # The fixture's code, and the one its hospital delivery used.
    assert record.deposit_codes_stopped == 2 and record.blobs_left_behind == 0
    assert email not in str(vars(record))

    [confirmation] = [m for m in mail.outbox if "deleted" in m.subject]
    assert confirmation.to == [email]

    # The session that asked is logged out, the patient's other sessions are gone (not just
    # useless), and the doctor and the hospital are locked out.
    assert patient_client.get(reverse("vault:home")).status_code == 302
    assert not Session.objects.filter(session_key=other_device.session.session_key).exists()
    assert Session.objects.filter(session_key=bystander.session.session_key).exists()
    doctor = full_vault["doctor"]
    assert doctor.get(reverse("sharing:shared_home")).status_code in (302, 404)
    assert open_with_code(doctor, full_vault["share_code"]).status_code != 302
    hospital_token = ApiToken.issue(full_vault["hospital"])[1]
    body = multipart_body([dicom_bytes("CT_small.dcm")])
    assert stow(client, full_vault["deposit_code"], body, token=hospital_token).status_code == 404


def test_erasure_on_s3_aborts_the_patients_incomplete_uploads(s3_storage, patient, other_patient):
    instance = ingest_path(patient, get_testdata_file("CT_small.dcm")).instance
    assert thumbnails.thumbnail_for(instance)
    theirs = blobs.instance_key(patient.pk, "b" * 64)
    someone_elses = blobs.instance_key(other_patient.pk, "b" * 64)
    for key in (theirs, someone_elses):
        start_an_incomplete_upload(s3_storage, key)
    assert [key for key, _ in incomplete_uploads(s3_storage, f"vault/{patient.pk}/")] == [theirs]

    record = erasure.erase_account(patient)

    assert record.blobs_left_behind == 0
    assert incomplete_uploads(s3_storage, f"vault/{patient.pk}/") == []
    assert stored_keys(f"vault/{patient.pk}") == stored_keys(f"thumbs/{patient.pk}") == set()
    others = incomplete_uploads(s3_storage, f"vault/{other_patient.pk}/")
    assert [key for key, _ in others] == [someone_elses]
