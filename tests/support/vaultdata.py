"""Real DICOM data for tests: pydicom's bundled files, ingested through the real service."""

import os
import shutil
import tempfile
from pathlib import Path

import pydicom
from django.core.files.storage import default_storage
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from phr.vault.ingest import ingest_file
from phr.vault.models import Source


def dicomdir_tree() -> Path:
    """pydicom's real CD tree: a DICOMDIR plus the image files it references."""
    return Path(get_testdata_file("DICOMDIR")).parent


def ingest_path(owner, path, *, source=Source.UPLOAD, filename=None):
    """Ingest one file from disk the way an upload does (a temp copy of ours, preamble zeroed)."""
    with tempfile.TemporaryFile() as tmp, open(path, "rb") as original:
        shutil.copyfileobj(original, tmp)
        tmp.seek(0)
        return ingest_file(owner, tmp, filename=filename or os.path.basename(path), source=source)


def ingest_tree(owner, root) -> list:
    results = []
    for dirpath, _dirs, files in sorted(os.walk(root)):
        for name in sorted(files):
            results.append(ingest_path(owner, Path(dirpath) / name))
    return results


def longest_stack(studies):
    """The CD's longest series of real images (its TINY_ALPHA series has no pixels)."""
    series = [
        s
        for study in studies
        for s in study.series.all()
        if s.instances.filter(rows__isnull=False).count() > 1
    ]
    return max(series, key=lambda s: s.num_instances)


def add_one_image_series(series, tmp_path, *, series_number=99):
    """A series of one image in the same study, listed after the others: a copy of one of
    `series`' files under new series and SOP UIDs. Returns the new series."""
    with default_storage.open(series.instances.first().storage_key, "rb") as stored:
        dataset = pydicom.dcmread(stored)
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SeriesNumber = series_number
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / f"series-{series_number}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    result = ingest_path(series.study.owner, path)
    assert result.outcome == "stored", result.message
    assert result.instance.series.study_id == series.study_id
    return result.instance.series
