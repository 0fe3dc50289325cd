"""'This share has ended' for a doctor whose share ended while they were using it.

Any view that fetches through phr.vault.access answers 404 for what the caller may not see. For
a browser that held a share which has since ended (revoked, expired, locked), that 404 becomes
410 Gone, saying so, and the patient's access log shows the refusal, once. Anyone who never
held a share still gets the plain 404: no oracle of what exists.
"""

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _

from phr.sharing import doctor


class EndedShareMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, Http404):
            return ended_share_response(request)
        return None


def ended_share_response(request):
    """410 for a doctor whose browser held a share that has since ended; None for anyone else.
    A page the browser navigated to gets the page that explains; the viewer's own requests
    (fetch: Sec-Fetch-Dest "empty") a short answer."""
    if request.user.is_authenticated:
        return None
    check = doctor.refuse_ended(request, forget=False)
    if not check.ended:
        return None
    if request.headers.get("Sec-Fetch-Dest", "document") in ("document", "iframe"):
        context = {"ended": check.ended, "others": bool(check.live)}
        response = render(request, "sharing/doctor/ended.html", context, status=410)
    else:
        response = HttpResponse(
            _("This share has ended."), status=410, content_type="text/plain; charset=utf-8"
        )
    add_never_cache_headers(response)
    return response
