"""The vault: a patient's studies, as a radiologist thinks of them (Study > Series > Instance),
plus the documents (reports, photos) that came with them.

Every row belongs to one owner. The same study uploaded by two patients is two independent
records, so that deleting one patient's vault never touches another's.
"""

import uuid

from django.conf import settings
from django.db import models


class Source(models.TextChoices):
    UPLOAD = "upload", "CD upload"
    IMPORT = "import", "Imported by an administrator"
    HOSPITAL = "hospital", "Sent by a hospital"


class StudyQuerySet(models.QuerySet):
    def in_vault(self):
        return self.filter(inbox=False)

    def in_inbox(self):
        return self.filter(inbox=True)


class Study(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="studies"
    )
    study_instance_uid = models.CharField(max_length=64)
    study_date = models.DateField(null=True, blank=True)
    study_time = models.TimeField(null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    referring_physician = models.CharField(max_length=200, blank=True)
    institution = models.CharField(max_length=200, blank=True)
    # Space-separated, e.g. "CT SR": what the series hold, kept in sync at ingest.
    modalities = models.CharField(max_length=100, blank=True)
    body_parts = models.CharField(max_length=200, blank=True)
    # The patient as labelled in the files, which may differ from the account holder.
    patient_name = models.CharField(max_length=200, blank=True)
    patient_id = models.CharField(max_length=64, blank=True)
    patient_birth_date = models.DateField(null=True, blank=True)
    patient_sex = models.CharField(max_length=16, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.UPLOAD)
    # Sent by a hospital and waiting in the patient's Inbox: not listed in the vault and never
    # shareable until the patient accepts it. A study may sit in both places at once (new
    # images of a study already kept), hence the uniqueness per (owner, UID, place).
    inbox = models.BooleanField(default=False)
    deposited_by = models.ForeignKey(
        "hospital.Organisation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    deposited_at = models.DateTimeField(null=True, blank=True)
    num_series = models.PositiveIntegerField(default=0)
    num_instances = models.PositiveIntegerField(default=0)
    total_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = StudyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["-study_date", "-study_time", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "study_instance_uid", "inbox"],
                name="one_study_per_uid_per_owner_and_place",
            )
        ]
        indexes = [models.Index(fields=["owner", "-study_date"], name="study_owner_date")]

    def __str__(self):
        return self.title

    @property
    def title(self) -> str:
        return self.description or (
            f"{self.modalities} study" if self.modalities else "Imaging study"
        )

    @property
    def modality_list(self) -> list[str]:
        return self.modalities.split()


class Series(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    series_instance_uid = models.CharField(max_length=64)
    number = models.IntegerField(null=True, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    description = models.CharField(max_length=200, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    num_instances = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "series"
        ordering = ["number", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "series_instance_uid"], name="one_series_per_uid_per_study"
            )
        ]

    def __str__(self):
        return self.description or f"Series {self.number or ''}".strip()


class Instance(models.Model):
    """One stored DICOM file (an image, a multi-frame cine, a structured report…)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    # Denormalised from series.study.owner: dedup and blob bookkeeping are per owner.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    sop_instance_uid = models.CharField(max_length=64)
    sop_class_uid = models.CharField(max_length=64, blank=True)
    transfer_syntax_uid = models.CharField(max_length=64, blank=True)
    instance_number = models.IntegerField(null=True, blank=True)
    number_of_frames = models.PositiveIntegerField(default=1)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    # Position along the slice normal (from ImagePositionPatient and ImageOrientationPatient), so a
    # stack scrolls in anatomical order; falls back to SliceLocation.
    slice_position = models.FloatField(null=True, blank=True)
    # What the viewer needs without reading the file: spacing, default window, orientation.
    display = models.JSONField(default=dict, blank=True)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=255)
    # Same SOP Instance UID as an instance already in the vault, but different bytes: kept
    # side by side, never overwriting, and flagged for the patient.
    is_conflict = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slice_position", "instance_number", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "sop_instance_uid", "sha256"],
                name="one_instance_per_uid_and_bytes",
            )
        ]
        indexes = [
            models.Index(fields=["owner", "sop_instance_uid"], name="instance_owner_uid"),
            models.Index(fields=["storage_key"], name="instance_storage_key"),
        ]

    def __str__(self):
        return self.sop_instance_uid


class InstanceMetadata(models.Model):
    """An instance's header as DICOM JSON (PS3.18 F.2), without its bulk data: what DICOMweb's
    metadata answers are made of, kept apart from Instance so that listing images never loads
    it. Filled from the stored file once (phr.vault.metadata), then read from here. Kept as
    text: an answer is these texts joined, never parsed and encoded again."""

    instance = models.OneToOneField(
        Instance, on_delete=models.CASCADE, primary_key=True, related_name="metadata"
    )
    dicom_json = models.TextField()

    def __str__(self):
        return f"DICOM JSON of {self.instance_id}"


class Document(models.Model):
    """A PDF report or a photo that came with the images."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="documents"
    )
    study = models.ForeignKey(
        Study, null=True, blank=True, on_delete=models.SET_NULL, related_name="documents"
    )
    # The name the patient knows it by; stored files are named by hash, never by this.
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=255)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.UPLOAD)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "sha256"], name="one_document_per_content")
        ]
        indexes = [models.Index(fields=["storage_key"], name="document_storage_key")]

    def __str__(self):
        return self.filename
