"""The server dies (SIGKILL, master and workers) while a patient's four parallel uploads are in
flight. After a restart, uploading the same CD again completes the study exactly once,
`check_vault` finds leftovers at most (never lost data), and ends clean after `--fix`.

A real gunicorn with two workers serves the test's database (SQLite in the embedded run,
PostgreSQL in the production-like run) and the test's storage (the file system, or a bucket
of its own on the run's SeaweedFS); the patient logs in over HTTP with password and TOTP.
"""

import os
import threading
import time
import uuid

import boto3
import pyotp
import pytest
from django.conf import global_settings
from django.core.files.storage import default_storage
from pydicom import dcmread

from bench.common import Browser, clone_login
from phr.vault.models import Instance, Series, Study
from tests.conftest import wait_for_fresh_totp_window
from tests.factories import PASSWORD, UserFactory, enrol_totp
from tests.reliability.live import Gunicorn, manage, site_env
from tests.reliability.support import assert_only_leftovers, leftover_count

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 4


@pytest.fixture
def own_bucket(settings):
    """On S3, a bucket of this test's own, so that the whole-vault check sees only its data."""
    storage = settings.STORAGES["default"]
    if not storage["BACKEND"].endswith("S3Storage"):
        return
    options = storage["OPTIONS"]
    bucket = f"reliability-killed-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id=options["access_key"],
        aws_secret_access_key=options["secret_key"],
        region_name=options.get("region_name") or "us-east-1",
    ).create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**storage, "OPTIONS": {**options, "bucket_name": bucket}},
    }


@pytest.fixture
def patient_with_real_password(settings):
    # The server checks the password with the site's own hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    user = UserFactory()
    user.totp_secret = enrol_totp(user)
    return user


@pytest.fixture
def site(own_bucket, tmp_path):
    server = Gunicorn(site_env(tmp_path / "site-var"), tmp_path / "gunicorn.log")
    yield server
    server.stop()


def log_in(port: int, user) -> Browser:
    browser = Browser(port)
    status, headers, _ = browser.post_form(
        "/accounts/login/", {"login": user.email, "password": PASSWORD}
    )
    assert status == 302 and headers["Location"] == "/accounts/2fa/authenticate/", status
    wait_for_fresh_totp_window()
    status, headers, _ = browser.post_form(
        "/accounts/2fa/authenticate/", {"code": pyotp.TOTP(user.totp_secret).now()}
    )
    assert status == 302 and headers["Location"] == "/vault/", status
    return browser


class Uploads:
    """Four clients, each uploading its share of the CD one file at a time."""

    def __init__(self, browsers, files):
        self.browsers, self.files = browsers, files
        self.lock = threading.Condition()
        self.in_flight, self.answers, self.cut = 0, [], []

    def run_in_background(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._client, args=(b, self.files[i :: len(self.browsers)]))
            for i, b in enumerate(self.browsers)
        ]
        for thread in threads:
            thread.start()
        return threads

    def _client(self, browser, files):
        for path in files:
            with self.lock:
                self.in_flight += 1
                self.lock.notify_all()
            try:
                answer = browser.upload(path)
            except Exception as error:  # the server died under this request
                with self.lock:
                    self.in_flight -= 1
                    self.cut.append((path.name, repr(error)))
                    self.lock.notify_all()
                return
            with self.lock:
                self.in_flight -= 1
                self.answers.append(answer)
                self.lock.notify_all()

    def wait_until_busy(self, answered: int, timeout: float = 60) -> None:
        """Until `answered` files are done and every client has a request out."""
        with self.lock:
            assert self.lock.wait_for(
                lambda: len(self.answers) >= answered and self.in_flight == len(self.browsers),
                timeout,
            ), (len(self.answers), self.in_flight)

    def wait_for_an_unanswered_blob(self, owner, timeout: float = 5) -> None:
        """Until storage holds a blob whose upload has not been answered yet: the request is
        between its blob write and its response, the narrowest window there is. Gives up
        (the server then dies at a random point) before the uploads run out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                answered = len(self.answers)
            if answered >= len(self.files) // 2 or blob_count(owner) > answered:
                return


def blob_count(owner) -> int:
    """One cheap look (a single LIST on S3), as this polls while the uploads run."""
    prefix = f"vault/{owner.pk}/"
    if hasattr(default_storage, "bucket"):
        return sum(1 for _ in default_storage.bucket.objects.filter(Prefix=prefix))
    return sum(len(files) for _, _, files in os.walk(default_storage.path(prefix)))


def test_killing_the_server_mid_upload_then_uploading_again_completes_the_study(
    site, patient_with_real_password, ct_files
):
    patient = patient_with_real_password
    site.start()
    first = log_in(site.port, patient)
    uploads = Uploads([first] + [clone_login(first) for _ in range(CLIENTS - 1)], ct_files)
    threads = uploads.run_in_background()
    uploads.wait_until_busy(answered=len(ct_files) // 5)
    # Best effort: if that moment never comes, the server dies at a random point instead.
    uploads.wait_for_an_unanswered_blob(patient)
    site.kill()
    for thread in threads:
        thread.join(timeout=30)
    assert uploads.cut, "the server was to die with uploads in flight"
    assert all(answer["status"] == 200 for answer in uploads.answers), uploads.answers
    assert len(uploads.answers) < len(ct_files)

    # A restart, and the patient picks the same folder again (the session survived in the db).
    site.start()
    again = Uploads([clone_login(first) for _ in range(CLIENTS)], ct_files)
    for thread in again.run_in_background():
        thread.join(timeout=120)
    assert not again.cut, again.cut
    outcomes = [answer["results"][0]["outcome"] for answer in again.answers]
    assert len(outcomes) == len(ct_files)
    assert set(outcomes) <= {"stored", "duplicate"}, again.answers

    uids = {str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in ct_files}
    instances = Instance.objects.filter(owner=patient)
    assert instances.count() == len(ct_files)
    assert set(instances.values_list("sop_instance_uid", flat=True)) == uids  # no duplicates
    study = Study.objects.get(owner=patient)
    assert (study.num_instances, study.num_series) == (len(ct_files), 1)
    assert Series.objects.get(study=study).num_instances == len(ct_files)

    site.stop()
    # What the killed requests left (a blob the re-upload did not reuse, a temp file) is a
    # leftover at most, never lost data; the exit status says whether there is any.
    checked = manage(site.env, "check_vault", "--grace-seconds", "0")
    assert_only_leftovers(checked.stdout)
    assert checked.returncode == (1 if leftover_count(checked.stdout) else 0), checked.stderr
    fixed = manage(site.env, "check_vault", "--grace-seconds", "0", "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    checked = manage(site.env, "check_vault", "--grace-seconds", "0")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(ct_files)} blobs, {len(ct_files)} rows" in checked.stdout
    assert checked.stdout.rstrip().endswith("OK.")
