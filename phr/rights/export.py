"""Export everything (GDPR Art. 15 and 20, HIPAA right of access): one streamed ZIP.

The images and documents go in as the standard media set phr.vault.export already writes
(DICOM/ + DICOMDIR, DOCUMENTS/), so any PACS, or another account of this site, imports it as
is. Beside them, RECORD/ holds what the vault knows about them and about the account, as JSON
(for programs) and CSV (for spreadsheets): studies, series and images with their checksums,
every share with its access log, and deposit codes with what hospitals sent.
"""

import csv
import io
import json

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from phr.hospital.models import DepositCode
from phr.sharing.models import Share, Tally
from phr.vault import browse
from phr.vault.export import StudyArchive, document_names
from phr.vault.models import Document, Study

RECORD = "RECORD"

RECORD_README = """What RECORD/ holds
  account.json       your account as we keep it
  studies.json       every study, series and image, with where the image is in DICOM/
                     and its SHA-256 checksum (the exact bytes we keep)
  shares.json        every share you made, with its whole access log
  shares.csv         the same shares, one row each
  access_log.csv     every access log line of every share, one row each
  deposits.json      your deposit codes, and the studies hospitals sent you
"""


def full_export(user) -> StudyArchive:
    studies = list(
        browse.newest_first(Study.objects.filter(owner=user).select_related("deposited_by"))
    )
    documents = list(
        Document.objects.filter(owner=user).select_related("study").order_by("created_at")
    )
    archive = StudyArchive(studies, documents)
    archive.filename = f"my-vault-{timezone.localdate():%Y-%m-%d}.zip"
    archive.extra = _record_files(user, archive)
    return archive


def _record_files(user, archive: StudyArchive) -> list[tuple[str, bytes]]:
    shares = list(
        Share.objects.filter(owner=user)
        .prefetch_related("studies", "events__tally")
        .order_by("created_at")
    )
    share_rows = [_share_row(share) for share in shares]
    files = {
        "README.txt": RECORD_README.encode(),
        "account.json": _json(_account(user)),
        "studies.json": _json(_studies(archive)),
        "shares.json": _json(share_rows),
        "shares.csv": _csv(
            [{k: v for k, v in row.items() if k != "access_log"} for row in share_rows]
        ),
        "access_log.csv": _csv(
            [{"share": row["label"], **event} for row in share_rows for event in row["access_log"]]
        ),
        "deposits.json": _json(_deposits(user, archive.studies)),
    }
    return [(f"{RECORD}/{name}", data) for name, data in files.items()]


def _account(user) -> dict:
    return {
        "email": user.email,
        "full_name": user.full_name,
        "date_of_birth": user.date_of_birth,
        "joined": user.date_joined,
        "last_login": user.last_login,
    }


def _studies(archive: StudyArchive) -> dict:
    by_study: dict = {}
    for entry in archive.files:
        study = by_study.setdefault(entry.study.pk, _study_record(entry.study))
        series = study["series"].setdefault(
            entry.series.series_instance_uid,
            {
                "series_instance_uid": entry.series.series_instance_uid,
                "number": entry.series.number,
                "modality": entry.series.modality,
                "description": entry.series.description,
                "body_part": entry.series.body_part,
                "images": [],
            },
        )
        instance = entry.instance
        series["images"].append(
            {
                "file": entry.name,
                "sop_instance_uid": instance.sop_instance_uid,
                "sop_class_uid": instance.sop_class_uid,
                "transfer_syntax_uid": instance.transfer_syntax_uid,
                "instance_number": instance.instance_number,
                "frames": instance.number_of_frames,
                "size": instance.size,
                "sha256": instance.sha256,
                "kept_beside_a_different_copy": instance.is_conflict,
            }
        )
    for study in by_study.values():
        study["series"] = list(study["series"].values())
    names = document_names(archive.documents)
    documents = [
        {
            "file": f"DOCUMENTS/{name}",
            "original_name": document.filename,
            "content_type": document.content_type,
            "size": document.size,
            "sha256": document.sha256,
            "study_instance_uid": document.study.study_instance_uid if document.study else None,
            "added": document.created_at,
        }
        for name, document in zip(names, archive.documents, strict=True)
    ]
    return {"studies": list(by_study.values()), "documents": documents}


def _study_record(study: Study) -> dict:
    return {
        "study_instance_uid": study.study_instance_uid,
        "date": study.study_date,
        "time": study.study_time,
        "description": study.description,
        "accession_number": study.accession_number,
        "institution": study.institution,
        "referring_physician": study.referring_physician,
        "modalities": study.modality_list,
        "patient_name_in_files": study.patient_name,
        "patient_id_in_files": study.patient_id,
        "source": study.get_source_display(),
        "waiting_in_inbox": study.inbox,
        "sent_by": str(study.deposited_by) if study.deposited_by_id else None,
        "added": study.created_at,
        "series": {},
    }


def _share_row(share: Share) -> dict:
    return {
        "label": share.label,
        "recipient_email": share.recipient_email,
        "studies": "; ".join(sorted(s.study_instance_uid for s in share.studies.all())),
        "created": share.created_at,
        "expires": share.expires_at,
        "stopped": share.revoked_at,
        "locked": share.locked_at,
        "allow_download": share.allow_download,
        "first_opened": share.first_opened_at,
        "last_used": share.last_used_at,
        "access_log": [
            {
                "at": event.at,
                "what": event.get_kind_display(),
                "detail": event.detail,
                "ip": event.ip,
                "browser": event.user_agent,
                "visitor": event.visitor,
                # For a counted line (images or DICOM details of a series): how many distinct
                # images, and until when.
                "images": _tally(event).images if _tally(event) else None,
                "until": _tally(event).last_at if _tally(event) else None,
            }
            for event in sorted(share.events.all(), key=lambda e: (e.at, e.pk))
        ],
    }


def _tally(event):
    try:
        return event.tally
    except Tally.DoesNotExist:
        return None


def _deposits(user, studies) -> dict:
    codes = DepositCode.objects.filter(owner=user).select_related("organisation")
    return {
        "deposit_codes": [
            {
                "label": code.label,
                "only_for": str(code.organisation) if code.organisation else None,
                "created": code.created_at,
                "expires": code.expires_at,
                "stopped": code.revoked_at,
                "last_used": code.last_used_at,
            }
            for code in codes
        ],
        "studies_sent_by_hospitals": [
            {
                "study_instance_uid": study.study_instance_uid,
                "sent_by": str(study.deposited_by) if study.deposited_by_id else None,
                "received": study.deposited_at,
                "waiting_in_inbox": study.inbox,
            }
            for study in studies
            if study.deposited_at
        ],
    }


def _json(data) -> bytes:
    return json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False).encode()


# A cell a spreadsheet would take as a formula (OWASP "CSV injection"): the rows carry other
# people's text (a doctor's browser name, hospital-set DICOM text, share labels).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _as_text(value):
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value  # shown as written, never run
    return value


def _csv(rows: list[dict]) -> bytes:
    if not rows:
        return b""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({key: _as_text(value) for key, value in row.items()} for row in rows)
    # A BOM, so that Excel reads accented names as UTF-8.
    return ("\ufeff" + out.getvalue()).encode()
