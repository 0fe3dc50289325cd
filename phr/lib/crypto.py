"""Symmetric encryption for small secrets kept in the database (TOTP seeds).

A database dump alone must not let anyone compute a patient's TOTP codes, so the seed is
encrypted with a key that lives only in the server's configuration.
"""

import base64
from functools import lru_cache

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(master_key: str) -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"phr.field-encryption.v1"
    ).derive(master_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_text(plaintext: str) -> str:
    return _fernet(settings.FIELD_ENCRYPTION_KEY).encrypt(plaintext.encode()).decode()


def decrypt_text(token: str) -> str:
    return _fernet(settings.FIELD_ENCRYPTION_KEY).decrypt(token.encode()).decode()
