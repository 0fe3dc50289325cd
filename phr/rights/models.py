from django.db import models
from django.utils import timezone


class ErasureRecord(models.Model):
    """That an account was erased, and how much went with it: the only trace left afterwards.

    Deliberately nothing that identifies the person (no ID, email, name or hashes of them),
    so the record itself is not personal data (GDPR Art. 17 and recital 26)."""

    erased_at = models.DateTimeField(default=timezone.now)
    studies = models.PositiveIntegerField(default=0)
    images = models.PositiveIntegerField(default=0)
    documents = models.PositiveIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    shares_stopped = models.PositiveIntegerField(default=0)
    deposit_codes_stopped = models.PositiveIntegerField(default=0)
    blobs_left_behind = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-erased_at"]

    def __str__(self):
        return f"Account erased on {self.erased_at:%Y-%m-%d %H:%M}"
