"""STOW-RS endpoint: `POST /dicomweb/deposit/<deposit code>/studies[/<StudyInstanceUID>]`.

The hospital authenticates with `Authorization: Bearer <organisation token>` (no cookies, so no
CSRF token either) and names the patient by the deposit code the patient gave it.
"""

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from phr.hospital import multipart, services, stow
from phr.hospital.services import DepositRefused

REFUSALS = {
    # Wrong, expired and revoked codes look the same from outside: no oracle about which.
    DepositRefused.UNKNOWN_CODE: (404, "No live deposit code matches this address."),
    DepositRefused.NOT_ALLOWED: (403, "The patient allowed another organisation to use this code."),
    DepositRefused.RATE_LIMITED: (429, "Too many wrong deposit codes from this organisation."),
}


def declared_length(request) -> int | None:
    """The request's Content-Length (0 when absent, as for chunked bodies), or None when it
    isn't a whole number of bytes: parsed here, as Django leaves the header to us."""
    value = request.META.get("CONTENT_LENGTH") or "0"
    return int(value) if value.isascii() and value.isdigit() else None


@csrf_exempt
@require_POST
def store_instances(request, deposit_code, study_uid=None):
    organisation = services.authenticate_token(request.headers.get("Authorization", ""))
    if organisation is None:
        response = _error(401, "A valid organisation token is required (Authorization: Bearer).")
        response["WWW-Authenticate"] = 'Bearer realm="dicomweb"'
        return response

    media_type, part_type, boundary = multipart.boundary_of(request.headers.get("Content-Type"))
    if media_type != "multipart/related" or part_type not in ("", stow.DICOM_MEDIA_TYPE):
        return _error(415, 'Send multipart/related; type="application/dicom".')
    if not boundary:
        return _error(400, "The multipart Content-Type has no boundary.")
    declared = declared_length(request)
    if declared is None:
        return _error(400, "The Content-Length header must be a whole number of bytes.")
    if declared > settings.PHR_MAX_STOW_BYTES:
        return _error(413, f"One request may carry at most {settings.PHR_MAX_STOW_BYTES} bytes.")
    stream = multipart.body_stream(request)
    if stream is None:
        return _error(411, "Send a Content-Length or use chunked transfer encoding.")

    try:
        deposit = services.open_deposit(deposit_code, organisation, request.META.get("REMOTE_ADDR"))
    except DepositRefused as refused:
        status, message = REFUSALS[refused.reason]
        return _error(status, message)

    report = services.DeliveryReport(deposit=deposit, organisation=organisation)
    try:
        result = stow.store_parts(report, stream, boundary, study_uid=study_uid)
    except multipart.MalformedBody as error:
        # What arrived intact before the damage stays stored; the sender may simply resend.
        return _error(400, f"The multipart body could not be read: {error}.")
    finally:
        services.finish_delivery(report, site_url=request.build_absolute_uri("/")[:-1])
    return JsonResponse(
        result.as_dicom_json(), status=result.http_status, content_type="application/dicom+json"
    )


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)
