"""The patient's deposit-code pages and the admin's `hospital` command."""

import re

from django.core.management import call_command
from django.urls import reverse

from phr.hospital.models import ApiToken, DepositCode, DicomNode, Organisation
from phr.hospital.services import open_deposit
from tests.vault.test_delete_study import reauthenticate


def test_a_new_code_is_shown_once_with_what_the_hospital_needs(patient_client, patient, hospital):
    reauthenticate(patient_client)
    response = patient_client.post(
        reverse("hospital:deposit_codes"),
        {"label": "St Mary's knee MRI", "organisation": hospital.pk, "days": 10},
    )
    assert response.status_code == 302
    page = patient_client.get(response.url)
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    html = page.content.decode()
    code = re.search(r'id="deposit-code">([0-9A-Z-]+)<', html).group(1)
    ae_title = re.search(r'id="deposit-ae-title">([0-9A-Z]+)<', html).group(1)
    assert len(ae_title) <= 16 and ae_title == code.replace("-", "")
    assert f"/dicomweb/deposit/{ae_title}/studies" in html
    # The code works for the chosen hospital, and only a scrambled copy is kept.
    deposit = DepositCode.objects.get(owner=patient)
    assert open_deposit(code, hospital, "127.0.0.1") == deposit
    assert ae_title not in deposit.code_hash

    # Once hidden (a later visit after the reveal window), it can't be shown again.
    session = patient_client.session
    session.pop("phr_deposit_reveal")
    session.save()
    again = patient_client.get(response.url)
    assert again.status_code == 404
    assert ae_title not in again.content.decode()


def test_a_code_can_be_stopped_in_one_tap(patient_client, patient, deposit):
    row, _code = deposit
    listing = patient_client.get(reverse("hospital:deposit_codes")).content.decode()
    assert "Knee MRI" in listing and "Active" in listing
    patient_client.post(reverse("hospital:deposit_revoke", args=[row.pk]))
    row.refresh_from_db()
    assert row.revoked_at is not None


def test_nobody_can_stop_another_patients_code(patient_client, other_patient):
    from tests.hospital.conftest import make_code

    row, _code = make_code(other_patient)
    response = patient_client.post(reverse("hospital:deposit_revoke", args=[row.pk]))
    assert response.status_code == 404
    row.refresh_from_db()
    assert row.revoked_at is None


def test_the_hospital_command_registers_organisations_tokens_and_nodes(db, capsys):
    call_command("hospital", "add", "Mercy Imaging")
    call_command("hospital", "token", "Mercy Imaging", "--label", "router")
    plaintext = capsys.readouterr().out.strip().splitlines()[-1]
    call_command(
        "hospital", "node", "Mercy Imaging", "--ae", "MERCY_PACS", "--network", "10.1.2.0/24"
    )

    organisation = Organisation.objects.get(name="Mercy Imaging")
    token = ApiToken.find(plaintext)
    assert token is not None and token.organisation == organisation
    assert plaintext not in token.key_hash
    node = DicomNode.objects.get(organisation=organisation)
    assert node.admits("MERCY_PACS", "10.1.2.77") and not node.admits("MERCY_PACS", "10.1.3.1")

    call_command("hospital", "revoke-token", token.prefix)
    assert ApiToken.find(plaintext) is None
