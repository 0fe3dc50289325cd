"""Show a new secret (a share's code and link, a deposit code) for a few minutes, then never.

Only keyed hashes reach the database, so the plaintext lives in the patient's session,
encrypted, for PHR_SHARE_REVEAL_SECONDS: long enough to note it down or print the card. One
secret per kind at a time: making a new one replaces the last.
"""

import time

from django.conf import settings

from phr.lib.crypto import decrypt_text, encrypt_text


def remember(request, kind: str, object_id, secret: str) -> None:
    request.session[kind] = {
        "id": str(object_id),
        "until": time.time() + settings.PHR_SHARE_REVEAL_SECONDS,
        "secret": encrypt_text(secret),
    }


def recall(request, kind: str, object_id) -> str | None:
    """The secret kept for `object_id`, or None once it has gone (and then forget it)."""
    kept = request.session.get(kind) or {}
    if kept.get("id") != str(object_id) or kept.get("until", 0) < time.time():
        forget(request, kind)
        return None
    return decrypt_text(kept["secret"])


def forget(request, kind: str) -> None:
    request.session.pop(kind, None)
