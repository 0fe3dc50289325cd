"""Bearer tokens that a database dump can't turn into working ones: `<kind>_<prefix>_<secret>`.

The public prefix finds the row without scanning; only a keyed hash of the whole token is kept
(phr.lib.codes). Hospitals' tokens and DICOMweb tokens are of this make, each kind with a
hash purpose of its own, so that one kind's hash can never stand for another's.
"""

import secrets
from dataclasses import dataclass

from phr.lib import codes


@dataclass(frozen=True)
class BearerKind:
    marker: str  # the plaintext's first part: tells a reader which kind of token it is
    purpose: str  # the keyed hash's purpose

    def issue(self) -> tuple[str, str, str]:
        """(prefix, plaintext, key hash) of a new token: 256 random bits after the prefix."""
        prefix = secrets.token_hex(4)
        plaintext = f"{self.marker}_{prefix}_{secrets.token_urlsafe(32)}"
        return prefix, plaintext, codes.keyed_hash(self.purpose, plaintext)

    def prefix_of(self, plaintext: str) -> str | None:
        """The lookup prefix of a token of this kind, or None when it isn't one."""
        parts = (plaintext or "").split("_", 2)
        if len(parts) != 3 or parts[0] != self.marker or not parts[1] or not parts[2]:
            return None
        return parts[1]

    def matches(self, key_hash: str, plaintext: str) -> bool:
        return codes.hashes_match(key_hash, codes.keyed_hash(self.purpose, plaintext))
