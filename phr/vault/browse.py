"""Browsing a vault: the study list with its search and filters, what the study page shows, and
deleting a study for good.

Views stay thin; the rules live here so they can be tested without HTTP. Every function takes
querysets or objects that the caller already fetched through `phr.vault.access`, so nothing in
here decides who may see what.
"""

import logging
from dataclasses import dataclass
from datetime import date

from django.db.models import Exists, F, OuterRef, Q, QuerySet, Sum
from pydicom.uid import UID

from phr.vault import thumbnails
from phr.vault.modalities import NON_IMAGE_MODALITIES
from phr.vault.models import Instance, Series, Study
from phr.vault.patient_label import label_mismatch_warning

log = logging.getLogger(__name__)

# DICOM modality codes in the words a patient uses. Several codes share one word (CR and DX are
# both "X-ray" to a patient), so the filter offers words, not codes.
MODALITY_WORDS = {
    "CT": "CT scan",
    "MR": "MRI scan",
    "CR": "X-ray",
    "DX": "X-ray",
    "RG": "X-ray",
    "US": "Ultrasound",
    "MG": "Mammogram",
    "PT": "PET scan",
    "NM": "Nuclear medicine scan",
    "XA": "Angiogram",
    "RF": "Fluoroscopy (moving X-ray)",
    "IO": "Dental X-ray",
    "PX": "Dental X-ray",
    "BMD": "Bone density scan",
    "OPT": "Eye scan",
    "OP": "Eye photo",
    "ES": "Endoscopy",
    "XC": "Photo",
    "ECG": "Heart tracing (ECG)",
    "RTPLAN": "Radiotherapy plan",
    "RTSTRUCT": "Radiotherapy plan",
    "RTDOSE": "Radiotherapy plan",
    "RTIMAGE": "Radiotherapy plan",
    "SEG": "Outlines drawn on the images",
    "SR": "Written report",
    "DOC": "Document",
    "KO": "Key images note",
    "PR": "Display settings",
    "OT": "Other images",
    "SC": "Other images",
}


# BodyPartExamined codes (DICOM PS3.16 Annex L) that read badly when simply title-cased.
BODY_PART_WORDS = {
    "CSPINE": "Neck (cervical spine)",
    "TSPINE": "Upper back (thoracic spine)",
    "LSPINE": "Lower back (lumbar spine)",
    "SSPINE": "Base of the spine (sacrum)",
    "WHOLESPINE": "Whole spine",
    "ABDOMENPELVIS": "Abdomen and pelvis",
    "CHESTABDOMEN": "Chest and abdomen",
    "CHESTABDPELVIS": "Chest, abdomen and pelvis",
    "HEADNECK": "Head and neck",
    "TMJ": "Jaw joint",
    "IAC": "Inner ear",
    "WHOLEBODY": "Whole body",
    "EXTREMITY": "Arm or leg",
}


def body_part_words(code: str) -> str:
    code = (code or "").strip().upper().replace(" ", "_")
    if not code:
        return ""
    return BODY_PART_WORDS.get(code.replace("_", ""), code.replace("_", " ").capitalize())


def modality_word(code: str) -> str:
    return MODALITY_WORDS.get((code or "").upper(), "Scan" if code else "Imaging study")


def imaging_modalities(study: Study) -> list[str]:
    """The study's modality codes that are kinds of scan (not reports, notes or plans)."""
    return [code for code in study.modality_list if code.upper() not in NON_IMAGE_MODALITIES]


def study_kind(study: Study) -> str:
    """'CT scan', 'X-ray', 'CT scan and PET scan': what the study is, in a patient's words."""
    images = imaging_modalities(study) or study.modality_list
    words = list(dict.fromkeys(modality_word(code) for code in images))
    if not words:
        return "Imaging study"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def person_name(dicom_name: str) -> str:
    """'DOE^JOHN^Q^DR' -> 'Dr John Q Doe': DICOM writes family^given^middle^prefix^suffix."""
    if "^" not in (dicom_name or ""):
        return (dicom_name or "").strip()
    parts = [*dicom_name.split("=")[0].split("^"), "", "", "", ""][:5]
    family, given, middle, prefix, suffix = (part.strip() for part in parts)
    words = [prefix, given, middle, family, suffix]
    return " ".join(_tidy_case(word) for word in words if word)


def _tidy_case(word: str) -> str:
    # Hospital systems often shout names in capitals; a name as written stays as written, and
    # so does anything with digits in it (a test label like "CT1").
    if word.isupper() and not any(ch.isdigit() for ch in word):
        return word.title()
    return word


# --- the study list ------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyFilters:
    text: str = ""
    kind: str = ""  # a word from MODALITY_WORDS, e.g. "X-ray"
    date_from: date | None = None
    date_to: date | None = None

    @property
    def active(self) -> bool:
        return bool(self.text or self.kind or self.date_from or self.date_to)


def newest_first(studies: QuerySet) -> QuerySet:
    # Undated studies go last on every database (PostgreSQL would put NULLs first).
    return studies.order_by(
        F("study_date").desc(nulls_last=True),
        F("study_time").desc(nulls_last=True),
        "-created_at",
    )


def search_studies(studies: QuerySet, filters: StudyFilters) -> QuerySet:
    """Narrow `studies` (already limited to what the caller may see) by the patient's filters.

    Every word typed must appear somewhere (description, hospital, body part, the kind of
    scan, or the description of one of the series), so "head CT" finds "CT, HEAD/BRAIN" and
    "mri" finds an MR study whatever its description says.
    """
    for word in filters.text.split():
        in_series = Series.objects.filter(study=OuterRef("pk")).filter(
            Q(description__icontains=word) | Q(body_part__icontains=word)
        )
        studies = studies.filter(
            Q(description__icontains=word)
            | Q(institution__icontains=word)
            | Q(body_parts__icontains=word)
            | _has_any_modality(_codes_named_like(word))
            | Exists(in_series)
        )
    if filters.kind:
        studies = studies.filter(_has_any_modality(codes_for_word(filters.kind)))
    if filters.date_from:
        studies = studies.filter(study_date__gte=filters.date_from)
    if filters.date_to:
        studies = studies.filter(study_date__lte=filters.date_to)
    return newest_first(studies)


def codes_for_word(word: str) -> set[str]:
    codes = {code for code, name in MODALITY_WORDS.items() if name == word}
    # A code we have no word for is offered as itself (see kind_choices).
    return codes or {word.upper()}


def _codes_named_like(word: str) -> set[str]:
    word = word.strip().lower()
    return {
        code
        for code, name in MODALITY_WORDS.items()
        if code.lower() == word or (len(word) > 1 and word in name.lower())
    }


def _has_any_modality(codes) -> Q:
    """`modalities` is space-separated ("CT SR"): match whole words only, so "CT" never
    matches a study whose only modality happens to contain those letters."""
    query = Q(pk__in=[])
    for code in codes:
        query |= (
            Q(modalities__iexact=code)
            | Q(modalities__istartswith=f"{code} ")
            | Q(modalities__iendswith=f" {code}")
            | Q(modalities__icontains=f" {code} ")
        )
    return query


def kind_choices(studies: QuerySet) -> list[str]:
    """The kinds of scan this patient actually has, for the filter's drop-down."""
    words = set()
    for modalities in studies.values_list("modalities", flat=True).distinct():
        for code in modalities.split():
            words.add(MODALITY_WORDS.get(code.upper(), code.upper()))
    return sorted(words)


@dataclass
class StudyCard:
    study: Study
    kind: str
    thumbnail_series: Series | None
    icon: str


def study_cards(studies) -> list[StudyCard]:
    """One card per study, with the series whose thumbnail represents it (one query in all)."""
    studies = list(studies)
    cover = {}
    series_rows = (
        Series.objects.filter(study__in=[study.pk for study in studies], num_instances__gt=0)
        .exclude(modality__in=NON_IMAGE_MODALITIES)
        .order_by("study_id", F("number").asc(nulls_last=True), "created_at")
    )
    for series in series_rows:
        cover.setdefault(series.study_id, series)
    return [
        StudyCard(
            study=study,
            kind=study_kind(study),
            thumbnail_series=cover.get(study.pk),
            icon=thumbnails.icon_path(study.modality_list[0] if study.modality_list else ""),
        )
        for study in studies
    ]


def standalone_documents(documents: QuerySet) -> QuerySet:
    return documents.filter(study__isnull=True).order_by("-created_at")


# --- the study page ------------------------------------------------------------------------


@dataclass
class SeriesRow:
    series: Series
    kind: str
    body_part: str
    frames: int
    has_image: bool
    icon: str


def study_page(study: Study) -> dict:
    """Everything the study page shows, as template context."""
    series = list(study.series.all())
    frames = dict(
        Instance.objects.filter(series__study=study)
        .order_by()
        .values("series_id")
        .annotate(total=Sum("number_of_frames"))
        .values_list("series_id", "total")
    )
    rows = [
        SeriesRow(
            series=one,
            kind=modality_word(one.modality),
            body_part=body_part_words(one.body_part),
            frames=frames.get(one.pk) or 0,
            has_image=one.num_instances > 0 and one.modality not in NON_IMAGE_MODALITIES,
            icon=thumbnails.icon_path(one.modality),
        )
        for one in series
    ]
    syntaxes = (
        Instance.objects.filter(series__study=study)
        .exclude(transfer_syntax_uid="")
        .order_by()  # the model's default ordering would defeat DISTINCT
        .values_list("transfer_syntax_uid", flat=True)
        .distinct()
    )
    return {
        "study": study,
        "kind": study_kind(study),
        "series_rows": rows,
        "documents": study.documents.order_by("filename"),
        "label_warning": label_mismatch_warning(study.owner, study),
        "patient_label": person_name(study.patient_name),
        "referring_doctor": person_name(study.referring_physician),
        "transfer_syntaxes": sorted({_syntax_name(uid) for uid in syntaxes}),
        "body_parts": ", ".join(body_part_words(word) for word in study.body_parts.split()),
    }


def _syntax_name(uid: str) -> str:
    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else uid
