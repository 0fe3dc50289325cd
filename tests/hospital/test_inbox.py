"""The Inbox: what a hospital sent stays out of the vault, out of shares and out of sight of
anyone else until the patient accepts it; Reject deletes it, blobs and all."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from phr.hospital import services
from phr.sharing import services as sharing
from phr.vault.models import Instance, Series, Study
from tests.hospital.conftest import deliver
from tests.support.vaultdata import ingest_path
from tests.vault.test_delete_study import reauthenticate


def inbox_study(patient):
    return Study.objects.get(owner=patient, inbox=True)


def test_inbox_lists_deliveries_and_the_vault_does_not(patient_client, patient, hospital):
    deliver(patient, hospital, "CT_small.dcm")
    study = inbox_study(patient)

    inbox = patient_client.get(reverse("hospital:inbox"))
    assert inbox.status_code == 200
    assert study.title in inbox.content.decode()
    assert "St Mary" in inbox.content.decode()
    home = patient_client.get(reverse("vault:home")).content.decode()
    assert str(study.id) not in home
    # The navigation shows how many wait.
    assert 'aria-label="1 waiting"' in home
    # The owner may open it to decide, from the study's own page too.
    page = patient_client.get(reverse("vault:study", args=[study.id])).content.decode()
    assert 'id="inbox-decision"' in page
    assert reverse("hospital:accept", args=[study.id]) in page
    assert "Share with a doctor" not in page


def test_an_inbox_study_cannot_be_shared(patient_client, patient, hospital):
    deliver(patient, hospital, "CT_small.dcm")
    study = inbox_study(patient)
    page = patient_client.get(reverse("sharing:create"))
    if page.status_code == 200:  # may ask to re-authenticate first
        assert str(study.id) not in page.content.decode()
    with pytest.raises(ValueError):
        sharing.create_share(
            patient, [study], label="Dr", expires_at=timezone.now() + timedelta(days=1)
        )


def test_nobody_else_sees_an_inbox_study(client, patient, other_patient, hospital):
    deliver(patient, hospital, "CT_small.dcm")
    study = inbox_study(patient)
    assert client.get(reverse("vault:study", args=[study.id])).status_code in (302, 404)
    from tests.conftest import login_with_totp

    login_with_totp(client, other_patient)
    assert client.get(reverse("vault:study", args=[study.id])).status_code == 404
    series = study.series.first()
    assert client.get(reverse("vault:series_thumbnail", args=[series.id])).status_code == 404


def test_accept_moves_the_study_into_the_vault(patient_client, patient, hospital):
    deliver(patient, hospital, "CT_small.dcm")
    study = inbox_study(patient)

    response = patient_client.post(reverse("hospital:accept", args=[study.id]))

    assert response.status_code == 302
    study.refresh_from_db()
    assert study.inbox is False
    assert study.deposited_by == hospital  # where it came from stays on record
    assert str(study.id) in patient_client.get(reverse("vault:home")).content.decode()


def new_series_of(name, tmp_path, modality) -> Path:
    """A copy of a test file as a new image in a new series of the same study."""
    dataset = dcmread(get_testdata_file(name))
    dataset.SeriesInstanceUID, dataset.SOPInstanceUID = generate_uid(), generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.Modality = modality
    path = tmp_path / f"{modality}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_accept_merges_new_images_into_a_study_already_kept(patient, hospital, tmp_path):
    ingest_path(patient, get_testdata_file("MR_small.dcm"))
    kept = Study.objects.get(owner=patient)
    deliver(patient, hospital, "MR_small.dcm", new_series_of("MR_small.dcm", tmp_path, "SR"))
    # The MR image is already in the vault: only the new one waits in the Inbox.
    waiting = inbox_study(patient)
    assert waiting.study_instance_uid == kept.study_instance_uid
    assert Instance.objects.filter(series__study=waiting).count() == 1

    result = services.accept(waiting)

    assert result.pk == kept.pk
    kept.refresh_from_db()
    assert not Study.objects.filter(pk=waiting.pk).exists()
    assert (kept.num_series, kept.num_instances) == (2, 2)
    assert set(kept.modality_list) == {"MR", "SR"}
    assert kept.total_bytes == sum(
        Instance.objects.filter(owner=patient).values_list("size", flat=True)
    )
    assert Series.objects.filter(study=kept).count() == 2


def test_accept_merges_into_an_existing_series(patient, hospital, tmp_path):
    # Same series in both places: the images join the vault's series, counted once each.
    ingest_path(patient, get_testdata_file("MR_small.dcm"))
    kept = Study.objects.get(owner=patient)
    deliver(patient, hospital, "MR_small_expb.dcm")  # same UIDs, other bytes: kept aside
    waiting = inbox_study(patient)

    services.accept(waiting)

    kept.refresh_from_db()
    assert kept.num_series == 1 and kept.num_instances == 2
    assert kept.series.get().num_instances == 2


def test_reject_deletes_rows_and_blobs(patient_client, patient, hospital):
    deliver(patient, hospital, "CT_small.dcm", "MR_small.dcm")
    keys = list(Instance.objects.filter(owner=patient).values_list("storage_key", flat=True))
    assert keys and all(default_storage.exists(key) for key in keys)
    studies = list(Study.objects.filter(owner=patient))

    reauthenticate(patient_client)
    for study in studies:
        response = patient_client.post(reverse("hospital:reject", args=[study.id]))
        assert response.status_code == 302

    assert not Study.objects.filter(owner=patient).exists()
    assert not Instance.objects.filter(owner=patient).exists()
    assert not any(default_storage.exists(key) for key in keys)


def test_reject_needs_recent_reauthentication(patient_client, patient, hospital):
    deliver(patient, hospital, "CT_small.dcm")
    study = inbox_study(patient)
    # Logging in counts as authenticating; make it old.
    session = patient_client.session
    for key in list(session.keys()):
        if "authentication" in key:
            del session[key]
    session.save()
    response = patient_client.post(reverse("hospital:reject", args=[study.id]))
    assert response.status_code == 302
    assert Study.objects.filter(pk=study.pk).exists()


def test_reject_does_not_touch_vault_studies(patient_client, patient, ct_study):
    reauthenticate(patient_client)
    response = patient_client.post(reverse("hospital:reject", args=[ct_study.id]))
    assert response.status_code == 302
    assert Study.objects.filter(pk=ct_study.pk).exists()
