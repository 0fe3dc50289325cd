"""Behind nginx with secure links (PHR_SECURE_LINK_PREFIX): Django authorises and hands out
signed, expiring URLs; a real nginx, running the site file we ship (deploy/nginx/phr.conf),
checks them and serves the files by itself."""

import base64
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from pydicom.data import get_testdata_file

from phr.sharing import services as sharing
from phr.vault.models import Instance
from tests.sharing.conftest import make_share, open_with_code
from tests.support import nginx as nginx_support
from tests.support.vaultdata import ingest_path, longest_stack
from viewer import securelink
from viewer.catalogue import FILES_PER_STREAMED_BATCH, LINKS_PER_BATCH

SECRET = "test-secure-link-secret-0123456789abcdef"
PREFIX = "/vault-files/"


# Secure links are for files on this machine: pinned even in the production-like run.
pytestmark = pytest.mark.usefixtures("file_system_storage")


@pytest.fixture(autouse=True)
def _secure_links(settings):
    settings.PHR_SECURE_LINK_PREFIX = PREFIX
    settings.PHR_SECURE_LINK_SECRET = SECRET
    settings.PHR_SIGNED_URL_SECONDS = 300


@pytest.fixture
def nginx(tmp_path):
    if not nginx_support.available():
        pytest.skip(f"{nginx_support.NGINX} is missing: `make nginx` (or `make test`) installs it")
    port = nginx_support.free_port()
    server = nginx_support.site_server(
        port,
        media_root=tmp_path / "media",
        static_root=tmp_path / "static",
        # Nothing listens there: these tests ask Django through its test client, so anything
        # nginx passes on to Django fails with 502 instead of being served.
        upstream=f"127.0.0.1:{nginx_support.free_port()}",
        secret=SECRET,
    )
    running = nginx_support.Nginx(tmp_path / "nginx", [server], port).start()
    yield running
    running.stop()


@pytest.fixture
def instance(ct_study):
    return ct_study.series.get().instances.get()


def stored_bytes(instance) -> bytes:
    with default_storage.open(instance.storage_key, "rb") as handle:
        return handle.read()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the signed URL through real nginx -----------------------------------------------------------


def test_a_signed_url_serves_exactly_the_stored_bytes(nginx, instance):
    status, headers, data = nginx.get(securelink.url(instance.storage_key))
    assert status == 200
    assert sha256(data) == instance.sha256 == sha256(stored_bytes(instance))
    assert headers["Content-Type"] == "application/dicom"
    assert headers["Cache-Control"] == "private, max-age=600, immutable"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_nginx_answers_ranges_on_a_signed_url(nginx, instance):
    status, headers, data = nginx.get(
        securelink.url(instance.storage_key), {"Range": "bytes=128-131"}
    )
    assert status == 206
    assert data == b"DICM"
    assert headers["Content-Range"] == f"bytes 128-131/{instance.size}"


def test_a_tampered_link_is_403(nginx, instance):
    url = securelink.url(instance.storage_key)
    path, query = url.split("?")
    expires = int(query.split("&")[0].removeprefix("e="))
    signature = query.split("s=")[1]
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    tampered = [
        f"{path}?e={expires}&s={flipped}",  # another signature
        f"{path}?e={expires + 86400}&s={signature}",  # a later expiry
        f"{path}?e={expires}",  # no signature
        path,  # nothing
    ]
    for bad in tampered:
        status, _, data = nginx.get(bad)
        assert status == 403, bad
        assert b"DICM" not in data


def test_a_link_for_one_file_opens_no_other(nginx, patient, instance):
    other = ingest_path(patient, get_testdata_file("MR_small.dcm")).instance
    url = securelink.url(instance.storage_key)
    query = url.split("?")[1]
    status, _, _ = nginx.get(f"{PREFIX}{other.storage_key}?{query}")
    assert status == 403


def test_an_expired_link_is_410(nginx, instance):
    an_hour_ago = time.time() - 3600
    status, _, data = nginx.get(securelink.url(instance.storage_key, now=an_hour_ago))
    assert status == 410
    assert b"DICM" not in data


@pytest.mark.parametrize(
    "path",
    [
        f"{PREFIX}../outside.txt",
        f"{PREFIX}..%2foutside.txt",
        f"{PREFIX}%2e%2e/outside.txt",
        "/vault-files../outside.txt",
        "/outside.txt",
    ],
)
def test_nothing_outside_the_media_folder_is_served_even_signed(nginx, tmp_path, path):
    (tmp_path / "outside.txt").write_text("not for you")
    expires = securelink.expires_at()
    # Signed as if our own code had been fooled into it, for the path as written and for the
    # path nginx makes of it: still nothing.
    for signed in (path, "/outside.txt"):
        query = f"e={expires}&s={securelink.signature(signed, expires, SECRET)}"
        status, _, data = nginx.get(f"{path}?{query}")
        assert status != 200, (path, signed)
        assert b"not for you" not in data


def test_our_code_signs_storage_keys_only():
    for key in ["../outside.txt", "/etc/passwd", "vault/../../x", "vault//x", "vault\\..\\x"]:
        with pytest.raises(ValueError):
            securelink.url(key)


# --- the links themselves ----------------------------------------------------------------------


def test_the_same_file_gets_the_same_url_for_a_while_so_the_browser_cache_hits(settings):
    step = securelink.EXPIRY_STEP_SECONDS
    start = 1_700_000_000 // step * step + 1  # just past a step boundary
    first = securelink.url("vault/a/dicom/ab/abc.dcm", now=start)
    assert securelink.url("vault/a/dicom/ab/abc.dcm", now=start + step - 2) == first
    assert securelink.url("vault/a/dicom/ab/abc.dcm", now=start + step) != first
    for now in (start, start + 100, start + step - 2):
        expires = securelink.expires_at(now)
        # At least the configured life, at most one step more.
        assert now + 300 <= expires < now + 300 + step


def test_signature_is_nginx_form_base64url_md5_with_the_secret_last():
    # What `echo -n "1700000100/vault-files/k s3cret" | openssl md5 -binary | openssl base64
    # | tr +/ -_ | tr -d =` prints, the recipe in nginx's documentation.
    digest = hashlib.md5(b"1700000100/vault-files/k s3cret").digest()  # noqa: S324
    expected = base64.b64encode(digest).decode().translate(str.maketrans("+/", "-_")).rstrip("=")
    assert securelink.signature("/vault-files/k", 1700000100, "s3cret") == expected
    assert "=" not in expected and len(expected) == 22


# --- Django's side: it only authorises --------------------------------------------------------


def test_an_image_is_a_no_store_302_to_a_link_nginx_serves(nginx, patient_client, instance):
    response = patient_client.get(reverse("viewer:instance", args=[instance.id]))
    assert response.status_code == 302
    assert response["Cache-Control"] == "no-store"  # the link in it expires
    location = response["Location"]
    assert location.startswith(f"{PREFIX}{instance.storage_key}?e=")
    status, _, data = nginx.get(location)
    assert status == 200
    assert sha256(data) == instance.sha256


def test_secure_links_win_over_x_accel_redirect(patient_client, instance, settings):
    settings.PHR_ACCEL_REDIRECT_PREFIX = "/protected-media/"
    response = patient_client.get(reverse("viewer:instance", args=[instance.id]))
    assert response.status_code == 302
    assert "X-Accel-Redirect" not in response
    assert response["Location"].startswith(PREFIX)


def test_a_batch_is_the_links_of_its_files_in_order(nginx, patient_client, cd_studies):
    series = max(
        (series for study in cd_studies for series in study.series.all()),
        key=lambda series: series.instances.count(),
    )
    instances = list(series.instances.order_by("-instance_number"))
    assert len(instances) > 1
    ids = ",".join(instance.id.hex for instance in instances)  # as the viewer sends them
    response = patient_client.get(
        f"{reverse('viewer:study_files', args=[series.study.id])}?ids={ids}"
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    data = response.json()
    # The viewer's fetcher lets the browser keep these files: the links repeat for a while.
    assert data["cacheable"] is True
    assert len(data["urls"]) == len(instances)
    for url, instance in zip(data["urls"], instances, strict=True):
        status, _, body = nginx.get(url)
        assert status == 200
        assert sha256(body) == instance.sha256


def test_the_study_list_brings_each_images_link(nginx, patient_client, cd_studies):
    study = max(
        cd_studies,
        key=lambda study: Instance.objects.filter(series__study=study, rows__isnull=False).count(),
    )
    listing = patient_client.get(reverse("viewer:study_images", args=[study.id])).json()
    images = [image for series in listing["series"] for image in series["images"]]
    assert len(images) > 1
    for image in images:
        status, _, body = nginx.get(image["link"])
        assert status == 200
        assert sha256(body) == Instance.objects.get(pk=image["id"]).sha256


def test_the_viewer_asks_for_more_links_per_batch_than_files(nginx, patient_client, instance):
    url = reverse("viewer:study_images", args=[instance.series.study.id])
    data = patient_client.get(url).json()
    assert data["study"]["files_per_batch"] == LINKS_PER_BATCH > FILES_PER_STREAMED_BATCH


def test_another_patient_and_a_visitor_get_404_and_no_link(client, other_patient, instance):
    study = instance.series.study
    batch = f"{reverse('viewer:study_files', args=[study.id])}?ids={instance.id}"
    for caller in ("anonymous", "other patient"):
        if caller == "other patient":
            client.force_login(other_patient)
        for url in (reverse("viewer:instance", args=[instance.id]), batch):
            response = client.get(url)
            assert response.status_code == 404, (caller, url)
            assert "Location" not in response
            assert PREFIX.encode() not in response.content


def test_a_doctor_gets_links_until_the_share_is_stopped(nginx, patient, ct_study):
    doctor = Client()  # a doctor's browser: no account, its own cookies
    share, secrets = make_share(patient, [ct_study])
    open_with_code(doctor, secrets.code)
    instance = ct_study.series.get().instances.get()
    url = reverse("viewer:instance", args=[instance.id])
    response = doctor.get(url)
    assert response.status_code == 302
    link = response["Location"]

    sharing.revoke(share)

    # Django hands out no new link at once (410: the share has ended)...
    assert doctor.get(url).status_code == 410
    # ...but, like an S3 presigned URL, a link already handed out works until it expires: the
    # reason a doctor's links live a minute at most.
    assert nginx.get(link)[0] == 200


def expiry_of(link: str) -> int:
    return int(parse_qs(urlsplit(link).query)["e"][0])


def test_a_doctors_links_live_a_minute_at_most_and_come_batch_by_batch(nginx, patient, cd_studies):
    study = longest_stack(cd_studies).study
    doctor = Client()
    _share, secrets = make_share(patient, [study])
    open_with_code(doctor, secrets.code)
    # The doctor's list has no links: each batch asks Django, which logs it and signs afresh.
    listing = doctor.get(reverse("viewer:study_images", args=[study.id])).json()
    images = [image for series in listing["series"] for image in series["images"]]
    assert images and not any("link" in image for image in images)

    before = time.time()
    single = doctor.get(images[0]["url"])["Location"]
    ids = ",".join(image["id"] for image in images[:5])
    batch = doctor.get(f"{listing['study']['files_url']}?ids={ids}").json()["urls"]
    after = time.time()
    for link in [single, *batch]:
        assert before + securelink.DOCTOR.seconds <= expiry_of(link) <= after + 60
        assert nginx.get(link)[0] == 200


def test_the_patients_own_links_keep_their_configured_life(nginx, patient_client, instance):
    before = time.time()
    link = patient_client.get(reverse("viewer:instance", args=[instance.id]))["Location"]
    assert before + 300 <= expiry_of(link) <= time.time() + 300 + securelink.EXPIRY_STEP_SECONDS


def test_a_prefix_without_a_secret_refuses_to_start(tmp_path):
    env = {
        **os.environ,
        "PHR_VAR_DIR": str(tmp_path / "var"),
        "PHR_SECURE_LINK_PREFIX": PREFIX,
        "PHR_SECURE_LINK_SECRET": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import phr.settings"],
        cwd=Path(__file__).resolve().parent.parent.parent,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "PHR_SECURE_LINK_SECRET" in result.stderr
