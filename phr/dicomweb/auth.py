"""Who a DICOMweb request is: the bearer of a DICOMweb token (phr.sharing.models).

A share's token stands for the doctor's browser that asked for it: the request gets that
browser's grant (phr.sharing.doctor.grant_by_token) and from there on goes through vault.access
like any doctor's request, so the studies it sees and the log it leaves are the share's. The
patient's own token makes the request the patient's. No cookie, no session: each request shows
its token.
"""

from functools import wraps

from django.http import JsonResponse

from phr.sharing import doctor
from phr.sharing.models import DicomwebToken

INVALID = 'Bearer realm="dicomweb", error="invalid_token"'


def bearer_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        scheme, _, plaintext = request.headers.get("Authorization", "").partition(" ")
        token = DicomwebToken.find(plaintext.strip()) if scheme.lower() == "bearer" else None
        if token is None or not token.owner.is_active:
            return unauthorised("A DICOMweb token is required (Authorization: Bearer).")
        if token.share is None:
            # The patient's own token: this request is the patient, and sees their vault.
            request.user = token.owner
        elif token.share.is_live:
            doctor.grant_by_token(request, token.share, token.visitor)
        else:
            # A share's token dies with it: stopped, expired or locked.
            return unauthorised("This token's share has ended. Ask the patient for a new one.")
        return view(request, *args, **kwargs)

    return wrapper


def unauthorised(message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=401)
    response["WWW-Authenticate"] = INVALID
    return response
