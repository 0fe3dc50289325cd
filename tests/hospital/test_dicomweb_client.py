"""An independent, unmodified DICOMweb client (dicomweb-client from PyPI) stores pydicom's test
files through a real HTTP server. The request is over 1 MB, so the client switches to chunked
transfer encoding, which the endpoint must decode itself under Django's own server."""

import json
import subprocess
from pathlib import Path

import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.data import get_testdata_file
from requests.exceptions import HTTPError

from phr.vault.models import Instance, Study

BIG_FILES = [
    "examples_overlay.dcm",
    "waveform_ecg.dcm",
    "examples_palette.dcm",
    "examples_rgb_color.dcm",
    "examples_ybr_color.dcm",
    "CT_small.dcm",
    "MR_small.dcm",
]


def client_for(live_server, code, token):
    return DICOMwebClient(
        url=f"{live_server.url}/dicomweb/deposit/{code}",
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.mark.django_db(transaction=True)
def test_dicomweb_client_stores_a_chunked_request_into_the_inbox(
    live_server, patient, hospital, token, deposit
):
    _row, code = deposit
    datasets = [dcmread(get_testdata_file(name)) for name in BIG_FILES]

    response = client_for(live_server, code, token).store_instances(datasets)

    stored = {item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence}
    assert stored == {ds.SOPInstanceUID for ds in datasets}
    assert "FailedSOPSequence" not in response
    assert Instance.objects.filter(owner=patient).count() == len(BIG_FILES)
    assert not Study.objects.filter(owner=patient, inbox=False).exists()

    # Sending it all again stores nothing new, and says every instance is there.
    again = client_for(live_server, code, token).store_instances(datasets)
    assert len(again.ReferencedSOPSequence) == len(BIG_FILES)
    assert Instance.objects.filter(owner=patient).count() == len(BIG_FILES)


@pytest.mark.django_db(transaction=True)
def test_dicomweb_client_sees_a_wrong_token_as_401(live_server, patient, deposit):
    _row, code = deposit
    with pytest.raises(HTTPError) as raised:
        client_for(live_server, code, "phrorg_00000000_wrong").store_instances(
            [dcmread(get_testdata_file("CT_small.dcm"))]
        )
    assert raised.value.response.status_code == 401


CURL_SNIPPET = r"""
boundary=phr-$(date +%s)
{ printf -- "--%s\r\nContent-Type: application/dicom\r\n\r\n" "$boundary"; cat image.dcm
  printf -- "\r\n--%s--\r\n" "$boundary"; } |
curl -sS -X POST "$URL" \
     -H "Authorization: Bearer $TOKEN" \
     -H "Content-Type: multipart/related; type=\"application/dicom\"; boundary=$boundary" \
     --data-binary @-
"""


@pytest.mark.django_db(transaction=True)
def test_the_readme_curl_example_works(live_server, patient, token, deposit, tmp_path):
    _row, code = deposit
    (tmp_path / "image.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    env = {"URL": f"{live_server.url}/dicomweb/deposit/{code}/studies", "TOKEN": token}

    done = subprocess.run(
        ["bash", "-c", CURL_SNIPPET], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert "00081199" in json.loads(done.stdout)
    assert Instance.objects.filter(owner=patient).count() == 1
    # The snippet is the documentation's, word for word (with the example URL and token as
    # variables).
    readme = (Path(__file__).parents[2] / "docs" / "hospital-push.md").read_text()
    for line in CURL_SNIPPET.strip().splitlines()[:4]:
        assert line.replace("$URL", "").replace("$TOKEN", "").split('"')[0] in readme
