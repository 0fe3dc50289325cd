"""Storing blobs on S3 (phr/vault/blobs.py): a file below the multipart threshold goes up in one
plain PUT, and must land exactly as django-storages' own save() would put it."""

import hashlib
import io

import pytest
from django.core.files.base import ContentFile

from phr.vault import blobs

pytestmark = pytest.mark.django_db


def head(storage, key: str) -> dict:
    return storage.bucket.meta.client.head_object(Bucket=storage.bucket_name, Key=key)


def test_a_small_file_lands_as_storage_save_would_put_it(s3_storage):
    data = b"\0" * 128 + b"DICM" + bytes(range(256)) * 40
    sha256 = hashlib.sha256(data).hexdigest()
    ours = blobs.instance_key(1, sha256)
    theirs = blobs.instance_key(2, sha256)

    key, wrote = blobs.store(ours, io.BytesIO(data), len(data))
    s3_storage.save(theirs, ContentFile(data))

    assert (key, wrote) == (ours, True)
    with s3_storage.open(ours, "rb") as stored:
        assert stored.read() == data
    ours_head, theirs_head = head(s3_storage, ours), head(s3_storage, theirs)
    for header in ("ContentType", "ContentLength", "ContentEncoding", "Metadata"):
        assert ours_head.get(header) == theirs_head.get(header), header
    # Stored once: the same bytes again write nothing.
    assert blobs.store(ours, io.BytesIO(data), len(data)) == (ours, False)


def test_a_file_past_the_multipart_threshold_goes_through_storage_save(s3_storage, monkeypatch):
    threshold = s3_storage.transfer_config.multipart_threshold
    monkeypatch.setattr(blobs, "_put_object", lambda *args: pytest.fail("a single PUT was used"))
    data = b"x" * threshold
    key = blobs.instance_key(1, hashlib.sha256(data).hexdigest())

    assert blobs.store(key, io.BytesIO(data), len(data)) == (key, True)
    assert head(s3_storage, key)["ContentLength"] == threshold
