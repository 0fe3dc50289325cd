"""A real PACS pulls a shared study over DICOMweb (issue 17, part 1): Orthanc from Debian, with
our server configured as its DICOMweb peer, retrieves the study with its own retrieve call;
every instance it then holds is byte for byte a file the vault stores."""

import hashlib
import os

import pytest
import requests
from pytest_django.live_server_helper import LiveServer

from tests.dicomweb.test_read import take_token
from tests.sharing.conftest import make_share
from tests.support import orthanc
from tests.support.vaultdata import longest_stack

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def private_link():
    reason = orthanc.unavailable()
    if reason:
        # CI runs as root with `make test`'s packages: there a missing peer is a failure.
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(reason)
    with orthanc.private_link() as link:
        yield link


def test_orthanc_pulls_a_shared_study_byte_for_byte(
    private_link, patient, cd_studies, settings, tmp_path
):
    namespace, host_ip, orthanc_ip = private_link
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver", host_ip]
    study = longest_stack(cd_studies).study
    _share, secrets = make_share(patient, [study], allow_download=True)
    token = take_token(None, secrets.code)
    server = LiveServer(f"{host_ip}:0")
    try:
        peer = {
            "vault": {
                "Url": f"{server.url}/dicomweb/",
                "HttpHeaders": {"Authorization": f"Bearer {token}"},
            }
        }
        with orthanc.orthanc(tmp_path, namespace, orthanc_ip, peer) as api:
            answer = requests.post(
                f"{api}/dicom-web/servers/vault/retrieve",
                json={"Resources": [{"Study": study.study_instance_uid}]},
                timeout=300,
            )
            assert answer.ok, answer.text

            held = requests.get(f"{api}/instances", timeout=30).json()
            pulled = sorted(
                hashlib.sha256(
                    requests.get(f"{api}/instances/{one}/file", timeout=60).content
                ).hexdigest()
                for one in held
            )
    finally:
        server.stop()

    stored = sorted(
        study.series.values_list("instances__sha256", flat=True).exclude(instances__sha256=None)
    )
    assert pulled == stored
