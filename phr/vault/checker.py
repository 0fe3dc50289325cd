"""Check that the vault's blobs and rows agree (`manage.py check_vault`).

Six things can go wrong, and only the leftovers are safe to repair by machine:
  - orphan blobs (a blob under `vault/` that no row references): left by an ingest that
    failed after storing and could not clean up. `fix` removes those older than the grace
    period; younger ones may belong to an ingest still committing its rows.
  - unreferenced thumbnails (under `thumbs/`, drawn from bytes no instance holds any more):
    `fix` removes them past the grace period too. A missing thumbnail is never a problem: it
    is drawn again when a page asks for it.
  - unreferenced series bundles (under `bundles/`, the files of a series as it no longer is;
    phr.vault.bundles): the same. A missing bundle is built again when the viewer asks.
  - incomplete multipart uploads (S3 only): a big blob whose upload stopped part-way when the
    object store or our process died. Its parts are invisible to listings but hold the
    patient's bytes; `fix` aborts those begun before the grace period.
  - stale temp files our processes leave when killed (see phr.vault.tempfiles) in the upload
    temp folder: `fix` removes those older than the grace period.
  - missing blobs (a row whose blob is gone) and checksum mismatches: data was lost or
    damaged. Only a person can decide what to restore, so these are reported, never touched.

Everything goes through Django's storage API (and, for multipart uploads, the S3 client that
storage holds), so the same code checks the file system and S3.
"""

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.files.storage import default_storage
from django.utils import timezone

from phr.vault import blobs, bundles, tempfiles, thumbnails
from phr.vault.models import Document, Instance

VAULT_ROOT = "vault"
THUMBS_ROOT = "thumbs"
DEFAULT_GRACE_SECONDS = 24 * 3600
HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Mismatch:
    key: str
    rows: tuple[str, ...]
    expected_sha256: str
    expected_size: int
    found_sha256: str
    found_size: int

    def describe(self) -> str:
        return (
            f"{self.key} ({', '.join(self.rows)}): expected sha256 {self.expected_sha256[:16]}… "
            f"{self.expected_size} bytes, found {self.found_sha256[:16]}… {self.found_size} bytes"
        )


@dataclass
class Report:
    grace_seconds: int
    owner_id: object = None
    fixed: bool = False
    blobs_seen: int = 0
    rows_seen: int = 0
    thumbnails_seen: int = 0
    bundles_seen: int = 0
    orphans: list[str] = field(default_factory=list)  # past grace and still there
    pending_orphans: list[str] = field(default_factory=list)  # within grace: left alone
    removed_orphans: list[str] = field(default_factory=list)
    orphan_thumbnails: list[str] = field(default_factory=list)
    pending_thumbnails: list[str] = field(default_factory=list)
    removed_thumbnails: list[str] = field(default_factory=list)
    orphan_bundles: list[str] = field(default_factory=list)
    pending_bundles: list[str] = field(default_factory=list)
    removed_bundles: list[str] = field(default_factory=list)
    incomplete_uploads: list[blobs.IncompleteUpload] = field(default_factory=list)
    pending_uploads: list[blobs.IncompleteUpload] = field(default_factory=list)
    aborted_uploads: list[blobs.IncompleteUpload] = field(default_factory=list)
    missing: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key -> rows
    mismatches: list[Mismatch] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # key -> error
    stale_temp: list[str] = field(default_factory=list)
    pending_temp: list[str] = field(default_factory=list)
    removed_temp: list[str] = field(default_factory=list)

    @property
    def problem_count(self) -> int:
        """What still needs attention after this run; pending items within grace don't."""
        return (
            len(self.orphans)
            + len(self.orphan_thumbnails)
            + len(self.orphan_bundles)
            + len(self.incomplete_uploads)
            + len(self.missing)
            + len(self.mismatches)
            + len(self.unreadable)
            + len(self.stale_temp)
        )

    @property
    def ok(self) -> bool:
        return self.problem_count == 0


# --- entry point -------------------------------------------------------------------------------


def check_vault(
    *,
    fix: bool = False,
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
    owner_id=None,
    storage=None,
    now: datetime | None = None,
) -> Report:
    """Compare rows with blobs (of one owner, or everybody's) and the temp folder with the
    clock; with `fix`, remove leftovers (orphan blobs, thumbnails and bundles, incomplete
    uploads, stale temp files) older than `grace_seconds`."""
    storage = storage or default_storage
    now = now or timezone.now()
    report = Report(grace_seconds=grace_seconds, owner_id=owner_id, fixed=fix)
    vault_root, thumbs_root = _scoped(VAULT_ROOT, owner_id), _scoped(THUMBS_ROOT, owner_id)
    bundles_root = _scoped(bundles.BUNDLES_ROOT, owner_id)

    # Rows first, then the listing: an ingest stores its blob before committing its rows, so
    # in this order a file arriving mid-check looks like a young orphan (protected by the
    # grace period), never like a row without a blob. Thumbnails and bundles are made after
    # their rows.
    rows = referenced_rows(owner_id)
    wanted_thumbnails = thumbnails.referenced_thumbnail_keys(owner_id)
    wanted_bundles = bundles.referenced_bundle_keys(owner_id)
    listed = set(blobs.keys_under(vault_root, storage))
    listed_thumbnails = set(blobs.keys_under(thumbs_root, storage))
    listed_bundles = set(blobs.keys_under(bundles_root, storage))
    report.rows_seen = sum(len(found) for found in rows.values())
    report.blobs_seen = len(listed)
    report.thumbnails_seen = len(listed_thumbnails)
    report.bundles_seen = len(listed_bundles)

    for key in sorted(rows):
        _check_referenced(storage, key, rows[key], key in listed, report)
    for key in sorted(listed - rows.keys()):
        _check_orphan(storage, key, now, grace_seconds, fix, report)
    for key in sorted(listed_thumbnails - wanted_thumbnails):
        # Re-asked, as for blobs: the image may have been uploaded (again) since the rows were
        # read. Should it arrive right after removal, the page draws the thumbnail again.
        lists = (report.pending_thumbnails, report.orphan_thumbnails, report.removed_thumbnails)
        _check_derived(
            storage, key, thumbnails.thumbnail_is_referenced, lists, now, grace_seconds, fix
        )
    for key in sorted(listed_bundles - wanted_bundles):
        lists = (report.pending_bundles, report.orphan_bundles, report.removed_bundles)
        _check_derived(storage, key, bundles.bundle_is_referenced, lists, now, grace_seconds, fix)
    for root in (vault_root, thumbs_root, bundles_root):
        for upload in blobs.incomplete_uploads_under(root, storage):
            _check_incomplete_upload(storage, upload, now, grace_seconds, fix, report)
    _check_temp_files(tempfiles.upload_temp_dir(), now, grace_seconds, fix, report)
    return report


def _scoped(root: str, owner_id) -> str:
    return f"{root}/{owner_id}" if owner_id is not None else root


# --- rows and blobs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    label: str
    sha256: str
    size: int


def referenced_rows(owner_id=None) -> dict[str, list[_Row]]:
    """storage key -> the rows that point at it, read in one pass without model instances."""
    rows = defaultdict(list)
    for model, label in ((Instance, "instance"), (Document, "document")):
        query = model.objects.all()
        if owner_id is not None:
            query = query.filter(owner_id=owner_id)
        fields = ("pk", "storage_key", "sha256", "size")
        for pk, key, sha256, size in query.values_list(*fields).iterator(chunk_size=2000):
            rows[key].append(_Row(f"{label} {pk}", sha256, size))
    return rows


def hash_blob(storage, key: str) -> tuple[str, int]:
    """SHA-256 and size of a stored blob, read in chunks so a 2 GB file never sits in memory."""
    digest, size = hashlib.sha256(), 0
    with storage.open(key, "rb") as blob:
        while chunk := blob.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _check_referenced(storage, key: str, rows: list[_Row], listed: bool, report: Report) -> None:
    labels = tuple(row.label for row in rows)
    try:
        # A key outside the walked folders (or listed a moment ago) is asked for directly.
        if not listed and not storage.exists(key):
            raise FileNotFoundError(key)
        found_sha256, found_size = hash_blob(storage, key)
    except Exception as error:
        if storage.exists(key):
            report.unreadable[key] = f"{type(error).__name__}: {error}"
        elif blobs.is_referenced(key):
            # Re-asked: a study deleted during the check removes its rows, then its blobs.
            report.missing[key] = labels
        return
    for row in rows:
        if (row.sha256, row.size) != (found_sha256, found_size):
            report.mismatches.append(
                Mismatch(key, labels, row.sha256, row.size, found_sha256, found_size)
            )
            return


def _check_orphan(storage, key: str, now, grace_seconds: int, fix: bool, report: Report) -> None:
    # Re-asked for each key: a row may have been committed since the rows were read, for
    # instance a re-upload of exactly these bytes, which reuses the blob already there.
    if blobs.is_referenced(key):
        return
    try:
        modified = storage.get_modified_time(key)
    except FileNotFoundError:
        return  # removed meanwhile (a failed ingest cleaning up after itself)
    if _within_grace(now - modified, grace_seconds):
        report.pending_orphans.append(key)
        return
    if not fix:
        report.orphans.append(key)
        return
    if blobs.delete_if_unreferenced(key):
        report.removed_orphans.append(key)
        # An ingest may have reused the blob between the last look and the delete; then its
        # row now has no blob, which a person must hear about.
        if blobs.is_referenced(key) and not storage.exists(key):
            report.missing[key] = ("a row committed while the blob was removed",)


def _check_derived(
    storage, key: str, is_referenced, lists, now, grace_seconds: int, fix: bool
) -> None:
    """A thumbnail or bundle that no row names: made again from the blobs whenever it is
    wanted, so removing it past the grace period loses nothing. `lists`: the report's pending,
    orphan and removed lists for its kind."""
    pending, orphans, removed = lists
    if is_referenced(key):
        return
    try:
        modified = storage.get_modified_time(key)
    except FileNotFoundError:
        return
    if _within_grace(now - modified, grace_seconds):
        pending.append(key)
    elif not fix:
        orphans.append(key)
    else:
        storage.delete(key)
        removed.append(key)


def _check_incomplete_upload(
    storage, upload: blobs.IncompleteUpload, now, grace_seconds: int, fix: bool, report: Report
) -> None:
    # Its start is all there is to go by: a young one may be a big upload still under way.
    if _within_grace(now - upload.initiated, grace_seconds):
        report.pending_uploads.append(upload)
    elif not fix:
        report.incomplete_uploads.append(upload)
    else:
        blobs.abort_incomplete_upload(upload, storage)
        report.aborted_uploads.append(upload)


def _within_grace(age: timedelta, grace_seconds: int) -> bool:
    # A grace of 0 means none at all, even for a clock a little ahead of ours.
    return grace_seconds > 0 and age.total_seconds() < grace_seconds


# --- temp files ----------------------------------------------------------------------------------


def _check_temp_files(folder: str, now, grace_seconds: int, fix: bool, report: Report) -> None:
    """Only plain files with names our processes use: the folder may be shared."""
    for entry in tempfiles.leftover_candidates(folder):
        try:
            modified = datetime.fromtimestamp(entry.stat().st_mtime, tz=now.tzinfo)
        except FileNotFoundError:
            continue
        if _within_grace(now - modified, grace_seconds):
            report.pending_temp.append(entry.path)
        elif fix and tempfiles.unlink(entry.path):
            report.removed_temp.append(entry.path)
        else:
            report.stale_temp.append(entry.path)


# --- the report ----------------------------------------------------------------------------------


def render(report: Report, examples: int = 10) -> str:
    """A short text for an operator: counts, up to `examples` keys each, what to do next."""
    scope = f"owner {report.owner_id}" if report.owner_id is not None else "all owners"
    lines = [
        f"Vault check ({scope}): {report.blobs_seen} blobs, {report.rows_seen} rows, "
        f"{report.thumbnails_seen} thumbnails, {report.bundles_seen} series bundles; "
        f"grace period {report.grace_seconds} s.",
    ]

    def section(title, items, advice=""):
        lines.append(f"{title}: {len(items)}")
        if items and advice:
            lines.append(f"  {advice}")
        lines.extend(f"  - {item}" for item in items[:examples])
        if len(items) > examples:
            lines.append(f"  … and {len(items) - examples} more")

    section(
        "Rows without a blob (missing)",
        [f"{key} ({', '.join(rows)})" for key, rows in report.missing.items()],
        "Data lost: restore these blobs from a backup, or delete the studies. Never fixed here.",
    )
    section(
        "Checksum mismatches",
        [mismatch.describe() for mismatch in report.mismatches],
        "Stored bytes changed: restore them from a backup. Never fixed here.",
    )
    section(
        "Unreadable blobs",
        [f"{key}: {error}" for key, error in report.unreadable.items()],
        "The blob exists but could not be read: check the storage, then run again.",
    )
    fix_hint = "" if report.fixed else "Run with --fix to remove them."
    section("Orphan blobs past the grace period", report.orphans, fix_hint)
    section("Orphan blobs pending, within grace (kept)", report.pending_orphans)
    section("Unreferenced thumbnails past the grace period", report.orphan_thumbnails, fix_hint)
    section("Unreferenced thumbnails pending, within grace (kept)", report.pending_thumbnails)
    section("Unreferenced series bundles past the grace period", report.orphan_bundles, fix_hint)
    section("Unreferenced series bundles pending, within grace (kept)", report.pending_bundles)
    section(
        "Incomplete multipart uploads past the grace period",
        [upload.describe() for upload in report.incomplete_uploads],
        "" if report.fixed else "Run with --fix to abort them.",
    )
    section(
        "Incomplete multipart uploads pending, within grace (kept)",
        [upload.describe() for upload in report.pending_uploads],
    )
    section("Stale temp files", report.stale_temp, fix_hint)
    section("Temp files pending, within grace (kept)", report.pending_temp)
    if report.fixed:
        section("Removed orphan blobs", report.removed_orphans)
        section("Removed unreferenced thumbnails", report.removed_thumbnails)
        section("Removed unreferenced series bundles", report.removed_bundles)
        section(
            "Aborted incomplete uploads", [upload.describe() for upload in report.aborted_uploads]
        )
        section("Removed temp files", report.removed_temp)
    lines.append("OK." if report.ok else f"{report.problem_count} problem(s) remain.")
    return "\n".join(lines)
