"""The patient's side of hospital push: deposit codes ("Let a hospital send me images") and the
Inbox where deliveries wait for Accept or Reject."""

from datetime import timedelta

from allauth.account.decorators import reauthentication_required
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from phr.hospital import services
from phr.hospital.models import DepositCode, Organisation, format_deposit_code
from phr.lib import reveal
from phr.lib.http import secret_page
from phr.vault import browse
from phr.vault.access import get_study_or_404, inbox_studies

REVEAL_SESSION_KEY = "phr_deposit_reveal"


class DepositCodeForm(forms.Form):
    label = forms.CharField(
        label="Who is it for?",
        max_length=200,
        help_text="For your own list, e.g. “St Mary's, knee MRI in March”.",
    )
    organisation = forms.ModelChoiceField(
        label="Only this hospital may use it",
        queryset=Organisation.objects.filter(is_active=True),
        required=False,
        empty_label="Any registered hospital that has the code",
    )
    days = forms.IntegerField(
        label="Valid for (days)", min_value=1, max_value=365, initial=settings.PHR_DEPOSIT_DAYS
    )


def _own_code_or_404(request, code_id) -> DepositCode:
    return get_object_or_404(DepositCode.objects.filter(owner=request.user), pk=code_id)


@login_required
@require_http_methods(["GET", "POST"])
def deposit_codes(request):
    form = DepositCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        deposit, plain = services.create_deposit_code(
            request.user,
            label=form.cleaned_data["label"],
            organisation=form.cleaned_data["organisation"],
            expires_at=timezone.now() + timedelta(days=form.cleaned_data["days"]),
        )
        reveal.remember(request, REVEAL_SESSION_KEY, deposit.pk, plain.code)
        return redirect("hospital:deposit_created", code_id=deposit.pk)
    codes = DepositCode.objects.filter(owner=request.user).select_related("organisation")
    return render(request, "hospital/deposit_codes.html", {"form": form, "codes": codes})


@secret_page
@login_required
@reauthentication_required
@require_GET
def deposit_created(request, code_id):
    """The new code, once, with what the hospital needs to send to it; printable as a card."""
    deposit = _own_code_or_404(request, code_id)
    plain = reveal.recall(request, REVEAL_SESSION_KEY, deposit.pk)
    if plain is None:
        return render(request, "hospital/deposit_gone.html", {"deposit": deposit}, status=404)
    code = format_deposit_code(plain)
    context = {
        "deposit": deposit,
        "code": code,
        "ae_title": code.replace("-", ""),
        "stow_url": request.build_absolute_uri(
            reverse("hospital:stow", args=[code.replace("-", "")])
        ),
        "dicom_host": request.get_host().split(":")[0],
        "dicom_port": settings.PHR_DICOM_PORT,
        "minutes": settings.PHR_SHARE_REVEAL_SECONDS // 60,
    }
    return render(request, "hospital/deposit_created.html", context)


@login_required
@require_POST
def deposit_revoke(request, code_id):
    deposit = _own_code_or_404(request, code_id)
    if services.revoke_deposit_code(deposit):
        messages.success(request, f"“{deposit.label}” can no longer send you images.")
    return redirect("hospital:deposit_codes")


@login_required
@require_GET
def inbox(request):
    studies = browse.newest_first(inbox_studies(request).select_related("deposited_by"))
    rows = [{"study": study, "kind": browse.study_kind(study)} for study in studies]
    return render(request, "hospital/inbox.html", {"rows": rows})


@login_required
@require_POST
def inbox_accept(request, study_id):
    study = get_study_or_404(request, study_id)
    if not study.inbox:
        return redirect("vault:study", study_id=study.pk)
    kept = services.accept(study)
    messages.success(request, f"“{kept.title}” is now in your vault.")
    return redirect("vault:study", study_id=kept.pk)


# Rejecting deletes images for good, so it asks for the password again, like deleting a study.
@login_required
@reauthentication_required
@require_POST
def inbox_reject(request, study_id):
    study = get_study_or_404(request, study_id)
    if study.inbox:
        services.reject(study)
        messages.success(request, f"“{study.title}” was rejected and its images deleted.")
    return redirect("hospital:inbox")
