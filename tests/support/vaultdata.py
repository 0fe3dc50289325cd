"""Real DICOM data for tests: pydicom's bundled files, ingested through the real service."""

import os
import shutil
import tempfile
from pathlib import Path

from pydicom.data import get_testdata_file

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
