"""Who may send images into a patient's vault, and how the patient lets them.

- An Organisation (hospital, imaging centre) is created by a site admin. It authenticates its
  DICOMweb requests with ApiTokens and its DIMSE associations with registered DicomNodes.
- A DepositCode is the patient's "account number for a bank transfer": short enough to read
  over the phone and to serve as a DICOM Called AE title, optionally restricted to one
  organisation, expiring and revocable. Only its keyed hash is stored.

What arrives lands in the patient's Inbox (Study.inbox) until the patient accepts or rejects it.
"""

import ipaddress
import math
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from phr.lib import codes
from phr.lib.bearer import BearerKind

# 13 Crockford base32 symbols = 65 bits, and it still fits a 16-character AE title with room
# to spare: hospital staff type it as the destination node's Called AE title.
DEPOSIT_CODE_LENGTH = 13
DEPOSIT_CODE_BITS = DEPOSIT_CODE_LENGTH * math.log2(len(codes.ALPHABET))
TOKEN_KIND = BearerKind(marker="phrorg", purpose="org-token")


class Organisation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, unique=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class ApiTokenQuerySet(models.QuerySet):
    def live(self):
        return self.filter(revoked_at__isnull=True, organisation__is_active=True)


class ApiToken(models.Model):
    """A bearer token for DICOMweb. The plaintext is shown once, when it is issued.

    Stored as a public lookup prefix (to find the row without scanning) and a keyed hash of the
    whole token (so a database dump can't be turned into a working token)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="tokens")
    label = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.organisation} · {self.prefix}…"

    @classmethod
    def issue(cls, organisation: Organisation, label: str = "") -> tuple["ApiToken", str]:
        prefix, plaintext, key_hash = TOKEN_KIND.issue()
        token = cls.objects.create(
            organisation=organisation, label=label, prefix=prefix, key_hash=key_hash
        )
        return token, plaintext

    @classmethod
    def find(cls, plaintext: str) -> "ApiToken | None":
        prefix = TOKEN_KIND.prefix_of(plaintext)
        if prefix is None:
            return None
        token = cls.objects.live().select_related("organisation").filter(prefix=prefix).first()
        return token if token and TOKEN_KIND.matches(token.key_hash, plaintext) else None


def validate_network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as error:
        raise ValidationError(f"{value!r} is not an IP address or network: {error}") from None


class DicomNode(models.Model):
    """A hospital's PACS or modality allowed to open a DIMSE association with us."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="nodes")
    ae_title = models.CharField("calling AE title", max_length=16)
    network = models.CharField(
        "allowed source address or network",
        max_length=64,
        validators=[validate_network],
        help_text="An IP address (10.1.2.3) or a network in CIDR form (10.1.2.0/24).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["ae_title"]

    def __str__(self):
        return f"{self.ae_title} @ {self.network}"

    def admits(self, ae_title: str, address: str) -> bool:
        try:
            in_network = ipaddress.ip_address(address) in ipaddress.ip_network(
                self.network, strict=False
            )
        except ValueError:
            return False
        return in_network and self.ae_title.strip() == (ae_title or "").strip()


class DepositCodeQuerySet(models.QuerySet):
    def live(self, now=None):
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True, expires_at__gt=now)


@dataclass(frozen=True)
class NewDepositCode:
    code: str

    @property
    def formatted(self) -> str:
        return format_deposit_code(self.code)


class DepositCode(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deposit_codes"
    )
    # In the patient's words: "St Mary's, knee MRI in March".
    label = models.CharField(max_length=200)
    # Empty: any registered organisation that has the code may deposit.
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    code_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = DepositCodeQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.label

    def issue_code(self) -> NewDepositCode:
        plain = codes.new_code(DEPOSIT_CODE_LENGTH)
        self.code_hash = hash_deposit_code(plain)
        return NewDepositCode(plain)

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()

    def admits(self, organisation: Organisation) -> bool:
        return self.organisation_id is None or self.organisation_id == organisation.pk


def hash_deposit_code(code: str) -> str:
    return codes.keyed_hash("deposit-code", code)


def format_deposit_code(code: str) -> str:
    """'ABCDEFGHJKMNP' -> 'ABCD-EFGH-JKMNP': 15 characters, still a valid AE title."""
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"
