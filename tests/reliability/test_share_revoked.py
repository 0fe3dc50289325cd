"""The patient stops a share while a doctor is going through its images one by one: the
doctor's very next request is refused, and the share's access log shows what the doctor did
before, the revocation, and the refusal after it.

Image bytes come from the configured storage: streamed by Django on the file system, or, on
S3, fetched from the object store through the presigned URL the viewer redirects to.
"""

import hashlib
import urllib.request

import pytest
from django.urls import reverse
from django.utils import timezone

from phr.sharing.models import AccessEvent, Event
from tests.reliability.support import stored_keys
from tests.sharing.conftest import (
    DOCTOR_AGENT,
    DOCTOR_IP,
    make_share,
    open_with_code,
    reauthenticate,
)
from tests.support.vaultdata import ingest_path

SLICES = 12
REVOKE_AFTER = 5


@pytest.fixture
def scan(patient, ct_files):
    for path in ct_files[:SLICES]:
        assert ingest_path(patient, path).outcome == "stored"
    study = patient.studies.get()
    assert len(stored_keys(patient)) == SLICES
    return study


@pytest.fixture
def doctor():
    from django.test import Client

    return Client(REMOTE_ADDR=DOCTOR_IP, HTTP_USER_AGENT=DOCTOR_AGENT)


def image_bytes(response) -> bytes:
    if response.status_code == 302:  # S3: a short-lived presigned URL on the object store
        with urllib.request.urlopen(response["Location"], timeout=10) as fetched:  # noqa: S310
            return fetched.read()
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def test_revoking_mid_scroll_refuses_the_next_image_and_logs_it(patient_client, scan, doctor):
    share, secrets = make_share(patient_client.user, [scan], allow_download=True)
    assert open_with_code(doctor, secrets.code).status_code == 302
    assert doctor.get(reverse("viewer:study", args=[scan.id])).status_code == 200
    listing = doctor.get(reverse("viewer:study_images", args=[scan.id])).json()
    images = listing["series"][0]["images"]
    assert len(images) == SLICES

    # First the whole study as a ZIP (the share allows downloads)...
    download = doctor.get(reverse("vault:download_study", args=[scan.id]))
    assert download.status_code == 200
    assert b"".join(download.streaming_content)[:2] == b"PK"
    # ...then image after image, as the viewer scrolls, each checked against its hash.
    by_id = {str(i.id): i.sha256 for i in scan.series.get().instances.all()}
    for image in images[:REVOKE_AFTER]:
        data = image_bytes(doctor.get(image["url"]))
        assert hashlib.sha256(data).hexdigest() == by_id[image["id"]]

    # The patient, signed in elsewhere, presses "Stop sharing" (it asks for the password).
    reauthenticate(patient_client)
    assert patient_client.post(reverse("sharing:revoke", args=[share.pk])).status_code == 302
    revoked_at = timezone.now()

    # The doctor's next image, and anything else in the share, is gone: 410, and said so (the
    # doctor held the share; anyone else gets a 404, never a 403).
    for image in images[REVOKE_AFTER:]:
        response = doctor.get(image["url"])
        assert response.status_code == 410
        assert "Location" not in response
    assert doctor.get(reverse("viewer:study_images", args=[scan.id])).status_code == 410
    page = doctor.get(reverse("viewer:study", args=[scan.id]))
    assert page.status_code == 410 and b"This share has ended" in page.content
    # The doctor's own pages say plainly that the share has ended, and log the attempt.
    ended = doctor.get(reverse("vault:download_study", args=[scan.id]))
    assert ended.status_code == 410
    assert b"PK" not in ended.content[:2]

    log = list(AccessEvent.objects.filter(share=share).order_by("at", "pk"))
    kinds = [event.kind for event in log]
    assert kinds == [
        Event.CREATED,
        Event.OPENED,
        Event.VIEWED,
        Event.DOWNLOADED,
        Event.IMAGES,
        Event.REVOKED,
        Event.REFUSED,
    ]
    # The images the doctor scrolled through before the revocation, counted, none after.
    assert log[4].tally.images == REVOKE_AFTER
    revocation = log[5]
    assert revocation.at <= revoked_at
    for event in log[1:5]:  # the doctor's accesses: before the revocation, from the doctor
        assert event.at <= revocation.at
        assert (event.ip, event.user_agent) == (DOCTOR_IP, DOCTOR_AGENT)
    refusal = log[6]
    assert refusal.at >= revocation.at
    assert (refusal.ip, refusal.user_agent) == (DOCTOR_IP, DOCTOR_AGENT)
    # The revocation came from the patient's browser, not the doctor's.
    assert revocation.ip != DOCTOR_IP
