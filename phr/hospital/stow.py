"""DICOMweb Store Instances (STOW-RS, PS3.18 10.5) on top of the deposit rules.

Each part of the request becomes one call to the ingest service; the response lists what was
stored (ReferencedSOPSequence) and what was not (FailedSOPSequence, with a FailureReason from
PS3.18 Table 10.5.3-3 / PS3.4 C-STORE statuses) in the DICOM JSON model.
"""

from dataclasses import dataclass, field

from django.conf import settings

from phr.hospital import multipart, services
from phr.vault.ingest import IngestFailure, Outcome

DICOM_MEDIA_TYPE = "application/dicom"

# PS3.4 Annex B C-STORE status codes, reused by STOW-RS as FailureReason (0008,1197).
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900  # here: the instance belongs to another study than the URL names
CANNOT_UNDERSTAND = 0xC000

# Tags of the store response, in DICOM JSON (PS3.18 F.2) keyword-free form.
SOP_CLASS = "00081150"
SOP_INSTANCE = "00081155"
FAILURE_REASON = "00081197"
FAILED_SOPS = "00081198"
REFERENCED_SOPS = "00081199"
WARNING_REASON = "00081196"
COERCED_OR_KEPT_ASIDE = 0xB000  # warning: stored, but beside a different copy with this UID


@dataclass
class StoreResponse:
    referenced: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)

    def add_stored(self, sop_class: str, sop_instance: str, warning: int | None = None):
        item = _uids(sop_class, sop_instance)
        if warning is not None:
            item[WARNING_REASON] = {"vr": "US", "Value": [warning]}
        self.referenced.append(item)

    def add_failed(self, reason: int, sop_class: str = "", sop_instance: str = ""):
        item = _uids(sop_class, sop_instance)
        item[FAILURE_REASON] = {"vr": "US", "Value": [reason]}
        self.failed.append(item)

    @property
    def http_status(self) -> int:
        # 200: all stored; 202: some stored, some not; 409: none stored (PS3.18 10.5.3).
        if self.failed and not self.referenced:
            return 409
        return 202 if self.failed else 200

    def as_dicom_json(self) -> dict:
        body = {}
        if self.referenced:
            body[REFERENCED_SOPS] = {"vr": "SQ", "Value": self.referenced}
        if self.failed:
            body[FAILED_SOPS] = {"vr": "SQ", "Value": self.failed}
        return body


def _uids(sop_class: str, sop_instance: str) -> dict:
    item = {}
    if sop_class:
        item[SOP_CLASS] = {"vr": "UI", "Value": [sop_class]}
    if sop_instance:
        item[SOP_INSTANCE] = {"vr": "UI", "Value": [sop_instance]}
    return item


def store_parts(
    report: services.DeliveryReport, stream, boundary: str, *, study_uid: str | None = None
) -> StoreResponse:
    """Store every part of a multipart/related body; raises multipart.MalformedBody when the
    body itself can't be read (the parts stored before that point stay stored)."""
    response = StoreResponse()
    limit = settings.PHR_MAX_FILE_BYTES
    with multipart.parts_read_ahead(stream, boundary, max_part_bytes=limit) as parts:
        for number, part in enumerate(parts, start=1):
            try:
                if part.file is None:
                    response.add_failed(OUT_OF_RESOURCES)
                elif part.content_type not in (DICOM_MEDIA_TYPE, ""):
                    response.add_failed(CANNOT_UNDERSTAND)
                else:
                    _store_one(report, response, part, f"part {number}", study_uid)
            finally:
                part.close()
    return response


def _store_one(report, response: StoreResponse, part, name: str, study_uid) -> None:
    try:
        result = services.receive_file(report, part.file, name, expected_study_uid=study_uid)
    except IngestFailure:
        response.add_failed(PROCESSING_FAILURE)
        return
    instance = result.instance
    uids = (instance.sop_class_uid, instance.sop_instance_uid) if instance else ("", "")
    if result.outcome in (Outcome.STORED, Outcome.DUPLICATE):
        response.add_stored(*uids)
    elif result.outcome == Outcome.CONFLICT:
        response.add_stored(*uids, warning=COERCED_OR_KEPT_ASIDE)
    elif result.code == "study_mismatch":
        response.add_failed(DOES_NOT_MATCH, *result.extra.get("uids", ("", "")))
    else:
        response.add_failed(CANNOT_UNDERSTAND)
