from allauth.account.forms import SignupForm
from allauth.account.internal.flows.login import record_authentication
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.forms import ActivateTOTPForm
from allauth.mfa.totp.internal.auth import TOTP
from django import forms


class PatientSignupForm(SignupForm):
    full_name = forms.CharField(
        label="Your full name",
        max_length=200,
        help_text="As it appears on your hospital records.",
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    date_of_birth = forms.DateField(
        label="Date of birth (optional)",
        required=False,
        help_text="Helps us warn you if a disc holds someone else's scans.",
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday"}),
    )

    field_order = ["full_name", "email", "date_of_birth", "password1", "password2"]

    def custom_signup(self, request, user):
        user.full_name = self.cleaned_data["full_name"].strip()
        user.date_of_birth = self.cleaned_data.get("date_of_birth")
        user.save(update_fields=["full_name", "date_of_birth"])
        # The patient typed their password a moment ago; count it, so that the (mandatory)
        # authenticator enrolment that follows doesn't ask for the password again.
        record_authentication(
            request, user, method="password", email=user.email, signup=True, reauthenticated=True
        )


class SpendingActivateTOTPForm(ActivateTOTPForm):
    """Setting up the authenticator spends the code typed, as a login does: allauth checks it
    without marking it used, so the same code could log in again within its 30 seconds."""

    def clean_code(self) -> str:
        code = super().clean_code()
        # The same record of used codes, per user and code, that a login's check adds to.
        TOTP(Authenticator(user=self.user, type=Authenticator.Type.TOTP))._mark_code_used(code)
        return code
