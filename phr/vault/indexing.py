"""Step 6 of ingest: file one DICOM header into the Study > Series > Instance index.

Called inside the ingest's transaction. Counters are bumped with F() expressions so that
parallel uploads into the same study never lose a count.
"""

import math

from django.db.models import Count, F, Sum

from phr.vault.dicomfile import DicomHeader
from phr.vault.models import Instance, Series, Study


def index_instance(
    owner, header: DicomHeader, sha256, size, key, source, is_conflict, delivery=None
) -> tuple[Instance, bool]:
    defaults = _study_fields(header, source)
    if delivery is not None:
        defaults |= {
            "deposited_by": delivery.organisation,
            "deposited_at": delivery.received_at,
        }
    # A hospital's delivery files into the Inbox's copy of the study, never the vault's.
    study, study_created = Study.objects.select_for_update().get_or_create(
        owner=owner,
        study_instance_uid=header.study_instance_uid,
        inbox=delivery is not None,
        defaults=defaults,
    )
    study.owner = owner  # already in hand: spares a query wherever the study is summarised
    if not study_created:
        _fill_blank_study_fields(study, header)
    series, series_created = Series.objects.get_or_create(
        study=study, series_instance_uid=header.series_instance_uid, defaults=_series_fields(header)
    )
    instance = Instance.objects.create(
        series=series,
        owner=owner,
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid or "",
        transfer_syntax_uid=header.transfer_syntax_uid or "",
        instance_number=header.instance_number,
        number_of_frames=max(1, header.number_of_frames or 1),
        rows=header.rows,
        columns=header.columns,
        slice_position=slice_position(header),
        display=_display_fields(header),
        size=size,
        sha256=sha256,
        storage_key=key,
        is_conflict=is_conflict,
    )
    Series.objects.filter(pk=series.pk).update(num_instances=F("num_instances") + 1)
    Study.objects.filter(pk=study.pk).update(
        num_instances=F("num_instances") + 1,
        num_series=F("num_series") + int(series_created),
        total_bytes=F("total_bytes") + size,
        modalities=_merged_words(study.modalities, header.modality),
        body_parts=_merged_words(study.body_parts, header.body_part_examined),
    )
    instance.series = series
    series.study = study
    return instance, study_created


def _text(value, limit=200) -> str:
    return (value or "")[:limit]


def _study_fields(header: DicomHeader, source: str) -> dict:
    return {
        "study_date": header.study_date,
        "study_time": header.study_time,
        "description": _text(header.study_description),
        "accession_number": _text(header.accession_number, 64),
        "referring_physician": _text(header.referring_physician_name),
        "institution": _text(header.institution_name),
        "patient_name": _text(header.patient_name),
        "patient_id": _text(header.patient_id, 64),
        "patient_birth_date": header.patient_birth_date,
        "patient_sex": _text(header.patient_sex, 16),
        "source": source,
    }


def _fill_blank_study_fields(study: Study, header: DicomHeader) -> None:
    """A study's first file may lack what a later file has (an SR without a description)."""
    changed = []
    for name, value in _study_fields(header, study.source).items():
        if value and not getattr(study, name):
            setattr(study, name, value)
            changed.append(name)
    if changed:
        study.save(update_fields=changed)


def _series_fields(header: DicomHeader) -> dict:
    return {
        "number": header.series_number,
        "modality": _text(header.modality, 16),
        "description": _text(header.series_description),
        "body_part": _text(header.body_part_examined, 64),
    }


def _merged_words(existing: str, word: str | None) -> str:
    words = existing.split()
    word = (word or "").strip().replace(" ", "_")
    if word and word not in words:
        words.append(word)
    return " ".join(words)[:200]


def _display_fields(header: DicomHeader) -> dict:
    """What the viewer needs to lay out and window an image without opening the file."""
    fields = {
        "pixel_spacing": header.pixel_spacing,
        "window_center": header.window_center,
        "window_width": header.window_width,
        "rescale_slope": header.rescale_slope,
        "rescale_intercept": header.rescale_intercept,
        "photometric": header.photometric_interpretation,
        "image_position": header.image_position_patient,
        "image_orientation": header.image_orientation_patient,
        "bits_allocated": header.bits_allocated,
        "has_pixels": header.has_pixel_data,
    }
    return {
        name: (list(value) if isinstance(value, tuple) else value)
        for name, value in fields.items()
        if value is not None
    }


def slice_position(header: DicomHeader) -> float | None:
    """Distance along the slice normal, so stacks sort head-to-foot whatever their numbering."""
    position, orientation = header.image_position_patient, header.image_orientation_patient
    if position and orientation and len(position) == 3 and len(orientation) == 6:
        row, col = orientation[:3], orientation[3:]
        normal = (
            row[1] * col[2] - row[2] * col[1],
            row[2] * col[0] - row[0] * col[2],
            row[0] * col[1] - row[1] * col[0],
        )
        value = sum(p * n for p, n in zip(position, normal, strict=True))
        if math.isfinite(value):
            return value
    if header.slice_location is not None and math.isfinite(header.slice_location):
        return header.slice_location
    return None


def recount_study(study: Study) -> None:
    """Recompute a study's counters from its rows, after series or images moved into it."""
    for series in study.series.annotate(count=Count("instances")):
        if series.num_instances != series.count:
            Series.objects.filter(pk=series.pk).update(num_instances=series.count)
    totals = Instance.objects.filter(series__study=study).aggregate(
        images=Count("pk"), size=Sum("size")
    )
    modalities, body_parts = "", ""
    for modality, body_part in study.series.values_list("modality", "body_part"):
        modalities = _merged_words(modalities, modality)
        body_parts = _merged_words(body_parts, body_part)
    Study.objects.filter(pk=study.pk).update(
        num_series=study.series.count(),
        num_instances=totals["images"] or 0,
        total_bytes=totals["size"] or 0,
        modalities=modalities,
        body_parts=body_parts,
    )
