"""Fault injection for the reliability tests: real faults, fired at a precise moment.

The storages below are the real Django storages (file system, django-storages' S3) with one
addition: the test may wrap the real blob write in a context manager. The write itself is
never faked; the wrapper only makes something real happen around it (stop the S3 server,
cut the database connection, lower the process's file-size limit), so that the fault lands
between two known steps of the ingest instead of at a random moment.
"""

import contextlib
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

from django.core.files.storage import FileSystemStorage
from storages.backends.s3 import S3Storage

from phr.vault import blobs
from tests.support.seaweed import SeaweedS3

_around_save = None


@contextlib.contextmanager
def around_blob_write(hook):
    """Run every blob write of the block inside `hook(storage, name)`, a context manager: the
    storage's own save, and the single PUT that blobs.store uses for a small file on S3."""
    global _around_save
    _around_save = hook
    put_object = blobs._put_object

    def hooked_put_object(storage, key, fileobj, size):
        with hook(storage, key):
            return put_object(storage, key, fileobj, size)

    blobs._put_object = hooked_put_object
    try:
        yield
    finally:
        _around_save = None
        blobs._put_object = put_object


class _Hooked:
    def _save(self, name, content):
        hook = _around_save
        if hook is None:
            return super()._save(name, content)
        with hook(self, name):
            return super()._save(name, content)


class HookedFileSystemStorage(_Hooked, FileSystemStorage):
    pass


class HookedS3Storage(_Hooked, S3Storage):
    pass


def hooked(storage_settings: dict) -> dict:
    """The same storage configuration, with the write hook (keeps the backend's kind)."""
    backend = storage_settings["BACKEND"]
    if backend.endswith("S3Storage"):
        kind = HookedS3Storage
    elif backend.endswith("FileSystemStorage"):
        kind = HookedFileSystemStorage
    else:
        raise ValueError(f"no hooked variant of {backend}")
    return {**storage_settings, "BACKEND": f"{kind.__module__}.{kind.__qualname__}"}


# --- the file system -----------------------------------------------------------------------------


@contextlib.contextmanager
def file_size_limit(limit_bytes: int):
    """RLIMIT_FSIZE for this process: the kernel refuses (EFBIG) any write past `limit_bytes`,
    as it refuses a write to a full disk, after the first bytes have landed.

    Process-wide, so only ever held around one blob write: the SQLite test database and
    pytest's capture files are written by this same process. Python ignores SIGXFSZ, so the
    write fails with an OSError instead of killing the test run.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def writes_are_refused_in_read_only_folders(probe_dir: Path) -> bool:
    """False for root (CAP_DAC_OVERRIDE writes anyway), so that case can say why it skips."""
    probe_dir.mkdir(parents=True, exist_ok=True)
    probe_dir.chmod(0o500)
    try:
        (probe_dir / "probe").write_bytes(b"x")
    except PermissionError:
        return True
    finally:
        probe_dir.chmod(0o700)
    return False


# --- the S3 server -------------------------------------------------------------------------------


class RestartableSeaweed(SeaweedS3):
    """A SeaweedFS that can crash (SIGKILL) and come back with its data, on the same ports.

    `SeaweedS3.start()` always begins with an empty data folder; a restart here runs the very
    command line the first start used (read back from /proc), so objects written before the
    crash are still there, as after a real restart.
    """

    command: list[str] | None = None

    def start(self, timeout: float = 60) -> "RestartableSeaweed":
        super().start(timeout)
        raw = Path(f"/proc/{self.process.pid}/cmdline").read_bytes()
        self.command = [part.decode() for part in raw.split(b"\0") if part]
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def crash(self) -> None:
        """SIGKILL, as a machine or container dying: no graceful end to requests in flight."""
        if self.running:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def restart(self, timeout: float = 60) -> None:
        assert self.command and not self.running
        log = open(self.workdir / "weed-restart.log", "ab")  # noqa: SIM115 (kept open for weed)
        # Raft replays its saved state first and waits a whole election timeout (10 s by
        # default) before this lone master leads again; 1 s keeps the test short.
        self.process = subprocess.Popen(
            [*self.command, "-master.electionTimeout=1s"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_until_ready(timeout)

    def cleanup(self) -> None:
        super().cleanup()
        # weed also listens on /tmp/seaweedfs-<part>-…-<port>.sock, which a killed weed
        # leaves behind: remove the ones of this server's ports.
        options = (arg.lstrip("-").split("=", 1) for arg in self.command or [] if "=" in arg)
        ports = {value for name, value in options if "port" in name and value.isdigit()}
        for port in ports:
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)


def kill_postgres_backend(settings_dict: dict, pid: int, timeout: float = 10) -> None:
    """Terminate backend `pid` from a second connection, and wait until it is really gone."""
    import psycopg

    params = {
        "host": settings_dict.get("HOST") or None,
        "port": settings_dict.get("PORT") or None,
        "user": settings_dict.get("USER") or None,
        "password": settings_dict.get("PASSWORD") or None,
        "dbname": settings_dict["NAME"],
    }
    with psycopg.connect(autocommit=True, **{k: v for k, v in params.items() if v}) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
        deadline = time.monotonic() + timeout
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, f"backend {pid} outlived pg_terminate_backend"
            time.sleep(0.05)
