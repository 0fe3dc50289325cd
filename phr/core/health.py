"""Readiness checks that really touch each backing service."""

import logging
import uuid

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

log = logging.getLogger(__name__)

PROBE_BYTES = b"healthz probe\n"


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        if cursor.fetchone()[0] != 1:
            raise RuntimeError("database answered SELECT 1 with something else")


def check_storage() -> None:
    """Write, read back and delete a small object, as an upload and a download would."""
    name = default_storage.save(f"healthz/{uuid.uuid4().hex}", ContentFile(PROBE_BYTES))
    try:
        with default_storage.open(name, "rb") as stored:
            if stored.read() != PROBE_BYTES:
                raise RuntimeError("storage returned different bytes")
    finally:
        default_storage.delete(name)


CHECKS = {"database": check_database, "storage": check_storage}


def run_checks() -> dict[str, str]:
    results = {}
    for part, check in CHECKS.items():
        try:
            check()
            results[part] = "ok"
        except Exception:
            log.exception("health check failed: %s", part)
            results[part] = "error"
    return results
