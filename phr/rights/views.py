"""Your data: download everything, or delete the account. Both ask for the password again."""

from allauth.account.decorators import reauthentication_required
from django import forms
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from phr.rights import erasure
from phr.rights.export import full_export
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


@login_required
@require_GET
def my_data(request):
    return render(request, "rights/my_data.html", {"form": EraseForm()})


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
