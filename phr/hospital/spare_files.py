"""Temp files for received images, created ahead of need by a thread of their own.

pynetdicom writes each received dataset to a new NamedTemporaryFile (dimse.py sets
STORE_RECV_CHUNKED_DATASET), created when the image's first data fragment arrives. Creating a
file updates the file system's journal, and while the disk is writing back earlier images that
update waits: measured on this project's machines, 0.02 ms per empty file in a quiet minute and
0.3-1.1 ms in a busy one, on the same ext4. A sender waits for our answer before it sends the
next image, so that wait was paid once per image, in series with everything else.

Here a thread keeps a couple of files created in advance, while the listener is busy storing
the previous image, and pynetdicom takes one instead of creating its own. If none is ready it
creates one itself, as before: never slower than without the pool.

The spares are pynetdicom's own kind of file (`tmpXXXXXXXX.dcm` in the temp folder), so one
left behind by a killed process is what check_vault already sweeps (phr/vault/tempfiles.py).
For the same reason a spare is never handed out once it is older than MAX_AGE_SECONDS: on an
idle listener, the daily `check_vault --fix` would otherwise find it past its grace period
and delete it, and the next image received would fail.
"""

import contextlib
import logging
import os
import queue
import tempfile
import threading
import time

from pynetdicom import dimse_messages

log = logging.getLogger(__name__)

# What pynetdicom asks for; any other request is passed through untouched.
PYNETDICOM_REQUEST = {"delete": False, "mode": "wb", "suffix": ".dcm"}
# One for the image arriving, one for the next: the thread refills while an image is stored.
SPARES = 2
# How soon the thread tries again after it could not create one.
RETRY_SECONDS = 1.0
# A spare older than this is thrown away rather than used: far below check_vault's grace
# period for temp files (a day by default), which sweeps such files as leftovers.
MAX_AGE_SECONDS = 600


class SpareFiles:
    """Up to `count` of pynetdicom's temp files, made ahead; `install` puts them in its way."""

    def __init__(self, count: int = SPARES):
        self._create = tempfile.NamedTemporaryFile
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
        self._room = threading.Semaphore(count)  # spares that may be made before one is taken
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._keep_filled, name="spare-files", daemon=True)

    def install(self) -> None:
        """Start filling, and hand pynetdicom our files from now on."""
        self._thread.start()
        dimse_messages.NamedTemporaryFile = self.take

    def uninstall(self) -> None:
        """Give pynetdicom back its own files, stop the thread, delete the spares left."""
        if dimse_messages.NamedTemporaryFile == self.take:
            dimse_messages.NamedTemporaryFile = self._create
        self._stopping.set()
        self._thread.join(timeout=5)
        while True:
            try:
                _made_at, spare = self._ready.get_nowait()
            except queue.Empty:
                return
            _discard(spare)

    def take(self, *args, **kwargs):
        if not args and kwargs == PYNETDICOM_REQUEST:
            while True:
                try:
                    made_at, spare = self._ready.get_nowait()
                except queue.Empty:
                    break
                self._room.release()
                if self._still_good(made_at, spare):
                    return spare
                _discard(spare)
        return self._create(*args, **kwargs)

    @staticmethod
    def _still_good(made_at: float, spare) -> bool:
        # Made in the temp folder of the moment it was created: still the one asked for? And
        # young enough that no sweep of the temp folder has taken it.
        return (
            time.monotonic() - made_at < MAX_AGE_SECONDS
            and os.path.dirname(spare.name) == os.path.abspath(tempfile.gettempdir())
            and os.path.exists(spare.name)
        )

    def _keep_filled(self) -> None:
        failing = False
        while not self._stopping.is_set():
            if not self._room.acquire(timeout=0.5):
                continue
            try:
                spare = self._create(**PYNETDICOM_REQUEST)
            except OSError as error:
                # Disk full, or the folder gone: pynetdicom's own attempt will fail and say so
                # to the sender. Said here once, not once a second until it is fixed.
                if not failing:
                    log.warning("could not create spare files for received images: %s", error)
                failing = True
                self._room.release()
                self._stopping.wait(RETRY_SECONDS)
                continue
            failing = False
            self._ready.put((time.monotonic(), spare))


def _discard(spare) -> None:
    spare.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(spare.name)
