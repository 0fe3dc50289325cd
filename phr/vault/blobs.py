"""Content-addressed blob storage for the vault, through Django's storage API.

Keys are derived from the owner and the SHA-256 of the stored bytes, never from an uploaded
file name, so the same code works on the file system and on S3, and a name can't traverse.
"""

from django.core.files import File
from django.core.files.storage import default_storage

from phr.vault.models import Document, Instance


def instance_key(owner_id, sha256: str) -> str:
    return f"vault/{owner_id}/dicom/{sha256[:2]}/{sha256}.dcm"


def document_key(owner_id, sha256: str, extension: str) -> str:
    return f"vault/{owner_id}/documents/{sha256[:2]}/{sha256}{extension}"


def store(key: str, fileobj, size: int) -> tuple[str, bool]:
    """Save `fileobj` under `key` unless those bytes are already there.

    Returns (the key actually used, whether this call wrote it). Storage may pick another name
    if two uploads race for the same key; the caller records whatever name comes back.
    """
    if default_storage.exists(key):
        if default_storage.size(key) == size:
            return key, False
        # A blob cut short by a crash (the file system writes in place): replace it.
        default_storage.delete(key)
    fileobj.seek(0)
    # A temp file that is ours to consume (it has a temporary_file_path, like Django's own
    # uploaded temp files) is moved into place by the file-system storage, not copied.
    content = fileobj if hasattr(fileobj, "temporary_file_path") else File(fileobj, name=key)
    return default_storage.save(key, content), True


def keys_under(folder: str, storage=None):
    """Every key below `folder` ("vault/<owner id>"), on the file system and on S3 alike:
    listdir walks directories there and lists by delimiter here."""
    storage = storage or default_storage
    try:
        subfolders, files = storage.listdir(folder)
    except FileNotFoundError:  # the file system has no folder until a first blob is stored
        return
    for name in sorted(files):
        yield f"{folder}/{name}"
    for name in sorted(subfolders):
        yield from keys_under(f"{folder}/{name}", storage)


def is_referenced(key: str) -> bool:
    return (
        Instance.objects.filter(storage_key=key).exists()
        or Document.objects.filter(storage_key=key).exists()
    )


def delete_if_unreferenced(key: str) -> bool:
    """Remove a blob no row points at. Used on failed ingests and after deletions."""
    if is_referenced(key):
        return False
    default_storage.delete(key)
    return True
