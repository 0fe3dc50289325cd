"""Filing images into Study > Series: the counters stay exact, and the series a worker thread
remembers between uploads never files an image into a study that was deleted, accepted out of
the Inbox or merged meanwhile."""

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from phr.hospital.models import Organisation
from phr.hospital.services import accept
from phr.vault import lifecycle
from phr.vault.models import Instance, Series, Study
from tests.hospital.conftest import deliver
from tests.support.vaultdata import ingest_path


@pytest.fixture
def one_series(tmp_path) -> list[Path]:
    """Five images of one CT series: pydicom's CT_small with a new SOP Instance UID each."""
    template = dcmread(get_testdata_file("CT_small.dcm"))
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = []
    for number in range(1, 6):
        template.StudyInstanceUID, template.SeriesInstanceUID = study_uid, series_uid
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.InstanceNumber = number
        path = tmp_path / f"IM{number}.dcm"
        template.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture
def hospital(db):
    return Organisation.objects.create(name="St Mary's Hospital")


def counts(study: Study) -> tuple[int, int, int]:
    study.refresh_from_db()
    return study.num_series, study.num_instances, study.total_bytes


def test_images_of_one_series_are_counted_exactly(patient, one_series):
    results = [ingest_path(patient, path) for path in one_series]
    assert {result.outcome for result in results} == {"stored"}
    study = Study.objects.get(owner=patient)
    sizes = sum(Instance.objects.filter(series__study=study).values_list("size", flat=True))
    assert counts(study) == (1, 5, sizes)
    assert Series.objects.get(study=study).num_instances == 5
    assert study.modalities == "CT"
    assert [result.study.pk for result in results] == [study.pk] * 5
    assert results[0].study_created and not any(result.study_created for result in results[1:])


def test_an_image_after_its_study_was_deleted_starts_the_study_afresh(patient, one_series):
    first = ingest_path(patient, one_series[0])
    ingest_path(patient, one_series[1])
    lifecycle.delete_study(first.study)

    again = ingest_path(patient, one_series[2])

    assert again.outcome == "stored" and again.study_created
    assert again.study.pk != first.study.pk
    assert counts(Study.objects.get(owner=patient)) == (1, 1, again.instance.size)


def test_an_accepted_inbox_study_is_not_filled_again_from_the_inbox(patient, hospital, one_series):
    deliver(patient, hospital, one_series[0])
    accepted = accept(Study.objects.get(owner=patient, inbox=True))
    assert not accepted.inbox

    deliver(patient, hospital, one_series[1])

    # The second delivery waits in a new Inbox study; what the patient accepted is untouched.
    assert counts(accepted)[1] == 1
    waiting = Study.objects.get(owner=patient, inbox=True)
    assert waiting.pk != accepted.pk and counts(waiting)[1] == 1


def test_a_series_merged_into_the_vault_is_not_filled_again_from_the_inbox(
    patient, hospital, one_series
):
    kept = ingest_path(patient, one_series[0]).study
    deliver(patient, hospital, one_series[1])
    accept(Study.objects.get(owner=patient, inbox=True))  # merges into `kept`
    assert counts(kept)[:2] == (1, 2)

    deliver(patient, hospital, one_series[2])

    assert counts(kept)[:2] == (1, 2)
    waiting = Study.objects.get(owner=patient, inbox=True)
    assert counts(waiting)[:2] == (1, 1)
    assert Series.objects.get(study=waiting).num_instances == 1
