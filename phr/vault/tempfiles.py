"""Which files in the upload temp folder (FILE_UPLOAD_TEMP_DIR) a killed process of ours leaves.

A process that dies mid-request (SIGKILL, out of memory, a power cut) never runs the code that
would delete its named temp files. The ones this site can leave are:
  - Django's TemporaryFileUploadHandler files, for form uploads past the in-memory limit:
    `tempfile.NamedTemporaryFile(suffix=".upload" + ext, dir=FILE_UPLOAD_TEMP_DIR)`, so
    `tmpXXXXXXXX.upload` or `tmpXXXXXXXX.upload.dcm`;
  - pynetdicom's received datasets in the DICOM listener, which points tempfile's default
    folder at FILE_UPLOAD_TEMP_DIR: `NamedTemporaryFile(delete=False, suffix=".dcm")`, so
    `tmpXXXXXXXX.dcm`;
  - our own named temp files, which start with `upload_temp_prefix()`.

Anything else is left alone: an operator may point FILE_UPLOAD_TEMP_DIR at a folder that other
programs share, and their files are not ours to judge.
"""

import os
import re
from collections.abc import Iterator

from django.conf import settings

DEFAULT_UPLOAD_TEMP_PREFIX = "phr-upload-"

# tempfile's random part: eight characters from _RandomNameSequence (a-z, 0-9, "_"), after
# its default "tmp" prefix.
_TEMPFILE_NAME = r"tmp[a-z0-9_]{8}"
LEFTOVER_NAMES = (
    # Django's handler appends the uploaded name's extension (os.path.splitext, dot included).
    re.compile(rf"{_TEMPFILE_NAME}\.upload(\..*)?", re.DOTALL),
    re.compile(rf"{_TEMPFILE_NAME}\.dcm"),
)


def upload_temp_dir() -> str:
    return settings.FILE_UPLOAD_TEMP_DIR


def upload_temp_prefix() -> str:
    return getattr(settings, "PHR_UPLOAD_TEMP_PREFIX", DEFAULT_UPLOAD_TEMP_PREFIX)


def is_ours(name: str) -> bool:
    """Whether a file of this name is one our processes make (and may leave when killed)."""
    return name.startswith(upload_temp_prefix()) or any(
        pattern.fullmatch(name) for pattern in LEFTOVER_NAMES
    )


def leftover_candidates(folder: str) -> Iterator[os.DirEntry]:
    """Plain files of ours in `folder`, by name; never a folder or a link, whatever its name."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if is_ours(entry.name) and entry.is_file(follow_symlinks=False):
            yield entry


def unlink(path: str) -> bool:
    """Remove a leftover; False when the system refuses (someone else's file in a sticky /tmp:
    reported, not ours to force)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
