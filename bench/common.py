"""Shared pieces for the benchmarks: a synthetic CT study, a real gunicorn server on loopback
(embedded default or PostgreSQL + SeaweedFS), and a patient logged in over HTTP with TOTP.

Benchmarks print figures; they assert nothing about speed.
"""

import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote, urlencode

import numpy as np
import pyotp
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable


def file_creation_ms(folder: Path, count: int = 100) -> float:
    """What creating one empty file costs in `folder`, in milliseconds."""
    probe = Path(tempfile.mkdtemp(prefix="phr-bench-probe-", dir=folder))
    try:
        started = time.perf_counter()
        for number in range(count):
            (probe / str(number)).touch()
        return (time.perf_counter() - started) * 1000 / count
    finally:
        shutil.rmtree(probe, ignore_errors=True)


_workspace: Path | None = None


def workspace() -> Path:
    """The folder the benchmarks work in (vaults, databases, synthetic studies): the project's
    var/ or the system's temp folder, whichever creates files faster, unless PHR_BENCH_DIR
    names one.

    A server stores one file per image, so a toll on creating files is charged to every image.
    On this machine the toll swings by folder and by the minute, on the same ext4: 0.07 to
    1.1 ms per empty file, in /tmp one session and in the project's folder the next, against
    0.02 ms in /root. A vault's own disk doesn't charge that, and the benchmark would mistake
    it for the server's work. The choice and both costs are printed, so a slow run shows it."""
    global _workspace
    if _workspace is None:
        chosen = os.environ.get("PHR_BENCH_DIR")
        if chosen:
            _workspace = Path(chosen)
            _workspace.mkdir(parents=True, exist_ok=True)
        else:
            candidates = [ROOT / "var", Path(tempfile.gettempdir())]
            candidates[0].mkdir(exist_ok=True)
            costs = {folder: file_creation_ms(folder) for folder in candidates}
            _workspace = min(costs, key=costs.get)
            measured = ", ".join(f"{folder}: {ms:.2f} ms" for folder, ms in costs.items())
            print(f"working in {_workspace} (one file created in {measured})", flush=True)
    return _workspace


def synthesize_ct(folder: Path, slices: int = 300, size: int = 512) -> list[Path]:
    """A 16-bit CT series: a body-shaped ellipse with a little noise, one file per slice."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    yy, xx = np.mgrid[0:size, 0:size]
    body = ((xx - size / 2) / (size * 0.42)) ** 2 + ((yy - size / 2) / (size * 0.32)) ** 2 <= 1
    rng = np.random.default_rng(7)
    paths = []
    for index in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "BENCH^PATIENT", "BENCH1", "19700101"
        ds.StudyDate, ds.StudyTime, ds.StudyDescription = "20240312", "101500", "CT Chest"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, index + 1
        ds.ImagePositionPatient = [-250.0, -250.0, -index * 1.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.9765625, 0.9765625], 1.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        pixels = np.where(body, 1064, 24) + rng.integers(0, 40, (size, size))
        ds.PixelData = pixels.astype(np.uint16).tobytes()
        path = folder / f"IM{index + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


@contextmanager
def backend(kind: str):
    """Environment for the embedded default ("embedded") or PostgreSQL + SeaweedFS ("prod")."""
    workdir = Path(tempfile.mkdtemp(prefix="phr-bench-", dir=workspace()))
    # Production settings: DEBUG off, hashed static files, a real secret key.
    env = {
        **os.environ,
        "PHR_VAR_DIR": str(workdir / "var"),
        "PHR_STATIC_ROOT": str(workdir / "static"),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PHR_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    }
    try:
        if kind == "embedded":
            yield env
        else:
            with _postgres_and_s3() as services:
                yield {**env, **services}
    finally:
        # A run leaves its database and media here: hundreds of MB each, gone with it.
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def _postgres_and_s3():
    import psycopg

    from tests.support.seaweed import SeaweedS3

    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    db = f"phr_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    s3 = SeaweedS3(bucket="bench").start()
    try:
        yield {**s3.env(), "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{db}"}
    finally:
        s3.cleanup()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@contextmanager
def gunicorn(env: dict, workers: int = 4, bind_host: str = "127.0.0.1"):
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")
    port = free_port()
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "gunicorn",
            "phr.wsgi",
            f"--workers={workers}",
            f"--bind={bind_host}:{port}",
            "--log-level=warning",
            "--timeout=120",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection(bind_host, port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        yield port, process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def worker_pids(master_pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class NoDelayConnection(http.client.HTTPConnection):
    """Like browsers, send without waiting on Nagle's algorithm (on every reconnect too:
    gunicorn's sync workers close the connection after each response)."""

    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Browser:
    """A minimal HTTP client that keeps cookies, like one browser tab."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}
        self.conn = NoDelayConnection("127.0.0.1", port, timeout=120)

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie(header)
            for key, morsel in cookie.items():
                self.cookies[key] = morsel.value
        return response.status, response.headers, data

    def csrf(self) -> str:
        return self.cookies.get("csrftoken", "")

    def post_form(self, path, fields):
        self.request("GET", path)
        body = urlencode({**fields, "csrfmiddlewaretoken": self.csrf()})
        return self.request(
            "POST",
            path,
            body,
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": f"http://127.0.0.1:{self.port}{path}",
            },
        )

    def upload(self, path: Path) -> dict:
        status, _, data = self.request(
            "POST",
            "/vault/add/file",
            path.read_bytes(),
            {
                "Content-Type": "application/octet-stream",
                "X-CSRFToken": self.csrf(),
                "X-Upload-Filename": quote(path.name),
                "Referer": f"http://127.0.0.1:{self.port}/vault/add/",
            },
        )
        return {"status": status, **json.loads(data)}


def demo_login(port: int, env: dict) -> Browser:
    """Create the demo patient and log in through the real password + TOTP flow."""
    out = manage(env, "demo", "--no-qr")
    email = re.search(r"Email:\s+(\S+)", out).group(1)
    password = re.search(r"Password:\s+(\S+)", out).group(1)
    secret = re.search(r"TOTP key:\s+(\S+)", out).group(1)
    browser = Browser(port)
    browser.post_form("/accounts/login/", {"login": email, "password": password})
    left = 30 - time.time() % 30
    if left < 3:
        time.sleep(left + 0.5)
    status, headers, _ = browser.post_form(
        "/accounts/2fa/authenticate/", {"code": pyotp.TOTP(secret).now()}
    )
    assert status == 302 and headers["Location"] == "/vault/", "bench login failed"
    browser.email, browser.password, browser.secret = email, password, secret
    return browser


def clone_login(browser: Browser) -> Browser:
    other = Browser(browser.port)
    other.cookies = dict(browser.cookies)
    return other


@contextmanager
def profiled(pid: int, label: str, top: int = 40):
    """Sample gunicorn (master and workers) with py-spy while the block runs, then print where
    the workers spent their time: the functions on the most samples, inclusive and own."""
    out = Path(tempfile.mkdtemp(prefix="phr-bench-prof-")) / f"{label}.txt"
    spy = subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--rate",
            "250",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PATH": f"{Path(PYTHON).parent}:{os.environ.get('PATH', '')}"},
    )
    time.sleep(1)  # let it attach before the work starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
        print_profile(out, label, top)


def print_profile(path: Path, label: str, top: int) -> None:
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        # Samples of idle workers waiting in accept/select say nothing about the work.
        if not count.isdigit() or any("sleep" in f or "select (" in f for f in frames[-2:]):
            continue
        samples = int(count)
        total += samples
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples
    print(f"[{label}] profile: {total} busy samples")
    for title, table in (("inclusive", inclusive), ("own", own)):
        print(f"  top {top} by {title} time:")
        for frame, samples in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {100 * samples / max(total, 1):5.1f}%  {frame[:150]}")
