"""The diagnostic viewer: its page, the one JSON list of a study's images, and each image's
bytes, alone or in batches. Every object is fetched through phr.vault.access, so a patient
sees their own studies, a doctor the studies of their share, and anyone else a 404.

No login_required here: a doctor holding a share has no account. The access helpers decide.
"""

from django.conf import settings
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from phr.vault.access import (
    Look,
    Seen,
    get_instance_or_404,
    get_study_or_404,
    is_owner,
    record_look,
    visible_documents,
    visible_studies,
)
from viewer import catalogue, delivery, tags

# A doctor whose share ends while the viewer is open gets "This share has ended" (410) on the
# page and on each of the viewer's requests: phr.sharing.middleware turns their 404s into it.


@require_safe
def study(request, study_id):
    study = get_study_or_404(request, study_id)
    record_look(request, study, Seen(Look.STUDY))
    context = {
        "study": study,
        "documents": visible_documents(request).filter(study=study),
        "download_url": catalogue.download_url(request, study),
        "is_owner": is_owner(request, study),
        "wasm_base_path": catalogue.wasm_base_path(),
        "first_image_url": catalogue.first_image_url(study),
        "test_hook": settings.PHR_VIEWER_TEST_HOOK,
        "renderer": settings.PHR_VIEWER_RENDERER,
    }
    response = render(request, "viewer/study.html", context)
    # The codecs are WebAssembly; images may come from the object store's origin.
    update = {"script-src": ["'wasm-unsafe-eval'"]}
    origin = catalogue.storage_origin()
    if origin:
        update["connect-src"] = [origin]
    response._csp_update = update  # what csp.decorators.csp_update does, but per request
    response["Cache-Control"] = "private, no-store"
    return response


@require_safe
def study_images(request, study_id):
    study = get_study_or_404(request, study_id)
    record_look(request, study, Seen(Look.STUDY))  # one line with the page's, if just after it
    # The patient's list carries nginx's signed links to every image; a doctor's viewer asks
    # for them batch by batch, so that each batch is in the patient's log and its links are
    # fresh (they live a minute).
    data = catalogue.study_images(
        study, visible_studies(request), with_links=is_owner(request, study)
    )
    response = JsonResponse(data)
    response["Cache-Control"] = "private, no-store"
    return response


@require_safe
def study_files(request, study_id):
    """Many images of a study in one request: how the viewer loads a whole series."""
    study = get_study_or_404(request, study_id)
    try:
        ids = delivery.parse_instance_ids(request.GET.get("ids", ""))
    except ValueError as error:
        return HttpResponseBadRequest(f"ids: {error}", content_type="text/plain")
    located = delivery.locate(study, ids)
    record_look(request, study, Seen(Look.IMAGES, images=delivery.by_series(located)))
    return delivery.files_response(request, study, located)


@require_safe
def instance(request, instance_id):
    instance = get_instance_or_404(request, instance_id)
    study = instance.series.study
    record_look(request, study, Seen(Look.IMAGES, images={instance.series_id: [instance.pk]}))
    return delivery.instance_response(request, instance)


@require_safe
def instance_tags(request, instance_id):
    instance = get_instance_or_404(request, instance_id)
    seen = Seen(Look.TAGS, images={instance.series_id: [instance.pk]})
    record_look(request, instance.series.study, seen)
    rows = tags.header_rows(instance)
    response = JsonResponse({"tags": rows})
    response["Cache-Control"] = "private, no-store"
    return response
