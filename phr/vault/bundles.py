"""Series bundles: on object storage, a series' files back to back in one object, so that the
viewer fetches a 300-slice CT in a handful of ranged requests instead of 300.

Why: each object store request costs a round trip and work in the browser and the store,
whatever its size. Measured here on SeaweedFS, 300 presigned 525 KB objects fetched six at a
time took 1.6-1.9 s, and the same 158 MB as one object in six ranges 0.4-0.5 s. Against a
remote store each request also waits tens of milliseconds for its first byte, and a browser
sends 300 of them over six connections, 50 in a row.

A bundle is derived data, like a thumbnail. Its key follows its content:
`bundles/<owner>/<digest>.bundle`, where the digest is the SHA-256 of the series' file hashes
in bundle order. A new, removed or reordered image changes the digest, so a bundle never goes
stale: the old one is simply no longer named (the vault checker removes it as a leftover), and
a new one is built. Until the bundle of the current content exists, the viewer gets one
presigned URL per file, as before.

A bundle is not built as images are stored: they arrive one request or one C-STORE at a time,
and a series has no moment at which it is known to be complete. It is built when the viewer
first asks for its series, when the patient shares its study, and at the end of a hospital's
delivery (a STOW-RS request, a DICOM association) that brought several images of it. Only on
object storage: on the file system Django already streams a batch of files as one response.
"""

import hashlib
import io
import logging
import threading
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import connections

from phr.vault import blobs
from phr.vault.models import Instance, Series

log = logging.getLogger(__name__)

BUNDLES_ROOT = "bundles"
# Fewer files gain little (a request saved per file), and an X-ray would get an object of its own.
MIN_FILES = 4
# A bigger series stays file by file: building its bundle would hold a web process's thread
# for minutes.
MAX_BYTES = 4 * 1024**3
COPY_CHUNK = 1024 * 1024

# While a bundle is being built, a cache entry says so, so that the site's other processes
# (each batch request may reach another worker) don't build it too. It expires, in case the
# process building it dies.
BUILD_LOCK_SECONDS = 600


@dataclass(frozen=True)
class Member:
    id: uuid.UUID
    storage_key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Bundle:
    series_id: uuid.UUID
    key: str
    members: tuple[Member, ...]  # in the order their bytes follow each other

    @property
    def size(self) -> int:
        return sum(member.size for member in self.members)

    def parts(self) -> dict[uuid.UUID, tuple[int, int]]:
        """Instance id -> (offset, size) of its file in the bundle."""
        found, offset = {}, 0
        for member in self.members:
            found[member.id] = (offset, member.size)
            offset += member.size
        return found


def enabled() -> bool:
    return settings.PHR_SERIES_BUNDLES != "off" and blobs.on_object_storage()


def bundle_key(owner_id, digest: str) -> str:
    return f"{BUNDLES_ROOT}/{owner_id}/{digest}.bundle"


def bundles_of(series_ids, owner_id=None) -> dict[uuid.UUID, Bundle]:
    """The bundle each of these series would have now (built or not), for those big enough.
    With `series_ids` None: every series (of one owner, or everybody's)."""
    query = Instance.objects.all()
    if series_ids is not None:
        query = query.filter(series_id__in=list(series_ids))
    if owner_id is not None:
        query = query.filter(owner_id=owner_id)
    rows = (
        query.order_by("series_id", "slice_position", "instance_number", "created_at", "id")
        .values_list("series_id", "owner_id", "id", "storage_key", "sha256", "size")
        .iterator(chunk_size=2000)
    )
    grouped: dict = {}
    for series_id, owner, pk, key, sha256, size in rows:
        grouped.setdefault((series_id, owner), []).append(Member(pk, key, sha256, size))
    found = {}
    for (series_id, owner), members in grouped.items():
        if len(members) < MIN_FILES or sum(member.size for member in members) > MAX_BYTES:
            continue
        digest = hashlib.sha256("\n".join(member.sha256 for member in members).encode())
        found[series_id] = Bundle(series_id, bundle_key(owner, digest.hexdigest()), tuple(members))
    return found


def stored_bundles(series_ids) -> dict[uuid.UUID, Bundle]:
    """The bundles of these series that are in storage now. Those missing are built (see
    PHR_SERIES_BUNDLES) for next time, or for this time when built inline."""
    if not enabled():
        return {}
    wanted = bundles_of(series_ids)
    stored = {pk: bundle for pk, bundle in wanted.items() if default_storage.exists(bundle.key)}
    built_now = build_soon([pk for pk in wanted if pk not in stored])
    return stored | {pk: wanted[pk] for pk in built_now}


def prepare(studies) -> None:
    """Have the bundles of these studies' series built before the viewer asks: a patient has
    just shared them, and a doctor's first look should be as quick as the next."""
    prepare_series(Series.objects.filter(study__in=studies).values_list("id", flat=True))


def prepare_series(series_ids) -> None:
    """Have these series' bundles built before the viewer asks (see PHR_SERIES_BUNDLES)."""
    try:
        stored_bundles(list(series_ids))
    except Exception:
        # The viewer fetches file by file, and builds them at its first look.
        log.exception("could not prepare the bundles of series %s", series_ids)


def build_soon(series_ids) -> set:
    """Have these series' bundles built, one after the other; those in storage when this
    returns (when built inline)."""
    if settings.PHR_SERIES_BUNDLES == "inline":
        return {pk for pk in series_ids if _build_logged(pk)}
    mine = [pk for pk in series_ids if cache.add(building_key(pk), True, BUILD_LOCK_SECONDS)]
    if mine:  # those not under way already
        threading.Thread(
            target=_build_in_background, args=(mine,), name="series-bundles", daemon=True
        ).start()
    return set()


def building_key(series_id) -> str:
    return f"bundle-building:{series_id}"


def _build_in_background(series_ids) -> None:
    try:
        for series_id in series_ids:
            try:
                _build_logged(series_id)
            finally:
                cache.delete(building_key(series_id))
    finally:
        connections.close_all()  # this thread's own connections


def _build_logged(series_id) -> bool:
    try:
        return build(series_id) is not None
    except Exception:
        # The viewer keeps fetching file by file; the next view tries again.
        log.exception("could not build the bundle of series %s", series_id)
        return False


class DamagedFile(Exception):
    pass


def build(series_id) -> str | None:
    """Store the bundle of this series as it is now, unless it is there already; its key, or
    None when the series is too small or too big for one.

    Each file is checked against its SHA-256 on the way: a bundle must never serve other bytes
    than the vault holds. A damaged file means no bundle (the vault checker reports the file).
    Two processes building the same bundle at once write the same bytes under the same key.
    """
    bundle = bundles_of([series_id]).get(series_id)
    if bundle is None:
        return None
    if default_storage.exists(bundle.key):
        return bundle.key
    started = time.monotonic()
    with io.BufferedReader(_CheckedConcatenation(bundle.members), COPY_CHUNK) as stream:
        blobs.store_stream(bundle.key, stream)
    log.info(
        "built the bundle of series %s: %d files, %.0f MB in %.1f s",
        series_id,
        len(bundle.members),
        bundle.size / 1e6,
        time.monotonic() - started,
    )
    return bundle.key


class _CheckedConcatenation(io.RawIOBase):
    """The members' stored bytes one after the other, each checked against its size and SHA-256
    as it ends: a damaged file raises DamagedFile before the last byte is read, so the upload
    reading this never completes."""

    def __init__(self, members):
        self._waiting = list(members)
        self._member = self._source = self._digest = None
        self._copied = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self._source is None:
                if not self._waiting:
                    return 0
                self._member = self._waiting.pop(0)
                self._source = blobs.open_stream(self._member.storage_key)
                self._digest, self._copied = hashlib.sha256(), 0
            chunk = self._source.read(len(buffer))
            if chunk:
                self._digest.update(chunk)
                self._copied += len(chunk)
                buffer[: len(chunk)] = chunk
                return len(chunk)
            self._finish_member()

    def _finish_member(self) -> None:
        self._source.close()
        self._source = None
        member = self._member
        if self._copied != member.size or self._digest.hexdigest() != member.sha256:
            raise DamagedFile(f"{member.storage_key} doesn't hold the bytes its image row names")

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None
        super().close()


def delete_bundles(bundles) -> None:
    """Remove these bundles from storage (a study was deleted); a failure is only logged: the
    vault checker finds what is left.

    Another series names one of them only if it holds exactly the same files: the same images
    twice, which ingest keeps once. Should it happen all the same, that series loses nothing:
    the viewer fetches it file by file and has its bundle built again."""
    for bundle in bundles:
        try:
            default_storage.delete(bundle.key)
        except Exception:
            log.exception("could not remove the bundle %s", bundle.key)


def referenced_bundle_keys(owner_id=None) -> set[str]:
    """The key of every series' current bundle (of one owner, or everybody's), built or not."""
    return {bundle.key for bundle in bundles_of(None, owner_id).values()}


def bundle_is_referenced(key: str) -> bool:
    """Whether some series of the key's owner would have this bundle now."""
    folder = key.rpartition("/")[0]
    owner = folder.removeprefix(f"{BUNDLES_ROOT}/")
    try:
        return key in referenced_bundle_keys(owner)
    except (TypeError, ValueError, ValidationError):
        return False
