from allauth.mfa.adapter import DefaultMFAAdapter

from phr.lib.crypto import decrypt_text, encrypt_text


class MFAAdapter(DefaultMFAAdapter):
    """Store TOTP seeds encrypted: a database dump alone must not yield working codes."""

    def encrypt(self, text: str) -> str:
        return encrypt_text(text)

    def decrypt(self, encrypted_text: str) -> str:
        return decrypt_text(encrypted_text)
