"""Hospitals, their tokens and a patient's deposit codes, made through the real models and
services; STOW-RS bodies built the way a PACS builds them."""

import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone
from pydicom.data import get_testdata_file

from phr.hospital import services
from phr.hospital.models import ApiToken, Organisation

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
