"""QIDO-RS (PS3.18 10.6): matching and DICOM JSON answers for studies, series and instances,
built from what ingest recorded in the database: a search opens no file.

Matching follows PS3.4 C.2.2.2: single values (case-sensitive, but PN case-insensitive, as
most archives do), `*` and `?` wildcards, UID lists, and date ranges. A key we don't index is
ignored, as PS3.18 allows, rather than refused.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache

from django.db.models import Q, QuerySet
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from phr.vault.models import Instance, Series, Study

MAX_RESULTS = 1000  # one answer's most, whatever `limit` asks (PS3.18 8.3.4.4: the server's)


class BadQuery(ValueError):
    """A query parameter we can't read: the answer is 400 with this message."""


@cache
def _tag(keyword: str) -> str:
    return f"{tag_for_keyword(keyword):08X}"


@cache
def _vr(keyword: str) -> str:
    return dictionary_VR(keyword)


def _element(keyword: str, value) -> tuple[str, dict]:
    vr = _vr(keyword)
    if value in (None, "", []):
        return _tag(keyword), {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        values = [{"Alphabetic": str(v)} for v in values]
    return _tag(keyword), {"vr": vr, "Value": values}


def dicom_json(pairs: list[tuple[str, object]]) -> dict:
    return dict(_element(keyword, value) for keyword, value in pairs)


def _da(day: date | None) -> str:
    return day.strftime("%Y%m%d") if day else ""


# --- the answers ---------------------------------------------------------------------------------


def study_json(study: Study, base_url: str) -> dict:
    return dicom_json(
        [
            ("StudyInstanceUID", study.study_instance_uid),
            ("StudyDate", _da(study.study_date)),
            ("StudyTime", study.study_time.strftime("%H%M%S") if study.study_time else ""),
            ("AccessionNumber", study.accession_number),
            ("ModalitiesInStudy", study.modality_list),
            ("ReferringPhysicianName", study.referring_physician),
            ("StudyDescription", study.description),
            ("PatientName", study.patient_name),
            ("PatientID", study.patient_id),
            ("PatientBirthDate", _da(study.patient_birth_date)),
            ("PatientSex", study.patient_sex),
            ("NumberOfStudyRelatedSeries", study.num_series),
            ("NumberOfStudyRelatedInstances", study.num_instances),
            ("RetrieveURL", f"{base_url}/studies/{study.study_instance_uid}"),
        ]
    )


def series_json(series: Series, base_url: str) -> dict:
    study_url = f"{base_url}/studies/{series.study.study_instance_uid}"
    return dicom_json(
        [
            ("StudyInstanceUID", series.study.study_instance_uid),
            ("SeriesInstanceUID", series.series_instance_uid),
            ("Modality", series.modality),
            ("SeriesDescription", series.description),
            ("SeriesNumber", series.number),
            ("BodyPartExamined", series.body_part),
            ("NumberOfSeriesRelatedInstances", series.num_instances),
            ("RetrieveURL", f"{study_url}/series/{series.series_instance_uid}"),
        ]
    )


def instance_json(instance: Instance, base_url: str) -> dict:
    series = instance.series
    series_url = (
        f"{base_url}/studies/{series.study.study_instance_uid}/series/{series.series_instance_uid}"
    )
    return dicom_json(
        [
            ("StudyInstanceUID", series.study.study_instance_uid),
            ("SeriesInstanceUID", series.series_instance_uid),
            ("SOPClassUID", instance.sop_class_uid),
            ("SOPInstanceUID", instance.sop_instance_uid),
            ("InstanceNumber", instance.instance_number),
            ("Rows", instance.rows),
            ("Columns", instance.columns),
            ("NumberOfFrames", instance.number_of_frames),
            ("RetrieveURL", f"{series_url}/instances/{instance.sop_instance_uid}"),
        ]
    )


# --- matching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    field: str
    kind: str  # "text", "name", "uids", "date", "words", "int"


STUDY_KEYS = {
    "StudyInstanceUID": Key("study_instance_uid", "uids"),
    "PatientID": Key("patient_id", "text"),
    "PatientName": Key("patient_name", "name"),
    "AccessionNumber": Key("accession_number", "text"),
    "StudyDate": Key("study_date", "date"),
    "StudyDescription": Key("description", "text"),
    "ReferringPhysicianName": Key("referring_physician", "name"),
    "ModalitiesInStudy": Key("modalities", "words"),
}
SERIES_KEYS = {
    "SeriesInstanceUID": Key("series_instance_uid", "uids"),
    "Modality": Key("modality", "text"),
    "SeriesNumber": Key("number", "int"),
    "SeriesDescription": Key("description", "text"),
}
INSTANCE_KEYS = {
    "SOPInstanceUID": Key("sop_instance_uid", "uids"),
    "SOPClassUID": Key("sop_class_uid", "uids"),
    "InstanceNumber": Key("instance_number", "int"),
}
# Parameters that are not attribute keys (PS3.18 8.3.4).
CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}


def _keyword(name: str) -> str:
    """A query key as a keyword: "PatientID", "00100020" or "0010,0020" alike."""
    hexa = name.replace(",", "").upper()
    if re.fullmatch(r"[0-9A-F]{8}", hexa):
        return keyword_for_tag(int(hexa, 16)) or name
    return name


def _wildcard(field: str, value: str, insensitive: bool) -> Q:
    if "*" not in value and "?" not in value:
        return Q(**{f"{field}__iexact" if insensitive else field: value})
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)
    return Q(**{f"{field}__{'iregex' if insensitive else 'regex'}": f"^{pattern}$"})


def _date_range(field: str, value: str) -> Q:
    def day(text: str) -> date:
        if not re.fullmatch(r"\d{8}", text):
            raise BadQuery(f"{text!r} is not a date (YYYYMMDD).")
        try:
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError as error:
            raise BadQuery(f"{text!r} is not a date: {error}.") from error

    if "-" not in value:
        return Q(**{field: day(value)})
    start, _, end = value.partition("-")
    query = Q()
    if start:
        query &= Q(**{f"{field}__gte": day(start)})
    if end:
        query &= Q(**{f"{field}__lte": day(end)})
    return query


def _words(field: str, value: str) -> Q:
    """ModalitiesInStudy: any of the listed codes among the study's (space-separated) ones."""
    query = Q()
    for code in filter(None, re.split(r"[,\\]", value)):
        code = code.strip()
        query |= (
            Q(**{f"{field}__iexact": code})
            | Q(**{f"{field}__istartswith": f"{code} "})
            | Q(**{f"{field}__iendswith": f" {code}"})
            | Q(**{f"{field}__icontains": f" {code} "})
        )
    return query


def _int_match(field: str, value: str) -> Q:
    if not re.fullmatch(r"-?\d+", value):
        raise BadQuery(f"{value!r} is not a whole number.")
    return Q(**{field: int(value)})


_MATCHERS: dict[str, Callable[[str, str], Q]] = {
    "text": lambda field, value: _wildcard(field, value, insensitive=False),
    "name": lambda field, value: _wildcard(field, value, insensitive=True),
    "uids": lambda field, value: Q(**{f"{field}__in": re.split(r"[,\\]", value)}),
    "date": _date_range,
    "words": _words,
    "int": _int_match,
}


def matched(queryset: QuerySet, params, keys: dict[str, Key], prefix: str = "") -> QuerySet:
    """`queryset` narrowed by the query's attribute keys that `keys` indexes (on `prefix`)."""
    for name, values in params.lists():
        if name in CONTROL:
            continue
        key = keys.get(_keyword(name))
        value = values[-1]
        if key is None or value == "" or value == "*":
            continue  # not ours to match on (PS3.18 allows ignoring it), or matches everything
        queryset = queryset.filter(_MATCHERS[key.kind](prefix + key.field, value))
    return queryset


def page(queryset: QuerySet, params) -> QuerySet:
    def number(name: str, default: int) -> int:
        text = params.get(name, "")
        if text == "":
            return default
        if not text.isdigit():
            raise BadQuery(f"{name} must be a whole number.")
        return int(text)

    offset = number("offset", 0)
    limit = min(number("limit", MAX_RESULTS), MAX_RESULTS)
    return queryset[offset : offset + limit]
