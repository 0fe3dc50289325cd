"""The running counts behind the access log's IMAGES, TAGS and PREVIEWS lines (Tally rows),
kept up to date without a write per image.

The viewer fetches a series in batches of 50 to 100 files: each batch is written at once. But
one image at a time (the viewport's own request, a scroll ahead of the background loading, any
other client) would cost a write each, and on the embedded default (SQLite: one writer at a
time) those writes queue behind every upload: measured with bench/load.py, a doctor scrolling
file by file lost a third of its speed and uploads far more.

So:
- the first image of a line is written before its bytes go out: the line is in the patient's
  log before anything is served (each web process looks a line up once, with a plain read);
- a batch is written at once, with whatever single images had gathered;
- later single images are gathered in the process and written together, once FLUSH_IMAGES have
  gathered or PHR_AUDIT_FLUSH_SECONDS after the first of them (a timer), whichever comes first,
  and when the process exits. A process killed outright loses at most that much of a count,
  never a line. PHR_AUDIT_FLUSH_SECONDS=0 writes every count at once (the tests do).
"""

import atexit
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction

from phr.sharing.models import Tally

log = logging.getLogger(__name__)

FLUSH_IMAGES = 50
ID_SIZE = 16  # bytes of a UUID in Tally.seen


@dataclass
class _Pending:
    tally_id: int
    started: float  # time.monotonic() of its first gathered image
    ids: set = field(default_factory=set)  # 16-byte IDs not written yet
    last_at: datetime | None = None


_lock = threading.Lock()
_known: dict[tuple, int] = {}  # this process's lines: key -> Tally id
_pending: dict[tuple, _Pending] = {}
_timer: threading.Timer | None = None


def count(key: dict, ids, now: datetime, start_line) -> None:
    """Count `ids` on the line of `key` (share, visitor, kind, series_id, hour). `start_line()`
    writes the log line (an AccessEvent) if this is the first image of the hour."""
    marker = (key["share"].pk, key["visitor"], str(key["kind"]), key["series_id"], key["hour"])
    raw = {uuid.UUID(str(pk)).bytes for pk in ids}
    with _lock:
        tally_id = _known.get(marker)
    if tally_id is None:
        tally_id, started = _find_or_start(key, raw, now, start_line)
        with _lock:
            _forget_past_hours(key["hour"])
            _known[marker] = tally_id
        if started:
            return
    delay = settings.PHR_AUDIT_FLUSH_SECONDS
    with _lock:
        pending = _pending.setdefault(marker, _Pending(tally_id, time.monotonic()))
        pending.ids |= raw
        pending.last_at = max(now, pending.last_at or now)
        due = (
            delay <= 0
            or len(raw) > 1  # a batch: written at once, as it is one write anyway
            or len(pending.ids) >= FLUSH_IMAGES
            or time.monotonic() - pending.started >= delay
        )
        if due:
            del _pending[marker]
        else:
            _start_timer(delay)
    if due:
        _add(pending.tally_id, pending.ids, pending.last_at)


def flush() -> None:
    """Write every count this process has gathered."""
    with _lock:
        taken = list(_pending.values())
        _pending.clear()
    if not taken:
        return
    with transaction.atomic():  # one write for all: on SQLite each write waits its turn
        for pending in taken:
            _add(pending.tally_id, pending.ids, pending.last_at)


def _find_or_start(key: dict, raw: set, now: datetime, start_line) -> tuple[int, bool]:
    """(the line's Tally id, whether it was started now, with `raw` counted). Looked for with
    a plain read first: on SQLite a write waits for the one writer (an upload, say), and every
    web process meets every line once."""
    tally_id = Tally.objects.filter(**key).values_list("pk", flat=True).first()
    if tally_id is not None:
        return tally_id, False
    seen = _merged(b"", raw)
    try:
        with transaction.atomic():
            event = start_line()
            fields = {"seen": seen, "images": len(seen) // ID_SIZE, "last_at": now}
            return Tally.objects.create(event=event, **fields, **key).pk, True
    except IntegrityError:  # another process started the same line just now
        return Tally.objects.filter(**key).values_list("pk", flat=True).get(), False


def _add(tally_id: int, raw: set, last_at: datetime) -> None:
    with transaction.atomic():
        tally = Tally.objects.select_for_update().filter(pk=tally_id).first()
        if tally is None:
            return  # the share went with its owner's account meanwhile
        seen = _merged(bytes(tally.seen), raw)
        if seen == bytes(tally.seen) and _minute(last_at) <= _minute(tally.last_at):
            return  # nothing new to count, and the page shows the end to the minute
        Tally.objects.filter(pk=tally_id).update(
            seen=seen, images=len(seen) // ID_SIZE, last_at=max(last_at, tally.last_at)
        )


def _merged(seen: bytes, raw: set) -> bytes:
    known = {seen[at : at + ID_SIZE] for at in range(0, len(seen), ID_SIZE)}
    return b"".join(sorted(known | raw))


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _forget_past_hours(hour: datetime) -> None:
    for marker in [marker for marker in _known if marker[4] < hour]:
        del _known[marker]


def _start_timer(delay: float) -> None:
    global _timer  # one timer per process, guarded by _lock
    if _timer is None or not _timer.is_alive():
        _timer = threading.Timer(delay, _flush_from_timer)
        _timer.daemon = True
        _timer.start()


def _flush_from_timer() -> None:
    try:
        flush()
    finally:
        # The timer's thread has a database connection of its own: don't leave it open.
        close_old_connections()
        connection.close()


def _flush_at_exit() -> None:
    try:
        flush()
    except Exception:  # the database may be gone already; say so rather than fail the exit
        log.exception("could not write the access log's last counts at exit")


atexit.register(_flush_at_exit)
