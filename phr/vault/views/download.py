"""Downloading studies as a ZIP with a DICOMDIR, the way a hospital CD is laid out.

The ZIP is streamed while it is built (phr.vault.export), so a 3 GB study costs the server no
more memory or disk than a small one.
"""

import uuid
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from phr.vault.access import (
    Look,
    Seen,
    get_study_or_404,
    is_owner,
    is_share_holder,
    may_download,
    record_look,
    visible_documents,
    visible_studies,
)
from phr.vault.export import StudyArchive


def patient_or_share_holder(view):
    """Signed-in patients, and doctors whose browser holds a share; anyone else is asked to
    log in (a patient whose session ended clicked Download)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated and not is_share_holder(request):
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


@patient_or_share_holder
@require_GET
def download_study(request, study_id):
    """One study as a ZIP: the patient's, or a doctor's when their share allows downloading
    (logged in the patient's access log, and stopped mid-way if the share ends)."""
    study = get_study_or_404(request, study_id)
    if not may_download(request, study):
        raise Http404  # a view-only share: as if there were no download at all
    record_look(request, study, Seen(Look.ZIP))
    # A doctor's share is checked again in the database before each file.
    still_allowed = None if is_owner(request, study) else lambda: may_download(request, study)
    archive = StudyArchive(
        [study], visible_documents(request).filter(study=study), still_allowed=still_allowed
    )
    return zip_response(archive)


@login_required
@require_POST
def download_studies(request):
    wanted = request.POST.getlist("study")
    if not wanted:
        messages.info(request, "Tick the studies you'd like to download, then press Download.")
        return redirect("vault:home")
    studies = _all_studies_or_404(request, wanted)
    return zip_response(StudyArchive(studies, visible_documents(request).filter(study__in=studies)))


def _all_studies_or_404(request, ids: list[str]) -> list:
    """Every asked-for study, or 404: one ID that isn't the caller's refuses the whole ZIP,
    rather than quietly leaving it out (and so telling which IDs exist)."""
    try:
        wanted = {uuid.UUID(value) for value in ids}
    except ValueError:
        raise Http404 from None
    studies = list(visible_studies(request).filter(pk__in=wanted))
    if len(studies) != len(wanted):
        raise Http404
    return studies


def zip_response(archive: StudyArchive) -> StreamingHttpResponse:
    response = StreamingHttpResponse(archive.chunks(), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, archive.filename)
    response["Cache-Control"] = "no-store"
    # Let nginx pass the stream on as it comes instead of spooling gigabytes to its own disk.
    response["X-Accel-Buffering"] = "no"
    return response
