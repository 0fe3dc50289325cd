"""A doctor holding a share uses the same viewer as the patient: scoped to the share, logged
in the patient's access log, with a download button only when the share allows it."""

import pytest
from django.conf import settings
from django.urls import reverse

from phr.sharing.models import AccessEvent, Event
from tests.sharing.conftest import make_share, open_with_code


@pytest.mark.parametrize("allow_download", [False, True])
def test_doctor_opens_the_viewer_for_a_shared_study(doctor, patient, ct, mr, allow_download):
    share, secrets = make_share(patient, [ct], allow_download=allow_download)
    assert open_with_code(doctor, secrets.code).status_code == 302

    response = doctor.get(reverse("viewer:study", args=[ct.id]))
    assert response.status_code == 200
    html = response.content.decode()
    download = reverse("vault:download_study", args=[ct.id])
    assert (download in html) is allow_download

    viewed = AccessEvent.objects.filter(share=share, kind=Event.VIEWED)
    assert viewed.count() == 1
    assert viewed.get().ip and viewed.get().user_agent

    images = doctor.get(reverse("viewer:study_images", args=[ct.id])).json()
    instance_url = images["series"][0]["images"][0]["url"]
    assert doctor.get(instance_url).status_code in (200, 302)  # 302: presigned S3 URL
    first_id = images["series"][0]["images"][0]["id"]
    batch = doctor.get(f"{images['study']['files_url']}?ids={first_id}")
    assert batch.status_code == 200

    # The same patient's other study is not in the share.
    assert doctor.get(reverse("viewer:study", args=[mr.id])).status_code == 404
    other = doctor.get(reverse("viewer:study_images", args=[mr.id]))
    assert other.status_code == 404
    mr_instance = mr.series.get().instances.get()
    other_batch = reverse("viewer:study_files", args=[mr.id])
    assert doctor.get(f"{other_batch}?ids={mr_instance.id}").status_code == 404


def test_revoking_stops_the_doctors_viewer_on_the_next_request(doctor, patient, ct):
    from phr.sharing import services

    share, secrets = make_share(patient, [ct])
    open_with_code(doctor, secrets.code)
    images = doctor.get(reverse("viewer:study_images", args=[ct.id])).json()
    instance_url = images["series"][0]["images"][0]["url"]
    assert doctor.get(instance_url).status_code in (200, 302)  # 302: presigned S3 URL

    batch_url = f"{images['study']['files_url']}?ids={images['series'][0]['images'][0]['id']}"
    assert doctor.get(batch_url).status_code == 200

    services.revoke(share)
    # Gone, and said so: the doctor held this share (no oracle for anyone else, see below).
    assert doctor.get(instance_url).status_code == 410
    assert doctor.get(batch_url).status_code == 410
    assert doctor.get(reverse("viewer:study_images", args=[ct.id])).status_code == 410
    assert (
        doctor.get(reverse("viewer:instance_tags", args=[first_instance(ct).id])).status_code == 410
    )
    page = doctor.get(reverse("viewer:study", args=[ct.id]))
    assert page.status_code == 410
    assert "This share has ended" in page.content.decode()
    assert "The patient has stopped sharing these scans." in page.content.decode()
    assert patient.get_full_name() not in page.content.decode() or not patient.get_full_name()
    # The patient sees the refusal in the access log, once (the browser's grant is then gone).
    refused = AccessEvent.objects.filter(share=share, kind=Event.REFUSED)
    assert refused.count() == 1
    assert refused.get().ip


def first_instance(study):
    return study.series.first().instances.first()


def test_a_browser_that_never_held_a_share_still_gets_a_plain_404(client, patient, ct):
    make_share(patient, [ct])
    assert client.get(reverse("viewer:study", args=[ct.id])).status_code == 404
    assert client.get(reverse("viewer:instance", args=[first_instance(ct).id])).status_code == 404


@pytest.mark.usefixtures("file_system_storage")
def test_a_doctors_browser_keeps_an_image_no_longer_than_the_share_lasts(
    doctor, patient, patient_client, ct
):
    """A hospital PC is shared: the doctor's browser may keep an image only until the doctor's
    access ends (the share's end, or the 12-hour limit), never 'immutable for a year' as the
    patient's own browser may."""
    _share, secrets = make_share(patient, [ct])
    open_with_code(doctor, secrets.code)
    url = reverse("viewer:instance", args=[first_instance(ct).id])

    for_doctor = doctor.get(url)
    assert for_doctor.status_code == 200
    cache_control = for_doctor["Cache-Control"]
    assert "immutable" not in cache_control and "private" in cache_control
    max_age = int(cache_control.split("max-age=")[1].split(",")[0])
    assert 0 < max_age <= settings.PHR_DOCTOR_SESSION_SECONDS

    for_patient = patient_client.get(url)
    assert "immutable" in for_patient["Cache-Control"]
