"""The patient's own DICOMweb token (issue 17, part 1; data portability, GDPR Article 20): made
on the My data page after the password, shown once; it reads the whole vault and nothing else,
and stops working the moment the patient stops it."""

import re

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django.urls import reverse
from requests.exceptions import HTTPError

from phr.sharing.models import DicomwebToken
from tests.sharing.conftest import reauthenticate, stored

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN_ON_PAGE = re.compile(r'id="dicomweb-token">(phrdw_[0-9a-f]{8}_[A-Za-z0-9_-]{43})<')


def make_token(patient_client, label="Weasis on my laptop") -> str:
    reauthenticate(patient_client)
    page = patient_client.post(reverse("rights:dicomweb_token_new"), {"label": label})
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    assert page["Referrer-Policy"] == "strict-origin"  # SECURITY 12
    return TOKEN_ON_PAGE.search(page.content.decode()).group(1)


def test_the_patients_token_reads_their_whole_vault_and_nothing_else(
    live_server, patient_client, patient, other_patient
):
    mine = {stored(patient, "CT_small.dcm"), stored(patient, "MR_small.dcm")}
    stored(other_patient, "JPEG2000.dcm")
    token = make_token(patient_client)
    client = DICOMwebClient(
        url=f"{live_server.url}/dicomweb", headers={"Authorization": f"Bearer {token}"}
    )

    found = {s["0020000D"]["Value"][0] for s in client.search_for_studies()}

    assert found == {s.study_instance_uid for s in mine}
    ct = next(s for s in mine if "CT" in s.modalities)
    series = ct.series.get()
    datasets = client.retrieve_series(ct.study_instance_uid, series.series_instance_uid)
    assert [ds.SOPInstanceUID for ds in datasets] == [series.instances.get().sop_instance_uid]


def test_making_a_token_asks_for_the_password_again(patient_client):
    response = patient_client.post(reverse("rights:dicomweb_token_new"), {"label": "x"})
    assert response.status_code == 302
    assert "reauthenticate" in response.url
    assert not DicomwebToken.objects.exists()


def test_a_stopped_token_is_refused_at_once(live_server, patient_client, patient):
    stored(patient, "CT_small.dcm")
    token = make_token(patient_client)
    row = DicomwebToken.objects.get()
    page = patient_client.get(reverse("rights:my_data")).content.decode()
    assert row.prefix in page and "Weasis on my laptop" in page
    assert token.split("_", 2)[2] not in page

    patient_client.post(reverse("rights:dicomweb_token_revoke", args=[row.pk]))

    response = requests.get(
        f"{live_server.url}/dicomweb/studies",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 401
    with pytest.raises(HTTPError):
        DICOMwebClient(
            url=f"{live_server.url}/dicomweb", headers={"Authorization": f"Bearer {token}"}
        ).search_for_studies()


def test_one_patient_cannot_stop_anothers_token(patient_client, other_patient):
    row, _plaintext = DicomwebToken.issue(other_patient, label="theirs")
    response = patient_client.post(reverse("rights:dicomweb_token_revoke", args=[row.pk]))
    assert response.status_code == 404
    row.refresh_from_db()
    assert row.revoked_at is None
