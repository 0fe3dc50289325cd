"""Your data: download everything, your own DICOMweb tokens, or delete the account. Each asks
for the password again."""

from allauth.account.decorators import reauthentication_required
from django import forms
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from phr.lib.http import secret_page
from phr.rights import erasure
from phr.rights.export import full_export
from phr.sharing.models import DicomwebToken
from phr.vault.views.download import zip_response


class EraseForm(forms.Form):
    confirm = forms.CharField(
        label="Type DELETE to confirm",
        max_length=10,
        help_text="This can't be undone. Download your data first if you want to keep it.",
    )

    def clean_confirm(self):
        if self.cleaned_data["confirm"].strip().upper() != "DELETE":
            raise forms.ValidationError("Type the word DELETE to confirm.")
        return "DELETE"


class TokenForm(forms.Form):
    label = forms.CharField(
        label="What is it for?",
        max_length=100,
        required=False,
        help_text="For example: my laptop's Weasis. Only you see this.",
    )


def _own_tokens(user):
    return DicomwebToken.objects.filter(owner=user, share__isnull=True, revoked_at__isnull=True)


@login_required
@require_GET
def my_data(request):
    context = {"form": EraseForm(), "tokens": _own_tokens(request.user), "token_form": TokenForm()}
    return render(request, "rights/my_data.html", context)


@secret_page
@login_required
@reauthentication_required
@require_POST
def dicomweb_token_new(request):
    """The patient's own DICOMweb token (data portability): their whole vault, for software of
    their choice. Shown once."""
    form = TokenForm(request.POST)
    label = form.cleaned_data["label"] if form.is_valid() else ""
    _token, plaintext = DicomwebToken.issue(request.user, label=label)
    context = {"token": plaintext, "base_url": request.build_absolute_uri("/dicomweb")}
    return render(request, "rights/dicomweb_token.html", context)


@login_required
@require_POST
def dicomweb_token_revoke(request, token_id):
    token = get_object_or_404(_own_tokens(request.user), pk=token_id)
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    return redirect("rights:my_data")


@login_required
@reauthentication_required
@require_GET
def export_everything(request):
    return zip_response(full_export(request.user))


@login_required
@reauthentication_required
@require_http_methods(["GET", "POST"])
def delete_account(request):
    form = EraseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = request.user
        logout(request)  # ends this session before the user row goes
        erasure.erase_account(user)
        return redirect("rights:deleted")
    return render(request, "rights/delete_account.html", {"form": form})


@require_GET
def deleted(request):
    return render(request, "rights/deleted.html")
