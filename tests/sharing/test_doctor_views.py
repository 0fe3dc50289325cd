"""SECURITY 9 and 10: a doctor sees the shared studies, only those, and only while the share
lives. Scope is checked on every request; anything outside it is 404, never 403."""

import io
import re
import time
import zipfile
from datetime import timedelta

import pytest
from django.http import Http404
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from phr.sharing.models import AccessEvent, Event, Share
from phr.vault import access
from phr.vault.export import AccessEnded
from phr.vault.models import Instance
from tests.sharing.conftest import DOCTOR_IP, attach_pdf, make_share, open_with_code

pytestmark = pytest.mark.django_db


@pytest.fixture
def shared(patient, ct, mr, report, doctor):
    """The patient shares the CT (with its report) and not the MR; the doctor opens it."""
    share, plain = make_share(patient, [ct], allow_download=True)
    assert open_with_code(doctor, plain.code).status_code == 302
    return share


def test_the_doctor_lands_on_the_shared_studies_and_nothing_else(shared, doctor, patient, ct, mr):
    patient.full_name = "Ada Lovelace"
    patient.date_of_birth = timezone.datetime(1961, 3, 14).date()
    patient.save()
    response = doctor.get("/shared/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Ada Lovelace" in page and "14 March 1961" in page
    assert reverse("sharing:shared_study", args=[ct.pk]) in page
    assert str(mr.pk) not in page
    assert "Report.pdf" in page
    assert f"{ct.num_instances} image" in page


def test_the_study_page_lists_series_documents_and_download(shared, doctor, ct, report):
    page = doctor.get(f"/shared/studies/{ct.pk}/").content.decode()
    assert ct.study_instance_uid in page
    assert reverse("vault:document", args=[report.pk]) in page
    assert reverse("vault:download_study", args=[ct.pk]) in page
    event = AccessEvent.objects.get(share=shared, kind=Event.VIEWED)
    assert event.object_id == ct.pk and event.ip == DOCTOR_IP and ct.title in event.detail


def test_the_access_helpers_give_a_doctor_exactly_the_shared_studies(shared, doctor, ct, mr):
    request = doctor.get("/shared/").wsgi_request
    assert list(access.visible_studies(request)) == [ct]
    assert access.get_study_or_404(request, ct.pk) == ct
    instance = Instance.objects.filter(series__study=ct).first()
    assert access.get_instance_or_404(request, instance.pk) == instance


def test_another_study_of_the_same_patient_is_404(shared, doctor, mr):
    assert doctor.get(f"/shared/studies/{mr.pk}/").status_code == 404
    assert doctor.get(reverse("vault:download_study", args=[mr.pk])).status_code == 404
    series = mr.series.first()
    assert doctor.get(reverse("vault:series_thumbnail", args=[series.pk])).status_code == 404
    request = doctor.get("/shared/").wsgi_request
    instance = Instance.objects.filter(series__study=mr).first()
    with pytest.raises(Http404):
        access.get_instance_or_404(request, instance.pk)


def test_another_patients_study_and_document_are_404(shared, doctor, other_patient, other_study):
    their_report = attach_pdf(other_patient, other_study, "Theirs.pdf")
    assert doctor.get(f"/shared/studies/{other_study.pk}/").status_code == 404
    assert doctor.get(reverse("vault:document", args=[their_report.pk])).status_code == 404
    assert doctor.get(reverse("vault:download_study", args=[other_study.pk])).status_code == 404
    request = doctor.get("/shared/").wsgi_request
    instance = Instance.objects.filter(series__study=other_study).first()
    with pytest.raises(Http404):
        access.get_instance_or_404(request, instance.pk)


def test_a_loose_document_of_the_patient_is_not_shared(shared, doctor, patient):
    loose = attach_pdf(patient, None, "Loose.pdf")
    assert doctor.get(reverse("vault:document", args=[loose.pk])).status_code == 404


def test_the_shared_document_opens_and_is_logged(shared, doctor, report):
    response = doctor.get(reverse("vault:document", args=[report.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert b"".join(response.streaming_content).startswith(b"%PDF")
    assert "sandbox" in response["Content-Security-Policy"]
    assert AccessEvent.objects.filter(share=shared, kind=Event.DOCUMENT).count() == 1


def test_the_thumbnail_of_a_shared_series_is_served(shared, doctor, ct):
    response = doctor.get(reverse("vault:series_thumbnail", args=[ct.series.first().pk]))
    assert response.status_code in (200, 302)


def test_the_zip_download_has_a_dicomdir_when_allowed(shared, doctor, ct):
    response = doctor.get(reverse("vault:download_study", args=[ct.pk]))
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = archive.namelist()
    assert "DICOMDIR" in names
    assert sum(name.startswith("DICOM/") for name in names) == ct.num_instances
    assert AccessEvent.objects.filter(share=shared, kind=Event.DOWNLOADED).count() == 1


def test_a_download_in_progress_stops_when_the_share_is_revoked(shared, doctor, ct, sharer):
    response = doctor.get(reverse("vault:download_study", args=[ct.pk]))
    chunks = iter(response.streaming_content)
    first = next(chunks)  # the first file is on its way to the doctor
    assert first.startswith(b"PK")

    sharer.post(reverse("sharing:revoke", args=[shared.pk]))

    # Raised in the server, so the connection is cut before the ZIP's end: the browser reports
    # a failed download instead of keeping an archive that looks complete.
    with pytest.raises(AccessEnded):
        b"".join(chunks)


def test_a_view_only_share_has_no_download(patient, ct, doctor):
    _share, plain = make_share(patient, [ct], allow_download=False)
    open_with_code(doctor, plain.code)
    page = doctor.get(f"/shared/studies/{ct.pk}/").content.decode()
    assert "/download/" not in page
    assert doctor.get(reverse("vault:download_study", args=[ct.pk])).status_code == 404


def test_revocation_refuses_the_very_next_request(shared, doctor, ct, sharer):
    assert doctor.get(f"/shared/studies/{ct.pk}/").status_code == 200
    sharer.post(reverse("sharing:revoke", args=[shared.pk]))
    response = doctor.get(f"/shared/studies/{ct.pk}/")
    assert response.status_code == 410
    assert "stopped sharing" in response.content.decode()
    # The refusal is in the patient's log; afterwards the browser simply has no share.
    assert AccessEvent.objects.filter(share=shared, kind=Event.REFUSED).count() == 1
    assert doctor.get(f"/shared/studies/{ct.pk}/").status_code == 302
    assert doctor.get(reverse("vault:document", args=[ct.documents.first().pk])).status_code == 404


def test_expiry_refuses_the_very_next_request(shared, doctor, ct):
    assert doctor.get("/shared/").status_code == 200
    Share.objects.filter(pk=shared.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = doctor.get(reverse("vault:download_study", args=[ct.pk]))
    assert response.status_code == 410
    assert "time the patient chose" in response.content.decode()
    assert AccessEvent.objects.filter(share=shared, kind=Event.EXPIRED).count() == 1


def test_the_access_helper_itself_rechecks_validity(shared, doctor, ct):
    request = doctor.get("/shared/").wsgi_request
    assert access.visible_studies(request).count() == 1
    Share.objects.filter(pk=shared.pk).update(revoked_at=timezone.now())
    assert access.visible_studies(request).count() == 0
    assert access.visible_documents(request).count() == 0


def test_the_doctor_session_ends_after_twelve_hours_at_most(patient, ct, doctor, settings):
    settings.PHR_DOCTOR_SESSION_SECONDS = 1
    _share, plain = make_share(patient, [ct], expires_at=timezone.now() + timedelta(days=30))
    open_with_code(doctor, plain.code)
    assert doctor.get("/shared/").status_code == 200
    time.sleep(1.1)
    response = doctor.get("/shared/")
    assert response.status_code == 410
    assert "12 hours" in response.content.decode()


def test_several_shares_in_one_browser(patient, ct, mr, other_patient, other_study, doctor):
    _first, plain_first = make_share(patient, [ct])
    second, plain_second = make_share(other_patient, [other_study])
    open_with_code(doctor, plain_first.code)
    open_with_code(doctor, plain_second.code)
    page = doctor.get("/shared/").content.decode()
    assert str(ct.pk) in page and str(other_study.pk) in page and str(mr.pk) not in page
    Share.objects.filter(pk=second.pk).update(revoked_at=timezone.now())
    ended = doctor.get("/shared/")
    assert ended.status_code == 410
    assert "Scans still shared with you" in ended.content.decode()
    assert doctor.get(f"/shared/studies/{ct.pk}/").status_code == 200
    assert doctor.get(f"/shared/studies/{other_study.pk}/").status_code == 404


def test_closing_the_shared_scans_ends_the_session(shared, doctor, ct):
    response = doctor.post("/shared/leave/")
    assert response.status_code == 302 and response.url == "/access"
    assert doctor.get(f"/shared/studies/{ct.pk}/").status_code == 302


def test_the_doctor_pages_need_a_share(ct, patient_client):
    stranger = Client()
    assert stranger.get("/shared/").status_code == 302
    assert stranger.get(f"/shared/studies/{ct.pk}/").status_code == 302
    # The owner's own login is no doctor session either.
    assert patient_client.get(f"/shared/studies/{ct.pk}/").status_code == 409


def test_a_patient_login_is_unchanged_by_sharing(patient_client, patient, ct, mr, other_study):
    make_share(patient, [ct])
    request = patient_client.get("/vault/").wsgi_request
    assert set(access.visible_studies(request)) == {ct, mr}


def test_no_query_string_carries_a_secret(shared, doctor, ct):
    for url in ["/shared/", f"/shared/studies/{ct.pk}/"]:
        page = doctor.get(url).content.decode()
        assert "?code=" not in page and "?token=" not in page and "?pin=" not in page
    assert Client().get("/access").status_code == 200


def test_a_doctors_browser_keeps_a_thumbnail_no_longer_than_the_share(patient, ct, doctor):
    ends = timezone.now() + timedelta(minutes=10)
    _share, secrets = make_share(patient, [ct], expires_at=ends)
    open_with_code(doctor, secrets.code)
    response = doctor.get(reverse("vault:series_thumbnail", args=[ct.series.first().pk]))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    cache = response["Cache-Control"]
    assert "private" in cache
    assert 0 < int(re.search(r"max-age=(\d+)", cache).group(1)) <= 600


def test_the_doctors_pages_offer_no_log_in_or_sign_up(patient, ct, doctor):
    # A doctor has no account here and needs none: the patient's header would only mislead.
    assert "Sign up" not in doctor.get("/access").content.decode()
    _share, plain = make_share(patient, [ct])
    doctor.post("/access", {"code": plain.code, "pin": ""})
    for page in ("/shared/", f"/shared/studies/{ct.pk}/"):
        html = doctor.get(page).content.decode()
        assert "Log in" not in html and "Sign up" not in html, page
