"""Whose images are these? A CD can hold someone else's scans (a relative's, a mix-up at the
hospital): warn the patient when the labels clearly name another person, and let them decide."""

import re

from phr.vault.models import Study


def _name_words(name: str) -> set[str]:
    return {word for word in re.split(r"[\^\s,.\-]+", (name or "").lower()) if len(word) > 1}


def label_mismatch_warning(owner, study: Study) -> str | None:
    """A kind warning when the images are clearly labelled for someone else, else None.

    "Clearly" means: both birth dates are known and differ, or both names are known and share
    no word. Anything less certain (initials, missing data) stays silent.
    """
    dob_differs = bool(
        owner.date_of_birth
        and study.patient_birth_date
        and owner.date_of_birth != study.patient_birth_date
    )
    account_words, label_words = _name_words(owner.full_name), _name_words(study.patient_name)
    names_differ = bool(account_words and label_words and not (account_words & label_words))
    if not (dob_differs or names_differ):
        return None
    person = masked_name(study.patient_name) or "someone else"
    born = f", born {study.patient_birth_date.year}" if study.patient_birth_date else ""
    return f"These images are labelled for another person ({person}{born}). Keep them?"


def masked_name(dicom_name: str) -> str:
    """'DOE^JOHN' -> 'J*** D**': enough to recognise, not enough to read out."""
    parts = [part for part in re.split(r"\^", dicom_name or "") if part.strip()]
    if len(parts) >= 2:
        parts = [parts[1], parts[0], *parts[2:]]  # DICOM puts the family name first
    words = [word for part in parts for word in part.split()]
    return " ".join(word[0].upper() + "*" * (len(word) - 1) for word in words)
