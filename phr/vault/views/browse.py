"""The patient's own vault: the study list, a study's page, its thumbnails and documents, and
deleting a study. Each view fetches through phr.vault.access (anyone else's object is a 404)
and leaves the rules to phr.vault.browse and phr.vault.thumbnails."""

from allauth.account.decorators import reauthentication_required
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.utils.cache import get_conditional_response
from django.utils.dateformat import format as format_date
from django.views.decorators.http import require_GET, require_http_methods

from phr.lib.http import content_disposition, private, url_if_installed
from phr.vault import browse, lifecycle, thumbnails
from phr.vault.access import (
    Look,
    Seen,
    cache_seconds,
    get_document_or_404,
    get_series_or_404,
    get_study_or_404,
    record_look,
    visible_documents,
    visible_studies,
)
from phr.vault.forms import StudyFilterForm

STUDIES_PER_PAGE = 24
THUMBNAIL_MAX_AGE = 24 * 3600
ICON_MAX_AGE = 3600
# Shown in the browser's own viewer; anything else is downloaded.
INLINE_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png"})


@login_required
@require_GET
def home(request):
    studies = visible_studies(request)
    form = StudyFilterForm(request.GET or None, kinds=browse.kind_choices(studies))
    filters = form.filters()
    page = Paginator(browse.search_studies(studies, filters), STUDIES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "form": form,
        "filters": filters,
        "page": page,
        "cards": browse.study_cards(page.object_list),
        "total_studies": studies.count(),
        "documents": browse.standalone_documents(visible_documents(request)),
    }
    return render(request, "vault/home.html", context)


@login_required
@require_GET
def study_detail(request, study_id):
    study = get_study_or_404(request, study_id)
    context = browse.study_page(study)
    context["viewer_url"] = url_if_installed("viewer:study", study.id)
    return render(request, "vault/study.html", context)


@login_required
@reauthentication_required
@require_http_methods(["GET", "POST"])
def delete_study(request, study_id):
    study = get_study_or_404(request, study_id)
    if request.method == "POST":
        deleted = lifecycle.delete_study(study)
        when = f" from {format_date(deleted.study_date, 'j F Y')}" if deleted.study_date else ""
        messages.success(
            request,
            f"“{deleted.title}”{when} has been deleted from your vault, with all its images.",
        )
        return redirect("vault:home")
    context = {
        "study": study,
        "kind": browse.study_kind(study),
        "documents_kept": study.documents.count(),
    }
    return render(request, "vault/delete_study.html", context)


# The one route to a series' thumbnail and to a document, for the patient and for a doctor
# holding a share alike (so one set of headers, and no route around the access log). No
# login_required: a doctor has no account; the access helpers give everyone else a 404.
@require_GET
def series_thumbnail(request, series_id):
    series = get_series_or_404(request, series_id)
    record_look(request, series.study, Seen(Look.PREVIEWS, images={series.study_id: [series.pk]}))
    instance = thumbnails.cover_instance(series)
    # A doctor's browser, often a shared hospital PC, keeps it only while their access lasts.
    max_age = cache_seconds(request, series.study, THUMBNAIL_MAX_AGE)
    if instance is not None:
        # The PNG follows the cover image's bytes, so their hash is a strong ETag.
        etag = f'"thumb-{instance.sha256}"'
        not_modified = get_conditional_response(request, etag=etag)
        if not_modified is not None:
            return private(not_modified, max_age, etag)
        key = thumbnails.thumbnail_for(instance)
        if key is not None:
            response = FileResponse(default_storage.open(key, "rb"), content_type="image/png")
            return private(response, max_age, etag)
    response = redirect(static(thumbnails.icon_path(series.modality)))
    return private(response, ICON_MAX_AGE)


@require_GET
def document_file(request, document_id):
    document = get_document_or_404(request, document_id)
    inline = document.content_type in INLINE_TYPES and "download" not in request.GET
    if document.study is not None:  # a doctor only ever gets a study's documents
        look = Look.DOCUMENT if inline else Look.DOCUMENT_SAVED
        record_look(request, document.study, Seen(look, document=document))
    etag = f'"{document.sha256}"'
    not_modified = get_conditional_response(request, etag=etag)
    if not_modified is not None:
        return private(not_modified, 0, etag)
    response = FileResponse(
        default_storage.open(document.storage_key, "rb"), content_type=document.content_type
    )
    response["Content-Disposition"] = content_disposition(document.filename, inline=inline)
    response["X-Content-Type-Options"] = "nosniff"
    # A PDF is opened in our origin: sandboxed, any script in it can't reach the vault.
    response["Content-Security-Policy"] = "sandbox; frame-ancestors 'none'"
    if not request.user.is_authenticated:
        # A doctor's browser, often a shared hospital PC, keeps no copy of a report.
        response["Cache-Control"] = "private, no-store"
        return response
    return private(response, 0, etag)
