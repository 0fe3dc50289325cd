"""How an image's bytes reach the browser: alone (`instance_response`) or a batch at a time
(`files_response`), testable without HTTP. Who may have them is phr.vault.access's question,
asked by the views before anything here runs.

Serving strategy, chosen per request from the storage backend:
  * storage with a local path (the embedded default): Django streams the file itself, with
    Range, a strong ETag (the content hash) and an immutable private cache, because the key is
    derived from the hash and the bytes under it never change (for a doctor, a private cache
    only while their access lasts: a hospital PC is shared);
  * the same, behind nginx with secure links (`PHR_SECURE_LINK_PREFIX` set): a 302 to a signed,
    expiring URL that nginx checks and serves by itself (viewer/securelink.py), the file-system
    twin of the S3 case below. It wins over X-Accel-Redirect when both are set, because it is the
    faster of the two: the patient's study list carries every image's link, so a whole study
    costs Django one request (a doctor's viewer asks for links a batch at a time: each batch is
    in the patient's access log, and a doctor's links live a minute at most, see Signer);
  * the same, behind nginx (`PHR_ACCEL_REDIRECT_PREFIX` set): Django only authorises and hands
    the file to nginx with X-Accel-Redirect, which does Range and sendfile far faster;
  * object storage (S3): a 302 to a short-lived presigned URL. The object store serves the
    bytes; Django only authorises. The redirect itself must not be cached, because the URL in
    it expires.

Otherwise the viewer fetches a whole series in batches (`files_response`): each file on its own
costs a request, and at hundreds of slices the cost per request, in Django and in the browser,
is most of the time the stack takes to load. A batch is authorised once, for its study, and is
either the files themselves one after the other (file system) or their presigned URLs (S3):
where the series' bundle is stored (phr/vault/bundles.py), the bundle's URL with each file's
place in it, so that the browser fetches a whole series in a few ranged requests.
"""

import os
import re
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import (
    FileResponse,
    Http404,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.utils.cache import get_conditional_response

from phr.vault import access, indexing
from phr.vault import bundles as vault_bundles
from phr.vault.models import Instance, Study
from viewer import securelink
from viewer.catalogue import MAX_BATCH

DICOM_CONTENT_TYPE = "application/dicom"
# The bytes under a key never change (the key holds their SHA-256), so a browser may keep them
# for a year and never revalidate; "private" keeps shared caches (a hospital proxy) out.
IMMUTABLE_SECONDS = 31536000
IMMUTABLE = f"private, max-age={IMMUTABLE_SECONDS}, immutable"
STREAM_CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a single `Range: bytes=…`, or None to send it all.

    A header we don't understand, or several ranges, is ignored (RFC 9110 lets a server send
    the whole file instead); a range wholly past the end is RangeNotSatisfiable (416).
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # "bytes=-500": the last 500 bytes
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable
        return max(0, size - length), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # syntactically invalid: ignore it
    if start >= size:
        raise RangeNotSatisfiable
    return start, end


def etag_for(instance: Instance) -> str:
    return f'"{instance.sha256}"'


def local_path(key: str) -> str | None:
    """The file's path when storage is on this machine; None for object storage."""
    try:
        return default_storage.path(key)
    except NotImplementedError:
        return None


@dataclass(frozen=True)
class Signer:
    """Makes the signed links (S3 presigned, nginx secure links) one caller is given. A
    doctor's live a minute at most, so that a stopped share stops them within a minute too;
    the patient's live PHR_S3_URL_EXPIRE_SECONDS."""

    doctor: bool

    @classmethod
    def for_caller(cls, request, study: Study) -> "Signer":
        return cls(doctor=not access.is_owner(request, study))

    def s3(self, key: str) -> str:
        if self.doctor:
            return default_storage.url(key, expire=securelink.DOCTOR.longest)
        return default_storage.url(key)

    def nginx(self, key: str, now: float | None = None) -> str:
        return securelink.url(key, now, securelink.DOCTOR if self.doctor else None)


def instance_response(request, instance: Instance) -> HttpResponse:
    study = instance.series.study
    response = _instance_response(request, instance, Signer.for_caller(request, study))
    if "immutable" in response.get("Cache-Control", ""):
        # A doctor's browser, often on a shared hospital PC, keeps the image only while the
        # doctor's access lasts; the patient's own browser may keep it for good.
        seconds = access.cache_seconds(request, study, IMMUTABLE_SECONDS)
        if seconds < IMMUTABLE_SECONDS:
            response["Cache-Control"] = f"private, max-age={seconds}"
    return response


def _instance_response(request, instance: Instance, signer: Signer) -> HttpResponse:
    path = local_path(instance.storage_key)
    if path is None:
        return _signed_redirect(signer.s3(instance.storage_key))
    if securelink.enabled():
        # Checked before X-Accel-Redirect on purpose: with both set, nginx serves the bytes
        # without a second trip through Django.
        return _signed_redirect(signer.nginx(instance.storage_key))
    etag = etag_for(instance)
    not_modified = get_conditional_response(request, etag=etag)
    if not_modified is not None:
        return _cacheable(not_modified, etag)
    prefix = settings.PHR_ACCEL_REDIRECT_PREFIX
    if prefix:
        return _accel_redirect(prefix, instance, etag)
    return _stream(request, path, instance.size, etag)


def _signed_redirect(url: str) -> HttpResponse:
    response = HttpResponseRedirect(url)
    # The signed URL expires in minutes: neither the browser nor a proxy may keep this answer.
    response["Cache-Control"] = "no-store"
    return response


def _accel_redirect(prefix: str, instance: Instance, etag: str) -> HttpResponse:
    response = HttpResponse(content_type=DICOM_CONTENT_TYPE)
    response["X-Accel-Redirect"] = prefix.rstrip("/") + "/" + quote(instance.storage_key)
    return _cacheable(response, etag)


def _stream(request, path: str, size: int, etag: str) -> HttpResponse:
    wanted = _wanted_range(request, size, etag)
    if wanted is None:
        response = FileResponse(open(path, "rb"), content_type=DICOM_CONTENT_TYPE)  # noqa: SIM115
        response["Content-Length"] = str(size)
    elif wanted == "unsatisfiable":
        response = HttpResponse(status=416, content_type="text/plain")
        response["Content-Range"] = f"bytes */{size}"
        return response
    else:
        first, last = wanted
        response = StreamingHttpResponse(
            _read_span(path, first, last), status=206, content_type=DICOM_CONTENT_TYPE
        )
        response["Content-Range"] = f"bytes {first}-{last}/{size}"
        response["Content-Length"] = str(last - first + 1)
    response["Accept-Ranges"] = "bytes"
    return _cacheable(response, etag)


def _wanted_range(request, size: int, etag: str):
    if_range = request.headers.get("If-Range")
    if if_range and if_range.strip() != etag:
        return None  # the browser's partial copy is of other bytes: send the whole file
    try:
        return parse_range(request.headers.get("Range"), size)
    except RangeNotSatisfiable:
        return "unsatisfiable"


def _read_span(path: str, first: int, last: int):
    with open(path, "rb") as handle:
        handle.seek(first)
        left = last - first + 1
        while left > 0:
            chunk = handle.read(min(STREAM_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _cacheable(response: HttpResponse, etag: str) -> HttpResponse:
    response["ETag"] = etag
    response["Cache-Control"] = IMMUTABLE
    response["X-Content-Type-Options"] = "nosniff"
    return response


def parse_instance_ids(text: str) -> list[uuid.UUID]:
    """The instance IDs of `?ids=a,b,c`, in order, with or without their dashes; ValueError
    unless 1 to MAX_BATCH valid UUIDs without repeats."""
    ids = [uuid.UUID(part) for part in text.split(",") if part]
    if not 0 < len(ids) <= MAX_BATCH or len(set(ids)) != len(ids):
        raise ValueError(f"between 1 and {MAX_BATCH} distinct instance IDs")
    return ids


@dataclass(frozen=True)
class Located:
    """Where one image of a batch is stored, and its series."""

    id: uuid.UUID
    key: str
    series_id: uuid.UUID


def locate(study: Study, ids: list[uuid.UUID]) -> list[Located]:
    """The images `ids` of `study` (the caller has checked that it may see the study), in the
    order asked; 404 if any of them isn't in the study. One query."""
    found = indexing.keys_in_study(study.pk, ids)
    if len(found) != len(ids):
        raise Http404("No such image in this study.")
    return [Located(pk, *found[pk]) for pk in ids]


def by_series(located: list[Located]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """{series id: [image ids]}: what a batch gave, as the access log counts it."""
    images: dict = {}
    for image in located:
        images.setdefault(image.series_id, []).append(image.id)
    return images


def files_response(request, study: Study, located: list[Located]) -> HttpResponse:
    """Several images of `study` (see `locate`) in one answer, in the order asked.

    File system: the files back to back (`X-Instance-Sizes` lists their lengths, so the browser
    can split them as they arrive). S3: `{"urls": [...]}`, their presigned URLs, or their
    bundle's with `"ranges": [[offset, size] or null, ...]` (see _object_store_answer); behind nginx
    with secure links, the same form with nginx's signed URLs. The answer itself is not cached.
    """
    keys = [image.key for image in located]
    signer = Signer.for_caller(request, study)
    if local_path(keys[0]) is None:
        return _object_store_answer(located, signer)
    if securelink.enabled():
        # One clock reading for the whole batch, so that its URLs all expire together; they
        # repeat for a while (securelink.Lifetime.step), so the browser keeps them.
        now = time.time()
        return _url_list([signer.nginx(key, now) for key in keys], cacheable=True)
    paths = [default_storage.path(key) for key in keys]
    try:
        sizes = [os.stat(path).st_size for path in paths]
    except FileNotFoundError:
        # One file is missing: each image is then asked for on its own, and only that one fails.
        raise Http404("An image file is missing.") from None
    response = StreamingHttpResponse(
        _concatenate(paths, sizes), content_type="application/octet-stream"
    )
    response["Content-Length"] = str(sum(sizes))
    response["X-Instance-Sizes"] = ",".join(map(str, sizes))
    # Not kept by the browser, unlike a single file: a batch lists whatever was still missing
    # when it was asked for, so its URL seldom comes again, and storing it costs the browser a
    # tenth of the time the whole stack takes to load.
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _object_store_answer(located: list[Located], signer: Signer) -> HttpResponse:
    """Presigned URLs for these files: of their series' bundle where it is stored, with each
    file's place in it (`ranges`: [offset, size]), else of the file itself."""
    bundles = vault_bundles.stored_bundles({image.series_id for image in located})
    parts = {series_id: bundle.parts() for series_id, bundle in bundles.items()}
    signed = {bundle.key: signer.s3(bundle.key) for bundle in bundles.values()}
    urls, ranges = [], []
    for image in located:
        part = parts.get(image.series_id, {}).get(image.id)
        if part is None:
            urls.append(signer.s3(image.key))
            ranges.append(None)
        else:
            urls.append(signed[bundles[image.series_id].key])
            ranges.append(list(part))
    # Every presigned URL is new (it carries the time it was signed): not worth storing.
    return _url_list(urls, cacheable=False, ranges=ranges if any(ranges) else None)


def _url_list(urls: list[str], cacheable: bool, ranges: list | None = None) -> HttpResponse:
    # `cacheable` tells the viewer's fetcher (static/viewer/fetcher.js) whether the browser may
    # keep the files these URLs bring; `ranges`, where a URL is a bundle's, which bytes of it.
    answer = {"urls": urls, "cacheable": cacheable}
    if ranges:
        answer["ranges"] = ranges
    response = JsonResponse(answer)
    response["Cache-Control"] = "no-store"  # the URLs in it expire
    return response


def _concatenate(paths: list[str], sizes: list[int]):
    for path, size in zip(paths, sizes, strict=True):
        yield from _read_span(path, 0, size - 1)
