"""STOW-RS into a patient's Inbox: authentication, deposit codes, per-part results."""

import pytest
from django.core import mail
from django.core.files.storage import default_storage
from django.test import Client
from pydicom import dcmread
from pydicom.data import get_testdata_file

from phr.hospital.models import DepositCode
from phr.hospital.stow import CANNOT_UNDERSTAND, DOES_NOT_MATCH
from phr.vault import bundles
from phr.vault.models import Instance, Series, Source, Study
from tests.hospital.conftest import BOUNDARY, FILES, dicom_bytes, make_code, multipart_body, stow
from tests.support.vaultdata import dicomdir_tree, ingest_path
from tests.vault.hostile import cut_short

FAILED, REFERENCED, REASON, SOP_UID = "00081198", "00081199", "00081197", "00081155"


def uids_of(sequence) -> set[str]:
    return {item[SOP_UID]["Value"][0] for item in sequence["Value"] if SOP_UID in item}


def test_a_hospital_stores_a_study_into_the_inbox(client, patient, hospital, token, deposit):
    row, code = deposit
    response = stow(client, code, multipart_body([dicom_bytes(n) for n in FILES]), token=token)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    body = response.json()
    assert FAILED not in body
    expected = {dcmread(get_testdata_file(n)).SOPInstanceUID for n in FILES}
    assert uids_of(body[REFERENCED]) == expected

    studies = Study.objects.filter(owner=patient)
    assert studies.count() == 3 and all(s.inbox for s in studies)
    assert {s.deposited_by for s in studies} == {hospital}
    assert {s.source for s in studies} == {Source.HOSPITAL}
    for instance in Instance.objects.filter(owner=patient):
        assert default_storage.exists(instance.storage_key)
    row.refresh_from_db()
    assert row.last_used_at is not None
    # One email per delivery, however many images it brought.
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [patient.email]
    assert "St Mary's Hospital" in mail.outbox[0].subject
    assert "/vault/inbox/" in mail.outbox[0].body


def test_the_code_may_be_typed_with_dashes_and_in_lower_case(client, patient, token, deposit):
    _row, code = deposit
    typed = f"{code[:4]}-{code[4:8]}-{code[8:]}".lower()
    response = stow(client, typed, multipart_body([dicom_bytes("CT_small.dcm")]), token=token)
    assert response.status_code == 200


def test_resending_the_same_study_stores_nothing_new(client, patient, token, deposit):
    _row, code = deposit
    body = multipart_body([dicom_bytes(n) for n in FILES])
    assert stow(client, code, body, token=token).status_code == 200
    before = (Instance.objects.filter(owner=patient).count(), Study.objects.count())
    mail.outbox.clear()

    again = stow(client, code, body, token=token)

    assert again.status_code == 200
    assert len(again.json()[REFERENCED]["Value"]) == len(FILES)
    assert (Instance.objects.filter(owner=patient).count(), Study.objects.count()) == before
    assert mail.outbox == []  # nothing new, nothing to tell


def test_images_already_in_the_vault_are_not_stored_again(
    client, patient, token, deposit, ct_study
):
    _row, code = deposit
    response = stow(client, code, multipart_body([dicom_bytes("CT_small.dcm")]), token=token)
    assert response.status_code == 200
    assert Study.objects.filter(owner=patient, inbox=True).count() == 0
    assert Instance.objects.filter(owner=patient).count() == 1


def test_hostile_parts_fail_alone_and_the_good_ones_are_stored(
    client, patient, token, deposit, tmp_path
):
    _row, code = deposit
    truncated = cut_short(tmp_path, "MR_small.dcm", keep=3000).read_bytes()
    good = dicom_bytes("CT_small.dcm")
    body = multipart_body([truncated, good, b"%PDF-1.4 not an image at all\n"])

    response = stow(client, code, body, token=token)

    assert response.status_code == 202
    data = response.json()
    assert uids_of(data[REFERENCED]) == {dcmread(get_testdata_file("CT_small.dcm")).SOPInstanceUID}
    failures = data[FAILED]["Value"]
    assert [item[REASON]["Value"][0] for item in failures] == [CANNOT_UNDERSTAND] * 2
    assert Instance.objects.filter(owner=patient).count() == 1


def test_nothing_stored_is_a_conflict(client, patient, token, deposit):
    _row, code = deposit
    response = stow(client, code, multipart_body([b"just some bytes"]), token=token)
    assert response.status_code == 409
    assert FAILED in response.json()
    assert not Study.objects.filter(owner=patient).exists()


def test_an_instance_of_another_study_than_the_url_names_fails(client, patient, token, deposit):
    _row, code = deposit
    ct_uid = dcmread(get_testdata_file("CT_small.dcm")).StudyInstanceUID
    body = multipart_body([dicom_bytes("CT_small.dcm"), dicom_bytes("examples_overlay.dcm")])

    response = stow(client, code, body, token=token, study_uid=ct_uid)

    assert response.status_code == 202
    [failure] = response.json()[FAILED]["Value"]
    assert failure[REASON]["Value"] == [DOES_NOT_MATCH]
    overlay_uid = dcmread(get_testdata_file("examples_overlay.dcm")).SOPInstanceUID
    assert failure[SOP_UID]["Value"] == [overlay_uid]
    assert list(
        Study.objects.filter(owner=patient).values_list("study_instance_uid", flat=True)
    ) == [ct_uid]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer phrorg_nope_nope", "Basic abc"])
def test_a_missing_or_wrong_token_is_401(client, patient, deposit, header):
    _row, code = deposit
    response = client.post(
        f"/dicomweb/deposit/{code}/studies",
        multipart_body([dicom_bytes("CT_small.dcm")]),
        content_type='multipart/related; type="application/dicom"; boundary=b0undary-7f3a',
        headers={"Authorization": header} if header else {},
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Study.objects.exists()


def test_a_revoked_token_is_401(client, patient, hospital, token, deposit):
    _row, code = deposit
    hospital.tokens.update(revoked_at="2026-01-01T00:00:00Z")
    response = stow(client, code, multipart_body([dicom_bytes("CT_small.dcm")]), token=token)
    assert response.status_code == 401


def test_unknown_expired_and_revoked_codes_look_the_same(client, patient, token):
    _live, unknown = make_code(patient)
    DepositCode.objects.all().delete()
    _expired_row, expired = make_code(patient, days=-1)
    revoked_row, revoked = make_code(patient)
    revoked_row.revoked_at = revoked_row.created_at
    revoked_row.save()
    body = multipart_body([dicom_bytes("CT_small.dcm")])

    answers = [stow(client, code, body, token=token) for code in (unknown, expired, revoked)]

    assert {r.status_code for r in answers} == {404}
    assert len({r.content for r in answers}) == 1
    assert not Study.objects.exists()


def test_a_code_restricted_to_another_hospital_is_403(client, patient, hospital, other_token):
    _row, code = make_code(patient, organisation=hospital)
    response = stow(client, code, multipart_body([dicom_bytes("CT_small.dcm")]), token=other_token)
    assert response.status_code == 403
    assert not Study.objects.exists()


def test_guessing_codes_is_rate_limited(client, patient, token, settings):
    settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = 3
    body = multipart_body([dicom_bytes("CT_small.dcm")])
    statuses = [stow(client, "0000000000000", body, token=token).status_code for _ in range(4)]
    assert statuses == [404, 404, 404, 429]


def test_other_media_types_are_415(client, patient, token, deposit):
    _row, code = deposit
    for content_type in (
        "application/dicom",
        'multipart/related; type="application/dicom+json"; boundary=x',
        "multipart/form-data; boundary=x",
    ):
        response = stow(client, code, b"", token=token, content_type=content_type)
        assert response.status_code == 415, content_type


def test_a_malformed_body_is_400(client, patient, token, deposit):
    _row, code = deposit
    response = stow(client, code, b"no boundary anywhere in here", token=token)
    assert response.status_code == 400
    cut_short = multipart_body([dicom_bytes("CT_small.dcm")])[:5000]
    assert stow(client, code, cut_short, token=token).status_code == 400
    assert not Study.objects.exists()


def test_an_oversized_request_is_413(client, patient, token, deposit, settings):
    _row, code = deposit
    settings.PHR_MAX_STOW_BYTES = 1000
    response = stow(client, code, multipart_body([dicom_bytes("CT_small.dcm")]), token=token)
    assert response.status_code == 413


def test_an_oversized_part_fails_alone(client, patient, token, deposit, settings):
    _row, code = deposit
    settings.PHR_MAX_FILE_BYTES = 20_000  # CT_small is 39 kB, MR_small 10 kB
    body = multipart_body([dicom_bytes("CT_small.dcm"), dicom_bytes("MR_small.dcm")])
    response = stow(client, code, body, token=token)
    assert response.status_code == 202
    assert response.json()[FAILED]["Value"][0][REASON]["Value"] == [0xA700]
    assert Instance.objects.filter(owner=patient).count() == 1


def test_the_deposit_code_never_reaches_the_logs(client, patient, token, deposit, caplog):
    _row, code = deposit
    with caplog.at_level("INFO"):
        stow(client, code, multipart_body([b"junk"]), token=token)
    assert caplog.records
    assert code not in caplog.text


CT_SERIES = dicomdir_tree() / "77654033" / "CT2"  # 4 images of one series


def read(key) -> bytes:
    with default_storage.open(key, "rb") as stored:
        return stored.read()


@pytest.mark.s3
def test_a_delivered_series_has_its_bundle_built_before_anyone_opens_it(
    s3_storage, client, patient, token, deposit
):
    _row, code = deposit
    files = sorted(CT_SERIES.iterdir())
    assert len(files) == bundles.MIN_FILES

    response = stow(client, code, multipart_body([f.read_bytes() for f in files]), token=token)

    assert response.status_code == 200
    series = Series.objects.get(study__owner=patient)
    bundle = bundles.bundles_of([series.id])[series.id]
    assert default_storage.exists(bundle.key)
    # The series' files back to back, in the viewer's order.
    assert read(bundle.key) == b"".join(read(member.storage_key) for member in bundle.members)


@pytest.mark.s3
def test_a_series_sent_one_image_per_request_waits_for_the_viewer(
    s3_storage, client, patient, token, deposit
):
    # Some PACS send each image in its own request: a bundle per request would be built, and
    # superseded by the next one, for every image.
    _row, code = deposit
    for path in sorted(CT_SERIES.iterdir()):
        response = stow(client, code, multipart_body([path.read_bytes()]), token=token)
        assert response.status_code == 200

    series = Series.objects.get(study__owner=patient)
    assert series.num_instances == bundles.MIN_FILES
    assert not default_storage.exists(bundles.bundles_of([series.id])[series.id].key)


@pytest.mark.parametrize("length", ["abc", "-5", "1e3"])
def test_a_content_length_that_is_not_a_number_of_bytes_is_400(
    client, patient, token, deposit, length, settings
):
    settings.DEBUG = True  # and the page must not show the deposit code, even then
    _row, code = deposit
    response = client.generic(
        "POST",
        f"/dicomweb/deposit/{code}/studies",
        multipart_body([dicom_bytes("CT_small.dcm")]),
        content_type=f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
        headers={"Authorization": f"Bearer {token}"},
        CONTENT_LENGTH=length,
    )
    assert response.status_code == 400
    assert "Content-Length" in response.content.decode()
    assert code not in response.content.decode()
    assert not Study.objects.exists()


def test_wrong_deposit_codes_count_per_hospital_not_against_doctors_or_other_hospitals(
    client, patient, token, other_token, deposit, settings
):
    """Many hospitals send through one gateway, and doctors may sit behind the same address: a
    hospital's wrong codes block that hospital (whatever its address), and nobody else."""
    from tests.sharing.conftest import make_share, open_with_code

    settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = 3
    body = multipart_body([dicom_bytes("CT_small.dcm")])
    wrong = [stow(client, "0000000000000", body, token=token).status_code for _ in range(3)]
    assert wrong == [404, 404, 404]

    # The same hospital from another address: still blocked (it is the token that guessed).
    elsewhere = Client(REMOTE_ADDR="198.51.100.7")
    assert stow(elsewhere, "0000000000000", body, token=token).status_code == 429
    # Another hospital through the same gateway, with a right code: let in.
    _row, code = deposit
    assert stow(client, code, body, token=other_token).status_code == 200
    # A doctor at that address, with a right access code: let in.
    in_the_vault = ingest_path(patient, get_testdata_file("MR_small.dcm")).study
    _share, secrets = make_share(patient, [in_the_vault])
    assert open_with_code(client, secrets.code).status_code == 302
