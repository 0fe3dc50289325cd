"""The doctor's side: opening a share with a code or a link, and the shared studies.

A doctor has no account. Every page here fetches through phr.vault.access, which answers with
the studies of the shares this browser opened that are live right now: anything else is 404.
"""

from functools import wraps

from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from phr.lib import ratelimit
from phr.lib.http import secret_page, url_if_installed
from phr.sharing import doctor, services
from phr.sharing.forms import AccessCodeForm, LinkPinForm
from phr.sharing.models import Share
from phr.vault import browse, thumbnails
from phr.vault.access import (
    Look,
    Seen,
    get_study_or_404,
    may_download,
    record_look,
    visible_documents,
    visible_studies,
)

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
        opened = _redeem(request, "code", form.cleaned_data["code"], form.cleaned_data["pin"])
        if opened:
            return opened
        # Wrong code, wrong PIN, expired, stopped or locked: one answer for all of them, so a
        # guesser learns nothing about which codes exist.
        # The code stays in its field (a typo is fixed without typing it all again); the PIN
        # does not. Giving back what the doctor typed tells a guesser nothing new.
        form = AccessCodeForm(initial={"code": form.cleaned_data["code"]})
        return render(
            request,
            "sharing/doctor/access.html",
            {"form": form, "failed": True},
            status=FAILED_STATUS,
        )
    return render(request, "sharing/doctor/access.html", {"form": form})


def _redeem(request, via: str, secret: str, pin: str):
    """Try the code or link: the response that opens the share or says to wait, or None for
    every kind of failure (which the caller answers the same way, whatever the reason)."""
    result = services.redeem(
        via=via,
        secret=secret,
        pin=pin,
        client=services.Client.from_request(request, visitor=doctor.visitor_tag(request)),
        site_url=_site_url(request),
    )
    if result.outcome is services.Outcome.OPENED:
        return _start_session(request, result)
    if result.outcome is services.Outcome.RATE_LIMITED:
        return _too_many(request)
    return None


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
    opened = _redeem(request, "link", token, pin)
    if opened:
        return opened
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


def doctor_required(view):
    """Let in a browser that holds at least one live share; tell a doctor plainly when a share
    they had open has since ended (the 'no oracle' rule is for people without a share)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.user.is_authenticated:
            return _signed_in_patient(request)
        check = doctor.refuse_ended(request, forget=True)
        if check.ended:
            context = {"ended": check.ended, "others": bool(check.live)}
            return render(request, "sharing/doctor/ended.html", context, status=410)
        if not check.live:
            return redirect("doctor_access")
        request.doctor_shares = check.live
        return view(request, *args, **kwargs)

    return secret_page(wrapper)


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
    record_look(request, study, Seen(Look.STUDY))
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
    context = {
        "study": study,
        "kind": browse.study_kind(study),
        "patient": study.owner,
        "dicom_name": browse.person_name(study.patient_name),
        "series_rows": rows,
        "documents": visible_documents(request).filter(study=study).order_by("filename"),
        "can_download": may_download(request, study),
        "viewer_url": url_if_installed("viewer:study", study.id),
    }
    return render(request, "sharing/doctor/study.html", context)


@doctor_required
@require_POST
def dicomweb_token(request, share_id):
    """ "Use in your own viewer or PACS": a DICOMweb address and token for one share this
    browser holds, shown once."""
    share = next((s for s in request.doctor_shares if s.pk == share_id), None)
    if share is None or not share.allow_download:
        raise Http404
    client = services.Client.from_request(request, visitor=doctor.visitor_tag(request))
    plaintext = services.issue_dicomweb_token(share, client)
    context = {
        "share": share,
        "token": plaintext,
        "base_url": request.build_absolute_uri("/dicomweb"),
    }
    return render(request, "sharing/doctor/dicomweb.html", context)
