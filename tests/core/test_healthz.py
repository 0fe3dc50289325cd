import pytest
from django.urls import reverse

from tests.support.seaweed import SeaweedS3


def test_healthz_is_ok_when_database_and_storage_work(client, db):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "storage": "ok"}


def test_healthz_names_storage_when_it_cannot_write(client, db, settings, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the media folder should be")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": blocker / "media"},
        },
    }
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "storage": "error"}


@pytest.fixture(scope="module")
def own_s3_server():
    """A SeaweedFS of this test's own, so stopping it disturbs no other test."""
    server = SeaweedS3(bucket="healthz").start()
    yield server
    server.cleanup()


def test_healthz_on_s3_then_503_naming_storage_when_the_s3_server_stops(
    client, db, settings, own_s3_server
):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": own_s3_server.storage_options(),
        },
    }
    response = client.get(reverse("healthz"))
    assert response.json() == {"database": "ok", "storage": "ok"}
    assert response.status_code == 200

    own_s3_server.stop()
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "storage": "error"}
