"""Signed, expiring URLs for stored files that nginx checks on its own: the file-system
analogue of S3 presigned URLs.

Django authorises once (a batch of 50 images, or one image) and hands out URLs under
`PHR_SECURE_LINK_PREFIX`; nginx's stock secure_link module checks each one and sends the file
with sendfile, without asking Django again. That is what lets a whole series be served at
nearly nginx's own static speed. nginx checks them with (deploy/nginx/phr.conf):

    secure_link $arg_s,$arg_e;
    secure_link_md5 "$secure_link_expires$uri <PHR_SECURE_LINK_SECRET>";

Why MD5 is acceptable here: nginx offers nothing else, and the digest is keyed: the secret is
at the END of the hashed string, so it works like an HMAC-style suffix MAC. (A secret at the
start would let anyone extend a signed string, MD5 being a Merkle-Damgard hash.) Forging a link
for another path or a later expiry needs a second preimage of MD5 under an unknown suffix,
which nobody knows how to find; MD5's known weakness is collisions that an attacker chooses
both sides of, and here Django chooses every signed string.

Like a presigned S3 URL, a link is a bearer token: it stays valid until it expires, even after
the share that led to it is stopped. Hence the short life: a minute at most for a doctor
(DOCTOR), so that stopping a share bites within a minute; PHR_S3_URL_EXPIRE_SECONDS (five
minutes by default) for the patient's own browser. Django and nginx must agree on the time
(NTP), as with S3.
"""

import base64
import hashlib
import math
import time
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Expiries are rounded up to a multiple of a step, so that the same file gets the same URL for
# a while and a viewer that asks for it again meanwhile reads it from the browser cache. A link
# therefore lives between its lifetime and one step more.
EXPIRY_STEP_SECONDS = 300


@dataclass(frozen=True)
class Lifetime:
    seconds: int
    step: int

    @property
    def longest(self) -> int:
        return self.seconds + self.step


# A doctor's links: 30 s, rounded up to the next 30 s, so never more than 60 s.
DOCTOR = Lifetime(seconds=30, step=30)


def patient_lifetime() -> Lifetime:
    return Lifetime(seconds=settings.PHR_SIGNED_URL_SECONDS, step=EXPIRY_STEP_SECONDS)


def enabled() -> bool:
    return bool(settings.PHR_SECURE_LINK_PREFIX)


def expires_at(now: float | None = None, lifetime: Lifetime | None = None) -> int:
    """The Unix time a link made now expires: the lifetime, rounded up to the next step."""
    lifetime = lifetime or patient_lifetime()
    earliest = (time.time() if now is None else now) + lifetime.seconds
    return math.ceil(earliest / lifetime.step) * lifetime.step


def signature(path: str, expires: int, secret: str) -> str:
    """What nginx computes for `path` (its decoded $uri): base64url MD5, without padding."""
    # MD5 because it is all nginx's secure_link supports; see the module docstring for why it
    # is still sound as used here.
    digest = hashlib.md5(f"{expires}{path} {secret}".encode()).digest()  # noqa: S324
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def url(key: str, now: float | None = None, lifetime: Lifetime | None = None) -> str:
    """The signed URL of the stored file `key` (a key of default_storage, relative to
    MEDIA_ROOT, which nginx's location aliases)."""
    secret = settings.PHR_SECURE_LINK_SECRET
    if not secret:
        raise ImproperlyConfigured("PHR_SECURE_LINK_SECRET is needed for secure links.")
    # Keys are made by phr.vault.blobs from hashes; refuse anything that could climb out of the
    # media folder all the same, rather than trust nginx's normalisation.
    # (A leading "/" or a "//" shows up as an empty part.)
    if "\\" in key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"not a storage key: {key!r}")
    path = settings.PHR_SECURE_LINK_PREFIX.rstrip("/") + "/" + key
    expires = expires_at(now, lifetime)
    # nginx hashes the decoded $uri, so the signature is of `path` as is, and the URL carries
    # it percent-encoded (a no-op for the keys we make).
    return f"{quote(path)}?e={expires}&s={signature(path, expires, secret)}"
