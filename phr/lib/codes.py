"""Access codes, magic-link tokens and PINs: how they are made, typed and stored.

Only keyed hashes ever reach the database. The key lives in the server's configuration
(`PHR_SHARE_KEY`, or one derived from SECRET_KEY), so a stolen database dump cannot be turned
into a working code or link, and cannot even be brute-forced for the 6-digit PINs.
"""

import hashlib
import hmac
import math
import re
import secrets
import unicodedata
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

# Crockford's base32: digits and capitals without I, L, O and U, so nothing reads as something
# else when a doctor copies it from a card or hears it over the phone.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 16  # 16 symbols x 5 bits = 80 bits
CODE_BITS = CODE_LENGTH * math.log2(len(ALPHABET))
TOKEN_BYTES = 32  # 256 bits; the link is never typed, so it can be long
TOKEN_BITS = TOKEN_BYTES * 8
PIN_LENGTH = 6

# What people type for what they mean: the letters Crockford leaves out read as digits.
_CONFUSABLES = str.maketrans({"I": "1", "L": "1", "O": "0"})
_SEPARATORS = re.compile(r"[\s\-_.]+")
# What a code pasted from a document or a message may carry between its groups: any dash
# (en, em, minus...), any space, and invisible format characters (zero-width space, BOM).
_SEPARATOR_CATEGORIES = {"Pd", "Zs", "Cf"}
_MINUS_SIGNS = {"\u2212", "\u2796"}  # a maths minus and the heavy minus: symbols, not dashes
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")
PIN_PATTERN = re.compile(r"^\d{6}$")


def new_code(length: int = CODE_LENGTH) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def format_code(code: str) -> str:
    """'ABCDEFGHJKMNPQRS' -> 'ABCD-EFGH-JKMN-PQRS', the way it is printed and read out."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalise_code(typed: str, length: int = CODE_LENGTH) -> str | None:
    """The canonical code for whatever was typed, or None if it cannot be one.

    Case, spaces and dashes of any kind don't matter; I and L are read as 1, O as 0. U is not
    part of the alphabet at all, so a code with a U is simply wrong.
    """
    # NFKC first: full-width letters and digits (an East Asian keyboard's) become plain ones.
    text = unicodedata.normalize("NFKC", typed or "")
    text = "".join(
        ch
        for ch in text
        if unicodedata.category(ch) not in _SEPARATOR_CATEGORIES and ch not in _MINUS_SIGNS
    )
    cleaned = _SEPARATORS.sub("", text.upper()).translate(_CONFUSABLES)
    if len(cleaned) != length or any(ch not in ALPHABET for ch in cleaned):
        return None
    return cleaned


def normalise_pin(typed: str) -> str | None:
    cleaned = _SEPARATORS.sub("", typed or "")
    return cleaned if PIN_PATTERN.match(cleaned) else None


@lru_cache(maxsize=4)
def _derive_key(master: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"phr.share-secrets.v1"
    ).derive(master.encode())


def _key() -> bytes:
    return _derive_key(settings.PHR_SHARE_KEY or settings.SECRET_KEY)


def keyed_hash(purpose: str, value: str) -> str:
    """HMAC-SHA256 of `value`, domain-separated by `purpose` so that a code's hash can never be
    replayed as a token's (or a PIN's)."""
    message = f"{purpose}\x00{value}".encode()
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()


def hashes_match(expected: str, candidate: str) -> bool:
    return hmac.compare_digest(expected.encode(), candidate.encode())
