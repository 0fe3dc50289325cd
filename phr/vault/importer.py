"""Importing a folder or a ZIP that is already on the server (a CD copied by an administrator,
the demo patient's images) through the same ingest service as a browser upload.

The `import_dicom` command and `phr.demo` both use it. Results stream one file at a time,
so a 20,000-file CD needs no more memory than one file; `ImportSummary` keeps only tallies.
"""

import os
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from phr.vault import ingest
from phr.vault.dicomfile import sniff_kind
from phr.vault.ingest import IngestFailure, IngestResult, Outcome
from phr.vault.models import Source, Study

TRY_AGAIN = (
    "Couldn't be saved just now (storage or database trouble). Nothing was kept; run the "
    "import again."
)

# In the order the summary lists them, with the words it uses.
OUTCOME_LABELS = {
    Outcome.STORED: "stored",
    Outcome.CONFLICT: "stored beside a different image with the same ID",
    Outcome.DUPLICATE: "already in your vault",
    Outcome.DOCUMENT: "kept as documents",
    Outcome.SKIPPED: "skipped",
    Outcome.REJECTED: "rejected",
    Outcome.ERROR: "failed",
}
PROBLEMS = {Outcome.REJECTED, Outcome.ERROR}


# --- walking ---------------------------------------------------------------------------------


def iter_path(owner, path, *, source: str = Source.IMPORT) -> Iterator[IngestResult]:
    """A folder (every file in it), a ZIP of one, or a single file."""
    path = Path(path)
    if path.is_dir():
        return iter_folder(owner, path, source=source)
    if _is_zip(path):
        return iter_zip(owner, path, source=source)
    return iter_files(owner, [path], source=source, root=path.parent)


def iter_folder(owner, root, *, source: str = Source.IMPORT) -> Iterator[IngestResult]:
    return iter_files(owner, folder_files(root), source=source, root=Path(root))


def folder_files(root) -> Iterator[Path]:
    """Every file under `root`, in a stable order (sorted, so reruns report alike)."""
    for folder, subfolders, names in os.walk(root):
        subfolders.sort()
        for name in sorted(names):
            yield Path(folder) / name


def iter_files(
    owner, paths: Iterable[Path], *, source: str = Source.IMPORT, root: Path | None = None
) -> Iterator[IngestResult]:
    for path in paths:
        result = ingest_path(owner, path, source=source)
        # Reported by the path within the folder: on a CD many files share a name.
        result.filename = os.path.relpath(path, root) if root else str(path)
        yield result


def ingest_path(owner, path, *, source: str = Source.IMPORT) -> IngestResult:
    """One file from disk, the way an upload arrives: ingest zeroes the preamble of the file it
    is given, so it gets a temp copy of ours, never the original."""
    name = os.path.basename(path)
    try:
        with tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR) as copy:
            with open(path, "rb") as original:
                shutil.copyfileobj(original, copy)
            copy.seek(0)
            return ingest.ingest_file(owner, copy, filename=name, source=source)
    except IngestFailure:
        return IngestResult(name, Outcome.ERROR, TRY_AGAIN, "try_again")
    except OSError as error:
        return IngestResult(
            name, Outcome.ERROR, f"Couldn't read the file: {error.strerror}.", "unreadable"
        )


def iter_zip(owner, path, *, source: str = Source.IMPORT) -> Iterator[IngestResult]:
    name = os.path.basename(path)
    try:
        with open(path, "rb") as archive:
            yield from ingest.ingest_zip(owner, archive, filename=name, source=source)
    except IngestFailure:
        yield IngestResult(name, Outcome.ERROR, TRY_AGAIN, "try_again")


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fileobj:
        return sniff_kind(fileobj) == "zip"


def count_files(path) -> int | None:
    """How many results to expect, for a progress bar; None when we can't tell cheaply."""
    path = Path(path)
    if path.is_dir():
        return sum(len(names) for _folder, _subfolders, names in os.walk(path))
    if not _is_zip(path):
        return 1
    try:
        # Only the central directory is read, to count; safezip checks it again when importing.
        with zipfile.ZipFile(path) as archive:
            return sum(not entry.is_dir() for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        return None


# --- summary ---------------------------------------------------------------------------------


@dataclass
class _StudyTally:
    study: Study
    created: bool = False
    added: int = 0


class ImportSummary:
    """What an import did, grouped by study: "CT Chest, 12 Mar 2024, 3 series, 412 images — new"."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.problems: list[IngestResult] = []
        self._studies: dict = {}

    def add(self, result: IngestResult) -> None:
        self.counts[result.outcome] += 1
        if result.outcome in PROBLEMS:
            self.problems.append(result)
        if result.study is not None:
            tally = self._studies.setdefault(result.study.pk, _StudyTally(result.study))
            tally.created |= result.study_created
            tally.added += int(result.outcome in (Outcome.STORED, Outcome.CONFLICT))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> bool:
        return bool(self.problems)

    @property
    def studies(self) -> list[Study]:
        return [tally.study for tally in self._studies.values()]

    def study_lines(self) -> list[str]:
        lines = []
        for tally in self._studies.values():
            # The totals after the import, not those when its first file arrived.
            study = Study.objects.filter(pk=tally.study.pk).first() or tally.study
            if tally.created:
                status = "new"
            elif tally.added:
                status = f"{tally.added} {_plural(tally.added, 'image')} added"
            else:
                status = "already in your vault"
            lines.append(f"{study_label(study)} — {status}")
        return lines

    def count_line(self) -> str:
        parts = [
            f"{self.counts[o]} {label}" for o, label in OUTCOME_LABELS.items() if self.counts[o]
        ]
        return f"{self.total} {_plural(self.total, 'file')}: " + (", ".join(parts) or "none")

    def render(self) -> str:
        lines = self.study_lines() or ["No images were found."]
        lines += ["", self.count_line()]
        if self.problems:
            lines += ["", "These files could not be imported:"]
            lines += [f"  {result.filename}: {result.message}" for result in self.problems]
        return "\n".join(lines)


def study_label(study: Study) -> str:
    """'CT Chest, 12 Mar 2024, 3 series, 412 images'."""
    title = study.title
    if study.description and study.modalities:
        first = study.modality_list[0]
        if not study.description.upper().startswith(first):
            title = f"{first} {study.description}"
    day = f"{study.study_date.day} {study.study_date:%b %Y}" if study.study_date else "no date"
    images = f"{study.num_instances} {_plural(study.num_instances, 'image')}"
    return f"{title}, {day}, {study.num_series} series, {images}"


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"
