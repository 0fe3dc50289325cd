"""Incomplete S3 multipart uploads, made and looked for with the S3 client itself (never
through the code under test), as an upload cut off by a dying object store or process leaves
them: parts stored, nothing listed among the objects."""

import os

PART_BYTES = 5 * 1024 * 1024  # S3's smallest part (but the last)


def start_an_incomplete_upload(storage, key: str) -> str:
    """Begin a multipart upload of `key` in the storage's bucket and send one real part;
    returns its upload id."""
    client = storage.bucket.meta.client
    upload_id = client.create_multipart_upload(Bucket=storage.bucket_name, Key=key)["UploadId"]
    client.upload_part(
        Bucket=storage.bucket_name,
        Key=key,
        UploadId=upload_id,
        PartNumber=1,
        Body=os.urandom(PART_BYTES),
    )
    return upload_id


def incomplete_uploads(storage, prefix: str) -> list[tuple[str, str]]:
    """(key, upload id) of every multipart upload under `prefix` the server still holds."""
    pages = storage.bucket.meta.client.get_paginator("list_multipart_uploads").paginate(
        Bucket=storage.bucket_name, Prefix=prefix
    )
    return [(up["Key"], up["UploadId"]) for page in pages for up in page.get("Uploads", [])]
