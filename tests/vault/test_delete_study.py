"""Deleting a study: only after recent re-authentication, and it removes the rows, the stored
files and the cached thumbnails, while every other study's files stay."""

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from pydicom.data import get_testdata_file

from phr.vault import thumbnails
from phr.vault.ingest import ingest_file
from phr.vault.lifecycle import delete_study
from phr.vault.models import Document, Instance, Series, Study
from tests.factories import PASSWORD
from tests.support.vaultdata import ingest_path


def reauthenticate(client):
    response = client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    assert response.status_code == 302, response.content[:300]


def blob_keys(study) -> set[str]:
    return set(Instance.objects.filter(series__study=study).values_list("storage_key", flat=True))


def all_blob_keys(owner) -> set[str]:
    return set(Instance.objects.filter(owner=owner).values_list("storage_key", flat=True))


def head_ct(studies):
    return next(study for study in studies if study.description == "CT, HEAD/BRAIN WO CONTRAST")


def test_confirmation_page_needs_recent_reauthentication(patient_client, ct_study):
    url = reverse("vault:delete_study", args=[ct_study.id])
    response = patient_client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_reauthenticate"))
    assert Study.objects.filter(pk=ct_study.pk).exists()


def test_delete_without_reauthentication_deletes_nothing(patient_client, ct_study):
    keys = blob_keys(ct_study)
    response = patient_client.post(reverse("vault:delete_study", args=[ct_study.id]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_reauthenticate"))
    assert Study.objects.filter(pk=ct_study.pk).exists()
    assert all(default_storage.exists(key) for key in keys)


def test_after_reauthentication_the_confirmation_page_explains(patient_client, ct_study):
    reauthenticate(patient_client)
    response = patient_client.get(reverse("vault:delete_study", args=[ct_study.id]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Delete this study?" in html
    assert "1 series and 1 image" in html
    assert "This can't be undone." in html
    assert reverse("vault:download_study", args=[ct_study.id]) in html
    assert 'method="post"' in html and "csrfmiddlewaretoken" in html


def test_delete_removes_rows_blobs_and_thumbnails_and_spares_other_studies(
    patient_client, patient, cd_studies
):
    doomed = head_ct(cd_studies)
    series = list(doomed.series.all())
    doomed_keys = blob_keys(doomed)
    assert len(doomed_keys) == 4
    other_keys = all_blob_keys(patient) - doomed_keys
    assert other_keys
    # Render a thumbnail of the doomed study and one of another study, so both are cached.
    patient_client.get(reverse("vault:series_thumbnail", args=[series[0].id]))
    doomed_thumb = thumbnails.thumbnail_key(patient.pk, thumbnails.cover_instance(series[0]).sha256)
    survivor = next(study for study in cd_studies if study.description == "Brain").series.first()
    patient_client.get(reverse("vault:series_thumbnail", args=[survivor.id]))
    kept_thumb = thumbnails.thumbnail_key(patient.pk, thumbnails.cover_instance(survivor).sha256)
    assert default_storage.exists(doomed_thumb) and default_storage.exists(kept_thumb)

    reauthenticate(patient_client)
    response = patient_client.post(reverse("vault:delete_study", args=[doomed.id]), follow=True)

    assert response.redirect_chain == [(reverse("vault:home"), 302)]
    html = response.content.decode()
    assert "has been deleted from your vault" in html
    assert "3 September 1995" in html
    assert not Study.objects.filter(pk=doomed.pk).exists()
    assert not Series.objects.filter(pk__in=[one.pk for one in series]).exists()
    assert not Instance.objects.filter(storage_key__in=doomed_keys).exists()
    assert not any(default_storage.exists(key) for key in doomed_keys)
    assert not default_storage.exists(doomed_thumb)
    # Everything else in the vault is untouched.
    assert all(default_storage.exists(key) for key in other_keys)
    assert default_storage.exists(kept_thumb)
    assert patient.studies.count() == len(cd_studies) - 1
    assert doomed.pk not in [card.study.pk for card in response.context["cards"]]


def test_another_patients_study_is_404_and_survives(client, other_patient, ct_study):
    from tests.conftest import login_with_totp, wait_for_fresh_totp_window

    wait_for_fresh_totp_window()
    login_with_totp(client, other_patient)
    reauthenticate(client)
    keys = blob_keys(ct_study)
    assert client.post(reverse("vault:delete_study", args=[ct_study.id])).status_code == 404
    assert Study.objects.filter(pk=ct_study.pk).exists()
    assert all(default_storage.exists(key) for key in keys)


def test_same_file_in_another_patients_vault_survives(patient, other_patient, ct_study):
    theirs = ingest_path(other_patient, get_testdata_file("CT_small.dcm")).study
    their_keys = blob_keys(theirs)
    delete_study(ct_study)
    assert all(default_storage.exists(key) for key in their_keys)
    assert Study.objects.filter(pk=theirs.pk).exists()


def test_a_blob_another_row_still_points_at_is_kept(patient, ct_study, cd_studies):
    # Content addressing per owner makes this rare, but the rule holds: bytes go only once
    # no row refers to them.
    instance = Instance.objects.get(series__study=ct_study)
    other_series = head_ct(cd_studies).series.first()
    Instance.objects.create(
        series=other_series,
        owner=patient,
        sop_instance_uid="1.2.826.0.1.3680043.8.498.1",
        sha256=instance.sha256,
        size=instance.size,
        storage_key=instance.storage_key,
    )
    result = delete_study(ct_study)
    assert default_storage.exists(instance.storage_key)
    assert result.blobs_removed == 0


def test_attached_documents_stay_in_the_vault(patient, ct_study, tmp_path):
    from PIL import Image

    pdf = tmp_path / "report.pdf"
    Image.new("RGB", (40, 40), "white").save(pdf, "PDF")
    with pdf.open("r+b") as fileobj:
        document = ingest_file(patient, fileobj, filename="report.pdf", attach_to=ct_study).document
    delete_study(ct_study)
    document.refresh_from_db()
    assert document.study is None
    assert default_storage.exists(document.storage_key)
    assert Document.objects.filter(owner=patient).count() == 1


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_visitor_is_sent_to_login(client, ct_study, method):
    response = getattr(client, method)(reverse("vault:delete_study", args=[ct_study.id]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))
    assert Study.objects.filter(pk=ct_study.pk).exists()
