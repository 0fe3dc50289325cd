"""The "Add studies" page and the endpoint its script uploads each file to.

The browser sends one file per request as the raw request body (no multipart parsing): the
file name travels in a header, never in the URL, because names on hospital CDs can carry the
patient's name.
"""

import logging
import tempfile
import uuid
from urllib.parse import unquote

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from phr.vault.access import visible_studies
from phr.vault.dicomfile import sniff_kind
from phr.vault.ingest import (
    IngestFailure,
    IngestResult,
    Outcome,
    display_name,
    ingest_file,
    ingest_zip,
)

log = logging.getLogger(__name__)

COPY_CHUNK = 1024 * 1024
TRY_AGAIN = "We couldn't save this file just now. Nothing was lost: please try again."


@login_required
@require_GET
def upload_page(request):
    studies = visible_studies(request).only("id", "description", "study_date", "modalities")
    return render(
        request,
        "vault/upload.html",
        {"max_file_bytes": settings.PHR_MAX_FILE_BYTES, "studies": studies[:200]},
    )


@login_required
@require_POST
def upload_file(request):
    filename = display_name(unquote(request.headers.get("X-Upload-Filename", "")))
    declared = _declared_length(request)
    too_large = _refused(filename, "This file is larger than we accept for one file.", "too_large")
    if declared is not None and declared > settings.PHR_MAX_FILE_BYTES:
        return _answer([too_large], 413)

    attach_to = _study_for_documents(request)
    with tempfile.SpooledTemporaryFile(
        max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, dir=settings.FILE_UPLOAD_TEMP_DIR
    ) as body:
        # Without a Content-Length (chunked upload), read one byte past the cap to notice excess.
        limit = declared if declared is not None else settings.PHR_MAX_FILE_BYTES + 1
        received = _copy_body(request, body, limit)
        if received > settings.PHR_MAX_FILE_BYTES:
            return _answer([too_large], 413)
        if declared is not None and received != declared:
            return _answer(
                [
                    _refused(
                        filename,
                        "The upload was cut short. Please add the file again.",
                        "incomplete",
                    )
                ],
                400,
            )
        try:
            if sniff_kind(body) == "zip":
                results = list(
                    ingest_zip(request.user, body, filename=filename, attach_to=attach_to)
                )
            else:
                results = [ingest_file(request.user, body, filename=filename, attach_to=attach_to)]
        except IngestFailure:
            log.exception("ingest failed; the patient was asked to retry")
            return _answer([_refused(filename, TRY_AGAIN, "try_again", Outcome.ERROR)], 503)
    return _answer(results, 200)


def _declared_length(request) -> int | None:
    try:
        length = int(request.headers.get("Content-Length") or "")
    except ValueError:
        return None
    return length if length >= 0 else None


def _copy_body(request, destination, limit: int) -> int:
    """Stream the request body to our temp file, never reading past the declared length."""
    received = 0
    while received < limit:
        chunk = request.read(min(COPY_CHUNK, limit - received))
        if not chunk:
            break
        destination.write(chunk)
        received += len(chunk)
    destination.seek(0)
    return received


def _study_for_documents(request):
    """Reports and photos go with the study the patient picked on the page, if any."""
    study_id = request.headers.get("X-Attach-To-Study", "")
    if not study_id:
        return None
    return visible_studies(request).filter(pk=study_id).first() if _is_uuid(study_id) else None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _refused(filename, message, code, outcome=Outcome.REJECTED) -> IngestResult:
    return IngestResult(filename, outcome, message, code)


def _answer(results: list[IngestResult], status: int) -> JsonResponse:
    return JsonResponse({"results": [result.as_json() for result in results]}, status=status)
