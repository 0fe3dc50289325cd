"""Step 6 of ingest: file one DICOM header into the Study > Series > Instance index.

Opens its own transaction. Counters are bumped in the database (F() expressions, or the SQL
below) so that parallel uploads into the same study never lose a count.
"""

import math
import threading
import uuid

from django.db import connection, transaction
from django.db.models import Count, F, Sum

from phr.vault.dicomfile import DicomHeader
from phr.vault.models import Instance, Series, Study


def index_instance(
    owner, header: DicomHeader, sha256, size, key, source, is_conflict, delivery=None
) -> tuple[Instance, bool]:
    """File one instance; returns it (with .series.study set) and whether its study is new."""
    inbox = delivery is not None
    remembered = _recent_series.get(owner.pk, header, inbox)
    if remembered is not None:
        study, series = remembered
        try:
            with transaction.atomic():
                instance = _add_to_known_series(owner, study, series, header, inbox, size)
                _fill_instance(instance, header, sha256, size, key, is_conflict)
                return instance, False
        except _SeriesMoved:
            _recent_series.forget(owner.pk, header, inbox)

    with transaction.atomic():
        study, study_created, series, series_created = _find_or_create(
            owner, header, source, delivery
        )
        instance = Instance(series=series, owner=owner)
        _fill_instance(instance, header, sha256, size, key, is_conflict)
        Series.objects.filter(pk=series.pk).update(num_instances=F("num_instances") + 1)
        changes = {
            "num_instances": F("num_instances") + 1,
            "num_series": F("num_series") + int(series_created),
            "total_bytes": F("total_bytes") + size,
        }
        if series_created:
            # Words are merged from the row locked above, so parallel uploads of two series
            # can't overwrite each other's modality. A series has one modality and body part,
            # so only its first instance can bring a new word.
            changes["modalities"] = _merged_words(study.modalities, header.modality)
            changes["body_parts"] = _merged_words(study.body_parts, header.body_part_examined)
        Study.objects.filter(pk=study.pk).update(**changes)
    _recent_series.remember(owner.pk, header, inbox, study, series)
    return instance, study_created


class _SeriesMoved(Exception):
    """A remembered series was deleted, moved or accepted out of the Inbox meanwhile."""


class _RecentSeries:
    """The series each worker thread filed into last, so that the next images of a CD (which
    arrive one request at a time, hundreds per series) skip the study and series lookups.

    Only ids and the rows as first read are kept. Every use re-checks in the database that the
    study still belongs to the owner, on the same side of the Inbox, and that the series is
    still in it (see _add_to_known_series), so a stale entry costs one retry, never a wrong
    filing. Per thread, because the DICOM listener files one association per thread.
    """

    LIMIT = 64

    def __init__(self):
        self._local = threading.local()

    def _entries(self) -> dict:
        if not hasattr(self._local, "entries"):
            self._local.entries = {}
        return self._local.entries

    @staticmethod
    def _key(owner_id, header, inbox):
        return (owner_id, header.study_instance_uid, inbox, header.series_instance_uid)

    def get(self, owner_id, header, inbox):
        return self._entries().get(self._key(owner_id, header, inbox))

    def remember(self, owner_id, header, inbox, study, series) -> None:
        entries = self._entries()
        if len(entries) >= self.LIMIT:
            del entries[next(iter(entries))]  # the oldest
        entries[self._key(owner_id, header, inbox)] = (study, series)

    def forget(self, owner_id, header, inbox) -> None:
        self._entries().pop(self._key(owner_id, header, inbox), None)


_recent_series = _RecentSeries()


def _add_to_known_series(owner, study, series, header, inbox, size) -> Instance:
    """Count one more instance into a remembered series. The guarded updates double as the
    check that the rows are still what we remember, and lock them until commit."""
    if not _count_one_more(study.pk, series.pk, owner.pk, inbox, size):
        raise _SeriesMoved  # rolls back whatever was updated
    study.owner = owner
    series.study = study
    return Instance(series=series, owner=owner)


# Raw SQL for the two statements every image runs, measured: the ORM spends about 0.5 ms
# compiling each one, ten times what the database needs to run it.
_COUNT_INTO_STUDY = (
    "UPDATE vault_study SET num_instances = num_instances + 1, total_bytes = total_bytes + %s "
    "WHERE id = %s AND owner_id = %s AND inbox = %s"
)
_COUNT_INTO_SERIES = (
    "UPDATE vault_series SET num_instances = num_instances + 1 WHERE id = %s AND study_id = %s"
)


def _count_one_more(study_id, series_id, owner_id, inbox: bool, size: int) -> bool:
    study_id, series_id = db_uuid(study_id), db_uuid(series_id)
    with connection.cursor() as cursor:
        cursor.execute(_COUNT_INTO_STUDY, [size, study_id, owner_id, inbox])
        if cursor.rowcount != 1:
            return False
        cursor.execute(_COUNT_INTO_SERIES, [series_id, study_id])
        return cursor.rowcount == 1


def stored_hashes(owner_id, sop_instance_uid: str) -> dict[str, object]:
    """{sha256: instance id} of the owner's instances with this SOP Instance UID (the dedup
    check before anything is stored; raw for the same reason as above)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sha256, id FROM vault_instance WHERE owner_id = %s AND sop_instance_uid = %s",
            [owner_id, sop_instance_uid],
        )
        return dict(cursor.fetchall())


def db_uuid(value):
    """A UUID as this database stores it (32 hex digits on SQLite, native on PostgreSQL)."""
    return Study._meta.pk.get_db_prep_value(value, connection)


def _find_or_create(owner, header, source, delivery):
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
    series.study = study
    return study, study_created, series, series_created


def _fill_instance(instance, header, sha256, size, key, is_conflict) -> None:
    """Fill in and insert the Instance row."""
    instance.sop_instance_uid = header.sop_instance_uid
    instance.sop_class_uid = header.sop_class_uid or ""
    instance.transfer_syntax_uid = header.transfer_syntax_uid or ""
    instance.instance_number = header.instance_number
    instance.number_of_frames = max(1, header.number_of_frames or 1)
    instance.rows = header.rows
    instance.columns = header.columns
    instance.slice_position = slice_position(header)
    instance.display = _display_fields(header)
    instance.size = size
    instance.sha256 = sha256
    instance.storage_key = key
    instance.is_conflict = is_conflict
    _insert(instance)


_INSTANCE_FIELDS = Instance._meta.concrete_fields
_INSERT_INSTANCE = "INSERT INTO vault_instance ({}) VALUES ({})".format(  # noqa: S608 (model's own columns)
    ", ".join(field.column for field in _INSTANCE_FIELDS),
    ", ".join(["%s"] * len(_INSTANCE_FIELDS)),
)


def _insert(instance: Instance) -> None:
    """What save(force_insert=True) does, without the ORM's query building (raw, as above):
    each field still prepares its own value (defaults, auto_now_add, JSON) for this database."""
    values = [
        field.get_db_prep_save(field.pre_save(instance, add=True), connection)
        for field in _INSTANCE_FIELDS
    ]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_INSTANCE, values)
    instance._state.adding = False
    instance._state.db = connection.alias


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


def keys_in_study(study_id, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, uuid.UUID]]:
    """{instance id: (storage key, series id)} of those of `ids` that are in the study.

    In SQL: building this query through the ORM (50 UUID lookups, a join) cost more than half
    of a batch request's time in the view, profiled, and a batch is what Django does per 100
    images served behind nginx or S3."""
    marks = ", ".join(["%s"] * len(ids))  # placeholders only: the IDs go as parameters
    query = (
        "SELECT i.id, i.storage_key, i.series_id FROM vault_instance i JOIN vault_series s"  # noqa: S608
        f" ON s.id = i.series_id WHERE s.study_id = %s AND i.id IN ({marks})"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [db_uuid(study_id), *(db_uuid(pk) for pk in ids)])
        rows = cursor.fetchall()
    # As the database gives them: 32 hex digits on SQLite, UUIDs on PostgreSQL.
    as_uuid = Instance._meta.pk.to_python
    return {as_uuid(pk): (key, as_uuid(series_id)) for pk, key, series_id in rows}
