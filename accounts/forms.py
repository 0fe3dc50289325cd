from allauth.account.forms import SignupForm
from allauth.account.internal.flows.login import record_authentication
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
