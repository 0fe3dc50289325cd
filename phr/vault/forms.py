from django import forms

from phr.vault.browse import StudyFilters


class DateInput(forms.DateInput):
    # The browser's own date picker: on a phone it is far easier than typing a date.
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


class StudyFilterForm(forms.Form):
    """The search and filters above the study list. It is a GET form: the words are the
    patient's own search terms, never a name or an ID from the files."""

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=100,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "For example: knee, brain, St Mary's"}
        ),
    )
    kind = forms.ChoiceField(label="Kind of scan", required=False)
    date_from = forms.DateField(label="From", required=False, widget=DateInput())
    date_to = forms.DateField(label="To", required=False, widget=DateInput())

    def __init__(self, *args, kinds=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [("", "All kinds"), *((kind, kind) for kind in kinds)]

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            # Dates typed the wrong way round: take what the patient obviously meant.
            cleaned["date_from"], cleaned["date_to"] = end, start
        return cleaned

    def filters(self) -> StudyFilters:
        """The filters to apply; only the valid parts of a half-valid form count."""
        if not self.is_bound:
            return StudyFilters()
        data = self.cleaned_data if self.is_valid() else self._valid_parts()
        return StudyFilters(
            text=(data.get("q") or "").strip(),
            kind=data.get("kind") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
        )

    def _valid_parts(self) -> dict:
        return {name: value for name, value in self.cleaned_data.items() if name not in self.errors}
