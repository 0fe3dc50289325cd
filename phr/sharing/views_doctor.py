"""The doctor's side: opening a share with a code or a link, and the shared studies.

A doctor has no account. Every page here fetches through phr.vault.access, which answers with
the studies of the shares this browser opened that are live right now: anything else is 404.
"""

from functools import wraps

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from phr.sharing import doctor, ratelimit, services
from phr.sharing.decorators import secret_page
from phr.sharing.forms import AccessCodeForm, LinkPinForm
from phr.sharing.models import Event, Share
from phr.vault import browse, thumbnails
from phr.vault.access import (
    get_document_or_404,
    get_series_or_404,
    get_study_or_404,
    visible_documents,
    visible_studies,
)
from phr.vault.export import StudyArchive

FAILED_STATUS = 403


def _signed_in_patient(request):
    # One browser, one role: a patient's own login and a doctor's share would otherwise mix.
    return render(request, "sharing/doctor/signed_in.html", status=409)


def _too_many(request):
    response = render(request, "sharing/doctor/too_many.html", status=429)
    response["Retry-After"] = str(ratelimit.ADDRESS_BLOCK_SECONDS)
    return response


def _site_url(request) -> str:
    return request.build_absolute_uri("/").rstrip("/")


# --- opening a share -----------------------------------------------------------------------


@secret_page
@require_http_methods(["GET", "POST"])
def access_code(request):
    if request.user.is_authenticated:
        return _signed_in_patient(request)
    form = AccessCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        result = services.redeem(
            via="code",
            secret=form.cleaned_data["code"],
            pin=form.cleaned_data["pin"],
            client=services.Client.from_request(request, visitor=doctor.visitor_tag(request)),
            site_url=_site_url(request),
        )
        if result.outcome is services.Outcome.OPENED:
            return _start_session(request, result)
        if result.outcome is services.Outcome.RATE_LIMITED:
            return _too_many(request)
        # Wrong code, wrong PIN, expired, stopped or locked: one answer for all of them, so a
        # guesser learns nothing about which codes exist.
        return render(
            request,
            "sharing/doctor/access.html",
            {"form": AccessCodeForm(), "failed": True},
            status=FAILED_STATUS,
        )
    return render(request, "sharing/doctor/access.html", {"form": form})


@secret_page
@require_http_methods(["GET", "POST"])
def magic_link(request, token):
    if request.user.is_authenticated:
        return _signed_in_patient(request)
    # GET only shows a button: email scanners and chat previews follow links, and must not
    # open the share (no session, no "opened" in the patient's log, no email to the patient).
    # Reading the share just to know whether to ask for a PIN changes nothing.
    found = Share.find_by_token(token)
    context = {"token": token, "needs_pin": bool(found and found.has_pin)}
    if request.method == "GET":
        return render(request, "sharing/doctor/confirm.html", {**context, "form": LinkPinForm()})
    form = LinkPinForm(request.POST)
    pin = form.cleaned_data["pin"] if form.is_valid() else ""
    result = services.redeem(
        via="link",
        secret=token,
        pin=pin,
        client=services.Client.from_request(request, visitor=doctor.visitor_tag(request)),
        site_url=_site_url(request),
    )
    if result.outcome is services.Outcome.OPENED:
        return _start_session(request, result)
    if result.outcome is services.Outcome.RATE_LIMITED:
        return _too_many(request)
    context.update(form=LinkPinForm(), failed=True)
    return render(request, "sharing/doctor/confirm.html", context, status=FAILED_STATUS)


def _start_session(request, result):
    doctor.add_grant(request, result.share, result.client.visitor)
    # A clean address: the token or code never stays in the address bar or the history.
    return redirect("sharing:shared_home")


@require_POST
def leave(request):
    doctor.end_session(request)
    return redirect("doctor_access")


# --- the shared studies --------------------------------------------------------------------


def ended_share_response(request, *, page: bool):
    """For a doctor whose browser held a share that has since ended: 410 Gone, as the page
    that says so (`page`) or as a short answer for the viewer's requests. None for anyone else,
    who gets the usual 404 (no oracle for someone who never held a share)."""
    if request.user.is_authenticated:
        return None
    check = services.refuse_ended_grants(request, forget=False)
    if not check.ended:
        return None
    if page:
        context = {"ended": check.ended, "others": bool(check.live)}
        response = render(request, "sharing/doctor/ended.html", context, status=410)
    else:
        response = HttpResponse(
            _("This share has ended."), status=410, content_type="text/plain; charset=utf-8"
        )
    add_never_cache_headers(response)
    return response


def doctor_required(view):
    """Let in a browser that holds at least one live share; tell a doctor plainly when a share
    they had open has since ended (the 'no oracle' rule is for people without a share)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.user.is_authenticated:
            return _signed_in_patient(request)
        check = services.refuse_ended_grants(request, forget=True)
        if check.ended:
            context = {"ended": check.ended, "others": bool(check.live)}
            return render(request, "sharing/doctor/ended.html", context, status=410)
        if not check.live:
            return redirect("doctor_access")
        request.doctor_shares = check.live
        return view(request, *args, **kwargs)

    return secret_page(wrapper)


def _log_use(request, study, kind, *, detail="", object_id=None):
    services.record_doctor_use(request, study, kind, detail=detail, object_id=object_id)


@doctor_required
@require_GET
def shared_home(request):
    studies = browse.newest_first(visible_studies(request))
    groups = []
    for share in request.doctor_shares:
        ids = set(share.studies.values_list("pk", flat=True))
        in_share = [study for study in studies if study.pk in ids]
        groups.append(
            {
                "share": share,
                "patient": share.owner,
                "cards": browse.study_cards(in_share),
                "documents": visible_documents(request).filter(study__in=in_share),
            }
        )
    return render(request, "sharing/doctor/home.html", {"groups": groups})


@doctor_required
@require_GET
def shared_study(request, study_id):
    study = get_study_or_404(request, study_id)
    _log_use(request, study, Event.VIEWED, detail=services.study_words(study), object_id=study.pk)
    series = list(study.series.all())
    rows = [
        {
            "series": one,
            "kind": browse.modality_word(one.modality),
            "has_image": one.num_instances > 0 and one.modality not in browse.NON_IMAGE_MODALITIES,
            "icon": thumbnails.icon_path(one.modality),
        }
        for one in series
    ]
    shares = doctor.shares_holding(request, study)
    context = {
        "study": study,
        "kind": browse.study_kind(study),
        "patient": study.owner,
        "dicom_name": browse.person_name(study.patient_name),
        "series_rows": rows,
        "documents": visible_documents(request).filter(study=study).order_by("filename"),
        "can_download": any(share.allow_download for share in shares),
        "viewer_url": _viewer_url(study),
    }
    return render(request, "sharing/doctor/study.html", context)


def _viewer_url(study):
    # The viewer ships in a later issue: link to it only once its page exists.
    try:
        return reverse("viewer:study", args=[study.id])
    except NoReverseMatch:
        return None


@doctor_required
@require_GET
def shared_thumbnail(request, series_id):
    series = get_series_or_404(request, series_id)
    instance = thumbnails.cover_instance(series)
    key = thumbnails.thumbnail_for(instance) if instance is not None else None
    if key is None:
        return redirect(static(thumbnails.icon_path(series.modality)))
    return FileResponse(default_storage.open(key, "rb"), content_type="image/png")


@doctor_required
@require_GET
def shared_document(request, document_id):
    document = get_document_or_404(request, document_id)
    _log_use(
        request, document.study, Event.DOCUMENT, detail=document.filename, object_id=document.pk
    )
    response = FileResponse(
        default_storage.open(document.storage_key, "rb"), content_type=document.content_type
    )
    inline = document.content_type in {"application/pdf", "image/jpeg", "image/png"}
    response["Content-Disposition"] = content_disposition_header(not inline, document.filename)
    # A PDF opens in our origin: sandboxed, any script in it can't reach anything.
    response["Content-Security-Policy"] = "sandbox; frame-ancestors 'none'"
    return response


@doctor_required
@require_GET
def shared_download(request, study_id):
    study = get_study_or_404(request, study_id)
    if not doctor.may_download(request, study):
        raise Http404  # view-only share: as if there were no download at all
    _log_use(
        request, study, Event.DOWNLOADED, detail=services.study_words(study), object_id=study.pk
    )
    archive = StudyArchive(
        [study],
        visible_documents(request).filter(study=study),
        # Re-checked in the database before each file, like any other request of the doctor's.
        still_allowed=lambda: doctor.may_download(request, study),
    )
    response = StreamingHttpResponse(archive.chunks(), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, archive.filename)
    response["X-Accel-Buffering"] = "no"
    return response
