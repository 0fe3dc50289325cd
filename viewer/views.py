"""The diagnostic viewer: its page, the one JSON list of a study's images, and each image's
bytes, alone or in batches. Every object is fetched through phr.vault.access, so a patient
sees their own studies, a doctor the studies of their share, and anyone else a 404.

No login_required here: a doctor holding a share has no account. The access helpers decide.
"""

from functools import wraps

from django.conf import settings
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from phr.sharing.models import Event
from phr.sharing.services import record_doctor_use, study_words
from phr.sharing.views_doctor import ended_share_response
from phr.vault.access import (
    get_instance_or_404,
    get_study_or_404,
    visible_documents,
    visible_studies,
)
from viewer import services, tags


def gone_when_the_share_ended(*, page):
    """A doctor whose share has ended, holding a viewer URL (the page, or the viewer's own
    requests as it goes on loading): "This share has ended" (410), never a bare 404."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            try:
                return view(request, *args, **kwargs)
            except Http404:
                ended = ended_share_response(request, page=page)
                if ended is None:
                    raise
                return ended

        return wrapper

    return decorate


@require_safe
@gone_when_the_share_ended(page=True)
def study(request, study_id):
    study = get_study_or_404(request, study_id)
    if not services.is_owner(request, study):
        # A doctor opened it: the patient sees this in the share's access log.
        record_doctor_use(request, study, Event.VIEWED, detail=f"Viewer: {study_words(study)}")
    context = {
        "study": study,
        "documents": visible_documents(request).filter(study=study),
        "download_url": services.download_url(request, study),
        "is_owner": services.is_owner(request, study),
        "wasm_base_path": services.wasm_base_path(),
        "first_image_url": services.first_image_url(study),
        "test_hook": settings.PHR_VIEWER_TEST_HOOK,
        "renderer": settings.PHR_VIEWER_RENDERER,
    }
    response = render(request, "viewer/study.html", context)
    # The codecs are WebAssembly; images may come from the object store's origin.
    update = {"script-src": ["'wasm-unsafe-eval'"]}
    origin = services.storage_origin()
    if origin:
        update["connect-src"] = [origin]
    response._csp_update = update  # what csp.decorators.csp_update does, but per request
    response["Cache-Control"] = "private, no-store"
    return response


@require_safe
@gone_when_the_share_ended(page=False)
def study_images(request, study_id):
    study = get_study_or_404(request, study_id)
    data = services.study_images(study, visible_studies(request))
    response = JsonResponse(data)
    response["Cache-Control"] = "private, no-store"
    return response


@require_safe
@gone_when_the_share_ended(page=False)
def study_files(request, study_id):
    """Many images of a study in one request: how the viewer loads a whole series."""
    study = get_study_or_404(request, study_id)
    try:
        ids = services.parse_instance_ids(request.GET.get("ids", ""))
    except ValueError as error:
        return HttpResponseBadRequest(f"ids: {error}", content_type="text/plain")
    return services.files_response(study, ids)


@require_safe
@gone_when_the_share_ended(page=False)
def instance(request, instance_id):
    return services.instance_response(request, get_instance_or_404(request, instance_id))


@require_safe
@gone_when_the_share_ended(page=False)
def instance_tags(request, instance_id):
    rows = tags.header_rows(get_instance_or_404(request, instance_id))
    response = JsonResponse({"tags": rows})
    response["Cache-Control"] = "private, no-store"
    return response
