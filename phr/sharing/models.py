"""A share is a patient's standing permission for one recipient to see some studies.

The share owns its secrets (healthchecks style): `issue_secrets()` makes the code, link token
and PIN and keeps only their keyed hashes; `find_by_code()`, `find_by_token()` and
`check_pin()` are the only ways to test them. Everything that happens to a share is an
AccessEvent, which can be written once and never changed.
"""

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.utils import timezone

from phr.lib import codes
from phr.lib.bearer import BearerKind
from phr.vault.models import Study

MAX_WRONG_PINS = 10


class Status(models.TextChoices):
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Stopped"
    LOCKED = "locked", "Locked"


@dataclass(frozen=True)
class Secrets:
    """The plaintext a patient is shown once, right after creating a share."""

    code: str
    token: str

    @property
    def formatted_code(self) -> str:
        return codes.format_code(self.code)


class ShareQuerySet(models.QuerySet):
    def live(self, now=None):
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True, locked_at__isnull=True, expires_at__gt=now)


class Share(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shares"
    )
    studies = models.ManyToManyField(Study, related_name="shares")
    # Who it is for, in the patient's words: "Dr. Smith, Mayo Clinic".
    label = models.CharField(max_length=200)
    recipient_email = models.EmailField(blank=True)
    code_hash = models.CharField(max_length=64, unique=True)
    token_hash = models.CharField(max_length=64, unique=True)
    pin_hash = models.CharField(max_length=64, blank=True)
    allow_download = models.BooleanField(default=False)
    notify_on_open = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)
    wrong_pins = models.PositiveIntegerField(default=0)
    first_opened_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ShareQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="share_owner_created")]

    def __str__(self):
        return self.label

    # --- secrets ---------------------------------------------------------------------------

    def issue_secrets(self, pin: str = "") -> Secrets:
        """Make a fresh code and link for this (unsaved) share; return the plaintext once."""
        plain = Secrets(code=codes.new_code(), token=codes.new_token())
        self.code_hash = codes.keyed_hash("code", plain.code)
        self.token_hash = codes.keyed_hash("token", plain.token)
        # The share's own id goes into the PIN's hash, so two shares with the same PIN do not
        # have the same hash (and one cracked PIN tells nothing about the others).
        self.pin_hash = codes.keyed_hash(f"pin:{self.pk}", pin) if pin else ""
        return plain

    @classmethod
    def find_by_code(cls, typed: str):
        code = codes.normalise_code(typed)
        if code is None:
            return None
        return (
            cls.objects.select_related("owner")
            .filter(code_hash=codes.keyed_hash("code", code))
            .first()
        )

    @classmethod
    def find_by_token(cls, token: str):
        if not codes.TOKEN_PATTERN.match(token or ""):
            return None
        return (
            cls.objects.select_related("owner")
            .filter(token_hash=codes.keyed_hash("token", token))
            .first()
        )

    @property
    def has_pin(self) -> bool:
        return bool(self.pin_hash)

    def check_pin(self, typed: str) -> bool:
        if not self.has_pin:
            return True
        pin = codes.normalise_pin(typed)
        candidate = codes.keyed_hash(f"pin:{self.pk}", pin or "not-a-pin")
        return codes.hashes_match(self.pin_hash, candidate) and pin is not None

    # --- state -----------------------------------------------------------------------------

    def status_at(self, now=None) -> str:
        now = now or timezone.now()
        if self.revoked_at:
            return Status.REVOKED
        if self.locked_at:
            return Status.LOCKED
        if self.expires_at <= now:
            return Status.EXPIRED
        return Status.ACTIVE

    @property
    def status(self) -> str:
        return self.status_at()

    @property
    def status_label(self) -> str:
        return Status(self.status).label

    @property
    def is_live(self) -> bool:
        return self.status == Status.ACTIVE


class AppendOnlyQuerySet(models.QuerySet):
    """Audit rows are evidence: no code path may rewrite or remove them in bulk.

    (Deleting a whole account still removes them: Django's cascade deletes rows directly,
    without going through this queryset.)
    """

    def update(self, **kwargs):
        raise TypeError(f"{self.model.__name__} rows are append-only")

    def delete(self):
        raise TypeError(f"{self.model.__name__} rows are append-only")


class AppendOnly(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError(f"{type(self).__name__} rows are append-only")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} rows are append-only")


class Event(models.TextChoices):
    CREATED = "created", "Share created"
    EMAILED = "emailed", "Link emailed to the recipient"
    OPENED = "opened", "Opened"
    VIEWED = "viewed", "Looked at a study"
    PREVIEWS = "previews", "Saw the previews"
    IMAGES = "images", "Viewed images"
    TAGS = "tags", "Read the DICOM details"
    DOCUMENT = "document", "Opened a document"
    DOCUMENT_SAVED = "document_saved", "Downloaded a document"
    DOWNLOADED = "downloaded", "Downloaded"
    DICOMWEB_TOKEN = "dicomweb_token", "Got a token for their own viewer or PACS"
    WRONG_PIN = "wrong_pin", "Wrong PIN typed"
    LOCKED = "locked", "Locked after too many wrong PINs"
    REFUSED = "refused", "Refused: the share had ended"
    REVOKED = "revoked", "You stopped this share"
    EXPIRED = "expired", "Expired"


class AccessEvent(AppendOnly):
    """One line of a share's access log, as the patient reads it."""

    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=Event.choices)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    # Tells apart the browsers that used one share ("browser 3f2a…"), without identifying anyone.
    visitor = models.CharField(max_length=16, blank=True)
    # What was looked at, in words, kept even if the study is deleted later (no foreign key).
    detail = models.CharField(max_length=300, blank=True)
    object_id = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["share", "-at"], name="event_share_at")]

    def __str__(self):
        return f"{self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M}"


class Tally(models.Model):
    """How many distinct images of one series a doctor's browser was given in one clock hour,
    and until when: the running count behind one IMAGES or TAGS line of the access log (for a
    PREVIEWS line: how many series' thumbnails of one study; `series_id` is then the study's).

    The log line itself (`event`) is written once, when the first image goes out, and never
    changes; this row grows with each batch the viewer fetches: one upsert per batch of up to
    100 images, never a query per image.
    """

    event = models.OneToOneField(AccessEvent, on_delete=models.CASCADE, related_name="tally")
    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="+")
    visitor = models.CharField(max_length=16)
    kind = models.CharField(max_length=16, choices=Event.choices)
    # No foreign key: the line stays true after the patient deletes the study.
    series_id = models.UUIDField()
    hour = models.DateTimeField()
    images = models.PositiveIntegerField(default=0)
    last_at = models.DateTimeField()
    # The instance IDs counted so far, 16 bytes each, sorted: a reload that fetches the same
    # images again doesn't count them twice.
    seen = models.BinaryField(default=b"")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["share", "visitor", "kind", "series_id", "hour"], name="one_tally_per_hour"
            )
        ]

    def __str__(self):
        return f"{self.images} images until {self.last_at:%H:%M}"


class FailedRedemption(AppendOnly):
    """The site-wide log of failed attempts to open a share, identifiable or not."""

    class Reason(models.TextChoices):
        MALFORMED = "malformed", "Not a valid code or link"
        UNKNOWN = "unknown", "No such code or link"
        WRONG_PIN = "wrong_pin", "Wrong PIN"
        EXPIRED = "expired", "Share expired"
        REVOKED = "revoked", "Share stopped"
        LOCKED = "locked", "Share locked"
        RATE_LIMITED = "rate_limited", "Too many failed attempts"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    via = models.CharField(max_length=8)  # "code" or "link"
    reason = models.CharField(max_length=16, choices=Reason.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    # Set only when the share could be told (a wrong PIN, an ended share).
    share = models.ForeignKey(
        Share, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-at"]

    def __str__(self):
        return f"{self.get_reason_display()} from {self.ip} at {self.at:%Y-%m-%d %H:%M}"


class DicomwebToken(models.Model):
    """A bearer token for DICOMweb reads (phr.dicomweb). Two kinds:
    - a share's: lets a doctor's own viewer or PACS read that share as the doctor's browser
      does (the same studies, for as long as the share is live, every read in the patient's
      log). Issued to a browser that opened the share, when the patient allowed downloads;
    - the patient's own (no share): their whole vault, for their own software (data
      portability), until they revoke it on the My data page.
    The plaintext is shown once. Stored as a public lookup prefix and a keyed hash of the whole
    token, as hospital tokens are: a database dump can't be turned into a working token."""

    KIND = BearerKind(marker="phrdw", purpose="dicomweb-token")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dicomweb_tokens"
    )
    share = models.ForeignKey(
        Share, null=True, blank=True, on_delete=models.CASCADE, related_name="dicomweb_tokens"
    )
    label = models.CharField(max_length=100, blank=True)
    # The browser that asked for a share's token: the patient's log tells its reads apart.
    visitor = models.CharField(max_length=16, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"DICOMweb token {self.prefix}…"

    @classmethod
    def issue(
        cls, owner, *, share: Share | None = None, visitor: str = "", label: str = ""
    ) -> tuple["DicomwebToken", str]:
        prefix, plaintext, key_hash = cls.KIND.issue()
        token = cls.objects.create(
            owner=owner, share=share, visitor=visitor, label=label, prefix=prefix, key_hash=key_hash
        )
        return token, plaintext

    @classmethod
    def find(cls, plaintext: str) -> "DicomwebToken | None":
        """The unrevoked token `plaintext` names, whatever its share's state (the caller asks)."""
        prefix = cls.KIND.prefix_of(plaintext)
        if prefix is None:
            return None
        token = (
            cls.objects.select_related("share", "owner")
            .filter(prefix=prefix, revoked_at__isnull=True)
            .first()
        )
        return token if token and cls.KIND.matches(token.key_hash, plaintext) else None
