"""The patient's side: creating a share, seeing the new code once, the printable card, the list
of shares with their access logs, and stopping a share."""

import json
import uuid

from allauth.account.decorators import reauthentication_required
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from phr.lib import reveal
from phr.lib.http import secret_page
from phr.sharing import services
from phr.sharing.forms import ShareForm
from phr.sharing.models import Secrets, Share, Status
from phr.sharing.qr import qr_svg
from phr.vault import browse
from phr.vault.access import visible_studies

# The plaintext code and token, encrypted, for a few minutes after creation: long enough to
# note them down or print the card, and never in the shares table.
REVEAL_SESSION_KEY = "phr_share_reveal"


def get_own_share_or_404(request, share_id) -> Share:
    return get_object_or_404(Share.objects.filter(owner=request.user), pk=share_id)


@login_required
@require_GET
def share_list(request):
    shares = list(
        Share.objects.filter(owner=request.user).prefetch_related(
            Prefetch("studies", queryset=browse.newest_first(visible_studies(request)))
        )
    )
    for share in shares:
        services.note_expiry(share)
    return render(request, "sharing/list.html", {"shares": shares})


@login_required
@require_GET
def share_detail(request, share_id):
    share = get_own_share_or_404(request, share_id)
    services.note_expiry(share)
    context = {
        "share": share,
        "studies": browse.newest_first(share.studies.filter(owner=request.user)),
        # A counted line (images, DICOM details) shows its count and end: one query for all.
        "events": share.events.select_related("tally"),
    }
    return render(request, "sharing/detail.html", context)


@login_required
@reauthentication_required
@require_http_methods(["GET", "POST"])
def share_create(request):
    studies = browse.newest_first(visible_studies(request))
    if request.method == "POST":
        form = ShareForm(request.POST, studies=studies)
        if form.is_valid():
            return _create(request, form)
    else:
        form = ShareForm(studies=studies, initial={"studies": _preselected(request, studies)})
    chosen = {str(value) for value in (form["studies"].value() or [])}
    rows = [
        {
            "study": study,
            "kind": browse.study_kind(study),
            # For the "earlier scans of the same kind" button (create.js): scans only.
            "modalities": " ".join(browse.imaging_modalities(study)),
            "checked": str(study.pk) in chosen,
        }
        for study in studies
    ]
    return render(request, "sharing/create.html", {"form": form, "rows": rows})


def _preselected(request, studies) -> list:
    # `?study=<uuid>` from a study's page: a UUID says nothing about the patient.
    wanted = request.GET.get("study")
    if not wanted:
        return []
    try:
        study_id = uuid.UUID(wanted)
    except ValueError:
        return []
    return list(studies.filter(pk=study_id).values_list("pk", flat=True))


def _create(request, form):
    data = form.cleaned_data
    client = services.Client.from_request(request)
    share, plain = services.create_share(
        request.user,
        data["studies"],
        label=data["label"],
        recipient_email=data["recipient_email"],
        expires_at=form.expires_at(),
        pin=data["pin"],
        allow_download=data["allow_download"],
        notify_on_open=data["notify_on_open"],
        client=client,
    )
    services.email_link(share, _link(request, plain.token), client)
    secrets = json.dumps({"code": plain.code, "token": plain.token})
    reveal.remember(request, REVEAL_SESSION_KEY, share.pk, secrets)
    return redirect("sharing:created", share_id=share.pk)


def _link(request, token: str) -> str:
    return request.build_absolute_uri(reverse("sharing:link", args=[token]))


def _revealed(request, share: Share) -> Secrets:
    """The new share's code and token, if it was created in this session a moment ago."""
    kept = reveal.recall(request, REVEAL_SESSION_KEY, share.pk)
    if kept is None:
        raise Http404
    plain = json.loads(kept)
    return Secrets(code=plain["code"], token=plain["token"])


def _reveal_context(request, share: Share) -> dict:
    plain = _revealed(request, share)
    link = _link(request, plain.token)
    return {
        "share": share,
        "code": plain.formatted_code,
        "link": link,
        "qr": qr_svg(link),
        "access_url": request.build_absolute_uri(reverse("doctor_access")),
        "minutes": settings.PHR_SHARE_REVEAL_SECONDS // 60,
        "studies": browse.newest_first(share.studies.all()),
    }


@secret_page
@login_required
@reauthentication_required
@require_GET
def share_created(request, share_id):
    return _reveal(request, share_id, "sharing/created.html")


@secret_page
@login_required
@reauthentication_required
@require_GET
def share_card(request, share_id):
    return _reveal(request, share_id, "sharing/card.html")


def _reveal(request, share_id, template):
    """Show the code and link, which exist only in the session for a few minutes after
    creation; afterwards, a page explaining that a lost code means a new share."""
    share = get_own_share_or_404(request, share_id)
    try:
        context = _reveal_context(request, share)
    except Http404:
        return render(request, "sharing/reveal_gone.html", {"share": share}, status=404)
    return render(request, template, context)


@login_required
@require_POST
def share_hide(request, share_id):
    share = get_own_share_or_404(request, share_id)
    reveal.forget(request, REVEAL_SESSION_KEY)
    messages.success(request, f"The code for “{share.label}” is now hidden for good.")
    return redirect("sharing:list")


# Stopping a share asks for no re-authentication on purpose: taking access away must be one
# tap, even when the patient is in a hurry, and it can only make the vault safer.
@login_required
@require_POST
def share_revoke(request, share_id):
    share = get_own_share_or_404(request, share_id)
    if services.revoke(share, services.Client.from_request(request)):
        messages.success(
            request,
            f"Sharing with “{share.label}” has stopped. They can't open your scans any more.",
        )
    elif share.status == Status.REVOKED:
        messages.info(request, f"Sharing with “{share.label}” had already been stopped.")
    return redirect("sharing:list")
