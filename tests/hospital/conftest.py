"""Hospitals, their tokens and a patient's deposit codes, made through the real models and
services; STOW-RS bodies built the way a PACS builds them; the DICOM listener and dcmtk's
storescu and echoscu as the hospital's PACS."""

import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone
from pydicom.data import get_testdata_file

from phr.hospital import services
from phr.hospital.dimse import DepositListener
from phr.hospital.models import ApiToken, DicomNode, Organisation
from tests.support.vaultdata import dicomdir_tree

BOUNDARY = "b0undary-7f3a"
FILES = ["CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm"]


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db):
    # The database cache is not emptied between tests; failure counters must not leak.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def hospital(db):
    return Organisation.objects.create(name="St Mary's Hospital")


@pytest.fixture
def other_hospital(db):
    return Organisation.objects.create(name="Elsewhere Imaging")


@pytest.fixture
def token(hospital):
    return ApiToken.issue(hospital, label="PACS router")[1]


@pytest.fixture
def other_token(other_hospital):
    return ApiToken.issue(other_hospital)[1]


def make_code(owner, *, organisation=None, days=30):
    deposit, plain = services.create_deposit_code(
        owner,
        label="Knee MRI",
        organisation=organisation,
        expires_at=timezone.now() + timedelta(days=days),
    )
    return deposit, plain.code


@pytest.fixture
def deposit(patient):
    """(DepositCode row, plaintext code) for `patient`, usable by any hospital."""
    return make_code(patient)


def dicom_bytes(name) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def multipart_body(parts: list[bytes], content_type="application/dicom") -> bytes:
    body = b""
    for data in parts:
        body += f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def stow(client, code, body, *, token, study_uid=None, content_type=None):
    url = f"/dicomweb/deposit/{code}/studies" + (f"/{study_uid}" if study_uid else "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.generic(
        "POST",
        url,
        body,
        content_type=content_type
        or f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
        headers=headers,
    )


def deliver(owner, organisation, *names):
    """Deposit pydicom test files into `owner`'s Inbox through the real service."""
    deposit, _code = make_code(owner)
    report = services.DeliveryReport(deposit=deposit, organisation=organisation)
    for name in names:
        with tempfile.TemporaryFile() as spool:
            spool.write(name.read_bytes() if isinstance(name, Path) else dicom_bytes(name))
            spool.seek(0)
            services.receive_file(report, spool, str(name))
    return report


# --- DIMSE ------------------------------------------------------------------------------------

NODE_AE = "STMARYS_PACS"
# dcmtk's tools from Debian (`make dcmtk`), by their full path: pynetdicom installs its own
# storescu and echoscu, with other options, in the venv's bin folder, first on an activated PATH.
STORESCU, ECHOSCU = "/usr/bin/storescu", "/usr/bin/echoscu"
CT_SERIES = dicomdir_tree() / "77654033" / "CT2"  # 4 images of one study
# How storescu and echoscu report each A-ASSOCIATE-RJ.
UNKNOWN_CODE = "Reason: Called AE Title Not Recognized"
UNKNOWN_NODE = "Reason: Calling AE Title Not Recognized"
TRY_LATER = "Result: Rejected Transient"


@pytest.fixture
def listener():
    listener = DepositListener()
    _host, listener.port = listener.start("127.0.0.1", 0)
    yield listener
    listener.stop(grace=10)


@pytest.fixture
def node(hospital):
    return DicomNode.objects.create(organisation=hospital, ae_title=NODE_AE, network="127.0.0.0/8")


def settle(listener) -> None:
    """Wait until every association has ended: the sender may exit before our last handler."""
    for assoc in listener.server.active_associations:
        assoc.join(30)


def storescu(listener, code, *paths, aet=NODE_AE, options=()) -> subprocess.CompletedProcess:
    command = [STORESCU, "-aet", aet, "-aec", code, *options, "127.0.0.1", str(listener.port)]
    done = subprocess.run([*command, *map(str, paths)], capture_output=True, text=True, timeout=120)
    settle(listener)
    return done


def echoscu(listener, code, aet=NODE_AE) -> subprocess.CompletedProcess:
    command = [ECHOSCU, "-aet", aet, "-aec", code, "127.0.0.1", str(listener.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    settle(listener)
    return done
