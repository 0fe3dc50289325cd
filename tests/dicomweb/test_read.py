"""DICOMweb read for a share (issue 17, part 1): a doctor takes a token from the shared page and
an independent client (dicomweb-client from PyPI, over a real HTTP server) searches and
retrieves exactly the shared studies, byte for byte; the token dies with the share, and every
read is in the patient's log."""

import hashlib
import logging
import re
from datetime import timedelta

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from pydicom import dcmread
from requests.exceptions import HTTPError

from phr.sharing import services
from phr.sharing.models import AccessEvent, DicomwebToken, Event, Tally
from phr.vault import metadata
from phr.vault.models import Instance
from tests.sharing.conftest import DOCTOR_AGENT, DOCTOR_IP, make_share, open_with_code
from tests.support.vaultdata import longest_stack

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN_ON_PAGE = re.compile(r'id="dicomweb-token">(phrdw_[0-9a-f]{8}_[A-Za-z0-9_-]{43})<')


def take_token(live_server, code) -> str:
    browser = Client(REMOTE_ADDR=DOCTOR_IP, HTTP_USER_AGENT=DOCTOR_AGENT)
    assert open_with_code(browser, code).status_code == 302
    home = browser.get("/shared/").content.decode()
    action = re.search(r'action="(/shared/[0-9a-f-]+/dicomweb-token/)"', home)
    assert action, "no 'Use in your own viewer or PACS' on the doctor's page"
    page = browser.post(action.group(1))
    assert page.status_code == 200
    # SECURITY 12: a page showing a token is never kept and never sends its address on.
    assert "no-store" in page["Cache-Control"]
    assert page["Referrer-Policy"] == "strict-origin"
    return TOKEN_ON_PAGE.search(page.content.decode()).group(1)


@pytest.fixture
def shared(patient, cd_studies):
    """One study of the CD shared with downloads allowed, the others kept back."""
    study = longest_stack(cd_studies).study
    share, secrets = make_share(patient, [study], allow_download=True)
    return share, secrets.code, study, [s for s in cd_studies if s != study]


def client_for(live_server, token) -> DICOMwebClient:
    return DICOMwebClient(
        url=f"{live_server.url}/dicomweb", headers={"Authorization": f"Bearer {token}"}
    )


def test_a_client_finds_exactly_the_shared_study(live_server, shared):
    _share, code, study, others = shared
    client = client_for(live_server, take_token(live_server, code))

    studies = client.search_for_studies()
    assert [s["0020000D"]["Value"][0] for s in studies] == [study.study_instance_uid]

    series = client.search_for_series(study.study_instance_uid)
    assert sorted(s["0020000E"]["Value"][0] for s in series) == sorted(
        study.series.values_list("series_instance_uid", flat=True)
    )
    instances = client.search_for_instances(study.study_instance_uid)
    assert len(instances) == study.num_instances

    # The other studies of the same vault do not exist here.
    with pytest.raises(HTTPError) as refused:
        client.search_for_series(others[0].study_instance_uid)
    assert refused.value.response.status_code == 404


def test_matching_keys_narrow_the_search(live_server, shared):
    _share, code, study, _others = shared
    client = client_for(live_server, take_token(live_server, code))
    day = study.study_date.strftime("%Y%m%d")
    day_before = (study.study_date - timedelta(days=1)).strftime("%Y%m%d")
    modality = study.modality_list[0]

    def found(**filters):
        return len(client.search_for_studies(search_filters=filters))

    assert found(PatientID=study.patient_id) == 1
    assert found(PatientID="NOT-" + study.patient_id) == 0
    assert found(StudyDate=f"{day}-{day}") == 1
    assert found(StudyDate=f"-{day_before}") == 0
    assert found(StudyDate=f"{day_before}-") == 1
    assert found(ModalitiesInStudy=modality) == 1
    assert found(ModalitiesInStudy="XA") == 0
    assert found(PatientName=study.patient_name[:3] + "*") == 1
    series = client.search_for_series(study.study_instance_uid, limit=1, offset=1)
    assert len(series) == min(1, study.num_series - 1)


def test_retrieved_files_are_the_stored_bytes(live_server, shared):
    _share, code, study, _others = shared
    token = take_token(live_server, code)
    series = longest_stack([study])
    url = (
        f"{live_server.url}/dicomweb/studies/{study.study_instance_uid}"
        f"/series/{series.series_instance_uid}"
    )

    response = requests.get(
        url,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*',
        },
        timeout=60,
    )

    assert response.status_code == 200
    boundary = re.search(r"boundary=([^;]+)", response.headers["Content-Type"]).group(1)
    parts = response.content.split(f"--{boundary}".encode())[1:-1]
    bodies = [part.split(b"\r\n\r\n", 1)[1][: -len(b"\r\n")] for part in parts]
    assert sorted(hashlib.sha256(b).hexdigest() for b in bodies) == sorted(
        series.instances.values_list("sha256", flat=True)
    )

    # dicomweb-client reads the same answer into datasets.
    datasets = client_for(live_server, token).retrieve_series(
        study.study_instance_uid, series.series_instance_uid
    )
    assert sorted(ds.SOPInstanceUID for ds in datasets) == sorted(
        series.instances.values_list("sop_instance_uid", flat=True)
    )


def test_every_read_is_in_the_patients_log(live_server, shared):
    share, code, study, _others = shared
    token = take_token(live_server, code)
    series = longest_stack([study])
    instance = series.instances.order_by("instance_number").first()

    client_for(live_server, token).retrieve_instance(
        study.study_instance_uid, series.series_instance_uid, instance.sop_instance_uid
    )

    kinds = set(AccessEvent.objects.filter(share=share).values_list("kind", flat=True))
    assert {Event.DICOMWEB_TOKEN, Event.IMAGES} <= kinds
    tally = Tally.objects.get(share=share, kind=Event.IMAGES)
    assert tally.images == 1 and tally.series_id == series.pk
    # The token's reads carry the browser's tag that asked for it.
    token_row = DicomwebToken.objects.get(share=share)
    assert tally.visitor == token_row.visitor


def test_the_token_dies_with_the_share(live_server, patient, shared, caplog):
    caplog.set_level(logging.DEBUG)
    share, code, _study, _others = shared
    token = take_token(live_server, code)
    client = client_for(live_server, token)
    assert client.search_for_studies()

    services.revoke(share)

    with pytest.raises(HTTPError) as refused:
        client.search_for_studies()
    assert refused.value.response.status_code == 401
    # SECURITY 12: the token reaches no log line, used or refused.
    assert token.split("_", 2)[2] not in caplog.text


def test_an_expired_share_token_is_refused(live_server, shared):
    share, code, _study, _others = shared
    client = client_for(live_server, take_token(live_server, code))
    share.expires_at = timezone.now() - timedelta(seconds=1)
    share.save(update_fields=["expires_at"])
    with pytest.raises(HTTPError) as refused:
        client.search_for_studies()
    assert refused.value.response.status_code == 401


def test_no_token_or_a_wrong_one_is_401(live_server, shared):
    for token in ("", "phrdw_00000000_" + "A" * 43, "not-a-token"):
        response = requests.get(
            f"{live_server.url}/dicomweb/studies",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_view_only_share_offers_no_token(live_server, patient, cd_studies):
    share, secrets = make_share(patient, cd_studies[:1], allow_download=False)
    browser = Client(REMOTE_ADDR=DOCTOR_IP, HTTP_USER_AGENT=DOCTOR_AGENT)
    open_with_code(browser, secrets.code)
    assert "dicomweb-token" not in browser.get("/shared/").content.decode()
    assert browser.post(f"/shared/{share.pk}/dicomweb-token/").status_code == 404
    assert not DicomwebToken.objects.exists()


def test_the_stored_token_is_only_a_hash(live_server, shared):
    _share, code, _study, _others = shared
    token = take_token(live_server, code)
    row = DicomwebToken.objects.get()
    assert token.split("_", 2)[2] not in (row.key_hash + row.prefix)
    assert Instance.objects.exists()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("StudyDate=2024-01-01", "is not a date"),
        ("StudyDate=20240231", "is not a date"),
        ("limit=ten", "limit must be a whole number"),
        ("offset=-1", "offset must be a whole number"),
    ],
)
def test_a_query_we_cannot_read_is_a_400_that_says_why(live_server, shared, query, message):
    _share, code, _study, _others = shared
    token = take_token(live_server, code)
    response = requests.get(
        f"{live_server.url}/dicomweb/studies?{query}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_a_transfer_syntax_we_would_have_to_convert_to_is_406(live_server, shared):
    _share, code, study, _others = shared
    token = take_token(live_server, code)
    stored = set(
        Instance.objects.filter(series__study=study).values_list("transfer_syntax_uid", flat=True)
    )
    other = next(ts for ts in ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.5") if ts not in stored)
    response = requests.get(
        f"{live_server.url}/dicomweb/studies/{study.study_instance_uid}",
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": f'multipart/related; type="application/dicom"; transfer-syntax={other}',
        },
        timeout=30,
    )
    assert response.status_code == 406
    assert "transfer-syntax=*" in response.json()["error"]


def test_series_metadata_is_each_files_header_and_is_read_once(live_server, shared, monkeypatch):
    _share, code, study, _others = shared
    client = client_for(live_server, take_token(live_server, code))
    series = longest_stack([study])
    instances = list(series.instances.all())

    first = client.retrieve_series_metadata(study.study_instance_uid, series.series_instance_uid)

    # pydicom's own JSON of each stored file's header: the same elements, the same values.
    by_uid = {item["00080018"]["Value"][0]: item for item in first}
    assert set(by_uid) == {i.sop_instance_uid for i in instances}
    for instance in instances:
        with default_storage.open(instance.storage_key, "rb") as blob:
            expected = dcmread(blob, stop_before_pixels=True).to_json_dict(
                bulk_data_threshold=metadata.BULK_BYTES, bulk_data_element_handler=lambda e: ""
            )
        got = by_uid[instance.sop_instance_uid]
        assert set(got) == set(expected)
        for tag, element in expected.items():
            if "Value" in element:
                assert got[tag]["Value"] == element["Value"], tag

    # Asked again, no file is read.
    read = []
    monkeypatch.setattr(metadata, "read", lambda key: read.append(key))
    again = client.retrieve_series_metadata(study.study_instance_uid, series.series_instance_uid)
    assert again == first
    assert read == []
