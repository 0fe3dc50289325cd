"""What a doctor's browser was given, written into the access log of every live share that
holds the study (phr.vault.access.record_look brings it here).

Images and DICOM details are counted per series: one line "viewed CT Axial 2.5mm, 120 images,
14:02 to 14:09" per series, per browser, per clock hour, whose count and end time grow as the
viewer fetches batch after batch (phr.sharing.models.Tally). A document is a line per opening,
by name; the study page, the viewer and the ZIP a line each.
"""

from datetime import timedelta

from django.utils import timezone

from phr.sharing import tallies
from phr.sharing.models import Event, Share
from phr.sharing.services import record, study_words
from phr.vault.access import Look, Seen
from phr.vault.models import Series, Study

COUNTED = frozenset({Look.IMAGES, Look.TAGS, Look.PREVIEWS})
# A study's page, the viewer on it and the viewer's list of its images, asked for within this
# many seconds by one browser, are one look.
SAME_LOOK_SECONDS = 60


def record_seen(shares, client, study: Study, seen: Seen, now=None) -> None:
    """Log `seen` for `client` (phr.sharing.services.Client) in each of `shares`."""
    if not shares:
        return
    now = now or timezone.now()
    _note_use(shares, now)
    kind = Event(seen.look.value)
    if seen.look in COUNTED:
        words = _SeriesWords(study, seen.images)
        for share in shares:
            for series_id, ids in seen.images.items():
                _count(share, client, kind, series_id, ids, words, now)
        return
    for share in shares:
        if seen.document is not None:
            name = seen.document.filename[:300]
            record(share, kind, client, at=now, detail=name, object_id=seen.document.pk)
        elif not _just_seen(share, client, kind, study, now):
            record(share, kind, client, at=now, detail=study_words(study), object_id=study.pk)


def _note_use(shares, now) -> None:
    """The shares' "last used" time, to the minute: the viewer's batches come many a minute,
    and a write each would cost every one of them."""
    stale = [
        share.pk
        for share in shares
        if share.last_used_at is None or now - share.last_used_at >= timedelta(minutes=1)
    ]
    if stale:
        Share.objects.filter(pk__in=stale).update(last_used_at=now)


def _just_seen(share, client, kind, study, now) -> bool:
    if kind != Event.VIEWED:
        return False
    since = now - timedelta(seconds=SAME_LOOK_SECONDS)
    recent = share.events.filter(
        kind=kind, visitor=client.visitor, object_id=study.pk, at__gte=since
    )
    return recent.exists()


def _count(share, client, kind, series_id, ids, words: "_SeriesWords", now) -> None:
    """Add `ids` to this browser's count for the series this hour (phr.sharing.tallies),
    starting the line if they are the hour's first."""
    key = {
        "share": share,
        "visitor": client.visitor,
        "kind": kind,
        "series_id": series_id,
        "hour": now.replace(minute=0, second=0, microsecond=0),
    }

    def start_line():
        return record(share, kind, client, at=now, detail=words[series_id], object_id=series_id)

    tallies.count(key, ids, now, start_line)


class _SeriesWords:
    """{series id: "CT Axial 2.5mm, in Chest CT (3 Mar 2025)"}, read in one query, and only if
    a new line needs them: a batch that adds to this hour's line needs no words."""

    def __init__(self, study: Study, images: dict):
        self.study, self.ids, self.words = study, list(images), None

    def __getitem__(self, series_id) -> str:
        if self.words is None:
            self.words = self._read()
        return self.words[series_id]

    def _read(self) -> dict:
        of_study = study_words(self.study)
        if self.study.pk in self.ids:  # PREVIEWS: counted under the study
            return {self.study.pk: of_study[:300]}
        rows = Series.objects.filter(pk__in=self.ids).values_list("pk", "description", "number")
        words = {}
        for pk, description, number in rows:
            name = description or f"Series {number or ''}".strip()
            words[pk] = f"{name}, in {of_study}"[:300]
        return {series_id: words.get(series_id, of_study) for series_id in self.ids}
