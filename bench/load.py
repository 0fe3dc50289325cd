#!/usr/bin/env python
"""Load benchmark: patients uploading their CDs while doctors scroll through shared studies.

gunicorn with --workers sync workers (default 4) on PostgreSQL + SeaweedFS (--backend prod,
the default) or the embedded default (SQLite + files), loopback only:

  1. P patients (--patients, default 20) are created with an authenticator (TOTP) and log in
     over HTTP: password, then the TOTP code. Each uploads a small CD (a synthetic CT of
     --slices slices, default 30), one file per request as the "Add studies" page does.
  2. Each of D doctors (--doctors, default 100) gets a share of one patient's study, made with
     the sharing service in the benchmark's database.
  3. For --duration seconds (default 60), a pool of --threads client threads (default 16)
     interleaves everybody, one request at a time per person: doctors type their code at
     /access, fetch the study's image list and scroll through its images (on S3, following
     the presigned redirect to the object store), over and over; patients upload a second CD,
     then pick the same folder again ("already in your vault") until the time is up.

Prints requests/s and p50/p95/p99 latency per endpoint, the errors (target 0) and a final
`check_vault --grace-seconds 0` (target: clean). Each simulated person has a loopback address
of their own (127.x.y.z), as real people would, so per-address limits apply per person.
The client threads share the machine with the server: read figures in that light.

    .venv/bin/python bench/load.py [--backend prod|embedded] [--workers 4] [--patients 20]
        [--doctors 100] [--duration 60] [--threads 16] [--slices 30]
"""

import argparse
import http.client
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PYTHON,
    ROOT,
    Browser,
    NoDelayConnection,
    backend,
    gunicorn,
    synthesize_ct,
    workspace,
)

PASSWORD = "load-benchmark-password-1"  # noqa: S105 (a throwaway database)


# --- measurements ----------------------------------------------------------------------------


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.bytes: dict[str, int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.examples: dict[str, list[str]] = defaultdict(list)

    def ok(self, endpoint: str, seconds: float, size: int = 0) -> None:
        with self.lock:
            self.latencies[endpoint].append(seconds)
            self.bytes[endpoint] += size

    def error(self, endpoint: str, what: str) -> None:
        with self.lock:
            self.errors[endpoint] += 1
            if len(self.examples[endpoint]) < 3:
                self.examples[endpoint].append(what[:200])

    def report(self, title: str, elapsed: float) -> None:
        print(f"\n{title} ({elapsed:.1f} s)")
        header = f"  {'endpoint':<24}{'requests':>9}{'req/s':>9}{'MB/s':>8}"
        print(header + f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
        total = errors = 0
        for endpoint in sorted(set(self.latencies) | set(self.errors)):
            found = sorted(self.latencies.get(endpoint, []))
            total += len(found)
            errors += self.errors.get(endpoint, 0)
            ms = [value * 1000 for value in found] or [0.0]
            print(
                f"  {endpoint:<24}{len(found):>9}{len(found) / elapsed:>9.1f}"
                f"{self.bytes[endpoint] / 1e6 / elapsed:>8.1f}"
                f"{percentile(ms, 50):>9.0f}{percentile(ms, 95):>9.0f}"
                f"{percentile(ms, 99):>9.0f}{ms[-1]:>9.0f}{self.errors.get(endpoint, 0):>8}"
            )
        print(f"  {'all':<24}{total:>9}{total / elapsed:>9.1f}{'':>44}{errors:>8}")
        for endpoint, examples in self.examples.items():
            for example in examples:
                print(f"  error on {endpoint}: {example}")

    def figures(self, elapsed: float) -> dict:
        """For bench/revisions.py: requests a second and p50/p95 in ms, per endpoint and all."""
        found = {}
        for endpoint, values in self.latencies.items():
            ms = sorted(value * 1000 for value in values)
            found[f"{endpoint} req/s"] = len(ms) / elapsed
            found[f"{endpoint} p50 ms"] = percentile(ms, 50)
            found[f"{endpoint} p95 ms"] = percentile(ms, 95)
        found["all req/s"] = sum(len(v) for v in self.latencies.values()) / elapsed
        return found


def percentile(sorted_values: list[float], pct: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(pct) - 1]


# --- one simulated person ----------------------------------------------------------------------


def address(group: int, index: int) -> str:
    """A loopback address per person: Linux routes all of 127.0.0.0/8 to lo."""
    return f"127.{group}.{index // 250}.{index % 250 + 1}"


class Person(Browser):
    """One browser with its own address; `timed` records each request under an endpoint."""

    def __init__(self, port: int, ip: str, stats: Stats):
        super().__init__(port)
        self.ip, self.stats = ip, stats
        self.conn = NoDelayConnection("127.0.0.1", port, timeout=60, source_address=(ip, 0))
        self.object_store: dict[str, http.client.HTTPConnection] = {}

    def timed(self, endpoint, method, path, body=None, headers=None, expect=(200,)):
        started = time.perf_counter()
        try:
            status, response_headers, data = self.request(method, path, body, headers)
        except (OSError, http.client.HTTPException) as error:
            self.conn.close()
            self.stats.error(endpoint, f"{method} {path}: {error!r}")
            return None
        elapsed = time.perf_counter() - started
        if status not in expect:
            self.stats.error(endpoint, f"{method} {path}: HTTP {status} {data[:120]!r}")
            return None
        self.stats.ok(endpoint, elapsed, len(data) + len(body or b""))
        return status, response_headers, data

    def fetch_presigned(self, url: str) -> bool:
        """GET an object store URL the site redirected to (S3), keeping one connection."""
        parts = urlsplit(url)
        conn = self.object_store.get(parts.netloc)
        if conn is None:
            conn = NoDelayConnection(
                parts.hostname, parts.port, timeout=60, source_address=(self.ip, 0)
            )
            self.object_store[parts.netloc] = conn
        started = time.perf_counter()
        try:
            conn.request("GET", f"{parts.path}?{parts.query}")
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            self.stats.error("image bytes (S3)", repr(error))
            return False
        if response.status != 200:
            self.stats.error("image bytes (S3)", f"HTTP {response.status} {data[:120]!r}")
            return False
        self.stats.ok("image bytes (S3)", time.perf_counter() - started, len(data))
        return True


class Patient(Person):
    def __init__(self, port, ip, stats, email, secret):
        super().__init__(port, ip, stats)
        self.email, self.secret = email, secret
        self.files: list[Path] = []
        self.position = 0

    def log_in(self) -> bool:
        import pyotp

        self.timed("GET login page", "GET", "/accounts/login/")
        body = urlencode(
            {"login": self.email, "password": PASSWORD, "csrfmiddlewaretoken": self.csrf()}
        )
        if not self.timed("POST password", "POST", "/accounts/login/", body, self._form(), (302,)):
            return False
        self.timed("GET TOTP page", "GET", "/accounts/2fa/authenticate/")
        if 30 - time.time() % 30 < 2:  # don't type a code that expires on the way
            time.sleep(30 - time.time() % 30 + 0.2)
        code = pyotp.TOTP(self.secret).now()
        body = urlencode({"code": code, "csrfmiddlewaretoken": self.csrf()})
        answer = self.timed(
            "POST TOTP code", "POST", "/accounts/2fa/authenticate/", body, self._form(), (302,)
        )
        return bool(answer) and answer[1]["Location"] == "/vault/"

    def _form(self) -> dict:
        return {
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": f"http://127.0.0.1:{self.port}/accounts/login/",
        }

    def upload_next(self) -> None:
        path = self.files[self.position % len(self.files)]
        again = self.position >= len(self.files)
        self.position += 1
        endpoint = "upload (again)" if again else "upload"
        answer = self.timed(
            endpoint,
            "POST",
            "/vault/add/file",
            path.read_bytes(),
            {
                "Content-Type": "application/octet-stream",
                "X-CSRFToken": self.csrf(),
                "X-Upload-Filename": path.name,
                "Referer": f"http://127.0.0.1:{self.port}/vault/add/",
            },
        )
        if answer and b'"stored"' not in answer[2] and b'"duplicate"' not in answer[2]:
            self.stats.error(endpoint, answer[2][:200].decode(errors="replace"))

    def step(self) -> None:
        self.upload_next()


class Doctor(Person):
    def __init__(self, port, ip, stats, code, study_id):
        super().__init__(port, ip, stats)
        self.code, self.study_id = code, study_id
        self.opened = False
        self.images: list[str] = []
        self.position = 0

    def step(self) -> None:
        if not self.opened:
            self.opened = self._open()
        elif not self.images or self.position >= len(self.images):
            self._list_images()
        else:
            self._fetch_image(self.images[self.position])
            self.position += 1

    def _open(self) -> bool:
        if not self.timed("GET /access", "GET", "/access"):
            return False
        body = urlencode({"code": self.code, "pin": "", "csrfmiddlewaretoken": self.csrf()})
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": f"http://127.0.0.1:{self.port}/access",
        }
        answer = self.timed("POST /access (code)", "POST", "/access", body, headers, (302,))
        return bool(answer) and answer[1]["Location"] == "/shared/"

    def _list_images(self) -> None:
        import json

        path = f"/viewer/study/{self.study_id}/images.json"
        answer = self.timed("GET images.json", "GET", path)
        if answer:
            listing = json.loads(answer[2])
            self.images = [image["url"] for s in listing["series"] for image in s["images"]]
            self.position = 0

    def _fetch_image(self, url: str) -> None:
        answer = self.timed("GET image", "GET", url, expect=(200, 302))
        if answer and answer[0] == 302:
            self.fetch_presigned(answer[1]["Location"])


# --- the benchmark -----------------------------------------------------------------------------


def setup_django(env: dict) -> None:
    """This process talks to the benchmark's database directly, to make people and shares."""
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "phr.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def make_patients(count: int) -> list[tuple[str, str]]:
    from allauth.account.models import EmailAddress
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
    from django.contrib.auth.hashers import make_password

    from accounts.models import User

    hashed = make_password(PASSWORD)  # once: the full-strength hash takes a while
    people = []
    for index in range(count):
        user = User.objects.create(email=f"patient{index}@load.test", password=hashed)
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        secret = generate_totp_secret()
        TOTP.activate(user, secret)
        people.append((user.email, secret))
    return people


def make_shares(doctors: int, emails: list[str]) -> list[tuple[str, str]]:
    """(code, study id) per doctor, round robin over the patients' first studies."""
    from django.utils import timezone

    from accounts.models import User
    from phr.sharing import services

    studies = {}
    for email in emails:
        user = User.objects.get(email=email)
        studies[email] = user.studies.order_by("created_at").first()
    shares = []
    for index in range(doctors):
        email = emails[index % len(emails)]
        study = studies[email]
        _, secrets = services.create_share(
            study.owner,
            [study],
            label=f"Dr. Load {index}",
            expires_at=timezone.now() + timedelta(days=7),
        )
        shares.append((secrets.code, str(study.id)))
    return shares


def run_for(people, seconds: float, threads: int) -> float:
    """Interleave everybody for `seconds`: a thread takes the next person, makes one request
    for them and puts them back, so each person has one request out at most."""
    waiting: queue.Queue = queue.Queue()
    for person in people:
        waiting.put(person)
    deadline = time.monotonic() + seconds

    def worker():
        while time.monotonic() < deadline:
            try:
                person = waiting.get(timeout=0.5)
            except queue.Empty:
                continue
            step(person, person.step)
            waiting.put(person)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(threads):
            pool.submit(worker)
    return time.perf_counter() - started


def step(person: Person, action) -> None:
    # An unexpected answer must count as an error, not end a client thread unnoticed.
    try:
        action()
    except Exception as error:
        person.stats.error(f"{type(person).__name__.lower()} (client side)", repr(error))


def upload_all(patients, threads: int) -> float:
    """Every patient uploads their whole CD; up to `threads` requests at once."""
    tasks = queue.Queue()
    for patient in patients:
        tasks.put(patient)

    def worker():
        while True:
            try:
                patient = tasks.get_nowait()
            except queue.Empty:
                return
            step(patient, patient.upload_next)
            if patient.position < len(patient.files):
                tasks.put(patient)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(threads):
            pool.submit(worker)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["prod", "embedded"], default="prod")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--doctors", type=int, default=100)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--size", type=int, default=256, help="rows and columns per slice")
    args = parser.parse_args()
    if not (1 <= args.patients <= 60_000 and 0 <= args.doctors <= 60_000):
        parser.error("between 1 and 60,000 patients, and at most 60,000 doctors")
    if not 0 < args.duration <= 3600:
        parser.error("--duration is at most an hour")

    folder = Path(tempfile.mkdtemp(prefix="phr-bench-load-", dir=workspace()))
    # Two CDs that every patient uploads into their own vault: each vault stores and indexes
    # its own copy, so this is the same work as different CDs, at a fraction of the set-up.
    first_cd = synthesize_ct(folder / "cd1", slices=args.slices, size=args.size)
    second_cd = synthesize_ct(folder / "cd2", slices=args.slices, size=args.size)
    cd_mb = sum(path.stat().st_size for path in first_cd) / 1e6
    print(
        f"load: {args.backend}, {args.workers} workers, {args.patients} patients, "
        f"{args.doctors} doctors, {args.threads} client threads, {args.duration:.0f} s; "
        f"a CD is {args.slices} slices of {args.size}x{args.size} ({cd_mb:.1f} MB)"
    )

    (folder / "upload-temp").mkdir()
    try:
        with backend(args.backend) as base:
            env = {
                **base,
                # The patients' "your share was opened" emails stay in the workers' memory.
                "PHR_EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
                # check_vault also looks at upload temp files: this run's, not all of /tmp.
                "PHR_UPLOAD_TEMP_DIR": str(folder / "upload-temp"),
            }
            with gunicorn(env, workers=args.workers) as (port, _):
                measure(args, env, port, first_cd, second_cd)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(args, env: dict, port: int, first_cd: list[Path], second_cd: list[Path]) -> None:
    setup_django(env)
    accounts = make_patients(args.patients)

    stats = Stats()
    patients = [
        Patient(port, address(1, index), stats, email, secret)
        for index, (email, secret) in enumerate(accounts)
    ]
    started = time.perf_counter()
    with ThreadPoolExecutor(min(args.threads, 4)) as pool:
        logged_in = list(pool.map(Patient.log_in, patients))
    if not all(logged_in):
        stats.report("log-in (failed)", time.perf_counter() - started)
        sys.exit("some patients could not log in; see the errors above")
    for patient in patients:
        patient.files = first_cd
    upload_seconds = upload_all(patients, args.threads)
    stats.report(
        f"set-up: {args.patients} patients log in (password + TOTP), then upload a CD each",
        time.perf_counter() - started,
    )
    print(f"  uploads alone: {args.patients * len(first_cd) / upload_seconds:.0f} files/s")

    stats = Stats()
    shares = make_shares(args.doctors, [email for email, _ in accounts])
    doctors = [
        Doctor(port, address(2, index), stats, code, study_id)
        for index, (code, study_id) in enumerate(shares)
    ]
    for patient in patients:
        patient.stats, patient.files, patient.position = stats, second_cd, 0
    elapsed = run_for([*patients, *doctors], args.duration, args.threads)
    stats.report(
        f"mixed load: {args.patients} patients uploading, {args.doctors} doctors scrolling",
        elapsed,
    )
    summarise(args, stats, len(first_cd))
    print("RESULT " + json.dumps(stats.figures(elapsed)))
    check = subprocess.run(
        [PYTHON, "manage.py", "check_vault", "--grace-seconds", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    verdict = "clean" if check.returncode == 0 else f"exit {check.returncode}"
    print(f"\ncheck_vault --grace-seconds 0: {verdict}")
    print("  " + "\n  ".join(check.stdout.strip().splitlines()))


def summarise(args, stats: Stats, slices: int) -> None:
    from phr.sharing.models import AccessEvent, Event
    from phr.vault.models import Instance

    errors = sum(stats.errors.values())
    opened = AccessEvent.objects.filter(kind=Event.OPENED).count()
    instances = Instance.objects.count()
    expected = args.patients * slices * 2
    print(
        f"\nerrors: {errors} (target 0); shares opened: {opened} of {args.doctors}; "
        f"instances indexed: {instances} (all patients' two CDs: {expected} if every "
        f"second CD finished within the time)"
    )


if __name__ == "__main__":
    main()
