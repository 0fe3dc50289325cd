"""A real gunicorn serving the test's own database and storage, for tests that kill it.

The test process and the server share rows and blobs, so tests using this commit for real
(`django_db(transaction=True)`), and the server gets the test database's name, the test's
media folder or bucket, and the test's keys through the environment, as production would.
"""

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import connection

from bench.common import free_port, worker_pids

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        # The same options as the embedded default (WAL, IMMEDIATE, a 30 s busy timeout),
        # or parallel uploads in two processes would meet "database is locked".
        return f"sqlite:///{db['NAME']}?{urlencode(db.get('OPTIONS', {}))}"
    assert connection.vendor == "postgresql"
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgresql://{credentials}@{host}/{quote(db['NAME'], safe='')}"


def site_env(var_dir: Path) -> dict[str, str]:
    """The environment that points a server or a manage.py command at what this test sees."""
    storage = settings.STORAGES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "PHR_FIELD_ENCRYPTION_KEY": settings.FIELD_ENCRYPTION_KEY,
        "PHR_VAR_DIR": str(var_dir),
        "PHR_UPLOAD_TEMP_DIR": str(settings.FILE_UPLOAD_TEMP_DIR),
        "PHR_LOG_LEVEL": "WARNING",
    }
    if storage["BACKEND"].endswith("FileSystemStorage"):
        env |= {"PHR_STORAGE": "filesystem", "PHR_MEDIA_ROOT": str(storage["OPTIONS"]["location"])}
    else:
        options = storage["OPTIONS"]
        env |= {
            "PHR_STORAGE": "s3",
            "PHR_S3_ENDPOINT_URL": options["endpoint_url"],
            "PHR_S3_BUCKET": options["bucket_name"],
            "PHR_S3_ACCESS_KEY": options["access_key"],
            "PHR_S3_SECRET_KEY": options["secret_key"],
        }
    return env


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class Gunicorn:
    def __init__(self, env: dict, log: Path, workers: int = 2):
        self.env, self.log, self.workers = env, log, workers
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "Gunicorn":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "phr.wsgi",
                    f"--workers={self.workers}",
                    f"--bind=127.0.0.1:{self.port}",
                    "--timeout=60",
                    "--log-level=warning",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed as one
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-3000:]}")
            if self._healthy():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn never became healthy: {self.log.read_text()[-3000:]}")

    def _healthy(self) -> bool:
        # /healthz queries the database and writes, reads and deletes a blob in storage.
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def kill(self) -> list[int]:
        """SIGKILL the master and every worker at once, as a crashed machine would."""
        workers = worker_pids(self.process.pid)
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "a gunicorn worker outlived SIGKILL"
            time.sleep(0.05)
        return workers

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has already stopped running
