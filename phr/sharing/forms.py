from datetime import datetime, time, timedelta

from django import forms
from django.utils import timezone

from phr.lib import codes

EXPIRY_CHOICES = [
    ("1", "1 day"),
    ("7", "7 days"),
    ("30", "30 days"),
    ("custom", "Until a date I choose"),
]
MAX_DAYS = 365


class ShareForm(forms.Form):
    studies = forms.ModelMultipleChoiceField(
        queryset=None,
        error_messages={
            "required": "Please tick at least one study to share.",
            "invalid_choice": "One of the studies you ticked is no longer in your vault.",
            "invalid_pk_value": "One of the studies you ticked is no longer in your vault.",
        },
    )
    label = forms.CharField(
        max_length=200,
        label="Who is it for?",
        help_text="For example “Dr. Smith, Mayo Clinic”. Only you see this, in your shares list.",
        error_messages={"required": "Please say who this is for, so you can recognise it later."},
    )
    recipient_email = forms.EmailField(
        required=False,
        label="Their email address (optional)",
        help_text="We'll email them the link. We never email the PIN.",
    )
    expiry = forms.ChoiceField(
        choices=EXPIRY_CHOICES, initial="7", widget=forms.RadioSelect, label="How long?"
    )
    expiry_date = forms.DateField(
        required=False,
        label="Last day",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="At most one year from today.",
    )
    pin = forms.CharField(
        required=False,
        label="PIN (optional)",
        help_text="6 digits. Tell it to the doctor yourself: by phone, or in person.",
        widget=forms.TextInput(
            attrs={"inputmode": "numeric", "autocomplete": "off", "maxlength": 6}
        ),
    )
    allow_download = forms.TypedChoiceField(
        choices=[("no", "Look at the images only"), ("yes", "Look and download (ZIP)")],
        coerce=lambda value: value == "yes",
        initial="no",
        widget=forms.RadioSelect,
        label="What may they do?",
        help_text="Downloading lets a hospital import the images into its own system.",
    )
    notify_on_open = forms.BooleanField(
        required=False, initial=True, label="Email me the first time it is opened"
    )

    def __init__(self, *args, studies, **kwargs):
        super().__init__(*args, **kwargs)
        # Only what the caller may see (phr.vault.access): nobody can share another's study.
        self.fields["studies"].queryset = studies

    def clean_pin(self):
        typed = self.cleaned_data.get("pin", "")
        if not typed.strip():
            return ""
        pin = codes.normalise_pin(typed)
        if pin is None:
            raise forms.ValidationError("The PIN must be exactly 6 digits, or left empty.")
        return pin

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("expiry") == "custom":
            chosen = cleaned.get("expiry_date")
            today = timezone.localdate()
            if chosen is None:
                self.add_error("expiry_date", "Please pick the last day the share should work.")
            elif chosen < today:
                self.add_error("expiry_date", "Please pick today or a day in the future.")
            elif chosen > today + timedelta(days=MAX_DAYS):
                self.add_error("expiry_date", "A share can last at most one year.")
        return cleaned

    def expires_at(self) -> datetime:
        choice = self.cleaned_data["expiry"]
        if choice == "custom":
            # To the end of the chosen day, in the site's time zone.
            last_day = self.cleaned_data["expiry_date"]
            end = datetime.combine(last_day + timedelta(days=1), time.min)
            return timezone.make_aware(end)
        return timezone.now() + timedelta(days=int(choice))


class AccessCodeForm(forms.Form):
    code = forms.CharField(
        max_length=40,
        label="Access code",
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "autocapitalize": "characters",
                "spellcheck": "false",
                "placeholder": "XXXX-XXXX-XXXX-XXXX",
            }
        ),
        error_messages={"required": "Please type the access code from the patient's card."},
    )
    pin = forms.CharField(
        max_length=12,
        required=False,
        label="PIN, if the patient gave you one",
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )


class LinkPinForm(forms.Form):
    pin = forms.CharField(
        max_length=12,
        required=False,
        label="PIN from the patient",
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )
