"""A patient whose vault holds a bit of everything: the CD tree, a report, a share that a doctor
opened, a deposit code and a study a hospital sent that waits in the Inbox."""

import pytest
from django.test import Client

from phr.hospital.models import Organisation
from phr.vault import thumbnails
from tests.hospital.conftest import _fresh_rate_limits, deliver, make_code  # noqa: F401
from tests.sharing.conftest import attach_pdf, make_share, open_with_code


@pytest.fixture
def full_vault(patient, cd_studies):
    study = cd_studies[0]
    report = attach_pdf(patient, study)
    share, secrets = make_share(patient, cd_studies[:2], recipient_email="dr@example.org")
    doctor = Client(REMOTE_ADDR="203.0.113.9")
    assert open_with_code(doctor, secrets.code).status_code == 302
    hospital = Organisation.objects.create(name="St Mary's Hospital")
    deposit, deposit_code = make_code(patient)
    deliver(patient, hospital, "MR_small.dcm")
    # Cached thumbnails are stored bytes about the patient too: they must go with the account.
    covers = [thumbnails.cover_instance(s.series.first()) for s in cd_studies]
    assert any(thumbnails.thumbnail_for(cover) for cover in covers if cover)
    return {
        "studies": cd_studies,
        "report": report,
        "share": share,
        "share_code": secrets.code,
        "doctor": doctor,
        "hospital": hospital,
        "deposit": deposit,
        "deposit_code": deposit_code,
    }
