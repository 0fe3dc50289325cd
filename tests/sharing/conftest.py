"""Fixtures for sharing tests: real studies from pydicom's test files in two patients' vaults,
shares made through the real service, and doctor browsers (test clients) with no account."""

import io
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from PIL import Image
from pydicom.data import get_testdata_file

from phr.sharing import services
from phr.vault.ingest import ingest_file
from tests.support.vaultdata import ingest_path

DOCTOR_IP = "203.0.113.7"
DOCTOR_AGENT = "Mozilla/5.0 (Doctor's laptop) TestBrowser/1.0"


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db):
    # The database cache is not emptied between tests; failure counters must not leak.
    cache.clear()
    yield
    cache.clear()


def stored(owner, name):
    result = ingest_path(owner, get_testdata_file(name))
    assert result.outcome == "stored", result.message
    result.study.refresh_from_db()  # the counts are filled in after the study row is made
    return result.study


def attach_pdf(owner, study, filename="Report.pdf"):
    pdf = io.BytesIO()
    # Documents are kept once per content: a different page size makes each one distinct.
    Image.new("RGB", (60 + len(filename), 80), "white").save(pdf, "PDF")
    pdf.seek(0)
    result = ingest_file(owner, pdf, filename=filename, attach_to=study)
    return result.document


@pytest.fixture
def ct(patient):
    return stored(patient, "CT_small.dcm")


@pytest.fixture
def mr(patient):
    """A second study of the same patient, which the tests leave out of the share."""
    return stored(patient, "MR_small.dcm")


@pytest.fixture
def report(patient, ct):
    return attach_pdf(patient, ct)


@pytest.fixture
def other_study(other_patient):
    return stored(other_patient, "CT_small.dcm")


def make_share(owner, studies, **options):
    options.setdefault("label", "Dr. Smith, Mayo Clinic")
    options.setdefault("expires_at", timezone.now() + timedelta(days=7))
    return services.create_share(owner, studies, **options)


@pytest.fixture
def doctor():
    """A doctor's browser: no account, its own cookies, a recognisable address and browser."""
    return Client(REMOTE_ADDR=DOCTOR_IP, HTTP_USER_AGENT=DOCTOR_AGENT)


def open_with_code(client, code, pin=""):
    return client.post("/access", {"code": code, "pin": pin})


def open_with_link(client, token, pin=""):
    return client.post(f"/s/{token}", {"pin": pin})


def reauthenticate(client):
    from django.urls import reverse

    from tests.factories import PASSWORD

    response = client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    assert response.status_code == 302, response.content[:300]


@pytest.fixture
def sharer(patient_client):
    """The patient, logged in with TOTP and just re-authenticated (as creating a share asks)."""
    reauthenticate(patient_client)
    return patient_client
