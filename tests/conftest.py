import os
import time
import uuid

import pyotp
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from pydicom.data import get_testdata_file

from tests.factories import PASSWORD, UserFactory, enrol_totp
from tests.support.seaweed import SeaweedS3
from tests.support.vaultdata import dicomdir_tree, ingest_path, ingest_tree

# Playwright's sync API runs an event loop in the test thread; the Django ORM calls the tests
# make between browser steps are still ordinary synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings, tmp_path):
    # Hashing passwords at full strength costs seconds per test and proves nothing here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # A series bundle is built during the request that first needs it, not in a thread that
    # would outlive the test (tests/viewer/test_bundles.py tries the thread on its own).
    settings.PHR_SERIES_BUNDLES = "inline"
    # The access log's counts are written at once, not by a timer's thread that would outlive
    # the test (tests/sharing/test_access_log_truth.py tries the timer on its own).
    settings.PHR_AUDIT_FLUSH_SECONDS = 0
    # The site-wide failure count lives in the shared cache for the whole run: past its
    # threshold, a test's wrong code would really wait. The tests of the delay set their own.
    settings.PHR_SHARE_SLOWDOWN_SECONDS = 0
    if settings.STORAGE_BACKEND == "filesystem":
        _media_in(settings, tmp_path)


@pytest.fixture(autouse=True)
def upload_temp_dir(settings, tmp_path):
    """Each test's own upload temp folder. check_vault sweeps that folder for stale files of
    ours; in one shared by other tests and runs it would find (and with --fix remove) theirs."""
    folder = tmp_path / "upload-temp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


@pytest.fixture
def file_system_storage(settings, tmp_path):
    """Files in this test's folder, even in the production-like run: for tests about what only
    a file-system vault does (streaming, Range, nginx)."""
    _media_in(settings, tmp_path)


@pytest.fixture(scope="session")
def embedded_run_seaweed():
    """A SeaweedFS for the embedded run's tests about what only S3 has; started on first use."""
    server = SeaweedS3(bucket="phr-embedded-run").start()
    yield server
    server.cleanup()


@pytest.fixture
def s3_storage(settings, request):
    """S3 for this test in both runs (for what only S3 has, such as multipart uploads): the
    production-like run's SeaweedFS, or one started for the embedded run. The bucket is the
    test's own: on SQLite a rolled-back test hands the next one the same owner id."""
    current = settings.STORAGES["default"]
    if current["BACKEND"].endswith("S3Storage"):
        options = current["OPTIONS"]
    else:
        options = request.getfixturevalue("embedded_run_seaweed").storage_options()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {**options, "bucket_name": f"phr-test-{uuid.uuid4().hex[:12]}"},
        },
    }
    default_storage.bucket.meta.client.create_bucket(Bucket=default_storage.bucket_name)
    return default_storage


def _media_in(settings, folder) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": folder / "media", "base_url": None},
        },
    }


def wait_for_fresh_totp_window(min_seconds_left: float = 6.0) -> None:
    """Sleep into the next 30 s TOTP period if this one is about to end.

    A test that uses one code twice must do both within the same period, or the second use
    would fail for the wrong reason (expiry) and prove nothing about replay protection.
    """
    left = 30 - (time.time() % 30)
    if left < min_seconds_left:
        time.sleep(left + 0.5)


def totp_code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


@pytest.fixture
def patient(db):
    """A patient who has enrolled an authenticator app. `.totp_secret` is the plaintext seed."""
    user = UserFactory()
    user.totp_secret = enrol_totp(user)
    return user


@pytest.fixture
def unenrolled_patient(db):
    return UserFactory()


def login_with_totp(client, user, code=None):
    """Log in through the real allauth flow: password, then the TOTP stage."""
    response = client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    assert response.url == reverse("mfa_authenticate")
    return client.post(reverse("mfa_authenticate"), {"code": code or totp_code(user.totp_secret)})


@pytest.fixture
def patient_client(client, patient):
    wait_for_fresh_totp_window()
    response = login_with_totp(client, patient)
    assert response.status_code == 302
    client.user = patient
    return client


@pytest.fixture
def other_patient(db):
    user = UserFactory()
    user.totp_secret = enrol_totp(user)
    return user


@pytest.fixture
def ct_study(patient):
    """CT_small.dcm in the patient's vault; returns the Study."""
    result = ingest_path(patient, get_testdata_file("CT_small.dcm"))
    assert result.outcome == "stored", result.message
    return result.study


@pytest.fixture
def cd_studies(patient):
    """pydicom's whole DICOMDIR CD tree in the patient's vault; returns the patient's studies."""
    results = ingest_tree(patient, dicomdir_tree())
    assert any(result.outcome == "stored" for result in results)
    return list(patient.studies.all())


@pytest.fixture(scope="session")
def playwright():
    """Playwright, once for the session (it can't be started twice at once)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright):
    """Real Debian Chromium driven by Playwright. A missing browser fails, never skips."""
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def webgl_browser(playwright):
    """The same Chromium with WebGL (SwiftShader's software GL: no GPU here), for the viewer's
    WebGL renderer, which the usual browser (--disable-gpu) never runs."""
    args = [arg for arg in CHROMIUM_ARGS if arg != "--disable-gpu"]
    args += ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    yield browser
    browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


_skipped_browser_tests: list[str] = []


def pytest_runtest_logreport(report):
    # A strict expected failure (xfail) is reported as skipped, but hides nothing: it is a
    # known fault, named with its reason, and it fails the run as soon as it passes.
    if report.skipped and "browser" in report.keywords and not hasattr(report, "wasxfail"):
        _skipped_browser_tests.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    # In CI a skipped browser test would hide a broken viewer or flow: treat it as a failure.
    if os.environ.get("CI") == "true" and _skipped_browser_tests:
        print(f"\nCI: browser tests were skipped: {_skipped_browser_tests}")
        session.exitstatus = 1
