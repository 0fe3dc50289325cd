"""The one JSON request: every series with its ordered images, from the database alone."""

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from pydicom.data import get_testdata_file

from phr.vault.models import Instance
from tests.support.vaultdata import ingest_path


def images_url(study):
    return reverse("viewer:study_images", args=[study.id])


def biggest_series(studies):
    """The CD's longest stack of real images (its TINY_ALPHA series has no pixels)."""
    with_pixels = [
        series
        for study in studies
        for series in study.series.all()
        if series.instances.filter(rows__isnull=False).exists()
    ]
    return max(with_pixels, key=lambda s: s.num_instances)


def test_lists_every_series_in_anatomical_order(patient_client, cd_studies):
    series = biggest_series(cd_studies)
    response = patient_client.get(images_url(series.study))
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    data = response.json()
    listed = next(s for s in data["series"] if s["id"] == str(series.id))
    expected = list(
        series.instances.order_by("slice_position", "instance_number").values_list("id", flat=True)
    )
    assert [image["id"] for image in listed["images"]] == [str(pk) for pk in expected]
    positions = [image["position"] for image in listed["images"]]
    assert positions == sorted(positions)
    first = listed["images"][0]
    instance = Instance.objects.get(pk=first["id"])
    assert first["url"] == reverse("viewer:instance", args=[instance.id])
    assert (first["rows"], first["columns"], first["frames"]) == (
        instance.rows,
        instance.columns,
        instance.number_of_frames,
    )
    assert listed["thumbnail"] == reverse("vault:series_thumbnail", args=[series.id])
    assert data["study"]["id"] == str(series.study.id)


def test_display_hints_come_with_each_image(patient_client, ct_study):
    data = patient_client.get(images_url(ct_study)).json()
    image = data["series"][0]["images"][0]
    assert image["pixel_spacing"] == [0.661468, 0.661468]
    assert image["photometric"] == "MONOCHROME2"
    assert len(image["orientation"]) == 6
    assert image["has_pixels"] is True


def test_is_built_without_opening_a_single_file(patient_client, cd_studies):
    study = biggest_series(cd_studies).study
    for instance in Instance.objects.filter(series__study=study):
        default_storage.delete(instance.storage_key)
    response = patient_client.get(images_url(study))
    assert response.status_code == 200
    assert sum(len(s["images"]) for s in response.json()["series"]) == study.num_instances


def test_offers_the_patients_other_studies_for_comparison_and_nobody_elses(
    patient_client, patient, ct_study, other_patient
):
    mine = ingest_path(patient, get_testdata_file("MR_small.dcm")).study
    theirs = ingest_path(other_patient, get_testdata_file("JPEG2000.dcm")).study
    data = patient_client.get(images_url(ct_study)).json()
    offered = {study["id"] for study in data["comparisons"]}
    assert offered == {str(mine.id)}
    assert str(theirs.id) not in offered
    assert data["comparisons"][0]["images_url"] == images_url(mine)


def test_a_series_without_pixels_is_left_out_of_the_stacks(patient_client, patient):
    result = ingest_path(patient, get_testdata_file("test-SR.dcm"))
    data = patient_client.get(images_url(result.study)).json()
    assert data["series"] == []


@pytest.mark.parametrize("who", ["other", "anonymous"])
def test_anyone_else_gets_404(client, ct_study, other_patient, who):
    if who == "other":
        client.force_login(other_patient)
    assert client.get(images_url(ct_study)).status_code == 404


def test_the_overlay_names_the_patient_as_people_write_names(patient_client, ct_study):
    # DICOM writes family^given^middle^prefix^suffix; the corner of the viewer says it the way
    # a doctor reads it, as the study pages do.
    ct_study.patient_name = "SMITH^JANE^A^DR"
    ct_study.save(update_fields=["patient_name"])
    data = patient_client.get(images_url(ct_study)).json()
    assert data["study"]["patient"] == "Dr Jane A Smith"
