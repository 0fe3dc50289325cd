"""DICOMweb read (PS3.18): QIDO-RS searches, WADO-RS retrieval, metadata, frames, rendered.

`/dicomweb/studies[...]`, with `Authorization: Bearer <token>` (phr.dicomweb.auth). Only the
token's studies exist here (a share's, or the patient's own vault); anything else is a 404, as
on the doctor's pages. For a share, every answer goes in the patient's access log the way the
viewer's do: a search as a look at each study it lists, files and frames per series.
"""

import uuid
from collections.abc import Iterator

from django.core.files.storage import default_storage
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from phr.dicomweb import qido
from phr.dicomweb.auth import bearer_required
from phr.vault import frames as vault_frames
from phr.vault import metadata as vault_metadata
from phr.vault.access import Look, Seen, may_download, record_look, visible_studies
from phr.vault.models import Instance
from phr.vault.thumbnails import render

DICOM_JSON = "application/dicom+json"
DICOM = "application/dicom"
CHUNK = 256 * 1024
NO_STUDY = "No such study for this token."
NO_INSTANCE = "No such instance for this token."
VIEW_ONLY = "The patient allowed viewing only, not downloading, for this share."


def _base_url(request) -> str:
    return request.build_absolute_uri("/dicomweb").rstrip("/")


def _answer(rows: list[dict]) -> JsonResponse:
    response = JsonResponse(rows, safe=False, content_type=DICOM_JSON)
    response["Cache-Control"] = "private, no-store"  # the share may end at any moment
    return response


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _study(request, study_uid: str):
    return visible_studies(request).filter(study_instance_uid=study_uid).first()


# --- QIDO-RS -------------------------------------------------------------------------------------


@require_GET
@bearer_required
def search_studies(request):
    try:
        studies = qido.matched(visible_studies(request), request.GET, qido.STUDY_KEYS)
        found = list(qido.page(studies.order_by("-study_date", "study_instance_uid"), request.GET))
    except qido.BadQuery as error:
        return _error(400, str(error))
    for study in found:
        record_look(request, study, Seen(Look.STUDY))
    base_url = _base_url(request)
    return _answer([qido.study_json(study, base_url) for study in found])


@require_GET
@bearer_required
def search_series(request, study_uid):
    study = _study(request, study_uid)
    if study is None:
        return _error(404, NO_STUDY)
    try:
        series = qido.matched(study.series.all(), request.GET, qido.SERIES_KEYS)
        found = list(qido.page(series.order_by("number", "created_at"), request.GET))
    except qido.BadQuery as error:
        return _error(400, str(error))
    record_look(request, study, Seen(Look.STUDY))
    base_url = _base_url(request)
    return _answer([qido.series_json(s, base_url) for s in found])


@require_GET
@bearer_required
def search_instances(request, study_uid, series_uid=None):
    study = _study(request, study_uid)
    if study is None:
        return _error(404, NO_STUDY)
    instances = Instance.objects.filter(series__study=study).select_related("series__study")
    if series_uid is not None:
        instances = instances.filter(series__series_instance_uid=series_uid)
    try:
        instances = qido.matched(instances, request.GET, qido.SERIES_KEYS, prefix="series__")
        instances = qido.matched(instances, request.GET, qido.INSTANCE_KEYS)
        found = list(qido.page(instances.order_by("instance_number", "created_at"), request.GET))
    except qido.BadQuery as error:
        return _error(400, str(error))
    record_look(request, study, Seen(Look.STUDY))
    base_url = _base_url(request)
    return _answer([qido.instance_json(i, base_url) for i in found])


# --- WADO-RS metadata ----------------------------------------------------------------------------


@require_GET
@bearer_required
def metadata(request, study_uid, series_uid=None, instance_uid=None):
    """The headers (DICOM JSON, no bulk data) of a study's, series' or instance's files: from
    the database once each file has been read (phr.vault.metadata)."""
    study = _study(request, study_uid)
    if study is None:
        return _error(404, NO_STUDY)
    found = _instances(study, series_uid, instance_uid)
    if not found:
        return _error(404, "No such series or instance in this study.")
    documents = vault_metadata.dicom_json_of(found)
    _log_files(request, study, found, Look.TAGS)
    # Kept as text: joined, not parsed and encoded again (300 headers are a megabyte or two).
    body = "[" + ",".join(documents[instance.pk] for instance in found) + "]"
    response = HttpResponse(body, content_type=DICOM_JSON)
    response["Cache-Control"] = "private, no-store"
    return response


def _instances(study, series_uid, instance_uid) -> list[Instance]:
    instances = Instance.objects.filter(series__study=study).only(
        "id", "series_id", "storage_key", "sop_instance_uid", "transfer_syntax_uid", "size"
    )
    if series_uid is not None:
        instances = instances.filter(series__series_instance_uid=series_uid)
    if instance_uid is not None:
        instances = instances.filter(sop_instance_uid=instance_uid)
    return list(instances.order_by("series__number", "instance_number", "created_at"))


# --- WADO-RS retrieval ---------------------------------------------------------------------------


def _wanted_syntax(request) -> str | None:
    """The transfer syntax the Accept header asks for: None for the stored one ("*", or none
    named, as most archives answer), else that UID. We keep files as sent and never transcode.
    """
    for media_range in request.headers.get("Accept", "").split(","):
        kind, *rest = (part.strip() for part in media_range.split(";"))
        params = {k.strip(): v.strip('"') for k, _, v in (p.partition("=") for p in rest)}
        if kind == "multipart/related" and params.get("type", DICOM) == DICOM:
            syntax = params.get("transfer-syntax", "*")
            return None if syntax == "*" else syntax
    return None


def _acceptable(request) -> bool:
    accept = request.headers.get("Accept", "")
    return not accept or any(kind in accept for kind in ("multipart/related", "*/*"))


def _parts(instances: list[Instance], boundary: str) -> Iterator[bytes]:
    for instance in instances:
        yield (
            f"--{boundary}\r\nContent-Type: {DICOM}; transfer-syntax={instance.transfer_syntax_uid}"
            f"\r\nContent-Length: {instance.size}\r\n\r\n"
        ).encode()
        with default_storage.open(instance.storage_key, "rb") as blob:
            while chunk := blob.read(CHUNK):
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


@require_GET
@bearer_required
def retrieve(request, study_uid, series_uid=None, instance_uid=None):
    study = _study(request, study_uid)
    if study is None:
        return _error(404, NO_STUDY)
    if not may_download(request, study):
        return _error(403, VIEW_ONLY)
    if not _acceptable(request):
        return _error(406, f'Ask for multipart/related; type="{DICOM}".')
    found = _instances(study, series_uid, instance_uid)
    if not found:
        return _error(404, "No such series or instance in this study.")
    wanted = _wanted_syntax(request)
    if wanted is not None and any(i.transfer_syntax_uid != wanted for i in found):
        return _error(
            406,
            "The files are kept as the hospital sent them and never converted: ask for "
            "transfer-syntax=* to get them as they are.",
        )
    _log_files(request, study, found)
    boundary = uuid.uuid4().hex
    response = StreamingHttpResponse(
        _parts(found, boundary),
        content_type=f'multipart/related; type="{DICOM}"; boundary={boundary}',
    )
    response["Cache-Control"] = "private, no-store"
    return response


# --- WADO-RS frames and rendered -----------------------------------------------------------------

# The largest side of a rendered image: a preview, not the diagnostic pixels (those are frames).
RENDERED_BOX = 2048


def _instance(request, study_uid, series_uid, instance_uid):
    study = _study(request, study_uid)
    if study is None:
        return None, None
    found = _instances(study, series_uid, instance_uid)
    return study, (found[0] if found else None)


def _frame_numbers(text: str) -> list[int]:
    numbers = text.split(",")
    if not all(n.strip().isdigit() for n in numbers):
        raise ValueError(text)
    return [int(n) for n in numbers]


def _frames_media_range(request) -> tuple[str | None, str | None]:
    """(type, transfer syntax) the Accept header asks the frames as; (None, None) for any."""
    for media_range in request.headers.get("Accept", "").split(","):
        kind, *rest = (part.strip() for part in media_range.split(";"))
        params = {k.strip(): v.strip('"') for k, _, v in (p.partition("=") for p in rest)}
        if kind == "multipart/related":
            return params.get("type"), params.get("transfer-syntax")
    return None, None


@require_GET
@bearer_required
def retrieve_frames(request, study_uid, series_uid, instance_uid, frame_list):
    """Frames as stored: native pixel bytes, or each compressed frame's codestream."""
    study, instance = _instance(request, study_uid, series_uid, instance_uid)
    if instance is None:
        return _error(404, NO_INSTANCE)
    if not may_download(request, study):
        return _error(403, VIEW_ONLY)
    try:
        numbers = _frame_numbers(frame_list)
    except ValueError:
        return _error(400, "Frames are asked for as numbers from 1, separated by commas.")
    kind, syntax = _frames_media_range(request)
    stored_type = vault_frames.media_type_of(instance.transfer_syntax_uid)
    as_stored = syntax in (None, "*", instance.transfer_syntax_uid)
    if not as_stored or kind not in (None, "*/*", stored_type, vault_frames.NATIVE_MEDIA_TYPE):
        return _error(
            406,
            "Frames are given as stored, never converted: ask for transfer-syntax=* "
            f"(this file's frames are {stored_type or 'not offered'}).",
        )
    if kind == vault_frames.NATIVE_MEDIA_TYPE and syntax is None and stored_type != kind:
        return _error(406, "These frames are compressed: add transfer-syntax=* to take them.")
    try:
        frames = vault_frames.read_frames(
            instance.storage_key, instance.transfer_syntax_uid, numbers
        )
    except vault_frames.FramesRefused as refused:
        return _error(refused.status, str(refused))
    _log_files(request, study, [instance])
    part_type = kind if kind == vault_frames.NATIVE_MEDIA_TYPE else frames.media_type
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: {part_type}; transfer-syntax={frames.transfer_syntax}"
            f"\r\nContent-Length: {len(part)}\r\n\r\n".encode()
            + part
            + b"\r\n"
            for part in frames.parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    response = HttpResponse(
        body, content_type=f'multipart/related; type="{part_type}"; boundary={boundary}'
    )
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
@bearer_required
def rendered(request, study_uid, series_uid, instance_uid):
    """The first frame, windowed as the file says, as JPEG (or PNG when asked): a preview."""
    study, instance = _instance(request, study_uid, series_uid, instance_uid)
    if instance is None:
        return _error(404, NO_INSTANCE)
    accept = request.headers.get("Accept", "")
    image_format = "PNG" if "image/png" in accept and "image/jpeg" not in accept else "JPEG"
    with default_storage.open(instance.storage_key, "rb") as blob:
        picture = render(blob, box=RENDERED_BOX, frame=0, image_format=image_format)
    if picture is None:
        return _error(406, "This file has no image we can draw.")
    _log_files(request, study, [instance])
    response = HttpResponse(picture, content_type=f"image/{image_format.lower()}")
    response["Cache-Control"] = "private, no-store"
    return response


def _log_files(request, study, instances: list[Instance], look: Look = Look.IMAGES) -> None:
    per_series: dict = {}
    for instance in instances:
        per_series.setdefault(instance.series_id, []).append(instance.pk)
    record_look(request, study, Seen(look, images=per_series))
