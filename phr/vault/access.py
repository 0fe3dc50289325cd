"""The one place that decides who may see which study, series, instance or document.

Every view fetches vault objects through these helpers and nothing else, so that an object a
caller may not see is a 404 (never a 403: no oracle that it exists).

Two kinds of caller:
- a signed-in patient sees their own studies and documents. Studies a hospital sent that wait
  in the Inbox can be opened by their owner (to decide on them) but are never listed in the
  vault and never offered for sharing: `visible_studies` leaves them out;
- a doctor (no account) sees exactly the studies of the shares their browser has opened that
  are live at this moment, and those studies' documents. phr.sharing.doctor asks the database
  on every call, so a revoked or expired share stops working on the very next request.
"""

from django.http import Http404
from django.shortcuts import get_object_or_404

from phr.sharing import doctor
from phr.sharing import services as sharing_services
from phr.vault.models import Document, Instance, Series, Study


def visible_studies(request):
    """The studies to list, search and share: the vault, or what a doctor was shown."""
    if request.user.is_authenticated:
        return Study.objects.in_vault().filter(owner=request.user)
    return doctor.shared_studies(request)


def inbox_studies(request):
    return Study.objects.in_inbox().filter(owner=request.user)


def _openable_studies(request):
    if request.user.is_authenticated:
        return Study.objects.filter(owner=request.user)
    return doctor.shared_studies(request)


def get_study_or_404(request, study_id) -> Study:
    return _get_or_404(request, _openable_studies(request), study_id)


def get_series_or_404(request, series_id) -> Series:
    return _get_or_404(
        request,
        Series.objects.select_related("study").filter(study__in=_openable_studies(request)),
        series_id,
    )


def get_instance_or_404(request, instance_id) -> Instance:
    return _get_or_404(
        request,
        Instance.objects.select_related("series__study").filter(
            series__study__in=_openable_studies(request)
        ),
        instance_id,
    )


def visible_documents(request):
    if request.user.is_authenticated:
        return Document.objects.filter(owner=request.user)
    # A doctor gets the documents filed with the shared studies, never the patient's loose ones.
    return Document.objects.filter(study__in=doctor.shared_studies(request))


def get_document_or_404(request, document_id) -> Document:
    return _get_or_404(request, visible_documents(request), document_id)


def _get_or_404(request, queryset, pk):
    try:
        return get_object_or_404(queryset, pk=pk)
    except Http404:
        if not request.user.is_authenticated:
            # A doctor whose share has just ended (the viewer keeps asking for images): the
            # patient's access log shows the refusal, once, as it does for the doctor's pages,
            # which then still tell the doctor that the share has ended.
            sharing_services.refuse_ended_grants(request, forget=False)
        raise
