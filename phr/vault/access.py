"""The one place that decides who may see which study, series, instance or document, and that
tells the patient's access log what a doctor was given.

Every view fetches vault objects through these helpers and nothing else, so that an object a
caller may not see is a 404 (never a 403: no oracle that it exists).

Two kinds of caller:
- a signed-in patient sees their own studies and documents. Studies a hospital sent that wait
  in the Inbox can be opened by their owner (to decide on them) but are never listed in the
  vault and never offered for sharing: `visible_studies` leaves them out;
- a doctor (no account) sees exactly the studies of the shares their browser has opened that
  are live at this moment, and those studies' documents. Which those are is the sharing app's
  answer (its Grantee, registered when it starts): it asks the database on every call, so a
  revoked or expired share stops working on the very next request.

vault knows nothing of shares: the grantee hook is how the layer above answers for the browsers
it let in, and how their looks reach the patient's log.
"""

import enum
import time
import uuid
from dataclasses import dataclass, field

from django.shortcuts import get_object_or_404

from phr.vault.models import Document, Instance, Series, Study


class Look(enum.StrEnum):
    """What a doctor's browser was given, as the patient's access log tells it."""

    STUDY = "viewed"  # a study's page, the viewer opened on it, or its list of images
    PREVIEWS = "previews"  # series' thumbnails (counted per study)
    IMAGES = "images"  # images of some series (counted per series)
    TAGS = "tags"  # the DICOM details of some images (counted per series)
    DOCUMENT = "document"  # a document opened in the browser
    DOCUMENT_SAVED = "document_saved"  # a document downloaded
    ZIP = "downloaded"  # the whole study as a ZIP


@dataclass(frozen=True)
class Seen:
    """One look at `study`: for IMAGES and TAGS, which images of which series
    ({series id: [instance ids]}); for PREVIEWS, which series ({study id: [series ids]}); for
    the documents, which one."""

    look: Look
    images: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)
    document: Document | None = None


class Grantee:
    """Answers for a browser without an account. This one lets nobody in; the sharing app
    registers the real one (phr.sharing.grantee)."""

    def studies(self, request):
        return Study.objects.none()

    def holds_any(self, request) -> bool:
        """Whether this browser was let in at all (even if its access has since ended)."""
        return False

    def may_download(self, request, study: Study) -> bool:
        return False

    def access_ends_at(self, request, study: Study) -> float:
        """When this browser's access to `study` ends, as a Unix time (0: it has none)."""
        return 0

    def record(self, request, study: Study, seen: Seen) -> None:
        pass


_grantee = Grantee()


def register_grantee(grantee: Grantee) -> None:
    global _grantee
    _grantee = grantee


def visible_studies(request):
    """The studies to list, search and share: the vault, or what a doctor was shown."""
    if request.user.is_authenticated:
        return Study.objects.in_vault().filter(owner=request.user)
    return _grantee.studies(request)


def inbox_studies(request):
    return Study.objects.in_inbox().filter(owner=request.user)


def _openable_studies(request):
    if request.user.is_authenticated:
        return Study.objects.filter(owner=request.user)
    return _grantee.studies(request)


def is_share_holder(request) -> bool:
    """A browser without an account that holds a share (live or ended): a doctor's."""
    return not request.user.is_authenticated and _grantee.holds_any(request)


def is_owner(request, study: Study) -> bool:
    return request.user.is_authenticated and study.owner_id == request.user.pk


def may_download(request, study: Study) -> bool:
    """The owner always may; a doctor when one of their live shares holding it allows it."""
    return is_owner(request, study) or (
        not request.user.is_authenticated and _grantee.may_download(request, study)
    )


def cache_seconds(request, study: Study, wanted: int) -> int:
    """How long the caller's browser may keep an image of `study`: `wanted` for the owner; for
    a doctor's browser, often on a shared hospital PC, no longer than their access lasts."""
    if is_owner(request, study):
        return wanted
    left = int(_grantee.access_ends_at(request, study) - time.time())
    return max(0, min(wanted, left))


def record_look(request, study: Study, seen: Seen) -> None:
    """Write what a doctor was given into the patient's access log. The patient's own looks
    at their own vault are not logged: the log is of other people's use."""
    if not request.user.is_authenticated:
        _grantee.record(request, study, seen)


def get_study_or_404(request, study_id) -> Study:
    return get_object_or_404(_openable_studies(request), pk=study_id)


def get_series_or_404(request, series_id) -> Series:
    return get_object_or_404(
        Series.objects.select_related("study").filter(study__in=_openable_studies(request)),
        pk=series_id,
    )


def get_instance_or_404(request, instance_id) -> Instance:
    return get_object_or_404(
        Instance.objects.select_related("series__study").filter(
            series__study__in=_openable_studies(request)
        ),
        pk=instance_id,
    )


def visible_documents(request):
    if request.user.is_authenticated:
        return Document.objects.filter(owner=request.user)
    # A doctor gets the documents filed with the shared studies, never the patient's loose ones.
    return Document.objects.filter(study__in=_grantee.studies(request))


def get_document_or_404(request, document_id) -> Document:
    return get_object_or_404(visible_documents(request).select_related("study"), pk=document_id)
